//! `run` and `demo` in-process, through the library's wiring (`ecom_stream::app`), the way
//! the binary calls them: settings in, a shutdown handle, the served address out, a report
//! back. The CLI tests cover the same paths through the binary; these prove the wiring
//! itself (one store, one listener, readiness) without a process boundary in between.

use crate::cli::{command, dlq_by_id_any_order, facts_by_id_any_order, int, Running};
use crate::ops::{get, get_async};
use crate::pubsub::{expected_row, World};
use ecom_stream::app::{self, DemoConfig, DemoOptions, RunConfig, RunOptions, StoreConfig};
use ecom_stream::config::EngineConfig;
use ecom_stream::model::PAYMENT_ID_OFFSET;
use ecom_stream::shutdown;
use ecom_stream::source::pubsub::SubscriberOptions;
use ecom_stream::store::embedded::SyncMode;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

fn embedded(dir: &Path) -> StoreConfig {
    StoreConfig::Embedded {
        data_dir: dir.to_path_buf(),
        sync: SyncMode::Normal,
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Polls `/readyz` on the address `on_serving` reports until it answers 200, from a thread
/// of its own (the pipeline runs on the test's runtime). Returns whether it did before the
/// run ended.
fn watch_readiness() -> (impl FnOnce(SocketAddr), mpsc::Receiver<bool>) {
    let (tx, rx) = mpsc::channel();
    let on_serving = move |addr: SocketAddr| {
        std::thread::spawn(move || {
            for _ in 0..600 {
                match std::panic::catch_unwind(|| get(addr, "/readyz")) {
                    Ok((200, _)) => {
                        let _ = tx.send(true);
                        return;
                    }
                    // Not ready yet, or the listener is gone (the run ended).
                    Ok(_) => {}
                    Err(_) => break,
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = tx.send(false);
        });
    };
    (on_serving, rx)
}

#[actix_rt::test]
async fn demo_in_process_leaves_the_scenario_rows_and_dead_letters() {
    let dir = tempfile::tempdir().expect("data dir");
    let config = DemoConfig {
        store: embedded(dir.path()),
        engine: EngineConfig::default(),
        options: DemoOptions::default(),
        serve: Some(any_port()),
    };
    let (_trigger, listener) = shutdown::channel();
    let mut served = None;
    let outcome = app::demo(&config, listener, |addr| served = Some(addr))
        .await
        .expect("the demo runs");
    let addr = served.expect("the demo reported the address it serves");
    // Still serving after the demo, until the caller drops the server: the final numbers
    // can be scraped.
    // (The server runs on this test's runtime: a blocking client here would deadlock.)
    let (status, metrics) = get_async(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ecom_stream_"), "{metrics}");
    assert_eq!(get_async(addr, "/readyz").await.0, 200);
    drop(outcome.server);

    let r = &outcome.report;
    assert!(!r.interrupted);
    assert_eq!((r.expected_rows, r.expected_dlq), (80, 420));
    assert_eq!(r.stats.invalid, 6);
    assert_eq!(r.stats.write_failures, 0);
    assert_eq!(r.replay.unmatched, 420);

    // What the binary's readers see in the store the in-process demo wrote.
    let facts = facts_by_id_any_order(
        &Running::spawn(command(dir.path(), &["query", "facts"]))
            .wait()
            .ok(),
    );
    assert_eq!(
        facts.keys().copied().collect::<Vec<_>>(),
        (1..=80).collect::<Vec<i64>>()
    );
    for (id, row) in &facts {
        assert_eq!(int(row, "payment_id"), PAYMENT_ID_OFFSET + id, "{row}");
        assert!(!row["customer_id"].is_null(), "{row}");
    }
    let dlq = dlq_by_id_any_order(
        &Running::spawn(command(dir.path(), &["dlq", "list"]))
            .wait()
            .ok(),
    );
    assert_eq!(
        dlq.keys().copied().collect::<BTreeSet<_>>(),
        (81..=500).map(|id| PAYMENT_ID_OFFSET + id).collect()
    );
}

#[actix_rt::test]
async fn a_bad_setting_is_refused_before_the_store_is_created() {
    let dir = tempfile::tempdir().expect("data dir");
    let data_dir = dir.path().join("never-created");
    let config = DemoConfig {
        store: embedded(&data_dir),
        engine: EngineConfig {
            batch_size: 0,
            ..EngineConfig::default()
        },
        options: DemoOptions::default(),
        serve: None,
    };
    let (_trigger, listener) = shutdown::channel();
    let err = app::demo(&config, listener, |_| {})
        .await
        .err()
        .expect("batch size 0 is refused");
    assert_eq!(
        err.config().map(|c| c.setting),
        Some("--batch-size"),
        "{err}"
    );
    assert!(
        !data_dir.exists(),
        "nothing may be created for a refused setting"
    );
}

#[actix_rt::test]
async fn run_in_process_joins_what_was_published_then_stops_when_idle() {
    let Some(w) = World::new("run_in_process_joins_what_was_published_then_stops_when_idle") else {
        return;
    };
    w.produce("orders", "1..=80", &[]);
    w.produce("payments", "1..=500", &[]);
    let config = RunConfig {
        store: embedded(w.data_dir()),
        pubsub: w.pubsub_config(),
        options: RunOptions {
            engine: EngineConfig {
                hold: Duration::from_secs(1),
                ..EngineConfig::default()
            },
            subscriber: SubscriberOptions::default(),
            // Everything was published before the run: once it is all answered and nothing
            // is held, the run ends by itself.
            until_idle: Some(Duration::from_secs(3)),
            ack_only: false,
            replay_every: ecom_stream::app::run::DEFAULT_REPLAY_EVERY,
            rebind_subscriptions: false,
        },
        metrics_addr: any_port(),
    };
    let (on_serving, ready) = watch_readiness();
    let (_trigger, listener) = shutdown::channel();
    let report = app::run(&config, listener, on_serving)
        .await
        .expect("the run ends by itself when idle");
    assert_eq!(
        ready.recv_timeout(Duration::from_secs(60)),
        Ok(true),
        "/readyz answered 200 while the run ran"
    );
    assert_eq!(report.ended_by, "idle");
    assert!(report.drained);
    assert_eq!(report.stats.orders_upserted, 80);
    assert_eq!(report.stats.dead_lettered, 420);
    assert_eq!(report.orders.outstanding + report.payments.outstanding, 0);

    let facts = w.facts();
    assert_eq!(facts.len(), 80);
    for id in 1..=80 {
        assert_eq!(facts[&id], expected_row(42, id), "row {id}");
    }
    assert_eq!(
        w.dead_letters().keys().copied().collect::<BTreeSet<_>>(),
        (81..=500).map(|id| PAYMENT_ID_OFFSET + id).collect()
    );
}
