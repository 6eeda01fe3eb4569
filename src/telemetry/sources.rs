//! What each source reports for its topic: messages received, acked and nacked (by reason).
//!
//! Owns: [`SourceStats`] and its snapshot. Must never: be written by anyone but the sources
//! (the Pub/Sub subscriber and the in-process source), which are the ones that answer.

use crate::ack::NackReason;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a subscription (or the in-process source) reports, for one topic. The Pub/Sub
/// subscriber and the in-process source call these; nobody else does.
#[derive(Debug, Default)]
pub struct SourceStats {
    received: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    /// `nacked` split by [`NackReason`], in [`NackReason::ALL`]'s order.
    nacked_by: [AtomicU64; NackReason::ALL.len()],
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
