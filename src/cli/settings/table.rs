//! The table of settings (design §5): each one's file key, flag, variable, kind and the
//! commands that take its flag.
//!
//! Owns: [`SETTINGS`] and the look-ups by key and by flag. Must never: hold a value or a
//! default (those live in [`Settings`](super::Settings) and the config structs), or read a
//! layer.
//!
//! Keys are the variables' names without `ECOM_`, in lower case; the Pub/Sub and Cassandra
//! settings sit in the tables `[pubsub]` and `[cassandra]`, so `[cassandra] nodes = "…"` is
//! `ECOM_CASSANDRA_NODES` and top-level `hold = "5s"` is `ECOM_HOLD`. A list of strings is
//! joined with commas. `PUBSUB_EMULATOR_HOST` is a layer of its own, below the file, as
//! Google's clients read it.

use clap::builder::PossibleValue;
use clap::ValueEnum;
use serde::Serialize;

use super::{IngestFormat, LogFormat, StoreKind, SyncArg};

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
    /// `ingest` only: how files are read.
    Ingest,
}

impl Scope {
    /// The subcommands whose flags these are (none for [`Scope::Global`]: the root's).
    pub fn commands(self) -> &'static [&'static str] {
        match self {
            Scope::Global => &[],
            Scope::Engine => &["demo", "run", "ingest", "config"],
            Scope::PubSub => &["run", "setup", "produce", "config"],
            Scope::Subscriber | Scope::Run => &["run", "config"],
            Scope::Subscription => &["setup", "config"],
            Scope::Ingest => &["ingest", "config"],
        }
    }
}

impl Setting {
    /// Whether `command` (a top-level subcommand; `None`: the root) takes this setting's
    /// flag. Global settings are taken everywhere.
    pub fn applies_to(&self, command: Option<&str>) -> bool {
        self.scope == Scope::Global || command.is_some_and(|c| self.scope.commands().contains(&c))
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
    /// The flag's help; `None`: as
    /// [`CassandraArgs`](crate::store::cassandra::CassandraArgs) documents it.
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
use Scope::{Engine, Global, Ingest, PubSub, Run, Subscriber, Subscription};

/// Every setting, in the order `config` prints them. Each has a flag, a variable and a file
/// key; the README's tables list the same (an integration test compares them).
pub static SETTINGS: &[Setting] = &[
    choice("store", "store", "ECOM_STORE", choices::<StoreKind>, "Where rows go."),
    setting("data_dir", "data-dir", "ECOM_DATA_DIR", PathKind, Global, "The embedded store's directory."),
    choice("sync", "sync", "ECOM_SYNC", choices::<SyncArg>, "The embedded store's commit durability."),
    setting("log", "log", "ECOM_LOG", Text, Global, "Log filter, as RUST_LOG (e.g. `info`, `ecom_stream=debug`). Unset: RUST_LOG if set, else info."),
    choice("log_format", "log-format", "ECOM_LOG_FORMAT", choices::<LogFormat>, "Log lines as human-readable text or as JSON objects (one per line)."),
    setting("metrics_addr", "metrics-addr", "ECOM_METRICS_ADDR", Address, Global, "Where `run` and `demo --serve` serve /metrics, /healthz, /readyz and the status page."),
    setting("shards", "shards", "ECOM_SHARDS", Integer, Engine, "Join shards. Unset: one fewer than the cores, at least one."),
    setting("hold", "hold", "ECOM_HOLD", Dur, Engine, "How long a payment waits for its order before the DLQ."),
    setting("pending_capacity", "pending-capacity", "ECOM_PENDING_CAPACITY", Integer, Engine, "Held payments per shard before the oldest spill to the DLQ early."),
    setting("order_cache_capacity", "order-cache-capacity", "ECOM_ORDER_CACHE_CAPACITY", Integer, Engine, "Known order ids cached per shard."),
    setting("order_cache_ttl", "order-cache-ttl", "ECOM_ORDER_CACHE_TTL", Dur, Engine, "How long a known order id stays cached after its last write."),
    setting("dedup_capacity", "dedup-capacity", "ECOM_DEDUP_CAPACITY", Integer, Engine, "Written ids remembered per shard for duplicate detection."),
    setting("mailbox_capacity", "mailbox-capacity", "ECOM_MAILBOX_CAPACITY", Integer, Engine, "Batches an actor mailbox holds before senders wait."),
    setting("batch_size", "batch-size", "ECOM_BATCH_SIZE", Integer, Engine, "Rows per store write."),
    setting("linger", "linger", "ECOM_LINGER", Dur, Engine, "Longest wait for a batch to fill: a write, and in run a Pub/Sub hand-over."),
    setting("max_in_flight", "max-in-flight", "ECOM_MAX_IN_FLIGHT", Integer, Engine, "Store writes in flight at once."),
    setting("retry_attempts", "retry-attempts", "ECOM_RETRY_ATTEMPTS", Integer, Engine, "Tries of a store call that fails with a retriable error."),
    setting("retry_backoff", "retry-backoff", "ECOM_RETRY_BACKOFF", Dur, Engine, "Longest wait before a store call's second try; it doubles with each further try (full jitter)."),
    setting("retry_max_backoff", "retry-max-backoff", "ECOM_RETRY_MAX_BACKOFF", Dur, Engine, "The cap on any one wait between tries."),
    setting("max_write_attempts", "max-write-attempts", "ECOM_MAX_WRITE_ATTEMPTS", Integer, Engine, "Failed writes of one row, across its deliveries, before it is dead-lettered as write_failed and its message acked."),
    setting("shutdown_deadline", "shutdown-deadline", "ECOM_SHUTDOWN_DEADLINE", Dur, Engine, "Longest time shutdown may take to flush."),
    setting("replay_every", "replay-every", "ECOM_REPLAY_EVERY", Dur, Run, "A `dlq replay` pass this often inside `run` (safe with several instances), so that late orders' dead-lettered payments are joined without a second process; 0: never."),
    setting("until_idle", "until-idle", "ECOM_UNTIL_IDLE", Dur, Run, "Exit by itself once nothing arrived for DURATION and nothing is held (backfills, load runs). Unset: run until SIGINT/SIGTERM."),
    Setting { key: "ingest_format", flag: "format", env: "ECOM_INGEST_FORMAT", kind: Kind::Enum, scope: Ingest, help: Some("How `ingest` reads its files (gzip is detected by content either way). auto: `.csv` and `.csv.gz` are CSV, anything else JSON lines."), choices: Some(choices::<IngestFormat>) },
    setting("ingest_timestamp_field", "timestamp-field", "ECOM_INGEST_TIMESTAMP_FIELD", Text, Ingest, "The field (JSON) or column (CSV) holding each record's write timestamp: RFC 3339 or µs since the epoch. Unset: the file's modification time plus the record's line number."),
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
    setting("pubsub.lease_extension", "pubsub-lease-extension", "ECOM_PUBSUB_LEASE_EXTENSION", Dur, Subscriber, "How far each lease extension reaches (10s to 600s), and the ack deadline each stream asks for: after a crash, what the dead run held comes back this long later (in waves of it on the emulator)."),
    setting("pubsub.connect_wait", "pubsub-connect-wait", "ECOM_PUBSUB_CONNECT_WAIT", Dur, PubSub, "How long `run`, `setup` and `produce` wait at start for Pub/Sub to answer before they exit non-zero."),
    setting("pubsub.ack_deadline", "ack-deadline", "ECOM_PUBSUB_ACK_DEADLINE", Dur, Subscription, "Ack deadline of created subscriptions (10s to 600s)."),
    setting("pubsub.retention", "retention", "ECOM_PUBSUB_RETENTION", Dur, Subscription, "How long created subscriptions keep unacked messages (10m to 7days)."),
    setting("pubsub.max_delivery_attempts", "max-delivery-attempts", "ECOM_PUBSUB_MAX_DELIVERY_ATTEMPTS", Integer, Subscription, "Give the created orders and payments subscriptions a dead-letter policy to the DLQ topic after this many deliveries (5 to 100); keep --max-write-attempts below it. Unset: no policy."),
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
