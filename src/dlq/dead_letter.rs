//! The `DeadLetter` actor: writes unmatched payments and invalid messages to their tables and
//! the DLQ topic, then answers their deliveries.
//!
//! Owns: the durable recording of everything the join could not turn into a row. Must never:
//! ack before the table write and the topic publish both succeeded, or take more records
//! than its in-flight bound (its handler blocks, so senders wait).

use crate::ack::AckHandle;
use crate::config::RetryPolicy;
use crate::dlq::{DlqPublisher, REASON_ORDER_NOT_FOUND};
use crate::model::Payment;
use crate::store::{now_micros, DlqEntry, InvalidMessage, Store};
use crate::telemetry::Stats;
use crate::writer::retry::with_retries;
use actix::prelude::*;
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
    store: Arc<dyn Store>,
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
}

impl DeadLetter {
    pub fn new(
        store: Arc<dyn Store>,
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
        }
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
        let (store, publisher, stats, retry) = (
            self.store.clone(),
            self.publisher.clone(),
            self.stats.clone(),
            self.retry.clone(),
        );
        self.in_background(async move {
            let table = with_retries(&retry, &stats, "write dlq_payments", || {
                store.put_dead_letters(&entries)
            })
            .await;
            if let Err(e) = table {
                tracing::error!(payments = entries.len(), error = %e, "DLQ table write failed; nacking for redelivery");
                Stats::incr(&stats.write_failures);
                return acks.into_iter().for_each(AckHandle::nack);
            }
            let topic = with_retries(&retry, &stats, "publish dlq topic", || {
                publisher.publish_unmatched(&entries)
            })
            .await;
            if let Err(e) = topic {
                tracing::error!(payments = entries.len(), error = %e, "DLQ topic publish failed; nacking for redelivery");
                Stats::incr(&stats.write_failures);
                return acks.into_iter().for_each(AckHandle::nack);
            }
            Stats::add(&stats.dead_lettered, entries.len() as u64);
            acks.into_iter().for_each(AckHandle::ack);
        })
    }
}

impl Handler<RecordInvalid> for DeadLetter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: RecordInvalid, _: &mut Self::Context) -> Self::Result {
        let (messages, acks): (Vec<InvalidMessage>, Vec<AckHandle>) =
            msg.0.into_iter().map(|r| (r.message, r.ack)).unzip();
        let (store, publisher, stats, retry) = (
            self.store.clone(),
            self.publisher.clone(),
            self.stats.clone(),
            self.retry.clone(),
        );
        self.in_background(async move {
            let table = with_retries(&retry, &stats, "write invalid_messages", || {
                store.put_invalid(&messages)
            })
            .await;
            if let Err(e) = table {
                tracing::error!(messages = messages.len(), error = %e, "invalid_messages write failed; nacking for redelivery");
                Stats::incr(&stats.write_failures);
                return acks.into_iter().for_each(AckHandle::nack);
            }
            let topic = with_retries(&retry, &stats, "publish dlq topic", || {
                publisher.publish_invalid(&messages)
            })
            .await;
            if let Err(e) = topic {
                tracing::error!(messages = messages.len(), error = %e, "DLQ topic publish failed; nacking for redelivery");
                Stats::incr(&stats.write_failures);
                return acks.into_iter().for_each(AckHandle::nack);
            }
            acks.into_iter().for_each(AckHandle::ack);
        })
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
