//! Pub/Sub going away under a running `run`, on an emulator of the test's own: SIGKILLed and
//! started again on the same port (then `setup` again, since the emulator keeps nothing),
//! and frozen with SIGSTOP. `/readyz` must turn 503 naming pubsub, the log must say so once
//! and once again when it is over, and the same `run` must go on by itself: every message
//! published before and after ends as its row.
//!
//! Owns: those scenarios. Must never: wait on a sleep for an ordering (every wait polls a
//! condition: `/readyz`, the store), or assert how long anything took.

use crate::cli::{assert_one_error_line, Running};
use crate::emulator::OwnEmulator;
use crate::ops::{get, served_addr};
use crate::pubsub::{expected_row, stop, wait_until, World};
use std::net::SocketAddr;

/// The one WARN line of an outage's start and the one INFO line of its end.
const WENT_DOWN: &str = "Pub/Sub outage";
const CAME_BACK: &str = "Pub/Sub answers again";

fn readyz(addr: SocketAddr) -> (u16, String) {
    get(addr, "/readyz")
}

fn wait_for_readyz(running: &mut Running, addr: SocketAddr, status: u16, body: &str) {
    wait_until(running, &format!("/readyz {status} {body:?}"), || {
        let (s, b) = readyz(addr);
        s == status && b.contains(body)
    });
}

/// Publishes orders and payments `ids` (seed 42) and waits until each of those rows is
/// stored, joined, exactly as the producer made it.
fn publish_and_wait_for_rows(w: &World, running: &mut Running, first: i64, last: i64) {
    let ids = format!("{first}..={last}");
    w.produce("orders", &ids, &[]);
    w.produce("payments", &ids, &[]);
    wait_until(running, &format!("rows {ids} joined"), || {
        let facts = w.facts();
        (first..=last).all(|id| facts.get(&id) == Some(&expected_row(42, id)))
    });
}

fn lines_with(running: &Running, needle: &str) -> Vec<String> {
    running
        .stderr_so_far()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The first line with `needle`, once the run has printed it.
fn wait_for_line(running: &mut Running, needle: &str) -> String {
    loop {
        if let Some(line) = lines_with(running, needle).into_iter().next() {
            return line;
        }
        if let Some(status) = running.try_wait() {
            panic!(
                "exited ({status}) before logging {needle:?}: {}",
                running.output_so_far()
            );
        }
        running.check_not_hung(needle);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The outage's INFO line, checked: it is the only one, and it counts at least one failed
/// probe (so the single WARN line stood for several failed looks, not one).
fn assert_one_outage_logged(running: &mut Running) {
    wait_for_line(running, CAME_BACK);
    let down = lines_with(running, WENT_DOWN);
    let up = lines_with(running, CAME_BACK);
    assert_eq!(down.len(), 1, "one WARN line per outage: {down:#?}");
    assert!(down[0].contains("WARN"), "{}", down[0]);
    assert_eq!(up.len(), 1, "one INFO line per outage: {up:#?}");
    assert!(up[0].contains("INFO"), "{}", up[0]);
    assert!(up[0].contains("lasted"), "{}", up[0]);
    assert!(
        !up[0].contains("failed_probes=0"),
        "the outage was seen by failed probes: {}",
        up[0]
    );
    // The figures for RESILIENCE.md (`--nocapture`).
    eprintln!("PUBSUB OUTAGE: {}\nPUBSUB OUTAGE: {}", down[0], up[0]);
}

#[test]
fn run_notices_a_killed_emulator_and_recovers_when_it_is_back() {
    let Some(mut emulator) = OwnEmulator::start("pubsub_killed") else {
        return;
    };
    let w = World::on_own(&emulator, "pubsub_killed");
    let mut running = w.start(&["--pubsub-streams", "2", "--hold", "30s"]);
    let addr = served_addr(&mut running);
    wait_for_readyz(&mut running, addr, 200, "ready");
    publish_and_wait_for_rows(&w, &mut running, 1, 20);

    emulator.kill();
    wait_for_readyz(&mut running, addr, 503, "pubsub");
    let warn = wait_for_line(&mut running, WENT_DOWN);
    assert!(
        warn.contains(&format!("projects/{}/subscriptions/", w.project())),
        "the line names the subscription: {warn}"
    );

    // The emulator keeps nothing: start it on the same port and set the project up again.
    emulator.restart();
    w.setup_again();
    wait_for_readyz(&mut running, addr, 200, "ready");
    assert_one_outage_logged(&mut running);
    // The same run reads again: what is published now ends as rows too.
    publish_and_wait_for_rows(&w, &mut running, 21, 40);

    let report = stop(running);
    assert_eq!(report["ended_by"], "signal", "{report}");
    let facts = w.facts();
    let ids: Vec<i64> = facts.keys().copied().collect();
    assert_eq!(ids, (1..=40).collect::<Vec<_>>(), "{report}");
}

#[test]
fn run_notices_a_frozen_emulator_and_recovers_when_it_thaws() {
    let Some(emulator) = OwnEmulator::start("pubsub_frozen") else {
        return;
    };
    let w = World::on_own(&emulator, "pubsub_frozen");
    // After the thaw `run` reopens its streams; the emulator cannot close the ones it
    // replaces (RESILIENCE.md, "Streams that go away") and goes on handing them part of
    // what is published next, which comes back only in waves of the 10 s deadline. So this
    // run may live longer than the usual hang limit.
    let mut running = w
        .start(&["--pubsub-streams", "2", "--hold", "30s"])
        .with_limit(crate::pubsub::REDELIVERY_LIMIT);
    let addr = served_addr(&mut running);
    wait_for_readyz(&mut running, addr, 200, "ready");
    publish_and_wait_for_rows(&w, &mut running, 1, 10);

    // Frozen: connections stay open and nothing answers; only the probe's deadline tells.
    emulator.signal("STOP");
    wait_for_readyz(&mut running, addr, 503, "pubsub");
    emulator.signal("CONT");
    wait_for_readyz(&mut running, addr, 200, "ready");
    assert_one_outage_logged(&mut running);
    publish_and_wait_for_rows(&w, &mut running, 11, 20);

    let report = stop(running);
    let ids: Vec<i64> = w.facts().keys().copied().collect();
    assert_eq!(ids, (1..=20).collect::<Vec<_>>(), "{report}");
}

#[test]
fn run_exits_non_zero_naming_a_subscription_deleted_while_it_runs() {
    let Some(w) = World::new("sub_deleted") else {
        return;
    };
    let mut running = w.start(&["--pubsub-streams", "1"]);
    let addr = served_addr(&mut running);
    wait_for_readyz(&mut running, addr, 200, "ready");
    let subscription = format!("projects/{}/subscriptions/orders_data-sub", w.project());
    let config = w.pubsub_config();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            ecom_stream::pubsub::connect::subscription_admin(&config)
                .await
                .expect("admin client")
                .delete_subscription()
                .set_subscription(&subscription)
                .send()
                .await
                .expect("delete the subscription");
        });
    // An outage first (a refusal may pass), then, once it has lasted the grace, the end.
    wait_for_readyz(&mut running, addr, 503, "pubsub");
    let r = running.wait().failed();
    assert_one_error_line(&r, &[&subscription, "NOT_FOUND"]);
    assert_eq!(r.stderr.matches(WENT_DOWN).count(), 1, "{r}");
}
