//! The [`SubscriberActor`]: one per subscription, starting its readers and its batcher and
//! stopping them in order.
//!
//! Owns: the client, how a stream is opened ([`StreamOpener`]) and every stream's shutdown
//! token, the messages `run` sends it ([`StopPulling`], [`Close`], [`GetCounts`]) and
//! [`SubscriberFailed`]. Must never: answer a message itself, or close the streams before
//! the pipeline has answered what it holds.

use super::batcher::Batcher;
use super::counters::{Counters, SubscriberCounts};
use super::reader::Reader;
use super::watch::StreamSignals;
use super::{Sink, SubscriberOptions};
use crate::model::StreamKind;
use crate::pubsub::connect::{self, ConnectError};
use crate::pubsub::PubSubConfig;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};
use crate::telemetry::Stats;
use actix::prelude::*;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior, ShutdownToken};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// A subscription that cannot be read (it does not exist, permission denied, …, for longer
/// than the watch's grace): `run` stops with this line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading subscription {subscription}: {message}")]
pub struct SubscriberFailed {
    pub subscription: String,
    pub message: String,
}
/// Reads one subscription; see the module doc.
pub struct SubscriberActor {
    topic: StreamKind,
    subscription: String,
    options: SubscriberOptions,
    client: google_cloud_pubsub::client::Subscriber,
    sink: Arc<dyn Sink>,
    counters: Arc<Counters>,
    stop: ShutdownTrigger,
    stopped: Shutdown,
    tokens: Arc<Mutex<Vec<ShutdownToken>>>,
    signals: Arc<StreamSignals>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    batcher: Option<tokio::task::JoinHandle<()>>,
}

impl SubscriberActor {
    /// Connects a client for `topic`'s subscription. The streams open when the actor
    /// starts; their failures are reported to `signals`.
    pub async fn connect(
        config: &PubSubConfig,
        topic: StreamKind,
        options: SubscriberOptions,
        sink: Arc<dyn Sink>,
        stats: Arc<Stats>,
        signals: Arc<StreamSignals>,
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
            tokens: Arc::new(Mutex::new(Vec::new())),
            signals,
            readers: Vec::new(),
            batcher: None,
        })
    }
}

impl Actor for SubscriberActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        let o = &self.options;
        self.counters.started(o.max_lease);
        let messages = Arc::new(Semaphore::new(o.max_outstanding_messages));
        let bytes = Arc::new(Semaphore::new(o.max_outstanding_bytes));
        // The server's flow control is per stream; splitting the budget keeps what the
        // library buffers near what we may take. Ours (the semaphores) is the hard bound.
        let per_stream = o.max_outstanding_messages.div_ceil(o.streams) as i64;
        let per_stream_bytes = o.max_outstanding_bytes.div_ceil(o.streams) as i64;
        // The queue between the pulls and the batcher holds whatever the pipeline has not
        // taken yet: while the intake is paused (a store outage) that is everything the
        // readers pull. Its bound is the budget itself: each queued message holds a message
        // permit, so the permits, not the queue, stop the pulling. A smaller queue stopped
        // the readers early, and what the server had already sent then stayed unread in
        // the stream, where the client library does not lease it: it came back after one
        // ack deadline under new ack ids, and our acks of the old copies were ignored (a
        // redelivery storm after every outage; RESILIENCE.md, "A store outage on a backlog").
        let (tx, rx) = mpsc::channel(o.max_outstanding_messages.max(1));
        let opener = Arc::new(StreamOpener {
            client: self.client.clone(),
            subscription: self.subscription.clone(),
            max_messages: per_stream,
            max_bytes: per_stream_bytes,
            max_lease: o.max_lease,
            lease_extension: o.lease_extension,
            tokens: self.tokens.clone(),
        });
        for stream_no in 0..o.streams {
            let reader = Reader {
                opener: opener.clone(),
                stream_no,
                subscription: self.subscription.clone(),
                tx: tx.clone(),
                messages: messages.clone(),
                bytes: bytes.clone(),
                max_bytes: o.max_outstanding_bytes as u64,
                counters: self.counters.clone(),
                stop: self.stopped.clone(),
                signals: self.signals.clone(),
            };
            self.readers.push(tokio::task::spawn_local(reader.run()));
        }
        let batcher = Batcher {
            rx,
            topic: self.topic,
            sink: self.sink.clone(),
            batch_size: o.batch_size,
            linger: o.linger,
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

/// Opens the streaming pulls of one subscription, all alike, and keeps each one's shutdown
/// token for [`Close`]. Readers open a fresh stream through it after a failure or an outage.
pub(super) struct StreamOpener {
    client: google_cloud_pubsub::client::Subscriber,
    subscription: String,
    max_messages: i64,
    max_bytes: i64,
    max_lease: Duration,
    lease_extension: Duration,
    /// One per stream ever opened: a replaced stream's lease loop still flushes the answers
    /// of what it delivered, and [`Close`] waits for that too. Grows by one per stream per
    /// outage, not per message.
    tokens: Arc<Mutex<Vec<ShutdownToken>>>,
}

impl StreamOpener {
    /// A new stream; it connects on its first read.
    pub(super) fn open(&self) -> MessageStream {
        let stream = self
            .client
            .subscribe(&self.subscription)
            .set_max_outstanding_messages(self.max_messages)
            .set_max_outstanding_bytes(self.max_bytes)
            .set_max_lease(self.max_lease)
            .set_max_lease_extension(self.lease_extension)
            // The library default, stated because shutdown relies on it: after the
            // stream is dropped the client still takes the acks of messages the
            // pipeline holds, and nacks the rest only once every handler is answered.
            .set_shutdown_behavior(ShutdownBehavior::WaitForProcessing)
            .build();
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.push(stream.shutdown_token());
        }
        stream
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
        let tokens = match self.tokens.lock() {
            Ok(mut tokens) => std::mem::take(&mut *tokens),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
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
pub struct GetCounts;

impl Handler<GetCounts> for SubscriberActor {
    type Result = SubscriberCounts;

    fn handle(&mut self, _: GetCounts, _: &mut Self::Context) -> SubscriberCounts {
        self.counters.snapshot()
    }
}
