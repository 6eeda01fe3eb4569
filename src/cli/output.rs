//! What the commands print: the demo's, the run's and the ingest's summaries, ingest's
//! progress bar, `config`'s settings, and
//! the JSON lines of `query` and `dlq list`.
//!
//! Owns: output formats. Must never: read the store beyond the page it is handed, or hold a
//! whole table in memory.

use super::settings::Resolved;
use crate::app::{DemoReport, IngestProgress, IngestReport, RunReport};
use crate::store::{DlqEntry, InvalidMessage, StoreError};
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
    writeln!(
        out,
        "expected afterwards: `query facts` {} rows, `dlq list` {} entries",
        r.expected_rows, r.expected_dlq
    )
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

type PageLines<K> = (Vec<serde_json::Result<String>>, Option<K>);

/// Prints JSON lines page by page, so a large table never sits in memory whole, until the
/// store's page says the scan is complete (`next == None`, see [`crate::store::Page`]). A
/// closed stdout (`| head`) ends the listing quietly.
pub(super) async fn print_pages<K, F, Fut>(mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<PageLines<K>, StoreError>>,
{
    let mut after = None;
    loop {
        let (lines, next) = fetch(after).await?;
        let mut out = std::io::stdout().lock();
        for line in lines {
            if let Err(e) = writeln!(out, "{}", line?) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e.into());
            }
        }
        match next {
            Some(key) => after = Some(key),
            None => return Ok(()),
        }
    }
}

/// A `dlq list` line: the payment's columns, then the DLQ's own (design §3).
#[derive(Serialize)]
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
#[derive(Serialize)]
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

pub(super) fn rfc3339(micros: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(micros.max(0) as u64);
    humantime::format_rfc3339_micros(t).to_string()
}

pub(super) fn write_ingest_summary(
    out: &mut impl Write,
    r: &IngestReport,
    store: &str,
) -> std::io::Result<()> {
    let interrupted = if r.interrupted {
        " (interrupted: rerun to complete)"
    } else {
        ""
    };
    writeln!(out, "ecom-stream ingest{interrupted}")?;
    for (name, c) in [("orders", &r.orders), ("payments", &r.payments)] {
        writeln!(
            out,
            "  {name:<8} read         {:>10}  ({} files, {} invalid in the file, {} rows skipped)",
            c.records, c.files, c.invalid_in_file, c.skipped
        )?;
    }
    writeln!(out, "  rows written           {:>10}", r.rows_written)?;
    writeln!(
        out,
        "  dead-lettered          {:>10}  (order not found after the hold)",
        r.dead_lettered
    )?;
    writeln!(
        out,
        "  invalid                {:>10}  (recorded with FILE:LINE and their reason)",
        r.invalid
    )?;
    writeln!(out, "  duplicates             {:>10}", r.duplicates)?;
    writeln!(
        out,
        "  elapsed                {:>9.2}s  ({:.0} records/s)",
        r.elapsed_s, r.records_per_second
    )?;
    writeln!(out, "  store: {store}")
}

/// `ingest`'s progress bar on stderr: bytes read of the files' total (the ETA), records
/// per second. Nothing at all when stderr is not a terminal.
pub(super) struct ProgressBar {
    bar: indicatif::ProgressBar,
    ticker: Option<actix_rt::task::JoinHandle<()>>,
}

impl ProgressBar {
    pub(super) fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

pub(super) fn progress_bar(
    total_bytes: u64,
    progress: std::sync::Arc<IngestProgress>,
) -> ProgressBar {
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering;
    if !std::io::stderr().is_terminal() {
        return ProgressBar {
            bar: indicatif::ProgressBar::hidden(),
            ticker: None,
        };
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "ingest [{bar:30}] {bytes}/{total_bytes} {msg} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let started = std::time::Instant::now();
    let ticking = bar.clone();
    let ticker = actix_rt::spawn(async move {
        loop {
            let records = progress.records.load(Ordering::Relaxed);
            let rate = records as f64 / started.elapsed().as_secs_f64().max(1e-3);
            ticking.set_position(progress.bytes_read.load(Ordering::Relaxed));
            ticking.set_message(format!("{records} records, {rate:.0}/s"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    ProgressBar {
        bar,
        ticker: Some(ticker),
    }
}
