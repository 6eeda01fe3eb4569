//! What the commands print: the demo's and the run's summaries, `config`'s settings, and
//! the records of `query` and `dlq list` (their fields and CSV headers; `export` writes
//! them as JSON lines or CSV).
//!
//! Owns: output formats. Must never: read the store beyond the page it is handed, or hold a
//! whole table in memory.

use super::settings::Resolved;
use crate::app::{DemoReport, RunReport};
use crate::store::{DlqEntry, InvalidMessage};
use base64::Engine as _;
use serde::Serialize;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub(super) fn write_summary(
    out: &mut impl Write,
    r: &DemoReport,
    store: &str,
) -> std::io::Result<()> {
    let s = &r.stats;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "ecom-stream demo{}",
        if r.interrupted {
            " (interrupted: partial)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  messages generated     {:>10}  ({} deliveries, {} acked, {} redelivered)",
        r.messages, r.source.delivered, r.source.acked, r.source.nacked
    )?;
    writeln!(out, "  orders upserted        {:>10}", s.orders_upserted)?;
    writeln!(
        out,
        "  payments joined        {:>10}  (order already known)",
        s.payments_joined
    )?;
    writeln!(
        out,
        "  held, then joined      {:>10}  (arrived before their order)",
        s.payments_joined_after_hold
    )?;
    writeln!(
        out,
        "  dead-lettered          {:>10}  (order not found after the hold; buffer full: {} held spilled early)",
        s.dead_lettered, s.spilled_early
    )?;
    writeln!(
        out,
        "  replayed from the DLQ  {:>10}  ({} still unmatched)",
        r.replay.replayed, r.replay.unmatched
    )?;
    writeln!(
        out,
        "  invalid payloads       {:>10}  (recorded with their reason)",
        s.invalid
    )?;
    writeln!(
        out,
        "  duplicates seen        {:>10}  (of effects already durable or held)",
        s.duplicates
    )?;
    writeln!(
        out,
        "  store writes           {:>10}  ({} retried, {} failed)",
        s.writer_batches, s.write_retries, s.write_failures
    )?;
    writeln!(out, "  elapsed                {:>9.2}s  ({:.0} msg/s, including the hold of unmatched payments)", secs, r.source.delivered as f64 / secs)?;
    writeln!(out, "  store                  {store}")?;
    if r.store_was_empty {
        writeln!(
            out,
            "expected afterwards: `query facts` {} rows, `dlq list` {} entries",
            r.expected_rows, r.expected_dlq
        )
    } else {
        // The counts a fresh store would show say nothing about one with earlier rows.
        writeln!(
            out,
            "the store was not empty before this run: `query facts` and `dlq list` show its \
             earlier rows too (a fresh store, another --data-dir or keyspace, gives exactly {} rows and {} entries)",
            r.expected_rows, r.expected_dlq
        )
    }
}

pub(super) fn write_run_summary(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    let s = &r.stats;
    writeln!(
        out,
        "ecom-stream run (ended by {}{})",
        r.ended_by,
        if r.drained {
            ""
        } else {
            "; drain hit the deadline"
        }
    )?;
    for (name, c) in [("orders", &r.orders), ("payments", &r.payments)] {
        writeln!(
            out,
            "  {name:<9} delivered {:>10}  acked {:>10}  nacked {:>8}  most outstanding {}",
            c.delivered, c.acked, c.nacked, c.outstanding_high_water
        )?;
    }
    writeln!(out, "  orders upserted        {:>10}", s.orders_upserted)?;
    writeln!(
        out,
        "  payments joined        {:>10}  ({} after a hold)",
        s.payments_joined + s.payments_joined_after_hold,
        s.payments_joined_after_hold
    )?;
    writeln!(
        out,
        "  dead-lettered          {:>10}  (DLQ table and topic)",
        s.dead_lettered
    )?;
    writeln!(out, "  invalid payloads       {:>10}", s.invalid)?;
    writeln!(out, "  duplicates seen        {:>10}", s.duplicates)?;
    writeln!(
        out,
        "  throughput             {:>10.0} msg/s over {:.2}s busy",
        r.per_second, r.busy_s
    )
}

/// `config`: one JSON line per setting, in the table's order.
pub(super) fn print_config(resolved: &Resolved) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for row in resolved.rows() {
        match writeln!(out, "{}", serde_json::to_string(&row)?) {
            // A closed stdout (`| head`) ends the listing quietly, as `query facts` does.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            r => r?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CSV header of `query facts`: the columns of `orders_payments_facts` in schema order
/// (design §3), as [`crate::store::FactRow`] serializes them. `ingest` reads these names.
pub(super) const FACT_HEADER: [&str; 13] = [
    "order_id",
    "customer_id",
    "item",
    "quantity",
    "price",
    "shipping_address",
    "order_status",
    "creation_date",
    "payment_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
];

/// The CSV header of `dlq list`: [`DlqLine`]'s fields.
pub(super) const DLQ_HEADER: [&str; 9] = [
    "payment_id",
    "order_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
    "reason",
    "first_seen",
    "attempts",
];

/// The CSV header of `dlq list --invalid`: [`InvalidLine`]'s fields.
pub(super) const INVALID_HEADER: [&str; 5] =
    ["source", "message_id", "payload", "error", "received_at"];

/// A `dlq list` line: the payment's columns, then the DLQ's own (design §3).
#[derive(Debug, Serialize)]
pub(super) struct DlqLine<'a> {
    payment_id: i64,
    order_id: i64,
    payment_method: &'a str,
    card_last_four: &'a str,
    payment_status: &'a str,
    payment_datetime: &'a str,
    reason: &'a str,
    first_seen: String,
    attempts: i32,
}

impl<'a> From<&'a DlqEntry> for DlqLine<'a> {
    fn from(e: &'a DlqEntry) -> Self {
        let p = &e.payment;
        DlqLine {
            payment_id: p.payment_id,
            order_id: p.order_id,
            payment_method: &p.payment_method,
            card_last_four: &p.card_last_four,
            payment_status: &p.payment_status,
            payment_datetime: &p.payment_datetime,
            reason: &e.reason,
            first_seen: rfc3339(e.first_seen),
            attempts: e.attempts,
        }
    }
}

/// A `dlq list --invalid` line. `payload` is base64, since a blob may be any bytes.
#[derive(Debug, Serialize)]
pub(super) struct InvalidLine<'a> {
    source: &'a str,
    message_id: &'a str,
    payload: String,
    error: &'a str,
    received_at: String,
}

impl<'a> From<&'a InvalidMessage> for InvalidLine<'a> {
    fn from(m: &'a InvalidMessage) -> Self {
        InvalidLine {
            source: m.source.as_str(),
            message_id: &m.message_id,
            payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
            error: &m.error,
            received_at: rfc3339(m.received_at),
        }
    }
}

/// A stored time as RFC 3339. Stores can hold times RFC 3339 cannot write (another tool may
/// have written `USING TIMESTAMP` in nanoseconds); those print as their µs instead of
/// failing the listing.
pub(super) fn rfc3339(micros: i64) -> String {
    use std::fmt::Write;
    let t = std::time::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_micros(t)) {
        Ok(()) => out,
        Err(_) => format!("{micros} µs since the epoch (after the year 9999)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Payment, StreamKind};
    use crate::store::FactRow;

    /// The header csv derives from a record's field names, for checking ours against.
    fn derived_header<T: Serialize>(record: &T) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(record).expect("serialize");
        let bytes = w.into_inner().expect("flush");
        let text = String::from_utf8(bytes).expect("utf-8");
        text.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn a_time_past_the_year_9999_prints_as_micros_instead_of_failing() {
        assert_eq!(
            rfc3339(1_714_571_110_000_000),
            "2024-05-01T13:45:10.000000Z"
        );
        assert_eq!(
            rfc3339(i64::MAX),
            format!("{} µs since the epoch (after the year 9999)", i64::MAX)
        );
    }

    #[test]
    fn the_csv_headers_are_the_records_field_names_in_order() {
        let row = FactRow {
            order_id: 1,
            customer_id: None,
            item: None,
            quantity: None,
            price: None,
            shipping_address: None,
            order_status: None,
            creation_date: None,
            payment_id: None,
            payment_method: None,
            card_last_four: None,
            payment_status: None,
            payment_datetime: None,
        };
        assert_eq!(derived_header(&row), FACT_HEADER.join(","));
        let entry = DlqEntry {
            payment: Payment {
                payment_id: 2,
                order_id: 1,
                payment_method: "m".into(),
                card_last_four: "1".into(),
                payment_status: "s".into(),
                payment_datetime: "d".into(),
            },
            reason: "r".into(),
            first_seen: 0,
            attempts: 0,
            event_ts: 0,
        };
        assert_eq!(derived_header(&DlqLine::from(&entry)), DLQ_HEADER.join(","));
        let invalid = InvalidMessage {
            source: StreamKind::Orders,
            message_id: "m".into(),
            payload: bytes::Bytes::from_static(b"x"),
            error: "e".into(),
            received_at: 0,
        };
        assert_eq!(
            derived_header(&InvalidLine::from(&invalid)),
            INVALID_HEADER.join(",")
        );
    }
}
