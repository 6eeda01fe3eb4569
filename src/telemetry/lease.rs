//! Lease and ack health of one Pub/Sub subscription: how long its messages wait for their
//! answer next to the lease that keeps them ours, and how many come back.
//!
//! Owns: [`LeaseStats`]: the receipt-to-ack histogram, the redelivery counters by the
//! evidence that showed them, and the age ring of unanswered messages that says how many
//! are older than half the maximum lease. Must never: decide anything, or be written by
//! anyone but the Pub/Sub subscriber that received the messages.
//!
//! Why an age ring and not a list of messages: the subscriber answers through handles it
//! does not keep, so the ring counts unanswered messages per second of receipt (one atomic
//! add on receipt, one subtract on answer), and a scrape sums the seconds that are old
//! enough. Seconds older than the ring alias onto newer ones; the ring spans 8,192 s, more
//! than a lease can be extended by default (one hour), after which the server redelivers
//! anyway.

use super::latency::{LatencyHistogram, LatencySnapshot};
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The Prometheus histogram of the time from a message's receipt to its ack.
pub const ACK_LATENCY_METRIC: &str = "ecom_stream_pubsub_ack_latency_seconds";
/// Its help line.
pub const ACK_LATENCY_HELP: &str =
    "Time from a Pub/Sub message's receipt to its ack (compare with the ack deadline and the maximum lease)";

/// Upper bounds (seconds) of the receipt-to-ack buckets: from a joined order acked within
/// a batch linger to a payment held for minutes and a store outage of several.
pub const ACK_LATENCY_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
];

/// Seconds of receipt the age ring tells apart.
const RING_SECONDS: usize = 8192;

/// How a message received again was recognised. Only the subscriber that received it
/// before can tell, from its recent message ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// It came back after we acked it: the ack was lost (an ack RPC failure the client
    /// library does not report) or arrived after the lease had expired.
    AfterAck,
    /// It came back while we still held it: its lease expired under us (a failed lease
    /// extension, or a hold longer than the maximum lease).
    WhileHeld,
    /// It came back after we nacked it: the expected path of a nack.
    AfterNack,
}

impl Redelivery {
    pub const ALL: [Redelivery; 3] = [
        Redelivery::AfterAck,
        Redelivery::WhileHeld,
        Redelivery::AfterNack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Redelivery::AfterAck => "after_ack",
            Redelivery::WhileHeld => "while_held",
            Redelivery::AfterNack => "after_nack",
        }
    }
}

/// One subscription's lease and ack health; see the module doc.
#[derive(Debug)]
pub struct LeaseStats {
    ack_latency: LatencyHistogram,
    /// Deliveries whose `delivery_attempt` (set by Pub/Sub where the subscription has a
    /// dead-letter policy) was above 1.
    attempt_above_one: AtomicU64,
    /// Messages seen again, by [`Redelivery`] in its `ALL` order.
    redelivered: [AtomicU64; 3],
    /// The longest lease the client keeps extending, in seconds (0 until a subscriber
    /// starts).
    max_lease_secs: AtomicU64,
    /// Unanswered messages per second of receipt, modulo [`RING_SECONDS`].
    ring: Box<[AtomicI64]>,
    /// Second 0 of the ring.
    base: Instant,
}

impl Default for LeaseStats {
    fn default() -> Self {
        LeaseStats {
            ack_latency: LatencyHistogram::new(&ACK_LATENCY_BUCKETS),
            attempt_above_one: AtomicU64::new(0),
            redelivered: Default::default(),
            max_lease_secs: AtomicU64::new(0),
            ring: (0..RING_SECONDS).map(|_| AtomicI64::new(0)).collect(),
            base: Instant::now(),
        }
    }
}

impl LeaseStats {
    /// The subscriber started with this maximum lease.
    pub fn set_max_lease(&self, max_lease: Duration) {
        self.max_lease_secs
            .store(max_lease.as_secs(), Ordering::Relaxed);
    }

    fn slot(&self, at: Instant) -> &AtomicI64 {
        let second = at.saturating_duration_since(self.base).as_secs() as usize;
        &self.ring[second % RING_SECONDS]
    }

    /// A message was received at `at`; `delivery_attempt` is Pub/Sub's, where known.
    pub fn on_received(&self, at: Instant, delivery_attempt: Option<i32>) {
        self.slot(at).fetch_add(1, Ordering::Relaxed);
        if delivery_attempt.is_some_and(|a| a > 1) {
            self.attempt_above_one.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The message received at `received` was answered now (`acked` or nacked).
    pub fn on_answered(&self, received: Instant, acked: bool) {
        self.on_answered_at(received, acked, Instant::now());
    }

    /// The same, answered at `now`: a batch's answers read the clock once.
    pub fn on_answered_at(&self, received: Instant, acked: bool, now: Instant) {
        self.slot(received).fetch_sub(1, Ordering::Relaxed);
        if acked {
            self.ack_latency
                .record(now.saturating_duration_since(received).as_secs_f64());
        }
    }

    /// A message was recognised as received again.
    pub fn on_redelivered(&self, how: Redelivery) {
        let i = Redelivery::ALL.iter().position(|&r| r == how).unwrap_or(0);
        self.redelivered[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Unanswered messages received at least `age` ago.
    fn unanswered_older_than(&self, age: Duration) -> u64 {
        let now = self.base.elapsed().as_secs() as usize;
        let from = now.saturating_sub(RING_SECONDS - 1);
        let to = now.saturating_sub(age.as_secs() as usize);
        if age.as_secs() as usize > now {
            return 0;
        }
        let sum: i64 = (from..=to)
            .map(|s| self.ring[s % RING_SECONDS].load(Ordering::Relaxed))
            .sum();
        sum.max(0) as u64
    }

    pub fn snapshot(&self) -> LeaseSnapshot {
        let max_lease = self.max_lease_secs.load(Ordering::Relaxed);
        LeaseSnapshot {
            ack_latency: self.ack_latency.snapshot(),
            delivery_attempt_above_one: self.attempt_above_one.load(Ordering::Relaxed),
            redelivered: Redelivery::ALL
                .iter()
                .zip(&self.redelivered)
                .map(|(r, n)| (r.as_str(), n.load(Ordering::Relaxed)))
                .collect(),
            max_lease_seconds: max_lease,
            unanswered_over_half_lease: if max_lease == 0 {
                0
            } else {
                self.unanswered_older_than(Duration::from_secs(max_lease / 2))
            },
        }
    }
}

/// One subscription's lease and ack health at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeaseSnapshot {
    pub ack_latency: LatencySnapshot,
    pub delivery_attempt_above_one: u64,
    /// `(how, count)` for each [`Redelivery`].
    pub redelivered: Vec<(&'static str, u64)>,
    pub max_lease_seconds: u64,
    /// Messages held unanswered for more than half the maximum lease: the ones at risk of
    /// being redelivered while still held.
    pub unanswered_over_half_lease: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_count_until_answered_and_only_acks_are_timed() {
        let Some(base) = Instant::now().checked_sub(Duration::from_secs(30)) else {
            return; // a machine up for less than 30 s cannot place a message in the past
        };
        let l = LeaseStats {
            base,
            ..LeaseStats::default()
        };
        l.set_max_lease(Duration::from_secs(20));
        let old = base; // 30 s ago: older than half the lease
        let young = base + Duration::from_secs(25); // 5 s ago
        l.on_received(old, Some(2));
        l.on_received(old, None);
        l.on_received(young, Some(1));
        let s = l.snapshot();
        assert_eq!(s.unanswered_over_half_lease, 2);
        assert_eq!(s.delivery_attempt_above_one, 1);
        l.on_answered(old, false);
        let s = l.snapshot();
        assert_eq!(s.unanswered_over_half_lease, 1);
        assert_eq!(s.ack_latency.count, 0, "a nack is not an ack");
        l.on_answered(old, true);
        l.on_answered(young, true);
        let s = l.snapshot();
        assert_eq!(s.unanswered_over_half_lease, 0);
        assert_eq!(s.ack_latency.count, 2);
        assert!(s.ack_latency.sum_seconds >= 35.0, "{s:?}");
        l.on_redelivered(Redelivery::WhileHeld);
        let s = l.snapshot();
        assert!(s.redelivered.contains(&("while_held", 1)), "{s:?}");
        assert!(s.redelivered.contains(&("after_ack", 0)), "{s:?}");
    }
}
