//! One shard's order cache: the order ids it knows to exist (design §4.1).
//!
//! Owns: a set of order ids bounded by count, each forgotten `ttl` after it was last
//! inserted, the oldest insertion evicted first when the set is full. Must never: grow past
//! its capacity, or be shared between threads. Each shard owns its own, so no lookup pays
//! for synchronisation; the moka cache it replaces cost about 1,600 instructions per message
//! (docs/profile.md) for concurrency that a single-threaded shard never needs.

use foldhash::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct OrderCache {
    capacity: usize,
    ttl: Duration,
    /// Order id → when it was last inserted, and that insertion's number.
    known: HashMap<i64, (Instant, u64)>,
    /// Insertions, oldest first. An entry whose number is not the one in `known` is stale:
    /// the id was inserted again later, or already evicted.
    queue: VecDeque<(i64, u64)>,
    next_seq: u64,
}

impl OrderCache {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        OrderCache {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            ttl,
            known: HashMap::default(),
            queue: VecDeque::new(),
            next_seq: 0,
        }
    }

    /// Whether `order_id` is known and not yet expired.
    pub fn contains(&self, order_id: i64) -> bool {
        self.contains_at(order_id, Instant::now())
    }

    /// Whether `order_id` is known and not expired at `now` (the shard reads the clock once
    /// per batch, not once per event).
    pub fn contains_at(&self, order_id: i64, now: Instant) -> bool {
        self.known
            .get(&order_id)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < self.ttl)
    }

    /// Remembers `order_id` (again: its time to live starts over).
    pub fn insert(&mut self, order_id: i64) {
        self.insert_at(order_id, Instant::now());
    }

    /// Remembers `order_id` as of `now`.
    pub fn insert_at(&mut self, order_id: i64, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.known.insert(order_id, (now, seq));
        self.queue.push_back((order_id, seq));
        self.evict(now);
    }

    /// Ids known now (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        while let Some(&(id, seq)) = self.queue.front() {
            match self.known.get(&id) {
                Some(&(at, live)) if live == seq => {
                    let expired = now.duration_since(at) >= self.ttl;
                    if !expired && self.known.len() <= self.capacity {
                        break;
                    }
                    self.known.remove(&id);
                }
                // Stale: inserted again since, or evicted.
                _ => {}
            }
            self.queue.pop_front();
        }
        // Ids inserted again and again leave stale entries behind the live front one:
        // compact when they outnumber the live ones, which keeps the queue within twice the
        // capacity at an amortised O(1) per insert.
        if self.queue.len() > 2 * self.known.len() + 64 {
            let known = &self.known;
            self.queue
                .retain(|(id, seq)| known.get(id).is_some_and(|&(_, live)| live == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_insertion_goes_first_when_full() {
        let mut c = OrderCache::new(3, Duration::from_secs(3600));
        for id in 1..=3 {
            c.insert(id);
        }
        c.insert(1); // 1 is now the newest
        c.insert(4);
        assert!(!c.contains(2), "2 was the oldest insertion");
        assert!(c.contains(1) && c.contains(3) && c.contains(4));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn ids_expire_after_their_ttl() {
        let mut c = OrderCache::new(10, Duration::from_millis(1));
        c.insert(7);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!c.contains(7));
        c.insert(8);
        assert!(!c.known.contains_key(&7), "evicted on the next insert");
    }

    #[test]
    fn reinserting_one_id_keeps_the_queue_bounded() {
        let mut c = OrderCache::new(4, Duration::from_secs(3600));
        c.insert(1);
        for _ in 0..10_000 {
            c.insert(2);
        }
        assert!(c.queue.len() <= 2 * c.len() + 64 + 1, "{}", c.queue.len());
        assert!(c.contains(1) && c.contains(2));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let mut c = OrderCache::new(100, Duration::from_secs(3600));
        for id in 0..10_000 {
            c.insert(id % 357);
            assert!(c.len() <= 100);
        }
        assert!(c.contains(9_999 % 357));
    }
}
