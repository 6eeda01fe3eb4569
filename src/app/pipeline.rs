//! Wires the actors together and takes them down in order (design §1, §4.8).
//!
//! Owns: starting the join shards (one arbiter thread each), the fact writer and the
//! dead-letter actor (one arbiter thread), or all of them on the caller's thread for tests
//! that pause the clock ([`Placement`]), handing out the [`Intake`], and the drain order
//! at shutdown. Must never: make decisions about events (that is the join's), or stop an
//! actor before everything upstream of it has drained into it.
//!
//! Must be started inside an actix `System` (the CLI, tests and benches all run one).

use crate::ack::DurableRoutes;
use crate::config::{ConfigError, EngineConfig};
use crate::dlq::dead_letter::{self, DeadLetter};
use crate::dlq::DlqPublisher;
use crate::join::shard::{Drain, JoinShard, PendingCount};
use crate::join::state::JoinLimits;
use crate::shutdown::Shutdown;
use crate::source::intake::Intake;
use crate::store::PipelineStore;
use crate::telemetry::Stats;
use crate::writer::gate::StoreGate;
use crate::writer::{self, FactWriter, WriterOptions};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// A running pipeline. Dropping it without [`shutdown`](Self::shutdown) stops the actors
/// with the System, and everything un-acked is redelivered by the source.
pub struct Pipeline {
    /// Handed to sources.
    intake: Intake,
    /// The store-health gate shared by the intake and the writer; shut first at shutdown.
    gate: Arc<StoreGate>,
    /// Drained first at shutdown.
    shards: Arc<[Addr<JoinShard>]>,
    /// Flushed after the shards.
    writer: Addr<FactWriter>,
    /// Flushed after the shards.
    dead_letter: Addr<DeadLetter>,
    /// The threads the actors run on; stopped after the drain.
    arbiters: Vec<Arbiter>,
    stats: Arc<Stats>,
    /// How long [`shutdown`](Self::shutdown) may take.
    shutdown_deadline: Duration,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Everything in flight was written and answered.
    Clean,
    /// The deadline passed first; what was not answered is redelivered by the source.
    DeadlineExceeded,
}

/// Where the actors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Each shard on a thread of its own, the writer and the dead-letter actor on one more:
    /// N shards use N cores. What the commands use.
    Threads,
    /// Every actor on the caller's thread and runtime. For tests that pause tokio's clock
    /// (`tokio::time::pause`): hold timers then follow the paused clock, so a hold of 30 s
    /// ends only when the test lets time advance, never because the machine was slow.
    CurrentThread,
}

/// Starts `f`'s actor on `on`'s thread, or on the current one.
fn place<A, F>(on: Option<&ArbiterHandle>, f: F) -> Addr<A>
where
    A: Actor<Context = Context<A>>,
    F: FnOnce(&mut Context<A>) -> A + Send + 'static,
{
    match on {
        Some(arbiter) => A::start_in_arbiter(arbiter, f),
        None => A::create(f),
    }
}

impl Pipeline {
    /// Starts the actors on threads of their own ([`Placement::Threads`]).
    pub fn start(
        config: &EngineConfig,
        store: Arc<dyn PipelineStore>,
        publisher: Arc<dyn DlqPublisher>,
        stats: Arc<Stats>,
    ) -> Result<Pipeline, ConfigError> {
        Self::start_placed(config, store, publisher, stats, Placement::Threads)
    }

    pub fn start_placed(
        config: &EngineConfig,
        store: Arc<dyn PipelineStore>,
        publisher: Arc<dyn DlqPublisher>,
        stats: Arc<Stats>,
        placement: Placement,
    ) -> Result<Pipeline, ConfigError> {
        config.validate()?;
        let new_arbiter = || (placement == Placement::Threads).then(Arbiter::new);
        let io = new_arbiter();
        let writer_options = WriterOptions {
            batch_size: config.batch_size,
            linger: config.linger,
            max_in_flight: config.max_in_flight,
            mailbox_capacity: config.mailbox_capacity,
            retry: config.retry.clone(),
            max_write_attempts: config.max_write_attempts,
        };
        let gate = Arc::new(StoreGate::default());
        // The way back from the writers to each shard's dedup window (crate::ack).
        let (routes, inboxes) = DurableRoutes::new(config.shards);
        let dead_letter = {
            let (store, stats, retry) = (store.clone(), stats.clone(), config.retry.clone());
            let (in_flight, mailbox) = (config.max_in_flight, config.mailbox_capacity);
            let routes = routes.clone();
            place(io.as_ref().map(Arbiter::handle).as_ref(), move |_| {
                DeadLetter::new(store, publisher, stats, retry, in_flight, mailbox)
                    .durable_to(routes)
            })
        };
        let writer = {
            let (store, stats, gate) = (store.clone(), stats.clone(), gate.clone());
            let dead_letter = dead_letter.clone();
            place(io.as_ref().map(Arbiter::handle).as_ref(), move |_| {
                FactWriter::new(store, stats, writer_options)
                    .with_gate(gate)
                    .dead_letter_to(dead_letter)
                    .durable_to(routes)
            })
        };
        let limits = JoinLimits {
            hold: config.hold,
            pending_capacity: config.pending_capacity,
            order_cache_capacity: config.order_cache_capacity,
            order_cache_ttl: config.order_cache_ttl,
            dedup_capacity: config.dedup_capacity,
        };
        let mut arbiters: Vec<Arbiter> = io.into_iter().collect();
        let mut shards = Vec::with_capacity(config.shards);
        for (id, inbox) in inboxes.into_iter().enumerate() {
            let arbiter = new_arbiter();
            let (limits, store, stats) = (limits.clone(), store.clone(), stats.clone());
            let (writer, dead_letter, gate) = (writer.clone(), dead_letter.clone(), gate.clone());
            let mailbox = config.mailbox_capacity;
            shards.push(place(
                arbiter.as_ref().map(Arbiter::handle).as_ref(),
                move |_| {
                    JoinShard::new(id, &limits, store, writer, dead_letter, stats, mailbox)
                        .with_gate(gate)
                        .with_durable_inbox(inbox)
                },
            ));
            arbiters.extend(arbiter);
        }
        let shards: Arc<[Addr<JoinShard>]> = shards.into();
        Ok(Pipeline {
            intake: Intake::new(
                shards.clone(),
                dead_letter.clone(),
                stats.clone(),
                gate.clone(),
            ),
            gate,
            shards,
            writer,
            dead_letter,
            arbiters,
            stats,
            shutdown_deadline: config.shutdown_deadline,
        })
    }

    /// Where sources hand in their deliveries.
    pub fn intake(&self) -> Intake {
        self.intake.clone()
    }

    /// The dead-letter actor: for sources that find a record invalid before any decoding
    /// (`ingest`'s files), so that it is recorded exactly as the intake records its own.
    pub fn dead_letter(&self) -> Addr<DeadLetter> {
        self.dead_letter.clone()
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Begins the shutdown as soon as `shutdown` fires: deliveries waiting at the intake
    /// for a failing store are nacked, and so are rows the writer holds through an outage,
    /// so that stopping the sources never waits for the store to come back.
    pub fn shut_on(&self, mut shutdown: Shutdown) {
        let gate = self.gate.clone();
        actix_rt::spawn(async move {
            shutdown.wait().await;
            gate.shut();
        });
    }

    /// Payments held across all shards right now.
    pub async fn pending(&self) -> usize {
        let mut total = 0;
        for shard in self.shards.iter() {
            total += shard.send(PendingCount).await.unwrap_or(0);
        }
        total
    }

    /// Drains in dependency order, within the configured deadline: shards first (held
    /// payments are nacked; their last rows go to the writer and the DLQ), then the writer
    /// and the dead-letter actor flush and wait for their writes in flight, whose acks go
    /// out as they complete. Stop the sources before calling this.
    pub async fn shutdown(self) -> Drained {
        let limit = self.shutdown_deadline;
        self.shutdown_within(limit).await
    }

    /// [`shutdown`](Self::shutdown) within `limit` instead of the configured deadline: for
    /// callers that spent part of the deadline already (stopping their sources).
    pub async fn shutdown_within(self, limit: Duration) -> Drained {
        self.gate.shut();
        let drain = async {
            for shard in self.shards.iter() {
                if let Err(e) = shard.send(Drain).await {
                    tracing::warn!(error = %e, "shard already stopped");
                }
            }
            if let Err(e) = self.writer.send(writer::Flush).await {
                tracing::warn!(error = %e, "writer already stopped");
            }
            if let Err(e) = self.dead_letter.send(dead_letter::Flush).await {
                tracing::warn!(error = %e, "dead-letter actor already stopped");
            }
        };
        let outcome = match tokio::time::timeout(limit, drain).await {
            Ok(()) => Drained::Clean,
            Err(_) => {
                tracing::error!(
                    deadline_s = limit.as_secs_f64(),
                    "shutdown deadline passed; un-acked messages will be redelivered"
                );
                Drained::DeadlineExceeded
            }
        };
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        outcome
    }
}
