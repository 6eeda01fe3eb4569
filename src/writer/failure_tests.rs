//! Unit tests of the fact writer's failure paths on a store that writes each batch as one
//! transaction: a poison row dead-lettered at its bound (our count and Pub/Sub's
//! `delivery_attempt`), and a store outage that holds rows behind the intake's gate.

use super::gate::StoreGate;
use super::tests::{order, Record};
use super::*;
use crate::config::RetryPolicy;
use crate::health::{Component, Readiness};
use crate::model::Order;
use crate::store::memory::MemoryStore;
use crate::store::FactReader;
use crate::store::StoreError;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A store that writes batches as one transaction (no per-row answers): any batch holding
/// order `poison` fails for good, as a trigger would make it; while `refuse` is above zero,
/// every write is refused retriably (an outage) and counts it down.
#[derive(Default)]
struct BatchStore {
    inner: MemoryStore,
    poison: i64,
    refuse: AtomicU64,
    tries_of_poison: AtomicU64,
    /// If set, each write looks at `/readyz`'s verdict first and counts the times it was
    /// not ready.
    readiness: Option<(Arc<Stats>, Readiness)>,
    seen_unready: AtomicU64,
}

#[async_trait]
impl FactSink for BatchStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        if let Some((stats, readiness)) = &self.readiness {
            if readiness.check(stats).is_err() {
                self.seen_unready.fetch_add(1, Ordering::SeqCst);
            }
        }
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(StoreError::unavailable("database is locked"));
        }
        if writes.iter().any(|w| w.order_id() == self.poison) {
            self.tries_of_poison.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::failed("trigger: order rejected"));
        }
        self.inner.write_facts(writes).await
    }
}

fn fast_options() -> WriterOptions {
    WriterOptions {
        batch_size: 10,
        linger: Duration::from_millis(1),
        max_in_flight: 2,
        mailbox_capacity: 4,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        },
        max_write_attempts: 3,
    }
}

/// A delivery of order `id` as the intake hands it on: with its message id.
fn delivered(id: i64, answers: &Arc<Mutex<Vec<(i64, bool)>>>) -> RowWithAck {
    RowWithAck {
        write: order(id),
        ack: AckHandle::new(Record(id, answers.clone())).with_origin(crate::ack::Origin {
            message_id: format!("m-{id}"),
            delivery_attempt: None,
        }),
    }
}

/// A writer on `store` whose poison rows go to a dead-letter actor on `dlq_store` (the
/// table only, two tries per write, four in flight): the writer, then the dead-letter actor.
fn writer_with_dead_letter(
    store: Arc<BatchStore>,
    dlq_store: Arc<MemoryStore>,
    stats: &Arc<Stats>,
) -> (
    actix::Addr<FactWriter>,
    actix::Addr<crate::dlq::dead_letter::DeadLetter>,
) {
    use crate::dlq::dead_letter::DeadLetter;
    use crate::dlq::TableOnly;
    let options = fast_options();
    let dead_letter = DeadLetter::new(
        dlq_store,
        Arc::new(TableOnly),
        stats.clone(),
        options.retry.clone(),
        2,
        4,
    )
    .start();
    let writer = FactWriter::new(store, stats.clone(), options)
        .dead_letter_to(dead_letter.clone())
        .start();
    (writer, dead_letter)
}

#[actix_rt::test]
async fn a_row_the_store_always_rejects_is_dead_lettered_after_the_bound_and_acked() {
    use crate::store::DeadLetterStore;

    let store = Arc::new(BatchStore {
        poison: 13,
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let dlq_store = Arc::new(MemoryStore::default());
    let (writer, dead_letter) = writer_with_dead_letter(store.clone(), dlq_store.clone(), &stats);
    let answers = Arc::new(Mutex::new(Vec::new()));
    // The first delivery of 1..=20; then row 13 comes back after each nack, as a source
    // redelivers it, until it is answered with an ack.
    let first: Vec<RowWithAck> = (1..=20).map(|id| delivered(id, &answers)).collect();
    writer.send(WriteBatch(first)).await.expect("writer alive");
    let mut deliveries_of_13 = 1;
    loop {
        writer.send(Flush).await.expect("writer alive");
        dead_letter
            .send(crate::dlq::dead_letter::Flush)
            .await
            .expect("dead-letter actor alive");
        let last_13 = answers
            .lock()
            .expect("lock")
            .iter()
            .rev()
            .find(|(id, _)| *id == 13)
            .copied();
        if last_13 == Some((13, true)) {
            break;
        }
        assert!(
            deliveries_of_13 < 10,
            "row 13 loops: {answers:?}",
            answers = answers.lock()
        );
        deliveries_of_13 += 1;
        writer
            .send(WriteBatch(vec![delivered(13, &answers)]))
            .await
            .expect("writer alive");
    }

    assert_eq!(
        deliveries_of_13, 3,
        "dead-lettered at the third failed delivery"
    );
    let answers = answers.lock().expect("lock").clone();
    let acked: Vec<i64> = answers.iter().filter(|a| a.1).map(|a| a.0).collect();
    let mut expected: Vec<i64> = (1..=20).collect();
    let mut got = acked.clone();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected, "every row acked once: {answers:?}");
    assert_eq!(
        answers
            .iter()
            .filter(|a| !a.1)
            .map(|a| a.0)
            .collect::<Vec<_>>(),
        vec![13, 13],
        "only row 13 nacked, twice"
    );
    for id in (1..=20).filter(|id| *id != 13) {
        assert!(
            store.inner.fact(id).await.expect("read").is_some(),
            "row {id}"
        );
    }
    assert_eq!(store.inner.fact(13).await.expect("read"), None);
    let invalid = dlq_store.scan_invalid(None, 10).await.expect("scan").items;
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    assert_eq!(invalid[0].message_id, "m-13");
    assert_eq!(invalid[0].source, crate::model::StreamKind::Orders);
    assert!(
        invalid[0].error.starts_with("write_failed: ")
            && invalid[0].error.contains("trigger: order rejected"),
        "{}",
        invalid[0].error
    );
    let back: Order = serde_json::from_slice(&invalid[0].payload).expect("wire JSON");
    assert_eq!(back.order_id, 13);
    let s = stats.snapshot();
    assert_eq!((s.write_failures, s.write_dead_lettered), (3, 1));
}

#[actix_rt::test]
async fn pubsubs_delivery_attempt_counts_toward_the_bound() {
    let store = Arc::new(BatchStore {
        poison: 13,
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let (writer, dead_letter) =
        writer_with_dead_letter(store.clone(), Arc::new(MemoryStore::default()), &stats);
    let answers = Arc::new(Mutex::new(Vec::new()));
    // A fresh writer (a restart forgot the counts), but Pub/Sub says this is attempt 3.
    let row = RowWithAck {
        write: order(13),
        ack: AckHandle::new(Record(13, answers.clone())).with_origin(crate::ack::Origin {
            message_id: "m-13".into(),
            delivery_attempt: Some(3),
        }),
    };
    writer
        .send(WriteBatch(vec![row]))
        .await
        .expect("writer alive");
    writer.send(Flush).await.expect("writer alive");
    dead_letter
        .send(crate::dlq::dead_letter::Flush)
        .await
        .expect("dead-letter actor alive");
    assert_eq!(answers.lock().expect("lock").clone(), vec![(13, true)]);
    assert_eq!(stats.snapshot().write_dead_lettered, 1);
}

#[actix_rt::test]
async fn an_outage_holds_rows_closes_the_gate_and_nacks_nothing() {
    let store = Arc::new(BatchStore {
        poison: -1,
        // The first write with its retries (3), then 7 tries of the hold: refused 10 times
        // in all.
        refuse: AtomicU64::new(10),
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let gate = Arc::new(StoreGate::default());
    let writer = FactWriter::new(store.clone(), stats.clone(), fast_options())
        .with_gate(gate.clone())
        .start();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let rows: Vec<RowWithAck> = (1..=10).map(|id| delivered(id, &answers)).collect();
    writer.send(WriteBatch(rows)).await.expect("writer alive");
    // The gate closes while the rows are held …
    let closed = async {
        while gate.is_open(&stats) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the gate closes during the outage");
    assert!(
        !stats.store_up(),
        "/readyz reports the store down meanwhile"
    );
    // … and opens once they are written.
    tokio::time::timeout(Duration::from_secs(30), gate.wait_open(&stats))
        .await
        .expect("the gate opens after the outage")
        .expect("not shut");
    writer.send(Flush).await.expect("writer alive");
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 10, "{answers:?}");
    assert!(answers.iter().all(|a| a.1), "nothing nacked: {answers:?}");
    assert_eq!(store.refuse.load(Ordering::SeqCst), 0);
    assert!(stats.store_up());
    assert_eq!(stats.snapshot().write_failures, 0);
}

#[actix_rt::test]
async fn shutdown_nacks_rows_held_through_an_outage() {
    let store = Arc::new(BatchStore {
        poison: -1,
        refuse: AtomicU64::new(u64::MAX),
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let gate = Arc::new(StoreGate::default());
    let writer = FactWriter::new(store.clone(), stats.clone(), fast_options())
        .with_gate(gate.clone())
        .start();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let rows: Vec<RowWithAck> = (1..=4).map(|id| delivered(id, &answers)).collect();
    writer.send(WriteBatch(rows)).await.expect("writer alive");
    let closed = async {
        while gate.is_open(&stats) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the gate closes during the outage");
    // Flush (the drain) returns although the store never comes back.
    tokio::time::timeout(Duration::from_secs(30), writer.send(Flush))
        .await
        .expect("the drain does not wait for the outage")
        .expect("writer alive");
    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 4);
    assert!(answers.iter().all(|a| !a.1), "{answers:?}");
}

/// A writer context on `store`, as the actor builds it, for the attempt functions.
fn context(store: Arc<dyn FactSink>, stats: Arc<Stats>) -> WriteContext {
    let options = fast_options();
    WriteContext {
        store,
        stats,
        retry: options.retry,
        gate: Arc::new(StoreGate::default()),
        failures: poison::FailureCounts::new(),
        dead_letter: None,
        durable: None,
        max_write_attempts: options.max_write_attempts,
    }
}

/// Refuses every write as SQLite does under another connection's lock, after failing the
/// first call (the whole batch) for good if `first_fails_for_good`.
struct Refusing {
    calls: AtomicU64,
    first_fails_for_good: bool,
}

#[async_trait]
impl FactSink for Refusing {
    async fn write_facts(&self, _: &[FactWrite]) -> Result<(), StoreError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call == 0 && self.first_fails_for_good {
            return Err(StoreError::failed("write_facts: trigger: order rejected"));
        }
        Err(StoreError::unavailable_from(
            "write_facts (orders_payments_facts)",
            std::io::Error::other("database is locked"),
        ))
    }
}

#[actix_rt::test]
async fn the_errors_of_a_large_refused_batch_stay_bounded_and_all_say_retry() {
    for first_fails_for_good in [false, true] {
        let store = Arc::new(Refusing {
            calls: AtomicU64::new(0),
            first_fails_for_good,
        });
        let ctx = context(store.clone(), Arc::new(Stats::default()));
        let writes: Vec<FactWrite> = (1..=1000).map(order).collect();
        let results = attempt::with_policy(&ctx, &writes).await;
        assert_eq!(results.len(), 1000);
        let longest = results
            .iter()
            .map(|r| r.as_ref().err().map_or(0, |e| e.chain().len()))
            .max()
            .unwrap_or(0);
        assert!(
            longest <= 400,
            "an error of {longest} bytes (first_fails_for_good={first_fails_for_good}): {:.200}",
            results[999]
                .as_ref()
                .err()
                .map(StoreError::chain)
                .unwrap_or_default()
        );
        // Every row failed as a refusal (to be held), apart from the batch's own error
        // when it failed for good (rows are then tried one by one).
        let retriable = results
            .iter()
            .filter(|r| r.as_ref().is_err_and(StoreError::is_retriable))
            .count();
        assert_eq!(
            retriable, 1000,
            "first_fails_for_good={first_fails_for_good}"
        );
        // Refused batch: its retries only. Split batch: the batch, then 3 rows refused in
        // a row, and the store is taken to be out: no call per row.
        let calls = store.calls.load(Ordering::SeqCst);
        assert_eq!(calls, if first_fails_for_good { 4 } else { 3 });
        let once = attempt::once(&ctx, &writes).await;
        assert!(once.iter().all(|r| r
            .as_ref()
            .is_err_and(|e| e.is_retriable() && e.chain().len() <= 400)));
    }
}

#[actix_rt::test]
async fn a_poison_row_never_makes_the_store_unready() {
    let stats = Arc::new(Stats::default());
    let readiness = Readiness::new();
    readiness.register(Component::Store);
    readiness.set(Component::Store, true);
    let store = Arc::new(BatchStore {
        poison: 13,
        readiness: Some((stats.clone(), readiness)),
        ..BatchStore::default()
    });
    let (writer, dead_letter) =
        writer_with_dead_letter(store.clone(), Arc::new(MemoryStore::default()), &stats);
    let answers = Arc::new(Mutex::new(Vec::new()));
    let first: Vec<RowWithAck> = (1..=20).map(|id| delivered(id, &answers)).collect();
    writer.send(WriteBatch(first)).await.expect("writer alive");
    // Row 13 comes back after each nack until it is dead-lettered (the third failure).
    for _ in 0..2 {
        writer.send(Flush).await.expect("writer alive");
        writer
            .send(WriteBatch(vec![delivered(13, &answers)]))
            .await
            .expect("writer alive");
    }
    writer.send(Flush).await.expect("writer alive");
    dead_letter
        .send(crate::dlq::dead_letter::Flush)
        .await
        .expect("dead-letter actor alive");

    assert_eq!(
        stats.snapshot().write_dead_lettered,
        1,
        "row 13 dead-lettered"
    );
    assert!(
        store.tries_of_poison.load(Ordering::SeqCst) >= 4,
        "the batch and row 13 on its own failed"
    );
    assert_eq!(
        store.seen_unready.load(Ordering::SeqCst),
        0,
        "/readyz stayed ready through every failure of row 13"
    );
    assert!(stats.store_up());
}
