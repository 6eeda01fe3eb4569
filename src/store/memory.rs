//! The in-memory store: the three tables of design §3 in concurrent hash maps, for tests.
//!
//! Owns: an exact, process-local model of the store rules of [`crate::store`], so pipeline
//! tests need neither disk nor server. Must never: differ in observable behaviour from the
//! embedded store (the shared contract suite runs against both), or be used where data must
//! outlive the process. Nothing here can fail, so every call returns `Ok`.

use crate::model::{Order, Payment, StreamKind};
use crate::store::{
    DeadLetterStore, DlqEntry, FactReader, FactRow, FactSink, FactWrite, InvalidMessage,
    OrderLookup, Page, ReplayedEntry, StampedFact, StoreError,
};
use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use std::collections::HashSet;
use std::hash::Hash;

/// A column group's value with the write timestamp (µs) that last set it: last-write-wins
/// compares against `ts`, as Cassandra's per-cell write time does.
#[derive(Debug, Clone)]
struct Stamped<T> {
    value: T,
    ts: i64,
}

impl<T> Stamped<T> {
    /// Replaces the group unless the incoming write is older (an equal timestamp replaces,
    /// as in the embedded store's `excluded.ts >= ts`).
    fn apply(slot: &mut Option<Stamped<T>>, value: T, ts: i64) {
        if slot.as_ref().is_none_or(|cur| ts >= cur.ts) {
            *slot = Some(Stamped { value, ts });
        }
    }
}

/// One `orders_payments_facts` row: either group may be missing, because either write may
/// create the row.
#[derive(Debug, Clone, Default)]
struct FactEntry {
    order: Option<Stamped<Order>>,
    payment: Option<Stamped<Payment>>,
}

impl FactEntry {
    fn to_row(&self, order_id: i64) -> FactRow {
        let order = self.order.as_ref().map(|s| &s.value);
        let payment = self.payment.as_ref().map(|s| &s.value);
        FactRow {
            order_id,
            customer_id: order.map(|o| o.customer_id),
            item: order.map(|o| o.item.to_string()),
            quantity: order.map(|o| o.quantity),
            price: order.map(|o| o.price),
            shipping_address: order.map(|o| o.shipping_address.to_string()),
            order_status: order.map(|o| o.order_status.to_string()),
            creation_date: order.map(|o| o.creation_date.to_string()),
            payment_id: payment.map(|p| p.payment_id),
            payment_method: payment.map(|p| p.payment_method.to_string()),
            card_last_four: payment.map(|p| p.card_last_four.to_string()),
            payment_status: payment.map(|p| p.payment_status.to_string()),
            payment_datetime: payment.map(|p| p.payment_datetime.to_string()),
        }
    }
}

/// The in-memory store. Cheap to create; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// `orders_payments_facts`, keyed by `order_id`.
    facts: DashMap<i64, FactEntry>,
    /// `dlq_payments`, keyed by `payment_id`.
    dead_letters: DashMap<i64, DlqEntry>,
    /// `invalid_messages`, keyed by `(source, message_id)`.
    invalid: DashMap<(StreamKind, String), InvalidMessage>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Up to `limit` keys of `map` after `after`, ascending: the embedded store's
/// `WHERE key > ? ORDER BY key LIMIT ?`. Linear in the table size, which tests can afford.
fn keys_after<K, V>(map: &DashMap<K, V>, after: Option<&K>, limit: usize) -> Vec<K>
where
    K: Eq + Hash + Ord + Clone,
{
    let mut keys: Vec<K> = map
        .iter()
        .map(|e| e.key().clone())
        .filter(|k| after.is_none_or(|a| k > a))
        .collect();
    keys.sort_unstable();
    keys.truncate(limit);
    keys
}

/// One page of `map` after `after`: the keys in order, their values, and where to go on.
fn page_after<K, V, T>(
    map: &DashMap<K, V>,
    after: Option<&K>,
    limit: usize,
    get: impl Fn(&K, &V) -> T,
) -> Page<T, K>
where
    K: Eq + Hash + Ord + Clone,
{
    let keys = keys_after(map, after, limit);
    let last = keys.last().cloned();
    let read = keys.len();
    let items = keys
        .iter()
        .filter_map(|k| map.get(k).map(|v| get(k, &v)))
        .collect();
    Page::after_read(items, read, limit, last)
}

#[async_trait]
impl FactSink for MemoryStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        for write in writes {
            // The entry guard makes each read-compare-replace atomic per row, like one upsert.
            let mut row = self.facts.entry(write.order_id()).or_default();
            match write {
                FactWrite::Order { order, ts } => {
                    Stamped::apply(&mut row.order, order.clone(), *ts)
                }
                FactWrite::Payment { payment, ts } => {
                    Stamped::apply(&mut row.payment, payment.clone(), *ts)
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl OrderLookup for MemoryStore {
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        Ok(order_ids
            .iter()
            .copied()
            .filter(|id| self.facts.get(id).is_some_and(|row| row.order.is_some()))
            .collect())
    }
}

#[async_trait]
impl FactReader for MemoryStore {
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError> {
        Ok(self.facts.get(&order_id).map(|row| row.to_row(order_id)))
    }

    async fn fact_with_timestamps(&self, order_id: i64) -> Result<Option<StampedFact>, StoreError> {
        Ok(self.facts.get(&order_id).map(|row| StampedFact {
            row: row.to_row(order_id),
            order_ts: row.order.as_ref().map(|s| s.ts),
            payment_ts: row.payment.as_ref().map(|s| s.ts),
        }))
    }

    async fn dead_letter(&self, payment_id: i64) -> Result<Option<DlqEntry>, StoreError> {
        Ok(self.dead_letters.get(&payment_id).map(|e| e.clone()))
    }

    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError> {
        Ok(page_after(&self.facts, after.as_ref(), limit, |id, row| {
            row.to_row(*id)
        }))
    }
}

#[async_trait]
impl DeadLetterStore for MemoryStore {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        for entry in entries {
            match self.dead_letters.entry(entry.payment.payment_id) {
                Entry::Vacant(slot) => {
                    slot.insert(entry.clone());
                }
                Entry::Occupied(mut slot) => {
                    // first_seen and attempts belong to the entry, not to the payment: they
                    // survive a re-insert. The payment itself is last-write-wins.
                    let cur = slot.get_mut();
                    if entry.event_ts >= cur.event_ts {
                        cur.payment = entry.payment.clone();
                        cur.reason = entry.reason.clone();
                        cur.event_ts = entry.event_ts;
                    }
                }
            }
        }
        Ok(())
    }

    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        Ok(page_after(
            &self.dead_letters,
            after.as_ref(),
            limit,
            |_, e| e.clone(),
        ))
    }

    async fn delete_dead_letters(
        &self,
        resolved: &[ReplayedEntry],
    ) -> Result<Vec<i64>, StoreError> {
        Ok(resolved
            .iter()
            .filter(|r| {
                self.dead_letters
                    .remove_if(&r.payment_id, |_, e| e.event_ts == r.event_ts)
                    .is_some()
            })
            .map(|r| r.payment_id)
            .collect())
    }

    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError> {
        for id in payment_ids {
            if let Some(mut entry) = self.dead_letters.get_mut(id) {
                entry.attempts = entry.attempts.saturating_add(1);
            }
        }
        Ok(())
    }

    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        for entry in entries {
            // The first record of a message wins: a redelivery is the same message.
            self.invalid
                .entry((entry.source, entry.message_id.clone()))
                .or_insert_with(|| entry.clone());
        }
        Ok(())
    }

    async fn scan_invalid(
        &self,
        after: Option<(StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        Ok(page_after(&self.invalid, after.as_ref(), limit, |_, e| {
            e.clone()
        }))
    }
}
