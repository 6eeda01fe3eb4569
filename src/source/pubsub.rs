//! The `OrderSubscriber` and `PaymentSubscriber` of design §1: one [`SubscriberActor`] per
//! subscription, reading it with several streaming pulls and handing batches of
//! [`Envelope`]s to the pipeline.
//!
//! Owns: the streams, client-side flow control, and each message's Pub/Sub handler, which
//! travels inside the envelope's [`AckHandle`] and is answered only by the pipeline (ack
//! when the effect is durable, nack on failure; an envelope dropped unanswered nacks). Lease
//! extension of held messages is left to the client library. Must never: ack a message
//! itself, or hold more than `max_outstanding_messages` / `max_outstanding_bytes` of
//! unanswered messages: a permit is taken before each pull and returned only by the answer,
//! so a slow store stops the pulling instead of growing memory (design §4.7).
//!
//! Why several streams: one streaming pull from the emulator delivers ~1,900 msg/s on two
//! cores, while 16 streams on one subscription reach ~20,000/s (see BENCHMARKS.md for the
//! default's measurement).

use crate::ack::{AckHandle, Acknowledge};
use crate::clock::now_micros;
use crate::model::Topic;
use crate::pubsub::connect::{self, describe, ConnectError};
use crate::pubsub::PubSubConfig;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::source::intake::{Intake, PipelineClosed};
use crate::source::Envelope;
use crate::telemetry::Stats;
use actix::prelude::*;
use async_trait::async_trait;
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler as PubSubHandler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior, ShutdownToken};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// How a subscription is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberOptions {
    /// Concurrent streaming pulls on the subscription.
    pub streams: usize,
    /// Unanswered messages this subscriber holds at most (all streams together).
    pub max_outstanding_messages: usize,
    /// Unanswered payload bytes this subscriber holds at most (all streams together).
    pub max_outstanding_bytes: usize,
    /// Envelopes per hand-over to the pipeline.
    pub batch_size: usize,
    /// Hand-overs in flight at once.
    pub submit_concurrency: usize,
    /// How long the client keeps extending a message's lease; must exceed the hold time,
    /// or held payments would be redelivered while held.
    pub max_lease: Duration,
    /// How far each lease extension reaches (10 s to 600 s): after a crash, un-acked
    /// messages come back after at most this long.
    pub lease_extension: Duration,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            // Measured on 2 cores against the emulator: see BENCHMARKS.md.
            streams: 8,
            max_outstanding_messages: 20_000,
            max_outstanding_bytes: 100 * 1024 * 1024,
            batch_size: 500,
            submit_concurrency: 4,
            max_lease: Duration::from_secs(3600),
            lease_extension: Duration::from_secs(60),
        }
    }
}

impl SubscriberOptions {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let bound = |setting: &'static str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError {
                    setting,
                    problem: format!("must be between {lo} and {hi}"),
                })
            }
        };
        bound("--pubsub-streams", self.streams, 1, 64)?;
        bound(
            "--pubsub-max-outstanding-messages",
            self.max_outstanding_messages,
            self.streams,
            10_000_000,
        )?;
        bound(
            "--pubsub-max-outstanding-bytes",
            self.max_outstanding_bytes,
            1024,
            u32::MAX as usize,
        )?;
        bound("--pubsub-batch-size", self.batch_size, 1, 100_000)?;
        let ext = self.lease_extension.as_secs();
        if !(10..=600).contains(&ext) {
            return Err(ConfigError {
                setting: "--pubsub-lease-extension",
                problem: "must be between 10s and 600s".into(),
            });
        }
        if self.max_lease < self.lease_extension {
            return Err(ConfigError {
                setting: "--pubsub-max-lease",
                problem: "must be at least --pubsub-lease-extension".into(),
            });
        }
        Ok(())
    }
}

/// Where a subscriber hands its batches: the pipeline's [`Intake`], or for the benchmark
/// ceiling a sink that only acks.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed>;
}

#[async_trait]
impl Sink for Intake {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed> {
        Intake::submit(self, batch).await
    }
}

/// Acks every message on arrival: the bare subscriber of design §8, the ceiling the
/// pipeline's throughput is compared with. Never for real data.
#[derive(Debug, Default, Clone, Copy)]
pub struct AckOnly;

#[async_trait]
impl Sink for AckOnly {
    async fn submit(&self, batch: Vec<Envelope>) -> Result<(), PipelineClosed> {
        batch.into_iter().for_each(|e| e.ack.ack());
        Ok(())
    }
}

/// A subscriber's tallies, read by `run`'s summary and by tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, MessageResponse)]
pub struct SubscriberCounts {
    /// Messages received from Pub/Sub (redeliveries included).
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Unanswered messages right now.
    pub outstanding: u64,
    /// The most unanswered messages at any moment; never above `max_outstanding_messages`.
    pub outstanding_high_water: u64,
    /// The most unanswered payload bytes at any moment.
    pub outstanding_bytes_high_water: u64,
}

/// The subscriber's flow-control tallies. Deliveries and answers are counted once, in the
/// pipeline's per-source [`Stats`]; this adds what only the subscriber knows.
#[derive(Debug)]
struct Counters {
    topic: Topic,
    stats: Arc<Stats>,
    outstanding: AtomicU64,
    outstanding_bytes: AtomicU64,
    outstanding_high_water: AtomicU64,
    outstanding_bytes_high_water: AtomicU64,
}

impl Counters {
    fn new(topic: Topic, stats: Arc<Stats>) -> Self {
        Counters {
            topic,
            stats,
            outstanding: AtomicU64::new(0),
            outstanding_bytes: AtomicU64::new(0),
            outstanding_high_water: AtomicU64::new(0),
            outstanding_bytes_high_water: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> SubscriberCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let source = self.stats.source(self.topic).snapshot();
        SubscriberCounts {
            delivered: source.received,
            acked: source.acked,
            nacked: source.nacked,
            outstanding: get(&self.outstanding),
            outstanding_high_water: get(&self.outstanding_high_water),
            outstanding_bytes_high_water: get(&self.outstanding_bytes_high_water),
        }
    }

    /// A message (and its bytes) joined the unanswered set: received, from now on answered
    /// exactly once (ack, nack, or the nack of a drop).
    fn taken(&self, bytes: u64) {
        self.stats.source(self.topic).on_received(1);
        let n = self.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        self.outstanding_high_water.fetch_max(n, Ordering::Relaxed);
        let b = self.outstanding_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.outstanding_bytes_high_water
            .fetch_max(b, Ordering::Relaxed);
    }

    fn answered(&self, bytes: u64, acked: bool) {
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.outstanding_bytes.fetch_sub(bytes, Ordering::Relaxed);
        let source = self.stats.source(self.topic);
        if acked {
            source.on_acked(1);
        } else {
            source.on_nacked(1);
        }
    }
}

/// A subscription that cannot be read (it does not exist, permission denied, …): `run`
/// stops with this line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("reading subscription {subscription}: {message}")]
pub struct SubscriberFailed {
    pub subscription: String,
    pub message: String,
}

/// The answer path of one Pub/Sub message: the library's handler plus the flow-control
/// permits it holds until answered.
struct PubSubAck {
    handler: PubSubHandler,
    bytes: u64,
    counters: Arc<Counters>,
    _message_permit: OwnedSemaphorePermit,
    _byte_permit: OwnedSemaphorePermit,
}

impl Acknowledge for PubSubAck {
    fn ack(self: Box<Self>) {
        self.counters.answered(self.bytes, true);
        self.handler.ack();
    }

    fn nack(self: Box<Self>) {
        self.counters.answered(self.bytes, false);
        self.handler.nack();
    }
}

/// A message pulled and paid for (permits taken), on its way to a batch. Its answer path is
/// an [`AckHandle`] from the start, so a message dropped on the way (at a stop) is nacked
/// and counted like any other.
struct Pulled {
    message: Message,
    ack: AckHandle,
}

/// Reads one subscription; see the module doc.
pub struct SubscriberActor {
    topic: Topic,
    subscription: String,
    options: SubscriberOptions,
    client: google_cloud_pubsub::client::Subscriber,
    sink: Arc<dyn Sink>,
    counters: Arc<Counters>,
    stop: ShutdownTrigger,
    stopped: Shutdown,
    tokens: Vec<ShutdownToken>,
    failures: mpsc::UnboundedSender<SubscriberFailed>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    batcher: Option<tokio::task::JoinHandle<()>>,
}

impl SubscriberActor {
    /// Connects a client for `topic`'s subscription. The streams open when the actor
    /// starts; a failure to read them arrives on `failures`.
    pub async fn connect(
        config: &PubSubConfig,
        topic: Topic,
        options: SubscriberOptions,
        sink: Arc<dyn Sink>,
        stats: Arc<Stats>,
        failures: mpsc::UnboundedSender<SubscriberFailed>,
    ) -> Result<Self, ConnectError> {
        let client = connect::subscriber(config, options.streams).await?;
        let (stop, stopped) = shutdown::channel();
        Ok(SubscriberActor {
            topic,
            subscription: config.subscription_path(config.subscription_of(topic)),
            options,
            client,
            sink,
            counters: Arc::new(Counters::new(topic, stats)),
            stop,
            stopped,
            tokens: Vec::new(),
            failures,
            readers: Vec::new(),
            batcher: None,
        })
    }
}

impl Actor for SubscriberActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let o = &self.options;
        let messages = Arc::new(Semaphore::new(o.max_outstanding_messages));
        let bytes = Arc::new(Semaphore::new(o.max_outstanding_bytes));
        // The server's flow control is per stream; splitting the budget keeps what the
        // library buffers near what we may take. Ours (the semaphores) is the hard bound.
        let per_stream = o.max_outstanding_messages.div_ceil(o.streams) as i64;
        let per_stream_bytes = o.max_outstanding_bytes.div_ceil(o.streams) as i64;
        // A small queue between the pulls and the batcher: enough to fill a batch while a
        // hand-over is in flight, not a second buffer.
        let (tx, rx) = mpsc::channel(o.batch_size.max(16));
        for stream_no in 0..o.streams {
            let stream = self
                .client
                .subscribe(&self.subscription)
                .set_max_outstanding_messages(per_stream)
                .set_max_outstanding_bytes(per_stream_bytes)
                .set_max_lease(o.max_lease)
                .set_max_lease_extension(o.lease_extension)
                // The library default, stated because shutdown relies on it: after the
                // stream is dropped the client still takes the acks of messages the
                // pipeline holds, and nacks the rest only once every handler is answered.
                .set_shutdown_behavior(ShutdownBehavior::WaitForProcessing)
                .build();
            self.tokens.push(stream.shutdown_token());
            let reader = Reader {
                stream,
                stream_no,
                subscription: self.subscription.clone(),
                tx: tx.clone(),
                messages: messages.clone(),
                bytes: bytes.clone(),
                max_bytes: o.max_outstanding_bytes as u64,
                counters: self.counters.clone(),
                stop: self.stopped.clone(),
                failures: self.failures.clone(),
            };
            self.readers.push(tokio::task::spawn_local(reader.run()));
        }
        let batcher = Batcher {
            rx,
            topic: self.topic,
            sink: self.sink.clone(),
            batch_size: o.batch_size,
            concurrency: o.submit_concurrency.max(1),
            in_flight: Arc::new(Semaphore::new(o.submit_concurrency.max(1))),
            stop: self.stopped.clone(),
        };
        self.batcher = Some(tokio::task::spawn_local(batcher.run()));
        tracing::info!(
            subscription = %self.subscription,
            streams = o.streams,
            max_outstanding_messages = o.max_outstanding_messages,
            "subscriber started"
        );
    }
}

/// Stop pulling. Resolves once nothing more will be handed to the pipeline: the readers
/// have ended, the batcher has dropped (nacked) what it had queued and its hand-overs in
/// flight have returned. Messages already handed over are answered by the pipeline as usual.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPulling;

impl Handler<StopPulling> for SubscriberActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopPulling, _: &mut Self::Context) -> Self::Result {
        self.stop.trigger();
        let readers = std::mem::take(&mut self.readers);
        let batcher = self.batcher.take();
        Box::pin(async move {
            for r in readers {
                let _ = r.await;
            }
            if let Some(b) = batcher {
                let _ = b.await;
            }
        })
    }
}

/// Close the streams once every handed-over message has been answered: the library sends
/// the remaining acks and nacks, then stops. Send after the pipeline has drained.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

impl Handler<Close> for SubscriberActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        self.stop.trigger();
        let tokens = std::mem::take(&mut self.tokens);
        Box::pin(async move {
            for t in tokens {
                t.shutdown().await;
            }
        })
    }
}

/// The subscriber's counters now.
#[derive(Message)]
#[rtype(result = "SubscriberCounts")]
pub struct Counts;

impl Handler<Counts> for SubscriberActor {
    type Result = SubscriberCounts;

    fn handle(&mut self, _: Counts, _: &mut Self::Context) -> SubscriberCounts {
        self.counters.snapshot()
    }
}

/// One streaming pull: take a permit, pull a message, pay its bytes, pass it on.
struct Reader {
    stream: MessageStream,
    stream_no: usize,
    subscription: String,
    tx: mpsc::Sender<Pulled>,
    messages: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_bytes: u64,
    counters: Arc<Counters>,
    stop: Shutdown,
    failures: mpsc::UnboundedSender<SubscriberFailed>,
}

impl Reader {
    async fn run(mut self) {
        let mut stop = self.stop.clone();
        loop {
            let message_permit = tokio::select! {
                biased;
                _ = stop.wait() => return,
                p = self.messages.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let next = tokio::select! {
                biased;
                _ = stop.wait() => return,
                next = self.stream.next() => next,
            };
            let (message, handler) = match next {
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    let failed = SubscriberFailed {
                        subscription: self.subscription.clone(),
                        message: describe(&e),
                    };
                    // `run` prints the failure once; every stream of the subscription
                    // would say the same.
                    tracing::debug!(stream = self.stream_no, error = %failed, "stream failed");
                    let _ = self.failures.send(failed);
                    return;
                }
                None => {
                    tracing::debug!(stream = self.stream_no, "stream closed");
                    return;
                }
            };
            // A message larger than the whole byte budget takes all of it, alone.
            let size = (message.data.len() as u64).clamp(1, self.max_bytes);
            let byte_permit = tokio::select! {
                biased;
                // Dropping the handler nacks: the message goes back to Pub/Sub.
                _ = stop.wait() => return,
                p = self.bytes.clone().acquire_many_owned(size as u32) => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            self.counters.taken(size);
            let pulled = Pulled {
                message,
                ack: AckHandle::new(PubSubAck {
                    handler,
                    bytes: size,
                    counters: self.counters.clone(),
                    _message_permit: message_permit,
                    _byte_permit: byte_permit,
                }),
            };
            // A full queue (the pipeline pushing back) must not hold up a stop: dropping
            // `pulled` nacks it and returns its permits.
            tokio::select! {
                biased;
                _ = stop.wait() => return,
                sent = self.tx.send(pulled) => if sent.is_err() { return },
            }
        }
    }
}

/// Gathers pulled messages into batches and hands them over, a bounded number at once.
struct Batcher {
    rx: mpsc::Receiver<Pulled>,
    topic: Topic,
    sink: Arc<dyn Sink>,
    batch_size: usize,
    concurrency: usize,
    in_flight: Arc<Semaphore>,
    stop: Shutdown,
}

impl Batcher {
    async fn run(mut self) {
        let mut stop = self.stop.clone();
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.wait() => break,
                first = self.rx.recv() => match first {
                    Some(first) => first,
                    None => break,
                },
            };
            let mut batch = Vec::with_capacity(self.batch_size.min(1024));
            batch.push(envelope(self.topic, first));
            while batch.len() < self.batch_size {
                match self.rx.try_recv() {
                    Ok(p) => batch.push(envelope(self.topic, p)),
                    Err(_) => break,
                }
            }
            // Dropping `batch` on a stop nacks it.
            let permit = tokio::select! {
                biased;
                _ = stop.wait() => break,
                p = self.in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let sink = self.sink.clone();
            tokio::task::spawn_local(async move {
                let _permit = permit;
                // A closed pipeline drops the batch: every envelope nacks.
                if sink.submit(batch).await.is_err() {
                    tracing::debug!("pipeline closed; batch nacked");
                }
            });
        }
        // What is still queued goes back to Pub/Sub (each dropped message nacks); then wait
        // for the hand-overs in flight, so that nothing reaches the pipeline after this.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        let _ = self.in_flight.acquire_many(self.concurrency as u32).await;
    }
}

fn envelope(topic: Topic, p: Pulled) -> Envelope {
    let Pulled { message, ack } = p;
    let publish_time = message
        .publish_time
        .as_ref()
        .map(|t| t.seconds() * 1_000_000 + i64::from(t.nanos()) / 1000)
        .unwrap_or_else(now_micros);
    Envelope {
        topic,
        message_id: message.message_id,
        data: message.data,
        publish_time,
        ack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_bounds_name_their_flag() {
        assert_eq!(SubscriberOptions::default().validate(), Ok(()));
        let o = SubscriberOptions {
            streams: 0,
            ..Default::default()
        };
        assert_eq!(o.validate().map_err(|e| e.setting), Err("--pubsub-streams"));
        let o = SubscriberOptions {
            streams: 8,
            max_outstanding_messages: 4,
            ..Default::default()
        };
        assert_eq!(
            o.validate().map_err(|e| e.setting),
            Err("--pubsub-max-outstanding-messages")
        );
        let o = SubscriberOptions {
            lease_extension: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(
            o.validate().map_err(|e| e.setting),
            Err("--pubsub-lease-extension")
        );
    }

    #[test]
    fn counters_track_the_high_water() {
        let c = Counters::new(Topic::Payments, Arc::default());
        c.taken(10);
        c.taken(20);
        c.answered(10, true);
        c.taken(5);
        c.answered(20, false);
        let s = c.snapshot();
        assert_eq!((s.outstanding, s.outstanding_high_water), (1, 2));
        assert_eq!(s.outstanding_bytes_high_water, 30);
        assert_eq!((s.acked, s.nacked), (1, 1));
        assert_eq!(s.delivered, 3);
    }
}
