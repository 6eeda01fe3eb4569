//! The DLQ topic (`dlq_payments_data`, design §2, §4.3): the Pub/Sub half of the dead-letter
//! queue, behind the [`DlqPublisher`] seam.
//!
//! Owns: what a dead letter looks like on the topic. An unmatched payment is its payment JSON
//! with attributes `reason=order_not_found`, `payment_id`, `order_id`; an invalid message is
//! its original payload, untouched, with `reason=invalid_payload`, `source`, `error` and
//! `message_id`. Must never: report success before the service has confirmed every message
//! of the call (the `DeadLetter` actor acks the originals on that success).

use crate::dlq::{reason_of_invalid, DlqPublisher, PublishError, REASON_ORDER_NOT_FOUND};
use crate::pubsub::connect::{self, Batching, ConnectError};
use crate::pubsub::PubSubConfig;
use crate::store::{DlqEntry, InvalidMessage};
use async_trait::async_trait;
use google_cloud_pubsub::client::Publisher;
use google_cloud_pubsub::model::Message;
use std::collections::HashMap;

/// Pub/Sub limits an attribute value to 1,024 bytes; validation errors are far shorter, but
/// the bound is enforced here rather than trusted.
const MAX_ATTRIBUTE: usize = 1024;

/// Publishes dead letters to the DLQ topic.
#[derive(Debug, Clone)]
pub struct DlqTopic {
    publisher: Publisher,
}

impl DlqTopic {
    pub async fn connect(config: &PubSubConfig) -> Result<Self, ConnectError> {
        Ok(DlqTopic {
            publisher: connect::publisher(config, &config.dlq_topic, Batching::for_dlq()).await?,
        })
    }

    /// Publishes every message and waits for all confirmations; the first failure decides.
    async fn publish_all(&self, messages: Vec<Message>) -> Result<(), PublishError> {
        let futures: Vec<_> = messages
            .into_iter()
            .map(|m| self.publisher.publish(m))
            .collect();
        let mut first_error = None;
        for f in futures {
            if let Err(e) = f.await {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(classify(e)),
        }
    }
}

/// The publisher's error, kept whole (its line names the RPC's failure) with whether a
/// retry may help.
fn classify(e: google_cloud_pubsub::error::PublishError) -> PublishError {
    use google_cloud_pubsub::error::PublishError as E;
    let retriable = match &e {
        E::Rpc(inner) => connect::is_retriable(inner),
        // The client is shutting down: a retry of the same call cannot succeed.
        E::Shutdown => false,
        _ => true,
    };
    PublishError {
        retriable,
        source: Box::new(connect::ClientError::publish(e)),
    }
}

/// The topic message for an unmatched payment.
pub fn unmatched_message(entry: &DlqEntry) -> Message {
    let p = &entry.payment;
    // Serializing a struct of strings and integers cannot fail.
    let data = serde_json::to_vec(p).unwrap_or_default();
    Message::new().set_data(data).set_attributes(HashMap::from([
        ("reason".to_string(), REASON_ORDER_NOT_FOUND.to_string()),
        ("payment_id".to_string(), p.payment_id.to_string()),
        ("order_id".to_string(), p.order_id.to_string()),
    ]))
}

/// The topic message for an invalid message.
pub fn invalid_message(m: &InvalidMessage) -> Message {
    Message::new()
        .set_data(m.payload.clone())
        .set_attributes(HashMap::from([
            ("reason".to_string(), reason_of_invalid(m).to_string()),
            ("source".to_string(), m.source.as_str().to_string()),
            ("error".to_string(), truncate(&m.error, MAX_ATTRIBUTE)),
            (
                "message_id".to_string(),
                truncate(&m.message_id, MAX_ATTRIBUTE),
            ),
        ]))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[async_trait]
impl DlqPublisher for DlqTopic {
    async fn publish_unmatched(&self, entries: &[DlqEntry]) -> Result<(), PublishError> {
        self.publish_all(entries.iter().map(unmatched_message).collect())
            .await
    }

    async fn publish_invalid(&self, messages: &[InvalidMessage]) -> Result<(), PublishError> {
        self.publish_all(messages.iter().map(invalid_message).collect())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Payment, StreamKind};

    #[test]
    fn dead_letters_carry_their_reason_as_attributes() {
        let entry = DlqEntry {
            payment: Payment {
                payment_id: 1_000_081,
                order_id: 81,
                payment_method: "PayPal".into(),
                card_last_four: "1234".into(),
                payment_status: "Completed".into(),
                payment_datetime: "2024-05-01 13:45:10".into(),
            },
            reason: REASON_ORDER_NOT_FOUND.into(),
            first_seen: 0,
            attempts: 0,
            event_ts: 0,
        };
        let m = unmatched_message(&entry);
        assert_eq!(m.attributes["reason"], "order_not_found");
        assert_eq!(m.attributes["order_id"], "81");
        let back: Payment = serde_json::from_slice(&m.data).expect("payment JSON");
        assert_eq!(back, entry.payment);

        let invalid = InvalidMessage {
            source: StreamKind::Orders,
            message_id: "m1".into(),
            payload: bytes::Bytes::from_static(b"\xff not json"),
            error: "é".repeat(600),
            received_at: 0,
        };
        let m = invalid_message(&invalid);
        assert_eq!(m.attributes["reason"], "invalid_payload");
        assert_eq!(m.attributes["source"], "orders");
        assert!(m.attributes["error"].len() <= MAX_ATTRIBUTE);
        assert_eq!(&m.data[..], b"\xff not json");

        let refused = InvalidMessage {
            error: "write_failed: store failure: write_facts: constraint".into(),
            ..invalid
        };
        assert_eq!(
            invalid_message(&refused).attributes["reason"],
            "write_failed"
        );
    }
}
