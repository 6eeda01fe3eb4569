//! Unit tests of the join's decisions: holds, joins, duplicates, spills and rechecks, on
//! explicit instants.

use super::*;
use crate::ack::testing::{Probe, Tally};
use crate::model::{Order, Payment};
use std::sync::atomic::Ordering;

fn limits() -> JoinLimits {
    JoinLimits {
        hold: Duration::from_secs(5),
        pending_capacity: 2,
        order_cache_capacity: 100,
        order_cache_ttl: Duration::from_secs(60),
        dedup_capacity: 100,
    }
}

fn order(id: i64) -> Event {
    Event::Order(Order {
        order_id: id,
        customer_id: 1,
        item: "Laptop".into(),
        quantity: 1,
        price: 10.0,
        shipping_address: "a".into(),
        order_status: "Pending".into(),
        creation_date: "2024-01-01 00:00:00".into(),
    })
}

fn payment(id: i64, order_id: i64) -> Event {
    Event::Payment(Payment {
        payment_id: id,
        order_id,
        payment_method: "Card".into(),
        card_last_four: "1234".into(),
        payment_status: "Completed".into(),
        payment_datetime: "2024-01-01 00:00:00".into(),
    })
}

fn routed(event: Event, ts: i64, t: &Arc<Tally>) -> Routed {
    Routed {
        event,
        ts,
        ack: AckHandle::new(Probe(t.clone())),
    }
}

/// Acks as the writer does: the durable notes go back to the state, then the acks.
fn ack_all(s: &mut JoinState, writes: Vec<RowWithAck>) {
    ack_durably(s, writes.into_iter().map(|w| w.ack).collect());
}

fn ack_durably(s: &mut JoinState, acks: Vec<AckHandle>) {
    let (routes, mut inbox) = crate::ack::DurableRoutes::new(1);
    crate::ack::settle(acks, Some(&routes));
    while let Ok(notes) = inbox[0].try_recv() {
        s.remember_durable(notes);
    }
}

#[test]
fn a_held_payment_joins_when_its_order_arrives() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    let fx = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), now);
    assert!(fx.writes.is_empty());
    assert_eq!(s.pending_len(), 1);
    let fx = s.apply(vec![routed(order(1), 2, &t)], &HashSet::new(), now);
    assert_eq!(fx.writes.len(), 2);
    assert_eq!(s.pending_len(), 0);
    assert!(matches!(fx.writes[0].write, FactWrite::Payment { .. }));
    ack_all(&mut s, fx.writes);
    assert_eq!(t.acks.load(Ordering::SeqCst), 2);
}

#[test]
fn an_update_to_a_held_payment_is_the_one_written() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    let _ = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), now);
    let Event::Payment(mut refunded) = payment(10, 1) else {
        unreachable!()
    };
    refunded.payment_status = "Refunded".into();
    let fx = s.apply(
        vec![
            routed(Event::Payment(refunded), 2, &t),
            routed(order(1), 3, &t),
        ],
        &HashSet::new(),
        now,
    );
    let written: Vec<&str> = fx
        .writes
        .iter()
        .filter_map(|w| match &w.write {
            FactWrite::Payment { payment, .. } => Some(payment.payment_status.as_str()),
            FactWrite::Order { .. } => None,
        })
        .collect();
    assert_eq!(written, ["Refunded"]);
    // Both deliveries are answered by that one write.
    ack_all(&mut s, fx.writes);
    assert_eq!(t.acks.load(Ordering::SeqCst), 3);
}

#[test]
fn a_read_through_hit_joins_at_once() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let batch = vec![routed(payment(10, 7), 1, &t)];
    assert_eq!(s.misses(&batch), vec![7]);
    let fx = s.apply(batch, &HashSet::from([7]), Instant::now());
    assert_eq!(fx.writes.len(), 1);
    assert_eq!(s.pending_len(), 0);
    // Now cached: no further read-through for order 7.
    assert!(s.misses(&[routed(payment(11, 7), 1, &t)]).is_empty());
}

#[test]
fn only_durable_effects_make_duplicates() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    // First copy written but not yet durable: the second copy is written too.
    let first = s.apply(vec![routed(order(1), 1, &t)], &HashSet::new(), now);
    let second = s.apply(vec![routed(order(1), 2, &t)], &HashSet::new(), now);
    assert_eq!(second.writes.len(), 1);
    // A failed (nacked) write teaches the window nothing: its redelivery, with the same
    // publish time, is written again.
    first
        .writes
        .into_iter()
        .for_each(|w| w.ack.nack(crate::ack::NackReason::WriteFailed));
    let third = s.apply(vec![routed(order(1), 1, &t)], &HashSet::new(), now);
    assert_eq!(third.writes.len(), 1);
    // Once durable, a redelivery of it (same publish time) is acked without a write...
    ack_all(&mut s, second.writes);
    let fourth = s.apply(vec![routed(order(1), 2, &t)], &HashSet::new(), now);
    assert!(fourth.writes.is_empty());
    assert_eq!(t.acks.load(Ordering::SeqCst), 2);
    // ...but a republish (newer publish time) is written, so that last-write-wins holds
    // against an older update arriving later.
    let fifth = s.apply(vec![routed(order(1), 5, &t)], &HashSet::new(), now);
    assert_eq!(fifth.writes.len(), 1);
    assert_eq!(t.nacks.load(Ordering::SeqCst), 1);
    drop(third);
}

#[test]
fn a_dead_lettered_payment_seen_again_joins_once_its_order_is_known() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    let _ = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), now);
    let mut expired = s.expired(now + Duration::from_secs(6));
    assert_eq!(expired.len(), 1);
    let resolved = s.resolve(std::mem::take(&mut expired), &HashSet::new());
    assert_eq!(resolved.unmatched.len(), 1);
    let mut held = resolved.unmatched.into_iter().next().expect("one");
    let dead_lettered = s.dead_letter_ack(&mut held);
    ack_durably(&mut s, vec![dead_lettered]);
    // Redelivered while the order is still unknown: a duplicate, acked.
    let fx = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), now);
    assert!(fx.writes.is_empty() && s.pending_len() == 0);
    // Once the order exists, the same payment is joined instead of skipped.
    let fx = s.apply(
        vec![routed(order(1), 2, &t), routed(payment(10, 1), 1, &t)],
        &HashSet::new(),
        now,
    );
    assert_eq!(fx.writes.len(), 2);
}

#[test]
fn an_order_arriving_during_the_recheck_still_joins() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    let _ = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), now);
    let expired = s.expired(now + Duration::from_secs(6));
    // The order arrives after the payment left the buffer but before the recheck ends.
    let _ = s.apply(vec![routed(order(1), 2, &t)], &HashSet::new(), now);
    let resolved = s.resolve(expired, &HashSet::new());
    assert_eq!(resolved.writes.len(), 1);
    assert!(resolved.unmatched.is_empty());
}

#[test]
fn a_full_buffer_spills_its_oldest_and_draining_nacks() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let now = Instant::now();
    let fx = s.apply(
        (1..=3).map(|i| routed(payment(10 + i, i), 1, &t)).collect(),
        &HashSet::new(),
        now,
    );
    assert_eq!(fx.spilled.len(), 1);
    assert_eq!(fx.spilled[0].payment.payment_id, 11);
    drop(fx);
    assert_eq!(t.nacks.load(Ordering::SeqCst), 1);
    let held = s.drain();
    assert_eq!(held.len(), 2);
    drop(held);
    // After the drain nothing is taken: events are nacked for redelivery.
    let fx = s.apply(
        vec![routed(payment(20, 9), 1, &t), routed(order(9), 1, &t)],
        &HashSet::new(),
        now,
    );
    assert!(fx.writes.is_empty() && fx.spilled.is_empty());
    assert_eq!(s.pending_len(), 0);
    assert_eq!(t.nacks.load(Ordering::SeqCst), 5);
}

#[test]
fn no_hold_ends_while_the_store_is_out_nor_within_a_hold_after_it() {
    let t = Arc::new(Tally::default());
    let mut s = JoinState::new(&limits(), Arc::new(Stats::default()));
    let t0 = Instant::now();
    let secs = |n| t0 + Duration::from_secs(n);
    let fx = s.apply(vec![routed(payment(10, 1), 1, &t)], &HashSet::new(), t0);
    assert!(fx.writes.is_empty());
    // The hold (5 s) would end at 5 s; the store is out from 2 s to 60 s.
    for at in [2, 5, 30, 60] {
        s.store_out(secs(at));
        assert!(s.expired(secs(at)).is_empty(), "paused at {at} s");
    }
    // An older report does not shorten the pause.
    s.store_out(secs(3));
    assert!(
        s.expired(secs(64)).is_empty(),
        "a hold after the store is back"
    );
    let ended = s.expired(secs(65));
    assert_eq!(ended.len(), 1, "ends one hold after the store was last out");
    assert_eq!(ended[0].payment.payment_id, 10);
}
