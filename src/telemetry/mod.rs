//! The pipeline's measurements: one named event, one place that counts it.
//!
//! Owns: [`Stats`], shared by every actor through an `Arc`: the event counters (with their
//! Prometheus names, in one table), the per-source counters ([`SourceStats`]), and the few
//! live gauges and the write-latency histogram that only the actors owning them can
//! measure. Must never: decide anything. Stats describe what happened; the demo summary,
//! tests, the status page and the Prometheus exporter (`ops::exporter`) read them.
//!
//! Why counters live here and not only in the `metrics` facade: the demo summary, the tests
//! and the status page need exact values from one run's `Stats`, independent of the
//! process-wide recorder; the exporter publishes these same atomics on every scrape, so each
//! event is still counted in exactly one place.
//!
//! Here: [`Stats`] and its event counters. Below: `sources` (per-source counters and the
//! publish-to-ack lag), `gauges` (live gauges and the kinds they are labelled by), `latency`
//! (fixed-bucket histograms, also rendered for Prometheus), `lease` (a subscription's lease
//! and ack health) and `recent` (the last few invalid payloads' reasons). Beside them,
//! [`driver_log`] thins the Cassandra driver's repeated warnings.

pub mod driver_log;
mod gauges;
mod latency;
mod lease;
mod recent;
mod sources;

pub use gauges::{ActorKind, GaugeSnapshot, PendingGauge, StoreOp, WriteInFlight, WriterKind};
pub use latency::{
    histogram_header, LatencySnapshot, WRITE_LATENCY_BUCKETS, WRITE_LATENCY_HELP,
    WRITE_LATENCY_METRIC,
};
pub use lease::{
    LeaseSnapshot, LeaseStats, Redelivery, ACK_LATENCY_BUCKETS, ACK_LATENCY_HELP,
    ACK_LATENCY_METRIC,
};
pub use recent::{InvalidNote, RecentInvalid, RECENT_INVALID};
pub use sources::{
    AckLags, SourceSnapshot, SourceStats, PUBLISH_TO_ACK_BUCKETS, PUBLISH_TO_ACK_HELP,
    PUBLISH_TO_ACK_METRIC,
};

use crate::model::StreamKind;
use gauges::Gauges;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The Prometheus name and help of one counter of [`Stats`].
#[derive(Debug, Clone, Copy)]
pub struct CounterInfo {
    pub name: &'static str,
    pub help: &'static str,
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident => $prom:literal, $help:literal ),* $(,)?) => {
        /// Live counters (relaxed atomics, since each is an independent tally) and gauges.
        #[derive(Debug, Default)]
        pub struct Stats {
            $( $(#[$doc])* pub $name: AtomicU64, )*
            /// Per input topic: received, acked, nacked (what a subscription reports).
            sources: [SourceStats; 2],
            /// Per input topic: lease and ack health (Pub/Sub subscribers only).
            leases: [LeaseStats; 2],
            /// Live gauges and the latency histogram (see [`Gauges`]).
            gauges: Gauges,
            /// The last few invalid payloads' reasons (the status page shows them).
            recent_invalid: RecentInvalid,
        }

        /// A copy of every counter at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct StatsSnapshot {
            $( $(#[$doc])* pub $name: u64, )*
        }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl StatsSnapshot {
            /// Every counter with its Prometheus name and help, in declaration order.
            pub fn prometheus(&self) -> Vec<(CounterInfo, u64)> {
                vec![ $( (CounterInfo { name: $prom, help: $help }, self.$name), )* ]
            }
        }
    };
}

counters! {
    /// Messages handed to the pipeline by a source (redeliveries included). Acks and nacks
    /// are counted by the sources, which answer them.
    received => "ecom_stream_intake_messages_total",
        "Messages handed to the join by the sources, redeliveries included",
    /// Payloads rejected by validation (recorded in `invalid_messages`).
    invalid => "ecom_stream_invalid_messages_total",
        "Payloads rejected by validation and recorded in invalid_messages",
    /// Deliveries whose content repeats an effect already durable or a payment already held
    /// (skipped, merged, or for a newer republish written again).
    duplicates => "ecom_stream_duplicates_total",
        "Deliveries repeating an effect already durable or a payment already held",
    /// Order rows written durably.
    orders_upserted => "ecom_stream_orders_upserted_total",
        "Order rows written durably",
    /// Payment rows written durably.
    payments_upserted => "ecom_stream_payments_upserted_total",
        "Payment columns written durably by the fact writer (joined at once or after a hold)",
    /// Payments whose order was known on arrival (cache or store read-through).
    payments_joined => "ecom_stream_payments_joined_total",
        "Payments whose order was known on arrival (cache or store read-through)",
    /// Payments held, then joined when their order arrived or was found at expiry.
    payments_joined_after_hold => "ecom_stream_payments_joined_after_hold_total",
        "Payments held, then joined when their order arrived or was found at expiry",
    /// Payments held because their order was unknown.
    payments_held => "ecom_stream_payments_held_total",
        "Payments held because their order was unknown on arrival",
    /// Payments written to the DLQ as `order_not_found` (durably).
    dead_lettered => "ecom_stream_payments_dead_lettered_total",
        "Payments written to the DLQ as order_not_found",
    /// Held payments taken out before their hold ended because the buffer was full; each is
    /// rechecked against the store, then joined or dead-lettered.
    spilled_early => "ecom_stream_payments_spilled_early_total",
        "Held payments taken out before their hold ended because the buffer was full",
    /// Payments joined by `dlq replay`.
    replayed => "ecom_stream_payments_replayed_total",
        "Dead-lettered payments joined by a DLQ replay",
    /// Order cache hits for payments.
    cache_hits => "ecom_stream_order_cache_hits_total",
        "Payments whose order was found in the order cache",
    /// Order cache misses for payments.
    cache_misses => "ecom_stream_order_cache_misses_total",
        "Payments whose order was not in the order cache",
    /// Store reads for known orders (batched read-throughs and rechecks).
    store_reads => "ecom_stream_store_reads_total",
        "Batched store reads for orders (read-throughs and rechecks)",
    /// Store writes (batches) that succeeded.
    writer_batches => "ecom_stream_writer_batches_total",
        "Store writes (batches of rows) that succeeded",
    /// Store calls retried after a retriable error.
    write_retries => "ecom_stream_store_retries_total",
        "Store and DLQ calls retried after a retriable error",
    /// Row writes that failed on their own (nacked for another try, or dead-lettered at the
    /// bound), and rows held through an outage that were nacked at shutdown.
    write_failures => "ecom_stream_write_failures_total",
        "Row writes that failed (nacked for another try or dead-lettered), and held rows nacked at shutdown",
    /// Rows whose write kept failing, handed to the DLQ as `write_failed`.
    write_dead_lettered => "ecom_stream_rows_dead_lettered_total",
        "Rows whose write kept failing, dead-lettered as write_failed",
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of one input topic's source (subscription).
    pub fn source(&self, topic: StreamKind) -> &SourceStats {
        match topic {
            StreamKind::Orders => &self.sources[0],
            StreamKind::Payments => &self.sources[1],
        }
    }

    /// Lease and ack health of `topic`'s subscription (written by its Pub/Sub subscriber).
    pub fn lease(&self, topic: StreamKind) -> &LeaseStats {
        match topic {
            StreamKind::Orders => &self.leases[0],
            StreamKind::Payments => &self.leases[1],
        }
    }

    /// A message was sent to an actor of `kind`: counted as in its mailbox until answered.
    /// Wraps the `send(..)` future; cancelling it (dropping) also ends the count.
    pub async fn mailbox<F: Future>(&self, kind: ActorKind, send: F) -> F::Output {
        let depth = &self.gauges.mailbox[kind as usize];
        depth.fetch_add(1, Ordering::Relaxed);
        let _done = OnDrop(|| {
            depth.fetch_sub(1, Ordering::Relaxed);
        });
        send.await
    }

    /// A store write of `writer` starts; the returned guard ends it (drop it when the write,
    /// retries included, is over).
    pub fn write_started(self: &Arc<Self>, writer: WriterKind) -> WriteInFlight {
        self.gauges.in_flight[writer as usize].fetch_add(1, Ordering::Relaxed);
        WriteInFlight {
            stats: self.clone(),
            writer,
            started: Instant::now(),
        }
    }

    /// A store call of kind `op` succeeded (`Ok`) or failed after its retries (`Err`): the
    /// store's health as the pipeline sees it. The store is up while the last read and the
    /// last write both succeeded, so a store that answers reads but refuses writes stays
    /// down instead of flapping. Drives `ecom_stream_store_up`, which `/readyz` reads
    /// ([`Readiness::check`](crate::health::Readiness::check) decides; this only measures).
    pub fn on_store_result<T, E: std::fmt::Display>(&self, op: StoreOp, result: &Result<T, E>) {
        let bit = op as u8;
        let before = match result {
            Ok(_) => self.gauges.store_failing.fetch_and(!bit, Ordering::Relaxed),
            Err(_) => self.gauges.store_failing.fetch_or(bit, Ordering::Relaxed),
        };
        let after = self.gauges.store_failing.load(Ordering::Relaxed);
        match result {
            Err(e) if before == 0 => {
                tracing::warn!(?op, error = %e, "store failing: /readyz reports the store not ready")
            }
            Ok(_) if before != 0 && after == 0 => {
                tracing::info!("store answering again: ready")
            }
            _ => {}
        }
    }

    /// Whether the last read and the last write of the store both succeeded (see
    /// [`on_store_result`](Self::on_store_result)).
    pub fn store_up(&self) -> bool {
        self.gauges.store_failing.load(Ordering::Relaxed) == 0
    }

    /// Whether the last store call of kind `op` failed.
    pub fn store_failing(&self, op: StoreOp) -> bool {
        self.gauges.store_failing.load(Ordering::Relaxed) & op as u8 != 0
    }

    /// Where the join shard `shard` reports its pending buffer.
    pub fn pending_gauge(&self, shard: usize) -> Arc<PendingGauge> {
        let mut shards = lock(&self.gauges.pending);
        if let Some((_, g)) = shards.iter().find(|(id, _)| *id == shard) {
            return g.clone();
        }
        let g = Arc::new(PendingGauge::default());
        shards.push((shard, g.clone()));
        g
    }

    /// The gauges and the latency histogram now.
    pub fn gauges(&self) -> GaugeSnapshot {
        let g = &self.gauges;
        let now = Instant::now();
        let (mut pending, mut oldest) = (0u64, None::<Instant>);
        for (_, shard) in lock(&g.pending).iter() {
            pending += shard.held.load(Ordering::Relaxed);
            if let Some(since) = *lock(&shard.oldest_since) {
                oldest = Some(oldest.map_or(since, |o: Instant| o.min(since)));
            }
        }
        let load = |a: &AtomicI64| a.load(Ordering::Relaxed).max(0) as u64;
        GaugeSnapshot {
            pending_payments: pending,
            pending_oldest_age_seconds: oldest
                .map(|since| now.saturating_duration_since(since).as_secs_f64())
                .unwrap_or(0.0),
            mailbox: ActorKind::ALL.map(|k| (k.label(), load(&g.mailbox[k as usize]))),
            in_flight: WriterKind::ALL.map(|w| (w.label(), load(&g.in_flight[w as usize]))),
            store_up: g.store_failing.load(Ordering::Relaxed) == 0,
            write_latency: g.write_latency.snapshot(),
        }
    }

    /// The last few invalid payloads' reasons (no payloads), oldest first.
    pub fn recent_invalid(&self) -> &RecentInvalid {
        &self.recent_invalid
    }

    /// Per-source counters now, orders first.
    pub fn sources(&self) -> [(StreamKind, SourceSnapshot); 2] {
        [StreamKind::Orders, StreamKind::Payments].map(|t| (t, self.source(t).snapshot()))
    }
}

/// Runs a closure when dropped: the end of a count even when its future is cancelled.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A poisoned lock (a panic while holding it) is taken over: the values are plain numbers,
/// always valid, and metrics must never take the pipeline down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_never_wraps_and_sources_are_separate() {
        let stats = Stats::default();
        let orders = stats.source(StreamKind::Orders);
        orders.on_received(10);
        orders.on_acked(7);
        orders.on_nacked(2, crate::ack::NackReason::Shutdown);
        assert_eq!(orders.outstanding(), 1);
        orders.on_acked(5);
        assert_eq!(orders.outstanding(), 0);
        assert_eq!(
            stats.source(StreamKind::Payments).snapshot(),
            SourceSnapshot::default()
        );
    }

    #[test]
    fn every_counter_has_a_prometheus_name_once() {
        let names: Vec<_> = Stats::default()
            .snapshot()
            .prometheus()
            .into_iter()
            .map(|(info, _)| info.name)
            .collect();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names
            .iter()
            .all(|n| n.starts_with("ecom_stream_") && n.ends_with("_total")));
    }

    #[tokio::test]
    async fn gauges_follow_writes_mailboxes_and_pending() {
        let stats = Arc::new(Stats::default());
        let write = stats.write_started(WriterKind::Facts);
        assert_eq!(stats.gauges().in_flight[0], ("facts", 1));
        drop(write);
        let g = stats.gauges();
        assert_eq!(g.in_flight[0], ("facts", 0));
        assert_eq!(g.write_latency.count, 1);
        let depth = stats
            .mailbox(ActorKind::FactWriter, async { stats.gauges().mailbox[1].1 })
            .await;
        assert_eq!(depth, 1);
        assert_eq!(stats.gauges().mailbox[1].1, 0);
        stats.pending_gauge(0).set(3, Some(Instant::now()));
        stats.pending_gauge(1).set(2, None);
        assert_eq!(stats.gauges().pending_payments, 5);
        stats.on_store_result::<(), _>(StoreOp::Write, &Err("down"));
        assert!(!stats.gauges().store_up);
        // Reads answering do not make a store that refuses writes look up.
        stats.on_store_result::<(), String>(StoreOp::Read, &Ok(()));
        assert!(!stats.gauges().store_up);
        stats.on_store_result::<(), String>(StoreOp::Write, &Ok(()));
        assert!(stats.gauges().store_up);
    }
}
