//! The wiring: the one place where the parts below are put together into the commands'
//! pipelines.
//!
//! Owns: [`run`] and [`demo`], which check their settings, create the counters and the
//! readiness, serve the operations listener, open the store once, and run; [`store`]
//! (choosing and opening a store); [`pipeline`] (starting the actors on their threads and
//! draining them in order); the pipelines themselves in [`mod@run`] (Pub/Sub → join →
//! store until a signal), [`mod@demo`] (built-in producers → join → store, then a
//! replay) and [`mod@ingest`] (files → join → store). Tests call [`run`] and [`demo`] in-process. Must never: parse arguments or
//! print results (the command line does), or be imported by anything below it.

pub mod demo;
pub mod ingest;
pub mod pipeline;
pub mod run;
pub mod store;

use crate::config::{ConfigError, EngineConfig};
use crate::health::{Component, Readiness};
use crate::ops::status::Identity;
use crate::ops::{self, OpsServer, ServeError};
use crate::pubsub::admin::{SetupError, SetupStep, SubscriptionSettings};
use crate::pubsub::{Endpoint, PubSubConfig};
use crate::shutdown::Shutdown;
use crate::telemetry::Stats;
use std::net::SocketAddr;
use std::sync::Arc;

pub use demo::{DemoError, DemoOptions, DemoReport};
pub use ingest::{IngestError, IngestOptions, IngestProgress, IngestReport};
pub use run::{RunError, RunOptions, RunReport};
pub use store::{Access, OpenError, StoreConfig};

/// Everything `ecom-stream run` needs, parsed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub store: StoreConfig,
    pub pubsub: PubSubConfig,
    pub options: RunOptions,
    /// Where /metrics, /healthz, /readyz and the status page are served (port 0: any).
    pub metrics_addr: SocketAddr,
}

/// Everything `ecom-stream demo` needs, parsed.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub store: StoreConfig,
    pub engine: EngineConfig,
    pub options: DemoOptions,
    /// Serve the operations listener here during the demo (and, for the caller, after it).
    pub serve: Option<SocketAddr>,
}

/// Why a command's pipeline could not start or ended in error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Reach(#[from] crate::pubsub::probe::ReachError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A Cassandra setting found wrong before connecting (a TLS file that is not PEM).
    #[error(transparent)]
    Cassandra(#[from] crate::store::cassandra::session::ConnectError),
}

impl AppError {
    /// The setting at fault, when a setting was refused.
    pub fn config(&self) -> Option<&ConfigError> {
        match self {
            AppError::Config(c)
            | AppError::Run(RunError::Config(c))
            | AppError::Demo(DemoError::Config(c))
            | AppError::Ingest(IngestError::Config(c)) => Some(c),
            _ => None,
        }
    }
}

/// `ecom-stream run`: checks every setting, serves the operations listener (calling
/// `on_serving` with its address as soon as it listens), opens the store, and runs until
/// `shutdown` fires (or, with `until_idle`, until idle).
///
/// The listener comes before the store: a busy address must fail before the store is
/// opened (and, for the embedded store, created). `/readyz` says unready until the store is
/// open and the subscriptions are read.
pub async fn run(
    config: &RunConfig,
    shutdown: Shutdown,
    on_serving: impl FnOnce(SocketAddr),
) -> Result<RunReport, AppError> {
    run::validate(&config.pubsub, &config.options)?;
    let stats = Arc::new(Stats::default());
    let readiness = Arc::new(Readiness::new());
    readiness.register(Component::Store);
    readiness.register(Component::PubSub);
    let engine = &config.options.engine;
    let source = match &config.pubsub.endpoint {
        Endpoint::Emulator(host) => format!(
            "Pub/Sub emulator {host} (project {})",
            config.pubsub.project
        ),
        Endpoint::Google(_) => format!("Pub/Sub project {}", config.pubsub.project),
    };
    let identity = Identity {
        store: config.store.label(),
        source,
        hold_seconds: engine.hold.as_secs_f64(),
        shards: engine.shards,
        streams: Some(config.options.subscriber.streams),
        ..Identity::named("run")
    };
    let server = ops::serve(
        config.metrics_addr,
        stats.clone(),
        readiness.clone(),
        shutdown.clone(),
        identity,
    )
    .await?;
    on_serving(server.local_addr());
    // A store locked by another process is waited for (`/readyz` says unready meanwhile).
    let Some(store) =
        store::open_waiting(&config.store, Access::Write, shutdown.clone(), |_| {}).await?
    else {
        return Ok(RunReport::stopped_before_start(&stats));
    };
    readiness.set(Component::Store, true);
    // After the open: the embedded store's directory exists, so its identity is its
    // canonical path.
    let binding = config.store.binding();
    let report = run::run(
        &config.pubsub,
        &config.options,
        &binding,
        store,
        stats,
        readiness,
        shutdown,
    )
    .await?;
    // Served until here, so the final counters could be scraped during the drain.
    drop(server);
    Ok(report)
}

/// What a demo left behind: its report, and the operations listener if it served one, still
/// serving until the caller drops it.
pub struct DemoOutcome {
    pub report: DemoReport,
    pub server: Option<OpsServer>,
}

/// `ecom-stream demo`: checks every setting, serves the operations listener if asked
/// (calling `on_serving` with its address), opens the store, and runs the scenario and a
/// DLQ replay.
///
/// As in [`run`], the listener comes before the store: a busy address fails before the
/// store is opened (and created).
pub async fn demo(
    config: &DemoConfig,
    shutdown: Shutdown,
    on_serving: impl FnOnce(SocketAddr),
) -> Result<DemoOutcome, AppError> {
    config.engine.validate()?;
    config.options.validate()?;
    let stats = Arc::new(Stats::default());
    // The demo has no Pub/Sub: the store is the one component /readyz requires.
    let readiness = Arc::new(Readiness::new());
    readiness.register(Component::Store);
    let server = match config.serve {
        Some(addr) => {
            let identity = Identity {
                store: config.store.label(),
                source: "in-process generator".to_string(),
                hold_seconds: config.engine.hold.as_secs_f64(),
                shards: config.engine.shards,
                ..Identity::named("demo")
            };
            let server = ops::serve(
                addr,
                stats.clone(),
                readiness.clone(),
                shutdown.clone(),
                identity,
            )
            .await?;
            on_serving(server.local_addr());
            Some(server)
        }
        None => None,
    };
    let store = store::open(&config.store, Access::Write).await?;
    readiness.set(Component::Store, true);
    let report = demo::run(&config.engine, &config.options, store, stats, shutdown).await?;
    Ok(DemoOutcome { report, server })
}

/// `ecom-stream ingest`: checks every setting and file, opens the store, and loads the
/// files (orders first, then payments) through a fresh pipeline. `progress` is updated as
/// the files are read.
pub async fn ingest(
    store_config: &StoreConfig,
    options: &IngestOptions,
    progress: Arc<IngestProgress>,
    shutdown: Shutdown,
) -> Result<IngestReport, AppError> {
    options.validate().map_err(IngestError::from)?;
    let checked = options.clone();
    tokio::task::spawn_blocking(move || checked.check_files())
        .await
        .map_err(IngestError::Reader)??;
    let stats = Arc::new(Stats::default());
    let waiting = progress.clone();
    let opened = store::open_waiting(store_config, Access::Write, shutdown.clone(), move |w| {
        waiting
            .waiting_for_store
            .store(w, std::sync::atomic::Ordering::Relaxed)
    })
    .await?;
    let Some(store) = opened else {
        return Ok(IngestReport::stopped_before_start(&stats));
    };
    Ok(ingest::run(options, store, stats, progress, shutdown).await?)
}

/// What `setup` did: one step per topic and subscription, then the store.
#[derive(Debug)]
pub struct SetupReport {
    pub steps: Vec<SetupStep>,
    /// The store made ready, with its schema version where it has one (`None`: not asked).
    pub store: Option<String>,
}

/// Which parts `setup` makes ready: both by default; `--store-only` is for a user of
/// `ingest` or of a store alone, who has no Pub/Sub to reach.
#[derive(Debug, Clone, Copy)]
pub struct SetupParts {
    /// The topics and subscriptions, after Pub/Sub has answered within this wait.
    pub pubsub: Option<std::time::Duration>,
    /// The store's tables.
    pub store: bool,
}

/// `ecom-stream setup`: creates the topics and subscriptions, bound to the store
/// ([`crate::pubsub::binding`]), and the store's tables (idempotent). Every setting is checked before anything is created, so a bad store
/// setting leaves no topics behind: the values by the caller building the configs, the
/// Cassandra TLS files' contents here (they are read only when connecting otherwise).
pub async fn setup(
    store: &StoreConfig,
    pubsub: &PubSubConfig,
    settings: SubscriptionSettings,
    parts: SetupParts,
) -> Result<SetupReport, AppError> {
    pubsub.validate()?;
    settings.validate()?;
    if let StoreConfig::Cassandra(c) = store {
        // Builds the driver's configuration (TLS included) without connecting.
        crate::store::cassandra::session::builder(c)?;
    }
    if let StoreConfig::Embedded { data_dir, .. } = store {
        // Before the subscriptions: the directory's canonical path is the identity they are
        // bound to, and `run` computes it from the directory it opens. Opening the store
        // creates it; `--pubsub-only` creates the directory alone, so the two agree (a path
        // that does not exist yet cannot be canonicalized: `../data` or a symlink would
        // hash differently).
        if parts.store {
            store::open(store, Access::Write).await?;
        } else {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                AppError::Store(crate::store::StoreError::failed_from(
                    format!("creating the data directory {}", data_dir.display()),
                    e,
                ))
            })?;
        }
    }
    let steps = match parts.pubsub {
        Some(wait) => {
            crate::pubsub::probe::wait_until_reachable(pubsub, wait).await?;
            crate::pubsub::admin::setup(pubsub, settings, &store.binding()).await?
        }
        None => Vec::new(),
    };
    if !parts.store {
        return Ok(SetupReport { steps, store: None });
    }
    let store = match store {
        StoreConfig::Cassandra(c) => {
            let applied = crate::store::cassandra::apply_schema(c).await?;
            format!(
                "{} ({} statements, schema version {})",
                store.label(),
                applied.statements,
                applied.schema_version
            )
        }
        // Opened (and its tables created) above.
        StoreConfig::Embedded { .. } => store.label(),
    };
    Ok(SetupReport {
        steps,
        store: Some(store),
    })
}
