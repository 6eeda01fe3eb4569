//! The join: routes every event to the shard that owns its `order_id`, where orders meet
//! their payments (design §1, §4).
//!
//! Layout: [`router`] decodes deliveries and sends each event to
//! `JoinShard[hash(order_id) % N]`; [`shard`] is the actor; [`state`] holds its decisions;
//! [`pending`] is the buffer of early payments; [`dedup`] the window of durable effects;
//! [`order_cache`] the order ids a shard knows to exist.

pub mod dedup;
pub mod order_cache;
pub mod pending;
pub mod router;
pub mod shard;
pub mod state;

use crate::ack::AckHandle;
use crate::model::Event;

/// A decoded event on its way to its shard.
#[derive(Debug)]
pub struct Routed {
    pub event: Event,
    /// Write timestamp: the message's publish time (µs).
    pub ts: i64,
    pub ack: AckHandle,
}
