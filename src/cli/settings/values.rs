//! What every setting resolves to (design §5): [`Settings`], one field per row of
//! [`SETTINGS`](super::SETTINGS), and the small enums some of them take.
//!
//! Owns: the resolved values, their conversion into the config structs the engine, Pub/Sub
//! and the stores take, and their JSON form (what `config` prints and `--help` shows as
//! defaults). Must never: write a default of its own where a config struct has one (each
//! default is written once, in the `Default` of the struct it configures), or read any
//! layer (files, variables, flags: that is [`layers`](super::layers)).

use super::{de, EngineConfig, RetryPolicy};
use crate::cli::settings::pubsub::PubSubSettings;
use crate::store::cassandra::CassandraArgs;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The embedded store's directory when none is set.
pub const DEFAULT_DATA_DIR: &str = "./data";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// SQLite under the data dir: no server.
    #[default]
    Embedded,
    /// Apache Cassandra 4/5 or ScyllaDB (the --cassandra-* settings).
    Cassandra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncArg {
    /// fsync every commit: acked rows survive power loss.
    Full,
    /// fsync at checkpoints: acked rows survive a process crash, not power loss.
    Normal,
}

impl From<SyncArg> for crate::store::embedded::SyncMode {
    fn from(s: SyncArg) -> Self {
        match s {
            SyncArg::Full => Self::Full,
            SyncArg::Normal => Self::Normal,
        }
    }
}

impl From<crate::store::embedded::SyncMode> for SyncArg {
    fn from(s: crate::store::embedded::SyncMode) -> Self {
        match s {
            crate::store::embedded::SyncMode::Full => Self::Full,
            crate::store::embedded::SyncMode::Normal => Self::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event (for log collectors).
    Json,
}

/// How `ingest` reads its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestFormat {
    /// By the name: `.csv` and `.csv.gz` are CSV, anything else JSON lines.
    #[default]
    Auto,
    /// One JSON object per line (the wire format; Cloud Storage subscription text files).
    Jsonl,
    /// A header row naming the facts table's columns.
    Csv,
}

impl From<IngestFormat> for crate::source::file::Format {
    fn from(f: IngestFormat) -> Self {
        match f {
            IngestFormat::Auto => Self::Auto,
            IngestFormat::Jsonl => Self::Jsonl,
            IngestFormat::Csv => Self::Csv,
        }
    }
}

/// Every setting, as the file, the variables and the flags give it. Field names are the
/// file's keys (checked against [`SETTINGS`](super::SETTINGS) by a unit test).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub store: StoreKind,
    #[serde(with = "de::path")]
    pub data_dir: PathBuf,
    pub sync: SyncArg,
    /// Unset: `RUST_LOG`, else `info`.
    #[serde(with = "de::opt_text")]
    pub log: Option<String>,
    pub log_format: LogFormat,
    #[serde(with = "de::parsed")]
    pub metrics_addr: SocketAddr,
    #[serde(with = "de::text")]
    pub project: String,
    /// Unset: one fewer than the cores, at least one.
    #[serde(with = "de::opt_parsed")]
    pub shards: Option<usize>,
    #[serde(with = "de::duration")]
    pub hold: Duration,
    #[serde(with = "de::parsed")]
    pub pending_capacity: usize,
    #[serde(with = "de::parsed")]
    pub order_cache_capacity: u64,
    #[serde(with = "de::duration")]
    pub order_cache_ttl: Duration,
    #[serde(with = "de::parsed")]
    pub dedup_capacity: u64,
    #[serde(with = "de::parsed")]
    pub mailbox_capacity: usize,
    #[serde(with = "de::parsed")]
    pub batch_size: usize,
    #[serde(with = "de::duration")]
    pub linger: Duration,
    #[serde(with = "de::parsed")]
    pub max_in_flight: usize,
    #[serde(with = "de::parsed")]
    pub retry_attempts: u32,
    #[serde(with = "de::duration")]
    pub retry_backoff: Duration,
    #[serde(with = "de::duration")]
    pub retry_max_backoff: Duration,
    #[serde(with = "de::parsed")]
    pub max_write_attempts: u32,
    #[serde(with = "de::duration")]
    pub shutdown_deadline: Duration,
    /// Zero: no replay inside `run`.
    #[serde(with = "de::duration")]
    pub replay_every: Duration,
    /// Unset: `run` runs until SIGINT/SIGTERM.
    #[serde(with = "de::opt_duration")]
    pub until_idle: Option<Duration>,
    pub ingest_format: IngestFormat,
    /// Unset: positional write timestamps.
    #[serde(with = "de::opt_text")]
    pub ingest_timestamp_field: Option<String>,
    pub pubsub: PubSubSettings,
    pub cassandra: CassandraArgs,
}

impl Default for Settings {
    /// The config structs' own defaults, copied: none is written here.
    fn default() -> Self {
        let engine = EngineConfig::default();
        let pubsub = PubSubSettings::default();
        Settings {
            store: StoreKind::default(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            sync: crate::store::embedded::EmbeddedOptions::default()
                .sync
                .into(),
            log: None,
            log_format: LogFormat::default(),
            metrics_addr: crate::ops::DEFAULT_ADDR
                .parse()
                // A constant; the unit test `every_setting_has_one_row_and_valid_defaults`
                // parses it.
                .expect("ops::DEFAULT_ADDR is a socket address"),
            project: pubsub.project.clone(),
            shards: None,
            hold: engine.hold,
            pending_capacity: engine.pending_capacity,
            order_cache_capacity: engine.order_cache_capacity,
            order_cache_ttl: engine.order_cache_ttl,
            dedup_capacity: engine.dedup_capacity,
            mailbox_capacity: engine.mailbox_capacity,
            batch_size: engine.batch_size,
            linger: engine.linger,
            max_in_flight: engine.max_in_flight,
            retry_attempts: engine.retry.max_attempts,
            retry_backoff: engine.retry.initial_backoff,
            retry_max_backoff: engine.retry.max_backoff,
            max_write_attempts: engine.max_write_attempts,
            shutdown_deadline: engine.shutdown_deadline,
            replay_every: crate::app::run::DEFAULT_REPLAY_EVERY,
            until_idle: None,
            ingest_format: IngestFormat::default(),
            ingest_timestamp_field: None,
            pubsub,
            cassandra: CassandraArgs::default(),
        }
    }
}

impl Settings {
    /// The engine's config (not validated yet: `EngineConfig::validate` does that).
    pub fn engine(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        EngineConfig {
            shards: self.shards.unwrap_or(defaults.shards),
            hold: self.hold,
            pending_capacity: self.pending_capacity,
            order_cache_capacity: self.order_cache_capacity,
            order_cache_ttl: self.order_cache_ttl,
            dedup_capacity: self.dedup_capacity,
            mailbox_capacity: self.mailbox_capacity,
            batch_size: self.batch_size,
            linger: self.linger,
            max_in_flight: self.max_in_flight,
            retry: RetryPolicy {
                max_attempts: self.retry_attempts,
                initial_backoff: self.retry_backoff,
                max_backoff: self.retry_max_backoff,
            },
            max_write_attempts: self.max_write_attempts,
            shutdown_deadline: self.shutdown_deadline,
        }
    }

    /// The Pub/Sub settings, with the (top-level) project.
    pub fn pubsub(&self) -> PubSubSettings {
        PubSubSettings {
            project: self.project.clone(),
            ..self.pubsub.clone()
        }
    }
}

/// The value of every setting as `config` prints it (and `--help` shows defaults): JSON,
/// the password redacted.
pub(super) fn json_values(settings: &Settings) -> serde_json::Value {
    // Settings serialize to JSON by construction (strings, numbers, booleans, null).
    serde_json::to_value(settings).unwrap_or(serde_json::Value::Null)
}

/// What a setting left unset works out to, for those whose default is derived at start
/// (`config` prints the value a run would use, not `null`); JSON null for the others, whose
/// unset value means "none".
pub(super) fn derived_value(settings: &Settings, key: &str) -> serde_json::Value {
    use serde_json::Value;
    let subscription = |topic: &str| Value::from(super::pubsub::default_subscription(topic));
    match key {
        "shards" => Value::from(settings.engine().shards),
        // As `init_logging` reads it: the setting, else RUST_LOG, else info.
        "log" => Value::from(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
        "pubsub.orders_subscription" => subscription(&settings.pubsub.orders_topic),
        "pubsub.payments_subscription" => subscription(&settings.pubsub.payments_topic),
        "pubsub.dlq_subscription" => subscription(&settings.pubsub.dlq_topic),
        _ => Value::Null,
    }
}

pub(super) fn value_at<'a>(values: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let pointer = format!("/{}", key.replace('.', "/"));
    values.pointer(&pointer).unwrap_or(&serde_json::Value::Null)
}
