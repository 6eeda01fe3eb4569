//! `ecom-stream run`: the production pipeline of design §1 — Pub/Sub subscribers → join →
//! store, dead letters to the DLQ table and topic — until SIGINT/SIGTERM (design §4.8).
//!
//! Owns: starting the pieces in dependency order and stopping them in reverse: stop
//! pulling, drain the pipeline (acks go out as writes complete; held payments are nacked),
//! then close the streams so the client flushes those acks, all within the shutdown
//! deadline. Must never: exit 0 having acked something that is not durable, or hide a
//! subscription that cannot be read (that ends the run with an error).
//!
//! Start-up ([`check_pubsub`], then [`crate::pubsub::binding::check`]): before anything
//! is started, every subscription must answer a probe and feed this run's store; a refusal
//! (missing subscription, no permission, another store's subscription) fails at once, no
//! answer fails once `--pubsub-connect-wait` has passed. After that the watch
//! ([`crate::source::pubsub::watch`]) probes for the whole run: an outage turns `/readyz`
//! unready with one WARN line and back with one INFO line, and only a refusal that lasts
//! ends the run.

use crate::app::pipeline::{Drained, Pipeline};
use crate::config::{ConfigError, EngineConfig};
use crate::dlq::topic::DlqTopic;
use crate::health::{Component, Readiness};
use crate::model::StreamKind;
use crate::pubsub::binding::{BindingError, StoreBinding};
use crate::pubsub::connect::ConnectError;
use crate::pubsub::probe::{Prober, StartCheckError};
use crate::pubsub::PubSubConfig;
use crate::shutdown::Shutdown;
use crate::source::pubsub::{
    watch, AckOnly, Close, GetCounts, Sink, StopPulling, StreamSignals, SubscriberActor,
    SubscriberCounts, SubscriberFailed, SubscriberOptions,
};
use crate::store::PipelineStore;
use crate::telemetry::{Stats, StatsSnapshot};
use actix::prelude::*;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How `run` runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub engine: EngineConfig,
    pub subscriber: SubscriberOptions,
    /// Stop by itself once nothing arrived for this long and nothing is held or unanswered
    /// (backfills, load tests). `None`: run until a signal.
    pub until_idle: Option<Duration>,
    /// Ack every message without processing it: the bare-subscriber ceiling of design §8,
    /// for benchmarks only.
    pub ack_only: bool,
    /// A `dlq replay` pass this often inside the run, so that a late order's dead-lettered
    /// payments are joined without a second process; zero: never. The first pass comes one
    /// interval after the start. Default: [`DEFAULT_REPLAY_EVERY`].
    pub replay_every: Duration,
    /// Consume subscriptions bound to another store, binding them to this one
    /// (`--rebind-subscriptions`, see [`crate::pubsub::binding`]).
    pub rebind_subscriptions: bool,
}

/// How often `run` replays the DLQ by default: a late order's payments are joined within a
/// minute of it, while a pass (a scan of the whole DLQ table, once per instance) stays rare
/// next to the stream. Each pass of each instance bumps `attempts` of the entries still
/// unmatched, so with N instances `attempts` grows by about N a minute.
pub const DEFAULT_REPLAY_EVERY: Duration = Duration::from_secs(60);

/// What a run did; `run --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub stats: StatsSnapshot,
    pub orders: SubscriberCounts,
    pub payments: SubscriberCounts,
    /// Seconds from the first delivery to the last answer: the basis of `per_second`.
    pub busy_s: f64,
    /// Deliveries per second over `busy_s`.
    pub per_second: f64,
    /// Whether the drain finished within the shutdown deadline.
    pub drained: bool,
    /// What ended the run: `signal` or `idle`.
    pub ended_by: &'static str,
}

impl RunReport {
    /// A run stopped by a signal before it started (while it waited for the store).
    pub fn stopped_before_start(stats: &Stats) -> RunReport {
        RunReport {
            stats: stats.snapshot(),
            orders: SubscriberCounts::default(),
            payments: SubscriberCounts::default(),
            busy_s: 0.0,
            per_second: 0.0,
            drained: true,
            ended_by: "signal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Pub/Sub refused a subscription, or did not answer within the wait, at start.
    #[error(transparent)]
    StartCheck(#[from] StartCheckError),
    /// A subscription feeds another store, or its binding could not be read.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// Not a `source`: the line already says it all, and `{:#}` would print it twice.
    #[error("{0} (has `ecom-stream setup` been run for this project?)")]
    Subscriber(SubscriberFailed),
}

/// How often the run looks at its counters (idle detection, the busy interval).
const TICK: Duration = Duration::from_millis(100);

/// Checks every setting of a run, before anything is connected or opened.
pub fn validate(pubsub: &PubSubConfig, opts: &RunOptions) -> Result<(), ConfigError> {
    pubsub.validate()?;
    opts.subscriber.validate()?;
    opts.engine.validate()?;
    if opts.subscriber.max_lease <= opts.engine.hold {
        return Err(ConfigError {
            setting: "--pubsub-max-lease",
            problem: "must be longer than --hold, or held payments would be redelivered while held"
                .into(),
        });
    }
    Ok(())
}

/// Runs until `shutdown` fires (or, with `until_idle`, until idle). See the module doc.
pub async fn run(
    pubsub: &PubSubConfig,
    opts: &RunOptions,
    binding: &StoreBinding,
    store: Arc<dyn PipelineStore>,
    stats: Arc<Stats>,
    readiness: Arc<Readiness>,
    mut shutdown: Shutdown,
) -> Result<RunReport, RunError> {
    validate(pubsub, opts)?;
    let prober = check_pubsub(pubsub, &opts.subscriber).await?;
    // Before a message is taken: a subscription that feeds another store is refused.
    crate::pubsub::binding::check(pubsub, binding, opts.rebind_subscriptions).await?;
    let dlq = DlqTopic::connect(pubsub).await?;
    let replaying = (!opts.replay_every.is_zero()).then(|| {
        actix_rt::spawn(replay_in_run(
            store.clone(),
            stats.clone(),
            opts.replay_every,
            shutdown.clone(),
        ))
    });
    let pipeline = Pipeline::start(&opts.engine, store, Arc::new(dlq), stats.clone())?;
    pipeline.shut_on(shutdown.clone());
    let sink: Arc<dyn Sink> = if opts.ack_only {
        tracing::warn!("--ack-only: every message is acked unprocessed (benchmark ceiling)");
        Arc::new(AckOnly)
    } else {
        Arc::new(pipeline.intake())
    };
    let (failures_tx, mut failures) = mpsc::unbounded_channel();
    let signals = Arc::new(StreamSignals::default());
    let arbiter = Arbiter::new();
    let mut subscribers = Vec::new();
    // A partial hand-over waits as long as a partial write does.
    let subscriber = SubscriberOptions {
        linger: opts.engine.linger,
        ..opts.subscriber.clone()
    };
    for topic in [StreamKind::Orders, StreamKind::Payments] {
        let actor = SubscriberActor::connect(
            pubsub,
            topic,
            subscriber.clone(),
            sink.clone(),
            stats.clone(),
            signals.clone(),
        )
        .await?;
        subscribers.push(SubscriberActor::start_in_arbiter(&arbiter.handle(), |_| {
            actor
        }));
    }
    // Every subscription answered the start check just now, and the streams are opening;
    // from here the watch turns this off for the length of any outage.
    readiness.set(Component::PubSub, true);
    let watching = actix_rt::spawn(watch(
        prober,
        signals,
        readiness.clone(),
        failures_tx.clone(),
    ));
    tracing::info!(endpoint = %pubsub.describe_endpoint(), project = %pubsub.project, "running");

    let mut ticker = tokio::time::interval(TICK);
    let mut busy = Busy::new();
    let ended_by = loop {
        tokio::select! {
            _ = shutdown.wait() => break Ok("signal"),
            failed = failures.recv() => if let Some(f) = failed {
                readiness.set(Component::PubSub, false);
                break Err(f);
            },
            _ = ticker.tick() => {
                let (delivered, answered, outstanding) = sum(&counts(&subscribers).await);
                busy.observe(delivered, answered);
                if let Some(idle) = opts.until_idle {
                    if outstanding == 0 && busy.quiet_for() >= idle && pipeline.pending().await == 0 {
                        break Ok("idle");
                    }
                }
            }
        }
    };

    watching.abort();
    // An idle end or a failure fires no shutdown: the replay is stopped here. A pass cut
    // short loses nothing (each of its steps is idempotent, and the next pass redoes it).
    if let Some(replaying) = replaying {
        replaying.abort();
    }

    // Stop pulling, drain, then let the streams flush their acks: in that order, so that
    // every ack the drain produces reaches Pub/Sub.
    // One deadline for all three steps; the last second or so is kept for the acks.
    let deadline = Instant::now() + opts.engine.shutdown_deadline;
    let ack_reserve = (opts.engine.shutdown_deadline / 10).min(Duration::from_secs(2));
    let left = |reserve: Duration| {
        deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(reserve)
    };
    let stop = async {
        for s in &subscribers {
            let _ = s.send(StopPulling).await;
        }
    };
    if tokio::time::timeout(left(ack_reserve), stop).await.is_err() {
        tracing::warn!("subscribers still handing over at the shutdown deadline");
    }
    let drained = pipeline.shutdown_within(left(ack_reserve)).await == Drained::Clean;
    let remaining = left(Duration::ZERO);
    let close = async {
        for s in &subscribers {
            let _ = s.send(Close).await;
        }
    };
    if tokio::time::timeout(remaining.max(Duration::from_secs(1)), close)
        .await
        .is_err()
    {
        tracing::warn!(
            "acks still in flight at the shutdown deadline; those messages will be redelivered"
        );
    }
    let counts = counts(&subscribers).await;
    arbiter.stop();
    let ended_by = ended_by.map_err(RunError::Subscriber)?;
    let (delivered, answered, _) = sum(&counts);
    busy.observe(delivered, answered);
    let busy_s = busy.busy_s();
    tracing::info!(ended_by, drained, "stopped");
    Ok(RunReport {
        stats: stats.snapshot(),
        orders: counts.first().copied().unwrap_or_default(),
        payments: counts.get(1).copied().unwrap_or_default(),
        busy_s,
        per_second: delivered as f64 / busy_s.max(1e-9),
        drained,
        ended_by,
    })
}

/// `dlq replay` passes every `every` until the shutdown (or until aborted), the first one
/// interval after the start. Safe beside other instances doing the same: replay counts each
/// entry by the pass that deleted it.
async fn replay_in_run(
    store: Arc<dyn PipelineStore>,
    stats: Arc<Stats>,
    every: Duration,
    shutdown: Shutdown,
) {
    tracing::info!(every = ?every, "dlq replay runs inside this run");
    tokio::time::sleep(every).await;
    crate::dlq::replay::replay_every(store.as_ref(), &stats, every, shutdown, |_| {}).await;
}

/// The start check: every subscription must answer a probe before anything starts. A
/// refusal fails at once; no answer is retried until `--pubsub-connect-wait` has passed.
pub async fn check_pubsub(
    pubsub: &PubSubConfig,
    subscriber: &SubscriberOptions,
) -> Result<Prober, RunError> {
    let prober = Prober::connect(pubsub).await?;
    prober.wait_until_answered(subscriber.connect_wait).await?;
    Ok(prober)
}

/// Each subscriber's counters, orders first.
async fn counts(subscribers: &[Addr<SubscriberActor>]) -> Vec<SubscriberCounts> {
    let mut counts = Vec::with_capacity(subscribers.len());
    for s in subscribers {
        counts.push(s.send(GetCounts).await.unwrap_or_default());
    }
    counts
}

/// Delivered, answered, outstanding.
fn sum(counts: &[SubscriberCounts]) -> (u64, u64, u64) {
    counts.iter().fold((0, 0, 0), |(d, a, o), c| {
        (d + c.delivered, a + c.acked + c.nacked, o + c.outstanding)
    })
}

/// The interval from the first delivery to the last answer, sampled each tick.
#[derive(Debug)]
struct Busy {
    started: Instant,
    first: Option<Instant>,
    last_change: Option<Instant>,
    seen: (u64, u64),
}

impl Busy {
    fn new() -> Self {
        Busy {
            started: Instant::now(),
            first: None,
            last_change: None,
            seen: (0, 0),
        }
    }

    fn observe(&mut self, delivered: u64, answered: u64) {
        let now = Instant::now();
        if (delivered, answered) != self.seen {
            self.seen = (delivered, answered);
            self.first.get_or_insert(now);
            self.last_change = Some(now);
        }
    }

    fn quiet_for(&self) -> Duration {
        self.last_change.unwrap_or(self.started).elapsed()
    }

    fn busy_s(&self) -> f64 {
        match (self.first, self.last_change) {
            (Some(a), Some(b)) => (b - a).as_secs_f64() + TICK.as_secs_f64(),
            _ => 0.0,
        }
    }
}
