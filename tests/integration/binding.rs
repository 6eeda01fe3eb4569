//! `run` on its own, against the emulator (issue 19): the subscriptions are bound to the
//! store `setup` made them for, so that a run on another store is refused instead of
//! silently taking half the messages (finding 6); and `run --replay-every` joins a late
//! order's dead-lettered payments without a `dlq replay` process (finding 8).
//!
//! Owns: those two behaviours of the binary. Must never: share a project with another test
//! (each world has its own), or wait without a limit naming what it waited for.

use crate::cli::{command, int, Run, Running};
use crate::pubsub::{stop, wait_until, World};
use ecom_stream::app::StoreConfig;
use ecom_stream::pubsub::Endpoint;
use ecom_stream::store::embedded::SyncMode;
use std::path::Path;

/// The binary on `w`'s project with the embedded store in `dir` (not `w`'s own).
fn on_store(w: &World, dir: &Path, args: &[&str]) -> Running {
    let mut cmd = command(dir, args);
    let Endpoint::Emulator(host) = w.pubsub_config().endpoint else {
        panic!("the test world is on the emulator");
    };
    cmd.env("PUBSUB_EMULATOR_HOST", host)
        .env("ECOM_PROJECT", w.project())
        .env("ECOM_METRICS_ADDR", "127.0.0.1:0");
    Running::spawn(cmd)
}

fn label_of(dir: &Path) -> String {
    StoreConfig::Embedded {
        data_dir: dir.to_path_buf(),
        sync: SyncMode::Full,
    }
    .binding()
    .label
}

/// `setup` for store A, `run` on store B: refused at start with one line naming both
/// stores, non-zero; `--rebind-subscriptions` runs; and A's own runs (any number) are
/// accepted throughout.
#[test]
fn a_run_on_another_store_is_refused_unless_it_rebinds() {
    let Some(w) = World::new("binding_refused") else {
        return;
    };
    let other = tempfile::tempdir().expect("store B");
    let (a, b) = (label_of(w.data_dir()), label_of(other.path()));
    assert_ne!(a, b);

    let refused: Run = on_store(&w, other.path(), &["run", "--until-idle", "2s"]).wait();
    let refused = refused.failed();
    let errors: Vec<&str> = refused
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{refused}");
    assert!(
        errors[0].contains(&a) && errors[0].contains(&b),
        "the line names both stores: {refused}"
    );
    assert!(
        errors[0].contains("--rebind-subscriptions"),
        "and the way out: {refused}"
    );
    // Refused before anything was consumed: nothing went to B.
    assert!(!refused.stderr.contains("running"), "{refused}");

    // A's runs stay welcome, two at once included.
    w.produce("orders", "1..=10", &[]);
    let first = w.start(&["--until-idle", "3s"]);
    let second = w.start(&["--until-idle", "3s"]);
    let (first, second) = (first.wait().ok(), second.wait().ok());
    let delivered = |r: &Run| int(&r.json()["orders"], "delivered");
    assert!(
        delivered(&first) + delivered(&second) >= 10,
        "{first}\n{second}"
    );
    assert_eq!(w.facts().len(), 10);

    // The explicit flag runs on B.
    let rebound = on_store(
        &w,
        other.path(),
        &["run", "--until-idle", "2s", "--rebind-subscriptions"],
    )
    .wait()
    .ok();
    assert!(
        rebound.stderr.contains("--rebind-subscriptions"),
        "the rebind is said: {rebound}"
    );
}

/// A payment whose order comes after its hold is dead-lettered; the order arrives; `run`'s
/// own replay pass joins it, with no `dlq replay` process anywhere.
#[test]
fn a_late_orders_payment_is_joined_by_runs_own_replay() {
    let Some(w) = World::new("replay_every") else {
        return;
    };
    let mut running = w.start(&["--hold", "1s", "--replay-every", "2s"]);
    w.produce("payments", "1..=20", &[]);
    wait_until(&mut running, "20 payments dead-lettered", || {
        w.dead_letters().len() == 20
    });
    w.produce("orders", "1..=20", &[]);
    wait_until(&mut running, "20 rows joined by the run's replay", || {
        let facts = w.facts();
        facts.len() == 20
            && facts.values().all(|r| !r["payment_id"].is_null())
            && w.dead_letters().is_empty()
    });
    let report = stop(running);
    // Each entry joined once, by the run's own passes.
    assert_eq!(int(&report["stats"], "replayed"), 20, "{report}");
    assert_eq!(int(&report["stats"], "dead_lettered"), 20, "{report}");
}
