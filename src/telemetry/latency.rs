//! The write-latency histogram: one source for the status page and for Prometheus.
//!
//! Owns: the buckets, recording a sample (one at a time, or a [`LatencyTally`] of many at
//! once), the snapshot and its Prometheus text form (a `histogram` with cumulative
//! `_bucket{le=…}` lines, `_sum` and `_count`). Must never:
//! record through the `metrics` facade as well: every sample is counted once, here.

use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The Prometheus histogram of fact-write latency (a batch, retries included).
pub const WRITE_LATENCY_METRIC: &str = "ecom_stream_write_duration_seconds";

/// Upper bounds (seconds) of the write-latency buckets: from a fast local commit (~1 ms) to
/// a write that exhausted its retries (the default retry policy waits up to ~10 s).
pub const WRITE_LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Fixed-bucket latency histogram in atomics: the status page reads its snapshot and
/// `/metrics` renders the same snapshot ([`LatencySnapshot::prometheus`]).
#[derive(Debug)]
pub(super) struct LatencyHistogram {
    /// Upper bounds of the buckets, ascending.
    bounds: &'static [f64],
    /// Per bound, plus one for +Inf; not cumulative.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for LatencyHistogram {
    /// The write-latency histogram.
    fn default() -> Self {
        LatencyHistogram::new(&WRITE_LATENCY_BUCKETS)
    }
}

impl LatencyHistogram {
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        LatencyHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(super) fn record(&self, secs: f64) {
        let i = bucket_of(self.bounds, secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(micros_of(secs), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what `tally` counted: one atomic add per bucket it touched, and two more.
    pub(super) fn add(&self, tally: &LatencyTally) {
        if tally.count == 0 {
            return;
        }
        // A tally recorded with other bounds than this histogram's would lose its top
        // buckets here (`+Inf` would then no longer equal `_count`).
        debug_assert!(
            tally.buckets[self.buckets.len().min(MAX_BUCKETS)..]
                .iter()
                .all(|&n| n == 0),
            "a latency tally added to a histogram with fewer buckets"
        );
        for (bucket, &n) in self.buckets.iter().zip(&tally.buckets) {
            if n > 0 {
                bucket.fetch_add(n, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add(tally.sum_micros, Ordering::Relaxed);
        self.count.fetch_add(tally.count, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            bounds: self.bounds.to_vec(),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Samples counted locally, for [`LatencyHistogram::add`]: a batch of acks records its lags
/// here and adds them at once, instead of three atomic adds per message on counters that
/// every thread answering messages writes.
#[derive(Debug, Default)]
pub(super) struct LatencyTally {
    buckets: [u64; MAX_BUCKETS],
    sum_micros: u64,
    count: u64,
}

/// The most buckets (bounds and +Inf) a histogram that takes a [`LatencyTally`] has.
pub(super) const MAX_BUCKETS: usize = 16;
const _: () = assert!(WRITE_LATENCY_BUCKETS.len() < MAX_BUCKETS);

impl LatencyTally {
    /// Counts one sample of `secs`, bucketed by `bounds`: those of the histogram it will be
    /// added to.
    pub(super) fn record(&mut self, bounds: &[f64], secs: f64) {
        // Never clamps for the bounds in use (WRITE_LATENCY_BUCKETS and
        // PUBLISH_TO_ACK_BUCKETS are checked against MAX_BUCKETS when compiled); the clamp
        // only keeps other bounds from panicking. `add` does not know the bounds: the caller
        // passes those of the histogram it will add to.
        let i = bucket_of(bounds, secs).min(MAX_BUCKETS - 1);
        self.buckets[i] += 1;
        self.sum_micros += micros_of(secs);
        self.count += 1;
    }
}

/// The bucket of a sample of `secs`: the first bound it does not exceed, or +Inf's.
fn bucket_of(bounds: &[f64], secs: f64) -> usize {
    bounds
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(bounds.len())
}

fn micros_of(secs: f64) -> u64 {
    Duration::from_secs_f64(secs.max(0.0)).as_micros() as u64
}

/// The latency histogram at one moment: `buckets[i]` counts samples `<= bounds[i]` and above
/// the previous bound; the last bucket is everything above the last bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySnapshot {
    pub count: u64,
    pub sum_seconds: f64,
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
}

/// The help line of [`WRITE_LATENCY_METRIC`].
pub const WRITE_LATENCY_HELP: &str = "Latency of one fact write (a batch, retries included)";

impl LatencySnapshot {
    /// The histogram in the Prometheus text format, as metric `name`: `# HELP`, `# TYPE …
    /// histogram`, one cumulative `_bucket{le="…"}` line per bound and `+Inf` (equal to
    /// `_count`), then `_sum` and `_count`.
    pub fn prometheus(&self, name: &str, help: &str) -> String {
        let mut out = histogram_header(name, help);
        self.prometheus_series(&mut out, name, "");
        out
    }

    /// Appends this histogram's lines to `out` as one series of metric `name`, with
    /// `labels` (`key="value"` pairs joined by commas, or empty) on every line.
    pub fn prometheus_series(&self, out: &mut String, name: &str, labels: &str) {
        // Writing to a String cannot fail.
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            cumulative += n;
            match self.bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                    );
                }
            }
        }
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum_seconds);
        let _ = writeln!(out, "{name}_count{braced} {}", self.count);
    }
}

/// The `# HELP` and `# TYPE … histogram` lines that precede a histogram's series.
pub fn histogram_header(name: &str, help: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_added_at_once_equals_its_samples_recorded_one_by_one() {
        let samples = [0.0001, 0.003, 0.003, 0.7, 42.0, -1.0, 10.0];
        let (one_by_one, at_once) = (LatencyHistogram::default(), LatencyHistogram::default());
        let mut tally = LatencyTally::default();
        for secs in samples {
            one_by_one.record(secs);
            tally.record(&WRITE_LATENCY_BUCKETS, secs);
        }
        at_once.add(&tally);
        assert_eq!(at_once.snapshot(), one_by_one.snapshot());
        assert_eq!(at_once.snapshot().count, samples.len() as u64);
    }

    #[test]
    fn prometheus_buckets_are_cumulative_and_end_at_the_count() {
        let h = LatencyHistogram::default();
        for secs in [0.0001, 0.003, 0.003, 0.7, 42.0] {
            h.record(secs);
        }
        let text = h.snapshot().prometheus("x_seconds", "help");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# HELP x_seconds help");
        assert_eq!(lines[1], "# TYPE x_seconds histogram");
        assert!(
            lines.contains(&"x_seconds_bucket{le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            lines.contains(&"x_seconds_bucket{le=\"0.0025\"} 1"),
            "{text}"
        );
        assert!(
            lines.contains(&"x_seconds_bucket{le=\"0.005\"} 3"),
            "{text}"
        );
        assert!(lines.contains(&"x_seconds_bucket{le=\"1\"} 4"), "{text}");
        assert!(lines.contains(&"x_seconds_bucket{le=\"10\"} 4"), "{text}");
        assert!(lines.contains(&"x_seconds_bucket{le=\"+Inf\"} 5"), "{text}");
        assert!(lines.contains(&"x_seconds_count 5"), "{text}");
        let sum: f64 = lines
            .iter()
            .find_map(|l| l.strip_prefix("x_seconds_sum "))
            .and_then(|v| v.parse().ok())
            .expect("a _sum line");
        assert!((sum - 42.7061).abs() < 1e-3, "{sum}");
        assert_eq!(
            lines.iter().filter(|l| l.contains("_bucket{")).count(),
            WRITE_LATENCY_BUCKETS.len() + 1
        );
    }
}
