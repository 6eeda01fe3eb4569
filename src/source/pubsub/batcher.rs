//! Gathers pulled messages into batches of envelopes and hands them to the [`Sink`].
//!
//! Owns: batching and the bound on hand-overs in flight. Must never: hand anything over once
//! it has stopped: what is queued then is dropped (nacked), and its end waits for the
//! hand-overs in flight.

use super::answer::{Pulled, PulledBatch};
use super::Sink;
use crate::ack::{AckHandle, Ledger};
use crate::clock::now_micros;
use crate::model::StreamKind;
use crate::shutdown::Shutdown;
use crate::source::Envelope;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// Gathers pulled messages into batches and hands them over, a bounded number at once.
pub(super) struct Batcher {
    pub(super) rx: mpsc::Receiver<Pulled>,
    pub(super) topic: StreamKind,
    pub(super) sink: Arc<dyn Sink>,
    pub(super) batch_size: usize,
    /// Longest wait for a partial batch once its first message is in.
    pub(super) linger: std::time::Duration,
    pub(super) concurrency: usize,
    pub(super) in_flight: Arc<Semaphore>,
    pub(super) stop: Shutdown,
}

impl Batcher {
    pub(super) async fn run(mut self) {
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
            let cap = self.batch_size.min(1024);
            let (mut batch, mut entries) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
            batch.push(envelope(self.topic, first, &mut entries));
            // What is queued now, then what comes within the linger: at a steady rate the
            // server sends a few messages at a time, and a batch per few cost the pipeline's
            // per-batch hops per few (issue 21). A backlog fills the batch without waiting.
            let linger = tokio::time::sleep(self.linger);
            tokio::pin!(linger);
            while batch.len() < self.batch_size {
                let next = match self.rx.try_recv() {
                    Ok(p) => Some(p),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                        biased;
                        _ = stop.wait() => None,
                        p = self.rx.recv() => p,
                        _ = &mut linger => None,
                    },
                };
                match next {
                    Some(p) => batch.push(envelope(self.topic, p, &mut entries)),
                    None => break,
                }
            }
            // One ledger for the batch: each envelope's answer is its slot in it.
            let ledger: Arc<dyn Ledger> = Arc::new(PulledBatch::new(entries));
            for (slot, env) in batch.iter_mut().enumerate() {
                env.ack = AckHandle::slot(ledger.clone(), slot as u32);
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

/// The envelope of `p`; its entry goes to `entries`, the batch's ledger-to-be, at the
/// envelope's position.
fn envelope(
    topic: StreamKind,
    p: Pulled,
    entries: &mut Vec<Option<super::answer::Entry>>,
) -> Envelope {
    let Pulled {
        message,
        delivery_attempt,
        entry,
    } = p;
    entries.push(Some(entry));
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
        // Pub/Sub counts from 1; anything else is "not counted".
        delivery_attempt: delivery_attempt.and_then(|n| u32::try_from(n).ok()),
        // Replaced by the message's slot in the batch's ledger.
        ack: AckHandle::none(),
    }
}
