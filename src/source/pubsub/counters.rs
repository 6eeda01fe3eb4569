//! A subscriber's flow-control tallies and lease bookkeeping.
//!
//! Owns: the unanswered messages and bytes and their high-water marks, and the recent
//! message ids that recognise a redelivery. Must never: count a delivery or an answer of its
//! own: those are counted once, in the pipeline's per-source [`Stats`] (and its lease
//! health in [`Stats::lease`]), and read from there.

use super::redelivery::{RecentIds, Seen};
use crate::ack::NackReason;
use crate::model::StreamKind;
use crate::telemetry::Stats;
use actix::prelude::*;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
    ids: RecentIds,
}

/// When answers happened: the monotonic clock (ack latency) and the wall clock in µs since
/// the Unix epoch (publish-to-ack lag).
#[derive(Debug, Clone, Copy)]
pub(super) struct AnswerTime {
    at: Instant,
    micros: i64,
}

impl AnswerTime {
    pub(super) fn now() -> Self {
        AnswerTime {
            at: Instant::now(),
            micros: crate::clock::now_micros(),
        }
    }
}

/// What a received message's answer must tell [`Counters::answered`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Receipt {
    pub(super) bytes: u64,
    pub(super) at: Instant,
    /// Pub/Sub's publish time, µs since the Unix epoch, where the message carries one.
    published_micros: Option<i64>,
    seen: Seen,
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
            ids: RecentIds::default(),
        }
    }

    /// The subscriber started: its lease metrics compare ages with `max_lease`.
    pub(super) fn started(&self, max_lease: std::time::Duration) {
        self.stats.lease(self.topic).set_max_lease(max_lease);
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
    /// exactly once (ack, nack, or the nack of a drop). `delivery_attempt` is Pub/Sub's,
    /// where the subscription has a dead-letter policy; `published_micros` its publish time.
    pub(super) fn taken(
        &self,
        bytes: u64,
        message_id: &str,
        delivery_attempt: Option<i32>,
        published_micros: Option<i64>,
    ) -> Receipt {
        let at = Instant::now();
        self.stats.source(self.topic).on_received(1);
        let lease = self.stats.lease(self.topic);
        lease.on_received(at, delivery_attempt);
        let (seen, again) = self.ids.received(message_id);
        if let Some(how) = again {
            lease.on_redelivered(how);
        }
        let n = self.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        self.outstanding_high_water.fetch_max(n, Ordering::Relaxed);
        let b = self.outstanding_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.outstanding_bytes_high_water
            .fetch_max(b, Ordering::Relaxed);
        Receipt {
            bytes,
            at,
            published_micros,
            seen,
        }
    }

    /// The message of `receipt` was acked (`None`) or nacked for a reason.
    #[cfg(test)]
    pub(super) fn answered(&self, receipt: Receipt, nacked: Option<NackReason>) {
        self.answered_at(receipt, nacked, AnswerTime::now());
    }

    /// The same, answered at `now` (a batch's answers read the clock once).
    pub(super) fn answered_at(
        &self,
        receipt: Receipt,
        nacked: Option<NackReason>,
        now: AnswerTime,
    ) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.outstanding_bytes
            .fetch_sub(receipt.bytes, Ordering::Relaxed);
        self.ids.answered(receipt.seen, nacked.is_none());
        self.stats
            .lease(self.topic)
            .on_answered_at(receipt.at, nacked.is_none(), now.at);
        let source = self.stats.source(self.topic);
        match nacked {
            None => {
                source.on_acked(1);
                if let Some(published) = receipt.published_micros {
                    source.on_acked_published_at(published, now.micros);
                }
            }
            Some(reason) => source.on_nacked(1, reason),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_track_the_high_water() {
        let stats = Arc::new(Stats::default());
        let c = Counters::new(StreamKind::Payments, stats.clone());
        let a = c.taken(10, "a", None, None);
        let b = c.taken(20, "b", None, None);
        c.answered(a, None);
        // Published a second before its ack: timed from its publication.
        let published = c.taken(5, "p", None, Some(crate::clock::now_micros() - 1_000_000));
        c.answered(published, None);
        c.taken(5, "c", None, None);
        c.answered(b, Some(NackReason::StoreFailed));
        let s = c.snapshot();
        assert_eq!((s.outstanding, s.outstanding_high_water), (1, 2));
        assert_eq!(s.outstanding_bytes_high_water, 30);
        assert_eq!((s.acked, s.nacked), (2, 1));
        assert_eq!(s.delivered, 4);
        let lag = stats.source(StreamKind::Payments).publish_to_ack();
        assert_eq!(
            lag.count, 1,
            "only the message with a publish time is timed"
        );
        assert!(lag.sum_seconds >= 1.0, "{lag:?}");
        let by = stats.source(StreamKind::Payments).nacked_by_reason();
        assert!(by.contains(&(NackReason::StoreFailed, 1)), "{by:?}");
        // "b" comes back after its nack, "a" after its ack.
        c.taken(20, "b", Some(2), None);
        c.taken(10, "a", Some(2), None);
        let lease = stats.lease(StreamKind::Payments).snapshot();
        assert_eq!(lease.delivery_attempt_above_one, 2);
        assert!(lease.redelivered.contains(&("after_nack", 1)), "{lease:?}");
        assert!(lease.redelivered.contains(&("after_ack", 1)), "{lease:?}");
        assert_eq!(lease.ack_latency.count, 2);
    }
}
