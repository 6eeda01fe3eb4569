//! The `DeadLetter` actor: writes unmatched payments and invalid messages to their tables and
//! the DLQ topic, then answers their deliveries.
//!
//! Owns: the durable recording of everything the join could not turn into a row. Must never:
//! ack before the table write and the topic publish both succeeded, or take more records
//! than its in-flight bound (its handler blocks, so senders wait).

use crate::ack::{self, AckHandle, DurableRoutes, NackReason};
use crate::clock::now_micros;
use crate::config::RetryPolicy;
use crate::dlq::{DlqPublisher, PublishError, REASON_ORDER_NOT_FOUND};
use crate::model::Payment;
use crate::retry::with_retries;
use crate::store::{DeadLetterStore, DlqEntry, InvalidMessage, StoreError};
use crate::telemetry::{Stats, StoreOp, WriterKind};
use actix::prelude::*;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A payment whose order is still unknown after its hold.
#[derive(Debug)]
pub struct UnmatchedPayment {
    pub payment: Payment,
    /// Its publish time (µs): replay writes the payment with it.
    pub ts: i64,
    pub ack: AckHandle,
}

/// A message that failed validation.
#[derive(Debug)]
pub struct InvalidRecord {
    pub message: InvalidMessage,
    pub ack: AckHandle,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct DeadLetterPayments(pub Vec<UnmatchedPayment>);

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordInvalid(pub Vec<InvalidRecord>);

/// Answers once every record in flight is written and answered.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

pub struct DeadLetter {
    /// The DLQ and invalid-message tables live here.
    store: Arc<dyn DeadLetterStore>,
    /// The DLQ topic (or [`TableOnly`](crate::dlq::TableOnly) without Pub/Sub).
    publisher: Arc<dyn DlqPublisher>,
    stats: Arc<Stats>,
    /// Retries of retriable store and publish errors.
    retry: RetryPolicy,
    /// One permit per write in flight: bounds memory and concurrency like the fact writer.
    in_flight: Arc<Semaphore>,
    /// All of `in_flight`'s permits: holding them all means nothing is in flight (`Flush`).
    max_in_flight: u32,
    /// Set on start: messages waiting before senders park.
    mailbox_capacity: usize,
    /// Where the notes of recorded payments go back to their shards' dedup windows.
    durable: Option<Arc<DurableRoutes>>,
}

impl DeadLetter {
    pub fn new(
        store: Arc<dyn DeadLetterStore>,
        publisher: Arc<dyn DlqPublisher>,
        stats: Arc<Stats>,
        retry: RetryPolicy,
        max_in_flight: usize,
        mailbox_capacity: usize,
    ) -> Self {
        let max_in_flight = max_in_flight.clamp(1, u32::MAX as usize) as u32;
        DeadLetter {
            store,
            publisher,
            stats,
            retry,
            in_flight: Arc::new(Semaphore::new(max_in_flight as usize)),
            max_in_flight,
            mailbox_capacity,
            durable: None,
        }
    }

    /// Sends the durable notes of recorded payments back to their shards through `routes`.
    pub fn durable_to(mut self, routes: Arc<DurableRoutes>) -> Self {
        self.durable = Some(routes);
        self
    }

    /// Waits for a permit, then runs `work` in the background holding it.
    fn in_background<F>(&self, work: F) -> AtomicResponse<Self, ()>
    where
        F: Future<Output = ()> + 'static,
    {
        let in_flight = self.in_flight.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let Ok(permit) = in_flight.acquire_owned().await else {
                    return;
                };
                actix_rt::spawn(async move {
                    work.await;
                    drop(permit);
                });
            }
            .into_actor(self),
        ))
    }
}

impl Actor for DeadLetter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity.max(1));
    }
}

/// What the DLQ records: written to its table, then published, by the same steps.
#[async_trait]
trait DlqRecord: Sized + Send + Sync + 'static {
    /// The table, for logs.
    const TABLE: &'static str;
    async fn write(store: &dyn DeadLetterStore, records: &[Self]) -> Result<(), StoreError>;
    async fn publish(publisher: &dyn DlqPublisher, records: &[Self]) -> Result<(), PublishError>;
}

#[async_trait]
impl DlqRecord for DlqEntry {
    const TABLE: &'static str = "dlq_payments";
    async fn write(store: &dyn DeadLetterStore, records: &[Self]) -> Result<(), StoreError> {
        store.put_dead_letters(records).await
    }
    async fn publish(publisher: &dyn DlqPublisher, records: &[Self]) -> Result<(), PublishError> {
        publisher.publish_unmatched(records).await
    }
}

#[async_trait]
impl DlqRecord for InvalidMessage {
    const TABLE: &'static str = "invalid_messages";
    async fn write(store: &dyn DeadLetterStore, records: &[Self]) -> Result<(), StoreError> {
        store.put_invalid(records).await
    }
    async fn publish(publisher: &dyn DlqPublisher, records: &[Self]) -> Result<(), PublishError> {
        publisher.publish_invalid(records).await
    }
}

impl DeadLetter {
    /// Table first, then topic, each with retries; acks only if both succeeded, else nacks
    /// (the source redelivers, and both steps are idempotent by key). `on_success` counts.
    fn record<R: DlqRecord>(
        &self,
        records: Vec<R>,
        acks: Vec<AckHandle>,
        on_success: fn(&Stats, u64),
    ) -> AtomicResponse<Self, ()> {
        let (store, publisher, stats, retry, durable) = (
            self.store.clone(),
            self.publisher.clone(),
            self.stats.clone(),
            self.retry.clone(),
            self.durable.clone(),
        );
        self.in_background(async move {
            let _in_flight = stats.write_started(WriterKind::DeadLetter);
            let count = || Stats::incr(&stats.write_retries);
            let table = with_retries(&retry, R::TABLE, count, || R::write(store.as_ref(), &records)).await;
            // Only a refusal (a retriable error) says the store is down, as for the fact
            // writer: a record the store rejects for good must not hold /readyz at 503, nor
            // stop the join's holds from running out (design §4.3).
            match &table {
                Err(e) if !e.is_retriable() => {}
                other => stats.on_store_result(StoreOp::Write, other),
            }
            let done = match table {
                Ok(()) => with_retries(&retry, "publish dlq topic", count, || {
                    R::publish(publisher.as_ref(), &records)
                })
                .await
                .map_err(|e| crate::retry::chain(&e)),
                Err(e) => Err(format!("{} write failed: {}", R::TABLE, e.chain())),
            };
            match done {
                Ok(()) => {
                    on_success(&stats, records.len() as u64);
                    ack::settle(acks, durable.as_deref());
                }
                Err(e) => {
                    tracing::error!(table = R::TABLE, records = records.len(), error = %e, "nacking for redelivery");
                    Stats::incr(&stats.write_failures);
                    acks.into_iter()
                        .for_each(|a| a.nack(NackReason::DeadLetterFailed));
                }
            }
        })
    }
}

impl Handler<DeadLetterPayments> for DeadLetter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: DeadLetterPayments, _: &mut Self::Context) -> Self::Result {
        let now = now_micros();
        let (entries, acks): (Vec<DlqEntry>, Vec<AckHandle>) = msg
            .0
            .into_iter()
            .map(|u| {
                let entry = DlqEntry {
                    payment: u.payment,
                    reason: REASON_ORDER_NOT_FOUND.to_string(),
                    first_seen: now,
                    attempts: 0,
                    event_ts: u.ts,
                };
                (entry, u.ack)
            })
            .unzip();
        self.record(entries, acks, |stats, n| {
            Stats::add(&stats.dead_lettered, n)
        })
    }
}

impl Handler<RecordInvalid> for DeadLetter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: RecordInvalid, _: &mut Self::Context) -> Self::Result {
        let (messages, acks): (Vec<InvalidMessage>, Vec<AckHandle>) =
            msg.0.into_iter().map(|r| (r.message, r.ack)).unzip();
        // Counted as invalid where they were found (the intake); nothing to add here.
        self.record(messages, acks, |_, _| {})
    }
}

impl Handler<Flush> for DeadLetter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let in_flight = self.in_flight.clone();
        let all = self.max_in_flight;
        AtomicResponse::new(Box::pin(
            async move {
                let _all = in_flight.acquire_many(all).await;
            }
            .into_actor(self),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::Acknowledge;
    use crate::model::StreamKind;
    use crate::store::memory::MemoryStore;
    use crate::store::{Page, ReplayedEntry};
    use std::sync::Mutex;

    /// A store that rejects every invalid message for good (a constraint, a trigger) and is
    /// otherwise the memory store.
    #[derive(Default)]
    struct RejectsInvalid(MemoryStore);

    #[async_trait]
    impl DeadLetterStore for RejectsInvalid {
        async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
            self.0.put_dead_letters(entries).await
        }
        async fn scan_dead_letters(
            &self,
            after: Option<i64>,
            limit: usize,
        ) -> Result<Page<DlqEntry, i64>, StoreError> {
            self.0.scan_dead_letters(after, limit).await
        }
        async fn delete_dead_letters(
            &self,
            resolved: &[ReplayedEntry],
        ) -> Result<Vec<i64>, StoreError> {
            self.0.delete_dead_letters(resolved).await
        }
        async fn bump_dead_letter_attempts(&self, ids: &[i64]) -> Result<(), StoreError> {
            self.0.bump_dead_letter_attempts(ids).await
        }
        async fn put_invalid(&self, _: &[InvalidMessage]) -> Result<(), StoreError> {
            Err(StoreError::failed("invalid_messages: rejected by a check"))
        }
        async fn scan_invalid(
            &self,
            after: Option<(StreamKind, String)>,
            limit: usize,
        ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
            self.0.scan_invalid(after, limit).await
        }
    }

    /// Records how the message was answered.
    struct Answer(Arc<Mutex<Vec<bool>>>);

    impl Acknowledge for Answer {
        fn ack(self: Box<Self>) {
            self.0.lock().expect("answers").push(true);
        }
        fn nack(self: Box<Self>, _: NackReason) {
            self.0.lock().expect("answers").push(false);
        }
    }

    /// A record the store rejects for good is its own failure: it is nacked, and the store
    /// is not marked down (that would hold `/readyz` at 503 and stop every hold from
    /// running out, design §4.3, until some fact write happened to succeed).
    #[actix_rt::test]
    async fn a_record_rejected_for_good_does_not_mark_the_store_down() {
        let stats = Arc::new(Stats::default());
        let dead_letter = DeadLetter::new(
            Arc::new(RejectsInvalid::default()),
            Arc::new(crate::dlq::TableOnly),
            stats.clone(),
            RetryPolicy {
                max_attempts: 2,
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(2),
            },
            2,
            4,
        )
        .start();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let record = InvalidRecord {
            message: InvalidMessage {
                source: StreamKind::Orders,
                message_id: "m-1".into(),
                payload: bytes::Bytes::from_static(b"not json"),
                error: "not JSON".into(),
                received_at: 0,
            },
            ack: AckHandle::new(Answer(answers.clone())),
        };
        dead_letter
            .send(RecordInvalid(vec![record]))
            .await
            .expect("dead-letter actor alive");
        dead_letter
            .send(Flush)
            .await
            .expect("dead-letter actor alive");
        assert_eq!(*answers.lock().expect("answers"), vec![false]);
        assert!(
            !stats.store_failing(StoreOp::Write),
            "a row's own failure marked the store down"
        );
    }
}
