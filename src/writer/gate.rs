//! The store-health gate: closed while the fact writer holds rows through a store outage
//! (or while store reads fail), so that the intake stops taking deliveries instead of
//! feeding a store that refuses them.
//!
//! Owns: the outage state (how many writes are holding rows, since when, what they wrote
//! on the way out, and when the last outage ended, which the join's holds wait on), its two
//! log lines (outage began, outage ended), and the shutdown switch that releases everything
//! waiting on it. Must never: decide that the store is
//! out (the writer does, [`super::outage`]), or keep anyone waiting once shutdown began.

use crate::store::StoreError;
use crate::telemetry::{Stats, StoreOp};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a closed gate rechecks the read health (shard 0 probes reads once a second;
/// this only bounds how late the intake notices).
const READ_RECHECK: Duration = Duration::from_millis(100);

/// Shutdown began while a delivery waited at the gate: the delivery is nacked.
#[derive(Debug, thiserror::Error)]
#[error("pipeline is shutting down")]
pub struct GateShut;

/// One outage as the gate sees it.
#[derive(Debug, Default)]
struct Outage {
    /// Writes holding rows right now; the outage lasts while this is above zero.
    holders: usize,
    /// When the first of them began holding.
    since: Option<Instant>,
    /// Rows written by the holders once the store took them again.
    written: u64,
    /// Rows nacked because shutdown began while they were held.
    nacked: u64,
    /// When the last outage ended (its last holder wrote its rows).
    ended: Option<Instant>,
}

/// Shared by the writer (which closes and opens it) and the intake (which waits on it).
#[derive(Debug)]
pub struct StoreGate {
    outage: Mutex<Outage>,
    /// `true` while open for writes (no holder); changes wake the waiters.
    open: watch::Sender<bool>,
    /// `true` once shutdown began.
    shut: watch::Sender<bool>,
}

impl Default for StoreGate {
    fn default() -> Self {
        StoreGate {
            outage: Mutex::new(Outage::default()),
            open: watch::Sender::new(true),
            shut: watch::Sender::new(false),
        }
    }
}

impl StoreGate {
    /// A write begins holding `rows` rows because the store refuses writes (`error`). The
    /// first holder logs that the outage began; the returned guard ends the hold.
    pub fn hold(&self, rows: usize, error: &StoreError) -> HoldGuard<'_> {
        let mut o = lock(&self.outage);
        if o.holders == 0 {
            o.since = Some(Instant::now());
            o.written = 0;
            o.nacked = 0;
            tracing::error!(
                rows_held = rows,
                error = %error.chain(),
                "store outage: writes refused; holding rows and pausing intake until the store takes writes again"
            );
            self.open.send_replace(false);
        }
        o.holders += 1;
        HoldGuard { gate: self }
    }

    /// Whether deliveries may enter now: no write is holding rows and the last store read
    /// succeeded (or shutdown began, which waiters learn from [`Self::wait_open`]).
    pub fn is_open(&self, stats: &Stats) -> bool {
        *self.open.borrow() && !stats.store_failing(StoreOp::Read)
    }

    /// When the store was last out as the pipeline knows it: now, while this gate is closed
    /// (the writer holds rows it could not write, or reads fail) or the last store write
    /// was refused; else when the last outage ended; `None` if there was none. What the join
    /// shards ask before ending a payment's hold (design §4.3): an order may be stuck behind
    /// the store, and a shard that waited on the writer through the whole outage must still
    /// learn of it afterwards, so the end is kept, not only sampled.
    pub fn last_out(&self, stats: &Stats) -> Option<Instant> {
        if !self.is_open(stats) || stats.store_failing(StoreOp::Write) {
            return Some(Instant::now());
        }
        lock(&self.outage).ended
    }

    /// Waits until [`Self::is_open`], or fails once shutdown began.
    pub async fn wait_open(&self, stats: &Stats) -> Result<(), GateShut> {
        let mut open = self.open.subscribe();
        let mut shut = self.shut.subscribe();
        loop {
            if *shut.borrow_and_update() {
                return Err(GateShut);
            }
            if *open.borrow_and_update() && !stats.store_failing(StoreOp::Read) {
                return Ok(());
            }
            tokio::select! {
                _ = open.changed() => {}
                _ = shut.changed() => {}
                // Read health lives in `Stats` and wakes nobody: look again shortly.
                _ = tokio::time::sleep(READ_RECHECK) => {}
            }
        }
    }

    /// Shutdown began: held rows are nacked and nothing waits at the gate any more.
    pub fn shut(&self) {
        self.shut.send_replace(true);
    }

    pub fn is_shut(&self) -> bool {
        *self.shut.borrow()
    }

    /// Resolves once shutdown began.
    pub async fn shut_wait(&self) {
        let mut shut = self.shut.subscribe();
        let _ = shut.wait_for(|s| *s).await;
    }
}

/// One write holding rows through an outage; dropping it ends the hold, and the last one
/// logs how the outage ended.
#[derive(Debug)]
pub struct HoldGuard<'a> {
    gate: &'a StoreGate,
}

impl HoldGuard<'_> {
    /// `n` held rows were written.
    pub fn written(&self, n: u64) {
        lock(&self.gate.outage).written += n;
    }

    /// `n` held rows were nacked (shutdown).
    pub fn nacked(&self, n: u64) {
        lock(&self.gate.outage).nacked += n;
    }
}

impl Drop for HoldGuard<'_> {
    fn drop(&mut self) {
        let mut o = lock(&self.gate.outage);
        o.holders = o.holders.saturating_sub(1);
        if o.holders > 0 {
            return;
        }
        let lasted = o.since.take().map(|s| s.elapsed()).unwrap_or_default();
        o.ended = Some(Instant::now());
        if o.nacked > 0 {
            tracing::warn!(
                duration_ms = lasted.as_millis() as u64,
                rows_written = o.written,
                rows_nacked = o.nacked,
                "store outage ended by shutdown; held rows nacked for redelivery"
            );
        } else {
            tracing::info!(
                duration_ms = lasted.as_millis() as u64,
                rows_written = o.written,
                "store outage ended: the store takes writes again; intake resumed"
            );
        }
        self.gate.open.send_replace(true);
    }
}

/// The values are plain counters, valid after any panic: take a poisoned lock over.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_closes_while_rows_are_held_and_shutdown_releases_waiters() {
        let gate = StoreGate::default();
        let stats = Stats::default();
        assert!(gate.is_open(&stats));
        let error = StoreError::unavailable("disk full");
        let a = gate.hold(3, &error);
        let b = gate.hold(2, &error);
        assert!(!gate.is_open(&stats));
        drop(a);
        assert!(!gate.is_open(&stats), "open only when the last holder ends");
        drop(b);
        assert!(gate.is_open(&stats));
        assert!(gate.wait_open(&stats).await.is_ok());

        stats.on_store_result::<(), _>(StoreOp::Read, &Err("down"));
        assert!(!gate.is_open(&stats), "failing reads close it too");
        let _held = gate.hold(1, &error);
        let waiting = gate.wait_open(&stats);
        gate.shut();
        assert!(waiting.await.is_err());
    }
}
