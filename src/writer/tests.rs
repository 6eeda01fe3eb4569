//! Unit tests of the fact writer's per-row path (stores whose rows are independent writes,
//! as Cassandra's are); the batch path is covered by the pipeline tests against the memory
//! store.

use super::*;
use crate::ack::Acknowledge;
use crate::config::RetryPolicy;
use crate::model::Order;
use crate::store::memory::MemoryStore;
use crate::store::FactReader;
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Answers rows one by one: row 13 fails for good; if `flaky`, row 7 is busy for two
/// tries and row 8 on every try. Counts how it was called, and each row's tries.
#[derive(Default)]
struct PerRowStore {
    inner: MemoryStore,
    batch_calls: AtomicU64,
    per_row_calls: AtomicU64,
    tries: Mutex<HashMap<i64, u32>>,
    /// Whether rows 7 and 8 are busy as described; otherwise they succeed at once.
    flaky: bool,
}

#[async_trait]
impl FactSink for PerRowStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        self.batch_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.write_facts(writes).await
    }
    async fn write_facts_per_row(
        &self,
        writes: &[FactWrite],
    ) -> Option<Vec<Result<(), StoreError>>> {
        self.per_row_calls.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        for w in writes {
            let id = w.order_id();
            let tries = {
                let mut tries = self.tries.lock().expect("lock");
                *tries.entry(id).or_insert(0) += 1;
                tries[&id]
            };
            out.push(if id == 13 {
                Err(StoreError::failed("row 13 is cursed"))
            } else if self.flaky && id == 7 && tries < 3 {
                Err(StoreError::unavailable("row 7 is busy twice"))
            } else if self.flaky && id == 8 {
                Err(StoreError::unavailable("row 8 is always busy"))
            } else {
                self.inner.write_facts(std::slice::from_ref(w)).await
            });
        }
        Some(out)
    }
}

/// Records each answer as (order_id, acked).
pub(super) struct Record(pub(super) i64, pub(super) Arc<Mutex<Vec<(i64, bool)>>>);

impl Acknowledge for Record {
    fn ack(self: Box<Self>) {
        self.1.lock().expect("lock").push((self.0, true));
    }
    fn nack(self: Box<Self>, _: crate::ack::NackReason) {
        self.1.lock().expect("lock").push((self.0, false));
    }
}

pub(super) fn order(id: i64) -> FactWrite {
    FactWrite::Order {
        order: Order {
            order_id: id,
            customer_id: 1,
            item: "x".into(),
            quantity: 1,
            price: 1.0,
            shipping_address: "a".into(),
            order_status: "s".into(),
            creation_date: "d".into(),
        },
        ts: 1,
    }
}

#[actix_rt::test]
async fn a_per_row_store_gets_each_batch_once_and_only_failed_rows_are_nacked() {
    let store = Arc::new(PerRowStore::default());
    let stats = Arc::new(Stats::default());
    let writer = FactWriter::new(
        store.clone(),
        stats.clone(),
        WriterOptions {
            batch_size: 100,
            linger: Duration::from_millis(1),
            max_in_flight: 2,
            mailbox_capacity: 4,
            retry: RetryPolicy::default(),
            max_write_attempts: 5,
        },
    )
    .start();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let rows: Vec<RowWithAck> = (1..=20)
        .map(|id| RowWithAck {
            write: order(id),
            ack: AckHandle::new(Record(id, answers.clone())),
        })
        .collect();
    writer.send(WriteBatch(rows)).await.expect("writer alive");
    writer.send(Flush).await.expect("writer alive");

    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 20);
    assert!(
        answers.iter().all(|(id, acked)| *acked == (*id != 13)),
        "{answers:?}"
    );
    assert_eq!(store.per_row_calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.batch_calls.load(Ordering::SeqCst),
        0,
        "the writer must not retry or re-split what the store already answered"
    );
    let s = stats.snapshot();
    assert_eq!(
        (s.orders_upserted, s.write_failures, s.write_retries),
        (19, 1, 0)
    );
    assert_eq!(store.inner.fact(13).await.expect("read"), None);
}

#[actix_rt::test]
async fn the_writer_retries_only_the_rows_that_failed_retriably_up_to_the_bound() {
    let store = Arc::new(PerRowStore {
        flaky: true,
        ..PerRowStore::default()
    });
    let stats = Arc::new(Stats::default());
    let writer = FactWriter::new(
        store.clone(),
        stats.clone(),
        WriterOptions {
            batch_size: 100,
            linger: Duration::from_millis(1),
            max_in_flight: 2,
            mailbox_capacity: 4,
            retry: RetryPolicy {
                max_attempts: 4,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
            max_write_attempts: 5,
        },
    )
    .start();
    let answers = Arc::new(Mutex::new(Vec::new()));
    let rows: Vec<RowWithAck> = (1..=20)
        .map(|id| RowWithAck {
            write: order(id),
            ack: AckHandle::new(Record(id, answers.clone())),
        })
        .collect();
    writer.send(WriteBatch(rows)).await.expect("writer alive");
    writer.send(Flush).await.expect("writer alive");

    let answers = answers.lock().expect("lock").clone();
    assert_eq!(answers.len(), 20, "{answers:?}");
    // Row 13 failed for good (nacked); row 8, still refused after the policy, was held as
    // an outage and nacked by the drain (Flush), never as a bad row.
    assert!(
        answers
            .iter()
            .all(|(id, acked)| *acked == (*id != 13 && *id != 8)),
        "{answers:?}"
    );
    let tries = store.tries.lock().expect("lock").clone();
    assert_eq!(
        (tries[&7], tries[&8], tries[&13], tries[&1]),
        (3, 4, 1, 1),
        "busy rows retried to success or the bound; others written once"
    );
    // The first try of all 20, then rows 7 and 8, 7 and 8, and 8 alone.
    assert_eq!(store.per_row_calls.load(Ordering::SeqCst), 4);
    assert_eq!(store.batch_calls.load(Ordering::SeqCst), 0);
    let s = stats.snapshot();
    assert_eq!(
        (s.orders_upserted, s.write_failures, s.write_retries),
        (18, 2, 5)
    );
    assert!(store.inner.fact(7).await.expect("read").is_some());
}
