//! Rows whose write fails on their own (the store rejects the row, not the traffic): each
//! failure is counted per row across its deliveries, the delivery is nacked so the source
//! tries again, and once the bound is reached the row is dead-lettered as `write_failed`
//! and its message acked, so that no row can loop through the pipeline forever.
//!
//! Owns: the bounded per-row failure count and the hand-over to the dead-letter actor.
//! Must never: ack a row before its dead letter is durable (the dead-letter actor acks),
//! or grow without bound (the count is a bounded cache: a forgotten count only means a few
//! more tries).

use super::{RowWithAck, WriteContext};
use crate::ack::NackReason;
use crate::clock::now_micros;
use crate::dlq::dead_letter::{InvalidRecord, RecordInvalid};
use crate::dlq::REASON_WRITE_FAILED;
use crate::model::StreamKind;
use crate::store::{FactWrite, InvalidMessage, StoreError};
use crate::telemetry::{ActorKind, Stats};
use std::time::Duration;

/// Rows whose failures are remembered at once: far more than a writer holds, so only a
/// flood of distinct failing rows forgets counts (each then gets a few more tries).
const REMEMBERED_ROWS: u64 = 100_000;
/// A row not seen failing for this long starts counting again.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Failed writes per row, keyed by the row's message.
pub(super) struct FailureCounts(moka::sync::Cache<(StreamKind, String), u32>);

impl FailureCounts {
    pub(super) fn new() -> Self {
        FailureCounts(
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_ROWS)
                .time_to_idle(FORGET_AFTER)
                .build(),
        )
    }

    /// Counts one more failure of `key`; returns the count, this one included.
    fn bump(&self, key: (StreamKind, String)) -> u32 {
        let entry = self
            .0
            .entry(key)
            .and_upsert_with(|old| old.map_or(1, |e| e.into_value().saturating_add(1)));
        entry.into_value()
    }

    fn forget(&self, key: &(StreamKind, String)) {
        self.0.invalidate(key);
    }
}

/// The stream and message id of the row's delivery (a made-up id when the source gave
/// none: tests and replays).
fn identity(row: &RowWithAck) -> (StreamKind, String) {
    let (source, id, ts) = match &row.write {
        FactWrite::Order { order, ts } => (StreamKind::Orders, order.order_id, *ts),
        FactWrite::Payment { payment, ts } => (StreamKind::Payments, payment.payment_id, *ts),
    };
    let message_id = row
        .ack
        .origin()
        .map(|o| o.message_id.clone())
        .unwrap_or_else(|| format!("{}-{id}@{ts}", source.as_str()));
    (source, message_id)
}

/// The record as it came in on the wire (JSON), for `invalid_messages` and the DLQ topic.
fn wire_json(write: &FactWrite) -> bytes::Bytes {
    // Serializing a struct of strings and numbers cannot fail.
    let json = match write {
        FactWrite::Order { order, .. } => serde_json::to_vec(order),
        FactWrite::Payment { payment, .. } => serde_json::to_vec(payment),
    };
    json.unwrap_or_default().into()
}

/// One failed write of `row` (not an outage). Nacks it for another try, or, at the bound,
/// hands it to the dead-letter actor, which acks it once recorded.
pub(super) async fn row_failed(ctx: &WriteContext, row: RowWithAck, error: StoreError) {
    Stats::incr(&ctx.stats.write_failures);
    let key = identity(&row);
    let counted = ctx.failures.bump(key.clone());
    let delivered = row
        .ack
        .origin()
        .and_then(|o| o.delivery_attempt)
        .unwrap_or(0);
    let attempts = counted.max(delivered);
    let max = ctx.max_write_attempts;
    let Some(dead_letter) = ctx.dead_letter.as_ref().filter(|_| attempts >= max) else {
        tracing::warn!(
            order_id = row.write.order_id(),
            message_id = %key.1,
            attempts,
            max_write_attempts = max,
            error = %error.chain(),
            "row write failed; nacking its message for another try"
        );
        return row.ack.nack(NackReason::WriteFailed);
    };
    tracing::error!(
        order_id = row.write.order_id(),
        message_id = %key.1,
        attempts,
        error = %error.chain(),
        "row write failed {attempts} times; dead-lettering it as {REASON_WRITE_FAILED}"
    );
    let record = InvalidRecord {
        message: InvalidMessage {
            source: key.0,
            message_id: key.1.clone(),
            payload: wire_json(&row.write),
            error: format!("{REASON_WRITE_FAILED}: {}", error.chain()),
            received_at: now_micros(),
        },
        ack: row.ack,
    };
    Stats::incr(&ctx.stats.write_dead_lettered);
    let sent = ctx
        .stats
        .mailbox(
            ActorKind::DeadLetter,
            dead_letter.send(RecordInvalid(vec![record])),
        )
        .await;
    match sent {
        // The count starts again if the dead letter fails and the row comes back.
        Ok(()) => ctx.failures.forget(&key),
        Err(e) => tracing::error!(error = %e, "dead-letter actor unavailable; row nacked"),
    }
}
