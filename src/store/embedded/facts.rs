//! `orders_payments_facts` in SQLite: the fact sink, the join's read-through and `query`.
//!
//! Owns: the fact upserts (design §4.3's per-group last-write-wins in one statement) and
//! the fact reads. Must never: touch one column group when writing the other.

use super::{sql_limit, EmbeddedStore};
use crate::model::{Order, Payment};
use crate::store::{
    DlqEntry, FactReader, FactRow, FactSink, FactWrite, OrderLookup, Page, StampedFact, StoreError,
};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Statement};
use std::collections::HashSet;

const UPSERT_ORDER: &str = "
INSERT INTO orders_payments_facts (order_id, customer_id, item, quantity, price,
    shipping_address, order_status, creation_date, order_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT(order_id) DO UPDATE SET
    customer_id = excluded.customer_id, item = excluded.item, quantity = excluded.quantity,
    price = excluded.price, shipping_address = excluded.shipping_address,
    order_status = excluded.order_status, creation_date = excluded.creation_date,
    order_ts = excluded.order_ts
WHERE orders_payments_facts.order_ts IS NULL
   OR excluded.order_ts >= orders_payments_facts.order_ts";

const UPSERT_PAYMENT: &str = "
INSERT INTO orders_payments_facts (order_id, payment_id, payment_method, card_last_four,
    payment_status, payment_datetime, payment_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(order_id) DO UPDATE SET
    payment_id = excluded.payment_id, payment_method = excluded.payment_method,
    card_last_four = excluded.card_last_four, payment_status = excluded.payment_status,
    payment_datetime = excluded.payment_datetime, payment_ts = excluded.payment_ts
WHERE orders_payments_facts.payment_ts IS NULL
   OR excluded.payment_ts >= orders_payments_facts.payment_ts";

const FACT_COLUMNS: &str = "order_id, customer_id, item, quantity, price, shipping_address,
    order_status, creation_date, payment_id, payment_method, card_last_four, payment_status,
    payment_datetime";

fn fact_row(row: &Row<'_>) -> rusqlite::Result<FactRow> {
    Ok(FactRow {
        order_id: row.get(0)?,
        customer_id: row.get(1)?,
        item: row.get(2)?,
        quantity: row.get(3)?,
        price: row.get(4)?,
        shipping_address: row.get(5)?,
        order_status: row.get(6)?,
        creation_date: row.get(7)?,
        payment_id: row.get(8)?,
        payment_method: row.get(9)?,
        card_last_four: row.get(10)?,
        payment_status: row.get(11)?,
        payment_datetime: row.get(12)?,
    })
}

/// Binds and runs one order upsert on a statement prepared once per batch; the rows it
/// changed (0: the stored order is newer).
fn upsert_order(stmt: &mut Statement<'_>, o: &Order, ts: i64) -> rusqlite::Result<usize> {
    stmt.execute(params![
        o.order_id,
        o.customer_id,
        o.item,
        o.quantity,
        o.price,
        o.shipping_address,
        o.order_status,
        o.creation_date,
        ts
    ])
}

fn upsert_payment(stmt: &mut Statement<'_>, p: &Payment, ts: i64) -> rusqlite::Result<usize> {
    stmt.execute(params![
        p.order_id,
        p.payment_id,
        p.payment_method,
        p.card_last_four,
        p.payment_status,
        p.payment_datetime,
        ts
    ])
}

#[async_trait]
impl FactSink for EmbeddedStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let writes = writes.to_vec();
        let superseded = self
            .write("write_facts (orders_payments_facts)", move |tx| {
                // Each statement is taken from rusqlite's cache once per batch, not once per
                // row: every look-up trims and hashes the statement's text, copies it into a
                // fresh key, and hashes it again when the statement goes back.
                let mut orders = tx.prepare_cached(UPSERT_ORDER)?;
                let mut payments = tx.prepare_cached(UPSERT_PAYMENT)?;
                let mut superseded = 0;
                for write in &writes {
                    let changed = match write {
                        FactWrite::Order { order, ts } => upsert_order(&mut orders, order, *ts)?,
                        FactWrite::Payment { payment, ts } => {
                            upsert_payment(&mut payments, payment, *ts)?
                        }
                    };
                    // The upsert's WHERE refused it: the stored version is newer.
                    if changed == 0 {
                        superseded += 1;
                    }
                }
                Ok(superseded)
            })
            .await?;
        // Counted once committed: a rolled-back try is tried again and counted then.
        self.inner
            .superseded
            .fetch_add(superseded, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn superseded_writes(&self) -> Option<u64> {
        Some(
            self.inner
                .superseded
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl OrderLookup for EmbeddedStore {
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        if order_ids.is_empty() {
            return Ok(HashSet::new());
        }
        // A prepared point lookup per id: each is a rowid seek, and it needs no SQL built
        // per call nor a cap on the number of ids.
        let ids: HashSet<i64> = order_ids.iter().copied().collect();
        self.read("known_orders (orders_payments_facts)", move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT 1 FROM orders_payments_facts WHERE order_id = ?1 AND order_ts IS NOT NULL",
            )?;
            let mut known = HashSet::new();
            for id in ids {
                if stmt.exists([id])? {
                    known.insert(id);
                }
            }
            Ok(known)
        })
        .await
    }
}

#[async_trait]
impl FactReader for EmbeddedStore {
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError> {
        self.read("fact (orders_payments_facts)", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {FACT_COLUMNS} FROM orders_payments_facts WHERE order_id = ?1"
            ))?
            .query_row([order_id], fact_row)
            .optional()
        })
        .await
    }

    async fn fact_with_timestamps(&self, order_id: i64) -> Result<Option<StampedFact>, StoreError> {
        // The hidden `*_ts` columns are the timestamps last-write-wins compared: exactly
        // the publish times that won.
        self.read("fact with timestamps (orders_payments_facts)", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {FACT_COLUMNS}, order_ts, payment_ts FROM orders_payments_facts \
                 WHERE order_id = ?1"
            ))?
            .query_row([order_id], |r| {
                Ok(StampedFact {
                    row: fact_row(r)?,
                    order_ts: r.get(13)?,
                    payment_ts: r.get(14)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn dead_letter(&self, payment_id: i64) -> Result<Option<DlqEntry>, StoreError> {
        self.dead_letter_by_id(payment_id).await
    }

    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_facts (orders_payments_facts)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some(after) => tx
                    .prepare_cached(&format!(
                        "SELECT {FACT_COLUMNS} FROM orders_payments_facts WHERE order_id > ?1 \
                         ORDER BY order_id LIMIT ?2"
                    ))?
                    .query_map(params![after, limit], fact_row)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {FACT_COLUMNS} FROM orders_payments_facts \
                         ORDER BY order_id LIMIT ?1"
                    ))?
                    .query_map([limit], fact_row)?
                    .collect(),
            }
        })
        .await
        .map(|rows| Page::of_rows(rows, limit, |r: &FactRow| r.order_id))
    }
}
