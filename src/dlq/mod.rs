//! The dead-letter queue: unmatched payments, invalid messages and rows the store kept
//! rejecting (design §2, §3, §4.3, §4.9).
//!
//! Owns: the [`DeadLetter`](dead_letter::DeadLetter) actor that records them durably, the
//! [`DlqPublisher`] seam and its Pub/Sub implementation, [`topic`], and [`replay`]. Must never: ack a payment before
//! both its DLQ table row and (where a topic is configured) its DLQ topic message exist.

pub mod dead_letter;
pub mod replay;
pub mod topic;

use crate::store::{DlqEntry, InvalidMessage};
use async_trait::async_trait;

/// `reason` of a payment whose order never arrived within its hold time.
pub const REASON_ORDER_NOT_FOUND: &str = "order_not_found";
/// `reason` of a message that failed validation.
pub const REASON_INVALID_PAYLOAD: &str = "invalid_payload";
/// `reason` of a valid message whose row the store kept rejecting (`--max-write-attempts`
/// failed writes). Its `invalid_messages` error reads `write_failed: <the store's error>`.
pub const REASON_WRITE_FAILED: &str = "write_failed";

/// The `reason` of an `invalid_messages` record: `write_failed` when its error says so
/// (the fact writer writes it that way), `invalid_payload` otherwise.
pub fn reason_of_invalid(message: &InvalidMessage) -> &'static str {
    let write_failed = message
        .error
        .strip_prefix(REASON_WRITE_FAILED)
        .is_some_and(|rest| rest.starts_with(':'));
    if write_failed {
        REASON_WRITE_FAILED
    } else {
        REASON_INVALID_PAYLOAD
    }
}

/// Why a DLQ topic publish failed: the publisher's error is the source, so `{:#}` (or
/// [`crate::retry::chain`]) prints the cause.
#[derive(Debug, thiserror::Error)]
#[error("publishing to the DLQ topic")]
pub struct PublishError {
    /// Whether publishing the same records again may succeed.
    pub retriable: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl crate::retry::Retriable for PublishError {
    fn is_retriable(&self) -> bool {
        self.retriable
    }
}

/// Publishes dead letters to the DLQ topic (`dlq_payments_data`), with `reason` (and, for
/// invalid messages, `source` and `error`) as attributes.
#[async_trait]
pub trait DlqPublisher: Send + Sync + 'static {
    async fn publish_unmatched(&self, entries: &[DlqEntry]) -> Result<(), PublishError>;
    async fn publish_invalid(&self, messages: &[InvalidMessage]) -> Result<(), PublishError>;
}

/// For runs without Pub/Sub (`demo`, tests): the DLQ table is the whole DLQ.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableOnly;

#[async_trait]
impl DlqPublisher for TableOnly {
    async fn publish_unmatched(&self, _: &[DlqEntry]) -> Result<(), PublishError> {
        Ok(())
    }
    async fn publish_invalid(&self, _: &[InvalidMessage]) -> Result<(), PublishError> {
        Ok(())
    }
}
