//! The dedup window: which events' effects are already durable (design §4.5).
//!
//! Owns: remembering, per order id and per payment id, the content of the last event whose
//! effect became durable. Must never: remember an event before its effect is durable. A
//! write that failed and is redelivered would otherwise be acked as a "duplicate" and lost,
//! so entries are added only from the ack path (`AckHandle::on_ack`).

use foldhash::HashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Identifies what an event writes: the order row's order half, or one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupKey {
    Order(i64),
    Payment(i64),
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

/// Bounded by count (oldest key out first). Shared by a shard, which reads it once per event,
/// and the ack path, which writes it once per durable effect, from the writer's thread.
///
/// A plain map under a `std::sync::Mutex` (no await happens while holding it, and the two
/// sides touch it for a few dozen nanoseconds): the engine bench measured moka's concurrent
/// cache here at several times the cost of the rest of the join (BENCHMARKS.md).
#[derive(Clone)]
pub struct DedupWindow {
    inner: Arc<Mutex<Window>>,
}

struct Window {
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
            inner: Arc::new(Mutex::new(Window {
                seen: HashMap::default(),
                order: VecDeque::new(),
                capacity,
            })),
        }
    }

    /// What is durable for `key`, if remembered.
    pub fn get(&self, key: DedupKey) -> Option<Seen> {
        // A poisoned lock means a panic elsewhere mid-update; forgetting is always safe here
        // (it only means a duplicate is written again), so treat it as not remembered.
        self.inner.lock().ok()?.seen.get(&key).copied()
    }

    /// Records that `seen` is durable for `key`, unless a newer write already is.
    pub fn remember(&self, key: DedupKey, seen: Seen) {
        let Ok(mut w) = self.inner.lock() else { return };
        match w.seen.get_mut(&key) {
            Some(cur) if cur.ts > seen.ts => {}
            Some(cur) => *cur = seen,
            None => {
                w.seen.insert(key, seen);
                w.order.push_back(key);
                while w.seen.len() > w.capacity {
                    let Some(oldest) = w.order.pop_front() else {
                        break;
                    };
                    w.seen.remove(&oldest);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|w| w.seen.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_ack_does_not_replace_a_newer_one() {
        let w = DedupWindow::new(10);
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
        let w = DedupWindow::new(3);
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
