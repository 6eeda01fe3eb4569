//! The layered configuration (design §5): defaults, then the config file, then `ECOM_*`
//! variables, then the flags given on the command line, merged by figment, which keeps where
//! every value came from.
//!
//! Owns: the table of settings ([`SETTINGS`]: each one's file key, flag and variable), the
//! [`Settings`] they resolve to, finding and reading the file, the flags' clap definitions
//! (help, value names, possible values, the default shown), and the errors that name a
//! setting by all three names and by where its bad value came from. Must never: write a
//! default of its own where a config struct has one (each default is written once, in the
//! `Default` of the struct it configures, and `--help` shows it from there), let clap apply a
//! default (clap's defaults would hide the file and the variables), or put anything into the
//! process environment.
//!
//! Keys are the variables' names without `ECOM_`, in lower case; the Pub/Sub and Cassandra
//! settings sit in the tables `[pubsub]` and `[cassandra]`, so `[cassandra] nodes = "…"` is
//! `ECOM_CASSANDRA_NODES` and top-level `hold = "5s"` is `ECOM_HOLD`. A list of strings is
//! joined with commas. `PUBSUB_EMULATOR_HOST` is a layer of its own, below the file, as
//! Google's clients read it.

use crate::config::{de, ConfigError, EngineConfig, RetryPolicy};
use crate::pubsub::args::PubSubSettings;
use crate::store::cassandra::CassandraArgs;
use clap::builder::{PossibleValue, PossibleValuesParser, ValueParser};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args, ValueEnum};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name looked for in the working directory when none is given.
pub const DEFAULT_FILE: &str = "ecom-stream.toml";

/// The embedded store's directory when none is set.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The variable Google's clients read for the emulator: the layer below the file.
pub const GOOGLE_EMULATOR_VAR: &str = "PUBSUB_EMULATOR_HOST";

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

/// Every setting, as the file, the variables and the flags give it. Field names are the
/// file's keys (checked against [`SETTINGS`] by a unit test).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub store: StoreKind,
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
    /// Unset: the number of cores.
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
    #[serde(with = "de::duration")]
    pub shutdown_deadline: Duration,
    /// Unset: `run` runs until SIGINT/SIGTERM.
    #[serde(with = "de::opt_duration")]
    pub until_idle: Option<Duration>,
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
            shutdown_deadline: engine.shutdown_deadline,
            until_idle: None,
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

/// What a setting's value is: how `config` prints it and what its flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A number with a unit: `250ms`, `5s`, `2m`.
    Duration,
    Integer,
    /// One of a few names.
    Enum,
    /// Free text (names, host lists, filters).
    Text,
    /// Free text never printed (the Cassandra password).
    Secret,
    Bool,
    /// `host:port`.
    Address,
    Path,
}

/// Which commands take a setting's flag (`config` takes them all). The file and the
/// variables may hold any setting whatever the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every command.
    Global,
    /// `demo` and `run`: the join engine.
    Engine,
    /// `run`, `setup` and `produce`: where Pub/Sub is and what things are called.
    PubSub,
    /// `run`: how subscriptions are read.
    Subscriber,
    /// `setup`: how subscriptions are created.
    Subscription,
    /// `run` only.
    Run,
}

impl Scope {
    /// The subcommands whose flags these are (none for [`Scope::Global`]: the root's).
    pub fn commands(self) -> &'static [&'static str] {
        match self {
            Scope::Global => &[],
            Scope::Engine => &["demo", "run", "config"],
            Scope::PubSub => &["run", "setup", "produce", "config"],
            Scope::Subscriber | Scope::Run => &["run", "config"],
            Scope::Subscription => &["setup", "config"],
        }
    }
}

/// One setting: its three names, and what its flag looks like.
#[derive(Debug)]
pub struct Setting {
    /// The file's key (`hold`, `pubsub.streams`); also the flag's clap id.
    pub key: &'static str,
    /// The flag, without `--`.
    pub flag: &'static str,
    pub env: &'static str,
    pub kind: Kind,
    pub scope: Scope,
    /// The flag's help; `None`: as [`CassandraArgs`] documents it.
    pub help: Option<&'static str>,
    /// The possible values of an [`Kind::Enum`].
    pub choices: Option<fn() -> Vec<PossibleValue>>,
}

const fn setting(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    kind: Kind,
    scope: Scope,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        flag,
        env,
        kind,
        scope,
        help: Some(help),
        choices: None,
    }
}

const fn choice(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    choices: fn() -> Vec<PossibleValue>,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        flag,
        env,
        kind: Kind::Enum,
        scope: Scope::Global,
        help: Some(help),
        choices: Some(choices),
    }
}

const fn cassandra(
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    kind: Kind,
) -> Setting {
    Setting {
        key,
        flag,
        env,
        kind,
        scope: Scope::Global,
        help: None,
        choices: None,
    }
}

fn choices<T: ValueEnum>() -> Vec<PossibleValue> {
    T::value_variants()
        .iter()
        .filter_map(T::to_possible_value)
        .collect()
}

use Kind::{Address, Bool, Duration as Dur, Integer, Path as PathKind, Secret, Text};
use Scope::{Engine, Global, PubSub, Run, Subscriber, Subscription};

/// Every setting, in the order `config` prints them. Each has a flag, a variable and a file
/// key; the README's tables list the same (an integration test compares them).
pub static SETTINGS: &[Setting] = &[
    choice("store", "store", "ECOM_STORE", choices::<StoreKind>, "Where rows go."),
    setting("data_dir", "data-dir", "ECOM_DATA_DIR", PathKind, Global, "The embedded store's directory."),
    choice("sync", "sync", "ECOM_SYNC", choices::<SyncArg>, "The embedded store's commit durability."),
    setting("log", "log", "ECOM_LOG", Text, Global, "Log filter, as RUST_LOG (e.g. `info`, `ecom_stream=debug`). Unset: RUST_LOG if set, else info."),
    choice("log_format", "log-format", "ECOM_LOG_FORMAT", choices::<LogFormat>, "Log lines as human-readable text or as JSON objects (one per line)."),
    setting("metrics_addr", "metrics-addr", "ECOM_METRICS_ADDR", Address, Global, "Where `run` and `demo --serve` serve /metrics, /healthz, /readyz and the status page."),
    setting("shards", "shards", "ECOM_SHARDS", Integer, Engine, "Join shards. Unset: the number of cores."),
    setting("hold", "hold", "ECOM_HOLD", Dur, Engine, "How long a payment waits for its order before the DLQ."),
    setting("pending_capacity", "pending-capacity", "ECOM_PENDING_CAPACITY", Integer, Engine, "Held payments per shard before the oldest spill to the DLQ early."),
    setting("order_cache_capacity", "order-cache-capacity", "ECOM_ORDER_CACHE_CAPACITY", Integer, Engine, "Known order ids cached per shard."),
    setting("order_cache_ttl", "order-cache-ttl", "ECOM_ORDER_CACHE_TTL", Dur, Engine, "How long a known order id stays cached after its last write."),
    setting("dedup_capacity", "dedup-capacity", "ECOM_DEDUP_CAPACITY", Integer, Engine, "Written ids remembered per shard for duplicate detection."),
    setting("mailbox_capacity", "mailbox-capacity", "ECOM_MAILBOX_CAPACITY", Integer, Engine, "Batches an actor mailbox holds before senders wait."),
    setting("batch_size", "batch-size", "ECOM_BATCH_SIZE", Integer, Engine, "Rows per store write."),
    setting("linger", "linger", "ECOM_LINGER", Dur, Engine, "Longest wait for a batch to fill."),
    setting("max_in_flight", "max-in-flight", "ECOM_MAX_IN_FLIGHT", Integer, Engine, "Store writes in flight at once."),
    setting("retry_attempts", "retry-attempts", "ECOM_RETRY_ATTEMPTS", Integer, Engine, "Tries of a store call that fails with a retriable error."),
    setting("retry_backoff", "retry-backoff", "ECOM_RETRY_BACKOFF", Dur, Engine, "Longest wait before a store call's second try; it doubles with each further try (full jitter)."),
    setting("retry_max_backoff", "retry-max-backoff", "ECOM_RETRY_MAX_BACKOFF", Dur, Engine, "The cap on any one wait between tries."),
    setting("shutdown_deadline", "shutdown-deadline", "ECOM_SHUTDOWN_DEADLINE", Dur, Engine, "Longest time shutdown may take to flush."),
    setting("until_idle", "until-idle", "ECOM_UNTIL_IDLE", Dur, Run, "Exit by itself once nothing arrived for DURATION and nothing is held (backfills, load runs). Unset: run until SIGINT/SIGTERM."),
    setting("project", "project", "ECOM_PROJECT", Text, PubSub, "Google Cloud project of the topics and subscriptions."),
    setting("pubsub.emulator_host", "pubsub-emulator-host", "ECOM_PUBSUB_EMULATOR_HOST", Text, PubSub, "The Pub/Sub emulator's host:port (plaintext, anonymous credentials). Unset: PUBSUB_EMULATOR_HOST, as Google's clients read it (below the config file); neither means the real service with Application Default Credentials."),
    setting("pubsub.endpoint", "pubsub-endpoint", "ECOM_PUBSUB_ENDPOINT", Text, PubSub, "A Pub/Sub endpoint other than the global one (regional, private)."),
    setting("pubsub.orders_topic", "orders-topic", "ECOM_PUBSUB_ORDERS_TOPIC", Text, PubSub, "The orders topic."),
    setting("pubsub.payments_topic", "payments-topic", "ECOM_PUBSUB_PAYMENTS_TOPIC", Text, PubSub, "The payments topic."),
    setting("pubsub.dlq_topic", "dlq-topic", "ECOM_PUBSUB_DLQ_TOPIC", Text, PubSub, "The topic dead-lettered payments are published to."),
    setting("pubsub.orders_subscription", "orders-subscription", "ECOM_PUBSUB_ORDERS_SUBSCRIPTION", Text, PubSub, "Unset: the orders topic's name + `-sub`."),
    setting("pubsub.payments_subscription", "payments-subscription", "ECOM_PUBSUB_PAYMENTS_SUBSCRIPTION", Text, PubSub, "Unset: the payments topic's name + `-sub`."),
    setting("pubsub.dlq_subscription", "dlq-subscription", "ECOM_PUBSUB_DLQ_SUBSCRIPTION", Text, PubSub, "Unset: the DLQ topic's name + `-sub` (created by `setup`, so that dead letters are kept for whoever reads them)."),
    setting("pubsub.streams", "pubsub-streams", "ECOM_PUBSUB_STREAMS", Integer, Subscriber, "Concurrent streaming pulls per subscription."),
    setting("pubsub.max_outstanding_messages", "pubsub-max-outstanding-messages", "ECOM_PUBSUB_MAX_OUTSTANDING_MESSAGES", Integer, Subscriber, "Unanswered messages held at most, per subscription."),
    setting("pubsub.max_outstanding_bytes", "pubsub-max-outstanding-bytes", "ECOM_PUBSUB_MAX_OUTSTANDING_BYTES", Integer, Subscriber, "Unanswered payload bytes held at most, per subscription."),
    setting("pubsub.batch_size", "pubsub-batch-size", "ECOM_PUBSUB_BATCH_SIZE", Integer, Subscriber, "Messages per hand-over to the join."),
    setting("pubsub.max_lease", "pubsub-max-lease", "ECOM_PUBSUB_MAX_LEASE", Dur, Subscriber, "How long the client keeps extending an unanswered message's lease (longer than --hold)."),
    setting("pubsub.lease_extension", "pubsub-lease-extension", "ECOM_PUBSUB_LEASE_EXTENSION", Dur, Subscriber, "How far each lease extension reaches (10s to 600s): after a crash, un-acked messages come back after at most this long."),
    setting("pubsub.ack_deadline", "ack-deadline", "ECOM_PUBSUB_ACK_DEADLINE", Dur, Subscription, "Ack deadline of created subscriptions (10s to 600s)."),
    setting("pubsub.retention", "retention", "ECOM_PUBSUB_RETENTION", Dur, Subscription, "How long created subscriptions keep unacked messages (10m to 7days)."),
    cassandra("cassandra.nodes", "cassandra-nodes", "ECOM_CASSANDRA_NODES", Text),
    cassandra("cassandra.local_dc", "cassandra-local-dc", "ECOM_CASSANDRA_LOCAL_DC", Text),
    cassandra("cassandra.username", "cassandra-username", "ECOM_CASSANDRA_USERNAME", Text),
    cassandra("cassandra.password", "cassandra-password", "ECOM_CASSANDRA_PASSWORD", Secret),
    cassandra("cassandra.tls_ca", "cassandra-tls-ca", "ECOM_CASSANDRA_TLS_CA", PathKind),
    cassandra("cassandra.tls_cert", "cassandra-tls-cert", "ECOM_CASSANDRA_TLS_CERT", PathKind),
    cassandra("cassandra.tls_key", "cassandra-tls-key", "ECOM_CASSANDRA_TLS_KEY", PathKind),
    cassandra("cassandra.tls_verify_hostname", "cassandra-tls-verify-hostname", "ECOM_CASSANDRA_TLS_VERIFY_HOSTNAME", Bool),
    cassandra("cassandra.write_consistency", "cassandra-write-consistency", "ECOM_CASSANDRA_WRITE_CONSISTENCY", Text),
    cassandra("cassandra.read_consistency", "cassandra-read-consistency", "ECOM_CASSANDRA_READ_CONSISTENCY", Text),
    cassandra("cassandra.request_timeout", "cassandra-request-timeout", "ECOM_CASSANDRA_REQUEST_TIMEOUT", Dur),
    cassandra("cassandra.pool_size", "cassandra-pool-size", "ECOM_CASSANDRA_POOL_SIZE", Integer),
    cassandra("cassandra.keyspace", "cassandra-keyspace", "ECOM_CASSANDRA_KEYSPACE", Text),
    cassandra("cassandra.replication", "cassandra-replication", "ECOM_CASSANDRA_REPLICATION", Text),
    cassandra("cassandra.max_in_flight", "cassandra-max-in-flight", "ECOM_CASSANDRA_MAX_IN_FLIGHT", Integer),
    cassandra("cassandra.connect_wait", "cassandra-connect-wait", "ECOM_CASSANDRA_CONNECT_WAIT", Dur),
];

/// The setting of a file key.
pub fn by_key(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The setting of a flag (with or without `--`).
pub fn by_flag(flag: &str) -> Option<&'static Setting> {
    let flag = flag.trim_start_matches('-');
    SETTINGS.iter().find(|s| s.flag == flag)
}

/// The value of every setting as `config` prints it (and `--help` shows defaults): JSON,
/// the password redacted.
fn json_values(settings: &Settings) -> serde_json::Value {
    // Settings serialize to JSON by construction (strings, numbers, booleans, null).
    serde_json::to_value(settings).unwrap_or(serde_json::Value::Null)
}

fn value_at<'a>(values: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    let pointer = format!("/{}", key.replace('.', "/"));
    values.pointer(&pointer).unwrap_or(&serde_json::Value::Null)
}

/// The clap arguments of the settings in `scope`: no `env` and no default (both are layers
/// of their own here); the default only shows in the help, taken from [`Settings::default`].
pub fn flag_args(scope: Scope) -> Vec<Arg> {
    let defaults = json_values(&Settings::default());
    let cassandra = CassandraArgs::augment_args(clap::Command::new("cassandra"));
    SETTINGS
        .iter()
        .filter(|s| s.scope == scope)
        .map(|s| {
            let help = s
                .help
                .map(str::to_string)
                .or_else(|| {
                    cassandra
                        .get_arguments()
                        .find(|a| a.get_long() == Some(s.flag))
                        .and_then(|a| a.get_help())
                        .map(|h| h.to_string())
                })
                .unwrap_or_default();
            let default = match value_at(&defaults, s.key) {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(v) => format!(" [default: {v}]"),
                v => format!(" [default: {v}]"),
            };
            let arg = Arg::new(s.key)
                .long(s.flag)
                .action(ArgAction::Set)
                .value_name(value_name(s))
                .help(format!(
                    "{help}{default} [env: {}] [file: {}]",
                    s.env, s.key
                ))
                .global(scope == Scope::Global);
            match s.choices {
                Some(choices) => arg.value_parser(PossibleValuesParser::new(choices())),
                // The value is parsed with the other layers' values, by serde: one parser,
                // one error format whatever the source.
                None => arg.value_parser(ValueParser::os_string()),
            }
        })
        .collect()
}

fn value_name(s: &Setting) -> String {
    match s.kind {
        Kind::Duration => "DURATION".into(),
        Kind::Integer => "N".into(),
        Kind::Bool => "BOOL".into(),
        Kind::Address => "ADDR".into(),
        Kind::Path => "PATH".into(),
        Kind::Enum | Kind::Text | Kind::Secret => {
            s.key.rsplit('.').next().unwrap_or(s.key).to_uppercase()
        }
    }
}

/// The settings whose flag was given on the command line, with the value as typed. Values
/// clap did not take from the command line (there are none today: no setting has a clap
/// default or variable) are left to the other layers.
pub fn given_flags(matches: &ArgMatches) -> Vec<(&'static Setting, OsString)> {
    let mut given: Vec<(&'static Setting, OsString)> = Vec::new();
    let mut level = Some(matches);
    while let Some(m) = level {
        for id in m.ids() {
            let Some(s) = by_key(id.as_str()) else {
                continue;
            };
            if m.value_source(id.as_str()) != Some(ValueSource::CommandLine) {
                continue;
            }
            let Some(value) = m.get_raw(id.as_str()).and_then(|mut v| v.next_back()) else {
                continue;
            };
            // A global flag shows at every level; the deepest is the one given last.
            given.retain(|(g, _)| g.key != s.key);
            given.push((s, value.to_os_string()));
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    given
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable (the setting's own, or `PUBSUB_EMULATOR_HOST`).
    Env(&'static str),
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::File(path) => write!(f, "set in {}", path.display()),
            Origin::Env(var) => write!(f, "set by {var}"),
            Origin::Flag => f.write_str("set by the flag"),
        }
    }
}

impl Origin {
    /// How `config` names it: `default`, `flag`, `env`, `env PUBSUB_EMULATOR_HOST`, or the
    /// file's path.
    pub fn label(&self, setting: &Setting) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File(path) => path.display().to_string(),
            Origin::Env(var) if *var == setting.env => "env".into(),
            Origin::Env(var) => format!("env {var}"),
            Origin::Flag => "flag".into(),
        }
    }
}

/// One setting whose value cannot be used: the line names the flag, the variable and the file
/// key, and where the value came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting --{flag} ({env}, file key `{key}`; {origin}): {problem}", flag = .setting.flag, env = .setting.env, key = .setting.key)]
pub struct SettingError {
    pub setting: &'static Setting,
    pub origin: Origin,
    pub problem: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        /// ` (line N)`, when known.
        line: String,
        /// The parser's message, on one line.
        message: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("unknown setting `{key}` in config file {} (keys are the ECOM_* variables without the prefix, in lower case; tables prefix their name)", path.display())]
    UnknownKey { key: String, path: PathBuf },
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// A figment error about no known setting (not expected: every key is checked first).
    #[error("invalid configuration: {0}")]
    Other(#[source] Box<figment::Error>),
}

/// Which file to read: the one asked for (`--config` or `ECOM_CONFIG`; it must exist), else
/// [`DEFAULT_FILE`] in the working directory if it is there.
pub fn locate(asked: Option<PathBuf>) -> Option<PathBuf> {
    match asked.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Some(path),
        None => {
            let default = PathBuf::from(DEFAULT_FILE);
            default.is_file().then_some(default)
        }
    }
}

/// The metadata names of the layers that are not files.
const ENV_LAYER: &str = "ECOM_* variables";
const GOOGLE_LAYER: &str = "PUBSUB_EMULATOR_HOST";
const FLAG_LAYER: &str = "flags";

/// One layer of settings, as figment reads it.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Puts `value` at the dotted `key` of `dict`.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_string(), value);
        }
        Some((table, rest)) => {
            let entry = dict
                .entry(table.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// A layer of text values (variables, flags): kept as text, since only the setting's type
/// knows whether `1234` is a number or a password.
fn text_layer(
    metadata: Metadata,
    values: Vec<(&'static Setting, OsString)>,
    origin: impl Fn(&'static Setting) -> Origin,
) -> Result<Layer, SettingError> {
    let mut dict = Dict::new();
    for (setting, value) in values {
        let Some(text) = value.to_str() else {
            return Err(SettingError {
                setting,
                origin: origin(setting),
                problem: "is not valid UTF-8".into(),
                source: None,
            });
        };
        insert(&mut dict, setting.key, Value::from(text.to_string()));
    }
    Ok(Layer { metadata, dict })
}

/// The config file's settings, each key checked against [`SETTINGS`].
fn file_layer(path: &Path) -> Result<Layer, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source: toml::de::Error| {
        let line = source
            .span()
            .map(|span| {
                format!(
                    " (line {})",
                    text[..span.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        LoadError::Syntax {
            path: path.to_path_buf(),
            line,
            message: source.message().replace('\n', " "),
            source: Box::new(source),
        }
    })?;
    check_keys(path, "", &table)?;
    let dict = match Value::serialize(&table) {
        Ok(Value::Dict(_, dict)) => dict,
        // A TOML table always serializes to a dictionary.
        _ => Dict::new(),
    };
    Ok(Layer {
        metadata: Metadata::from("config file", Source::File(path.to_path_buf())),
        dict,
    })
}

fn check_keys(path: &Path, prefix: &str, table: &toml::Table) -> Result<(), LoadError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) if by_key(&key).is_none() => check_keys(path, &key, inner)?,
            _ if by_key(&key).is_some() => {}
            _ => {
                return Err(LoadError::UnknownKey {
                    key,
                    path: path.to_path_buf(),
                })
            }
        }
    }
    Ok(())
}

/// The settings as the layers resolve them, and where each value came from.
#[derive(Debug)]
pub struct Resolved {
    pub settings: Settings,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    figment: Figment,
}

/// Reads the layers, lowest first: `PUBSUB_EMULATOR_HOST`, the file, the `ECOM_*`
/// variables (through `env`), the flags given.
pub fn resolve(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    flags: Vec<(&'static Setting, OsString)>,
) -> Result<Resolved, LoadError> {
    let emulator = by_key("pubsub.emulator_host")
        .into_iter()
        .filter_map(|s| env(GOOGLE_EMULATOR_VAR).map(|v| (s, v)))
        .collect();
    let google = text_layer(Metadata::named(GOOGLE_LAYER), emulator, |_| {
        Origin::Env(GOOGLE_EMULATOR_VAR)
    })?;
    let mut figment = Figment::new().merge(google);
    if let Some(path) = file {
        figment = figment.merge(file_layer(path)?);
    }
    let vars = SETTINGS
        .iter()
        .filter_map(|s| env(s.env).map(|v| (s, v)))
        .collect();
    figment = figment.merge(text_layer(Metadata::named(ENV_LAYER), vars, |s| {
        Origin::Env(s.env)
    })?);
    figment = figment.merge(text_layer(Metadata::named(FLAG_LAYER), flags, |_| {
        Origin::Flag
    })?);
    let settings = figment.extract::<Settings>().map_err(|e| {
        let key = e.path.join(".");
        match by_key(&key) {
            Some(setting) => LoadError::Setting(SettingError {
                setting,
                origin: origin_of(setting, e.metadata.as_ref()),
                problem: e.kind.to_string(),
                source: Some(Box::new(e)),
            }),
            None => LoadError::Other(Box::new(e)),
        }
    })?;
    Ok(Resolved {
        settings,
        file: file.map(Path::to_path_buf),
        figment,
    })
}

fn origin_of(setting: &'static Setting, metadata: Option<&Metadata>) -> Origin {
    let Some(metadata) = metadata else {
        return Origin::Default;
    };
    if let Some(Source::File(path)) = &metadata.source {
        return Origin::File(path.clone());
    }
    match metadata.name.as_ref() {
        ENV_LAYER => Origin::Env(setting.env),
        GOOGLE_LAYER => Origin::Env(GOOGLE_EMULATOR_VAR),
        FLAG_LAYER => Origin::Flag,
        _ => Origin::Default,
    }
}

/// One line of `ecom-stream config`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub key: &'static str,
    pub flag: String,
    pub env: &'static str,
    /// JSON null when unset; the password as `<redacted>`.
    pub value: serde_json::Value,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl Resolved {
    /// Where the value of `setting` came from.
    pub fn origin(&self, setting: &'static Setting) -> Origin {
        origin_of(setting, self.figment.find_metadata(setting.key))
    }

    /// A command's validation error about a setting, named by all three names and by where
    /// its value came from; `None` for an error about something else (a command's own flag).
    pub fn explain(&self, e: &ConfigError) -> Option<SettingError> {
        // Some settings name their variable already (`--cassandra-nodes (ECOM_…)`).
        let flag = e.setting.split_whitespace().next()?;
        let setting = by_flag(flag)?;
        Some(SettingError {
            setting,
            origin: self.origin(setting),
            problem: e.problem.clone(),
            source: Some(Box::new(e.clone())),
        })
    }

    /// Every setting with its effective value and its source, in table order.
    pub fn rows(&self) -> Vec<Row> {
        let values = json_values(&self.settings);
        SETTINGS
            .iter()
            .map(|s| Row {
                key: s.key,
                flag: format!("--{}", s.flag),
                env: s.env,
                value: value_at(&values, s.key).clone(),
                source: self.origin(s).label(s),
                kind: s.kind,
                choices: s
                    .choices
                    .map(|c| c().iter().map(|v| v.get_name().to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if v.is_object() {
                    leaves(&key, v, out);
                } else {
                    out.push(key);
                }
            }
        }
    }

    #[test]
    fn every_setting_has_one_row_and_valid_defaults() {
        let mut keys = Vec::new();
        leaves("", &json_values(&Settings::default()), &mut keys);
        let mut table: Vec<String> = SETTINGS.iter().map(|s| s.key.to_string()).collect();
        keys.sort();
        table.sort();
        assert_eq!(keys, table, "Settings' fields and SETTINGS differ");
        for s in SETTINGS {
            assert_eq!(
                s.env,
                format!("ECOM_{}", s.key.replace('.', "_").to_uppercase()),
                "{s:?}"
            );
            assert_eq!(SETTINGS.iter().filter(|t| t.flag == s.flag).count(), 1);
            assert!(!s.flag.contains('_'), "{s:?}");
            assert_eq!(s.kind == Kind::Enum, s.choices.is_some(), "{s:?}");
            assert!(!s.scope.commands().is_empty() || s.scope == Scope::Global);
        }
        let d = Settings::default();
        d.engine().validate().expect("engine defaults");
        d.pubsub().to_config().expect("pubsub defaults");
        d.cassandra.to_config().expect("cassandra defaults");
        assert_eq!(d.engine(), EngineConfig::default());
    }

    #[test]
    fn nothing_set_resolves_to_the_defaults() {
        let r = resolve(None, no_env, Vec::new()).expect("defaults");
        assert_eq!(r.settings, Settings::default());
        assert!(r.rows().iter().all(|row| row.source == "default"));
    }

    #[test]
    fn flags_over_variables_over_the_file_over_the_google_variable() {
        let (_dir, path) = file(
            "hold = \"7s\"\nbatch_size = 7\n[pubsub]\nemulator_host = \"file:1\"\nstreams = \"3\"\n[cassandra]\nnodes = [\"a:1\", \"b:2\"]\n",
        );
        let env = |var: &str| -> Option<OsString> {
            match var {
                "ECOM_BATCH_SIZE" => Some("8".into()),
                "ECOM_HOLD" => Some("8s".into()),
                "PUBSUB_EMULATOR_HOST" => Some("google:1".into()),
                _ => None,
            }
        };
        let hold = by_key("hold").expect("hold");
        let r = resolve(Some(&path), env, vec![(hold, "9s".into())]).expect("resolves");
        assert_eq!(r.settings.hold, Duration::from_secs(9));
        assert_eq!(r.origin(hold), Origin::Flag);
        assert_eq!(r.settings.batch_size, 8);
        let batch = by_key("batch_size").expect("batch");
        assert_eq!(r.origin(batch), Origin::Env("ECOM_BATCH_SIZE"));
        assert_eq!(r.settings.pubsub.streams, 3, "a number as a string");
        assert_eq!(r.settings.pubsub.emulator_host.as_deref(), Some("file:1"));
        assert_eq!(r.settings.cassandra.cassandra_nodes, "a:1,b:2");
        let nodes = by_key("cassandra.nodes").expect("nodes");
        assert_eq!(r.origin(nodes), Origin::File(path.clone()));
        // Without the file, PUBSUB_EMULATOR_HOST is the emulator.
        let r = resolve(None, env, Vec::new()).expect("resolves");
        assert_eq!(r.settings.pubsub.emulator_host.as_deref(), Some("google:1"));
        let host = by_key("pubsub.emulator_host").expect("host");
        assert_eq!(r.origin(host).label(host), "env PUBSUB_EMULATOR_HOST");
    }

    #[test]
    fn a_bad_value_names_the_flag_the_variable_the_key_and_the_source() {
        let (_dir, path) = file("[pubsub]\nmax_lease = \"soon\"\n");
        let e = resolve(Some(&path), no_env, Vec::new()).expect_err("bad duration");
        let line = e.to_string();
        for needle in [
            "--pubsub-max-lease",
            "ECOM_PUBSUB_MAX_LEASE",
            "`pubsub.max_lease`",
            &path.display().to_string(),
            "\"soon\"",
        ] {
            assert!(line.contains(needle), "{needle}: {line}");
        }
        let env = |var: &str| (var == "ECOM_PENDING_CAPACITY").then(|| OsString::from("lots"));
        let line = resolve(None, env, Vec::new())
            .expect_err("bad int")
            .to_string();
        assert!(line.contains("set by ECOM_PENDING_CAPACITY"), "{line}");
        assert!(line.contains("\"lots\""), "{line}");
        let store = by_key("store").expect("store");
        let line = resolve(None, no_env, vec![(store, "mongodb".into())])
            .expect_err("bad enum")
            .to_string();
        assert!(line.contains("set by the flag"), "{line}");
        assert!(line.contains("mongodb"), "{line}");
    }

    #[test]
    fn text_settings_take_only_strings_and_never_repeat_a_password() {
        let (_dir, path) = file("[cassandra]\npassword = 1234\n");
        let line = resolve(Some(&path), no_env, Vec::new())
            .expect_err("a number for a password")
            .to_string();
        assert!(line.contains("`cassandra.password`"), "{line}");
        assert!(line.contains("expected a string"), "{line}");
        assert!(!line.contains("1234"), "{line}");
        // From a variable, text is text.
        let env = |var: &str| (var == "ECOM_CASSANDRA_PASSWORD").then(|| OsString::from("1234"));
        let r = resolve(None, env, Vec::new()).expect("a numeric password");
        let password = r
            .settings
            .cassandra
            .cassandra_password
            .as_ref()
            .expect("set");
        assert_eq!(password.expose(), "1234");
        let row = r
            .rows()
            .into_iter()
            .find(|row| row.key == "cassandra.password")
            .expect("row");
        assert_eq!(row.value, "<redacted>");
        assert_eq!(row.source, "env");
    }

    #[test]
    fn unknown_keys_and_bad_syntax_fail_with_one_line() {
        for (text, needle) in [
            ("hodl = \"5s\"", "unknown setting `hodl`"),
            ("[pubsub]\nstreamz = 4", "unknown setting `pubsub.streamz`"),
            ("hold = ", "invalid config file"),
            ("hold = [[1]]", "`hold`"),
        ] {
            let (_dir, path) = file(text);
            let line = resolve(Some(&path), no_env, Vec::new())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(line.contains(needle), "{text}: {line}");
            assert!(line.contains("x.toml"), "{text}: {line}");
            assert!(!line.contains('\n'), "{text}: {line}");
        }
        let e = resolve(Some(Path::new("/nonexistent/e.toml")), no_env, Vec::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("cannot read config file /nonexistent/e.toml"),
            "{e}"
        );
    }

    #[test]
    fn a_validation_error_is_explained_by_its_setting() {
        let env = |var: &str| (var == "ECOM_RETRY_BACKOFF").then(|| OsString::from("0s"));
        let r = resolve(None, env, Vec::new()).expect("parses");
        let e = r.settings.engine().validate().expect_err("zero backoff");
        let line = r.explain(&e).expect("a setting").to_string();
        assert_eq!(
            line,
            "invalid setting --retry-backoff (ECOM_RETRY_BACKOFF, file key `retry_backoff`; \
             set by ECOM_RETRY_BACKOFF): must be longer than 0s"
        );
        let cassandra = ConfigError {
            setting: "--cassandra-nodes (ECOM_CASSANDRA_NODES)",
            problem: "names no node".into(),
        };
        let line = r.explain(&cassandra).expect("a setting").to_string();
        assert_eq!(line.matches("ECOM_CASSANDRA_NODES").count(), 1, "{line}");
        let own = ConfigError {
            setting: "--every",
            problem: "x".into(),
        };
        assert!(r.explain(&own).is_none());
    }
}
