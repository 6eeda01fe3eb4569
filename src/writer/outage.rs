//! Holding rows through a store outage: the store refuses every write (disk full, files
//! read-only, database locked, cluster unavailable), so the rows stay with the writer, their
//! deliveries unanswered (a Pub/Sub client extends their leases), and are tried again with
//! capped exponential backoff until the store takes them or shutdown begins.
//!
//! Owns: the hold-and-retry loop and its use of the [`StoreGate`](super::gate::StoreGate)
//! (closed while rows are held, which pauses the intake). Must never: nack a held row
//! before shutdown (a nack is an immediate redelivery: the storm this exists to prevent),
//! log per retry, or keep a row whose failure is its own (it goes the poison way).

use super::{attempt, RowWithAck, WriteContext};
use crate::ack::NackReason;
use crate::retry;
use crate::rng::SplitMix64;
use crate::store::{FactWrite, StoreError};
use crate::telemetry::Stats;

/// Holds `rows` (which the store refused with `error`, retriably, as a whole) until they are
/// written, fail on their own, or shutdown begins.
pub(super) async fn hold_until_written(
    ctx: &WriteContext,
    rows: Vec<RowWithAck>,
    error: StoreError,
) {
    let guard = ctx.gate.hold(rows.len(), &error);
    let mut rows = rows;
    // Held for as long as the outage lasts: their text must not keep the buffers it was
    // decoded from alive meanwhile.
    for row in &mut rows {
        row.write.detach();
    }
    let mut rng = SplitMix64::from_entropy();
    let mut attempt = 1u32;
    while !rows.is_empty() {
        let wait = retry::backoff_from_half(&ctx.retry, attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            biased;
            _ = ctx.gate.shut_wait() => {
                guard.nacked(rows.len() as u64);
                Stats::add(&ctx.stats.write_failures, rows.len() as u64);
                rows.into_iter()
                    .map(|r| r.ack)
                    .for_each(|a| a.nack(NackReason::Shutdown));
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        Stats::incr(&ctx.stats.write_retries);
        let writes: Vec<FactWrite> = rows.iter().map(|r| r.write.clone()).collect();
        let results = attempt::once(ctx, &writes).await;
        let refused = super::answer(ctx, rows.into_iter().zip(results)).await;
        guard.written(refused.written);
        rows = refused.rows;
    }
    drop(guard);
}
