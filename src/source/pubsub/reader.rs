//! One streaming pull of a subscription.
//!
//! Owns: taking a message permit before each pull and a byte permit after it, and passing
//! the message on with its answer path. Must never: hold a message without both permits
//! (the bound of design §4.7), or let a full queue hold up a stop.

use super::actor::SubscriberFailed;
use super::answer::{PubSubAck, Pulled};
use super::counters::Counters;
use crate::ack::AckHandle;
use crate::pubsub::connect::describe;
use crate::shutdown::Shutdown;
use google_cloud_pubsub::subscriber::MessageStream;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};

/// One streaming pull: take a permit, pull a message, pay its bytes, pass it on.
pub(super) struct Reader {
    pub(super) stream: MessageStream,
    pub(super) stream_no: usize,
    pub(super) subscription: String,
    pub(super) tx: mpsc::Sender<Pulled>,
    pub(super) messages: Arc<Semaphore>,
    pub(super) bytes: Arc<Semaphore>,
    pub(super) max_bytes: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) stop: Shutdown,
    pub(super) failures: mpsc::UnboundedSender<SubscriberFailed>,
}

impl Reader {
    pub(super) async fn run(mut self) {
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
            let receipt =
                self.counters
                    .taken(size, &message.message_id, handler.delivery_attempt());
            let pulled = Pulled {
                message,
                delivery_attempt: handler.delivery_attempt(),
                ack: AckHandle::new(PubSubAck {
                    handler,
                    receipt,
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
