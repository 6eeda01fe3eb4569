//! Recognising a message received again, from the ids of recent ones.
//!
//! Owns: [`RecentIds`], a fixed table of the last message ids this subscriber received and
//! how each was answered. Must never: grow with traffic, or affect what happens to a
//! message: it only tells the lease metrics what came back and in which state.
//!
//! Why a direct-mapped table of hashes: it costs one hash (foldhash) and one atomic swap per message
//! and a fixed 512 KiB, whatever the traffic. An id is forgotten once about 65,536 other
//! messages have passed its slot, and two ids whose 62-bit hashes collide in one slot would
//! be taken for one: both only under-count or (at odds of 2^-62) mis-count a metric.

use crate::telemetry::Redelivery;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = 1 << 16;
/// A fixed, unkeyed hash: nothing here needs protection from chosen collisions (a collision
/// only mis-counts a metric), and SipHash cost a full hash per message.
const ID_HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x5eed);
/// The low two bits of a slot hold the state of the message in it.
const STATE_MASK: u64 = 0b11;
const HELD: u64 = 0b01;
const ACKED: u64 = 0b10;
const NACKED: u64 = 0b11;

/// The recent message ids of one subscriber; see the module doc.
#[derive(Debug)]
pub(super) struct RecentIds {
    slots: Box<[AtomicU64]>,
}

impl Default for RecentIds {
    fn default() -> Self {
        RecentIds {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// A received message's place in the table, kept on its answer path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen(u64);

impl RecentIds {
    /// Records `message_id` as received and held; says how it was seen before, if it was.
    pub(super) fn received(&self, message_id: &str) -> (Seen, Option<Redelivery>) {
        let key = ID_HASH.hash_one(message_id) & !STATE_MASK;
        let before = self.slot(key).swap(key | HELD, Ordering::Relaxed);
        let again = (before & !STATE_MASK == key).then_some(match before & STATE_MASK {
            ACKED => Redelivery::AfterAck,
            NACKED => Redelivery::AfterNack,
            _ => Redelivery::WhileHeld,
        });
        (Seen(key), again)
    }

    /// The message was answered: remember how, unless its slot has been taken since.
    pub(super) fn answered(&self, seen: Seen, acked: bool) {
        let state = if acked { ACKED } else { NACKED };
        let _ = self.slot(seen.0).compare_exchange(
            seen.0 | HELD,
            seen.0 | state,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    fn slot(&self, key: u64) -> &AtomicU64 {
        // The hash's high bits pick the slot; its low bits hold the state.
        &self.slots[(key >> 48) as usize % SLOTS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_how_a_message_was_answered_before_it_came_back() {
        let ids = RecentIds::default();
        let (a, again) = ids.received("1");
        assert_eq!(again, None);
        let (_, again) = ids.received("1");
        assert_eq!(again, Some(Redelivery::WhileHeld));
        ids.answered(a, true);
        let (a, again) = ids.received("1");
        assert_eq!(again, Some(Redelivery::AfterAck));
        ids.answered(a, false);
        assert_eq!(ids.received("1").1, Some(Redelivery::AfterNack));
        assert_eq!(ids.received("2").1, None);
    }
}
