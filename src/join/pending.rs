//! The pending buffer: payments whose order is not known yet (DESIGN §4.3).
//!
//! Owns: held payments of one shard, their hold deadlines, and the bound on their number.
//! Must never: grow past its capacity (the oldest entry is handed back for an early spill),
//! or answer a held payment's ack: whoever takes an entry out answers it.

use crate::ack::AckHandle;
use crate::model::Payment;
use std::collections::{HashMap, VecDeque};
use tokio::time::Instant;

/// A payment held un-acked until its order shows up or its hold time ends.
#[derive(Debug)]
pub struct HeldPayment {
    pub payment: Payment,
    /// Write timestamp (publish time, µs).
    pub ts: i64,
    /// Content hash, for the dedup window once the payment's effect is durable.
    pub hash: u64,
    /// The delivery (or deliveries, when duplicates arrived while held) to answer.
    pub ack: AckHandle,
    /// When the hold ends.
    pub deadline: Instant,
    /// Insertion number: tells a live expiry-queue entry from one left behind by a payment
    /// that was joined or replaced.
    seq: u64,
}

/// What happened to a payment that was already held when it arrived again.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// Same content: a duplicate delivery, now answered together with the held one.
    Duplicate,
    /// New content for the same payment id: the newer version is held instead.
    Updated,
}

/// Bounded by count; expiry in deadline order (the hold time is fixed, so insertion order).
#[derive(Debug)]
pub struct PendingBuffer {
    /// Held payments by the order they wait for: an arriving order takes them in one lookup.
    by_order: HashMap<i64, Vec<HeldPayment>>,
    /// payment id → order id, to find a held payment when it is delivered again.
    by_payment: HashMap<i64, i64>,
    /// (deadline, payment id, seq) in insertion order. Entries of payments taken out early
    /// stay until they reach the front or a compaction drops them.
    expiry: VecDeque<(Instant, i64, u64)>,
    capacity: usize,
    next_seq: u64,
}

impl PendingBuffer {
    pub fn new(capacity: usize) -> Self {
        PendingBuffer {
            by_order: HashMap::new(),
            by_payment: HashMap::new(),
            expiry: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_payment.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_payment.is_empty()
    }

    pub fn contains_payment(&self, payment_id: i64) -> bool {
        self.by_payment.contains_key(&payment_id)
    }

    /// Folds a new delivery of an already held payment into the held entry. Returns the
    /// delivery back if the payment is not held.
    pub fn merge(
        &mut self,
        payment: Payment,
        ts: i64,
        hash: u64,
        ack: AckHandle,
    ) -> Result<Merged, Box<(Payment, AckHandle)>> {
        let Some(&old_order) = self.by_payment.get(&payment.payment_id) else {
            return Err(Box::new((payment, ack)));
        };
        let Some(list) = self.by_order.get_mut(&old_order) else {
            return Err(Box::new((payment, ack)));
        };
        let Some(idx) = list
            .iter()
            .position(|h| h.payment.payment_id == payment.payment_id)
        else {
            return Err(Box::new((payment, ack)));
        };
        let mut held = list.swap_remove(idx);
        if list.is_empty() {
            self.by_order.remove(&old_order);
        }
        let outcome = if held.hash == hash {
            Merged::Duplicate
        } else {
            Merged::Updated
        };
        // Both deliveries are answered by the one effect that is finally written.
        held.ack = std::mem::replace(&mut held.ack, AckHandle::none()).merge(ack);
        if outcome == Merged::Updated && ts >= held.ts {
            held.payment = payment;
            held.ts = ts;
            held.hash = hash;
        }
        // The seq is kept, so the entry's place in the expiry queue stays valid even if the
        // update moved it to another order id.
        let order_id = held.payment.order_id;
        self.by_payment.insert(held.payment.payment_id, order_id);
        self.by_order.entry(order_id).or_default().push(held);
        Ok(outcome)
    }

    /// Holds a payment until `deadline`. When the buffer is full the oldest held payment is
    /// taken out and returned, to be spilled early.
    pub fn hold(
        &mut self,
        payment: Payment,
        ts: i64,
        hash: u64,
        ack: AckHandle,
        deadline: Instant,
    ) -> Option<HeldPayment> {
        let spilled = if self.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.expiry.push_back((deadline, payment.payment_id, seq));
        self.by_payment.insert(payment.payment_id, payment.order_id);
        self.by_order
            .entry(payment.order_id)
            .or_default()
            .push(HeldPayment {
                payment,
                ts,
                hash,
                ack,
                deadline,
                seq,
            });
        self.compact_if_stale();
        spilled
    }

    /// Takes out every payment waiting for `order_id`.
    pub fn take_for_order(&mut self, order_id: i64) -> Vec<HeldPayment> {
        let held = self.by_order.remove(&order_id).unwrap_or_default();
        for h in &held {
            self.by_payment.remove(&h.payment.payment_id);
        }
        held
    }

    /// Takes out every payment whose hold ended at or before `now`.
    pub fn take_expired(&mut self, now: Instant) -> Vec<HeldPayment> {
        let mut out = Vec::new();
        while let Some(&(deadline, _, _)) = self.expiry.front() {
            if deadline > now {
                break;
            }
            if let Some(h) = self.pop_front_live() {
                out.push(h);
            }
        }
        out
    }

    /// Takes out everything (shutdown: the caller nacks them for redelivery).
    pub fn take_all(&mut self) -> Vec<HeldPayment> {
        self.expiry.clear();
        self.by_payment.clear();
        self.by_order.drain().flat_map(|(_, v)| v).collect()
    }

    /// The deadline of the oldest held payment.
    pub fn oldest_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, payment_id, seq)) = self.expiry.front() {
            if self.is_live(payment_id, seq) {
                return Some(deadline);
            }
            self.expiry.pop_front();
        }
        None
    }

    fn pop_oldest(&mut self) -> Option<HeldPayment> {
        while !self.expiry.is_empty() {
            if let Some(h) = self.pop_front_live() {
                return Some(h);
            }
        }
        None
    }

    /// Pops the front expiry entry; returns its payment if the entry was live.
    fn pop_front_live(&mut self) -> Option<HeldPayment> {
        let (_, payment_id, seq) = self.expiry.pop_front()?;
        if !self.is_live(payment_id, seq) {
            return None;
        }
        let order_id = self.by_payment.remove(&payment_id)?;
        let list = self.by_order.get_mut(&order_id)?;
        let idx = list.iter().position(|h| h.seq == seq)?;
        let held = list.swap_remove(idx);
        if list.is_empty() {
            self.by_order.remove(&order_id);
        }
        Some(held)
    }

    fn is_live(&self, payment_id: i64, seq: u64) -> bool {
        self.by_payment
            .get(&payment_id)
            .and_then(|order_id| self.by_order.get(order_id))
            .is_some_and(|v| v.iter().any(|h| h.seq == seq))
    }

    /// Keeps the expiry queue within a small multiple of the live entries, so payments
    /// joined before their deadline cannot make it grow without bound.
    fn compact_if_stale(&mut self) {
        if self.expiry.len() > 2 * self.capacity.max(self.len()) + 1024 {
            let live: Vec<_> = self
                .expiry
                .iter()
                .copied()
                .filter(|&(_, pid, seq)| self.is_live(pid, seq))
                .collect();
            self.expiry = live.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn payment(payment_id: i64, order_id: i64) -> Payment {
        Payment {
            payment_id,
            order_id,
            payment_method: "Card".into(),
            card_last_four: "1234".into(),
            payment_status: "Completed".into(),
            payment_datetime: "2024-05-01 13:45:10".into(),
        }
    }

    #[test]
    fn holds_joins_expires_and_spills_oldest() {
        let t0 = Instant::now();
        let mut buf = PendingBuffer::new(2);
        let d = |s| t0 + Duration::from_secs(s);
        assert!(buf
            .hold(payment(1, 10), 1, 1, AckHandle::none(), d(1))
            .is_none());
        assert!(buf
            .hold(payment(2, 20), 1, 2, AckHandle::none(), d(2))
            .is_none());
        // Full: the oldest (payment 1) is spilled.
        let spilled = buf.hold(payment(3, 30), 1, 3, AckHandle::none(), d(3));
        assert_eq!(spilled.map(|h| h.payment.payment_id), Some(1));
        assert_eq!(buf.len(), 2);
        // Order 20 arrives: payment 2 is taken; its expiry entry goes stale.
        let joined = buf.take_for_order(20);
        assert_eq!(joined.len(), 1);
        assert!(buf.take_expired(d(2)).is_empty());
        let expired = buf.take_expired(d(3));
        assert_eq!(
            expired
                .iter()
                .map(|h| h.payment.payment_id)
                .collect::<Vec<_>>(),
            [3]
        );
        assert!(buf.is_empty());
        assert_eq!(buf.oldest_deadline(), None);
    }

    #[test]
    fn merge_detects_duplicates_and_updates() {
        let t0 = Instant::now();
        let mut buf = PendingBuffer::new(10);
        let _ = buf.hold(payment(1, 10), 5, 42, AckHandle::none(), t0);
        let r = buf.merge(payment(1, 10), 6, 42, AckHandle::none());
        assert_eq!(r.map_err(|_| ()), Ok(Merged::Duplicate));
        let mut newer = payment(1, 10);
        newer.payment_status = "Refunded".into();
        let r = buf.merge(newer.clone(), 7, 43, AckHandle::none());
        assert_eq!(r.map_err(|_| ()), Ok(Merged::Updated));
        let held = buf.take_for_order(10);
        assert_eq!(held[0].payment, newer);
        assert!(buf.merge(payment(9, 10), 1, 1, AckHandle::none()).is_err());
    }

    #[test]
    fn expiry_queue_stays_bounded_when_payments_join_early() {
        let t0 = Instant::now();
        let mut buf = PendingBuffer::new(4);
        for i in 0..100_000 {
            let _ = buf.hold(
                payment(i, i),
                1,
                1,
                AckHandle::none(),
                t0 + Duration::from_secs(60),
            );
            let _ = buf.take_for_order(i);
        }
        assert!(buf.expiry.len() <= 2 * 4 + 1024 + 1);
    }
}
