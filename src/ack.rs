//! The acknowledgement a message carries from its source to the point where its effect is
//! durable (design §4.4).
//!
//! Owns: the one-shot ack/nack contract between a source and the pipeline. Must never: let a
//! message vanish unanswered. An [`AckHandle`] dropped without an answer nacks, so a bug or a
//! shutdown that drops a message makes the source redeliver it instead of losing it.

/// Why a message was handed back for redelivery: counted per source as
/// `ecom_stream_messages_nacked_total{reason=…}`, so that a user sees what the nacks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NackReason {
    /// The pipeline is stopping: held and queued messages go back for the next run.
    Shutdown,
    /// A store call the message needed failed (an outage, a timeout).
    StoreFailed,
    /// The message's row could not be written (within the poison-row bound).
    WriteFailed,
    /// Its dead-letter record (table or topic) could not be written.
    DeadLetterFailed,
    /// Dropped unanswered: no component decided, so the drop guard nacked it.
    Dropped,
}

impl NackReason {
    /// Every reason, in the order their counters are kept.
    pub const ALL: [NackReason; 5] = [
        NackReason::Shutdown,
        NackReason::StoreFailed,
        NackReason::WriteFailed,
        NackReason::DeadLetterFailed,
        NackReason::Dropped,
    ];

    /// The label value of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            NackReason::Shutdown => "shutdown",
            NackReason::StoreFailed => "store_failed",
            NackReason::WriteFailed => "write_failed",
            NackReason::DeadLetterFailed => "dead_letter_failed",
            NackReason::Dropped => "dropped",
        }
    }

    /// The reason's position in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a source does when the pipeline answers for one of its messages.
pub trait Acknowledge: Send + 'static {
    /// The message's effect is durable: the source may forget it.
    fn ack(self: Box<Self>);
    /// The message was not handled, for `reason`: the source must deliver it again.
    fn nack(self: Box<Self>, reason: NackReason);
}

/// A message's pending answer. Answer it exactly once with [`ack`](Self::ack) or
/// [`nack`](Self::nack); dropping it unanswered nacks.
#[must_use = "dropping an AckHandle nacks the message"]
pub struct AckHandle {
    inner: Inner,
    /// Which delivery this answers, when the source said (see [`Origin`]).
    origin: Option<Box<Origin>>,
}

/// Which delivery a handle answers: what the fact writer needs to dead-letter a row whose
/// write keeps failing (the message id keys `invalid_messages`; the attempt bounds retries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The source's id for the message (Pub/Sub message id).
    pub message_id: String,
    /// How many times the source has delivered it, this delivery included, when the source
    /// counts (Pub/Sub does only for subscriptions with a dead-letter policy).
    pub delivery_attempt: Option<u32>,
}

/// One answer path, or several answered together. Merging flattens into `Many`, so a
/// payment delivered ten thousand times while held is one list, not a ten-thousand-deep
/// nest whose answer would recurse through the stack.
enum Inner {
    None,
    One(Box<dyn Acknowledge>),
    Many(Vec<Box<dyn Acknowledge>>),
}

impl AckHandle {
    pub fn new(inner: impl Acknowledge) -> Self {
        AckHandle {
            inner: Inner::One(Box::new(inner)),
            origin: None,
        }
    }

    /// The same handle, saying which delivery it answers.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(Box::new(origin));
        self
    }

    /// Which delivery this answers, if the source said.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_deref()
    }

    /// A handle that answers nobody: for messages with no source to answer (replay, tests).
    pub fn none() -> Self {
        AckHandle {
            inner: Inner::None,
            origin: None,
        }
    }

    pub fn ack(mut self) {
        match std::mem::replace(&mut self.inner, Inner::None) {
            Inner::None => {}
            Inner::One(a) => a.ack(),
            Inner::Many(all) => all.into_iter().for_each(|a| a.ack()),
        }
    }

    /// Hands the message back for redelivery; `reason` is counted by the source.
    pub fn nack(mut self, reason: NackReason) {
        self.nack_in_place(reason);
    }

    fn nack_in_place(&mut self, reason: NackReason) {
        match std::mem::replace(&mut self.inner, Inner::None) {
            Inner::None => {}
            Inner::One(a) => a.nack(reason),
            Inner::Many(all) => all.into_iter().for_each(|a| a.nack(reason)),
        }
    }

    /// One handle that answers both: used when a duplicate delivery joins a held payment, so
    /// that both deliveries are answered when the one effect is durable.
    pub fn merge(mut self, mut other: AckHandle) -> AckHandle {
        let a = std::mem::replace(&mut self.inner, Inner::None);
        let b = std::mem::replace(&mut other.inner, Inner::None);
        let inner = match (a, b) {
            (Inner::None, x) | (x, Inner::None) => x,
            (Inner::One(x), Inner::One(y)) => Inner::Many(vec![x, y]),
            (Inner::Many(mut xs), Inner::One(y)) | (Inner::One(y), Inner::Many(mut xs)) => {
                xs.push(y);
                Inner::Many(xs)
            }
            (Inner::Many(mut xs), Inner::Many(ys)) => {
                xs.extend(ys);
                Inner::Many(xs)
            }
        };
        // The first delivery names the message; the highest attempt count bounds retries.
        let origin = match (self.origin.take(), other.origin.take()) {
            (Some(mut a), Some(b)) => {
                a.delivery_attempt = a.delivery_attempt.max(b.delivery_attempt);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        AckHandle { inner, origin }
    }

    /// Runs `on_ack` just before acking: how the dedup window learns that a write is durable.
    pub fn on_ack(mut self, on_ack: impl FnOnce() + Send + 'static) -> AckHandle {
        let origin = self.origin.take();
        let mut wrapped = AckHandle::new(OnAck {
            handle: self,
            on_ack,
        });
        wrapped.origin = origin;
        wrapped
    }

    fn is_empty(&self) -> bool {
        matches!(self.inner, Inner::None)
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.nack_in_place(NackReason::Dropped);
    }
}

impl std::fmt::Debug for AckHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_empty() {
            "AckHandle(none)"
        } else {
            "AckHandle(pending)"
        })
    }
}

struct OnAck<F> {
    handle: AckHandle,
    on_ack: F,
}

impl<F: FnOnce() + Send + 'static> Acknowledge for OnAck<F> {
    fn ack(self: Box<Self>) {
        let OnAck { handle, on_ack } = *self;
        on_ack();
        handle.ack();
    }
    fn nack(self: Box<Self>, reason: NackReason) {
        self.handle.nack(reason);
    }
}

/// A source stand-in for tests: counts how its messages were answered.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Acknowledge, NackReason};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    pub(crate) struct Tally {
        pub(crate) acks: AtomicUsize,
        pub(crate) nacks: AtomicUsize,
    }

    pub(crate) struct Probe(pub(crate) Arc<Tally>);

    impl Acknowledge for Probe {
        fn ack(self: Box<Self>) {
            self.0.acks.fetch_add(1, Ordering::SeqCst);
        }
        fn nack(self: Box<Self>, _: NackReason) {
            self.0.nacks.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::testing::{Probe, Tally};

    #[test]
    fn drop_nacks_and_merge_answers_both() {
        let t = Arc::new(Tally::default());
        drop(AckHandle::new(Probe(t.clone())));
        assert_eq!(t.nacks.load(Ordering::SeqCst), 1);

        let hook = Arc::new(AtomicUsize::new(0));
        let h2 = hook.clone();
        AckHandle::new(Probe(t.clone()))
            .merge(AckHandle::new(Probe(t.clone())))
            .on_ack(move || {
                h2.fetch_add(1, Ordering::SeqCst);
            })
            .ack();
        assert_eq!(t.acks.load(Ordering::SeqCst), 2);
        assert_eq!(hook.load(Ordering::SeqCst), 1);

        AckHandle::new(Probe(t.clone()))
            .on_ack(|| panic!("must not run on nack"))
            .nack(NackReason::WriteFailed);
        assert_eq!(t.nacks.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn many_merges_stay_flat_and_answer_each_delivery_once() {
        let t = Arc::new(Tally::default());
        let mut h = AckHandle::none();
        for _ in 0..200_000 {
            h = h.merge(AckHandle::new(Probe(t.clone())));
        }
        // A nested chain this long would overflow the stack when answered or dropped.
        drop(h);
        assert_eq!(t.nacks.load(Ordering::SeqCst), 200_000);
        let both = AckHandle::new(Probe(t.clone()))
            .merge(AckHandle::new(Probe(t.clone())))
            .merge(AckHandle::new(Probe(t.clone())).merge(AckHandle::new(Probe(t.clone()))));
        both.ack();
        assert_eq!(t.acks.load(Ordering::SeqCst), 4);
    }
}
