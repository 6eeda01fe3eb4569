//! The command line (design §5): the commands, their own flags, and their output.
//!
//! Owns: parsing (the settings' flags come from `settings::SETTINGS`, layered over the
//! config file and the `ECOM_*` variables there), turning settings into configs, and printing
//! results (JSON lines, the demo summary, `config`'s effective settings) and errors (one
//! line). Must never: hold pipeline logic (each command calls into the library), or read a
//! setting from anywhere but the resolved [`Settings`].

use crate::app::{
    self, Access, DemoConfig, DemoOptions, DemoReport, RunConfig, RunOptions, RunReport,
    StoreConfig,
};
use crate::cli::settings::pubsub::PubSubSettings;
use crate::config::{ConfigError, EngineConfig};
use crate::dlq::replay::{replay_every, replay_once};
use crate::model::Topic;
use crate::pubsub::producer::{IdRange, ProduceOptions};
use crate::pubsub::PubSubConfig;
use crate::shutdown;
use crate::store::cassandra::CassandraArgs;
use crate::store::{DlqEntry, InvalidMessage, Store, StoreError};
use crate::telemetry::Stats;
use base64::Engine as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
pub use settings::{LogFormat, StoreKind, SyncArg};
use settings::{Resolved, Scope, Settings};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub mod settings;

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

/// Where rows go: the store settings, from the resolved [`Settings`].
#[derive(Debug, Clone)]
pub struct StoreArgs {
    pub store: StoreKind,
    pub data_dir: PathBuf,
    pub sync: SyncArg,
    pub cassandra: CassandraArgs,
}

impl StoreArgs {
    fn of(settings: &Settings) -> StoreArgs {
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
    /// Benchmarks only: ack every message unprocessed (the bare-subscriber ceiling).
    #[arg(long)]
    pub ack_only: bool,
    /// Print the closing summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// From the resolved settings.
    #[arg(skip)]
    pub pubsub: PubSubSettings,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// What to publish.
    #[arg(value_parser = parse_topic)]
    pub kind: Topic,
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

fn parse_topic(s: &str) -> Result<Topic, String> {
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
    ] {
        for name in scope.commands() {
            cmd = cmd.mut_subcommand(name, |sub| sub.args(settings::flag_args(scope)));
        }
    }
    cmd
}

/// Parses the command line, resolves the settings (file, variables, flags), runs the
/// command, and turns any error into one line on stderr.
pub fn main() -> ExitCode {
    let matches = match command().try_get_matches_from(std::env::args_os()) {
        Ok(matches) => matches,
        Err(e) => return usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let file = settings::locate(cli.config.clone());
    let resolved = match settings::resolve(
        file.as_deref(),
        |var: &str| std::env::var_os(var),
        settings::given_flags(&matches),
    ) {
        Ok(resolved) => resolved,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&resolved) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &resolved.file {
        tracing::debug!(path = %path.display(), "config file read");
    }
    let system = actix_rt::System::new();
    match system.block_on(run(cli, &resolved)) {
        Ok(code) => code,
        Err(e) => {
            match config_error(&e).and_then(|c| resolved.explain(c)) {
                Some(line) => eprintln!("error: {line}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// The setting a command refused, wherever in the error it sits (the run and the demo wrap
/// theirs).
fn config_error(e: &anyhow::Error) -> Option<&ConfigError> {
    e.chain().find_map(|c| {
        if let Some(c) = c.downcast_ref::<ConfigError>() {
            return Some(c);
        }
        c.downcast_ref::<app::AppError>()
            .and_then(app::AppError::config)
    })
}

/// Help and version print as clap made them; a bad flag prints one line, naming the
/// setting's variable and file key too when the flag is a setting's.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
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
    // The argument clap names, as `--flag <VALUE>`: its first word is the flag.
    let setting = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => {
            arg.split_whitespace().next().and_then(settings::by_flag)
        }
        _ => None,
    };
    match setting {
        Some(s) => eprintln!("{first} ({}, file key `{}`; set by the flag)", s.env, s.key),
        None => eprintln!("{first}"),
    }
    ExitCode::from(2)
}

/// Logs go to stderr (stdout is the commands' output). The filter is the `log` setting,
/// else `RUST_LOG`, else `info`.
/// A filter that does not parse is refused, naming where it came from: falling back to
/// `info` silently would hide the very logs the user asked for.
fn init_logging(resolved: &Resolved) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let settings = &resolved.settings;
    let filter_text = match &settings.log {
        Some(f) => f.clone(),
        None => std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string()),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&filter_text)
        .map_err(|e| {
            let problem = format!(
                "{filter_text:?} is not a log filter ({e}; examples: info, ecom_stream=debug,scylla=warn)"
            );
            match (&settings.log, settings::by_key("log")) {
                (Some(_), Some(setting)) => anyhow::Error::new(settings::SettingError {
                    setting,
                    origin: resolved.origin(setting),
                    problem,
                    source: Some(Box::new(e)),
                }),
                _ => anyhow::anyhow!("invalid setting RUST_LOG: {problem}"),
            }
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
    match settings.log_format {
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

async fn run(cli: Cli, resolved: &Resolved) -> anyhow::Result<ExitCode> {
    let settings = &resolved.settings;
    let store = StoreArgs::of(settings);
    let metrics_addr = settings.metrics_addr;
    match cli.command {
        Command::Demo(mut args) => {
            args.engine = settings.engine();
            run_demo(&store, metrics_addr, args).await
        }
        Command::Run(mut args) => {
            args.pubsub = settings.pubsub();
            args.engine = settings.engine();
            args.until_idle = settings.until_idle;
            run_pipeline(&store, metrics_addr, args).await
        }
        Command::Setup(mut args) => {
            args.pubsub = settings.pubsub();
            run_setup(&store, args).await
        }
        Command::Produce(mut args) => {
            args.pubsub = settings.pubsub();
            run_produce(args).await
        }
        Command::Dlq { command } => run_dlq(&store, command).await,
        Command::Query { command } => run_query(&store, command).await,
        Command::Config => print_config(resolved),
    }
}

/// `config`: one JSON line per setting, in the table's order.
fn print_config(resolved: &Resolved) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for row in resolved.rows() {
        match writeln!(out, "{}", serde_json::to_string(&row)?) {
            // A closed stdout (`| head`) ends the listing quietly, as `query facts` does.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            r => r?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl StoreArgs {
    /// The store settings, checked.
    fn to_config(&self) -> anyhow::Result<StoreConfig> {
        Ok(match self.store {
            StoreKind::Cassandra => StoreConfig::Cassandra(Box::new(self.cassandra.to_config()?)),
            StoreKind::Embedded => StoreConfig::Embedded {
                data_dir: self.data_dir.clone(),
                sync: self.sync.into(),
            },
        })
    }
}

async fn open_store(args: &StoreArgs, access: Access) -> anyhow::Result<Arc<dyn Store>> {
    Ok(app::store::open(&args.to_config()?, access).await?)
}

async fn run_demo(
    store_args: &StoreArgs,
    metrics_addr: std::net::SocketAddr,
    args: DemoArgs,
) -> anyhow::Result<ExitCode> {
    let config = DemoConfig {
        store: store_args.to_config()?,
        engine: args.engine.clone(),
        options: DemoOptions {
            orders: args.orders,
            payments: args.payments,
            rate: args.rate,
            seed: args.seed,
            duplicates: args.duplicates,
        },
        serve: args.serve.then_some(metrics_addr),
    };
    let (trigger, listener) = shutdown::channel();
    actix_rt::spawn(shutdown::on_signals(trigger));
    // Tests and scripts read the bound address (e.g. with --metrics-addr 127.0.0.1:0) from
    // this line.
    let outcome = app::demo(&config, listener.clone(), |addr| {
        eprintln!("serving on http://{addr}/")
    })
    .await?;
    {
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&outcome.report)?)?;
        } else {
            write_summary(&mut out, &outcome.report, &config.store.label())?;
        }
        out.flush()?;
    }
    if let Some(server) = outcome.server {
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
    let config = RunConfig {
        store: store_args.to_config()?,
        pubsub: args.pubsub.to_config()?,
        options: RunOptions {
            engine: args.engine.clone(),
            subscriber: args.pubsub.to_options()?,
            until_idle: args.until_idle,
            ack_only: args.ack_only,
        },
        metrics_addr,
    };
    let (trigger, listener) = shutdown::channel();
    actix_rt::spawn(shutdown::on_signals(trigger));
    // The CLI's own line, whatever --log says: with --metrics-addr 127.0.0.1:0 it is the one
    // place that names the port.
    let report = app::run(&config, listener, |addr| {
        eprintln!("serving on http://{addr}/")
    })
    .await?;
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
    let pubsub = args.pubsub.to_config()?;
    let settings = args.pubsub.to_settings()?;
    let store = store_args.to_config()?;
    let report = app::setup(&store, &pubsub, settings).await?;
    let mut out = std::io::stdout().lock();
    for step in &report.steps {
        writeln!(out, "{:<12} {:<8} {}", step.kind, step.outcome, step.name)?;
    }
    writeln!(out, "store        ready    {}", report.store)?;
    Ok(ExitCode::SUCCESS)
}

async fn run_produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let pubsub: PubSubConfig = args.pubsub.to_config()?;

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
            let store = open_store(store_args, Access::WriteExisting).await?;
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
            let store = open_store(store_args, Access::WriteExisting).await?;
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
            let store = open_store(store_args, Access::Read).await?;
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
            let store = open_store(store_args, Access::Read).await?;
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
    let store = open_store(store_args, Access::Read).await?;
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
    use super::*;

    #[test]
    fn the_command_line_is_well_formed_and_every_setting_has_its_flag() {
        let cmd = command();
        cmd.clone().debug_assert();
        let config = cmd.find_subcommand("config").expect("config");
        for s in settings::SETTINGS {
            let arg = config
                .get_arguments()
                .chain(cmd.get_arguments())
                .find(|a| a.get_long() == Some(s.flag))
                .unwrap_or_else(|| panic!("no --{} on `config`", s.flag));
            assert_eq!(
                arg.get_default_values().len(),
                0,
                "--{} has a clap default",
                s.flag
            );
            assert!(
                arg.get_env().is_none(),
                "--{} reads a variable through clap",
                s.flag
            );
        }
    }

    #[test]
    fn help_shows_the_one_default() {
        let help = command()
            .find_subcommand_mut("run")
            .expect("run")
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 5s]"), "{help}");
        assert!(help.contains("[env: ECOM_RETRY_MAX_BACKOFF]"), "{help}");
    }
}
