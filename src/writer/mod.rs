//! The fact writer: batches joined rows into store writes and answers each message only
//! once its row is durable (design §4.4, §4.7).
//!
//! Owns: the [`FactWriter`] actor, its batch buffer and its bound on writes in flight. Below
//! it: [`attempt`] (one write with the retry policy), [`outage`] (holding rows while the
//! store refuses writes), [`poison`] (bounded retries of a row that keeps failing, then the
//! dead-letter path) and [`gate`] (the intake's store-health gate). Must never: ack before
//! the store confirmed (or, for a poison row, before its dead letter is durable), or accept
//! rows faster than the store takes them.
//!
//! Back-pressure: a full in-flight window keeps the handler from replying, and every sender
//! awaits the reply (`send().await`), so a shard stops until the writer takes its rows, the
//! intake stops until the shard does, and the source stops. Awaiting the reply is what
//! bounds the queues: actix 0.13's `send()` on a full mailbox retries through a fresh sender
//! clone that is let through, so the mailbox capacity alone is not a hard limit.

mod attempt;
pub mod gate;
mod outage;
mod poison;

use crate::ack::{self, AckHandle, DurableRoutes};
use crate::config::RetryPolicy;
use crate::dlq::dead_letter::DeadLetter;
use crate::store::{FactSink, FactWrite, StoreError};
use crate::telemetry::{Stats, WriterKind};
use actix::prelude::*;
use gate::StoreGate;
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
    /// Failed writes of one row (across its deliveries) before it is dead-lettered as
    /// `write_failed`.
    pub max_write_attempts: u32,
}

/// What every write of one writer shares: the store, the policies, the gate, the failure
/// counts and the dead-letter path.
pub(crate) struct WriteContext {
    store: Arc<dyn FactSink>,
    stats: Arc<Stats>,
    retry: RetryPolicy,
    gate: Arc<StoreGate>,
    failures: poison::FailureCounts,
    /// Where poison rows go; without it (benches) they are nacked at every failure.
    dead_letter: Option<Addr<DeadLetter>>,
    /// Where the notes of written rows go back to their shards' dedup windows.
    durable: Option<Arc<DurableRoutes>>,
    max_write_attempts: u32,
}

pub struct FactWriter {
    /// Shared by the writes in flight: the store (written only here), policies, gate.
    ctx: Arc<WriteContext>,
    /// Batch size, linger and in-flight bound, fixed at start.
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
        let ctx = WriteContext {
            store,
            stats,
            retry: options.retry.clone(),
            gate: Arc::new(StoreGate::default()),
            failures: poison::FailureCounts::new(),
            dead_letter: None,
            durable: None,
            max_write_attempts: options.max_write_attempts.max(1),
        };
        FactWriter {
            ctx: Arc::new(ctx),
            buffer: Vec::new(),
            in_flight: Arc::new(Semaphore::new(permits)),
            linger_armed: false,
            options,
        }
    }

    /// Sends rows that failed `max_write_attempts` times to `dead_letter` (as `write_failed`).
    /// Call before starting the actor.
    pub fn dead_letter_to(mut self, dead_letter: Addr<DeadLetter>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.dead_letter = Some(dead_letter);
        }
        self
    }

    /// Sends the durable notes of written rows back to their shards through `routes`.
    /// Call before starting the actor.
    pub fn durable_to(mut self, routes: Arc<DurableRoutes>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.durable = Some(routes);
        }
        self
    }

    /// Closes and opens `gate` (the one the intake waits on) instead of a gate of its own.
    /// Call before starting the actor.
    pub fn with_gate(mut self, gate: Arc<StoreGate>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.gate = gate;
        }
        self
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
        let ctx = self.ctx.clone();
        async move {
            for batch in batches {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    // The semaphore is never closed; if it were, dropping the batch nacks it.
                    return;
                };
                let ctx = ctx.clone();
                actix_rt::spawn(async move {
                    // In flight (and timed, for the latency histogram) while the permit is held.
                    let in_flight = ctx.stats.write_started(WriterKind::Facts);
                    write_batch(&ctx, batch).await;
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

/// Writes one batch and answers every row of it: written rows are acked; rows the store
/// refuses because it is out are held until it takes them ([`outage`]); rows that fail on
/// their own go the [`poison`] way (nacked, or dead-lettered once their bound is reached).
///
/// Outage or row failure is the store's word, never a guess from what else was written: a
/// row refused with a retriable error (busy, locked, disk full, read-only, too few
/// replicas, timed out) met an outage and is held; only a row that failed for good failed
/// on its own. Guessing from other writes' success nacked whole batches at the start of an
/// outage (a batch that committed just before the disk filled made every batch refused
/// after it look like a batch of bad rows).
async fn write_batch(ctx: &WriteContext, batch: Vec<RowWithAck>) {
    // The rows are split, not cloned: the store takes the writes as a slice, and each
    // write is put back with its ack afterwards (a clone of every row cost as much as the
    // rest of the writer, docs/profile.md).
    let (writes, acks): (Vec<FactWrite>, Vec<AckHandle>) =
        batch.into_iter().map(|r| (r.write, r.ack)).unzip();
    let rows = writes.len();
    let results = attempt::with_policy(ctx, &writes).await;
    let rows_back = writes
        .into_iter()
        .zip(acks)
        .map(|(write, ack)| RowWithAck { write, ack });
    let refused = answer(ctx, rows_back.zip(results)).await;
    if refused.written == rows as u64 {
        Stats::incr(&ctx.stats.writer_batches);
    }
    if let Some(error) = refused.first_error {
        outage::hold_until_written(ctx, refused.rows, error).await;
    }
}

/// The rows of a write the store refused retriably (an outage), and its first such error.
struct Refused {
    rows: Vec<RowWithAck>,
    first_error: Option<StoreError>,
    /// Rows written by the same write (the outage guard counts them).
    written: u64,
}

/// Answers each row of one write by its result: the written rows are settled together
/// (their durable notes first), a row rejected for good goes the [`poison`] way, and the
/// rows refused retriably are handed back, to be held ([`outage`]).
async fn answer(
    ctx: &WriteContext,
    results: impl Iterator<Item = (RowWithAck, Result<(), StoreError>)>,
) -> Refused {
    let mut refused = Refused {
        rows: Vec::new(),
        first_error: None,
        written: 0,
    };
    let mut written = Vec::new();
    let mut failed = Vec::new();
    let mut orders = 0u64;
    for (row, result) in results {
        match result {
            Ok(()) => {
                orders += u64::from(matches!(row.write, FactWrite::Order { .. }));
                written.push(row.ack);
            }
            // A refusal is the store's state, never the row's: held, whatever became of
            // the others.
            Err(e) if e.is_retriable() => {
                refused.first_error.get_or_insert(e);
                refused.rows.push(row);
            }
            // The store took the call and rejected this row: bad on its own.
            Err(e) => failed.push((row, e)),
        }
    }
    refused.written = written.len() as u64;
    if refused.written > 0 {
        Stats::add(&ctx.stats.orders_upserted, orders);
        Stats::add(&ctx.stats.payments_upserted, refused.written - orders);
    }
    ack::settle(written, ctx.durable.as_deref());
    for (row, e) in failed {
        poison::row_failed(ctx, row, e).await;
    }
    refused
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
        // Flush is the drain at shutdown: rows held through an outage are nacked now, or
        // the wait below would last as long as the outage.
        self.ctx.gate.shut();
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
mod failure_tests;
#[cfg(test)]
mod tests;
