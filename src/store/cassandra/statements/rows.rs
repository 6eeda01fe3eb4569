//! Result rows of the Cassandra statements, matched to the selected columns by name, and
//! their decoding into the store's types.
//!
//! Owns: the decoding. Must never: panic on a row (a partial or unknown one is an
//! `Option` or an error).

use super::cql_to_micros;
use crate::model::{Payment, StreamKind};
use crate::store::{DlqEntry, FactRow, InvalidMessage, StampedFact};
use scylla::value::CqlTimestamp;

/// A row of `select_fact` / `scan_facts_*`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct FactCql {
    pub order_id: i64,
    pub customer_id: Option<i64>,
    pub item: Option<String>,
    pub quantity: Option<i64>,
    pub price: Option<f64>,
    pub shipping_address: Option<String>,
    pub order_status: Option<String>,
    pub creation_date: Option<String>,
    pub payment_id: Option<i64>,
    pub payment_method: Option<String>,
    pub card_last_four: Option<String>,
    pub payment_status: Option<String>,
    pub payment_datetime: Option<String>,
}

impl From<FactCql> for FactRow {
    fn from(r: FactCql) -> Self {
        FactRow {
            order_id: r.order_id,
            customer_id: r.customer_id,
            item: r.item,
            quantity: r.quantity,
            price: r.price,
            shipping_address: r.shipping_address,
            order_status: r.order_status,
            creation_date: r.creation_date,
            payment_id: r.payment_id,
            payment_method: r.payment_method,
            card_last_four: r.card_last_four,
            payment_status: r.payment_status,
            payment_datetime: r.payment_datetime,
        }
    }
}

/// A row of `select_fact_stamped`: the fact columns and each group's `WRITETIME` (µs,
/// `null` for a group never written).
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct FactStampedCql {
    pub order_id: i64,
    pub customer_id: Option<i64>,
    pub item: Option<String>,
    pub quantity: Option<i64>,
    pub price: Option<f64>,
    pub shipping_address: Option<String>,
    pub order_status: Option<String>,
    pub creation_date: Option<String>,
    pub payment_id: Option<i64>,
    pub payment_method: Option<String>,
    pub card_last_four: Option<String>,
    pub payment_status: Option<String>,
    pub payment_datetime: Option<String>,
    pub order_ts: Option<i64>,
    pub payment_ts: Option<i64>,
}

impl From<FactStampedCql> for StampedFact {
    fn from(r: FactStampedCql) -> Self {
        let row = FactRow::from(FactCql {
            order_id: r.order_id,
            customer_id: r.customer_id,
            item: r.item,
            quantity: r.quantity,
            price: r.price,
            shipping_address: r.shipping_address,
            order_status: r.order_status,
            creation_date: r.creation_date,
            payment_id: r.payment_id,
            payment_method: r.payment_method,
            card_last_four: r.card_last_four,
            payment_status: r.payment_status,
            payment_datetime: r.payment_datetime,
        });
        StampedFact {
            row,
            order_ts: r.order_ts,
            payment_ts: r.payment_ts,
        }
    }
}

/// A row of `select_order_known`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct OrderKnownCql {
    pub customer_id: Option<i64>,
}

/// A row of `select_dead_letter_state`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct DeadLetterStateCql {
    pub first_seen: Option<CqlTimestamp>,
    pub attempts: Option<i32>,
    pub event_ts: Option<i64>,
}

/// A row of `select_attempts`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct AttemptsCql {
    pub attempts: Option<i32>,
    pub attempts_ts: Option<i64>,
}

/// A row of `scan_dead_letters_*`. Every column is optional on the wire (CQL has no NOT
/// NULL); [`DeadLetterCql::into_entry`] refuses a row missing one instead of inventing it.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct DeadLetterCql {
    pub payment_id: i64,
    pub order_id: Option<i64>,
    pub payment_method: Option<String>,
    pub card_last_four: Option<String>,
    pub payment_status: Option<String>,
    pub payment_datetime: Option<String>,
    pub reason: Option<String>,
    pub first_seen: Option<CqlTimestamp>,
    pub attempts: Option<i32>,
    pub event_ts: Option<i64>,
}

impl DeadLetterCql {
    /// The entry, or `None` for a partial row. Only a write outside this program (or a
    /// delete racing a re-insert of the same payment at an older timestamp) leaves one.
    pub fn into_entry(self) -> Option<DlqEntry> {
        Some(DlqEntry {
            payment: Payment {
                payment_id: self.payment_id,
                order_id: self.order_id?,
                payment_method: self.payment_method?.into(),
                card_last_four: self.card_last_four?.into(),
                payment_status: self.payment_status?.into(),
                payment_datetime: self.payment_datetime?.into(),
            },
            reason: self.reason?,
            first_seen: cql_to_micros(self.first_seen?),
            attempts: self.attempts.unwrap_or(0),
            event_ts: self.event_ts?,
        })
    }
}

/// A row of `select_invalid_exists`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct InvalidExistsCql {
    pub message_id: String,
}

/// A row of `scan_invalid_*`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct InvalidCql {
    pub source: String,
    pub message_id: String,
    pub payload: Option<Vec<u8>>,
    pub error: Option<String>,
    pub received_at: Option<CqlTimestamp>,
}

impl InvalidCql {
    pub fn into_message(self) -> Result<InvalidMessage, String> {
        Ok(InvalidMessage {
            source: self.source.parse::<StreamKind>()?,
            message_id: self.message_id,
            payload: bytes::Bytes::from(self.payload.unwrap_or_default()),
            error: self.error.unwrap_or_default(),
            received_at: self.received_at.map(cql_to_micros).unwrap_or(0),
        })
    }
}
