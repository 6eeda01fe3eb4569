//! A subscriber's flow-control tallies.
//!
//! Owns: the unanswered messages and bytes and their high-water marks. Must never: count a
//! delivery or an answer of its own: those are counted once, in the pipeline's per-source
//! [`Stats`], and read from there.

use crate::model::StreamKind;
use crate::telemetry::Stats;
use actix::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A subscriber's tallies, read by `run`'s summary and by tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, MessageResponse)]
pub struct SubscriberCounts {
    /// Messages received from Pub/Sub (redeliveries included).
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Unanswered messages right now.
    pub outstanding: u64,
    /// The most unanswered messages at any moment; never above `max_outstanding_messages`.
    pub outstanding_high_water: u64,
    /// The most unanswered payload bytes at any moment.
    pub outstanding_bytes_high_water: u64,
}

/// The subscriber's flow-control tallies. Deliveries and answers are counted once, in the
/// pipeline's per-source [`Stats`]; this adds what only the subscriber knows.
#[derive(Debug)]
pub(super) struct Counters {
    topic: StreamKind,
    stats: Arc<Stats>,
    outstanding: AtomicU64,
    outstanding_bytes: AtomicU64,
    outstanding_high_water: AtomicU64,
    outstanding_bytes_high_water: AtomicU64,
}

impl Counters {
    pub(super) fn new(topic: StreamKind, stats: Arc<Stats>) -> Self {
        Counters {
            topic,
            stats,
            outstanding: AtomicU64::new(0),
            outstanding_bytes: AtomicU64::new(0),
            outstanding_high_water: AtomicU64::new(0),
            outstanding_bytes_high_water: AtomicU64::new(0),
        }
    }

    pub(super) fn snapshot(&self) -> SubscriberCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let source = self.stats.source(self.topic).snapshot();
        SubscriberCounts {
            delivered: source.received,
            acked: source.acked,
            nacked: source.nacked,
            outstanding: get(&self.outstanding),
            outstanding_high_water: get(&self.outstanding_high_water),
            outstanding_bytes_high_water: get(&self.outstanding_bytes_high_water),
        }
    }

    /// A message (and its bytes) joined the unanswered set: received, from now on answered
    /// exactly once (ack, nack, or the nack of a drop).
    pub(super) fn taken(&self, bytes: u64) {
        self.stats.source(self.topic).on_received(1);
        let n = self.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        self.outstanding_high_water.fetch_max(n, Ordering::Relaxed);
        let b = self.outstanding_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.outstanding_bytes_high_water
            .fetch_max(b, Ordering::Relaxed);
    }

    pub(super) fn answered(&self, bytes: u64, acked: bool) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.outstanding_bytes.fetch_sub(bytes, Ordering::Relaxed);
        let source = self.stats.source(self.topic);
        if acked {
            source.on_acked(1);
        } else {
            source.on_nacked(1);
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_track_the_high_water() {
        let c = Counters::new(StreamKind::Payments, Arc::default());
        c.taken(10);
        c.taken(20);
        c.answered(10, true);
        c.taken(5);
        c.answered(20, false);
        let s = c.snapshot();
        assert_eq!((s.outstanding, s.outstanding_high_water), (1, 2));
        assert_eq!(s.outstanding_bytes_high_water, 30);
        assert_eq!((s.acked, s.nacked), (1, 1));
        assert_eq!(s.delivered, 3);
    }
}
