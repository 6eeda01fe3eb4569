//! The join's decisions (DESIGN §4.1–§4.5), as plain synchronous code.
//!
//! Owns: one shard's order cache, pending buffer and dedup window, and what to do with each
//! event: write it, hold it, join it, or hand it back for a store recheck. Must never: do
//! I/O or answer an ack except for exact duplicates whose effect is already durable. The
//! actor around it ([`super::shard`]) does the store reads and the sends, so this logic is
//! tested without actors or time.

use crate::ack::AckHandle;
use crate::join::dedup::{DedupKey, DedupWindow, Seen};
use crate::join::pending::{HeldPayment, Merged, PendingBuffer};
use crate::join::Routed;
use crate::model::{Event, Order, Payment};
use crate::store::FactWrite;
use crate::telemetry::Stats;
use crate::writer::PendingWrite;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bounds of one shard's state.
#[derive(Debug, Clone)]
pub struct JoinLimits {
    pub hold: Duration,
    pub pending_capacity: usize,
    pub order_cache_capacity: u64,
    pub order_cache_ttl: Duration,
    pub dedup_capacity: u64,
}

/// What the actor must do after the state took a batch.
#[derive(Debug, Default)]
pub struct Effects {
    /// Rows for the writer.
    pub writes: Vec<PendingWrite>,
    /// Held payments taken out early (buffer full): recheck the store, then dead-letter.
    pub spilled: Vec<HeldPayment>,
}

/// What a recheck decided for held payments.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Payments whose order turned up: joined rows for the writer.
    pub writes: Vec<PendingWrite>,
    /// Payments whose order is still unknown: for the DLQ.
    pub unmatched: Vec<HeldPayment>,
}

pub struct JoinState {
    /// Order ids known to exist (written, or seen in the store). Only existence matters to
    /// the join, because a payment write touches the payment columns alone; so the value is
    /// `()` and an entry costs a few dozen bytes.
    orders: moka::sync::Cache<i64, ()>,
    pending: PendingBuffer,
    dedup: DedupWindow,
    hold: Duration,
    /// After shutdown began: payments that would be held are nacked instead, since nobody
    /// will be there to answer them when the hold ends.
    draining: bool,
    stats: Arc<Stats>,
}

impl JoinState {
    pub fn new(limits: &JoinLimits, stats: Arc<Stats>) -> Self {
        JoinState {
            orders: moka::sync::Cache::builder()
                .max_capacity(limits.order_cache_capacity)
                .time_to_live(limits.order_cache_ttl)
                .build(),
            pending: PendingBuffer::new(limits.pending_capacity),
            dedup: DedupWindow::new(limits.dedup_capacity),
            hold: limits.hold,
            draining: false,
            stats,
        }
    }

    /// Order ids of payments in `batch` whose order is not cached: the store read-through to
    /// do (one read for the whole batch) before [`apply`](Self::apply).
    pub fn misses(&self, batch: &[Routed]) -> Vec<i64> {
        let mut ids: Vec<i64> = batch
            .iter()
            .filter_map(|r| match &r.event {
                Event::Payment(p) if !self.orders.contains_key(&p.order_id) => Some(p.order_id),
                _ => None,
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Takes a batch in arrival order. `in_store`: order ids the read-through found.
    pub fn apply(&mut self, batch: Vec<Routed>, in_store: &HashSet<i64>, now: Instant) -> Effects {
        let mut fx = Effects::default();
        for found in in_store {
            self.orders.insert(*found, ());
        }
        for Routed { event, ts, ack } in batch {
            let hash = event.content_hash();
            match event {
                Event::Order(order) => self.on_order(order, ts, hash, ack, &mut fx),
                Event::Payment(payment) => self.on_payment(payment, ts, hash, ack, now, &mut fx),
            }
        }
        fx
    }

    fn on_order(&mut self, order: Order, ts: i64, hash: u64, ack: AckHandle, fx: &mut Effects) {
        let order_id = order.order_id;
        self.orders.insert(order_id, ());
        // Held payments join whatever this delivery is: the order exists.
        for held in self.pending.take_for_order(order_id) {
            Stats::incr(&self.stats.payments_joined_after_hold);
            fx.writes
                .push(self.payment_write(held.payment, held.ts, held.hash, held.ack));
        }
        let key = DedupKey::Order(order_id);
        if self.dedup.get(key).is_some_and(|s| s.hash == hash) {
            Stats::incr(&self.stats.duplicates);
            return ack.ack();
        }
        let dedup = self.dedup.clone();
        let seen = Seen {
            hash,
            ts,
            dead_lettered: false,
        };
        fx.writes.push(PendingWrite {
            write: FactWrite::Order { order, ts },
            ack: ack.on_ack(move || dedup.remember(key, seen)),
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
        let order_known = self.orders.contains_key(&payment.order_id);
        if let Some(seen) = self.dedup.get(DedupKey::Payment(payment.payment_id)) {
            // A dead-lettered payment seen again once its order is known is joined, not
            // skipped: that is the effect a user wants from the redelivery.
            if seen.hash == hash && !(seen.dead_lettered && order_known) {
                Stats::incr(&self.stats.duplicates);
                return ack.ack();
            }
        }
        let (payment, ack) = match self.pending.merge(payment, ts, hash, ack) {
            Ok(Merged::Duplicate) => return Stats::incr(&self.stats.duplicates),
            Ok(Merged::Updated) => return,
            Err(not_held) => *not_held,
        };
        if order_known {
            Stats::incr(&self.stats.cache_hits);
            Stats::incr(&self.stats.payments_joined);
            fx.writes.push(self.payment_write(payment, ts, hash, ack));
            return;
        }
        Stats::incr(&self.stats.cache_misses);
        if self.draining {
            // Nacked: redelivered to whichever instance runs next.
            return ack.nack();
        }
        Stats::incr(&self.stats.payments_held);
        let deadline = now + self.hold;
        if let Some(oldest) = self.pending.hold(payment, ts, hash, ack, deadline) {
            Stats::incr(&self.stats.spilled_early);
            fx.spilled.push(oldest);
        }
    }

    /// Payments whose hold ended by `now`: recheck the store, then [`resolve`](Self::resolve).
    pub fn expired(&mut self, now: Instant) -> Vec<HeldPayment> {
        self.pending.take_expired(now)
    }

    /// Decides held payments after the store recheck found `in_store`. An order that
    /// arrived while the recheck ran is in the cache and counts as found too.
    pub fn resolve(&mut self, held: Vec<HeldPayment>, in_store: &HashSet<i64>) -> Resolved {
        let mut out = Resolved::default();
        for h in held {
            let order_id = h.payment.order_id;
            if in_store.contains(&order_id) || self.orders.contains_key(&order_id) {
                self.orders.insert(order_id, ());
                Stats::incr(&self.stats.payments_joined_after_hold);
                out.writes
                    .push(self.payment_write(h.payment, h.ts, h.hash, h.ack));
            } else {
                out.unmatched.push(h);
            }
        }
        out
    }

    /// Wraps a held payment's ack so the dedup window learns, once the DLQ entry is
    /// durable, that this payment was dead-lettered.
    pub fn dead_letter_ack(&self, held: &mut HeldPayment) -> AckHandle {
        let dedup = self.dedup.clone();
        let key = DedupKey::Payment(held.payment.payment_id);
        let seen = Seen {
            hash: held.hash,
            ts: held.ts,
            dead_lettered: true,
        };
        std::mem::replace(&mut held.ack, AckHandle::none())
            .on_ack(move || dedup.remember(key, seen))
    }

    /// Begins shutdown: every held payment is handed back (to be nacked), and none is held
    /// from now on.
    pub fn drain(&mut self) -> Vec<HeldPayment> {
        self.draining = true;
        self.pending.take_all()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn payment_write(&self, payment: Payment, ts: i64, hash: u64, ack: AckHandle) -> PendingWrite {
        let dedup = self.dedup.clone();
        let key = DedupKey::Payment(payment.payment_id);
        let seen = Seen {
            hash,
            ts,
            dead_lettered: false,
        };
        PendingWrite {
            write: FactWrite::Payment { payment, ts },
            ack: ack.on_ack(move || dedup.remember(key, seen)),
        }
    }
}
