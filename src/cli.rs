//! The command line (design §5): flags over `ECOM_*` environment variables over defaults,
//! and the commands' own output.
//!
//! Owns: parsing, turning flags into configs, and printing results (JSON lines, the demo
//! summary). Must never: hold pipeline logic. Each command calls into the library.

use crate::app::demo::{self, DemoOptions, DemoReport};
use crate::app::run::{RunOptions, RunReport};
use crate::config::{EngineConfig, RetryPolicy};
use crate::config_file::{self, ConfigFile};
use crate::dlq::replay::{replay_every, replay_once};
use crate::health::{Component, Readiness};
use crate::model::Topic;
use crate::ops;
use crate::pubsub::args::{PubSubArgs, SubscriberArgs, SubscriptionArgs};
use crate::pubsub::producer::{IdRange, ProduceOptions};
use crate::pubsub::PubSubConfig;
use crate::shutdown;
use crate::store::cassandra::{CassandraArgs, CassandraStore};
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore, SyncMode};
use crate::store::{DlqEntry, InvalidMessage, Store, StoreError};
use crate::telemetry::Stats;
use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ecom-stream",
    version,
    about = "Joins e-commerce orders and payments from Pub/Sub into Cassandra/ScyllaDB"
)]
pub struct Cli {
    /// The TOML config file (default: ecom-stream.toml in the working directory, if
    /// present). Its keys are the ECOM_* variables without the prefix, in lower case.
    #[arg(long, env = "ECOM_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Log filter, as RUST_LOG (e.g. `info`, `ecom_stream=debug`) [default: RUST_LOG if
    /// set, else info].
    #[arg(long, env = "ECOM_LOG", global = true)]
    pub log: Option<String>,
    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(
        long,
        env = "ECOM_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Where `run` and `demo --serve` serve /metrics, /healthz, /readyz and the status page.
    #[arg(long, env = "ECOM_METRICS_ADDR", default_value = crate::ops::DEFAULT_ADDR, global = true)]
    pub metrics_addr: std::net::SocketAddr,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole pipeline in one process: built-in producers → join → embedded store, a DLQ
    /// replay, then a summary.
    Demo(DemoArgs),
    /// The production pipeline: Pub/Sub → join → store, until SIGINT/SIGTERM.
    Run(RunArgs),
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
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Join dead-lettered payments whose order now exists; the others get `attempts + 1`.
    Replay {
        /// Repeat every DURATION (e.g. `60s`) until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        every: Option<Duration>,
    },
    /// Print DLQ entries as JSON lines.
    List {
        /// Print invalid messages instead.
        #[arg(long)]
        invalid: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// Print one row as a JSON line (exit 1 if there is none).
    Order { order_id: i64 },
    /// Print every row as JSON lines.
    Facts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event (for log collectors).
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// SQLite under the data dir: no server.
    Embedded,
    /// Apache Cassandra 4/5 or ScyllaDB (the --cassandra-* settings).
    Cassandra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SyncArg {
    /// fsync every commit: acked rows survive power loss.
    Full,
    /// fsync at checkpoints: acked rows survive a process crash, not power loss.
    Normal,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where rows go.
    #[arg(
        long,
        env = "ECOM_STORE",
        value_enum,
        default_value = "embedded",
        global = true
    )]
    pub store: StoreKind,
    /// The embedded store's directory.
    #[arg(long, env = "ECOM_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// The embedded store's commit durability.
    #[arg(
        long,
        env = "ECOM_SYNC",
        value_enum,
        default_value = "full",
        global = true
    )]
    pub sync: SyncArg,
    #[command(flatten)]
    pub cassandra: CassandraArgs,
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
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    #[command(flatten)]
    pub subscriber: SubscriberArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Exit by itself once nothing arrived for DURATION and nothing is held (backfills,
    /// load runs). Default: run until SIGINT/SIGTERM.
    #[arg(long, env = "ECOM_UNTIL_IDLE", value_parser = parse_duration)]
    pub until_idle: Option<Duration>,
    /// Benchmarks only: ack every message unprocessed (the bare-subscriber ceiling).
    #[arg(long)]
    pub ack_only: bool,
    /// Print the closing summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub pubsub: PubSubArgs,
    #[command(flatten)]
    pub subscriptions: SubscriptionArgs,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// What to publish.
    #[arg(value_parser = parse_topic)]
    pub kind: Topic,
    #[command(flatten)]
    pub pubsub: PubSubArgs,
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

fn parse_topic(s: &str) -> Result<Topic, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is neither `orders` nor `payments`"))
}

/// The engine's knobs; each has a flag and an `ECOM_*` variable.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Join shards (default: the number of cores).
    #[arg(long, env = "ECOM_SHARDS")]
    pub shards: Option<usize>,
    /// How long a payment waits for its order before the DLQ.
    #[arg(long, env = "ECOM_HOLD", value_parser = parse_duration, default_value = "5s")]
    pub hold: Duration,
    /// Held payments per shard before the oldest spill to the DLQ early.
    #[arg(long, env = "ECOM_PENDING_CAPACITY", default_value_t = 100_000)]
    pub pending_capacity: usize,
    /// Known order ids cached per shard.
    #[arg(long, env = "ECOM_ORDER_CACHE_CAPACITY", default_value_t = 1_000_000)]
    pub order_cache_capacity: u64,
    /// Written ids remembered per shard for duplicate detection.
    #[arg(long, env = "ECOM_DEDUP_CAPACITY", default_value_t = 1_000_000)]
    pub dedup_capacity: u64,
    /// Batches an actor mailbox holds before senders wait.
    #[arg(long, env = "ECOM_MAILBOX_CAPACITY", default_value_t = 16)]
    pub mailbox_capacity: usize,
    /// Rows per store write.
    #[arg(long, env = "ECOM_BATCH_SIZE", default_value_t = 1000)]
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    #[arg(long, env = "ECOM_LINGER", value_parser = parse_duration, default_value = "5ms")]
    pub linger: Duration,
    /// Store writes in flight at once.
    #[arg(long, env = "ECOM_MAX_IN_FLIGHT", default_value_t = 4)]
    pub max_in_flight: usize,
    /// Tries of a store call that fails with a retriable error.
    #[arg(long, env = "ECOM_RETRY_ATTEMPTS", default_value_t = 6)]
    pub retry_attempts: u32,
    /// Longest time shutdown may take to flush.
    #[arg(long, env = "ECOM_SHUTDOWN_DEADLINE", value_parser = parse_duration, default_value = "30s")]
    pub shutdown_deadline: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 250ms, 2m)"))
}

impl EngineArgs {
    pub fn to_config(&self) -> EngineConfig {
        let defaults = EngineConfig::default();
        EngineConfig {
            shards: self.shards.unwrap_or(defaults.shards),
            hold: self.hold,
            pending_capacity: self.pending_capacity,
            order_cache_capacity: self.order_cache_capacity,
            dedup_capacity: self.dedup_capacity,
            mailbox_capacity: self.mailbox_capacity,
            batch_size: self.batch_size,
            linger: self.linger,
            max_in_flight: self.max_in_flight,
            retry: RetryPolicy {
                max_attempts: self.retry_attempts,
                ..RetryPolicy::default()
            },
            shutdown_deadline: self.shutdown_deadline,
            ..defaults
        }
    }
}

/// Parses the command line (over the config file), runs the command, and turns any error
/// into one line on stderr.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match load_config_file(&args) {
        Ok(file) => file,
        Err(line) => {
            eprintln!("error: {line}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, file.as_ref()),
    };
    if let Err(line) = init_logging(cli.log.as_deref(), cli.log_format) {
        eprintln!("error: {line}");
        return ExitCode::from(2);
    }
    if let Some(file) = &file {
        tracing::debug!(path = %file.path.display(), settings = file.settings.len(), "config file read");
    }
    let system = actix_rt::System::new();
    match system.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", name_variable(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Adds the `ECOM_*` variable to an "invalid setting --flag: …" line, since the value may
/// have come from there (or from the config file, through it).
fn name_variable(line: &str) -> String {
    use clap::CommandFactory;
    let Some(rest) = line.find("invalid setting --").map(|i| &line[i + 18..]) else {
        return line.to_string();
    };
    let long: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    fn env_of(cmd: &clap::Command, long: &str) -> Option<String> {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .and_then(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .or_else(|| cmd.get_subcommands().find_map(|s| env_of(s, long)))
    }
    match env_of(&Cli::command(), &long) {
        // The line names the variable already (the Cassandra settings' errors do): once is
        // enough. `long` is ASCII taken from the start of `rest`, so the slice is at a char
        // boundary.
        Some(env) if rest[long.len()..].starts_with(&format!(" ({env})")) => line.to_string(),
        Some(env) => line.replacen(&format!("--{long}"), &format!("--{long} (or {env})"), 1),
        None => line.to_string(),
    }
}

/// Reads the config file, if there is one, and puts each of its settings into the
/// environment where the variable is not set already: flags override variables, which
/// override the file. Returns the settings it applied.
fn load_config_file(args: &[std::ffi::OsString]) -> Result<Option<ConfigFile>, String> {
    let Some((path, explicit)) = config_file::locate(args, std::env::var_os("ECOM_CONFIG")) else {
        return Ok(None);
    };
    if !explicit && !path.is_file() {
        return Ok(None);
    }
    let mut known = config_file::Known::new();
    collect_env(&<Cli as clap::CommandFactory>::command(), &mut known);
    known.remove("ECOM_CONFIG");
    let file = config_file::load(&path, &known)?;
    let applied: Vec<_> = file
        .unset_in(|env| std::env::var_os(env).is_some())
        .into_iter()
        .cloned()
        .collect();
    for s in &applied {
        // Still single-threaded: nothing else reads the environment yet.
        std::env::set_var(&s.env, &s.value);
    }
    Ok(Some(ConfigFile {
        path: file.path,
        settings: applied,
    }))
}

fn collect_env(cmd: &clap::Command, out: &mut config_file::Known) {
    use clap::builder::ValueParser;
    use config_file::ValueKind;
    // Settings whose value is free text: a TOML number or boolean there is a mistake.
    let text = [
        ValueParser::string().type_id(),
        ValueParser::os_string().type_id(),
        ValueParser::path_buf().type_id(),
        ValueParser::from(clap::value_parser!(crate::store::cassandra::config::Secret)).type_id(),
    ];
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            let kind = if text.contains(&arg.get_value_parser().type_id()) {
                ValueKind::Text
            } else {
                ValueKind::Scalar
            };
            out.insert(env.to_string_lossy().into_owned(), kind);
        }
    }
    for sub in cmd.get_subcommands() {
        collect_env(sub, out);
    }
}

/// Help and version print as clap made them; a bad flag or variable prints one line that
/// names the setting (and its `ECOM_*` variable, since the value may have come from there,
/// or its config-file key when it came from the file).
fn usage_error(e: clap::Error, file: Option<&ConfigFile>) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    // clap's first paragraph (the error, possibly with its possible values), on one line.
    let first: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let first = first.join(" ");
    let env = setting_env(&first)
        .map(
            |v| match file.and_then(|f| f.setting_for(&v).map(|s| (f, s))) {
                Some((f, s)) => format!(
                    " (flag or {v}; this value came from `{}` in {})",
                    s.key,
                    f.path.display()
                ),
                None => format!(" (flag or {v})"),
            },
        )
        .unwrap_or_default();
    eprintln!("{first}{env}");
    ExitCode::from(2)
}

/// The `ECOM_*` variable of the flag a clap error line names, if it has one.
fn setting_env(line: &str) -> Option<String> {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, line: &str) -> Option<String> {
        for arg in cmd.get_arguments() {
            if let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) {
                if line.contains(&format!("'--{long} ")) || line.contains(&format!("'--{long}'")) {
                    return Some(env.to_string_lossy().into_owned());
                }
            }
        }
        cmd.get_subcommands().find_map(|sub| walk(sub, line))
    }
    walk(&Cli::command(), line)
}

/// Logs go to stderr (stdout is the commands' output). The filter is `--log` / `ECOM_LOG`,
/// else `RUST_LOG`, else `info`.
/// A filter that does not parse is refused, naming where it came from: falling back to
/// `info` silently would hide the very logs the user asked for.
fn init_logging(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    use std::io::IsTerminal;
    let (filter, source) = match filter {
        Some(f) => (f.to_string(), "--log (ECOM_LOG)"),
        None => match std::env::var("RUST_LOG") {
            Ok(f) => (f, "RUST_LOG"),
            Err(_) => ("info".to_string(), "the default"),
        },
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| {
            format!(
                "invalid setting {source}: {filter:?} is not a log filter ({e}; examples: info, ecom_stream=debug,scylla=warn)"
            )
        })?;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let debug = filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::DEBUG);
    let filter = filter.and(crate::store::cassandra::session::quiet_driver_while_connecting(debug));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text => registry
            .with(
                logs.with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => registry
            .with(logs.json().with_current_span(false).with_filter(filter))
            .init(),
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => run_demo(&cli.store, cli.metrics_addr, args).await,
        Command::Run(args) => run_pipeline(&cli.store, cli.metrics_addr, args).await,
        Command::Setup(args) => run_setup(&cli.store, args).await,
        Command::Produce(args) => run_produce(args).await,
        Command::Dlq { command } => run_dlq(&cli.store, command).await,
        Command::Query { command } => run_query(&cli.store, command).await,
    }
}

/// The Cassandra store of the --cassandra-* settings (reads and writes alike: the cluster
/// has no read-only mode to ask for, and no database is created by opening one).
async fn open_cassandra(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    let config = args.cassandra.to_config()?;
    Ok(Arc::new(CassandraStore::open(&config).await?))
}

async fn open_writer(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.store == StoreKind::Cassandra {
        return open_cassandra(args).await;
    }
    let sync = match args.sync {
        SyncArg::Full => SyncMode::Full,
        SyncArg::Normal => SyncMode::Normal,
    };
    let store = EmbeddedStore::open(
        &args.data_dir,
        EmbeddedOptions {
            sync,
            ..EmbeddedOptions::default()
        },
    )
    .with_context(|| format!("opening the embedded store in {}", args.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// For commands that change an existing store (`dlq replay`): opened for writing, but only
/// if it exists; creating an empty one would make a wrong `--data-dir` look like "nothing to
/// replay".
async fn open_existing_writer(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.store == StoreKind::Cassandra {
        // Opening prepares every statement, which fails when the schema is missing.
        return open_cassandra(args).await;
    }
    // Fails with the reader's clear "no embedded store at …" when there is none.
    EmbeddedStore::open_reader(&args.data_dir)?;
    open_writer(args).await
}

async fn open_reader(args: &StoreArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.store == StoreKind::Cassandra {
        return open_cassandra(args).await;
    }
    Ok(Arc::new(EmbeddedStore::open_reader(&args.data_dir)?))
}

async fn run_demo(
    store_args: &StoreArgs,
    metrics_addr: std::net::SocketAddr,
    args: DemoArgs,
) -> anyhow::Result<ExitCode> {
    let engine = args.engine.to_config();
    engine.validate()?;
    // The scenario is built in memory (it is sorted to interleave), ~350 bytes a message.
    const MAX_DEMO: u64 = 10_000_000;
    if args.orders > MAX_DEMO {
        anyhow::bail!(
            "invalid setting --orders: {} is more than {MAX_DEMO}",
            args.orders
        );
    }
    if args.payments > MAX_DEMO {
        anyhow::bail!(
            "invalid setting --payments: {} is more than {MAX_DEMO}",
            args.payments
        );
    }
    if !(0.0..=1.0).contains(&args.duplicates) {
        anyhow::bail!("invalid setting --duplicates: must be between 0 and 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        anyhow::bail!("invalid setting --rate: must be a positive number of messages per second");
    }
    let store = open_writer(store_args).await?;
    let (trigger, listener) = shutdown::channel();
    actix_rt::spawn(shutdown::on_signals(trigger));
    let opts = DemoOptions {
        orders: args.orders,
        payments: args.payments,
        rate: args.rate,
        seed: args.seed,
        duplicates: args.duplicates,
    };
    let stats = Arc::new(Stats::default());
    let server = if args.serve {
        // The demo has no Pub/Sub: the store is the one component /readyz requires, and it
        // was just opened.
        let readiness = Arc::new(Readiness::new());
        readiness.register(Component::Store);
        readiness.set(Component::Store, true);
        let server = ops::serve(metrics_addr, stats.clone(), readiness, listener.clone()).await?;
        // Tests and scripts read the bound address (e.g. with --metrics-addr 127.0.0.1:0)
        // from this line.
        eprintln!("serving on http://{}/", server.local_addr());
        Some(server)
    } else {
        None
    };
    let report = demo::run(&engine, &opts, store, stats, listener.clone()).await?;
    {
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        } else {
            write_summary(&mut out, &report, &store_label(store_args))?;
        }
        out.flush()?;
    }
    if let Some(server) = server {
        let mut listener = listener;
        if !listener.is_triggered() {
            eprintln!(
                "demo finished; still serving on http://{}/ until Ctrl-C",
                server.local_addr()
            );
        }
        listener.wait().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the demo wrote, for its summary.
fn store_label(args: &StoreArgs) -> String {
    match args.store {
        StoreKind::Embedded => args.data_dir.display().to_string(),
        StoreKind::Cassandra => format!(
            "cassandra {} (keyspace {})",
            args.cassandra.cassandra_nodes, args.cassandra.cassandra_keyspace
        ),
    }
}

fn write_summary(out: &mut impl Write, r: &DemoReport, store: &str) -> std::io::Result<()> {
    let s = &r.stats;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "ecom-stream demo{}",
        if r.interrupted {
            " (interrupted: partial)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  messages generated     {:>10}  ({} deliveries, {} acked, {} redelivered)",
        r.messages, r.source.delivered, r.source.acked, r.source.nacked
    )?;
    writeln!(out, "  orders upserted        {:>10}", s.orders_upserted)?;
    writeln!(
        out,
        "  payments joined        {:>10}  (order already known)",
        s.payments_joined
    )?;
    writeln!(
        out,
        "  held, then joined      {:>10}  (arrived before their order)",
        s.payments_joined_after_hold
    )?;
    writeln!(
        out,
        "  dead-lettered          {:>10}  (order not found after the hold; buffer full: {} held spilled early)",
        s.dead_lettered, s.spilled_early
    )?;
    writeln!(
        out,
        "  replayed from the DLQ  {:>10}  ({} still unmatched)",
        r.replay.replayed, r.replay.unmatched
    )?;
    writeln!(
        out,
        "  invalid payloads       {:>10}  (recorded with their reason)",
        s.invalid
    )?;
    writeln!(
        out,
        "  duplicates seen        {:>10}  (of effects already durable or held)",
        s.duplicates
    )?;
    writeln!(
        out,
        "  store writes           {:>10}  ({} retried, {} failed)",
        s.writer_batches, s.write_retries, s.write_failures
    )?;
    writeln!(out, "  elapsed                {:>9.2}s  ({:.0} msg/s, including the hold of unmatched payments)", secs, r.source.delivered as f64 / secs)?;
    writeln!(out, "  store                  {store}")?;
    writeln!(
        out,
        "expected afterwards: `query facts` {} rows, `dlq list` {} entries",
        r.expected_rows, r.expected_dlq
    )
}

async fn run_pipeline(
    store_args: &StoreArgs,
    metrics_addr: std::net::SocketAddr,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let pubsub = args
        .pubsub
        .to_config(std::env::var("PUBSUB_EMULATOR_HOST").ok())?;
    let opts = RunOptions {
        engine: args.engine.to_config(),
        subscriber: args.subscriber.to_options()?,
        until_idle: args.until_idle,
        ack_only: args.ack_only,
    };
    opts.engine.validate()?;
    let (trigger, listener) = shutdown::channel();
    actix_rt::spawn(shutdown::on_signals(trigger));
    let stats = Arc::new(Stats::default());
    let readiness = Arc::new(Readiness::new());
    readiness.register(Component::Store);
    readiness.register(Component::PubSub);
    // The listener first: a busy --metrics-addr must fail before the store is opened (and,
    // for the embedded store, created). Kept alive until the run returns: dropping it
    // closes the listener. /readyz says unready until the store is open.
    let server = ops::serve(
        metrics_addr,
        stats.clone(),
        readiness.clone(),
        listener.clone(),
    )
    .await?;
    // The CLI's own line, whatever --log says: with --metrics-addr 127.0.0.1:0 it is the one
    // place that names the port.
    eprintln!("serving on http://{}/", server.local_addr());
    let store = open_writer(store_args).await?;
    readiness.set(Component::Store, true);
    let report = crate::app::run::run(&pubsub, &opts, store, stats, readiness, listener).await?;
    drop(server);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write_run_summary(&mut out, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_run_summary(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    let s = &r.stats;
    writeln!(
        out,
        "ecom-stream run (ended by {}{})",
        r.ended_by,
        if r.drained {
            ""
        } else {
            "; drain hit the deadline"
        }
    )?;
    for (name, c) in [("orders", &r.orders), ("payments", &r.payments)] {
        writeln!(
            out,
            "  {name:<9} delivered {:>10}  acked {:>10}  nacked {:>8}  most outstanding {}",
            c.delivered, c.acked, c.nacked, c.outstanding_high_water
        )?;
    }
    writeln!(out, "  orders upserted        {:>10}", s.orders_upserted)?;
    writeln!(
        out,
        "  payments joined        {:>10}  ({} after a hold)",
        s.payments_joined + s.payments_joined_after_hold,
        s.payments_joined_after_hold
    )?;
    writeln!(
        out,
        "  dead-lettered          {:>10}  (DLQ table and topic)",
        s.dead_lettered
    )?;
    writeln!(out, "  invalid payloads       {:>10}", s.invalid)?;
    writeln!(out, "  duplicates seen        {:>10}", s.duplicates)?;
    writeln!(
        out,
        "  throughput             {:>10.0} msg/s over {:.2}s busy",
        r.per_second, r.busy_s
    )
}

async fn run_setup(store_args: &StoreArgs, args: SetupArgs) -> anyhow::Result<ExitCode> {
    // Every setting is checked before anything is created: a bad store setting must not
    // leave topics and subscriptions behind.
    let pubsub = args
        .pubsub
        .to_config(std::env::var("PUBSUB_EMULATOR_HOST").ok())?;
    let settings = args.subscriptions.to_settings()?;
    let cassandra = match store_args.store {
        StoreKind::Cassandra => Some(store_args.cassandra.to_config()?),
        StoreKind::Embedded => None,
    };
    let steps = crate::pubsub::admin::setup(&pubsub, settings).await?;
    let store = match cassandra {
        Some(config) => {
            let applied = crate::store::cassandra::apply_schema(&config).await?;
            format!(
                "{} ({} statements, schema version {})",
                store_label(store_args),
                applied.statements,
                applied.schema_version
            )
        }
        // Opening the embedded store creates its tables.
        None => {
            open_writer(store_args).await?;
            store_label(store_args)
        }
    };
    let mut out = std::io::stdout().lock();
    for step in &steps {
        writeln!(out, "{:<12} {:<8} {}", step.kind, step.outcome, step.name)?;
    }
    writeln!(out, "store        ready    {store}")?;
    Ok(ExitCode::SUCCESS)
}

async fn run_produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let pubsub: PubSubConfig = args
        .pubsub
        .to_config(std::env::var("PUBSUB_EMULATOR_HOST").ok())?;

    let ids = args.ids.unwrap_or(match args.kind {
        Topic::Orders => IdRange { first: 1, last: 80 },
        Topic::Payments => IdRange {
            first: 1,
            last: 500,
        },
    });
    let opts = ProduceOptions {
        topic: args.kind,
        ids,
        count: args.count,
        rate: args.rate,
        seed: args.seed,
    };
    opts.validate()?;
    let report = crate::pubsub::producer::produce(&pubsub, &opts, !args.json).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        writeln!(
            out,
            "published {} {} to {} in {:.2}s ({:.0} msg/s)",
            report.published,
            args.kind,
            pubsub.topic_of(args.kind),
            report.elapsed_s,
            report.per_second
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_dlq(store_args: &StoreArgs, command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::Replay { every: None } => {
            let store = open_existing_writer(store_args).await?;
            let report = replay_once(store.as_ref(), &Stats::default()).await?;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string(&report)?
            )?;
        }
        DlqCommand::Replay { every: Some(every) } => {
            if every.is_zero() {
                anyhow::bail!("invalid setting --every: must be longer than 0s");
            }
            let store = open_existing_writer(store_args).await?;
            let (trigger, listener) = shutdown::channel();
            actix_rt::spawn(shutdown::on_signals(trigger));
            replay_every(store.as_ref(), &Stats::default(), every, listener, |r| {
                if let Ok(report) = r {
                    if let Ok(line) = serde_json::to_string(report) {
                        let _ = writeln!(std::io::stdout().lock(), "{line}");
                    }
                }
            })
            .await;
        }
        DlqCommand::List { invalid: false } => {
            let store = open_reader(store_args).await?;
            print_pages(|after| {
                let store = store.clone();
                async move {
                    let page = store.scan_dead_letters(after, 1000).await?;
                    Ok((
                        page.items
                            .iter()
                            .map(DlqLine::from)
                            .map(|l| serde_json::to_string(&l))
                            .collect(),
                        page.next,
                    ))
                }
            })
            .await?;
        }
        DlqCommand::List { invalid: true } => {
            let store = open_reader(store_args).await?;
            print_pages(|after| {
                let store = store.clone();
                async move {
                    let page = store.scan_invalid(after, 1000).await?;
                    Ok((
                        page.items
                            .iter()
                            .map(InvalidLine::from)
                            .map(|l| serde_json::to_string(&l))
                            .collect(),
                        page.next,
                    ))
                }
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_query(store_args: &StoreArgs, command: QueryCommand) -> anyhow::Result<ExitCode> {
    let store = open_reader(store_args).await?;
    match command {
        QueryCommand::Order { order_id } => match store.fact(order_id).await? {
            Some(row) => {
                writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&row)?)?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("no row for order_id {order_id}");
                Ok(ExitCode::FAILURE)
            }
        },
        QueryCommand::Facts => {
            print_pages(|after| {
                let store = store.clone();
                async move {
                    let page = store.scan_facts(after, 1000).await?;
                    let lines = page.items.iter().map(serde_json::to_string).collect();
                    Ok((lines, page.next))
                }
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

type PageLines<K> = (Vec<serde_json::Result<String>>, Option<K>);

/// Prints JSON lines page by page, so a large table never sits in memory whole, until the
/// store's page says the scan is complete (`next == None`, see [`crate::store::Page`]). A
/// closed stdout (`| head`) ends the listing quietly.
async fn print_pages<K, F, Fut>(mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<PageLines<K>, StoreError>>,
{
    let mut after = None;
    loop {
        let (lines, next) = fetch(after).await?;
        let mut out = std::io::stdout().lock();
        for line in lines {
            if let Err(e) = writeln!(out, "{}", line?) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        match next {
            Some(key) => after = Some(key),
            None => return Ok(()),
        }
    }
}

/// A `dlq list` line: the payment's columns, then the DLQ's own (design §3).
#[derive(Serialize)]
struct DlqLine<'a> {
    payment_id: i64,
    order_id: i64,
    payment_method: &'a str,
    card_last_four: &'a str,
    payment_status: &'a str,
    payment_datetime: &'a str,
    reason: &'a str,
    first_seen: String,
    attempts: i32,
}

impl<'a> From<&'a DlqEntry> for DlqLine<'a> {
    fn from(e: &'a DlqEntry) -> Self {
        let p = &e.payment;
        DlqLine {
            payment_id: p.payment_id,
            order_id: p.order_id,
            payment_method: &p.payment_method,
            card_last_four: &p.card_last_four,
            payment_status: &p.payment_status,
            payment_datetime: &p.payment_datetime,
            reason: &e.reason,
            first_seen: rfc3339(e.first_seen),
            attempts: e.attempts,
        }
    }
}

/// A `dlq list --invalid` line. `payload` is base64, since a blob may be any bytes.
#[derive(Serialize)]
struct InvalidLine<'a> {
    source: &'a str,
    message_id: &'a str,
    payload: String,
    error: &'a str,
    received_at: String,
}

impl<'a> From<&'a InvalidMessage> for InvalidLine<'a> {
    fn from(m: &'a InvalidMessage) -> Self {
        InvalidLine {
            source: m.source.as_str(),
            message_id: &m.message_id,
            payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
            error: &m.error,
            received_at: rfc3339(m.received_at),
        }
    }
}

fn rfc3339(micros: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::name_variable;

    #[test]
    fn a_setting_error_names_its_variable_once() {
        assert_eq!(
            name_variable("invalid setting --batch-size: must be at least 1"),
            "invalid setting --batch-size (or ECOM_BATCH_SIZE): must be at least 1"
        );
        let named = "invalid setting --cassandra-password (ECOM_CASSANDRA_PASSWORD): is \
                     required with --cassandra-username";
        assert_eq!(name_variable(named), named);
    }
}
