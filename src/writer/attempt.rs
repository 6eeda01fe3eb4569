//! One write of a batch of rows, with the retry policy: what the store said for each row.
//!
//! Owns: the retry loops around the store (whole batches for stores that write a batch as
//! one transaction, failed rows only for stores whose rows are independent requests), the
//! row-by-row split that isolates a row failing on its own, and the store-health and
//! success counts of every call. Must never: answer a row (the caller does, from the
//! outcomes), retry without a bound, split a batch the store refused (a retriable error is
//! the store's state, not a row's), or build an error from another copy of it (the text
//! would grow with the batch).

use super::WriteContext;
use crate::retry::{self, Retriable};
use crate::rng::SplitMix64;
use crate::store::{FactWrite, StoreError};
use crate::telemetry::{Stats, StoreOp};

/// Writes `writes` with the retry policy and returns one outcome per row, in order.
///
/// A store that writes batches as a unit gets the batch with retries. If the store refused
/// it (a retriable error), every row is refused with that error: the caller holds them.
/// If it failed for good, each row is written once on its own, so one bad row does not
/// fail a thousand good ones.
pub(super) async fn with_policy(
    ctx: &WriteContext,
    writes: &[FactWrite],
) -> Vec<Result<(), StoreError>> {
    if let Some(first) = ctx.store.write_facts_per_row(writes).await {
        let first = pad(first, writes.len());
        record(ctx, &first);
        return retry_failed_rows(ctx, writes, first).await;
    }
    let result = retry::with_retries(&ctx.retry, "write facts", count_retry(&ctx.stats), || {
        ctx.store.write_facts(writes)
    })
    .await;
    record(ctx, std::slice::from_ref(&result));
    match result {
        Ok(()) => writes.iter().map(|_| Ok(())).collect(),
        // A retriable error is the store's state (busy, locked, full, read-only,
        // unavailable), never one row's: every row of the batch is refused with it, and
        // writing them one by one could only wait out the same refusal a thousand times.
        Err(e) if e.is_retriable() || writes.len() == 1 => refused_as_one(e, writes.len()),
        Err(e) => {
            tracing::warn!(rows = writes.len(), error = %e.chain(), "batch write failed; writing its rows one by one to find the rows that fail on their own");
            row_by_row(ctx, writes).await
        }
    }
}

/// Rows in a row refused retriably while a failed batch is split: the store went out
/// meanwhile, and the rest are not tried (each would only wait out a busy timeout).
const OUTAGE_PROBE_ROWS: usize = 3;

/// Writes `writes` once, without retries: one try of rows held through an outage. A batch
/// that fails for good is split row by row (the store is back, a row is bad); one that
/// fails retriably is not (the store is still out: one call per wait is enough).
pub(super) async fn once(ctx: &WriteContext, writes: &[FactWrite]) -> Vec<Result<(), StoreError>> {
    if let Some(results) = ctx.store.write_facts_per_row(writes).await {
        let results = pad(results, writes.len());
        record(ctx, &results);
        return results;
    }
    let result = ctx.store.write_facts(writes).await;
    record(ctx, std::slice::from_ref(&result));
    match result {
        Ok(()) => writes.iter().map(|_| Ok(())).collect(),
        Err(e) if e.is_retriable() || writes.len() == 1 => refused_as_one(e, writes.len()),
        Err(_) => row_by_row(ctx, writes).await,
    }
}

/// `rows` outcomes for a batch the store refused as a whole with `cause`: the first row
/// gets `cause` itself, the others a [`Refusal`] of it.
fn refused_as_one(cause: StoreError, rows: usize) -> Vec<Result<(), StoreError>> {
    let mut out = Vec::with_capacity(rows);
    let copy = Refusal::of(&cause);
    out.push(Err(cause));
    out.extend((1..rows).map(|_| Err(copy.error())));
    out
}

/// Each row once, on its own; once [`OUTAGE_PROBE_ROWS`] rows in a row have failed
/// retriably, the others are not tried and are refused with the first of those errors.
async fn row_by_row(ctx: &WriteContext, writes: &[FactWrite]) -> Vec<Result<(), StoreError>> {
    let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(writes.len());
    // The current run of retriable refusals: its length and its first error.
    let mut run: Option<(usize, Refusal)> = None;
    for write in writes {
        if let Some((_, first)) = run.as_ref().filter(|(n, _)| *n >= OUTAGE_PROBE_ROWS) {
            out.push(Err(first.error()));
            continue;
        }
        let result = ctx.store.write_facts(std::slice::from_ref(write)).await;
        record(ctx, std::slice::from_ref(&result));
        run = match (&result, run.take()) {
            (Err(e), Some((n, first))) if e.is_retriable() => Some((n + 1, first)),
            (Err(e), None) if e.is_retriable() => Some((1, Refusal::of(e))),
            _ => None,
        };
        out.push(result);
    }
    out
}

/// Retries, through a per-row store, the rows whose first try failed retriably: each round
/// rewrites only the rows still failing retriably, after a backoff with full jitter, until
/// every row succeeded, failed for good, or was tried `retry.max_attempts` times. Each row
/// counts its own attempts (rows are independent requests), and a row that succeeded is
/// never written again.
async fn retry_failed_rows(
    ctx: &WriteContext,
    writes: &[FactWrite],
    first: Vec<Result<(), StoreError>>,
) -> Vec<Result<(), StoreError>> {
    let mut results = first;
    let mut rng = SplitMix64::from_entropy();
    for attempt in 1..ctx.retry.max_attempts {
        let again: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_ref().is_err_and(Retriable::is_retriable))
            .map(|(i, _)| i)
            .collect();
        if again.is_empty() {
            break;
        }
        let wait = retry::backoff(&ctx.retry, attempt, &mut rng);
        tracing::debug!(
            rows = again.len(),
            attempt,
            first_order_id = writes[again[0]].order_id(),
            wait_ms = wait.as_millis() as u64,
            "retrying failed rows"
        );
        Stats::add(&ctx.stats.write_retries, again.len() as u64);
        tokio::time::sleep(wait).await;
        let rows: Vec<FactWrite> = again.iter().map(|&i| writes[i].clone()).collect();
        let outcomes = ctx
            .store
            .write_facts_per_row(&rows)
            .await
            .unwrap_or_default();
        let outcomes = pad(outcomes, rows.len());
        record(ctx, &outcomes);
        for (i, outcome) in again.into_iter().zip(outcomes) {
            results[i] = outcome;
        }
    }
    results
}

/// Exactly `n` outcomes: a store that answered fewer rows than it was given must not get
/// the others acked; they count as failed retriably (tried again, then held or nacked).
fn pad(mut results: Vec<Result<(), StoreError>>, n: usize) -> Vec<Result<(), StoreError>> {
    results.truncate(n);
    while results.len() < n {
        results.push(Err(StoreError::unavailable(
            "write facts: the store returned no outcome for this row",
        )));
    }
    results
}

/// The store's health (for `/readyz`), from outcomes. Only
/// a refusal (a retriable error) says the store is down: a row that fails on its own (a
/// trigger, a constraint) says nothing about the store, so it must not flip `/readyz`.
fn record(ctx: &WriteContext, results: &[Result<(), StoreError>]) {
    if results.iter().any(Result::is_ok) {
        ctx.stats
            .on_store_result::<(), String>(StoreOp::Write, &Ok(()));
    } else if let Some(Err(e)) = results
        .iter()
        .find(|r| r.as_ref().is_err_and(StoreError::is_retriable))
    {
        ctx.stats
            .on_store_result::<(), _>(StoreOp::Write, &Err(e.chain()));
    }
}

/// The error of a row that was not written on its own because the store refused a call
/// for it (its whole batch, or the rows before it) with `cause`. The store's error is not
/// `Clone`, so this keeps its kind and text; it is always made from the store's own error,
/// never from another refusal, so its text cannot grow with the batch (capped besides,
/// since a line of log must never grow with a batch).
struct Refusal {
    retriable: bool,
    text: String,
}

/// The most bytes of a store error a [`Refusal`] repeats.
const REFUSAL_TEXT_MAX: usize = 300;

impl Refusal {
    fn of(cause: &StoreError) -> Self {
        let mut text = format!("not written: its batch was refused: {}", cause.chain());
        if text.len() > REFUSAL_TEXT_MAX {
            let mut end = REFUSAL_TEXT_MAX;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        Refusal {
            retriable: cause.is_retriable(),
            text,
        }
    }

    fn error(&self) -> StoreError {
        if self.retriable {
            StoreError::unavailable(self.text.clone())
        } else {
            StoreError::failed(self.text.clone())
        }
    }
}

/// Counts one retry of one write.
fn count_retry(stats: &Stats) -> impl FnMut() + '_ {
    || Stats::incr(&stats.write_retries)
}
