//! Files as a source (`ingest`, README "ingest"): orders and payments read from JSON lines
//! or CSV files, gzip-compressed or not, as in-process messages with their write
//! timestamps, in bounded chunks.
//!
//! Owns: reading one file as a sequence of [`Chunk`]s: each record becomes a
//! [`Message`] (id `FILE:LINE`, payload the wire JSON, publish time the write timestamp),
//! and a record that cannot become one (a CSV row that is not UTF-8, a bad timestamp, an
//! over-long line, a CSV row with the wrong number of fields) an [`InvalidMessage`] with its
//! reason. Must never: validate a payload (the intake does, so a file's records are judged
//! exactly as Pub/Sub messages are), read a file whole into memory, or stamp a record from
//! the clock (a rerun must stamp records alike; the clock only dates an invalid record's
//! `received_at`, as for a Pub/Sub message).

pub mod csv;
pub mod jsonl;
pub mod open;
pub mod timestamp;

use crate::clock::now_micros;
use crate::model::StreamKind;
use crate::source::in_process::Message;
use crate::store::InvalidMessage;
use bytes::Bytes;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// How a file's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// By the name: `.csv` / `.csv.gz` are CSV, anything else JSON lines.
    #[default]
    Auto,
    Jsonl,
    Csv,
}

/// One file of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    pub path: PathBuf,
    pub stream: StreamKind,
}

/// How every file is read.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub format: Format,
    /// The field (JSON) or column (CSV) holding each record's write timestamp. `None`: the
    /// file's modification time plus the record's line number.
    pub timestamp_field: Option<String>,
}

/// Why a file could not be read. Every record before the failing line is delivered (a
/// truncated gzip file's clean beginning is written, then the load fails naming the line);
/// nothing from that line on is, and a rerun after the cause is fixed completes it.
///
/// Each variant's text says only its own part; the cause is its `source`, which the CLI
/// prints after it (`{:#}`), so writing it in the text too would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Not retriable as it is: the path is wrong or unreadable.
    #[error("cannot open")]
    Open {
        #[source]
        source: std::io::Error,
    },
    /// Possibly transient (a disk or network file system error): a rerun may succeed.
    #[error("read error at line {line}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    /// The file is not of the shape its format needs (a CSV header without the stream's
    /// columns): not retriable.
    #[error("{0}")]
    Shape(String),
}

impl FileError {
    pub fn is_retriable(&self) -> bool {
        matches!(self, FileError::Read { .. })
    }
}

/// What a parser found at one position of a file.
#[derive(Debug)]
pub enum Raw {
    /// A payload for the intake, with its write timestamp if the record names one.
    Record {
        line: u64,
        data: Bytes,
        ts: Option<i64>,
    },
    /// A record that is invalid before any decoding.
    Bad {
        line: u64,
        payload: Bytes,
        error: String,
    },
    /// A CSV row with nothing for this stream (a facts row's missing half).
    Skipped,
}

/// Up to a chunk's worth of a file.
#[derive(Debug, Default)]
pub struct Chunk {
    pub messages: Vec<Message>,
    pub invalid: Vec<InvalidMessage>,
    /// Rows skipped as having nothing for the stream.
    pub skipped: u64,
}

impl Chunk {
    /// Records read: messages and invalid ones (skipped rows are not records).
    pub fn records(&self) -> u64 {
        (self.messages.len() + self.invalid.len()) as u64
    }
}

enum Parser {
    Lines(Box<dyn BufRead + Send>, jsonl::Lines),
    Csv(Box<csv::Rows>),
}

/// One open file, read chunk by chunk.
pub struct FileReader {
    input: FileInput,
    /// `FILE` of the message ids: the path as given.
    name: String,
    parser: Parser,
    mtime_us: i64,
    timestamp_field: Option<String>,
    done: bool,
    /// A read error met after some records of a chunk: the chunk is returned first, the
    /// error at the next call, so that what was read cleanly is not thrown away with it.
    failed: Option<FileError>,
}

impl FileReader {
    /// Opens `input` (and, for CSV, reads its header). Bytes read from the disk are added
    /// to `progress`.
    pub fn open(
        input: &FileInput,
        options: &ReadOptions,
        progress: Arc<AtomicU64>,
    ) -> Result<FileReader, FileError> {
        let opened = open::open(&input.path, options.format, progress)?;
        let field = options.timestamp_field.clone();
        let parser = match opened.format {
            Format::Csv => Parser::Csv(Box::new(csv::Rows::new(
                opened.reader,
                input.stream,
                field.as_deref(),
            )?)),
            Format::Jsonl | Format::Auto => Parser::Lines(opened.reader, jsonl::Lines::new()),
        };
        Ok(FileReader {
            name: input.path.display().to_string(),
            input: input.clone(),
            parser,
            mtime_us: opened.mtime_us,
            // CSV applies it per column; JSON lines here, per record.
            timestamp_field: match opened.format {
                Format::Csv => None,
                _ => field,
            },
            done: false,
            failed: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.input.path
    }

    /// Every record was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads until `max_records` records or `max_bytes` payload bytes, or the end. Blocking
    /// file I/O: call it off the async threads.
    ///
    /// A read error after some records of the chunk returns those records, and the error at
    /// the next call.
    pub fn next_chunk(&mut self, max_records: usize, max_bytes: usize) -> Result<Chunk, FileError> {
        if let Some(e) = self.failed.take() {
            self.done = true;
            return Err(e);
        }
        let mut chunk = Chunk::default();
        let mut bytes = 0;
        while !self.done && (chunk.records() as usize) < max_records && bytes < max_bytes {
            let next = match &mut self.parser {
                Parser::Lines(reader, lines) => lines.next(reader.as_mut()),
                Parser::Csv(rows) => rows.next_row(),
            };
            let raw = match next {
                Ok(raw) => raw,
                Err(e) if chunk.records() > 0 || chunk.skipped > 0 => {
                    self.failed = Some(e);
                    return Ok(chunk);
                }
                Err(e) => return Err(e),
            };
            match raw.map(|r| self.stamp(r)) {
                None => self.done = true,
                Some(Raw::Skipped) => chunk.skipped += 1,
                Some(Raw::Record { line, data, ts }) => {
                    bytes += data.len();
                    chunk.messages.push(Message {
                        topic: self.input.stream,
                        message_id: self.message_id(line),
                        data,
                        publish_time: ts
                            .unwrap_or_else(|| timestamp::positional(self.mtime_us, line)),
                    });
                }
                Some(Raw::Bad {
                    line,
                    payload,
                    error,
                }) => {
                    bytes += payload.len();
                    chunk.invalid.push(InvalidMessage {
                        source: self.input.stream,
                        message_id: self.message_id(line),
                        payload,
                        error,
                        received_at: now_micros(),
                    });
                }
            }
        }
        Ok(chunk)
    }

    fn message_id(&self, line: u64) -> String {
        format!("{}:{line}", self.name)
    }

    /// A JSON line's timestamp from `--timestamp-field`. A line that is not JSON is left to
    /// the intake, which rejects it with the decoder's reason.
    fn stamp(&self, raw: Raw) -> Raw {
        let (
            Some(field),
            Raw::Record {
                line,
                data,
                ts: None,
            },
        ) = (&self.timestamp_field, &raw)
        else {
            return raw;
        };
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(data) else {
            return raw;
        };
        let stamped = match object.get(field) {
            Some(value) => timestamp::from_json(value),
            None => Err("missing".to_string()),
        };
        match stamped {
            Ok(us) => Raw::Record {
                line: *line,
                data: data.clone(),
                ts: Some(us),
            },
            Err(e) => Raw::Bad {
                line: *line,
                payload: data.clone(),
                error: format!("timestamp field `{field}`: {e}"),
            },
        }
    }
}
