//! Unit tests of the fact writer's failure paths on a store that writes each batch as one
//! transaction: a poison row dead-lettered at its bound (our count and Pub/Sub's
//! `delivery_attempt`), and a store outage that holds rows behind the intake's gate.

use super::gate::StoreGate;
use super::tests::{order, Record};
use super::*;
use crate::config::RetryPolicy;
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
}

#[async_trait]
impl FactSink for BatchStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
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

#[actix_rt::test]
async fn a_row_the_store_always_rejects_is_dead_lettered_after_the_bound_and_acked() {
    use crate::dlq::dead_letter::DeadLetter;
    use crate::dlq::TableOnly;
    use crate::store::DeadLetterStore;

    let store = Arc::new(BatchStore {
        poison: 13,
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let dlq_store = Arc::new(MemoryStore::default());
    let options = fast_options();
    let dead_letter = DeadLetter::new(
        dlq_store.clone(),
        Arc::new(TableOnly),
        stats.clone(),
        options.retry.clone(),
        2,
        4,
    )
    .start();
    let writer = FactWriter::new(store.clone(), stats.clone(), options)
        .dead_letter_to(dead_letter.clone())
        .start();
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
    use crate::dlq::dead_letter::DeadLetter;
    use crate::dlq::TableOnly;

    let store = Arc::new(BatchStore {
        poison: 13,
        ..BatchStore::default()
    });
    let stats = Arc::new(Stats::default());
    let options = fast_options();
    let dead_letter = DeadLetter::new(
        Arc::new(MemoryStore::default()),
        Arc::new(TableOnly),
        stats.clone(),
        options.retry.clone(),
        2,
        4,
    )
    .start();
    let writer = FactWriter::new(store.clone(), stats.clone(), options)
        .dead_letter_to(dead_letter.clone())
        .start();
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
        // The first write with its retries (3), the rows one by one (3 probes), then 4
        // tries of the hold: refused 10 times in all.
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
