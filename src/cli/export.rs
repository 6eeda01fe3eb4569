//! Where a listing (`query facts`, `dlq list`) goes and in which form: JSON lines or CSV,
//! to stdout or to the `--out` file, page by page.
//!
//! Owns: the two formats' framing (a CSV header even for an empty listing, RFC 4180
//! quoting, round-trip floats, an empty cell for a missing value) and the `--out` file's
//! life: written beside its final path, renamed over it only once the whole listing is
//! written, removed on any error. Must never: hold more than the page it is handed, or
//! leave a half-written file under the name the user gave.

use super::args::{ExportArgs, ExportFormat};
use crate::store::{Page, StoreError};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Why a listing could not be written. None of these is retriable by waiting: the file's
/// directory, the disk or the reader of stdout has to change first.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The `--out` file (or its temporary sibling) could not be created, written or put in
    /// place.
    #[error("cannot write --out {}: {what}", path.display())]
    File {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// stdout failed for another reason than a closed pipe (which ends a listing quietly).
    #[error("cannot write to stdout")]
    Stdout(#[source] std::io::Error),
    /// A record that CSV cannot represent (nothing this program lists: a defect).
    #[error("cannot encode a {format} record")]
    Encode {
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where the bytes go.
enum Dest {
    Stdout(BufWriter<std::io::Stdout>),
    /// The temporary sibling of `path`, renamed over it by [`Listing::finish`].
    File {
        file: BufWriter<File>,
        tmp: PathBuf,
        path: PathBuf,
    },
}

impl Write for Dest {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Dest::Stdout(w) => w.write(buf),
            Dest::File { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Dest::Stdout(w) => w.flush(),
            Dest::File { file, .. } => file.flush(),
        }
    }
}

enum Sink {
    Jsonl(Dest),
    /// Boxed: the CSV writer's own buffers make it several times the size of a `Dest`.
    Csv(Box<csv::Writer<Dest>>),
}

/// One listing being written. Dropped without [`Listing::finish`] (an error on the way),
/// it removes its temporary file, so `--out FILE` keeps what it held before.
pub(super) struct Listing {
    sink: Option<Sink>,
    /// The temporary file to remove if the listing never finishes.
    tmp: Option<PathBuf>,
}

/// What a write of a record says: go on, or stop because stdout's reader went away
/// (`| head`), which ends the listing quietly and successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    More,
    ReaderGone,
}

impl Listing {
    /// Starts a listing whose CSV header is `header` (the serialized record's field names,
    /// in order). With `--out`, creates the temporary file first, so an unwritable
    /// directory fails before the store is read.
    pub(super) fn open(args: &ExportArgs, header: &[&str]) -> Result<Listing, ExportError> {
        let (dest, tmp) = match &args.out {
            None => (Dest::Stdout(BufWriter::new(std::io::stdout())), None),
            Some(path) => {
                let tmp = temporary_sibling(path)?;
                let file = File::create(&tmp).map_err(|source| ExportError::File {
                    path: path.clone(),
                    what: "cannot create a file in its directory",
                    source,
                })?;
                let dest = Dest::File {
                    file: BufWriter::new(file),
                    tmp: tmp.clone(),
                    path: path.clone(),
                };
                (dest, Some(tmp))
            }
        };
        let sink = match args.format {
            ExportFormat::Jsonl => Sink::Jsonl(dest),
            ExportFormat::Csv => Sink::Csv(Box::new(
                csv::WriterBuilder::new()
                    .has_headers(false)
                    .terminator(csv::Terminator::Any(b'\n'))
                    .from_writer(dest),
            )),
        };
        let mut listing = Listing {
            sink: Some(sink),
            tmp,
        };
        if let Some(Sink::Csv(w)) = &mut listing.sink {
            let written = w.write_record(header);
            listing.check(written.map_err(csv_error))?;
        }
        Ok(listing)
    }

    /// Writes one record: a JSON line, or a CSV row in the header's column order.
    pub(super) fn write<T: Serialize>(&mut self, record: &T) -> Result<Flow, ExportError> {
        let written = match &mut self.sink {
            Some(Sink::Jsonl(dest)) => serde_json::to_writer(&mut *dest, record)
                .map_err(|e| match e.io_error_kind() {
                    Some(_) => WriteError::Io(std::io::Error::from(e)),
                    None => WriteError::Encode("JSON", Box::new(e)),
                })
                .and_then(|()| dest.write_all(b"\n").map_err(WriteError::Io)),
            Some(Sink::Csv(w)) => w.serialize(record).map_err(csv_error),
            None => Ok(()),
        };
        self.check(written)
    }

    /// Flushes, and with `--out` makes the file durable and puts it in place.
    pub(super) fn finish(mut self) -> Result<(), ExportError> {
        let dest = match self.sink.take() {
            Some(Sink::Jsonl(dest)) => dest,
            Some(Sink::Csv(w)) => (*w).into_inner().map_err(|e| {
                let source = std::io::Error::new(e.error().kind(), e.error().to_string());
                self.fail(WriteError::Io(source))
            })?,
            None => return Ok(()),
        };
        match dest {
            Dest::Stdout(mut w) => match w.flush() {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                r => r.map_err(ExportError::Stdout),
            },
            Dest::File {
                file, tmp, path, ..
            } => {
                let io = |what: &'static str| {
                    let path = path.clone();
                    move |source| ExportError::File { path, what, source }
                };
                let file = file
                    .into_inner()
                    .map_err(|e| io("cannot write it")(e.into_error()))?;
                // Durable before it takes the name: a crash never leaves a short file there.
                file.sync_all().map_err(io("cannot write it"))?;
                std::fs::rename(&tmp, &path).map_err(io("cannot put it in place"))?;
                self.tmp = None;
                Ok(())
            }
        }
    }

    fn check(&mut self, written: Result<(), WriteError>) -> Result<Flow, ExportError> {
        match written {
            Ok(()) => Ok(Flow::More),
            Err(e) => {
                let stdout = matches!(self.sink, Some(Sink::Jsonl(Dest::Stdout(_))))
                    || matches!(&self.sink, Some(Sink::Csv(w)) if matches!(w.get_ref(), Dest::Stdout(_)));
                match e {
                    WriteError::Io(io) if stdout && io.kind() == std::io::ErrorKind::BrokenPipe => {
                        Ok(Flow::ReaderGone)
                    }
                    e => Err(self.fail(e)),
                }
            }
        }
    }

    /// The error for `e`, naming the `--out` file when there is one.
    fn fail(&self, e: WriteError) -> ExportError {
        let path = self.sink.as_ref().and_then(|s| match s {
            Sink::Jsonl(Dest::File { path, .. }) => Some(path.clone()),
            Sink::Csv(w) => match w.get_ref() {
                Dest::File { path, .. } => Some(path.clone()),
                Dest::Stdout(_) => None,
            },
            Sink::Jsonl(Dest::Stdout(_)) => None,
        });
        match (e, path) {
            (WriteError::Encode(format, source), _) => ExportError::Encode { format, source },
            (WriteError::Io(source), Some(path)) => ExportError::File {
                path,
                what: "cannot write it",
                source,
            },
            (WriteError::Io(source), None) => ExportError::Stdout(source),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            self.sink = None; // close the file before removing it
            if let Err(e) = std::fs::remove_file(&tmp) {
                tracing::warn!(file = %tmp.display(), error = %e, "could not remove the unfinished export");
            }
        }
    }
}

enum WriteError {
    Io(std::io::Error),
    Encode(&'static str, Box<dyn std::error::Error + Send + Sync>),
}

fn csv_error(e: csv::Error) -> WriteError {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return WriteError::Io(io);
        }
        return WriteError::Io(std::io::Error::other("CSV write failed"));
    }
    WriteError::Encode("CSV", Box::new(e))
}

/// `.NAME.<pid>.partial` in FILE's directory: a rename within one directory is atomic.
fn temporary_sibling(path: &Path) -> Result<PathBuf, ExportError> {
    let bad = |what: &'static str, kind| ExportError::File {
        path: path.to_path_buf(),
        what,
        source: std::io::Error::new(kind, "--out takes the path of a file"),
    };
    if path.is_dir() {
        return Err(bad("it is a directory", std::io::ErrorKind::IsADirectory));
    }
    let Some(name) = path.file_name() else {
        return Err(bad("it names no file", std::io::ErrorKind::InvalidInput));
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.partial", std::process::id()));
    Ok(path.with_file_name(tmp_name))
}

/// Writes a scan page by page until the store says it is complete (`next == None`, see
/// [`Page`]), so a large table never sits in memory whole; `write` turns each item into
/// its record. A closed stdout ends the listing quietly.
pub(super) async fn export_pages<T, K, F, Fut>(
    mut listing: Listing,
    mut fetch: F,
    mut write: impl FnMut(&mut Listing, &T) -> Result<Flow, ExportError>,
) -> anyhow::Result<()>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T, K>, StoreError>>,
{
    let mut after = None;
    loop {
        let page = fetch(after).await?;
        for item in &page.items {
            if write(&mut listing, item)? == Flow::ReaderGone {
                return Ok(());
            }
        }
        match page.next {
            Some(key) => after = Some(key),
            None => return Ok(listing.finish()?),
        }
    }
}
