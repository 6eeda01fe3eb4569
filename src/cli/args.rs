//! The commands and their own flags, as clap derives them, plus every setting's flag on the
//! commands of its scope.
//!
//! Owns: the shape of the command line. Must never: hold a default that a setting already
//! has (the settings' flags come from [`super::settings::SETTINGS`]), or do any work.

use super::settings::pubsub::PubSubSettings;
use super::settings::{self, Scope, Settings, StoreKind, SyncArg};
use crate::config::EngineConfig;
use crate::model::StreamKind;
use crate::pubsub::producer::IdRange;
use crate::store::cassandra::CassandraArgs;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ecom-stream",
    version,
    about = "Joins e-commerce orders and payments from Pub/Sub (or files) into one row per order, in an embedded store (SQLite, the default) or Cassandra/ScyllaDB"
)]
pub struct Cli {
    /// The TOML config file (default: ecom-stream.toml in the working directory, if
    /// present). Its keys are the ECOM_* variables without the prefix, in lower case.
    #[arg(long, env = "ECOM_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline in one process: built-in producers → join → the store (embedded by
    /// default, or --store cassandra), a DLQ replay, then a summary.
    Demo(DemoArgs),
    /// The production pipeline: Pub/Sub → join → store, until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Load orders and payments from files (JSON lines or CSV, gzip or not) through the
    /// join into the store: orders first, then payments.
    Ingest(IngestArgs),
    /// Create the topics and subscriptions, and the store's tables (idempotent).
    Setup(SetupArgs),
    /// Publish mock orders or payments like the original producers.
    Produce(ProduceArgs),
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Read the facts table.
    Query {
        #[command(subcommand)]
        command: QueryCommand,
    },
    /// Print every setting's effective value and where it came from (default, the config
    /// file, its ECOM_* variable, its flag) as JSON lines; the password redacted. Takes every
    /// setting's flag.
    Config,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Join dead-lettered payments whose order now exists; the others get `attempts + 1`.
    Replay {
        /// Repeat every DURATION (e.g. `60s`) until Ctrl-C.
        #[arg(long, value_parser = crate::config::parse_duration)]
        every: Option<Duration>,
    },
    /// Print DLQ entries as JSON lines (or CSV).
    List {
        /// Print invalid messages instead.
        #[arg(long)]
        invalid: bool,
        #[command(flatten)]
        export: ExportArgs,
    },
}

impl DlqCommand {
    /// Whether the command only reads the store (`list`), as opposed to changing it.
    pub fn only_reads(&self) -> bool {
        matches!(self, DlqCommand::List { .. })
    }
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Print one row as a JSON line (exit 1 if there is none).
    Order {
        order_id: i64,
        /// Explain the row instead: each column group's write time (the publish time that
        /// won), the dead letter of its payment if there is one, and what is not recorded.
        #[arg(long)]
        explain: bool,
        /// With --explain: one JSON object instead of text.
        #[arg(long, requires = "explain")]
        json: bool,
    },
    /// Print every row as JSON lines (or CSV).
    Facts {
        #[command(flatten)]
        export: ExportArgs,
    },
}

/// How a listing is written: its format, and where to.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// `jsonl`: one JSON object per line; `csv`: a header row, then one row per line.
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Write to FILE instead of stdout. FILE is replaced only once the whole listing is
    /// written (created or overwritten); on any error it is left as it was.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Where rows go: the store settings, from the resolved [`Settings`].
#[derive(Debug, Clone)]
pub struct StoreArgs {
    pub store: StoreKind,
    pub data_dir: PathBuf,
    pub sync: SyncArg,
    pub cassandra: CassandraArgs,
}

impl StoreArgs {
    pub(super) fn of(settings: &Settings) -> StoreArgs {
        StoreArgs {
            store: settings.store,
            data_dir: settings.data_dir.clone(),
            sync: settings.sync,
            cassandra: settings.cassandra.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders with ids 1..=N.
    #[arg(long, default_value_t = 80)]
    pub orders: u64,
    /// One payment for each order id 1..=N.
    #[arg(long, default_value_t = 500)]
    pub payments: u64,
    /// Messages per second (default: as fast as the pipeline takes them).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of messages published twice.
    #[arg(long, default_value_t = 0.02)]
    pub duplicates: f64,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Serve metrics, health and the status page on --metrics-addr during the demo, and
    /// keep serving after the summary until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub serve: bool,
    /// From the resolved settings (not a flag of its own: see `settings::SETTINGS`).
    #[arg(skip)]
    pub engine: EngineConfig,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// From the resolved settings, as the two below.
    #[arg(skip)]
    pub pubsub: PubSubSettings,
    #[arg(skip)]
    pub engine: EngineConfig,
    #[arg(skip)]
    pub until_idle: Option<Duration>,
    #[arg(skip)]
    pub replay_every: Duration,
    /// Consume the subscriptions although `setup` bound them to another store, and bind
    /// them to this one: the other store gets nothing more from them. A one-off act, hence
    /// no variable or file key (a file that always rebinds would undo the binding).
    #[arg(long)]
    pub rebind_subscriptions: bool,
    /// Benchmarks only: ack every message unprocessed (the bare-subscriber ceiling).
    #[arg(long)]
    pub ack_only: bool,
    /// Print the closing summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Orders files (all read, and durable, before any payment).
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub orders: Vec<PathBuf>,
    /// Payments files.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub payments: Vec<PathBuf>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// From the resolved settings, as the two below.
    #[arg(skip)]
    pub engine: EngineConfig,
    #[arg(skip)]
    pub format: settings::IngestFormat,
    #[arg(skip)]
    pub timestamp_field: Option<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// From the resolved settings.
    #[arg(skip)]
    pub pubsub: PubSubSettings,
    /// Only the store's tables (`schema.cql` on Cassandra), no Pub/Sub: for `ingest` or a
    /// store of your own.
    #[arg(long, conflicts_with = "pubsub_only")]
    pub store_only: bool,
    /// Only the topics and subscriptions, not the store.
    #[arg(long)]
    pub pubsub_only: bool,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// What to publish.
    #[arg(value_parser = parse_kind)]
    pub kind: StreamKind,
    /// From the resolved settings.
    #[arg(skip)]
    pub pubsub: PubSubSettings,
    /// Ids to publish for (default: 1..=80 for orders, 1..=500 for payments, as the
    /// original producers).
    #[arg(long)]
    pub ids: Option<IdRange>,
    /// Messages in all (default: one per id; beyond that the ids repeat with new payment
    /// ids).
    #[arg(long)]
    pub count: Option<u64>,
    /// Messages per second (default: as fast as Pub/Sub confirms).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seed of the generated data: the same seed publishes the same records.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_kind(s: &str) -> Result<StreamKind, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is neither `orders` nor `payments`"))
}

/// The whole command line: the derived commands, plus each setting's flag on the commands
/// of its scope (`config` takes them all).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command().args(settings::flag_args(Scope::Global));
    for scope in [
        Scope::Engine,
        Scope::Run,
        Scope::PubSub,
        Scope::Subscriber,
        Scope::Subscription,
        Scope::Ingest,
    ] {
        for name in scope.commands() {
            cmd = cmd.mut_subcommand(name, |sub| sub.args(settings::flag_args(scope)));
        }
    }
    cmd
}
