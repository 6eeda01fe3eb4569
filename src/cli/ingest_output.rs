//! What `ingest` prints: its summary at the end and its progress bar on a terminal.
//!
//! Owns: the ingest's human-readable output. Must never: read the store or the files (it is
//! handed the report and the live counters), or draw anything when stderr is not a terminal.

use crate::app::{IngestProgress, IngestReport};
use std::io::Write;
use std::time::Duration;

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
            "  {name:<8} read         {:>10}  ({} files, {} rows skipped)",
            c.records, c.files, c.skipped
        )?;
    }
    writeln!(out, "  rows written           {:>10}", r.rows_written)?;
    if let Some(superseded) = r.superseded {
        writeln!(
            out,
            "  superseded             {superseded:>10}  (a newer version was already stored)"
        )?;
    }
    writeln!(
        out,
        "  dead-lettered          {:>10}  (order not found after the hold)",
        r.dead_lettered
    )?;
    // One figure for every invalid record, whichever step found it (the file reader: a CSV
    // row of the wrong width, a bad timestamp; the decoder: not JSON, a missing field), so
    // that no "0 invalid" stands beside it.
    writeln!(
        out,
        "  invalid                {:>10}  (recorded with FILE:LINE and their reason)",
        r.invalid
    )?;
    writeln!(
        out,
        "  duplicates             {:>10}  (the same record already written: skipped)",
        r.duplicates
    )?;
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
            if progress.waiting_for_store.load(Ordering::Relaxed) {
                ticking
                    .set_message("waiting for the store's write lock (another process holds it)");
            } else {
                ticking.set_message(format!("{records} records, {rate:.0}/s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    ProgressBar {
        bar,
        ticker: Some(ticker),
    }
}
