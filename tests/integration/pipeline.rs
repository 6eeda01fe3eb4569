//! End to end through the real actors: in-process source → intake → shards → writer /
//! dead-letter → store, with acks counted at the source.

use crate::support::*;
use ecom_stream::app::pipeline::{Drained, Pipeline, Placement};
use ecom_stream::dlq::replay::replay_once;
use ecom_stream::dlq::{DlqPublisher, TableOnly, REASON_ORDER_NOT_FOUND};
use ecom_stream::generator::MockData;
use ecom_stream::model::StreamKind;
use ecom_stream::shutdown::{self, Shutdown};
use ecom_stream::source::in_process::{Delivery, InProcessSource, Message, SourceOptions};
use ecom_stream::store::memory::MemoryStore;
use ecom_stream::store::Store;
use ecom_stream::telemetry::Stats;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const LONG_HOLD: Duration = Duration::from_secs(30);
const SHORT_HOLD: Duration = Duration::from_millis(50);
/// A hold no test could wait out on real time: with the clock paused, it ends as soon as
/// the pipeline has nothing else to do, which is what a hold that ended looks like.
const PAUSED_HOUR: Duration = Duration::from_secs(3600);

/// Runs `waves` of messages one after the other (each fully acked before the next) through
/// a fresh pipeline on `store`, then shuts it down cleanly. Every actor runs on the test's
/// thread, so a test that paused the clock (`tokio::time::pause`) decides when holds end.
async fn run_waves(
    store: Arc<dyn Store>,
    publisher: Arc<dyn DlqPublisher>,
    hold: Duration,
    waves: Vec<Vec<Message>>,
) -> (Arc<Stats>, InProcessSource) {
    let stats = Arc::new(Stats::default());
    let pipeline = Pipeline::start_placed(
        &engine(hold),
        store,
        publisher,
        stats.clone(),
        Placement::CurrentThread,
    )
    .unwrap();
    let source = InProcessSource::new(SourceOptions::default());
    for wave in waves {
        let outcome = source
            .deliver(wave, &pipeline.intake(), &Shutdown::never())
            .await;
        assert_eq!(outcome, Delivery::Completed);
    }
    assert_eq!(pipeline.shutdown().await, Drained::Clean);
    (stats, source)
}

#[actix_rt::test]
async fn early_payments_within_the_hold_are_joined_not_dead_lettered() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let mut mock = MockData::new(1);
    let mut msgs: Vec<Message> = (1..=50)
        .map(|i| payment_msg(&mut mock, 1000 + i, i, ""))
        .collect();
    msgs.extend((1..=50).map(|i| order_msg(&mut mock, i, "")));
    let store = Arc::new(MemoryStore::new());
    let stats = Arc::new(Stats::default());
    let pipeline = Pipeline::start_placed(
        &engine(LONG_HOLD),
        store.clone(),
        Arc::new(TableOnly),
        stats.clone(),
        Placement::CurrentThread,
    )
    .unwrap();
    // Small deliveries, one at a time: every payment reaches its shard in an earlier
    // delivery than its order, so it must be held to be joined.
    let source = InProcessSource::new(SourceOptions {
        batch_size: 10,
        concurrency: 1,
        ..SourceOptions::default()
    });
    let outcome = source
        .deliver(msgs, &pipeline.intake(), &Shutdown::never())
        .await;
    assert_eq!(outcome, Delivery::Completed);
    assert_eq!(pipeline.shutdown().await, Drained::Clean);

    let rows = all_facts(store.as_ref()).await;
    assert_eq!(rows.len(), 50);
    assert!(
        rows.values().all(|r| r.has_order() && r.has_payment()),
        "{rows:?}"
    );
    assert!(rows
        .values()
        .all(|r| r.payment_id == Some(1000 + r.order_id)));
    assert!(all_dead_letters(store.as_ref()).await.is_empty());
    let s = stats.snapshot();
    assert_eq!(s.payments_held, 50, "{s:?}");
    assert_eq!(s.payments_joined_after_hold, 50, "{s:?}");
    assert_eq!(s.dead_lettered, 0);
    assert_eq!(source.counts().acked, 100);
    assert_eq!(source.counts().outstanding, 0);
}

#[actix_rt::test]
async fn payments_past_the_hold_are_dead_lettered_then_replayed_once_their_order_exists() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let mut mock = MockData::new(2);
    let payments: Vec<Message> = (1..=20)
        .map(|i| payment_msg(&mut mock, 500 + i, i, ""))
        .collect();
    let store = Arc::new(MemoryStore::new());
    let (stats, _) = run_waves(
        store.clone(),
        Arc::new(TableOnly),
        PAUSED_HOUR,
        vec![payments],
    )
    .await;
    let dlq = all_dead_letters(store.as_ref()).await;
    assert_eq!(dlq.len(), 20);
    assert!(dlq
        .values()
        .all(|e| e.reason == REASON_ORDER_NOT_FOUND && e.attempts == 0));
    assert_eq!(stats.snapshot().dead_lettered, 20);
    assert!(all_facts(store.as_ref()).await.is_empty());

    // The orders arrive late: rows get their order half only...
    let orders: Vec<Message> = (1..=20).map(|i| order_msg(&mut mock, i, "")).collect();
    run_waves(
        store.clone(),
        Arc::new(TableOnly),
        PAUSED_HOUR,
        vec![orders],
    )
    .await;
    let rows = all_facts(store.as_ref()).await;
    assert!(rows.values().all(|r| r.has_order() && !r.has_payment()));

    // ...until replay joins them and empties the DLQ.
    let report = replay_once(store.as_ref(), &Stats::default())
        .await
        .unwrap();
    assert_eq!((report.replayed, report.unmatched), (20, 0));
    let rows = all_facts(store.as_ref()).await;
    assert_eq!(rows.len(), 20);
    assert!(rows
        .values()
        .all(|r| r.has_order() && r.payment_id == Some(500 + r.order_id)));
    assert!(all_dead_letters(store.as_ref()).await.is_empty());
    // Idempotent: a second pass finds nothing to do.
    let again = replay_once(store.as_ref(), &Stats::default())
        .await
        .unwrap();
    assert_eq!((again.scanned, again.replayed), (0, 0));
}

#[actix_rt::test]
async fn replay_leaves_unmatched_entries_with_one_more_attempt() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let mut mock = MockData::new(3);
    let payments: Vec<Message> = (1..=5)
        .map(|i| payment_msg(&mut mock, 700 + i, i, ""))
        .collect();
    let store = Arc::new(MemoryStore::new());
    run_waves(
        store.clone(),
        Arc::new(TableOnly),
        SHORT_HOLD,
        vec![payments],
    )
    .await;
    let report = replay_once(store.as_ref(), &Stats::default())
        .await
        .unwrap();
    assert_eq!((report.replayed, report.unmatched), (0, 5));
    let dlq = all_dead_letters(store.as_ref()).await;
    assert_eq!(dlq.len(), 5);
    assert!(dlq.values().all(|e| e.attempts == 1), "{dlq:?}");
}

fn scenario_messages(seed: u64, copies: usize) -> Vec<Message> {
    let mut mock = MockData::new(seed);
    let mut msgs = Vec::new();
    for i in 1..=30 {
        msgs.push(order_msg(&mut mock, i, ""));
        msgs.push(payment_msg(&mut mock, 2000 + i, i, ""));
    }
    // Payments whose order never comes.
    for i in 100..=110 {
        msgs.push(payment_msg(&mut mock, 2000 + i, i, ""));
    }
    let originals = msgs.clone();
    for copy in 1..copies {
        // Republished: same payload, new message id, later publish time.
        msgs.extend(originals.iter().map(|m| Message {
            message_id: format!("{}-copy{copy}", m.message_id),
            ..m.clone()
        }));
    }
    msgs
}

#[actix_rt::test]
async fn duplicates_change_nothing() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let once = Arc::new(MemoryStore::new());
    run_waves(
        once.clone(),
        Arc::new(TableOnly),
        SHORT_HOLD,
        vec![scenario_messages(4, 1)],
    )
    .await;

    let twice = Arc::new(MemoryStore::new());
    let publisher = Arc::new(CountingPublisher::default());
    let (stats, _) = run_waves(
        twice.clone(),
        publisher.clone(),
        SHORT_HOLD,
        vec![scenario_messages(4, 3)],
    )
    .await;
    // At most one DLQ topic message per payment, however often it was delivered.
    assert_eq!(publisher.unmatched.len(), 11);
    assert!(publisher.unmatched.iter().all(|e| *e.value() == 1));
    // And the whole feed again, after everything is durable, through a fresh pipeline (as
    // after a restart): every message repeats a durable effect.
    let (stats2, source2) = run_waves(
        twice.clone(),
        Arc::new(TableOnly),
        SHORT_HOLD,
        vec![scenario_messages(4, 1)],
    )
    .await;

    assert_eq!(
        all_facts(once.as_ref()).await,
        all_facts(twice.as_ref()).await
    );
    let (a, b) = (
        all_dead_letters(once.as_ref()).await,
        all_dead_letters(twice.as_ref()).await,
    );
    assert_eq!(a.len(), 11);
    assert_eq!(
        a.values().map(|e| &e.payment).collect::<Vec<_>>(),
        b.values().map(|e| &e.payment).collect::<Vec<_>>()
    );
    assert!(stats.snapshot().duplicates > 0, "{:?}", stats.snapshot());
    // A fresh pipeline has an empty dedup window, so the second run rewrites rows and
    // re-upserts DLQ entries (idempotently): it acks everything and changes nothing.
    assert_eq!(source2.counts().acked, 71);
    assert_eq!(stats2.snapshot().write_failures, 0);
}

#[actix_rt::test]
async fn invalid_payloads_are_recorded_with_a_reason_and_the_rest_completes() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let mut mock = MockData::new(5);
    let garbage: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut msgs = vec![
        raw_msg(StreamKind::Orders, "bad-json", &b"{not json"[..]),
        raw_msg(StreamKind::Orders, "empty", &b""[..]),
        raw_msg(StreamKind::Payments, "garbage", garbage.clone()),
        raw_msg(StreamKind::Payments, "wrong-type", &br#"{"payment_id":"x","order_id":1,"payment_method":"m","card_last_four":"1","payment_status":"s","payment_datetime":"d"}"#[..]),
        raw_msg(StreamKind::Orders, "negative-price", &br#"{"order_id":3,"customer_id":1,"item":"x","quantity":1,"price":-1.0,"shipping_address":"a","order_status":"s","creation_date":"d"}"#[..]),
        raw_msg(StreamKind::Orders, "missing-field", &br#"{"order_id":3}"#[..]),
    ];
    for i in 1..=10 {
        msgs.insert(i as usize % 5, order_msg(&mut mock, i, ""));
        msgs.push(payment_msg(&mut mock, 3000 + i, i, ""));
    }
    let store = Arc::new(MemoryStore::new());
    let publisher = Arc::new(CountingPublisher::default());
    let (stats, source) = run_waves(store.clone(), publisher.clone(), LONG_HOLD, vec![msgs]).await;

    assert_eq!(stats.snapshot().invalid, 6);
    assert_eq!(publisher.invalid.load(Ordering::SeqCst), 6);
    let invalid = all_invalid(store.as_ref()).await;
    assert_eq!(invalid.len(), 6);
    let by_id = |id: &str| invalid.iter().find(|m| m.message_id == id).unwrap();
    assert!(by_id("empty").error.contains("empty"));
    assert!(by_id("missing-field").error.contains("missing field"));
    assert!(by_id("negative-price").error.contains("price"));
    assert!(by_id("wrong-type").error.contains("invalid type"));
    assert_eq!(by_id("garbage").payload, garbage);
    assert_eq!(by_id("garbage").source, StreamKind::Payments);
    assert!(invalid
        .iter()
        .all(|m| !m.error.is_empty() && m.error.len() <= 200));
    // The valid traffic around them completed, and every message was acked.
    let rows = all_facts(store.as_ref()).await;
    assert_eq!(rows.len(), 10);
    assert!(rows.values().all(|r| r.has_order() && r.has_payment()));
    assert_eq!(source.counts().acked, 26);
}

#[actix_rt::test]
async fn a_store_that_fails_transiently_loses_nothing() {
    // The hold follows the test's clock, not the machine's speed.
    tokio::time::pause();
    let mut mock = MockData::new(6);
    let mut msgs = Vec::new();
    for i in 1..=300 {
        msgs.push(order_msg(&mut mock, i, ""));
        msgs.push(payment_msg(&mut mock, 5000 + i, i, ""));
    }
    // More consecutive failures than one write's retries (at most 4 writes in flight, 3
    // tries each): the writer sees an outage and holds its rows, retrying them with backoff
    // until the store takes them, instead of nacking them into a redelivery loop.
    let store = HookedStore::new(FailFirst {
        failures: 30,
        ..FailFirst::default()
    });
    let (stats, source) =
        run_waves(store.clone(), Arc::new(TableOnly), LONG_HOLD, vec![msgs]).await;

    let rows = all_facts(store.as_ref()).await;
    assert_eq!(rows.len(), 300);
    assert!(rows
        .values()
        .all(|r| r.has_order() && r.payment_id == Some(5000 + r.order_id)));
    let s = stats.snapshot();
    assert!(s.write_retries >= 3, "{s:?}");
    let c = source.counts();
    // A refusal is the store's state, never a row's: nothing is nacked, not even a batch
    // refused while another got through (issue 19).
    assert_eq!((c.nacked, s.write_failures), (0, 0), "{c:?} {s:?}");
    assert_eq!(c.acked, 600);
    assert_eq!(c.outstanding, 0);
}

#[actix_rt::test]
async fn a_stalled_store_stops_intake_and_nothing_is_acked_before_its_write() {
    const TOTAL: i64 = 100_000;
    let mut mock = MockData::new(7);
    let msgs: Vec<Message> = (1..=TOTAL).map(|i| order_msg(&mut mock, i, "")).collect();
    let store = HookedStore::new(Gate::default());
    let stats = Arc::new(Stats::default());
    let cfg = ecom_stream::config::EngineConfig {
        mailbox_capacity: 4,
        max_in_flight: 2,
        ..engine(LONG_HOLD)
    };
    let pipeline =
        Pipeline::start(&cfg, store.clone(), Arc::new(TableOnly), stats.clone()).unwrap();
    // Source flow control far above the pipeline's own bounds, so only they can stop it.
    let source = InProcessSource::new(SourceOptions {
        max_outstanding: TOTAL as usize,
        ..SourceOptions::default()
    });
    let feeder = spawn_delivery(&source, &pipeline, msgs, Shutdown::never());

    // Wait until the writer is blocked on the store and the intake has stopped moving.
    eventually("writes reach the stalled store", || {
        store.hook.arrived.load(Ordering::SeqCst) >= 2
    })
    .await;
    let mut last = 0;
    let mut unchanged = 0;
    while unchanged < 20 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = source.counts().delivered;
        unchanged = if now == last { unchanged + 1 } else { 0 };
        last = now;
    }
    let stalled = source.counts();
    assert_eq!(
        stalled.acked, 0,
        "acked before any write completed: {stalled:?}"
    );
    // Everything that can be in the pipeline: the source's deliveries in the air, each
    // shard's mailbox plus the batch in hand, the writer's mailbox, buffer and writes.
    let batch = SourceOptions::default().batch_size as u64;
    let bound = 4 * batch
        + cfg.shards as u64 * (cfg.mailbox_capacity as u64 + 4 + 1) * batch
        + (cfg.mailbox_capacity as u64 + cfg.shards as u64 + 1) * batch
        + cfg.max_in_flight as u64 * cfg.batch_size as u64
        + cfg.batch_size as u64;
    assert!(
        stalled.delivered <= bound,
        "intake did not stop: {stalled:?}, bound {bound}"
    );
    assert!(stalled.delivered < TOTAL as u64);
    assert!(all_facts(store.as_ref()).await.is_empty());

    // Unblock: everything flows and completes.
    store.hook.open();
    assert_eq!(feeder.await.unwrap(), Delivery::Completed);
    assert_eq!(pipeline.shutdown().await, Drained::Clean);
    assert_eq!(all_facts(store.as_ref()).await.len(), TOTAL as usize);
    assert_eq!(source.counts().acked, TOTAL as u64);
}

/// Shutdown in the middle of an in-process source's feed: the source's delivery ends as
/// interrupted and every delivery is answered (acked, or nacked and waiting for a
/// redelivery). Which messages were acked, by id, is checked in
/// [`shutdown_acks_only_what_was_written_and_nacks_held_payments`].
#[actix_rt::test]
async fn shutdown_answers_every_delivery_of_an_interrupted_source() {
    let mut mock = MockData::new(8);
    let mut msgs: Vec<Message> = (1..=20)
        .map(|i| payment_msg(&mut mock, 9000 + i, 100_000 + i, ""))
        .collect();
    msgs.extend((1..=20_000).map(|i| order_msg(&mut mock, i, "")));
    let store = Arc::new(MemoryStore::new());
    let (pipeline, _) = start_pipeline(&engine(LONG_HOLD), store.clone());
    let source = InProcessSource::new(SourceOptions {
        max_outstanding: 2_000,
        ..SourceOptions::default()
    });
    let (trigger, listener) = shutdown::channel();
    let feeder = spawn_delivery(&source, &pipeline, msgs, listener);
    eventually("some orders are acked", || source.counts().acked >= 1_000).await;
    trigger.trigger();
    assert_eq!(feeder.await.unwrap(), Delivery::Interrupted);
    assert_eq!(pipeline.shutdown().await, Drained::Clean);

    // Nothing is left in the air: every delivery is answered (deliveries still on their way
    // when the actors stopped are nacked as the stopped actors drop them). The nacked ones
    // stay outstanding, waiting for a redelivery that this stopped run will not make.
    eventually("every delivery answered", || {
        let c = source.counts();
        c.outstanding == c.awaiting_redelivery
    })
    .await;
    let c = source.counts();
    // The held payments (their orders never came) were nacked for redelivery, not acked.
    assert!(c.nacked >= 20, "{c:?}");
    assert!(all_dead_letters(store.as_ref()).await.is_empty());
}

/// Shutdown in the middle of a feed acks only messages whose effect is written, checked by
/// id: every acked order has its row, none of the held payments (their orders never come)
/// is acked, and every delivery is answered exactly once. The feed is a source stand-in
/// that records each answer under its message id (the in-process source only counts).
#[actix_rt::test]
async fn shutdown_acks_only_what_was_written_and_nacks_held_payments() {
    const OUTSTANDING: usize = 2_000;
    let mut mock = MockData::new(8);
    let mut msgs: Vec<Message> = (1..=20)
        .map(|i| payment_msg(&mut mock, 9000 + i, 100_000 + i, ""))
        .collect();
    msgs.extend((1..=20_000).map(|i| order_msg(&mut mock, i, "")));
    let held: BTreeSet<String> = msgs[..20].iter().map(|m| m.message_id.clone()).collect();
    let store = Arc::new(MemoryStore::new());
    let (pipeline, _) = start_pipeline(&engine(LONG_HOLD), store.clone());
    let answers = Arc::new(Answers::default());
    let (trigger, mut listener) = shutdown::channel();
    // Deliveries of 500, at most OUTSTANDING unanswered, until shutdown begins; returns how
    // many messages it handed over.
    let feeder = {
        let (intake, answers) = (pipeline.intake(), answers.clone());
        actix_rt::spawn(async move {
            let mut submitted = 0;
            for chunk in msgs.chunks(500) {
                loop {
                    if listener.is_triggered() {
                        return submitted;
                    }
                    let answered = answers.acked().len() + answers.nacked().len();
                    if submitted + chunk.len() <= answered + OUTSTANDING {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                        _ = listener.wait() => return submitted,
                    }
                }
                let batch = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        recorded_envelope(m.clone(), (submitted + i + 1) as i64, &answers)
                    })
                    .collect();
                submitted += chunk.len();
                if intake.submit(batch).await.is_err() {
                    return submitted;
                }
            }
            submitted
        })
    };
    eventually("some orders are acked", || answers.acked().len() >= 1_000).await;
    trigger.trigger();
    let submitted = feeder.await.unwrap();
    assert_eq!(pipeline.shutdown().await, Drained::Clean);
    eventually("every delivery answered", || {
        answers.acked().len() + answers.nacked().len() == submitted
    })
    .await;

    let (acked, nacked) = (answers.acked(), answers.nacked());
    let mut answered: Vec<&String> = acked.iter().chain(&nacked).collect();
    answered.sort();
    let twice: Vec<&&String> = answered
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    assert!(acked.len() < 20_020, "shutdown came after the whole feed");

    // The held payments were nacked for redelivery, not acked, and nothing was
    // dead-lettered.
    let held_acked: Vec<&String> = acked.iter().filter(|id| held.contains(*id)).collect();
    assert!(held_acked.is_empty(), "held payments acked: {held_acked:?}");
    let held_nacked: BTreeSet<String> = nacked
        .iter()
        .filter(|id| held.contains(*id))
        .cloned()
        .collect();
    assert_eq!(held_nacked, held, "every held payment is nacked");
    assert!(all_dead_letters(store.as_ref()).await.is_empty());

    // Every acked order's effect is in the store: its row, with its order.
    let rows = all_facts(store.as_ref()).await;
    let missing: Vec<i64> = acked
        .iter()
        .map(|id| {
            id.strip_prefix("order-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("acked {id:?}, which is no order"))
        })
        .filter(|id| !rows.get(id).is_some_and(|r| r.has_order()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acked orders have no row: {missing:?}",
        missing.len(),
        acked.len()
    );
}

#[actix_rt::test]
async fn flow_control_bounds_messages_and_bytes_even_while_redelivering() {
    let mut mock = MockData::new(9);
    let mut msgs: Vec<Message> = (1..=600).map(|i| order_msg(&mut mock, i, "")).collect();
    for i in 0..20 {
        msgs.push(raw_msg(
            StreamKind::Payments,
            &format!("big-{i}"),
            vec![b'x'; 1 << 20],
        ));
    }
    // Failing writes hold rows (an outage) or send some back for redelivery: held and
    // waiting messages still count against the bounds.
    let store = HookedStore::new(FailFirst {
        failures: 30,
        ..FailFirst::default()
    });
    let (pipeline, _) = start_pipeline(&engine(LONG_HOLD), store.clone());
    let source = InProcessSource::new(SourceOptions {
        max_outstanding: 100,
        max_outstanding_bytes: 3 << 20,
        ..SourceOptions::default()
    });
    let outcome = source
        .deliver(msgs, &pipeline.intake(), &Shutdown::never())
        .await;
    assert_eq!(outcome, Delivery::Completed);
    assert_eq!(pipeline.shutdown().await, Drained::Clean);

    let c = source.counts();
    assert!(c.outstanding_high_water <= 100, "{c:?}");
    assert!(c.outstanding_bytes_high_water <= 3 << 20, "{c:?}");
    assert_eq!(c.acked, 620);
    assert_eq!(all_facts(store.as_ref()).await.len(), 600);
    assert_eq!(all_invalid(store.as_ref()).await.len(), 20);
}

#[actix_rt::test]
async fn a_stalled_dlq_write_acks_nothing_before_it_lands() {
    let mut mock = MockData::new(10);
    let mut msgs: Vec<Message> = (0..5)
        .map(|i| raw_msg(StreamKind::Orders, &format!("bad-{i}"), &b"{oops"[..]))
        .collect();
    // Payments whose order never comes: dead-lettered after the hold.
    msgs.extend((1..=5).map(|i| payment_msg(&mut mock, 800 + i, 80_000 + i, "")));
    let store = HookedStore::new(Gate::default());
    let (pipeline, _) = start_pipeline(&engine(SHORT_HOLD), store.clone());
    let source = InProcessSource::new(SourceOptions::default());
    let feeder = spawn_delivery(&source, &pipeline, msgs, Shutdown::never());
    // Both DLQ writes (invalid messages, then the unmatched payments) reach the store.
    eventually("both DLQ writes reach the stalled store", || {
        store.hook.arrived.load(Ordering::SeqCst) >= 2
    })
    .await;
    let c = source.counts();
    assert_eq!(c.acked, 0, "acked before the DLQ write landed: {c:?}");
    assert!(all_invalid(store.as_ref()).await.is_empty());
    assert!(all_dead_letters(store.as_ref()).await.is_empty());

    store.hook.open();
    assert_eq!(feeder.await.unwrap(), Delivery::Completed);
    assert_eq!(pipeline.shutdown().await, Drained::Clean);
    assert_eq!(source.counts().acked, 10);
    assert_eq!(all_invalid(store.as_ref()).await.len(), 5);
    assert_eq!(all_dead_letters(store.as_ref()).await.len(), 5);
}
