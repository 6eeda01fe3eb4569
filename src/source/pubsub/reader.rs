//! One streaming pull of a subscription.
//!
//! Owns: taking a message permit before each pull and a byte permit after it, passing the
//! message on with its answer path, and opening a fresh stream when the old one failed or
//! the watch asks for one. Must never: hold a message without both permits (the bound of
//! design §4.7), let a full queue hold up a stop, or decide that a failure ends the run (it
//! reports to the [`StreamSignals`]; the watch decides).

use super::actor::StreamOpener;
use super::answer::{Entry, Pulled};
use super::counters::Counters;
use super::watch::StreamSignals;
use crate::pubsub::connect::ClientError;
use crate::shutdown::Shutdown;
use google_cloud_pubsub::subscriber::MessageStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// The longest pause before a failed stream is opened again. Below the watch's refusal
/// grace, so that a refusal that lasts is seen again within it.
const MAX_REOPEN_PAUSE: Duration = Duration::from_secs(10);
/// The pause after the first failure; it doubles with each failure in a row.
const FIRST_REOPEN_PAUSE: Duration = Duration::from_millis(500);

/// One streaming pull: take a permit, pull a message, pay its bytes, pass it on.
pub(super) struct Reader {
    pub(super) opener: Arc<StreamOpener>,
    pub(super) stream_no: usize,
    pub(super) subscription: String,
    pub(super) tx: mpsc::Sender<Pulled>,
    pub(super) messages: Arc<Semaphore>,
    pub(super) bytes: Arc<Semaphore>,
    pub(super) max_bytes: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) stop: Shutdown,
    pub(super) signals: Arc<StreamSignals>,
}

impl Reader {
    pub(super) async fn run(self) {
        let mut stop = self.stop.clone();
        let mut fresh = self.signals.fresh_streams();
        fresh.mark_unchanged();
        let mut stream = self.opener.open();
        let mut pause = FIRST_REOPEN_PAUSE;
        loop {
            match self.read(&mut stream, &mut fresh).await {
                Ended::Stop => return,
                Ended::FreshAsked => pause = FIRST_REOPEN_PAUSE,
                Ended::Failed {
                    error: e,
                    delivered,
                } => {
                    if delivered {
                        pause = FIRST_REOPEN_PAUSE;
                    }
                    // The library retries what may pass by itself; what reaches us is a
                    // refusal or a failure it gave up on. The watch decides what it means.
                    tracing::debug!(stream = self.stream_no, error = %e, "stream failed");
                    self.signals
                        .stream_failed(&self.subscription, e.to_string(), e.is_retriable());
                    tokio::select! {
                        biased;
                        _ = stop.wait() => return,
                        _ = fresh.changed() => {},
                        _ = tokio::time::sleep(pause) => {},
                    }
                    pause = (pause * 2).min(MAX_REOPEN_PAUSE);
                }
            }
            // The old stream's lease loop goes on until the pipeline has answered what it
            // handed over (its shutdown behaviour), so nothing it delivered is lost.
            stream = self.opener.open();
        }
    }

    /// Reads `stream` until a stop, a failure, or the watch asking for a fresh stream.
    async fn read(
        &self,
        stream: &mut MessageStream,
        fresh: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Ended {
        let mut stop = self.stop.clone();
        let mut delivered = false;
        loop {
            let message_permit = tokio::select! {
                biased;
                _ = stop.wait() => return Ended::Stop,
                p = self.messages.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return Ended::Stop,
                },
            };
            let next = tokio::select! {
                biased;
                _ = stop.wait() => return Ended::Stop,
                _ = fresh.changed() => return Ended::FreshAsked,
                next = stream.next() => next,
            };
            let (message, handler) = match next {
                Some(Ok(pair)) => pair,
                Some(Err(e)) => {
                    return Ended::Failed {
                        error: ClientError::rpc(e),
                        delivered,
                    }
                }
                None => {
                    tracing::debug!(stream = self.stream_no, "stream closed");
                    return Ended::Stop;
                }
            };
            // A message larger than the whole byte budget takes all of it, alone.
            let size = (message.data.len() as u64).clamp(1, self.max_bytes);
            let byte_permit = tokio::select! {
                biased;
                // Dropping the handler nacks: the message goes back to Pub/Sub.
                _ = stop.wait() => return Ended::Stop,
                p = self.bytes.clone().acquire_many_owned(size as u32) => match p {
                    Ok(p) => p,
                    Err(_) => return Ended::Stop,
                },
            };
            delivered = true;
            let published = message
                .publish_time
                .as_ref()
                .map(|t| t.seconds() * 1_000_000 + i64::from(t.nanos()) / 1000);
            let receipt = self.counters.taken(
                size,
                &message.message_id,
                handler.delivery_attempt(),
                published,
            );
            let pulled = Pulled {
                message,
                delivery_attempt: handler.delivery_attempt(),
                entry: Entry::new(
                    handler,
                    receipt,
                    self.counters.clone(),
                    message_permit,
                    byte_permit,
                ),
            };
            // The queue has room for the whole budget (see the actor), so this send waits
            // only in a race with a stop, which must not be held up: dropping `pulled`
            // nacks it and returns its permits.
            tokio::select! {
                biased;
                _ = stop.wait() => return Ended::Stop,
                sent = self.tx.send(pulled) => if sent.is_err() { return Ended::Stop },
            }
        }
    }
}

/// Why [`Reader::read`] returned.
enum Ended {
    /// Stopping (or the pipeline is gone): the reader ends.
    Stop,
    /// The watch saw an outage end: open a fresh stream at once rather than wait out the
    /// library's reconnect backoff.
    FreshAsked,
    /// The stream failed with an error the library does not retry, after delivering
    /// something or not.
    Failed { error: ClientError, delivered: bool },
}
