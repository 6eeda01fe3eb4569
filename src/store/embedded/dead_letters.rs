//! `dlq_payments` and `invalid_messages` in SQLite.
//!
//! Owns: the dead-letter and invalid-message statements. Must never: lose an entry's
//! `first_seen` or `attempts` on a re-insert, or delete a newer version than replay read.

use super::{sql_limit, EmbeddedStore};
use crate::model::{Payment, StreamKind};
use crate::store::{DeadLetterStore, DlqEntry, InvalidMessage, Page, ReplayedEntry, StoreError};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};

const UPSERT_DEAD_LETTER: &str = "
INSERT INTO dlq_payments (payment_id, order_id, payment_method, card_last_four,
    payment_status, payment_datetime, reason, first_seen, attempts, event_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT(payment_id) DO UPDATE SET
    order_id = excluded.order_id, payment_method = excluded.payment_method,
    card_last_four = excluded.card_last_four, payment_status = excluded.payment_status,
    payment_datetime = excluded.payment_datetime, reason = excluded.reason,
    event_ts = excluded.event_ts
WHERE excluded.event_ts >= dlq_payments.event_ts";

const DEAD_LETTER_COLUMNS: &str = "payment_id, order_id, payment_method, card_last_four,
    payment_status, payment_datetime, reason, first_seen, attempts, event_ts";

const INVALID_COLUMNS: &str = "source, message_id, payload, error, received_at";

fn dead_letter(row: &Row<'_>) -> rusqlite::Result<DlqEntry> {
    Ok(DlqEntry {
        payment: Payment {
            payment_id: row.get(0)?,
            order_id: row.get(1)?,
            payment_method: row.get(2)?,
            card_last_four: row.get(3)?,
            payment_status: row.get(4)?,
            payment_datetime: row.get(5)?,
        },
        reason: row.get(6)?,
        first_seen: row.get(7)?,
        attempts: row.get(8)?,
        event_ts: row.get(9)?,
    })
}

fn invalid_message(row: &Row<'_>) -> rusqlite::Result<InvalidMessage> {
    let source: String = row.get(0)?;
    let source: StreamKind = source.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(InvalidMessage {
        source,
        message_id: row.get(1)?,
        payload: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
        error: row.get(3)?,
        received_at: row.get(4)?,
    })
}

impl EmbeddedStore {
    /// One dead letter by its key, for `query order --explain` (see
    /// [`FactReader::dead_letter`](crate::store::FactReader::dead_letter)).
    pub(super) async fn dead_letter_by_id(
        &self,
        payment_id: i64,
    ) -> Result<Option<DlqEntry>, StoreError> {
        self.read("dead_letter (dlq_payments)", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM dlq_payments WHERE payment_id = ?1"
            ))?
            .query_row([payment_id], dead_letter)
            .optional()
        })
        .await
    }
}

#[async_trait]
impl DeadLetterStore for EmbeddedStore {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write("put_dead_letters (dlq_payments)", move |tx| {
            let mut stmt = tx.prepare_cached(UPSERT_DEAD_LETTER)?;
            for e in &entries {
                let p = &e.payment;
                stmt.execute(params![
                    p.payment_id,
                    p.order_id,
                    p.payment_method,
                    p.card_last_four,
                    p.payment_status,
                    p.payment_datetime,
                    e.reason,
                    e.first_seen,
                    e.attempts,
                    e.event_ts
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_dead_letters (dlq_payments)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some(after) => tx
                    .prepare_cached(&format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM dlq_payments WHERE payment_id > ?1 \
                         ORDER BY payment_id LIMIT ?2"
                    ))?
                    .query_map(params![after, limit], dead_letter)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM dlq_payments \
                         ORDER BY payment_id LIMIT ?1"
                    ))?
                    .query_map([limit], dead_letter)?
                    .collect(),
            }
        })
        .await
        .map(|rows| Page::of_rows(rows, limit, |e: &DlqEntry| e.payment.payment_id))
    }

    async fn delete_dead_letters(
        &self,
        resolved: &[ReplayedEntry],
    ) -> Result<Vec<i64>, StoreError> {
        if resolved.is_empty() {
            return Ok(Vec::new());
        }
        let resolved = resolved.to_vec();
        self.write("delete_dead_letters (dlq_payments)", move |tx| {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM dlq_payments WHERE payment_id = ?1 AND event_ts = ?2",
            )?;
            // The rows each DELETE changed (SQLite's changes()): 1 only for the call that
            // removed the entry. Writes are serialized, so a second replay's delete of the
            // same entry changes nothing and is not counted.
            let mut removed = Vec::new();
            for r in &resolved {
                if stmt.execute([r.payment_id, r.event_ts])? > 0 {
                    removed.push(r.payment_id);
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError> {
        if payment_ids.is_empty() {
            return Ok(());
        }
        let ids = payment_ids.to_vec();
        self.write("bump_dead_letter_attempts (dlq_payments)", move |tx| {
            // Capped so that reading it back as an i32 can never fail.
            let mut stmt = tx.prepare_cached(
                "UPDATE dlq_payments SET attempts = MIN(attempts + 1, 2147483647) \
                 WHERE payment_id = ?1",
            )?;
            for id in &ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write("put_invalid (invalid_messages)", move |tx| {
            // The first record of a message wins: a redelivery is the same message.
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO invalid_messages ({INVALID_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(source, message_id) DO NOTHING"
            ))?;
            for e in &entries {
                stmt.execute(params![
                    e.source.as_str(),
                    e.message_id,
                    &e.payload[..],
                    e.error,
                    e.received_at
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn scan_invalid(
        &self,
        after: Option<(StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_invalid (invalid_messages)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some((source, message_id)) => tx
                    .prepare_cached(&format!(
                        "SELECT {INVALID_COLUMNS} FROM invalid_messages \
                         WHERE (source, message_id) > (?1, ?2) \
                         ORDER BY source, message_id LIMIT ?3"
                    ))?
                    .query_map(params![source.as_str(), message_id, limit], invalid_message)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {INVALID_COLUMNS} FROM invalid_messages \
                         ORDER BY source, message_id LIMIT ?1"
                    ))?
                    .query_map([limit], invalid_message)?
                    .collect(),
            }
        })
        .await
        .map(|rows| {
            Page::of_rows(rows, limit, |m: &InvalidMessage| {
                (m.source, m.message_id.clone())
            })
        })
    }
}
