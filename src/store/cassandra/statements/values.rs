//! Bound values of the Cassandra statements, in the order of the `?` markers of
//! [`super::STATEMENTS`], and the conversions between the store's µs and CQL's ms.
//!
//! Owns: the order of bound values. Must never: format a value into CQL text.

use crate::model::{Order, Payment};
use crate::store::{DlqEntry, InvalidMessage};
use scylla::value::CqlTimestamp;

pub type OrderValues<'a> = (i64, i64, &'a str, i64, f64, &'a str, &'a str, &'a str, i64);

pub fn order_values(o: &Order, ts: i64) -> OrderValues<'_> {
    (
        o.order_id,
        o.customer_id,
        &o.item,
        o.quantity,
        o.price,
        &o.shipping_address,
        &o.order_status,
        &o.creation_date,
        ts,
    )
}

pub type PaymentValues<'a> = (i64, i64, &'a str, &'a str, &'a str, &'a str, i64);

pub fn payment_values(p: &Payment, ts: i64) -> PaymentValues<'_> {
    (
        p.order_id,
        p.payment_id,
        &p.payment_method,
        &p.card_last_four,
        &p.payment_status,
        &p.payment_datetime,
        ts,
    )
}

pub type DeadLetterValues<'a> = (
    i64,
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    CqlTimestamp,
    i32,
    i64,
);

/// The whole entry; `first_seen` and `attempts` are the ones to keep (see
/// `put_dead_letters`), the timestamp is the payment's publish time.
pub fn dead_letter_values(e: &DlqEntry, first_seen: i64, attempts: i32) -> DeadLetterValues<'_> {
    let p = &e.payment;
    (
        p.payment_id,
        p.order_id,
        &p.payment_method,
        &p.card_last_four,
        &p.payment_status,
        &p.payment_datetime,
        &e.reason,
        micros_to_cql(first_seen),
        attempts,
        e.event_ts,
    )
}

pub type InvalidValues<'a> = (&'a str, &'a str, &'a [u8], &'a str, CqlTimestamp);

pub fn invalid_values(m: &InvalidMessage) -> InvalidValues<'_> {
    (
        m.source.as_str(),
        &m.message_id,
        &m.payload[..],
        &m.error,
        micros_to_cql(m.received_at),
    )
}

/// A scan's `LIMIT`, which CQL takes as an `int`.
pub fn cql_limit(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

/// µs since the epoch → CQL `timestamp` (ms), rounding down (also before 1970).
pub fn micros_to_cql(micros: i64) -> CqlTimestamp {
    CqlTimestamp(micros.div_euclid(1000))
}

/// CQL `timestamp` (ms) → µs since the epoch.
pub fn cql_to_micros(t: CqlTimestamp) -> i64 {
    t.0.saturating_mul(1000)
}
