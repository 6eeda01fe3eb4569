//! What each source reports for its topic: messages received, acked and nacked (by reason),
//! and how long after its publication each acked message was acked.
//!
//! Owns: [`SourceStats`] and its snapshot. Must never: be written by anyone but the sources
//! (the Pub/Sub subscriber and the in-process source), which are the ones that answer.

use super::latency::{LatencyHistogram, LatencySnapshot, LatencyTally, MAX_BUCKETS};
use crate::ack::NackReason;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// The Prometheus histogram of the time from a message's publication to its ack.
pub const PUBLISH_TO_ACK_METRIC: &str = "ecom_stream_publish_to_ack_seconds";
/// Its help line.
pub const PUBLISH_TO_ACK_HELP: &str =
    "Time from a message's publish time to its ack (the end-to-end lag; hold included)";

/// Upper bounds (seconds) of the publish-to-ack buckets: from an order acked within a batch
/// linger to a payment held for its whole hold, or a backlog of half an hour.
pub const PUBLISH_TO_ACK_BUCKETS: [f64; 15] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0,
];
const _: () = assert!(PUBLISH_TO_ACK_BUCKETS.len() < MAX_BUCKETS);

/// The publish-to-ack lags of one batch of acks, answered at one moment: counted here and
/// added to the source's histogram at once ([`SourceStats::on_acked_lags`]).
#[derive(Debug, Default)]
pub struct AckLags {
    now_micros: i64,
    tally: LatencyTally,
}

impl AckLags {
    /// Lags of acks answered at `now_micros` (µs since the Unix epoch).
    pub fn at(now_micros: i64) -> Self {
        AckLags {
            now_micros,
            tally: LatencyTally::default(),
        }
    }

    /// A message published at `published_micros` was acked.
    pub fn push(&mut self, published_micros: i64) {
        self.tally.record(
            &PUBLISH_TO_ACK_BUCKETS,
            lag_secs(published_micros, self.now_micros),
        );
    }
}

/// Seconds from publication to ack. A publish time ahead of this clock (skew between
/// machines) counts as no lag.
fn lag_secs(published_micros: i64, now_micros: i64) -> f64 {
    now_micros.saturating_sub(published_micros).max(0) as f64 / 1e6
}

/// What a subscription (or the in-process source) reports, for one topic. The Pub/Sub
/// subscriber and the in-process source call these; nobody else does.
#[derive(Debug)]
pub struct SourceStats {
    received: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    /// `nacked` split by [`NackReason`], in [`NackReason::ALL`]'s order.
    nacked_by: [AtomicU64; NackReason::ALL.len()],
    /// Publish time to ack, for acked messages whose publish time the source knows.
    publish_to_ack: LatencyHistogram,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            nacked_by: Default::default(),
            publish_to_ack: LatencyHistogram::new(&PUBLISH_TO_ACK_BUCKETS),
        }
    }
}

impl SourceStats {
    /// `n` messages were delivered by the source (redeliveries included).
    pub fn on_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` messages were acked.
    pub fn on_acked(&self, n: u64) {
        self.acked.fetch_add(n, Ordering::Relaxed);
    }

    /// A message published at `published_micros` (µs since the Unix epoch) was acked now.
    /// A publish time ahead of this clock (skew between machines) counts as no lag.
    pub fn on_acked_published(&self, published_micros: i64) {
        self.on_acked_published_at(published_micros, crate::clock::now_micros());
    }

    /// The same, acked at `now_micros`: a batch's acks read the clock once.
    pub fn on_acked_published_at(&self, published_micros: i64, now_micros: i64) {
        self.publish_to_ack
            .record(lag_secs(published_micros, now_micros));
    }

    /// Adds the lags of a batch of acks of this source, counted with [`AckLags::push`].
    pub fn on_acked_lags(&self, lags: &AckLags) {
        self.publish_to_ack.add(&lags.tally);
    }

    /// The publish-to-ack histogram since start.
    pub fn publish_to_ack(&self) -> LatencySnapshot {
        self.publish_to_ack.snapshot()
    }

    /// `n` messages were nacked for `reason` (they will be redelivered).
    pub fn on_nacked(&self, n: u64, reason: NackReason) {
        self.nacked_by[reason.index()].fetch_add(n, Ordering::Relaxed);
        self.nacked.fetch_add(n, Ordering::Relaxed);
    }

    /// Nacks so far for each reason, in [`NackReason::ALL`]'s order.
    pub fn nacked_by_reason(&self) -> Vec<(NackReason, u64)> {
        NackReason::ALL
            .iter()
            .map(|&r| (r, self.nacked_by[r.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// Delivered and not answered yet: received − acked − nacked, never below zero (the
    /// three are read one after the other, so a moment's skew must not wrap around).
    pub fn outstanding(&self) -> u64 {
        let s = self.snapshot();
        s.received.saturating_sub(s.acked).saturating_sub(s.nacked)
    }

    pub fn snapshot(&self) -> SourceSnapshot {
        SourceSnapshot {
            received: self.received.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
        }
    }
}

/// One source's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourceSnapshot {
    pub received: u64,
    pub acked: u64,
    pub nacked: u64,
}
