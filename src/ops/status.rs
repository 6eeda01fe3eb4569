//! The status page's data: `/status.json`, and the page itself (`status.html`).
//!
//! Owns: the process's [`Identity`] (what runs, against what), a short history of samples
//! (one a second, the last [`HISTORY_LEN`]) so that a page opened mid-run draws its charts at
//! once, and the JSON the page polls. Must never: grow (the history is a fixed-size ring),
//! show a secret (the identity names the store's directory or nodes and keyspace, never its
//! credentials), or compute anything the page could not check: it serves raw cumulative
//! values, and the page derives rates and percentiles from them.

use crate::health::Readiness;
use crate::model::StreamKind;
use crate::telemetry::{LatencySnapshot, Stats, PUBLISH_TO_ACK_BUCKETS};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The page: self-contained (inline CSS and JS, no CDN, no build step).
pub const PAGE: &str = include_str!("status.html");

/// How often a history sample is taken.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Samples kept: two minutes at one a second.
pub const HISTORY_LEN: usize = 120;

/// What this process is, for the page's header: set once at start by the command.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    /// The command serving the page: `demo` or `run`.
    pub mode: &'static str,
    /// Where rows go: the data directory, or the Cassandra nodes and keyspace (no credentials).
    pub store: String,
    /// Where messages come from: the in-process generator, or the Pub/Sub endpoint and project.
    pub source: String,
    pub version: &'static str,
    /// How long a payment whose order is unknown is held.
    pub hold_seconds: f64,
    pub shards: usize,
    /// Pub/Sub streaming pulls per subscription (`run` only).
    pub streams: Option<usize>,
}

impl Identity {
    /// An identity naming only the mode (in-process servers of tests).
    pub fn named(mode: &'static str) -> Self {
        Identity {
            mode,
            store: String::new(),
            source: String::new(),
            version: env!("CARGO_PKG_VERSION"),
            hold_seconds: 0.0,
            shards: 0,
            streams: None,
        }
    }
}

/// One moment of the counters the page charts (cumulative values, not rates).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the listener started.
    pub t: f64,
    pub orders_received: u64,
    pub payments_received: u64,
    pub acked: u64,
    pub joined: u64,
    pub joined_after_hold: u64,
    pub held: u64,
    pub dead_lettered: u64,
    pub pending: u64,
    pub pending_oldest_age_seconds: f64,
    pub write_count: u64,
    pub write_sum_seconds: f64,
    pub write_buckets: Vec<u64>,
    /// Publish-to-ack lag of both sources together (buckets as `publish_to_ack_bounds`).
    pub lag_count: u64,
    pub lag_buckets: Vec<u64>,
}

/// The ring of recent samples.
#[derive(Debug)]
pub struct History {
    started: Instant,
    /// A `std` mutex: held only to push or copy, never across an await.
    samples: Mutex<VecDeque<Sample>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            started: Instant::now(),
            samples: Mutex::new(VecDeque::with_capacity(HISTORY_LEN)),
        }
    }
}

impl History {
    pub fn record(&self, stats: &Stats) {
        let sample = self.sample(stats);
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if samples.len() == HISTORY_LEN {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    fn sample(&self, stats: &Stats) -> Sample {
        let s = stats.snapshot();
        let g = stats.gauges();
        let src = |t| stats.source(t).snapshot();
        let (orders, payments) = (src(StreamKind::Orders), src(StreamKind::Payments));
        let LatencySnapshot {
            count,
            sum_seconds,
            buckets,
            ..
        } = g.write_latency;
        let (mut lag_count, mut lag_buckets) = (0, vec![]);
        for topic in [StreamKind::Orders, StreamKind::Payments] {
            let lag = stats.source(topic).publish_to_ack();
            lag_count += lag.count;
            lag_buckets.resize(lag.buckets.len(), 0);
            for (sum, n) in lag_buckets.iter_mut().zip(&lag.buckets) {
                *sum += n;
            }
        }
        Sample {
            t: self.started.elapsed().as_secs_f64(),
            orders_received: orders.received,
            payments_received: payments.received,
            acked: orders.acked + payments.acked,
            joined: s.payments_joined,
            joined_after_hold: s.payments_joined_after_hold,
            held: s.payments_held,
            dead_lettered: s.dead_lettered,
            pending: g.pending_payments,
            pending_oldest_age_seconds: g.pending_oldest_age_seconds,
            write_count: count,
            write_sum_seconds: sum_seconds,
            write_buckets: buckets,
            lag_count,
            lag_buckets,
        }
    }

    fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// `/status.json`: the identity, readiness, every counter, the DLQ entries now, the last
/// invalid reasons, per-source counters, gauges, and the history with a sample of this
/// moment last.
pub fn render(
    identity: &Identity,
    stats: &Stats,
    readiness: &Readiness,
    history: &History,
) -> String {
    let mut samples = history.samples();
    samples.push(history.sample(stats));
    let sources: serde_json::Map<String, serde_json::Value> = stats
        .sources()
        .into_iter()
        .map(|(topic, s)| {
            let outstanding = stats.source(topic).outstanding();
            let nacked_by_reason: serde_json::Map<String, serde_json::Value> = stats
                .source(topic)
                .nacked_by_reason()
                .into_iter()
                .map(|(r, n)| (r.as_str().to_string(), json!(n)))
                .collect();
            let lease = stats.lease(topic).snapshot();
            let redelivered: serde_json::Map<String, serde_json::Value> = lease
                .redelivered
                .iter()
                .map(|(how, n)| (how.to_string(), json!(n)))
                .collect();
            let v = json!({
                "received": s.received, "acked": s.acked, "nacked": s.nacked,
                "outstanding": outstanding,
                "nacked_by_reason": nacked_by_reason,
                "lease": {
                    "max_lease_seconds": lease.max_lease_seconds,
                    "unanswered_over_half_lease": lease.unanswered_over_half_lease,
                    "redelivered": redelivered,
                    "delivery_attempt_above_one": lease.delivery_attempt_above_one,
                    "ack_latency": lease.ack_latency,
                },
            });
            (topic.as_str().to_string(), v)
        })
        .collect();
    let g = stats.gauges();
    let ready = readiness.check(stats);
    let counters = stats.snapshot();
    json!({
        "identity": identity,
        "uptime_seconds": history.started.elapsed().as_secs_f64(),
        "ready": ready.is_ok(),
        "not_ready": ready.err().map(|e| e.to_string()),
        "counters": counters,
        // What this process can know without scanning the table: the payments it
        // dead-lettered, minus the entries its replays removed. Entries left by earlier
        // processes are not in it (`dlq list` counts the table).
        "dlq_entries_now": counters.dead_lettered.saturating_sub(counters.replayed),
        "recent_invalid": stats.recent_invalid().snapshot(),
        "sources": sources,
        "gauges": {
            "pending_payments": g.pending_payments,
            "pending_oldest_age_seconds": g.pending_oldest_age_seconds,
            "mailbox": g.mailbox.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "writes_in_flight": g.in_flight.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "store_up": g.store_up,
        },
        "write_latency_bounds": g.write_latency.bounds,
        "publish_to_ack_bounds": PUBLISH_TO_ACK_BUCKETS,
        "history": samples,
    })
    .to_string()
}
