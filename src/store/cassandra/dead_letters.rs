//! The dead-letter tables on Cassandra: `dlq_payments` and `invalid_messages`.
//!
//! Owns: the [`DeadLetterStore`] implementation of [`CassandraStore`] (the read-before-write
//! put, the timestamped bump and conditional delete, the partition-by-partition invalid
//! scan; see the semantics in the parent module). Must never: use a lightweight
//! transaction (ScyllaDB tablets refuse them) or delete a newer version than replay read.
//! A delete counts only an entry its read found (see `delete_one`).

use super::statements::{
    self, AttemptsCql, DeadLetterCql, DeadLetterStateCql, InvalidCql, InvalidExistsCql, Stmt,
};
use super::{decisions, CassandraStore};
use crate::model::StreamKind;
use crate::store::{DeadLetterStore, DlqEntry, InvalidMessage, Page, ReplayedEntry, StoreError};
use async_trait::async_trait;
use futures_util::stream::{self, StreamExt};

impl CassandraStore {
    /// Deletes the version of an entry replay read; `Some(payment_id)` if it was there to
    /// remove. Without a lightweight transaction the check is a read just before the delete:
    /// exact against a replay that deleted the entry earlier, but two replays deleting the
    /// same entry in the same instant may both count it.
    async fn delete_one(&self, r: &ReplayedEntry) -> Result<Option<i64>, StoreError> {
        let state: Option<DeadLetterStateCql> = self
            .rows(
                "read dead letter (dlq_payments)",
                &self.prepared[Stmt::SelectDeadLetterState],
                (r.payment_id,),
            )
            .await?
            .into_iter()
            .next();
        // Deleted whatever was read: the tombstone must also cover a re-insert of this
        // version that the read did not see yet.
        self.execute(
            "delete dead letter (dlq_payments)",
            &self.prepared[Stmt::DeleteDeadLetter],
            (r.event_ts, r.payment_id),
        )
        .await?;
        Ok(decisions::delete_removes(state.as_ref(), r.event_ts).then_some(r.payment_id))
    }

    async fn put_invalid_one(&self, m: &InvalidMessage) -> Result<(), StoreError> {
        let found: Vec<InvalidExistsCql> = self
            .rows(
                "look up invalid message (invalid_messages)",
                &self.prepared[Stmt::SelectInvalidExists],
                (m.source.as_str(), m.message_id.as_str()),
            )
            .await?;
        if !found.is_empty() {
            return Ok(()); // recorded already: the first record wins
        }
        self.execute(
            "record invalid message (invalid_messages)",
            &self.prepared[Stmt::InsertInvalid],
            statements::invalid_values(m),
        )
        .await
        .map(drop)
    }

    async fn put_dead_letter(&self, entry: &DlqEntry) -> Result<(), StoreError> {
        let id = entry.payment.payment_id;
        let state: Option<DeadLetterStateCql> = self
            .rows(
                "read dead letter (dlq_payments)",
                &self.prepared[Stmt::SelectDeadLetterState],
                (id,),
            )
            .await?
            .into_iter()
            .next();
        let Some((first_seen, attempts)) = decisions::dead_letter_write(state.as_ref(), entry)
        else {
            return Ok(()); // a newer version is stored
        };
        self.execute(
            "write dead letter (dlq_payments)",
            &self.prepared[Stmt::UpsertDeadLetter],
            statements::dead_letter_values(entry, first_seen, attempts),
        )
        .await
        .map(drop)
    }

    async fn bump_attempts(&self, payment_id: i64) -> Result<(), StoreError> {
        let row: Option<AttemptsCql> = self
            .rows(
                "read attempts (dlq_payments)",
                &self.prepared[Stmt::SelectAttempts],
                (payment_id,),
            )
            .await?
            .into_iter()
            .next();
        let Some((ts, next)) = decisions::bump(row.as_ref()) else {
            return Ok(()); // no such entry (resolved meanwhile): nothing to count
        };
        self.execute(
            "bump attempts (dlq_payments)",
            &self.prepared[Stmt::UpdateAttempts],
            (ts, next, payment_id),
        )
        .await
        .map(drop)
    }

    /// Invalid messages of one source after `after` (a message id), in id order.
    async fn scan_invalid_source(
        &self,
        source: StreamKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InvalidMessage>, StoreError> {
        let what = "scan invalid_messages";
        let limit = statements::cql_limit(limit);
        let rows: Vec<InvalidCql> = match after {
            None => {
                self.rows(
                    what,
                    &self.prepared[Stmt::ScanInvalidFirst],
                    (source.as_str(), limit),
                )
                .await?
            }
            Some(id) => {
                self.rows(
                    what,
                    &self.prepared[Stmt::ScanInvalidAfter],
                    (source.as_str(), id, limit),
                )
                .await?
            }
        };
        rows.into_iter()
            .map(|r| {
                r.into_message()
                    .map_err(|e| StoreError::failed_from(what, e))
            })
            .collect()
    }
}

#[async_trait]
impl DeadLetterStore for CassandraStore {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        // Read-before-write: entries for the same payment go one after the other, as in
        // the local stores; different payments go concurrently.
        let groups = decisions::group_by_key(entries, |e| e.payment.payment_id);
        self.all_ok(
            groups
                .into_iter()
                .map(|group| async move {
                    for e in group {
                        self.put_dead_letter(e).await?;
                    }
                    Ok(())
                })
                .collect(),
        )
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
        let what = "scan dlq_payments";
        let n = statements::cql_limit(limit);
        let rows: Vec<DeadLetterCql> = match after {
            None => {
                self.rows(what, &self.prepared[Stmt::ScanDeadLettersFirst], (n,))
                    .await?
            }
            Some(a) => {
                self.rows(what, &self.prepared[Stmt::ScanDeadLettersAfter], (a, n))
                    .await?
            }
        };
        // A partial row (see `DeadLetterCql::into_entry`) is skipped, so a page may come
        // back short, or empty, before the end: `next` follows the rows read, not the
        // entries kept.
        let read = rows.len();
        let last = rows.last().map(|r| r.payment_id);
        let mut out = Vec::with_capacity(read);
        for row in rows {
            let id = row.payment_id;
            match row.into_entry() {
                Some(e) => out.push(e),
                None => tracing::warn!(payment_id = id, "skipping a partial dlq_payments row"),
            }
        }
        Ok(Page::after_read(out, read, limit, last))
    }

    async fn delete_dead_letters(
        &self,
        resolved: &[ReplayedEntry],
    ) -> Result<Vec<i64>, StoreError> {
        let calls: Vec<_> = resolved.iter().map(|r| self.delete_one(r)).collect();
        let outcomes: Vec<Result<Option<i64>, StoreError>> = stream::iter(calls)
            .buffer_unordered(self.max_in_flight)
            .collect()
            .await;
        let mut removed = Vec::new();
        let results = outcomes
            .into_iter()
            .map(|o| o.map(|id| removed.extend(id)))
            .collect();
        decisions::first_error(results)?;
        Ok(removed)
    }

    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError> {
        // A payment named twice is bumped twice, one after the other (read-modify-write).
        let groups = decisions::group_by_key(payment_ids, |id| *id);
        self.all_ok(
            groups
                .into_iter()
                .map(|group| async move {
                    for id in group {
                        self.bump_attempts(*id).await?;
                    }
                    Ok(())
                })
                .collect(),
        )
        .await
    }

    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        // Looked up before written: the same message twice in one call goes in order.
        let groups = decisions::group_by_key(entries, |m| (m.source, m.message_id.clone()));
        self.all_ok(
            groups
                .into_iter()
                .map(|group| async move {
                    for m in group {
                        self.put_invalid_one(m).await?;
                    }
                    Ok(())
                })
                .collect(),
        )
        .await
    }

    async fn scan_invalid(
        &self,
        after: Option<(StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        // Partition by partition: a source that runs out before `limit` hands on to the
        // next; the page is complete only once the last source ran out.
        let mut out = Vec::new();
        for (source, from) in decisions::invalid_scan(after.as_ref()) {
            if out.len() >= limit {
                break;
            }
            let page = self
                .scan_invalid_source(source, from, limit - out.len())
                .await?;
            out.extend(page);
        }
        Ok(Page::of_rows(out, limit, |m| {
            (m.source, m.message_id.clone())
        }))
    }
}
