//! The dedup window: which events' effects are already durable (design §4.5).
//!
//! Owns: remembering, per order id and per payment id, the content of the last event whose
//! effect became durable. Must never: remember an event before its effect is durable. A
//! write that failed and is redelivered would otherwise be acked as a "duplicate" and lost,
//! so entries are added only from the notes the ack path sends back to the shard
//! ([`Durable`](crate::ack::Durable), through the shard's inbox).

use foldhash::HashMap;
use std::collections::VecDeque;

pub use crate::ack::{DedupKey, Seen};

/// Bounded by count (oldest key out first). Owned by its shard, which reads it once per
/// event and fills it from the durable notes in its inbox: no other thread touches it, so
/// it needs no lock (a shared window's mutex bounced between the shard's and the writer's
/// cores once per row).
pub struct DedupWindow {
    seen: HashMap<DedupKey, Seen>,
    /// Keys in first-remembered order, for eviction. A key remembered again keeps its place:
    /// evicting it early only costs one harmless rewrite of an idempotent effect.
    order: VecDeque<DedupKey>,
    capacity: usize,
}

impl DedupWindow {
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        DedupWindow {
            seen: HashMap::default(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// What is durable for `key`, if remembered.
    pub fn get(&self, key: DedupKey) -> Option<Seen> {
        self.seen.get(&key).copied()
    }

    /// Records that `seen` is durable for `key`, unless a newer write already is.
    pub fn remember(&mut self, key: DedupKey, seen: Seen) {
        match self.seen.get_mut(&key) {
            Some(cur) if cur.ts > seen.ts => {}
            Some(cur) => *cur = seen,
            None => {
                self.seen.insert(key, seen);
                self.order.push_back(key);
                while self.seen.len() > self.capacity {
                    let Some(oldest) = self.order.pop_front() else {
                        break;
                    };
                    self.seen.remove(&oldest);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let mut w = DedupWindow::new(10);
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

    #[test]
    fn stays_within_its_capacity_oldest_out_first() {
        let mut w = DedupWindow::new(3);
        for id in 1..=5 {
            w.remember(
                DedupKey::Order(id),
                Seen {
                    hash: 0,
                    ts: 0,
                    dead_lettered: false,
                },
            );
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.get(DedupKey::Order(2)), None);
        assert!(w.get(DedupKey::Order(5)).is_some());
    }
}
