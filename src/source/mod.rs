//! Where messages come from: the contract between a source and the pipeline.
//!
//! Owns: [`Envelope`], the unit a source hands to the pipeline's
//! [`Intake`](crate::source::intake::Intake): raw bytes plus the [`AckHandle`] that answers the
//! source once the message's effect is durable. Implementations: [`in_process`] (the
//! built-in generators of `demo`, tests and benches); the Pub/Sub subscribers plug in here.
//! Must never: decode or judge payloads (the intake does), or ack anything itself.

pub mod file;
pub mod in_process;
pub mod intake;
pub mod pubsub;

use crate::ack::AckHandle;
use crate::model::StreamKind;
use bytes::Bytes;

/// One delivery of one message.
#[derive(Debug)]
pub struct Envelope {
    /// Which subscription it came from; decides how `data` is decoded.
    pub topic: StreamKind,
    /// The source's id for the message (Pub/Sub message id); keys `invalid_messages`.
    pub message_id: String,
    /// The payload, undecoded.
    pub data: Bytes,
    /// Publish time in µs since the Unix epoch: the write timestamp of its effect (design §4.3).
    pub publish_time: i64,
    /// How many times the source has delivered this message, this time included, when it
    /// counts (Pub/Sub only for subscriptions with a dead-letter policy). Bounds how often
    /// a row whose write keeps failing is tried before it is dead-lettered.
    pub delivery_attempt: Option<u32>,
    /// Answers the source; acked only once the effect is durable.
    pub ack: AckHandle,
}
