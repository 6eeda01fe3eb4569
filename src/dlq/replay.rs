//! `dlq replay` (design §4.9): joins dead-lettered payments whose order now exists.
//!
//! Owns: one pass over the DLQ table, and the schedule that repeats it. Must never: delete an
//! entry before its payment row is durable, or hold the whole table in memory (it pages).
//! Safe beside a running pipeline: every step is an idempotent upsert or delete by key, and
//! the payment is written with its original timestamp, so it never overwrites a newer one.

use crate::shutdown::Shutdown;
use crate::store::{FactWrite, PipelineStore, ReplayedEntry, StoreError};
use crate::telemetry::Stats;
use serde::Serialize;
use std::time::Duration;

/// Dead letters read per page.
const PAGE: usize = 1000;

/// What one replay pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// DLQ entries looked at.
    pub scanned: u64,
    /// Entries whose order exists, payment written and entry deleted by this pass (an
    /// entry another replay deleted first is not counted here).
    pub replayed: u64,
    /// Entries whose order is still unknown: `attempts` increased.
    pub unmatched: u64,
}

/// One pass over the whole DLQ table, page by page until the store says the scan is
/// complete ([`Page`](crate::store::Page)'s `next == None`; a short or empty page is no
/// sign of the end).
pub async fn replay_once(
    store: &dyn PipelineStore,
    stats: &Stats,
) -> Result<ReplayReport, StoreError> {
    let mut report = ReplayReport::default();
    let mut after = None;
    loop {
        let scanned = store.scan_dead_letters(after, PAGE).await?;
        let page = scanned.items;
        report.scanned += page.len() as u64;

        let order_ids: Vec<i64> = page.iter().map(|e| e.payment.order_id).collect();
        let known = store.known_orders(&order_ids).await?;
        let (found, missing): (Vec<_>, Vec<_>) = page
            .into_iter()
            .partition(|e| known.contains(&e.payment.order_id));

        if !found.is_empty() {
            let resolved: Vec<ReplayedEntry> = found
                .iter()
                .map(|e| ReplayedEntry {
                    payment_id: e.payment.payment_id,
                    event_ts: e.event_ts,
                })
                .collect();
            let writes: Vec<FactWrite> = found
                .into_iter()
                .map(|e| FactWrite::Payment {
                    payment: e.payment,
                    ts: e.event_ts,
                })
                .collect();
            // Write first, delete second: a crash between them leaves an entry that the
            // next pass replays again, harmlessly.
            store.write_facts(&writes).await?;
            // Counted by what this pass removed, not by what it found: another replay
            // running at the same time finds (and writes) the same entries, and each must
            // be counted by exactly one of the two.
            let removed = store.delete_dead_letters(&resolved).await?.len() as u64;
            report.replayed += removed;
            Stats::add(&stats.replayed, removed);
        }
        if !missing.is_empty() {
            let ids: Vec<i64> = missing.iter().map(|e| e.payment.payment_id).collect();
            store.bump_dead_letter_attempts(&ids).await?;
            report.unmatched += ids.len() as u64;
        }
        match scanned.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    tracing::info!(
        scanned = report.scanned,
        replayed = report.replayed,
        unmatched = report.unmatched,
        "dlq replay pass done"
    );
    Ok(report)
}

/// Runs a pass every `every` until `shutdown` fires; `on_pass` sees each pass's outcome.
/// A failed pass is logged and retried at the next tick, not fatal: the store may be back.
pub async fn replay_every(
    store: &dyn PipelineStore,
    stats: &Stats,
    every: Duration,
    mut shutdown: Shutdown,
    mut on_pass: impl FnMut(&Result<ReplayReport, StoreError>),
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
        }
        // A pass is raced against the shutdown too: Ctrl-C must not wait for a long pass
        // (each page is idempotent, so stopping between steps loses nothing).
        let result = tokio::select! {
            r = replay_once(store, stats) => r,
            _ = shutdown.wait() => return,
        };
        if let Err(e) = &result {
            tracing::error!(error = %e.chain(), "dlq replay pass failed; next try at the next tick");
        }
        on_pass(&result);
    }
}
