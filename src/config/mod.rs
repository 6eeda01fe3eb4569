//! The engine's configuration (design §4): its tuning knobs, typed and validated once at
//! start.
//!
//! Owns: [`EngineConfig`] and its validation, [`RetryPolicy`], [`ConfigError`], the one
//! duration syntax of every setting ([`parse_duration`]) and the serde adapters every
//! settings layer reads values through ([`de`]). Which settings exist, and how the file, the
//! `ECOM_*` variables and the flags are layered, is the command line's
//! (`cli::settings`). Must never: let a zero capacity through (a zero-sized queue deadlocks
//! instead of failing), or read the process environment.

pub mod de;

use std::time::Duration;

/// A duration setting that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{value:?} is not a duration ({source}; examples: 5s, 250ms, 2m)")]
pub struct BadDuration {
    pub value: String,
    #[source]
    pub source: humantime::DurationError,
}

/// The syntax of every duration setting: a number with a unit (`250ms`, `5s`, `2m`, `7days`).
pub fn parse_duration(s: &str) -> Result<Duration, BadDuration> {
    humantime::parse_duration(s).map_err(|source| BadDuration {
        value: s.to_string(),
        source,
    })
}

/// Bounds and timings of the join, writer and dead-letter actors.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Join shards; each is an actor on its own arbiter thread, so this is the join's
    /// parallelism. Default: [`default_shards`], one fewer than the cores.
    pub shards: usize,
    /// How long a payment whose order is unknown is held before the store is checked once
    /// more and it is dead-lettered (design §4.3).
    pub hold: Duration,
    /// Held payments per shard; beyond it the oldest are spilled to the DLQ early.
    pub pending_capacity: usize,
    /// Known order ids kept per shard; a miss costs one store read.
    pub order_cache_capacity: u64,
    /// How long a known order id stays cached after its last write.
    pub order_cache_ttl: Duration,
    /// Recently written ids per shard whose content is remembered to detect duplicates.
    pub dedup_capacity: u64,
    /// Messages (each a batch of events) an actor's mailbox holds before senders wait.
    pub mailbox_capacity: usize,
    /// Rows per store write.
    pub batch_size: usize,
    /// How long a partial batch waits for more rows before it is written anyway.
    pub linger: Duration,
    /// Store writes (batches) in flight at once, per writer.
    pub max_in_flight: usize,
    /// Retries of a store call that failed with a retriable error.
    pub retry: RetryPolicy,
    /// Failed writes of one row (across its deliveries) before it is dead-lettered as
    /// `write_failed` and its message acked.
    pub max_write_attempts: u32,
    /// How long shutdown may take to flush in-flight work before it gives up (un-acked
    /// messages are then redelivered by the source).
    pub shutdown_deadline: Duration,
}

/// Exponential backoff with full jitter for retriable store errors.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// The longest wait before the second try; it doubles with each further try.
    pub initial_backoff: Duration,
    /// The cap on any one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// One shard per core but one, and at least one. The shards are not the only busy threads:
/// the intake decodes on the System's thread, the writer and the acks run on one more
/// arbiter, and the store's blocking calls on tokio's pool. On 2 cores one shard beat two in
/// the engine bench, `demo` at scale and `ingest` (docs/profile.md, "Two shards on two
/// cores"), the second shard's thread costing more in hand-offs than it gave.
pub fn default_shards() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .saturating_sub(1)
        .max(1)
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: default_shards(),
            hold: Duration::from_secs(5),
            pending_capacity: 100_000,
            order_cache_capacity: 1_000_000,
            order_cache_ttl: Duration::from_secs(3600),
            dedup_capacity: 1_000_000,
            mailbox_capacity: 16,
            // 1,000 rows amortise one SQLite commit (an fsync) well below 1 ms per row;
            // see BENCHMARKS.md for the writer's figures.
            batch_size: 1000,
            linger: Duration::from_millis(5),
            max_in_flight: 4,
            retry: RetryPolicy::default(),
            max_write_attempts: 5,
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// A setting that cannot work, named as the user names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

impl EngineConfig {
    /// Checks every bound; the error names the flag the user has to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn at_least_one(setting: &'static str, v: u64) -> Result<(), ConfigError> {
            if v == 0 {
                return Err(ConfigError {
                    setting,
                    problem: "must be at least 1".into(),
                });
            }
            Ok(())
        }
        fn nonzero(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
            if d.is_zero() {
                return Err(ConfigError {
                    setting,
                    problem: "must be longer than 0s".into(),
                });
            }
            Ok(())
        }
        // Upper bounds keep every derived quantity (semaphore permits, deadlines, memory)
        // far from overflow; each is well beyond any sensible setting.
        fn at_most(setting: &'static str, v: u64, max: u64) -> Result<(), ConfigError> {
            if v > max {
                return Err(ConfigError {
                    setting,
                    problem: format!("{v} is more than {max}"),
                });
            }
            Ok(())
        }
        fn no_longer(setting: &'static str, d: Duration, max: Duration) -> Result<(), ConfigError> {
            if d > max {
                return Err(ConfigError {
                    setting,
                    problem: format!(
                        "must not be longer than {}",
                        humantime::format_duration(max)
                    ),
                });
            }
            Ok(())
        }
        const DAY: Duration = Duration::from_secs(86_400);
        at_least_one("--shards", self.shards as u64)?;
        at_most("--shards", self.shards as u64, 1024)?;
        nonzero("--hold", self.hold)?;
        no_longer("--hold", self.hold, DAY)?;
        at_least_one("--pending-capacity", self.pending_capacity as u64)?;
        at_most(
            "--pending-capacity",
            self.pending_capacity as u64,
            100_000_000,
        )?;
        at_least_one("--order-cache-capacity", self.order_cache_capacity)?;
        at_most(
            "--order-cache-capacity",
            self.order_cache_capacity,
            1_000_000_000,
        )?;
        nonzero("--order-cache-ttl", self.order_cache_ttl)?;
        at_least_one("--dedup-capacity", self.dedup_capacity)?;
        at_most("--dedup-capacity", self.dedup_capacity, 1_000_000_000)?;
        at_least_one("--mailbox-capacity", self.mailbox_capacity as u64)?;
        at_most(
            "--mailbox-capacity",
            self.mailbox_capacity as u64,
            1_000_000,
        )?;
        at_least_one("--batch-size", self.batch_size as u64)?;
        at_most("--batch-size", self.batch_size as u64, 1_000_000)?;
        nonzero("--linger", self.linger)?;
        no_longer("--linger", self.linger, Duration::from_secs(60))?;
        at_least_one("--max-in-flight", self.max_in_flight as u64)?;
        at_most("--max-in-flight", self.max_in_flight as u64, 65_536)?;
        at_least_one("--retry-attempts", u64::from(self.retry.max_attempts))?;
        at_most("--retry-attempts", u64::from(self.retry.max_attempts), 1000)?;
        nonzero("--retry-backoff", self.retry.initial_backoff)?;
        at_least_one("--max-write-attempts", u64::from(self.max_write_attempts))?;
        at_most(
            "--max-write-attempts",
            u64::from(self.max_write_attempts),
            1000,
        )?;
        no_longer(
            "--retry-max-backoff",
            self.retry.max_backoff,
            Duration::from_secs(3600),
        )?;
        no_longer("--shutdown-deadline", self.shutdown_deadline, DAY)?;
        if self.retry.max_backoff < self.retry.initial_backoff {
            return Err(ConfigError {
                setting: "--retry-max-backoff",
                problem: "must not be shorter than --retry-backoff".into(),
            });
        }
        nonzero("--shutdown-deadline", self.shutdown_deadline)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_needs_its_unit_and_the_error_repeats_the_value() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("7days"), Ok(Duration::from_secs(7 * 86_400)));
        let e = parse_duration("soon").expect_err("no number");
        assert!(
            e.to_string().starts_with("\"soon\" is not a duration"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert!(parse_duration("5").is_err(), "a unit is required");
    }

    #[test]
    fn defaults_are_valid_and_zero_bounds_are_named() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let cfg = EngineConfig {
            batch_size: 0,
            ..EngineConfig::default()
        };
        let err = cfg.validate().expect_err("zero batch");
        assert_eq!(err.setting, "--batch-size");
        assert_eq!(
            err.to_string(),
            "invalid setting --batch-size: must be at least 1"
        );
        let cfg = EngineConfig {
            hold: Duration::ZERO,
            ..EngineConfig::default()
        };
        assert_eq!(cfg.validate().map_err(|e| e.setting), Err("--hold"));
        let cfg = EngineConfig {
            hold: Duration::from_secs(u64::MAX / 4),
            ..EngineConfig::default()
        };
        assert_eq!(cfg.validate().map_err(|e| e.setting), Err("--hold"));
        let cfg = EngineConfig {
            max_in_flight: usize::MAX,
            ..EngineConfig::default()
        };
        assert_eq!(
            cfg.validate().map_err(|e| e.setting),
            Err("--max-in-flight")
        );
    }
}
