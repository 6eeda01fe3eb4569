//! Opening one input file of `ingest`: its format, gzip or not, and a count of the bytes
//! read from disk.
//!
//! Owns: gzip detection (by the magic bytes, whatever the name), the format a name implies
//! (`.csv`, `.csv.gz`: CSV; anything else, extension-less Cloud Storage subscription files
//! included: JSON lines), and the byte counter the progress bar's ETA reads. Must never:
//! read a file whole into memory: everything above reads through a bounded buffer.

use super::{FileError, Format};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Read buffer of the file, and of the decompressed stream.
const BUFFER: usize = 256 * 1024;

/// An opened input: decompressed if need be, in its format.
pub struct Opened {
    pub reader: Box<dyn BufRead + Send>,
    pub format: Format,
    /// µs since the epoch: the base of the positional write timestamps.
    pub mtime_us: i64,
    pub gzip: bool,
}

/// Opens `path`; `forced` is `--format` (`Auto`: by the name). Bytes read from the disk
/// are added to `progress` as they are read.
pub fn open(path: &Path, forced: Format, progress: Arc<AtomicU64>) -> Result<Opened, FileError> {
    let io = |source| FileError::Open { source };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    let mtime_us = super::timestamp::micros_of(meta.modified().map_err(io)?);
    let mut raw = BufReader::with_capacity(
        BUFFER,
        Counting {
            inner: file,
            progress,
        },
    );
    let gzip = raw.fill_buf().map_err(io)?.starts_with(&GZIP_MAGIC);
    let reader: Box<dyn BufRead + Send> = if gzip {
        Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(raw)))
    } else {
        Box::new(raw)
    };
    let format = match forced {
        Format::Auto => format_of_name(path),
        f => f,
    };
    Ok(Opened {
        reader,
        format,
        mtime_us,
        gzip,
    })
}

/// `.csv` and `.csv.gz` (any case) are CSV; everything else is JSON lines.
pub fn format_of_name(path: &Path) -> Format {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".csv") || name.ends_with(".csv.gz") {
        Format::Csv
    } else {
        Format::Jsonl
    }
}

/// Counts the bytes read from the disk (compressed bytes for gzip), for the progress bar.
struct Counting<R> {
    inner: R,
    progress: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_decides_the_format() {
        for (name, format) in [
            ("orders.csv", Format::Csv),
            ("ORDERS.CSV.GZ", Format::Csv),
            ("orders.jsonl", Format::Jsonl),
            ("orders.json.gz", Format::Jsonl),
            ("2026-12-03T10:00:00+00:00_a1b2", Format::Jsonl),
        ] {
            assert_eq!(format_of_name(Path::new(name)), format, "{name}");
        }
    }
}
