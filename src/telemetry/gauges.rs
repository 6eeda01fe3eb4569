//! The live values only their owners can measure: mailbox depths, writes in flight, the
//! pending buffers, the store's health; and the kinds they are labelled by.
//!
//! Owns: [`Gauges`] (inside [`Stats`](super::Stats)), [`WriteInFlight`] (which also times
//! each fact write into the latency histogram) and [`GaugeSnapshot`]. Must never: hold a
//! lock across an await, or count an event (events are the counters of `Stats`).

use super::latency::{LatencyHistogram, LatencySnapshot};
use super::{lock, Stats};
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// What kind of store call an outcome is about (see [`Stats::on_store_result`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Read = 1,
    Write = 2,
}

/// The kinds of actor whose mailboxes are measured (by their senders: messages sent and not
/// yet answered, so queued plus the one being handled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    JoinShard = 0,
    FactWriter = 1,
    DeadLetter = 2,
}

impl ActorKind {
    pub const ALL: [ActorKind; 3] = [
        ActorKind::JoinShard,
        ActorKind::FactWriter,
        ActorKind::DeadLetter,
    ];

    /// The `actor` label value.
    pub fn label(self) -> &'static str {
        match self {
            ActorKind::JoinShard => "join_shard",
            ActorKind::FactWriter => "fact_writer",
            ActorKind::DeadLetter => "dead_letter",
        }
    }
}

/// Which component a store write belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterKind {
    /// Fact rows (`FactWriter`).
    Facts = 0,
    /// DLQ and invalid-message records (`DeadLetter`).
    DeadLetter = 1,
}

impl WriterKind {
    pub const ALL: [WriterKind; 2] = [WriterKind::Facts, WriterKind::DeadLetter];

    /// The `writer` label value.
    pub fn label(self) -> &'static str {
        match self {
            WriterKind::Facts => "facts",
            WriterKind::DeadLetter => "dead_letter",
        }
    }
}

/// A store write in flight; dropping it ends it and records its latency.
#[must_use = "the write counts as in flight until this guard is dropped"]
pub struct WriteInFlight {
    pub(super) stats: Arc<Stats>,
    pub(super) writer: WriterKind,
    pub(super) started: Instant,
}

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        let g = &self.stats.gauges;
        g.in_flight[self.writer as usize].fetch_sub(1, Ordering::Relaxed);
        if self.writer == WriterKind::Facts {
            let secs = self.started.elapsed().as_secs_f64();
            g.write_latency.record(secs);
        }
    }
}

/// A join shard's pending buffer, as the shard last reported it.
#[derive(Debug, Default)]
pub struct PendingGauge {
    pub(super) held: AtomicU64,
    /// When the oldest held payment started its hold; a `std` mutex because it is only
    /// swapped, never held across an await.
    pub(super) oldest_since: Mutex<Option<Instant>>,
}

impl PendingGauge {
    /// The shard holds `held` payments, the oldest since `oldest_since`.
    pub fn set(&self, held: usize, oldest_since: Option<Instant>) {
        self.held.store(held as u64, Ordering::Relaxed);
        *lock(&self.oldest_since) = oldest_since;
    }
}

/// The live values only their owners can measure.
#[derive(Debug)]
pub(super) struct Gauges {
    /// Per [`ActorKind`]: messages sent and not yet answered.
    pub(super) mailbox: [AtomicI64; 3],
    /// Per [`WriterKind`]: store writes in flight.
    pub(super) in_flight: [AtomicI64; 2],
    /// Per shard id, registered by the shards when they start.
    pub(super) pending: Mutex<Vec<(usize, Arc<PendingGauge>)>>,
    /// Bit set of [`StoreOp`]s whose last call failed; the store is up when it is empty.
    pub(super) store_failing: AtomicU8,
    pub(super) write_latency: LatencyHistogram,
}

impl Default for Gauges {
    fn default() -> Self {
        Gauges {
            mailbox: Default::default(),
            in_flight: Default::default(),
            pending: Mutex::default(),
            store_failing: AtomicU8::new(0),
            write_latency: LatencyHistogram::default(),
        }
    }
}

/// The gauges at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GaugeSnapshot {
    pub pending_payments: u64,
    /// How long the oldest held payment has waited; 0 when none is held.
    pub pending_oldest_age_seconds: f64,
    /// Messages sent to each kind of actor and not yet answered.
    pub mailbox: [(&'static str, u64); 3],
    /// Store writes in flight per writer.
    pub in_flight: [(&'static str, u64); 2],
    pub store_up: bool,
    pub write_latency: LatencySnapshot,
}
