//! The acknowledgement a message carries from its source to the point where its effect is
//! durable (DESIGN §4.4).
//!
//! Owns: the one-shot ack/nack contract between a source and the pipeline. Must never: let a
//! message vanish unanswered. An [`AckHandle`] dropped without an answer nacks, so a bug or a
//! shutdown that drops a message makes the source redeliver it instead of losing it.

/// What a source does when the pipeline answers for one of its messages.
pub trait Acknowledge: Send + 'static {
    /// The message's effect is durable: the source may forget it.
    fn ack(self: Box<Self>);
    /// The message was not handled: the source must deliver it again.
    fn nack(self: Box<Self>);
}

/// A message's pending answer. Answer it exactly once with [`ack`](Self::ack) or
/// [`nack`](Self::nack); dropping it unanswered nacks.
#[must_use = "dropping an AckHandle nacks the message"]
pub struct AckHandle {
    inner: Option<Box<dyn Acknowledge>>,
}

impl AckHandle {
    pub fn new(inner: impl Acknowledge) -> Self {
        AckHandle {
            inner: Some(Box::new(inner)),
        }
    }

    /// A handle that answers nobody: for messages with no source to answer (replay, tests).
    pub fn none() -> Self {
        AckHandle { inner: None }
    }

    pub fn ack(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.ack();
        }
    }

    pub fn nack(mut self) {
        if let Some(inner) = self.inner.take() {
            inner.nack();
        }
    }

    /// One handle that answers both: used when a duplicate delivery joins a held payment, so
    /// that both deliveries are answered when the one effect is durable.
    pub fn merge(self, other: AckHandle) -> AckHandle {
        match (self.is_empty(), other.is_empty()) {
            (true, _) => other,
            (_, true) => self,
            _ => AckHandle::new(Both(self, other)),
        }
    }

    /// Runs `on_ack` just before acking: how the dedup window learns that a write is durable.
    pub fn on_ack(self, on_ack: impl FnOnce() + Send + 'static) -> AckHandle {
        AckHandle::new(OnAck {
            handle: self,
            on_ack,
        })
    }

    fn is_empty(&self) -> bool {
        self.inner.is_none()
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.nack();
        }
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

struct Both(AckHandle, AckHandle);

impl Acknowledge for Both {
    fn ack(self: Box<Self>) {
        let Both(a, b) = *self;
        a.ack();
        b.ack();
    }
    fn nack(self: Box<Self>) {
        let Both(a, b) = *self;
        a.nack();
        b.nack();
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
    fn nack(self: Box<Self>) {
        self.handle.nack();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Tally {
        acks: AtomicUsize,
        nacks: AtomicUsize,
    }
    struct Probe(Arc<Tally>);
    impl Acknowledge for Probe {
        fn ack(self: Box<Self>) {
            self.0.acks.fetch_add(1, Ordering::SeqCst);
        }
        fn nack(self: Box<Self>) {
            self.0.nacks.fetch_add(1, Ordering::SeqCst);
        }
    }

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
            .nack();
        assert_eq!(t.nacks.load(Ordering::SeqCst), 2);
    }
}
