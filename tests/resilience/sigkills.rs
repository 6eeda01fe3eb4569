//! Ten SIGKILLs of `run` over 50,000 orders and 50,000 payments on the embedded store,
//! proven row by row: every order's row is the producer's record, every payment joined or,
//! when its order never comes, dead-lettered, and nothing is left on the subscriptions.
//!
//! Owns: the scenario and its figures (printed on a `RESILIENCE:` line). Must never: wait on
//! a sleep as an ordering aid (it waits on acks, rows and quiet), or count where it can
//! compare identities.
//!
//! Why the runs look the way they do: on the emulator every stream a killed run had stays
//! registered and is handed messages again in waves one lease apart (RESILIENCE.md,
//! "Streams that go away"). The killed runs therefore read with one stream each and a 10 s
//! lease, so that ten kills leave ten dead streams per subscription, not eighty; the run
//! that finishes reads with [`FINAL_STREAMS`], so that most of each wave comes to a live
//! stream.

use crate::cli::{int, Running, PAYMENT_ID_OFFSET};
use crate::world::{expected_row, wait_within, Ops, World, ACKED, OUTSTANDING, RECEIVED};
use serde_json::Value;
use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

/// Orders `1..=ORDERS` are published.
const ORDERS: i64 = 50_000;
/// Payments for these orders are published before any order: each is held, then joined.
const EARLY: RangeInclusive<i64> = 1..=1_000;
/// Payments for orders `1..=PAID` are published; orders above it never get one.
const PAID: i64 = 49_950;
/// Payments whose order never comes: exactly these must end in the DLQ.
const ORPHANS: RangeInclusive<i64> = 50_001..=50_050;
/// Messages published in all: every order, and a payment for `1..=PAID` and each orphan.
const MESSAGES: u64 = (ORDERS + PAID + 50) as u64;
/// SIGKILLs, at progress points spread evenly over [`MESSAGES`] acks.
const KILLS: u64 = 10;
/// Streams of the run that finishes (64 at most).
const FINAL_STREAMS: &str = "32";
/// How long the finishing run must receive nothing, once every row is right, before the
/// subscriptions count as empty: five waves of the 10 s lease and 5 s more. What a dead
/// stream holds comes back each wave, to a live stream with a chance of at least 32 in 42
/// (ten dead streams): missing it five waves running is under 0.1%.
const QUIET: Duration = Duration::from_secs(55);
/// How long any one phase may take before the test fails naming it.
const PHASE_LIMIT: Duration = Duration::from_secs(420);

/// The scenario; see the module doc.
pub fn ten_sigkills(w: &World) {
    let started = Instant::now();
    // Options of every run: a hold that early payments' orders meet, and a bound that
    // keeps what one dead stream absorbs small.
    let base = ["--hold", "30s", "--pubsub-max-outstanding-messages", "2000"];
    let killed_args: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--pubsub-streams", "1"])
        .collect();
    w.produce(
        "payments",
        &format!("{}..={}", ORPHANS.start(), ORPHANS.end()),
    );
    w.produce("payments", &format!("{}..={}", EARLY.start(), EARLY.end()));
    let mut run = w.start(&killed_args);
    let mut ops = Ops::of(&mut run);
    let mut producers: Vec<Running> = [
        ("orders", format!("1..={ORDERS}")),
        ("payments", format!("{}..={PAID}", EARLY.end() + 1)),
    ]
    .iter()
    .map(|(kind, ids)| {
        Running::spawn(w.command(&["produce", kind, "--ids", ids, "--json"]))
            .with_limit(PHASE_LIMIT)
    })
    .collect();

    // Acks and deliveries of the killed runs, as last scraped before each kill.
    let (mut acked_before, mut received_before) = (0u64, 0u64);
    let mut kills = Vec::new();
    for k in 1..=KILLS {
        let point = MESSAGES * k / (KILLS + 1);
        let mut last = (0, 0, 0);
        wait_within(
            &format!("{point} acks over all runs before kill {k}"),
            PHASE_LIMIT,
            &mut [&mut run],
            || {
                let m = ops.metrics();
                last = (m.both(ACKED), m.both(RECEIVED), m.both(OUTSTANDING));
                acked_before + last.0 >= point
            },
        );
        let killed = run.kill();
        assert!(!killed.status.success(), "{killed}");
        acked_before += last.0;
        received_before += last.1;
        kills.push((acked_before, last.2));
        let args = if k == KILLS {
            base.iter()
                .copied()
                .chain(["--pubsub-streams", FINAL_STREAMS])
                .collect()
        } else {
            killed_args.clone()
        };
        run = w.start(&args);
        ops = Ops::of(&mut run);
    }
    let last_restart = Instant::now();
    for p in producers.drain(..) {
        let published = int(&p.wait().ok().json(), "published");
        assert!(published > 0, "a producer published nothing");
    }

    // The last run goes on until every row is right; the store is read only once the acks
    // say it may be so, and then every few seconds.
    let mut checked: Option<Instant> = None;
    let converged = wait_within(
        "every order stored and every payment joined or dead-lettered",
        PHASE_LIMIT,
        &mut [&mut run],
        || {
            if acked_before + ops.metrics().both(ACKED) < MESSAGES
                || checked.is_some_and(|at| at.elapsed() < Duration::from_secs(5))
            {
                return false;
            }
            checked = Some(Instant::now());
            complete(w)
        },
    );
    // Then until nothing has come for QUIET and nothing is held: what the dead streams
    // still held has come back and been acked.
    let mut quiet_since = (ops.metrics().both(RECEIVED), Instant::now());
    wait_within(
        "nothing received for the quiet period",
        PHASE_LIMIT,
        &mut [&mut run],
        || {
            let m = ops.metrics();
            let received = m.both(RECEIVED);
            if received != quiet_since.0 || m.both(OUTSTANDING) > 0 {
                quiet_since = (received, Instant::now());
            }
            quiet_since.1.elapsed() >= QUIET
        },
    );
    run.signal("TERM");
    let report = run.wait().ok().json();
    assert_eq!(report["drained"], true, "{report}");

    // Payments whose order reached a later run more than the hold after them were
    // dead-lettered as designed (late orders); replay joins them. The orphans stay.
    let replay = w.run(&["dlq", "replay"]).ok().json();
    let facts = w.facts();
    assert_eq!(facts.len() as i64, ORDERS, "one row per order, no other");
    for id in 1..=ORDERS {
        let expected = if id <= PAID {
            expected_row(id)
        } else {
            order_only(id)
        };
        assert_eq!(facts[&id], expected, "row {id}");
    }
    let dlq = w.dead_letters();
    assert_eq!(
        dlq.keys().copied().collect::<BTreeSet<_>>(),
        ORPHANS.map(|id| PAYMENT_ID_OFFSET + id).collect(),
        "the DLQ holds exactly the payments whose order never came"
    );
    assert!(
        dlq.values().all(|e| e["reason"] == "order_not_found"),
        "{dlq:?}"
    );
    let delivered = received_before
        + (int(&report["orders"], "delivered") + int(&report["payments"], "delivered")) as u64;
    println!(
        "RESILIENCE: ten_sigkills: {ORDERS} orders + {} payments ({} early, {} orphans); \
         {KILLS} SIGKILLs at (acks so far, held by the killed run) {kills:?}; every row \
         right {converged:.1?} after the last restart ({:.1?} from it to the end of the \
         quiet period); deliveries {delivered} for {MESSAGES} messages ({} more than one \
         each, lower bound); replayed from the DLQ {}; {:.1?} in all",
        PAID + 50,
        EARLY.count(),
        ORPHANS.count(),
        last_restart.elapsed(),
        delivered.saturating_sub(MESSAGES),
        int(&replay, "replayed"),
        started.elapsed(),
    );
}

/// Whether every order is stored, every payment `1..=PAID` joined or dead-lettered, and
/// every orphan dead-lettered.
fn complete(w: &World) -> bool {
    let facts = w.facts();
    let dead: BTreeSet<i64> = w
        .dead_letters()
        .values()
        .map(|e| int(e, "order_id"))
        .collect();
    ORPHANS.clone().all(|id| dead.contains(&id))
        && (1..=ORDERS).all(|id| {
            facts.get(&id).is_some_and(|r| {
                !r["customer_id"].is_null()
                    && (id > PAID || !r["payment_id"].is_null() || dead.contains(&id))
            })
        })
}

/// The row of an order that never got a payment: the producer's record, payment columns null.
fn order_only(id: i64) -> Value {
    let mut row = expected_row(id);
    for column in [
        "payment_id",
        "payment_method",
        "card_last_four",
        "payment_status",
        "payment_datetime",
    ] {
        row[column] = Value::Null;
    }
    row
}
