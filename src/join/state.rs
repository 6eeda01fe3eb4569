//! The join's decisions (design §4.1–§4.5), as plain synchronous code.
//!
//! Owns: one shard's order cache, pending buffer and dedup window, and what to do with each
//! event: write it, hold it, join it, or hand it back for a store recheck. Must never: do
//! I/O or answer an ack except for exact duplicates whose effect is already durable. The
//! actor around it ([`super::shard`]) does the store reads and the sends, so this logic is
//! tested without actors or time.

use crate::ack::{AckHandle, Durable};
use crate::join::dedup::{DedupKey, DedupWindow, Seen};
use crate::join::order_cache::OrderCache;
use crate::join::pending::{HeldPayment, Merged, PendingBuffer};
use crate::join::Routed;
use crate::model::{Event, Order, Payment};
use crate::store::FactWrite;
use crate::telemetry::Stats;
use crate::writer::RowWithAck;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bounds of one shard's state (see [`EngineConfig`](crate::config::EngineConfig)).
#[derive(Debug, Clone)]
pub struct JoinLimits {
    /// How long an early payment is held.
    pub hold: Duration,
    /// Held payments at most.
    pub pending_capacity: usize,
    /// Known order ids cached at most.
    pub order_cache_capacity: u64,
    /// How long a known order id stays cached.
    pub order_cache_ttl: Duration,
    /// Durable effects remembered at most.
    pub dedup_capacity: u64,
}

/// What the actor must do after the state took a batch.
#[derive(Debug, Default)]
pub struct Effects {
    /// Rows for the writer.
    pub writes: Vec<RowWithAck>,
    /// Held payments taken out early (buffer full): recheck the store, then dead-letter.
    pub spilled: Vec<HeldPayment>,
}

/// What a recheck decided for held payments.
#[derive(Debug, Default)]
pub struct RecheckOutcome {
    /// Payments whose order turned up: joined rows for the writer.
    pub writes: Vec<RowWithAck>,
    /// Payments whose order is still unknown: for the DLQ.
    pub unmatched: Vec<HeldPayment>,
}

pub struct JoinState {
    /// Order ids known to exist (written, or seen in the store). Only existence matters to
    /// the join, because a payment write touches the payment columns alone; so the value is
    /// `()` and an entry costs a few dozen bytes.
    orders: OrderCache,
    /// Payments waiting for their order, un-acked.
    pending: PendingBuffer,
    /// Effects already durable, learnt from the notes the ack path sends back
    /// ([`remember_durable`](Self::remember_durable)).
    dedup: DedupWindow,
    /// Which shard this is: the address of its durable notes.
    shard: u32,
    /// When the batch being applied started, for the order cache.
    clock: std::time::Instant,
    /// Counts of this batch's decisions, added to the shared [`Stats`] once per batch (one
    /// atomic add per counter per batch, not one per event).
    tally: Tally,
    /// How long a payment waits for its order before the recheck and the DLQ.
    hold: Duration,
    /// When the store was last seen out (see [`Self::store_out`]): no hold ends until one
    /// hold time after it.
    store_out_seen: Option<Instant>,
    /// After shutdown began: every event is nacked, since the writer downstream may already
    /// have flushed for the last time.
    draining: bool,
    stats: Arc<Stats>,
}

impl JoinState {
    pub fn new(limits: &JoinLimits, stats: Arc<Stats>) -> Self {
        JoinState {
            orders: OrderCache::new(limits.order_cache_capacity, limits.order_cache_ttl),
            pending: PendingBuffer::new(limits.pending_capacity),
            dedup: DedupWindow::new(limits.dedup_capacity),
            shard: 0,
            clock: std::time::Instant::now(),
            tally: Tally::default(),
            hold: limits.hold,
            store_out_seen: None,
            draining: false,
            stats,
        }
    }

    /// The shard this state belongs to: where its rows' durable notes are addressed.
    pub fn with_shard(mut self, shard: usize) -> Self {
        self.shard = u32::try_from(shard).unwrap_or(u32::MAX);
        self
    }

    /// Learns what became durable (the notes of rows written and dead letters recorded).
    pub fn remember_durable(&mut self, notes: impl IntoIterator<Item = Durable>) {
        for note in notes {
            self.dedup.remember(note.key, note.seen);
        }
    }

    /// Order ids of payments in `batch` whose order is not cached: the store read-through to
    /// do (one read for the whole batch) before [`apply`](Self::apply).
    pub fn misses(&self, batch: &[Routed]) -> Vec<i64> {
        let clock = std::time::Instant::now();
        let mut ids: Vec<i64> = batch
            .iter()
            .filter_map(|r| match &r.event {
                Event::Payment(p) if !self.orders.contains_at(p.order_id, clock) => {
                    Some(p.order_id)
                }
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Takes a batch in arrival order. `in_store`: order ids the read-through found.
    pub fn apply(&mut self, batch: Vec<Routed>, in_store: &HashSet<i64>, now: Instant) -> Effects {
        // The order cache's clock, read once per batch: a batch takes microseconds, and its
        // time to live is minutes.
        self.clock = std::time::Instant::now();
        let mut fx = Effects::default();
        if self.draining {
            // Shutdown began: the writer may already have flushed, so nothing new is taken:
            // the source redelivers these to the next run.
            for routed in batch {
                routed.ack.nack(crate::ack::NackReason::Shutdown);
            }
            return fx;
        }
        for &found in in_store {
            self.orders.insert_at(found, self.clock);
            // Payments held for an order the store now shows are joined at once.
            for held in self.pending.take_for_order(found) {
                self.tally.joined_after_hold += 1;
                fx.writes
                    .push(self.payment_write(held.payment, held.ts, held.hash, held.ack));
            }
        }
        fx.writes.reserve(batch.len());
        for Routed { event, ts, ack } in batch {
            let hash = event.content_hash();
            match event {
                Event::Order(order) => self.on_order(order, ts, hash, ack, &mut fx),
                Event::Payment(payment) => self.on_payment(payment, ts, hash, ack, now, &mut fx),
            }
        }
        self.tally.flush(&self.stats);
        fx
    }

    fn on_order(&mut self, order: Order, ts: i64, hash: u64, ack: AckHandle, fx: &mut Effects) {
        let order_id = order.order_id;
        self.orders.insert_at(order_id, self.clock);
        // Held payments join whatever this delivery is: the order exists.
        for held in self.pending.take_for_order(order_id) {
            self.tally.joined_after_hold += 1;
            fx.writes
                .push(self.payment_write(held.payment, held.ts, held.hash, held.ack));
        }
        let key = DedupKey::Order(order_id);
        if let Some(seen) = self.dedup.get(key).filter(|s| s.hash == hash) {
            // Skipped only if the durable copy is at least as new. A republished copy is
            // written again, with its newer timestamp: skipping it would let an older
            // update that arrives later win, against last-write-wins (design §4.3). Only a
            // skipped copy counts as a duplicate: one written counts as written, so that
            // each delivery is counted in one bucket.
            if seen.ts >= ts {
                self.tally.duplicates += 1;
                return ack.ack();
            }
        }
        let seen = Seen {
            hash,
            ts,
            dead_lettered: false,
        };
        fx.writes.push(RowWithAck {
            write: FactWrite::Order { order, ts },
            ack: ack.noting(self.note(key, seen)),
        });
    }

    fn on_payment(
        &mut self,
        payment: Payment,
        ts: i64,
        hash: u64,
        ack: AckHandle,
        now: Instant,
        fx: &mut Effects,
    ) {
        let order_known = self.orders.contains_at(payment.order_id, self.clock);
        if let Some(seen) = self.dedup.get(DedupKey::Payment(payment.payment_id)) {
            if seen.hash == hash {
                // Skipped (and only then counted as a duplicate) if the durable copy is at
                // least as new (see `on_order`), or if it is a DLQ entry of this very
                // content while the order is still unknown: dead-lettering it again would
                // only publish it to the DLQ topic twice. Once the order is known it is
                // joined instead: what a redelivery is for.
                let skip = if seen.dead_lettered {
                    !order_known
                } else {
                    seen.ts >= ts
                };
                if skip {
                    self.tally.duplicates += 1;
                    return ack.ack();
                }
            }
        }
        // Asked first, so that the common case (not held) moves the payment on without the
        // box `merge` hands an unheld delivery back in.
        let (payment, ack) = if self.pending.is_held(payment.payment_id) {
            match self.pending.merge(payment, ts, hash, ack) {
                Ok(Merged::Duplicate) => {
                    self.tally.duplicates += 1;
                    return;
                }
                Ok(Merged::Updated) => return,
                Err(not_held) => *not_held,
            }
        } else {
            (payment, ack)
        };
        if order_known {
            self.tally.cache_hits += 1;
            self.tally.joined += 1;
            fx.writes.push(self.payment_write(payment, ts, hash, ack));
            return;
        }
        self.tally.cache_misses += 1;
        self.tally.held += 1;
        let deadline = now + self.hold;
        if let Some(oldest) = self.pending.hold(payment, ts, hash, ack, deadline) {
            self.tally.spilled_early += 1;
            fx.spilled.push(oldest);
        }
    }

    /// The store was out at `at` (the writer held rows it could not write, or the store
    /// refused writes or reads): an order may be stuck behind it, so holds stop running out
    /// until one hold time after the store was last out (design §4.3, "Holds and store
    /// outages").
    pub fn store_out(&mut self, at: Instant) {
        self.store_out_seen = self.store_out_seen.max(Some(at));
    }

    /// Whether holds are paused at `now` by a store outage (see [`Self::store_out`]).
    pub fn holds_paused(&self, now: Instant) -> bool {
        self.store_out_seen
            .is_some_and(|seen| now < seen + self.hold)
    }

    /// Payments whose hold ended by `now`: recheck the store, then [`resolve`](Self::resolve).
    /// None while holds are paused by a store outage: their deadlines pass, and they end
    /// together one hold time after the store is back, once the orders stuck behind it
    /// had the time a hold gives them.
    pub fn expired(&mut self, now: Instant) -> Vec<HeldPayment> {
        if self.holds_paused(now) {
            return Vec::new();
        }
        self.pending.take_expired(now)
    }

    /// Holds again payments whose recheck could not read the store (an outage): they are
    /// neither joined nor provably unmatched, and a nack would only bring them straight
    /// back. Each waits another hold time. Returns the ones that no longer fit (the buffer
    /// filled meanwhile), which the caller nacks.
    pub fn hold_again(&mut self, held: Vec<HeldPayment>, now: Instant) -> Vec<HeldPayment> {
        let deadline = now + self.hold;
        let mut overflow = Vec::new();
        for h in held {
            if let Some(spilled) = self.pending.hold(h.payment, h.ts, h.hash, h.ack, deadline) {
                overflow.push(spilled);
            }
        }
        overflow
    }

    /// Decides held payments after the store recheck found `in_store`. The cache counts
    /// too: it knows orders that are written but whose write is not durable yet.
    pub fn resolve(&mut self, held: Vec<HeldPayment>, in_store: &HashSet<i64>) -> RecheckOutcome {
        let mut out = RecheckOutcome::default();
        for h in held {
            let order_id = h.payment.order_id;
            if in_store.contains(&order_id) || self.orders.contains(order_id) {
                self.orders.insert(order_id);
                self.tally.joined_after_hold += 1;
                out.writes
                    .push(self.payment_write(h.payment, h.ts, h.hash, h.ack));
            } else {
                out.unmatched.push(h);
            }
        }
        self.tally.flush(&self.stats);
        out
    }

    /// Notes on a held payment's ack that, once the DLQ entry is durable, this payment was
    /// dead-lettered: the dedup window learns it from the note.
    pub fn dead_letter_ack(&self, held: &mut HeldPayment) -> AckHandle {
        let key = DedupKey::Payment(held.payment.payment_id);
        let seen = Seen {
            hash: held.hash,
            ts: held.ts,
            dead_lettered: true,
        };
        std::mem::replace(&mut held.ack, AckHandle::none()).noting(self.note(key, seen))
    }

    /// The note that `key`'s effect, `seen`, is durable, addressed to this shard.
    fn note(&self, key: DedupKey, seen: Seen) -> Durable {
        Durable {
            shard: self.shard,
            key,
            seen,
        }
    }

    /// Begins shutdown: every held payment is handed back (to be nacked), and every event
    /// from now on is nacked.
    pub fn drain(&mut self) -> Vec<HeldPayment> {
        self.draining = true;
        self.pending.take_all()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest held payment started its hold (its deadline minus the hold time).
    pub fn oldest_held_since(&mut self) -> Option<Instant> {
        let deadline = self.pending.oldest_deadline()?;
        Some(deadline.checked_sub(self.hold).unwrap_or(deadline))
    }

    fn payment_write(&self, payment: Payment, ts: i64, hash: u64, ack: AckHandle) -> RowWithAck {
        let key = DedupKey::Payment(payment.payment_id);
        let seen = Seen {
            hash,
            ts,
            dead_lettered: false,
        };
        RowWithAck {
            write: FactWrite::Payment { payment, ts },
            ack: ack.noting(self.note(key, seen)),
        }
    }
}

/// A batch's decisions, counted on the shard's thread and added to [`Stats`] once per batch.
#[derive(Debug, Default)]
struct Tally {
    joined: u64,
    joined_after_hold: u64,
    held: u64,
    spilled_early: u64,
    duplicates: u64,
    cache_hits: u64,
    cache_misses: u64,
}

impl Tally {
    fn flush(&mut self, stats: &Stats) {
        let t = std::mem::take(self);
        for (counter, n) in [
            (&stats.payments_joined, t.joined),
            (&stats.payments_joined_after_hold, t.joined_after_hold),
            (&stats.payments_held, t.held),
            (&stats.spilled_early, t.spilled_early),
            (&stats.duplicates, t.duplicates),
            (&stats.cache_hits, t.cache_hits),
            (&stats.cache_misses, t.cache_misses),
        ] {
            if n > 0 {
                Stats::add(counter, n);
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
