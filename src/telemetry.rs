//! The pipeline's counters: one named event, one place that counts it.
//!
//! Owns: [`Stats`], shared by every actor through an `Arc`, and its [`StatsSnapshot`].
//! Must never: decide anything. Counters describe what happened; tests and the demo summary
//! read them, and the metrics exporter will publish them under Prometheus names.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters; relaxed atomics, since each is an independent tally.
        #[derive(Debug, Default)]
        pub struct Stats {
            $( $(#[$doc])* pub $name: AtomicU64, )*
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
    };
}

counters! {
    /// Messages handed to the pipeline by a source (redeliveries included). Acks and nacks
    /// are counted by the sources, which answer them.
    received,
    /// Payloads rejected by validation (recorded in `invalid_messages`).
    invalid,
    /// Deliveries whose content repeats an effect already durable or a payment already held
    /// (skipped, merged, or for a newer republish written again).
    duplicates,
    /// Order rows written durably.
    orders_upserted,
    /// Payment rows written durably.
    payments_upserted,
    /// Payments whose order was known on arrival (cache or store read-through).
    payments_joined,
    /// Payments held, then joined when their order arrived or was found at expiry.
    payments_joined_after_hold,
    /// Payments held because their order was unknown.
    payments_held,
    /// Payments written to the DLQ as `order_not_found` (durably).
    dead_lettered,
    /// Held payments taken out before their hold ended because the buffer was full; each is
    /// rechecked against the store, then joined or dead-lettered.
    spilled_early,
    /// Payments joined by `dlq replay`.
    replayed,
    /// Order cache hits for payments.
    cache_hits,
    /// Order cache misses for payments.
    cache_misses,
    /// Store reads for known orders (batched read-throughs and rechecks).
    store_reads,
    /// Store writes (batches) that succeeded.
    writer_batches,
    /// Store calls retried after a retriable error.
    write_retries,
    /// Store writes that failed for good (their messages were nacked).
    write_failures,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
