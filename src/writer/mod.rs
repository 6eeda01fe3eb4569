//! The fact writer: batches joined rows into store writes and answers each message only
//! once its row is durable (design §4.4, §4.7).
//!
//! Owns: the [`FactWriter`] actor, its batch buffer, its bound on writes in flight and its
//! retries. Must never: ack before the store confirmed, ack a failed write (it nacks, so the
//! source redelivers), or accept rows faster than the store takes them.
//!
//! Back-pressure: a full in-flight window keeps the handler from replying, and every sender
//! awaits the reply (`send().await`), so a shard stops until the writer takes its rows, the
//! intake stops until the shard does, and the source stops. Awaiting the reply is what
//! bounds the queues: actix 0.13's `send()` on a full mailbox retries through a fresh sender
//! clone that is let through, so the mailbox capacity alone is not a hard limit.

use crate::ack::{AckHandle, NackReason};
use crate::config::RetryPolicy;
use crate::retry::{self, Retriable};
use crate::rng::SplitMix64;
use crate::store::{FactSink, FactWrite, StoreError};
use crate::telemetry::{Stats, StoreOp, WriterKind};
use actix::prelude::*;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A row to write and the delivery (or deliveries) it answers.
#[derive(Debug)]
pub struct RowWithAck {
    pub write: FactWrite,
    pub ack: AckHandle,
}

/// Rows from a join shard. Answered once they are buffered or handed to a write.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WriteBatch(pub Vec<RowWithAck>);

/// Writes whatever is buffered and answers once every write in flight has finished.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

/// Tuning of one writer (see [`EngineConfig`](crate::config::EngineConfig) for each).
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rows per store write.
    pub batch_size: usize,
    /// Longest wait for a partial batch.
    pub linger: Duration,
    /// Store writes in flight at once.
    pub max_in_flight: usize,
    /// Messages the mailbox holds before senders park.
    pub mailbox_capacity: usize,
    /// Retries of retriable store errors.
    pub retry: RetryPolicy,
}

pub struct FactWriter {
    /// Where rows go; the only component that writes facts.
    store: Arc<dyn FactSink>,
    stats: Arc<Stats>,
    /// Batch size, linger, in-flight bound and retry policy, fixed at start.
    options: WriterOptions,
    /// Rows waiting for a full batch or the linger timer. At most `batch_size - 1` rows
    /// stay here between messages; full batches leave at once.
    buffer: Vec<RowWithAck>,
    /// One permit per store write in flight: the writer's bound on concurrency and memory.
    in_flight: Arc<Semaphore>,
    /// Whether a linger flush is scheduled for the rows in `buffer`.
    linger_armed: bool,
}

impl FactWriter {
    pub fn new(store: Arc<dyn FactSink>, stats: Arc<Stats>, options: WriterOptions) -> Self {
        let permits = options.max_in_flight.max(1);
        FactWriter {
            store,
            stats,
            buffer: Vec::new(),
            in_flight: Arc::new(Semaphore::new(permits)),
            linger_armed: false,
            options,
        }
    }

    /// Takes every full batch out of the buffer.
    fn take_full_batches(&mut self) -> Vec<Vec<RowWithAck>> {
        let size = self.options.batch_size.max(1);
        let mut batches = Vec::new();
        while self.buffer.len() >= size {
            let rest = self.buffer.split_off(size);
            batches.push(std::mem::replace(&mut self.buffer, rest));
        }
        batches
    }

    /// A future that starts each batch as a write once a permit is free. It resolves when
    /// every batch has started, not finished: finishing is the spawned write's job.
    fn dispatch(&self, batches: Vec<Vec<RowWithAck>>) -> impl Future<Output = ()> + 'static {
        let in_flight = self.in_flight.clone();
        let store = self.store.clone();
        let stats = self.stats.clone();
        let retry = self.options.retry.clone();
        async move {
            for batch in batches {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    // The semaphore is never closed; if it were, dropping the batch nacks it.
                    return;
                };
                let (store, stats, retry) = (store.clone(), stats.clone(), retry.clone());
                actix_rt::spawn(async move {
                    // In flight (and timed, for the latency histogram) while the permit is held.
                    let in_flight = stats.write_started(WriterKind::Facts);
                    write_batch(store.as_ref(), &stats, &retry, batch).await;
                    drop(in_flight);
                    drop(permit);
                });
            }
        }
    }

    fn arm_linger(&mut self, ctx: &mut Context<Self>) {
        if self.linger_armed || self.buffer.is_empty() {
            return;
        }
        self.linger_armed = true;
        ctx.run_later(self.options.linger, |act, ctx| {
            act.linger_armed = false;
            if act.buffer.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut act.buffer);
            // `wait`: no new rows are taken while this batch waits for a permit.
            ctx.wait(act.dispatch(vec![batch]).into_actor(act));
        });
    }
}

/// Counts one retry of one write.
fn count_retry(stats: &Stats) -> impl FnMut() + '_ {
    || Stats::incr(&stats.write_retries)
}

/// Writes one batch with retries, then answers every row of it. A batch that fails with an
/// error retrying cannot fix is written again row by row, so that one bad row is nacked
/// alone instead of taking a thousand good ones with it.
async fn write_batch(
    store: &dyn FactSink,
    stats: &Stats,
    retry: &RetryPolicy,
    batch: Vec<RowWithAck>,
) {
    let (writes, acks): (Vec<FactWrite>, Vec<AckHandle>) =
        batch.into_iter().map(|p| (p.write, p.ack)).unzip();
    // A store that reports each row: retry only the rows that failed, answer row by row.
    if let Some(first) = store.write_facts_per_row(&writes).await {
        let results = retry_failed_rows(store, stats, retry, &writes, first).await;
        answer_rows(stats, writes, acks, results);
        return;
    }
    let result = retry::with_retries(retry, "write facts", count_retry(stats), || {
        store.write_facts(&writes)
    })
    .await;
    stats.on_store_result(StoreOp::Write, &result);
    match result {
        Ok(()) => {
            count_written(stats, &writes);
            Stats::incr(&stats.writer_batches);
            acks.into_iter().for_each(AckHandle::ack);
        }
        Err(e) if !e.is_retriable() && writes.len() > 1 => {
            tracing::warn!(rows = writes.len(), error = %e.chain(), "batch write failed; writing its rows one by one to isolate the failing ones");
            for (write, ack) in writes.into_iter().zip(acks) {
                let one = std::slice::from_ref(&write);
                let result = retry::with_retries(retry, "write fact", count_retry(stats), || {
                    store.write_facts(one)
                })
                .await;
                stats.on_store_result(StoreOp::Write, &result);
                match result {
                    Ok(()) => {
                        count_written(stats, one);
                        ack.ack();
                    }
                    Err(e) => {
                        tracing::error!(order_id = write.order_id(), error = %e.chain(), "row write failed; nacking its message for redelivery");
                        Stats::incr(&stats.write_failures);
                        ack.nack(NackReason::WriteFailed);
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(rows = writes.len(), first_order_id = writes.first().map(FactWrite::order_id), error = %e.chain(), "write failed for good; nacking its messages for redelivery");
            Stats::incr(&stats.write_failures);
            acks.into_iter()
                .for_each(|a| a.nack(NackReason::WriteFailed));
        }
    }
}

/// Retries, through a per-row store, the rows whose first try failed retriably: each round
/// rewrites only the rows still failing retriably, after a backoff with full jitter, until
/// every row succeeded, failed for good, or was tried `retry.max_attempts` times. Each row
/// counts its own attempts (rows are independent requests), and a row that succeeded is
/// never written again.
async fn retry_failed_rows(
    store: &dyn FactSink,
    stats: &Stats,
    retry: &RetryPolicy,
    writes: &[FactWrite],
    first: Vec<Result<(), StoreError>>,
) -> Vec<Result<(), StoreError>> {
    let mut results = first;
    let mut rng = SplitMix64::from_entropy();
    for attempt in 1..retry.max_attempts {
        // `take`: outcomes beyond the rows given (a broken store) name no row to retry.
        let again: Vec<usize> = results
            .iter()
            .take(writes.len())
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_err_and(Retriable::is_retriable))
            .map(|(i, _)| i)
            .collect();
        if again.is_empty() {
            break;
        }
        let wait = retry::backoff(retry, attempt, &mut rng);
        tracing::warn!(
            rows = again.len(),
            attempt,
            first_order_id = writes[again[0]].order_id(),
            wait_ms = wait.as_millis() as u64,
            "retrying failed rows"
        );
        Stats::add(&stats.write_retries, again.len() as u64);
        tokio::time::sleep(wait).await;
        let rows: Vec<FactWrite> = again.iter().map(|&i| writes[i].clone()).collect();
        // A row the store gives no outcome for keeps its last (retriable) error.
        let outcomes = store.write_facts_per_row(&rows).await.unwrap_or_default();
        for (i, outcome) in again.into_iter().zip(outcomes) {
            results[i] = outcome;
        }
    }
    results
}

/// Acks each row whose write succeeded and nacks the others (a missing outcome nacks too:
/// a store that answers fewer rows than it was given must not get them acked).
fn answer_rows(
    stats: &Stats,
    writes: Vec<FactWrite>,
    acks: Vec<AckHandle>,
    results: Vec<Result<(), StoreError>>,
) {
    let mut results = results.into_iter();
    let mut failed = 0usize;
    for (write, ack) in writes.into_iter().zip(acks) {
        match results.next() {
            Some(Ok(())) => {
                count_written(stats, std::slice::from_ref(&write));
                ack.ack();
            }
            Some(Err(e)) => {
                tracing::error!(order_id = write.order_id(), error = %e.chain(), "row write failed after retries; nacking its message for redelivery");
                Stats::incr(&stats.write_failures);
                failed += 1;
                ack.nack(NackReason::WriteFailed);
            }
            None => {
                tracing::error!(
                    order_id = write.order_id(),
                    "store returned no outcome for a row; nacking it"
                );
                Stats::incr(&stats.write_failures);
                failed += 1;
                ack.nack(NackReason::WriteFailed);
            }
        }
    }
    if failed == 0 {
        Stats::incr(&stats.writer_batches);
    }
}

fn count_written(stats: &Stats, writes: &[FactWrite]) {
    let orders = writes
        .iter()
        .filter(|w| matches!(w, FactWrite::Order { .. }))
        .count() as u64;
    Stats::add(&stats.orders_upserted, orders);
    Stats::add(&stats.payments_upserted, writes.len() as u64 - orders);
}

impl Actor for FactWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.options.mailbox_capacity.max(1));
    }
}

impl Handler<WriteBatch> for FactWriter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: WriteBatch, ctx: &mut Self::Context) -> Self::Result {
        self.buffer.extend(msg.0);
        let full = self.take_full_batches();
        self.arm_linger(ctx);
        // Atomic: the next message waits until these batches have a permit.
        AtomicResponse::new(Box::pin(self.dispatch(full).into_actor(self)))
    }
}

impl Handler<Flush> for FactWriter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let rest = std::mem::take(&mut self.buffer);
        let start = self.dispatch(vec![rest].into_iter().filter(|b| !b.is_empty()).collect());
        let in_flight = self.in_flight.clone();
        let all = self.options.max_in_flight.max(1) as u32;
        AtomicResponse::new(Box::pin(
            async move {
                start.await;
                // Holding every permit at once means no write is in flight.
                let _all = in_flight.acquire_many(all).await;
            }
            .into_actor(self),
        ))
    }
}

#[cfg(test)]
mod tests;
