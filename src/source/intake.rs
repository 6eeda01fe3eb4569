//! The intake: where deliveries enter the pipeline. Decodes each, rejects the invalid, and
//! routes every valid event to `JoinShard[hash(order_id) % N]`.
//!
//! Owns: decoding, validation outcomes and handing events to their shards. Must never: ack
//! anything (the handles travel on with their events), or return before every event of a
//! delivery has been accepted by its shard or by the dead-letter actor: that wait is the
//! back-pressure a source feels.

use crate::ack::Origin;
use crate::clock::now_micros;
use crate::dlq::dead_letter::{DeadLetter, InvalidRecord, RecordInvalid};
use crate::join::router::shard_of;
use crate::join::shard::{Events, JoinShard};
use crate::join::Routed;
use crate::model::decode;
use crate::source::Envelope;
use crate::store::InvalidMessage;
use crate::telemetry::{ActorKind, Stats};
use crate::writer::gate::StoreGate;
use actix::prelude::*;
use futures_util::future::join_all;
use std::sync::Arc;

/// The pipeline stopped (or began its shutdown) while a delivery was being handed on; its
/// messages are nacked.
#[derive(Debug, thiserror::Error)]
pub enum PipelineClosed {
    #[error("pipeline is shut down")]
    Stopped(#[from] MailboxError),
    #[error("pipeline is shutting down")]
    ShuttingDown(#[from] crate::writer::gate::GateShut),
}

/// Cheap to clone: one per source task.
#[derive(Clone)]
pub struct Intake {
    /// The shards, indexed by [`shard_of`]; shared by every clone.
    shards: Arc<[Addr<JoinShard>]>,
    /// Where invalid payloads go, with their reason.
    dead_letter: Addr<DeadLetter>,
    stats: Arc<Stats>,
    /// Closed while the store refuses writes or reads: deliveries wait here, so the
    /// source's outstanding messages sit at their bound instead of cycling as nacks.
    gate: Arc<StoreGate>,
}

impl Intake {
    pub fn new(
        shards: Arc<[Addr<JoinShard>]>,
        dead_letter: Addr<DeadLetter>,
        stats: Arc<Stats>,
        gate: Arc<StoreGate>,
    ) -> Self {
        Intake {
            shards,
            dead_letter,
            stats,
            gate,
        }
    }

    /// Hands one delivery of messages to the pipeline. Resolves once every event has been
    /// accepted downstream; their acks come later, when effects are durable. While the
    /// store is failing it first waits for the store to answer again (no timeout: the
    /// source's leases are extended meanwhile); at shutdown the batch is nacked.
    pub async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed> {
        if !self.gate.is_open(&self.stats) {
            tracing::debug!(
                messages = batch.len(),
                "store failing: delivery waits at the intake"
            );
            self.gate.wait_open(&self.stats).await?;
        }
        Stats::add(&self.stats.received, batch.len() as u64);
        let n = self.shards.len();
        // Sized for an even spread (and a little skew), so that a batch's events are moved
        // once into their shard's list, not again each time it grows.
        let room = if n == 1 {
            batch.len()
        } else {
            batch.len() / n + batch.len() / (4 * n) + 8
        };
        let mut per_shard: Vec<Vec<Routed>> = (0..n).map(|_| Vec::with_capacity(room)).collect();
        let mut invalid = Vec::new();
        for env in batch {
            match decode(env.topic, &env.data) {
                Ok(event) => per_shard[shard_of(event.order_id(), n)].push(Routed {
                    event,
                    ts: env.publish_time,
                    ack: env.ack.with_origin(Origin {
                        message_id: env.message_id,
                        delivery_attempt: env.delivery_attempt,
                    }),
                }),
                Err(reason) => {
                    tracing::debug!(source = %env.topic, id = %env.message_id, %reason, "invalid payload");
                    let received_at = now_micros();
                    self.stats.recent_invalid().push(
                        env.topic.as_str(),
                        &env.message_id,
                        &reason.0,
                        received_at,
                    );
                    invalid.push(InvalidRecord {
                        message: InvalidMessage {
                            source: env.topic,
                            message_id: env.message_id,
                            payload: env.data,
                            error: reason.0,
                            received_at,
                        },
                        ack: env.ack,
                    });
                }
            }
        }
        let to_dead_letter = async {
            if invalid.is_empty() {
                return Ok(());
            }
            Stats::add(&self.stats.invalid, invalid.len() as u64);
            let send = self.dead_letter.send(RecordInvalid(invalid));
            self.stats.mailbox(ActorKind::DeadLetter, send).await
        };
        let sends = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, events)| !events.is_empty())
            .map(|(i, events)| {
                let send = self.shards[i].send(Events(events));
                self.stats.mailbox(ActorKind::JoinShard, send)
            });
        // Concurrently: a slow DLQ write must not hold back this delivery's valid events.
        let (invalid_sent, shard_results) = futures_util::join!(to_dead_letter, join_all(sends));
        invalid_sent?;
        for result in shard_results {
            result?;
        }
        Ok(())
    }
}
