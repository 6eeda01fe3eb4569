//! Resilience on a real 3-node Apache Cassandra cluster (`scripts/cassandra-cluster`) with
//! `run --store cassandra` fed by Google's Pub/Sub emulator:
//!
//! 1. one node SIGKILLed mid-stream: the run goes on at QUORUM and the rows are complete;
//! 2. the whole cluster away for 30 s mid-run: `/readyz` says 503, the subscriber stays
//!    within its outstanding bound, nothing is acked, and once the nodes are back the run
//!    recovers by itself and the rows are complete;
//! 3. two, then three `run` processes sharing the subscriptions and the keyspace: the rows
//!    of a single process, and in the DLQ exactly the payments whose order never came;
//! 4. `run` SIGKILLed ten times over 50,000 orders and 50,000 payments (on the embedded
//!    store: it is `run` that is killed here, not the store): every row right, the DLQ
//!    exactly the orphans, nothing left on the subscriptions.
//!
//! The figures each scenario measures are printed on lines starting `RESILIENCE:` (run
//! with `--nocapture` to see them); RESILIENCE.md publishes them.
//!
//! A test binary of its own, so that its three JVMs never compete with the main integration
//! binary's node. One cluster serves every test, started once; the tests kill its nodes, so
//! they take turns on a lock ([`cluster::cluster`]) whatever `--test-threads` says, and
//! each first restarts any node a previous test left down. Missing Java or Maven: a loud
//! SKIPPED, a failure under `CI=true`.
//!
//! Owns: the behaviour of `run` when Cassandra nodes go away and come back, and when
//! several processes share the work. Must never: edit or weaken what the main suite
//! asserts, use an external cluster (`ECOM_CASSANDRA_NODES` is ignored: these tests kill
//! nodes), or wait on a fixed sleep other than the deliberate outage.

// Only the helpers these tests need are used from each shared harness file.
#[allow(dead_code)]
#[path = "integration/cassandra_node.rs"]
mod cassandra_node;
#[allow(dead_code)]
#[path = "integration/cli.rs"]
mod cli;
#[allow(dead_code)]
#[path = "integration/emulator.rs"]
mod emulator;

#[path = "resilience/cluster.rs"]
mod cluster;
#[path = "resilience/sigkills.rs"]
mod sigkills;
#[path = "resilience/world.rs"]
mod world;

use cli::{int, Running};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use world::{
    expected_row, peak_rss_kib, wait_until, wait_within, Ops, World, ACKED, DUPLICATES, NACKED,
    OUTSTANDING, RECEIVED, REDELIVERED,
};

/// Orders and payments published in the node-loss and outage scenarios (ids `1..=N`).
const N: i64 = 3000;

/// How long the progress of a run may stand still (no ack) while the test waits for it to
/// finish, before the test calls it stalled. Generous: after a node or the whole cluster
/// comes back, the driver reconnects and Pub/Sub redelivers what was nacked.
const STALL_LIMIT: Duration = Duration::from_secs(90);

/// SIGTERM, then the run's closing JSON report (asserting exit 0).
fn stop(mut running: Running) -> Value {
    running.signal("TERM");
    running.wait().ok().json()
}

/// Whether every order `1..=n` is stored and every payment joined, or (with
/// `dead_ok`) dead-lettered.
fn all_stored(w: &World, n: i64, dead_ok: bool) -> bool {
    let facts = w.facts();
    let dead: BTreeSet<i64> = if dead_ok {
        w.dead_letters()
            .values()
            .map(|e| int(e, "order_id"))
            .collect()
    } else {
        BTreeSet::new()
    };
    (1..=n).all(|id| {
        facts.get(&id).is_some_and(|r| {
            !r["customer_id"].is_null() && (!r["payment_id"].is_null() || dead.contains(&id))
        })
    })
}

/// Waits until every order and payment `1..=n` has its effect (checked in the store once
/// the acks say it may be so), failing if the acks stand still for [`STALL_LIMIT`].
/// Returns how long it took.
fn wait_complete(w: &World, run: &mut Running, ops: Ops, n: i64, dead_ok: bool) -> Duration {
    let (mut last, mut last_change) = (0, Instant::now());
    let what = format!("every order and payment 1..={n} stored");
    wait_until(&what, &mut [run], || {
        let m = ops.metrics();
        let acked = m.both(ACKED);
        if acked != last {
            (last, last_change) = (acked, Instant::now());
        }
        assert!(
            last_change.elapsed() < STALL_LIMIT,
            "stalled while waiting for {what}: no ack for {STALL_LIMIT:?} ({acked} acked)"
        );
        m.of(ACKED, "orders") >= n as u64
            && m.of(ACKED, "payments") >= n as u64
            && all_stored(w, n, dead_ok)
    })
}

/// Every row `1..=n` is the producer's record, column by column, and there is no other row.
fn assert_rows_expected(w: &World, n: i64, report: &Value) {
    let facts = w.facts();
    assert_eq!(facts.len() as i64, n, "{report}");
    for id in 1..=n {
        assert_eq!(facts[&id], expected_row(id), "row {id}");
    }
}

/// One of three nodes SIGKILLed mid-stream: at RF 3 and QUORUM the run does not notice
/// beyond a few retries, and the rows are exactly those of an undisturbed run.
#[test]
fn one_node_lost_mid_stream() {
    let Some((_turn, cluster)) = cluster::cluster("one_node_lost_mid_stream") else {
        return;
    };
    let Some(w) = World::new("one_node_lost", cluster) else {
        return;
    };
    let mut run = w.start(&["--hold", "60s"]);
    let ops = Ops::of(&mut run);
    let mut producers = w.produce_in_background(&format!("1..={N}"), "300");
    wait_until(
        "600 messages acked before a node is lost",
        &mut [&mut run],
        || ops.metrics().both(ACKED) >= 600,
    );
    // Node 3: any node will do at QUORUM; not node 1, the seed, so that the restart for
    // the next test joins as every restart of a non-seed does.
    cluster.kill(3);
    let at_kill = ops.metrics().both(ACKED);
    assert!(
        at_kill < 2 * N as u64,
        "everything was acked before the kill: it was not mid-stream"
    );
    let went_on = wait_until(
        "600 more acks after the node was lost",
        &mut [&mut run],
        || ops.metrics().both(ACKED) >= at_kill + 600,
    );
    let finished = wait_complete(&w, &mut run, ops, N, false);
    for p in producers.drain(..) {
        p.wait().ok();
    }
    let report = stop(run);
    assert_eq!(report["drained"], true, "{report}");
    assert_rows_expected(&w, N, &report);
    let dlq = w.dead_letters();
    assert!(
        dlq.is_empty(),
        "no payment waited 60 s for its order: {dlq:?}"
    );
    println!(
        "RESILIENCE: one_node_lost_mid_stream: {N}+{N} messages, node 3 SIGKILLed after \
         {at_kill} acks; 600 more acks {went_on:.1?} later; all stored {finished:.1?} after \
         that; write retries {}, write failures {}, nacked {}+{}",
        int(&report["stats"], "write_retries"),
        int(&report["stats"], "write_failures"),
        int(&report["orders"], "nacked"),
        int(&report["payments"], "nacked"),
    );
}

/// The deliberate outage: every node down this long, then back.
const OUTAGE: Duration = Duration::from_secs(30);

/// The subscriber's bound in the outage scenario (`--pubsub-max-outstanding-messages`):
/// well under what is published, so that staying within it is a claim.
const BOUND: u64 = 200;

/// The whole cluster SIGKILLed for [`OUTAGE`] mid-run, then restarted on its data: while it
/// is away `/readyz` answers 503, the subscriber stays within its bound and acks nothing;
/// once it is back the same `run` recovers by itself and the rows are complete.
#[test]
fn whole_cluster_away_then_back() {
    cluster_outage("whole_cluster_away_then_back", true);
}

fn cluster_outage(test: &str, readiness_must_return: bool) {
    let Some((_turn, cluster)) = cluster::cluster(test) else {
        return;
    };
    let Some(w) = World::new(test, cluster) else {
        return;
    };
    let bound = BOUND.to_string();
    // A hold longer than the outage, so that a payment held while its order cannot be
    // written still meets it afterwards.
    let mut run = w.start(&[
        "--hold",
        "120s",
        "--pubsub-max-outstanding-messages",
        &bound,
    ]);
    let ops = Ops::of(&mut run);
    let pid = w.run_pid();
    let mut producers = w.produce_in_background(&format!("1..={N}"), "300");
    wait_until(
        "600 messages acked and /readyz 200 before the outage",
        &mut [&mut run],
        || ops.metrics().both(ACKED) >= 600 && ops.ready_status() == 200,
    );

    let down_at = Instant::now();
    for n in (1..=cluster::NODES).rev() {
        cluster.kill(n);
    }
    let unready_after = wait_within(
        "/readyz to answer 503 with every node down",
        OUTAGE,
        &mut [&mut run],
        || ops.ready_status() == 503,
    );
    // From here on no write can succeed: an ack can only answer a duplicate.
    let before = ops.metrics();
    assert!(
        before.both(ACKED) < 2 * N as u64,
        "everything was acked before the outage: it was not mid-run"
    );
    let mut peak_outstanding = 0;
    let mut samples = 0;
    while down_at.elapsed() < OUTAGE {
        if let Some(status) = run.try_wait() {
            panic!(
                "exited ({status}) during the outage: {}",
                run.output_so_far()
            );
        }
        let (status, body) = ops.get("/readyz");
        assert_eq!(status, 503, "/readyz during the outage: {body}");
        let m = ops.metrics();
        for source in ["orders", "payments"] {
            let outstanding = m.of(OUTSTANDING, source);
            assert!(
                outstanding <= BOUND,
                "{source}: {outstanding} outstanding, over the bound of {BOUND}"
            );
            peak_outstanding = peak_outstanding.max(outstanding);
        }
        // Nothing new can become durable, so every ack now must be of a duplicate: a
        // redelivery of a message whose effect was durable before the outage, which the run
        // acks without writing (design §4 item 5; the emulator redelivers such messages).
        let acked = m.both(ACKED) - before.both(ACKED);
        let duplicates = m.total(DUPLICATES) - before.total(DUPLICATES);
        assert!(
            acked <= duplicates,
            "{acked} acks but only {duplicates} duplicates while every node was down: \
             something was acked whose effect is not durable"
        );
        samples += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = ops.metrics();
    let delivered = after.both(RECEIVED) - before.both(RECEIVED);
    let nacked = after.both(NACKED) - before.both(NACKED);
    let acked = after.both(ACKED) - before.both(ACKED);
    let duplicates = after.total(DUPLICATES) - before.total(DUPLICATES);
    let rss_kib = peak_rss_kib(pid);
    // No nack loop: rows are held through the outage and the intake's gate stops new
    // deliveries, so nacks stay far below one per outstanding message (before the gate,
    // 3,000-7,000 nacks in these 30 s: every message retried, nacked, redelivered at once).
    assert!(
        nacked <= BOUND,
        "{nacked} nacks during the outage: the run is redelivering in a loop"
    );

    // The nodes come back in the background while the test watches the run: the first ack
    // shows when the run recovered (QUORUM needs two nodes, not three).
    let restart_at = Instant::now();
    let down_for = restart_at.duration_since(down_at);
    let acks_then = ops.metrics().both(ACKED);
    let (first_ack, restart_took) = std::thread::scope(|s| {
        let restarting = s.spawn(|| {
            let nodes: Vec<usize> = (1..=cluster::NODES).collect();
            cluster.restart_all(&nodes);
            restart_at.elapsed()
        });
        let first_ack = wait_until(
            "the first ack once the nodes come back",
            &mut [&mut run],
            || ops.metrics().both(ACKED) > acks_then,
        );
        let took = restarting
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (first_ack, took)
    });
    let finished = restart_at.elapsed() + wait_complete(&w, &mut run, ops, N, true);
    for p in producers.drain(..) {
        p.wait().ok();
    }
    let ready_at_end = ops.get("/readyz");
    if readiness_must_return {
        wait_until(
            "/readyz to answer 200 once the cluster is back and every message answered",
            &mut [&mut run],
            || ops.ready_status() == 200,
        );
    }
    // How the run's redeliveries came back (after an ack that was lost, while still held,
    // after a nack), for the figures.
    let end = ops.metrics();
    let [after_ack, while_held, after_nack] = ["after_ack", "while_held", "after_nack"]
        .map(|how| end.labelled(REDELIVERED, &format!("how=\"{how}\"")));
    let report = stop(run);
    assert_eq!(report["drained"], true, "{report}");
    // A payment whose order came back more than the hold after it is dead-lettered, as
    // designed for late orders; replay joins it (the order is stored by now).
    let dead = w.dead_letters().len() as i64;
    let replay = w.run(&["dlq", "replay"]).ok().json();
    assert_eq!(int(&replay, "replayed"), dead, "{replay}");
    assert_rows_expected(&w, N, &report);
    let dlq = w.dead_letters();
    assert!(dlq.is_empty(), "{dlq:?}");
    println!(
        "RESILIENCE: {test}: {N}+{N} messages, bound {BOUND}; all {} nodes SIGKILLed \
         after {} acks; /readyz 503 {unready_after:.1?} after the last kill and at each of \
         {samples} samples; outage {down_for:.1?} (kill to restart); during the outage: \
         {delivered} deliveries, {acked} acks (all of duplicates: {duplicates} duplicates), \
         {nacked} nacks, peak outstanding \
         {peak_outstanding} (of one source); peak RSS of run (VmHWM) {} MiB; after the \
         restart began: first ack {first_ack:.1?}, all 3 nodes answering {restart_took:.1?}, \
         all stored {finished:.1?}; /readyz then {} ({}); dead-lettered then replayed \
         {dead}; over the whole run: {} deliveries, {} duplicates, write failures {}; \
         received again: {after_ack} after their ack, {while_held} while held, \
         {after_nack} after a nack",
        cluster::NODES,
        before.both(ACKED),
        rss_kib / 1024,
        ready_at_end.0,
        ready_at_end.1.trim(),
        int(&report["orders"], "delivered") + int(&report["payments"], "delivered"),
        int(&report["stats"], "duplicates"),
        int(&report["stats"], "write_failures"),
    );
}

/// Payments with no order ever (ids 301..=350) in the sharing scenario.
const ORPHANS: std::ops::RangeInclusive<i64> = 301..=350;

/// Two, then three `run` processes on the same subscriptions and keyspace; every payment
/// published before its order, so that each is held and its order often reaches another
/// process: the rows are a single process's, and the DLQ holds exactly the payments whose
/// order never came.
#[test]
fn instances_share_the_work() {
    let Some((_turn, cluster)) = cluster::cluster("instances_share_the_work") else {
        return;
    };
    let Some(w) = World::new("instances_share", cluster) else {
        return;
    };
    // A hold that a payment's order, published a few seconds after it, always meets; the
    // payment then joins on its own process or, when the order went to another one, at the
    // recheck at the end of its hold (design §4 item 6).
    let args = ["--hold", "20s", "--pubsub-streams", "2"];
    let mut a = w.start(&args);
    let mut b = w.start(&args);
    let ops_a = Ops::of(&mut a);
    let ops_b = Ops::of(&mut b);
    // Ready means Pub/Sub answered for its subscriptions and its streams are opening: a
    // run that is still checking at start would leave every message to the other one.
    wait_until(
        "the first two runs to be ready",
        &mut [&mut a, &mut b],
        || ops_a.ready_status() == 200 && ops_b.ready_status() == 200,
    );
    w.produce("payments", "1..=350");
    w.produce("orders", "1..=150");
    let mut c = w.start(&args);
    let ops_c = Ops::of(&mut c);
    // Ready means connected to Pub/Sub and the store: its streams are open to take a share.
    wait_until("the third run to be ready", &mut [&mut c], || {
        ops_c.ready_status() == 200
    });
    w.produce("orders", "151..=300");
    wait_until(
        "300 joined rows and 50 dead letters across three runs",
        &mut [&mut a, &mut b, &mut c],
        || {
            let acked: u64 = [ops_a, ops_b, ops_c]
                .iter()
                .map(|o| o.metrics().both(ACKED))
                .sum();
            acked >= 650 && all_stored(&w, 300, false) && w.dead_letters().len() == 50
        },
    );
    let reports: Vec<Value> = [a, b, c].into_iter().map(stop).collect();
    for r in &reports {
        assert_eq!(r["drained"], true, "{r}");
    }
    // (orders, payments) acked by each run. Which stream the emulator hands a message to is
    // its choice, so only "the work was shared" (at least two runs took part) is asserted;
    // the shares are printed.
    let shares: Vec<(i64, i64)> = reports
        .iter()
        .map(|r| (int(&r["orders"], "acked"), int(&r["payments"], "acked")))
        .collect();
    assert!(
        shares.iter().filter(|(o, p)| o + p > 0).count() >= 2,
        "at least two runs took part: {shares:?}"
    );
    let facts = w.facts();
    assert_eq!(facts.len(), 300, "{reports:?}");
    for id in 1..=300 {
        assert_eq!(facts[&id], expected_row(id), "row {id}");
    }
    let dlq = w.dead_letters();
    assert_eq!(
        dlq.keys().copied().collect::<BTreeSet<_>>(),
        ORPHANS.map(|id| cli::PAYMENT_ID_OFFSET + id).collect(),
        "the DLQ holds exactly the payments whose order never came"
    );
    assert!(
        dlq.values().all(|e| e["reason"] == "order_not_found"),
        "{dlq:?}"
    );
    let joined_after_hold: i64 = reports
        .iter()
        .map(|r| int(&r["stats"], "payments_joined_after_hold"))
        .sum();
    println!(
        "RESILIENCE: instances_share_the_work: 350 payments then 300 orders over 3 runs; \
         (orders, payments) acked per run {shares:?}; payments held then joined \
         {joined_after_hold}; dead-lettered {}",
        dlq.len()
    );
}

/// `run` SIGKILLed ten times at progress points spread over 50,000 orders and 50,000
/// payments, restarted each time, then left to finish: every row is the producer's record,
/// the DLQ holds exactly the payments whose order never came, and nothing is left on the
/// subscriptions ([`sigkills`]). It takes the cluster tests' turn without starting the
/// cluster: it needs no node, and on 2 cores it must not compete with their JVMs.
#[test]
fn ten_sigkills_proven_row_by_row() {
    let _turn = cluster::turn();
    let Some(w) = World::embedded("ten_sigkills") else {
        return;
    };
    sigkills::ten_sigkills(&w);
}
