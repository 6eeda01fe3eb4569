//! The pending buffer: payments whose order is not known yet (design §4.3).
//!
//! Owns: held payments of one shard, their hold deadlines, and the bound on their number.
//! Must never: grow past its capacity (the oldest entry is handed back for an early spill),
//! or answer a held payment's ack: whoever takes an entry out answers it.

use crate::ack::AckHandle;
use crate::model::Payment;
use foldhash::{HashMap, HashSet};
use std::collections::VecDeque;
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
/// Every operation is O(1) per payment, however many payments wait for one order.
#[derive(Debug)]
pub struct PendingBuffer {
    /// Held payments by payment id: where a redelivery finds its held copy.
    held: HashMap<i64, HeldPayment>,
    /// Payment ids by the order they wait for: an arriving order takes them in one lookup.
    by_order: HashMap<i64, HashSet<i64>>,
    /// (deadline, payment id, seq) in insertion order. Entries of payments taken out early
    /// stay until they reach the front or a compaction drops them.
    expiry: VecDeque<(Instant, i64, u64)>,
    /// Most payments held at once.
    capacity: usize,
    /// The next insertion number (see [`HeldPayment`]'s `seq`).
    next_seq: u64,
}

impl PendingBuffer {
    pub fn new(capacity: usize) -> Self {
        PendingBuffer {
            held: HashMap::default(),
            by_order: HashMap::default(),
            expiry: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Whether a payment with this id is held.
    pub fn is_held(&self, payment_id: i64) -> bool {
        self.held.contains_key(&payment_id)
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
        let payment_id = payment.payment_id;
        let Some(held) = self.held.get_mut(&payment_id) else {
            return Err(Box::new((payment, ack)));
        };
        let outcome = if held.hash == hash {
            Merged::Duplicate
        } else {
            Merged::Updated
        };
        // Both deliveries are answered by the one effect that is finally written.
        held.ack = std::mem::replace(&mut held.ack, AckHandle::none()).merge(ack);
        let mut moved = None;
        if outcome == Merged::Updated && ts >= held.ts {
            let old_order = held.payment.order_id;
            let mut payment = payment;
            payment.detach();
            held.payment = payment;
            held.ts = ts;
            held.hash = hash;
            if old_order != held.payment.order_id {
                moved = Some((old_order, held.payment.order_id));
            }
        }
        // The seq is kept, so the entry's place in the expiry queue stays valid even if the
        // update moved it to another order id.
        if let Some((old_order, new_order)) = moved {
            self.unlink(old_order, payment_id);
            self.link(new_order, payment_id);
        }
        Ok(outcome)
    }

    /// Holds a payment until `deadline`. When the buffer is full the oldest held payment is
    /// taken out and returned, to be spilled early.
    pub fn hold(
        &mut self,
        mut payment: Payment,
        ts: i64,
        hash: u64,
        ack: AckHandle,
        deadline: Instant,
    ) -> Option<HeldPayment> {
        // Held for seconds: its text must not keep the buffer it was decoded from (for
        // Pub/Sub, the client's receive buffer with other messages in it) alive meanwhile.
        payment.detach();
        let spilled = if self.len() >= self.capacity {
            self.pop_oldest()
        } else {
            None
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let (payment_id, order_id) = (payment.payment_id, payment.order_id);
        self.expiry.push_back((deadline, payment_id, seq));
        self.link(order_id, payment_id);
        let previous = self.held.insert(
            payment_id,
            HeldPayment {
                payment,
                ts,
                hash,
                ack,
                deadline,
                seq,
            },
        );
        // Callers merge deliveries of held payments instead of holding them twice; if one
        // did not, the older copy is still answered (dropping it nacks: redelivered).
        drop(previous);
        self.compact_if_stale();
        spilled
    }

    /// Takes out every payment waiting for `order_id`.
    pub fn take_for_order(&mut self, order_id: i64) -> Vec<HeldPayment> {
        let ids = self.by_order.remove(&order_id).unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.held.remove(&id))
            .collect()
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
        self.by_order.clear();
        self.held.drain().map(|(_, h)| h).collect()
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
        let held = self.held.remove(&payment_id)?;
        self.unlink(held.payment.order_id, payment_id);
        Some(held)
    }

    fn is_live(&self, payment_id: i64, seq: u64) -> bool {
        self.held.get(&payment_id).is_some_and(|h| h.seq == seq)
    }

    fn link(&mut self, order_id: i64, payment_id: i64) {
        self.by_order
            .entry(order_id)
            .or_default()
            .insert(payment_id);
    }

    fn unlink(&mut self, order_id: i64, payment_id: i64) {
        if let Some(ids) = self.by_order.get_mut(&order_id) {
            ids.remove(&payment_id);
            if ids.is_empty() {
                self.by_order.remove(&order_id);
            }
        }
    }

    /// Keeps the expiry queue within a small multiple of the live entries, so payments
    /// joined before their deadline cannot make it grow without bound. The slack (1,024)
    /// only keeps tiny buffers from compacting on every insert.
    fn compact_if_stale(&mut self) {
        if self.expiry.len() > 2 * self.capacity.max(self.len()) + 1024 {
            let held = &self.held;
            self.expiry
                .retain(|&(_, pid, seq)| held.get(&pid).is_some_and(|h| h.seq == seq));
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
    fn many_payments_waiting_for_one_order_stay_cheap() {
        let t0 = Instant::now();
        let mut buf = PendingBuffer::new(200_000);
        for i in 0..100_000 {
            let _ = buf.hold(
                payment(i, 7),
                1,
                1,
                AckHandle::none(),
                t0 + Duration::from_secs(1),
            );
        }
        // Quadratic bookkeeping would make this take hours; it must be instant.
        let expired = buf.take_expired(t0 + Duration::from_secs(1));
        assert_eq!(expired.len(), 100_000);
        assert!(buf.is_empty() && buf.take_for_order(7).is_empty());
    }

    #[test]
    fn an_update_that_moves_a_payment_to_another_order_follows_it() {
        let t0 = Instant::now();
        let mut buf = PendingBuffer::new(10);
        let _ = buf.hold(payment(1, 10), 5, 1, AckHandle::none(), t0);
        let r = buf.merge(payment(1, 20), 6, 2, AckHandle::none());
        assert_eq!(r.map_err(|_| ()), Ok(Merged::Updated));
        assert!(buf.take_for_order(10).is_empty());
        assert_eq!(buf.take_for_order(20).len(), 1);
        assert!(buf.is_empty());
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
