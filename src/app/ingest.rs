//! `ecom-stream ingest`: orders and payments from files through the same intake, join,
//! writer and dead-letter actors as `run` (design §4.10, README "ingest").
//!
//! Owns: the order of a batch load (every orders file read and made durable first, then
//! the payments files, so that a payment finds its order by the join's store read-through
//! whichever file it came from), reading each file in bounded chunks on the blocking pool
//! while earlier chunks are in the pipeline, recording the records a file reader found
//! invalid through the dead-letter actor, and the report. Must never: write to the store
//! itself (every effect goes through the pipeline and is acked only when durable), hold
//! more than three chunks of a file at once (two in the pipeline, one being read), or
//! start a payments file before every orders file is durable.

use crate::ack::{AckHandle, Acknowledge, NackReason};
use crate::app::pipeline::{Drained, Pipeline};
use crate::config::{ConfigError, EngineConfig};
use crate::dlq::dead_letter::{DeadLetter, InvalidRecord, RecordInvalid};
use crate::dlq::TableOnly;
use crate::model::StreamKind;
use crate::shutdown::Shutdown;
use crate::source::file::{Chunk, FileError, FileInput, FileReader, ReadOptions};
use crate::source::in_process::{Delivery, InProcessSource, SourceOptions};
use crate::source::intake::Intake;
use crate::store::{InvalidMessage, Store};
use crate::telemetry::{Stats, StatsSnapshot};
use actix::Addr;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Records per chunk, and payload bytes per chunk (the record that crosses the bound is
/// still taken, so a chunk is at most 8 MiB plus one record of up to 10 MiB): what one file
/// holds in memory at most [`CHUNKS_IN_PIPELINE`] + 1 times (those in the pipeline, and the
/// next being read or waiting for its place).
const CHUNK_RECORDS: usize = 5_000;
const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Chunks of a file in the pipeline at once.
const CHUNKS_IN_PIPELINE: usize = 2;

/// What to ingest and how.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    pub engine: EngineConfig,
    pub orders: Vec<PathBuf>,
    pub payments: Vec<PathBuf>,
    pub read: ReadOptions,
}

impl IngestOptions {
    /// Checks the settings and that every file can be opened, and returns the total size
    /// of the files (the basis of the progress bar's ETA).
    pub fn validate(&self) -> Result<u64, ConfigError> {
        self.engine.validate()?;
        if self.orders.is_empty() && self.payments.is_empty() {
            return Err(ConfigError {
                setting: "--orders / --payments",
                problem: "name at least one file".into(),
            });
        }
        if self.read.timestamp_field.as_deref() == Some("") {
            return Err(ConfigError {
                setting: "--timestamp-field",
                problem: "must name a field".into(),
            });
        }
        let mut total = 0;
        for (setting, path) in self.inputs().map(|i| {
            let flag = match i.stream {
                StreamKind::Orders => "--orders",
                StreamKind::Payments => "--payments",
            };
            (flag, i.path)
        }) {
            let meta = std::fs::metadata(&path).map_err(|e| ConfigError {
                setting,
                problem: format!("{}: {e}", path.display()),
            })?;
            if !meta.is_file() {
                return Err(ConfigError {
                    setting,
                    problem: format!("{} is not a file", path.display()),
                });
            }
            total += meta.len();
        }
        Ok(total)
    }

    /// Opens every file as the load will (gzip, format, a CSV file's header) and closes it
    /// again, so that a file the load would refuse is refused before the store is opened,
    /// or created. Blocking: a few reads per file.
    pub fn check_files(&self) -> Result<(), IngestError> {
        for input in self.inputs() {
            FileReader::open(&input, &self.read, Arc::new(AtomicU64::new(0))).map_err(
                |source| IngestError::File {
                    path: input.path.clone(),
                    source,
                },
            )?;
        }
        Ok(())
    }

    /// Orders files first, then payments files: the order of the load.
    fn inputs(&self) -> impl Iterator<Item = FileInput> + '_ {
        let of = |stream| {
            move |path: &PathBuf| FileInput {
                path: path.clone(),
                stream,
            }
        };
        (self.orders.iter().map(of(StreamKind::Orders)))
            .chain(self.payments.iter().map(of(StreamKind::Payments)))
    }
}

/// Live progress, for a progress bar: the caller reads it while the load runs.
#[derive(Debug, Default)]
pub struct IngestProgress {
    /// Bytes read from the disk so far (compressed bytes for gzip).
    pub bytes_read: Arc<AtomicU64>,
    /// Records read so far, both streams.
    pub records: AtomicU64,
    /// Waiting for the store's write lock, which another process holds.
    pub waiting_for_store: std::sync::atomic::AtomicBool,
}

/// Records read from one stream's files.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StreamCounts {
    pub files: u64,
    /// Records read (valid or not; each line of JSON lines, each CSV row with data).
    pub records: u64,
    /// CSV rows with nothing for this stream (a facts row without its payment).
    pub skipped: u64,
    /// Of `records`, those the file reader found invalid (the intake finds the others).
    pub invalid_in_file: u64,
}

/// What a load did, from the pipeline's counters and the readers'.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub orders: StreamCounts,
    pub payments: StreamCounts,
    /// Records whose write changed the store (a column group written), each once.
    pub rows_written: u64,
    /// Records whose write lost to a newer version already stored (last-write-wins kept
    /// it). `null` on Cassandra, which cannot tell: there they count as written.
    pub superseded: Option<u64>,
    pub dead_lettered: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub elapsed_s: f64,
    /// Records read per second over `elapsed_s`.
    pub records_per_second: f64,
    /// A signal stopped the load: what was acked is durable, the rest comes with a rerun.
    pub interrupted: bool,
    pub drained: bool,
    pub stats: StatsSnapshot,
}

impl IngestReport {
    /// A load stopped by a signal before it started (while it waited for the store).
    pub fn stopped_before_start(stats: &Stats) -> IngestReport {
        let stats = stats.snapshot();
        IngestReport {
            orders: StreamCounts::default(),
            payments: StreamCounts::default(),
            rows_written: 0,
            superseded: None,
            dead_lettered: 0,
            invalid: 0,
            duplicates: 0,
            elapsed_s: 0.0,
            records_per_second: 0.0,
            interrupted: true,
            drained: true,
            stats,
        }
    }
}

/// Why a load stopped in error. Whatever was acked before it is durable; a rerun converges.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The text is the path alone: the CLI prints the source's chain after it.
    #[error("{}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: FileError,
    },
    /// Retriable: the dead-letter actor could not record them (the store refused).
    #[error("{count} invalid records could not be recorded in invalid_messages; rerun to retry")]
    Unrecorded { count: usize },
    /// The blocking reader task died (a panic in it): a bug, not retriable.
    #[error("file reader task failed")]
    Reader(#[source] tokio::task::JoinError),
    /// A chunk's delivery task died (a panic in it): a bug, not retriable. Its messages'
    /// handles were dropped, which nacks them: nothing of it was acked unwritten.
    #[error("chunk delivery task failed")]
    Delivery(#[source] tokio::task::JoinError),
}

impl IngestError {
    pub fn is_retriable(&self) -> bool {
        match self {
            IngestError::File { source, .. } => source.is_retriable(),
            IngestError::Unrecorded { .. } => true,
            IngestError::Config(_) | IngestError::Reader(_) | IngestError::Delivery(_) => false,
        }
    }
}

/// Loads the files through a fresh pipeline on `store`, counting into `stats`.
pub async fn run(
    options: &IngestOptions,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    progress: Arc<IngestProgress>,
    shutdown: Shutdown,
) -> Result<IngestReport, IngestError> {
    options.validate()?;
    let superseded_before = store.superseded_writes();
    let pipeline = Pipeline::start(
        &options.engine,
        store.clone(),
        Arc::new(TableOnly),
        stats.clone(),
    )?;
    pipeline.shut_on(shutdown.clone());
    let started = Instant::now();
    let mut load = Load {
        chunks: ChunkDelivery {
            intake: pipeline.intake(),
            dead_letter: pipeline.dead_letter(),
            stats: stats.clone(),
            progress,
            shutdown: shutdown.clone(),
        },
        read: &options.read,
        counts: [StreamCounts::default(); 2],
    };
    let mut outcome = Ok(Delivery::Completed);
    for input in options.inputs() {
        tracing::info!(file = %input.path.display(), stream = %input.stream, "ingest: reading");
        outcome = load.file(input).await;
        if !matches!(outcome, Ok(Delivery::Completed)) {
            break;
        }
    }
    let counts = load.counts;
    let drained = pipeline.shutdown().await == Drained::Clean;
    let interrupted = matches!(outcome, Ok(Delivery::Interrupted));
    outcome?;
    let elapsed = started.elapsed().as_secs_f64();
    let s = stats.snapshot();
    let records = counts[0].records + counts[1].records;
    let superseded = store
        .superseded_writes()
        .map(|now| now - superseded_before.unwrap_or(0));
    Ok(IngestReport {
        orders: counts[0],
        payments: counts[1],
        rows_written: (s.orders_upserted + s.payments_upserted)
            .saturating_sub(superseded.unwrap_or(0)),
        superseded,
        dead_lettered: s.dead_lettered,
        invalid: s.invalid,
        duplicates: s.duplicates,
        elapsed_s: elapsed,
        records_per_second: if elapsed > 0.0 {
            records as f64 / elapsed
        } else {
            0.0
        },
        interrupted,
        drained,
        stats: s,
    })
}

/// One load's state.
struct Load<'a> {
    chunks: ChunkDelivery,
    read: &'a ReadOptions,
    /// Orders, payments.
    counts: [StreamCounts; 2],
}

type DeliveryTask = tokio::task::JoinHandle<Result<Delivery, IngestError>>;

impl Load<'_> {
    /// Reads `input` chunk by chunk, the next chunk on the blocking pool while earlier ones
    /// go through the pipeline, and returns once every chunk handed in is acked.
    ///
    /// [`CHUNKS_IN_PIPELINE`] chunks are in the pipeline at once: with one, the pipeline ran
    /// dry at the end of every chunk (its last rows waiting for their batch to commit while
    /// nothing new came in), which cost 5–10 % of the throughput (docs/profile.md).
    async fn file(&mut self, input: FileInput) -> Result<Delivery, IngestError> {
        let slot = match input.stream {
            StreamKind::Orders => 0,
            StreamKind::Payments => 1,
        };
        self.counts[slot].files += 1;
        let path = input.path.clone();
        let file_error = |source| IngestError::File {
            path: path.clone(),
            source,
        };
        let (read, bytes) = (self.read.clone(), self.chunks.progress.bytes_read.clone());
        let reader = tokio::task::spawn_blocking(move || FileReader::open(&input, &read, bytes))
            .await
            .map_err(IngestError::Reader)?
            .map_err(file_error)?;
        let mut in_pipeline: VecDeque<DeliveryTask> = VecDeque::new();
        let mut next = Some(read_chunk(reader));
        let mut outcome = Ok(Delivery::Completed);
        while let Some(task) = next.take() {
            let (chunk, more) = match task.await {
                Ok((reader, Ok(chunk))) => (chunk, Some(reader).filter(|r| !r.is_done())),
                Ok((_, Err(e))) => {
                    outcome = Err(file_error(e));
                    break;
                }
                Err(e) => {
                    outcome = Err(IngestError::Reader(e));
                    break;
                }
            };
            if self.chunks.shutdown.is_triggered() {
                outcome = Ok(Delivery::Interrupted);
                break;
            }
            let counts = &mut self.counts[slot];
            counts.records += chunk.records();
            counts.skipped += chunk.skipped;
            counts.invalid_in_file += chunk.invalid.len() as u64;
            if in_pipeline.len() == CHUNKS_IN_PIPELINE {
                if let Some(oldest) = in_pipeline.pop_front() {
                    outcome = finished(oldest).await;
                    if !matches!(outcome, Ok(Delivery::Completed)) {
                        break;
                    }
                }
            }
            in_pipeline.push_back(actix_rt::spawn(self.chunks.clone().deliver(chunk)));
            // The next read starts only now, once a place in the pipeline was free: reading
            // while waiting for one would hold a fourth chunk.
            next = more.map(read_chunk);
        }
        // Every chunk handed in is waited for, after a failure too: nothing is left running
        // behind the report, and what a rerun must redo is exactly what was not acked.
        for task in in_pipeline {
            let done = finished(task).await;
            if matches!(outcome, Ok(Delivery::Completed)) {
                outcome = done;
            }
        }
        outcome
    }
}

/// How a chunk's delivery task ended.
async fn finished(task: DeliveryTask) -> Result<Delivery, IngestError> {
    task.await.map_err(IngestError::Delivery)?
}

/// What a chunk's delivery needs, owned, so that it runs as a task of its own beside the
/// file's reading and the chunk before it.
#[derive(Clone)]
struct ChunkDelivery {
    intake: Intake,
    dead_letter: Addr<DeadLetter>,
    stats: Arc<Stats>,
    progress: Arc<IngestProgress>,
    shutdown: Shutdown,
}

impl ChunkDelivery {
    /// Hands one chunk to the pipeline and waits until all of it is durable.
    async fn deliver(self, chunk: Chunk) -> Result<Delivery, IngestError> {
        let records = chunk.records();
        if !chunk.invalid.is_empty() && !self.record_invalid(chunk.invalid).await? {
            return Ok(Delivery::Interrupted);
        }
        // A source per chunk: its delivery ends when its own messages are acked, not when
        // every chunk in the pipeline is (a source waits for all of its outstanding).
        let source = InProcessSource::with_stats(SourceOptions::default(), self.stats.clone());
        let delivered = source
            .deliver(chunk.messages, &self.intake, &self.shutdown)
            .await;
        self.progress.records.fetch_add(records, Ordering::Relaxed);
        Ok(delivered)
    }

    /// Records what the file reader found invalid through the dead-letter actor, as the
    /// intake records its own, and waits until it is durable. `false`: shutdown came first.
    async fn record_invalid(&self, invalid: Vec<InvalidMessage>) -> Result<bool, IngestError> {
        Stats::add(&self.stats.invalid, invalid.len() as u64);
        let mut answers = Vec::with_capacity(invalid.len());
        let records = invalid
            .into_iter()
            .map(|message| {
                let (tx, rx) = oneshot::channel();
                answers.push(rx);
                InvalidRecord {
                    message,
                    ack: AckHandle::new(Answer(tx)),
                }
            })
            .collect();
        let count = answers.len();
        if self.dead_letter.send(RecordInvalid(records)).await.is_err() {
            return Err(IngestError::Unrecorded { count });
        }
        let mut failed = 0;
        for rx in answers {
            if rx.await != Ok(true) {
                failed += 1;
            }
        }
        match failed {
            0 => Ok(true),
            _ if self.shutdown.is_triggered() => Ok(false),
            count => Err(IngestError::Unrecorded { count }),
        }
    }
}

type ChunkTask = tokio::task::JoinHandle<(FileReader, Result<Chunk, FileError>)>;

fn read_chunk(mut reader: FileReader) -> ChunkTask {
    tokio::task::spawn_blocking(move || {
        let chunk = reader.next_chunk(CHUNK_RECORDS, CHUNK_BYTES);
        (reader, chunk)
    })
}

/// The answer to one invalid record sent to the dead-letter actor: `true` once durable.
struct Answer(oneshot::Sender<bool>);

impl Acknowledge for Answer {
    fn ack(self: Box<Self>) {
        let _ = self.0.send(true);
    }
    fn nack(self: Box<Self>, _: NackReason) {
        let _ = self.0.send(false);
    }
}
