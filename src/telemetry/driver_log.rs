//! The Cassandra driver's own warnings, thinned: while a node is away the `scylla` driver
//! writes a WARN or ERROR line several times a second (4 a second were seen, 118 KB over
//! 110 s), each about the same absence. [`DriverLogThrottle`] lets the first such line of
//! an episode through, counts the ones after it, and [`DriverLogThrottle::tick`] writes one
//! summary line with the counts per period (a minute in `ecom-stream`). An episode ends
//! after a whole period without a driver warning; the next one starts with a line again.
//!
//! Owns: that filter and its counters. Must never: drop a line of ours or one below WARN
//! (those have their own filter, `--log`), or write a line whose length depends on how
//! much was suppressed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// The targets of the driver's events.
const DRIVER_TARGET: &str = "scylla";

/// How often the summary is written in `ecom-stream`.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// The target of the summary line (ours, so never thinned itself).
pub const SUMMARY_TARGET: &str = "ecom_stream::driver_log";

#[derive(Debug, Default)]
struct State {
    /// An episode is on: its first line went through.
    open: AtomicBool,
    /// A driver warning or error was seen since the last tick.
    seen: AtomicBool,
    warnings: AtomicU64,
    errors: AtomicU64,
}

/// A driver event at WARN or ERROR.
fn thinned(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN && meta.target().starts_with(DRIVER_TARGET)
}

/// A per-layer filter (combine it last, with `and`, so that it counts only lines the other
/// filters would let through) and its ticker. Clones share one state.
#[derive(Debug, Clone)]
pub struct DriverLogThrottle {
    state: Arc<State>,
    /// Off: every line goes through (asked for by a debug log filter).
    active: bool,
}

impl DriverLogThrottle {
    /// `active: false` lets every line through: a `--log` at debug asked for them all.
    pub fn new(active: bool) -> Self {
        DriverLogThrottle {
            state: Arc::default(),
            active,
        }
    }

    /// Writes the summary of the period that just ended, if anything was held back, and
    /// closes an episode that had no driver warning during the period.
    pub fn tick(&self) {
        let s = &self.state;
        let warnings = s.warnings.swap(0, Ordering::Relaxed);
        let errors = s.errors.swap(0, Ordering::Relaxed);
        let seen = s.seen.swap(false, Ordering::Relaxed);
        if warnings + errors > 0 {
            tracing::warn!(
                target: SUMMARY_TARGET,
                warnings,
                errors,
                "the Cassandra driver kept warning; its lines since the last summary were \
                 counted, not written (RUST_LOG=scylla=debug writes them all)"
            );
        } else if !seen {
            s.open.store(false, Ordering::Relaxed);
        }
    }

    /// Calls [`tick`](Self::tick) every `every` on a thread of its own, for the life of the
    /// process.
    pub fn tick_every(&self, every: Duration) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("driver-log".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                me.tick();
            })
            .map(|_| ())
    }

    /// Whether this event goes through (counting it if not).
    fn pass(&self, meta: &Metadata<'_>) -> bool {
        if !self.active || !thinned(meta) {
            return true;
        }
        let level = *meta.level();
        let s = &self.state;
        s.seen.store(true, Ordering::Relaxed);
        if !s.open.swap(true, Ordering::Relaxed) {
            return true;
        }
        let counter = if level == Level::ERROR {
            &s.errors
        } else {
            &s.warnings
        };
        counter.fetch_add(1, Ordering::Relaxed);
        false
    }
}

impl<S: Subscriber> Filter<S> for DriverLogThrottle {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        // Decided per event (below): a callsite is never turned off for good.
        true
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Only the driver's warnings are decided per event; every other callsite keeps the
        // interest the other filters give it (a hot path's `trace!` stays off for good).
        if self.active && meta.is_event() && thinned(meta) {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _cx: &Context<'_, S>) -> bool {
        self.pass(event.metadata())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // "No limit of its own": without a hint, combined by `and`, the combination would
        // have none either.
        Some(LevelFilter::TRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::{Layer, SubscriberExt};

    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_driver_warnings_is_one_line_then_one_summary_per_period() {
        let buf = Buf::default();
        let out = buf.clone();
        let throttle = DriverLogThrottle::new(true);
        let filter = tracing_subscriber::EnvFilter::new("info").and(throttle.clone());
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || out.clone())
            .with_filter(filter);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // A node away for "two periods": 3 WARN and 1 ERROR a second, 120 times.
            for _ in 0..2 {
                for i in 0..120 {
                    tracing::warn!(target: "scylla::network::connection_pool", i, "node away");
                    tracing::warn!(target: "scylla::cluster::worker", "metadata refresh failed");
                    tracing::warn!(target: "scylla::network", "could not open a connection");
                    tracing::error!(target: "scylla::cluster", "control connection broken");
                    tracing::info!(target: "scylla::network", "below WARN: not ours to thin");
                    tracing::warn!("one of ours");
                }
                throttle.tick();
            }
            // A quiet period ends the episode; the next one starts with a line again.
            throttle.tick();
            tracing::warn!(target: "scylla::network", "away again");
        });
        let text = String::from_utf8_lossy(&buf.0.lock().expect("buf")).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
        assert_eq!(count("node away"), 1, "{text}");
        assert_eq!(count("metadata refresh failed"), 0, "{text}");
        assert_eq!(count("control connection broken"), 0, "{text}");
        assert_eq!(count("below WARN"), 240, "{text}");
        assert_eq!(count("one of ours"), 240, "{text}");
        assert_eq!(count("away again"), 1, "{text}");
        let summaries: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("the Cassandra driver kept warning"))
            .collect();
        assert_eq!(summaries.len(), 2, "{text}");
        assert!(summaries[0].contains("warnings=359 errors=120"), "{text}");
        assert!(summaries[1].contains("warnings=360 errors=120"), "{text}");
        // However many were held back, the summary is one short line.
        assert!(summaries.iter().all(|l| l.len() < 300), "{text}");
    }
}
