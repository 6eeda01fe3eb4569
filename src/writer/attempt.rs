//! One write of a batch of rows, with the retry policy: what the store said for each row.
//!
//! Owns: the retry loops around the store (whole batches for stores that write a batch as
//! one transaction, failed rows only for stores whose rows are independent requests), the
//! row-by-row split that isolates a failing row, and the store-health and success counts
//! of every call. Must never: answer a row (the caller does, from the outcomes), or retry
//! without a bound.

use super::WriteContext;
use crate::retry::{self, Retriable};
use crate::rng::SplitMix64;
use crate::store::{FactWrite, StoreError};
use crate::telemetry::{Stats, StoreOp};
use std::sync::atomic::Ordering;

/// Writes `writes` with the retry policy and returns one outcome per row, in order.
///
/// A store that writes batches as a unit gets the batch with retries; if that fails, each
/// row is written once on its own, so one bad row does not fail a thousand good ones, and
/// a store that refuses everything shows as every row failing retriably.
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
        Err(e) if writes.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(rows = writes.len(), error = %e.chain(), "batch write failed; writing its rows one by one to tell an outage from failing rows");
            // After a retriable failure, a few rows in a row refused the same way mean the
            // store is out: trying the other thousand (each waiting out a busy timeout)
            // would only delay the hold.
            let probe = if e.is_retriable() {
                OUTAGE_PROBE_ROWS
            } else {
                usize::MAX
            };
            row_by_row(ctx, writes, probe).await
        }
    }
}

/// Rows tried one by one after a batch failed retriably: if these all fail retriably and
/// none succeeds, the rest are not tried (see [`with_policy`]).
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
        Err(e) if e.is_retriable() || writes.len() == 1 => {
            let mut out = vec![Err(e)];
            while out.len() < writes.len() {
                let again = out[0].as_ref().err().map(same_kind);
                out.push(Err(
                    again.unwrap_or_else(|| StoreError::unavailable("write facts"))
                ));
            }
            out
        }
        Err(_) => row_by_row(ctx, writes, usize::MAX).await,
    }
}

/// Each row once, on its own; once the first `probe` rows have all failed retriably, the
/// others are not tried and get the same (retriable) error.
async fn row_by_row(
    ctx: &WriteContext,
    writes: &[FactWrite],
    probe: usize,
) -> Vec<Result<(), StoreError>> {
    let mut out: Vec<Result<(), StoreError>> = Vec::with_capacity(writes.len());
    for write in writes {
        let refused = out.len() >= probe
            && out
                .iter()
                .all(|r| r.as_ref().is_err_and(Retriable::is_retriable));
        if refused {
            let again = out.last().and_then(|r| r.as_ref().err()).map(same_kind);
            out.push(Err(
                again.unwrap_or_else(|| StoreError::unavailable("write facts"))
            ));
            continue;
        }
        let result = ctx.store.write_facts(std::slice::from_ref(write)).await;
        record(ctx, std::slice::from_ref(&result));
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

/// The store's health (for `/readyz`) and this writer's success count, from outcomes.
fn record(ctx: &WriteContext, results: &[Result<(), StoreError>]) {
    if results.iter().any(Result::is_ok) {
        ctx.successes.fetch_add(1, Ordering::Relaxed);
        ctx.stats
            .on_store_result::<(), String>(StoreOp::Write, &Ok(()));
    } else if let Some(Err(e)) = results.first() {
        ctx.stats
            .on_store_result::<(), _>(StoreOp::Write, &Err(e.chain()));
    }
}

/// An error of the same kind saying the same (the store's error is not `Clone`): for the
/// other rows of a batch that failed as one.
fn same_kind(e: &StoreError) -> StoreError {
    if e.is_retriable() {
        StoreError::unavailable(e.chain())
    } else {
        StoreError::failed(e.chain())
    }
}

/// Counts one retry of one write.
fn count_retry(stats: &Stats) -> impl FnMut() + '_ {
    || Stats::incr(&stats.write_retries)
}
