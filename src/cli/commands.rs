//! The commands, each from its parsed arguments to its output: build the configs, call the
//! library (`app`, `dlq::replay`, `pubsub::producer`, the store's readers), print.
//!
//! Owns: which library call each command makes. Must never: hold pipeline logic, or print
//! anything but through [`super::output`], [`super::export`], [`super::explain`],
//! [`super::ingest_output`] and the one
//! `serving on` line.

use super::explain;
use super::export::{export_pages, Listing};
use super::ingest_output::{progress_bar, write_ingest_summary};
use super::output::{
    write_run_summary, write_summary, DlqLine, InvalidLine, DLQ_HEADER, FACT_HEADER, INVALID_HEADER,
};
use super::{
    DemoArgs, DlqCommand, IngestArgs, ProduceArgs, QueryCommand, RunArgs, SetupArgs, StoreArgs,
    StoreKind,
};
use crate::app::{self, Access, DemoConfig, DemoOptions, RunConfig, RunOptions, StoreConfig};
use crate::dlq::replay::{replay_every, replay_once};
use crate::model::StreamKind;
use crate::pubsub::producer::{IdRange, ProduceOptions};
use crate::pubsub::PubSubConfig;
use crate::shutdown;
use crate::store::Store;
use crate::telemetry::Stats;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

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

pub(super) async fn run_demo(
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

pub(super) async fn run_pipeline(
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
            replay_every: args.replay_every,
            rebind_subscriptions: args.rebind_subscriptions,
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

/// Exit code of an `ingest` stopped by a signal (128 + SIGINT, as shells report it): what
/// was acked is durable, and a rerun completes the load.
const INTERRUPTED: u8 = 130;

pub(super) async fn run_ingest(
    store_args: &StoreArgs,
    args: IngestArgs,
) -> anyhow::Result<ExitCode> {
    let options = app::IngestOptions {
        engine: args.engine.clone(),
        orders: args.orders.clone(),
        payments: args.payments.clone(),
        read: crate::source::file::ReadOptions {
            format: args.format.into(),
            timestamp_field: args.timestamp_field.clone(),
        },
    };
    let store = store_args.to_config()?;
    let total_bytes = options.validate().map_err(app::IngestError::from)?;
    let (trigger, listener) = shutdown::channel();
    actix_rt::spawn(shutdown::on_signals(trigger));
    let progress = Arc::new(app::IngestProgress::default());
    let bar = progress_bar(total_bytes, progress.clone());
    let report = app::ingest(&store, &options, progress, listener).await;
    bar.finish();
    let report = report?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write_ingest_summary(&mut out, &report, &store.label())?;
    }
    out.flush()?;
    Ok(if report.interrupted {
        ExitCode::from(INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) async fn run_setup(store_args: &StoreArgs, args: SetupArgs) -> anyhow::Result<ExitCode> {
    // Every setting is checked before anything is created: a bad store setting must not
    // leave topics and subscriptions behind.
    let pubsub = args.pubsub.to_config()?;
    let settings = args.pubsub.to_settings()?;
    let store = store_args.to_config()?;
    let parts = app::SetupParts {
        pubsub: (!args.store_only).then_some(args.pubsub.connect_wait),
        store: !args.pubsub_only,
    };
    let report = app::setup(&store, &pubsub, settings, parts).await?;
    let mut out = std::io::stdout().lock();
    for step in &report.steps {
        writeln!(out, "{:<12} {:<8} {}", step.kind, step.outcome, step.name)?;
    }
    if let Some(store) = &report.store {
        writeln!(out, "store        ready    {store}")?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn run_produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let pubsub: PubSubConfig = args.pubsub.to_config()?;

    let ids = args.ids.unwrap_or(match args.kind {
        StreamKind::Orders => IdRange { first: 1, last: 80 },
        StreamKind::Payments => IdRange {
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
    // Nothing is published (and no progress bar drawn) until Pub/Sub answers: without it
    // the client would retry in silence for ever.
    crate::pubsub::probe::wait_until_reachable(&pubsub, args.pubsub.connect_wait).await?;
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

pub(super) async fn run_dlq(
    store_args: &StoreArgs,
    command: DlqCommand,
) -> anyhow::Result<ExitCode> {
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
        DlqCommand::List {
            invalid: false,
            export,
        } => {
            // Opened first: an unwritable --out fails before the store is touched.
            let listing = Listing::open(&export, &DLQ_HEADER)?;
            let store = open_store(store_args, Access::Read).await?;
            export_pages(
                listing,
                |after| {
                    let store = store.clone();
                    async move { store.scan_dead_letters(after, PAGE).await }
                },
                |l, e| l.write(&DlqLine::from(e)),
            )
            .await?;
        }
        DlqCommand::List {
            invalid: true,
            export,
        } => {
            let listing = Listing::open(&export, &INVALID_HEADER)?;
            let store = open_store(store_args, Access::Read).await?;
            export_pages(
                listing,
                |after| {
                    let store = store.clone();
                    async move { store.scan_invalid(after, PAGE).await }
                },
                |l, m| l.write(&InvalidLine::from(m)),
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows per store read of a listing: what one page holds in memory.
const PAGE: usize = 1000;

pub(super) async fn run_query(
    store_args: &StoreArgs,
    command: QueryCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        QueryCommand::Order {
            order_id,
            explain: false,
            ..
        } => {
            let store = open_store(store_args, Access::Read).await?;
            match store.fact(order_id).await? {
                Some(row) => {
                    writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&row)?)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no row for order_id {order_id}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        QueryCommand::Order {
            order_id,
            explain: true,
            json,
        } => {
            let store = open_store(store_args, Access::Read).await?;
            let Some(fact) = store.fact_with_timestamps(order_id).await? else {
                eprintln!("no row for order_id {order_id}");
                // An order that never came leaves its payment in the DLQ: say so if it is.
                if let Some(id) = order_id.checked_add(crate::model::PAYMENT_ID_OFFSET) {
                    if let Some(e) = store.dead_letter(id).await? {
                        eprintln!(
                            "payment {id} (order_id + 1000000) is dead-lettered: {}, {} replay attempts",
                            e.reason, e.attempts
                        );
                    }
                }
                return Ok(ExitCode::FAILURE);
            };
            let mut looked_up = Vec::new();
            for (id, why) in explain::payment_ids_to_look_up(&fact.row) {
                looked_up.push((id, why, store.dead_letter(id).await?));
            }
            let explanation = explain::explain(&fact, &looked_up);
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string(&explanation)?)?;
            } else {
                explain::write_text(&mut out, &explanation)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        QueryCommand::Facts { export } => {
            let listing = Listing::open(&export, &FACT_HEADER)?;
            let store = open_store(store_args, Access::Read).await?;
            export_pages(
                listing,
                |after| {
                    let store = store.clone();
                    async move { store.scan_facts(after, PAGE).await }
                },
                |l, row| l.write(row),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
