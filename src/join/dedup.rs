//! The dedup window: which events' effects are already durable (DESIGN §4.5).
//!
//! Owns: remembering, per order id and per payment id, the content of the last event whose
//! effect became durable. Must never: remember an event before its effect is durable. A
//! write that failed and is redelivered would otherwise be acked as a "duplicate" and lost,
//! so entries are added only from the ack path (`AckHandle::on_ack`).

use crate::model::Event;
use moka::ops::compute::Op;
use std::time::Duration;

/// Identifies what an event writes: the order row's order half, or one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupKey {
    Order(i64),
    Payment(i64),
}

impl DedupKey {
    pub fn of(event: &Event) -> DedupKey {
        match event {
            Event::Order(o) => DedupKey::Order(o.order_id),
            Event::Payment(p) => DedupKey::Payment(p.payment_id),
        }
    }
}

/// What became durable for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// [`Event::content_hash`] of the event.
    pub hash: u64,
    /// Its write timestamp: a slower ack of an older version must not overwrite a newer one.
    pub ts: i64,
    /// Whether the effect was a DLQ entry rather than a joined row: such a payment, seen
    /// again once its order is known, is joined instead of skipped.
    pub dead_lettered: bool,
}

/// Bounded by count and age; shared between a shard (reads) and the ack path (writes),
/// which moka's concurrent cache allows without a lock of ours.
#[derive(Clone)]
pub struct DedupWindow {
    seen: moka::sync::Cache<DedupKey, Seen>,
}

impl DedupWindow {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        DedupWindow {
            seen: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// What is durable for `key`, if remembered.
    pub fn get(&self, key: DedupKey) -> Option<Seen> {
        self.seen.get(&key)
    }

    /// Records that `seen` is durable for `key`, unless a newer write already is.
    pub fn remember(&self, key: DedupKey, seen: Seen) {
        self.seen
            .entry(key)
            .and_compute_with(|current| match current {
                Some(cur) if cur.value().ts > seen.ts => Op::Nop,
                _ => Op::Put(seen),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let w = DedupWindow::new(10, Duration::from_secs(60));
        let k = DedupKey::Order(1);
        let new = Seen {
            hash: 2,
            ts: 20,
            dead_lettered: false,
        };
        w.remember(k, new);
        w.remember(
            k,
            Seen {
                hash: 1,
                ts: 10,
                dead_lettered: false,
            },
        );
        assert_eq!(w.get(k), Some(new));
        let newer = Seen {
            hash: 3,
            ts: 20,
            dead_lettered: true,
        };
        w.remember(k, newer);
        assert_eq!(w.get(k), Some(newer));
        assert_eq!(w.get(DedupKey::Payment(1)), None);
    }
}
