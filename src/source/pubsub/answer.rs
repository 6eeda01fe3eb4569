//! The answer path of one pulled message.
//!
//! Owns: [`PubSubAck`] (the library's handler plus the flow-control permits the message
//! holds) and [`Pulled`]. Must never: ack or nack on its own initiative: only the pipeline
//! answers, through the envelope's [`AckHandle`]; a drop nacks.

use super::counters::{Counters, Receipt};
use crate::ack::{AckHandle, Acknowledge, NackReason};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler as PubSubHandler;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// The answer path of one Pub/Sub message: the library's handler plus the flow-control
/// permits it holds until answered.
pub(super) struct PubSubAck {
    pub(super) handler: PubSubHandler,
    pub(super) receipt: Receipt,
    pub(super) counters: Arc<Counters>,
    pub(super) _message_permit: OwnedSemaphorePermit,
    pub(super) _byte_permit: OwnedSemaphorePermit,
}

impl Acknowledge for PubSubAck {
    fn ack(self: Box<Self>) {
        self.counters.answered(self.receipt, None);
        self.handler.ack();
    }

    fn nack(self: Box<Self>, reason: NackReason) {
        self.counters.answered(self.receipt, Some(reason));
        self.handler.nack();
    }
}

/// A message pulled and paid for (permits taken), on its way to a batch. Its answer path is
/// an [`AckHandle`] from the start, so a message dropped on the way (at a stop) is nacked
/// and counted like any other.
pub(super) struct Pulled {
    pub(super) message: Message,
    /// Pub/Sub's delivery count (only on subscriptions with a dead-letter policy).
    pub(super) delivery_attempt: Option<i32>,
    pub(super) ack: AckHandle,
}
