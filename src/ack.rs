//! The ledger: how a message's answer travels from its source to the point where its effect
//! is durable, and back (design §4.4). Follow a message here from receipt to ack.
//!
//! 1. A source delivers a batch and keeps one [`Ledger`] for it: the batch's receipts (the
//!    Pub/Sub handlers and flow-control permits, or the in-process source's copies for
//!    redelivery). Each message travels with an [`AckHandle`]: a slot number in that ledger
//!    (no allocation per message), its [`Origin`] inline, and, once the join decided what
//!    the message writes, a [`Durable`] note saying what becomes durable with it.
//! 2. Whoever makes the effect durable (the fact writer, the dead-letter actor) answers a
//!    whole write at once with [`settle`]: the notes first go back, as one message per
//!    shard, to the shard that owns their keys ([`DurableRoutes`]: the dedup window belongs
//!    to its shard and needs no lock), then each ledger settles its slots in one call.
//! 3. Every other path nacks, with a [`NackReason`], and a handle dropped unanswered nacks
//!    (as `dropped`), so nothing can vanish unanswered.
//!
//! Owns: the one-shot ack/nack contract, the batch ledgers' seam and the durable notes.
//! Must never: let a message vanish unanswered, or let a note reach its shard after the
//! source has seen the ack it belongs to (a redelivery arriving between them would be
//! written again: harmless, but not what the dedup window promises).

use std::sync::Arc;
use tokio::sync::mpsc;
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

/// How a batch's messages are answered: the source side of one delivered batch. Its slots
/// are settled in bulk, once per durable write, not once per message.
pub trait Ledger: Send + Sync + 'static {
    /// Answers the messages in `slots` (each slot exactly once over the ledger's life).
    fn settle(&self, slots: &[u32], answer: Answer);
}

/// What a source is told about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its effect is durable: the source may forget it.
    Ack,
    /// Not handled, for this reason: the source must deliver it again.
    Nack(NackReason),
}

/// A message's pending answer. Answer it exactly once with [`ack`](Self::ack) or
/// [`nack`](Self::nack), or with others in one [`settle`]; dropping it unanswered nacks.
#[must_use = "dropping an AckHandle nacks the message"]
pub struct AckHandle {
    inner: Inner,
    /// Which delivery this answers, when the source said (see [`Origin`]).
    origin: Option<Origin>,
    /// What becomes durable when this is acked, for the dedup window of its shard.
    note: Option<Durable>,
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

/// One answer path, or several answered together. Merging flattens into `Many` (whose
/// members are never `Many`), so a payment delivered ten thousand times while held is one
/// list, not a ten-thousand-deep nest whose answer would recurse through the stack.
enum Inner {
    None,
    /// A slot of a batch's ledger: the common case, no allocation of its own.
    Slot(Arc<dyn Ledger>, u32),
    /// A message answered on its own (ingest's files, tests).
    One(Box<dyn Acknowledge>),
    Many(Vec<Inner>),
}

impl Inner {
    fn answer(self, answer: Answer) {
        match self {
            Inner::None => {}
            Inner::Slot(ledger, slot) => ledger.settle(&[slot], answer),
            Inner::One(a) => match answer {
                Answer::Ack => a.ack(),
                Answer::Nack(reason) => a.nack(reason),
            },
            Inner::Many(all) => all.into_iter().for_each(|i| i.answer(answer)),
        }
    }
}

impl AckHandle {
    pub fn new(inner: impl Acknowledge) -> Self {
        AckHandle::from_inner(Inner::One(Box::new(inner)))
    }

    /// Slot `slot` of a batch's `ledger`: how a source that keeps a ledger hands out its
    /// messages' answers.
    pub fn slot(ledger: Arc<dyn Ledger>, slot: u32) -> Self {
        AckHandle::from_inner(Inner::Slot(ledger, slot))
    }

    fn from_inner(inner: Inner) -> Self {
        AckHandle {
            inner,
            origin: None,
            note: None,
        }
    }

    /// The same handle, saying which delivery it answers.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Which delivery this answers, if the source said.
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// A handle that answers nobody: for messages with no source to answer (replay, tests).
    pub fn none() -> Self {
        AckHandle::from_inner(Inner::None)
    }

    /// The same handle, noting what becomes durable when it is acked: how the dedup window
    /// of `note.shard` learns of it, through [`settle`]. A plain [`ack`](Self::ack) drops
    /// the note: a later duplicate is then written again (harmless: writes are idempotent),
    /// or, for a dead-lettered payment, held and dead-lettered again. Every path that makes
    /// an effect durable settles.
    pub fn noting(mut self, note: Durable) -> AckHandle {
        self.note = Some(note);
        self
    }

    pub fn ack(self) {
        self.answer(Answer::Ack);
    }

    /// Hands the message back for redelivery; `reason` is counted by the source.
    pub fn nack(self, reason: NackReason) {
        self.answer(Answer::Nack(reason));
    }

    fn answer(mut self, answer: Answer) {
        self.take_inner().answer(answer);
    }

    fn take_inner(&mut self) -> Inner {
        std::mem::replace(&mut self.inner, Inner::None)
    }

    /// One handle that answers both: used when a duplicate delivery joins a held payment, so
    /// that both deliveries are answered when the one effect is durable.
    pub fn merge(mut self, mut other: AckHandle) -> AckHandle {
        let inner = match (self.take_inner(), other.take_inner()) {
            (Inner::None, x) | (x, Inner::None) => x,
            (Inner::Many(mut xs), Inner::Many(ys)) => {
                xs.extend(ys);
                Inner::Many(xs)
            }
            (Inner::Many(mut xs), y) | (y, Inner::Many(mut xs)) => {
                xs.push(y);
                Inner::Many(xs)
            }
            (x, y) => Inner::Many(vec![x, y]),
        };
        // The first delivery names the message; the highest attempt count bounds retries.
        let origin = match (self.origin.take(), other.origin.take()) {
            (Some(mut a), Some(b)) => {
                a.delivery_attempt = a.delivery_attempt.max(b.delivery_attempt);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        AckHandle {
            inner,
            origin,
            note: self.note.take().or(other.note.take()),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self.inner, Inner::None)
    }
}

impl Drop for AckHandle {
    fn drop(&mut self) {
        self.take_inner().answer(Answer::Nack(NackReason::Dropped));
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

/// Acks every handle of one durable write (rows written, dead letters recorded): their
/// notes go to their shards first, one message per shard, then each run of handles from one
/// ledger is settled with one call.
pub fn settle(handles: impl IntoIterator<Item = AckHandle>, routes: Option<&DurableRoutes>) {
    let mut notes = Vec::new();
    let mut inners = Vec::new();
    for mut handle in handles {
        if let Some(note) = handle.note.take() {
            notes.push(note);
        }
        inners.push(handle.take_inner());
    }
    if let Some(routes) = routes {
        routes.send(notes);
    }
    let mut run: Option<(Arc<dyn Ledger>, Vec<u32>)> = None;
    for inner in inners {
        match inner {
            Inner::Slot(ledger, slot) => match &mut run {
                Some((current, slots)) if same_ledger(current, &ledger) => slots.push(slot),
                _ => {
                    if let Some((done, mut slots)) = run.take() {
                        done.settle(&slots, Answer::Ack);
                        slots.clear();
                        slots.push(slot);
                        run = Some((ledger, slots));
                    } else {
                        run = Some((ledger, vec![slot]));
                    }
                }
            },
            other => other.answer(Answer::Ack),
        }
    }
    if let Some((ledger, slots)) = run {
        ledger.settle(&slots, Answer::Ack);
    }
}

/// Whether two ledgers are one (by address: comparing the vtables too could tell one ledger
/// from itself across codegen units).
fn same_ledger(a: &Arc<dyn Ledger>, b: &Arc<dyn Ledger>) -> bool {
    std::ptr::eq(Arc::as_ptr(a).cast::<()>(), Arc::as_ptr(b).cast::<()>())
}

/// Identifies what an event writes: the order row's order half, or one payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DedupKey {
    Order(i64),
    Payment(i64),
}

/// What became durable for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// [`Event::content_hash`](crate::model::Event::content_hash) of the event.
    pub hash: u64,
    /// Its write timestamp: a slower ack of an older version must not overwrite a newer one.
    pub ts: i64,
    /// Whether the effect was a DLQ entry rather than a joined row: such a payment, seen
    /// again once its order is known, is joined instead of skipped.
    pub dead_lettered: bool,
}

/// A note that `key`'s effect is durable, addressed to the shard that owns the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub shard: u32,
    pub key: DedupKey,
    pub seen: Seen,
}

/// Where a shard reads the notes addressed to it. Unbounded, and bounded all the same: a
/// note exists only for a row its shard handed on, and the shard drains its inbox before
/// every batch and on every tick.
pub type DurableInbox = mpsc::UnboundedReceiver<Vec<Durable>>;

/// The way back from the writers to the shards: one inbox per shard.
#[derive(Debug)]
pub struct DurableRoutes {
    shards: Box<[mpsc::UnboundedSender<Vec<Durable>>]>,
}

impl DurableRoutes {
    /// Routes to `shards` shards, and each shard's inbox, in shard order.
    pub fn new(shards: usize) -> (Arc<Self>, Vec<DurableInbox>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..shards.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let routes = DurableRoutes {
            shards: tx.into_boxed_slice(),
        };
        (Arc::new(routes), rx)
    }

    /// Sends each note to its shard: one message per shard that has any. A shard that is
    /// gone (shutdown) needs no notes.
    fn send(&self, notes: Vec<Durable>) {
        if notes.is_empty() {
            return;
        }
        if self.shards.len() == 1 {
            let _ = self.shards[0].send(notes);
            return;
        }
        let mut per_shard: Vec<Vec<Durable>> = vec![Vec::new(); self.shards.len()];
        for note in notes {
            if let Some(bucket) = per_shard.get_mut(note.shard as usize) {
                bucket.push(note);
            }
        }
        for (to, notes) in self.shards.iter().zip(per_shard) {
            if !notes.is_empty() {
                let _ = to.send(notes);
            }
        }
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

    /// A ledger that records how each slot was settled, and in how many calls.
    #[derive(Default)]
    struct Book {
        answers: std::sync::Mutex<Vec<(u32, Answer)>>,
        calls: AtomicUsize,
    }

    impl Ledger for Book {
        fn settle(&self, slots: &[u32], answer: Answer) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            answers.extend(slots.iter().map(|&s| (s, answer)));
        }
    }

    fn note(shard: u32, id: i64) -> Durable {
        Durable {
            shard,
            key: DedupKey::Payment(id),
            seen: Seen {
                hash: 1,
                ts: 2,
                dead_lettered: false,
            },
        }
    }

    #[test]
    fn drop_nacks_and_merge_answers_both() {
        let t = Arc::new(Tally::default());
        drop(AckHandle::new(Probe(t.clone())));
        assert_eq!(t.nacks.load(Ordering::SeqCst), 1);

        AckHandle::new(Probe(t.clone()))
            .merge(AckHandle::new(Probe(t.clone())))
            .ack();
        assert_eq!(t.acks.load(Ordering::SeqCst), 2);

        let book = Arc::new(Book::default());
        drop(AckHandle::slot(book.clone(), 7));
        AckHandle::slot(book.clone(), 8).nack(NackReason::WriteFailed);
        let answers = book.answers.lock().unwrap().clone();
        assert_eq!(
            answers,
            vec![
                (7, Answer::Nack(NackReason::Dropped)),
                (8, Answer::Nack(NackReason::WriteFailed))
            ]
        );
    }

    #[test]
    fn settle_sends_the_notes_before_the_acks_and_settles_a_ledger_in_one_call() {
        let (routes, mut inboxes) = DurableRoutes::new(2);
        let book = Arc::new(Book::default());
        let t = Arc::new(Tally::default());
        let handles = vec![
            AckHandle::slot(book.clone(), 0).noting(note(1, 10)),
            AckHandle::slot(book.clone(), 1).noting(note(0, 11)),
            AckHandle::slot(book.clone(), 2),
            AckHandle::new(Probe(t.clone())).noting(note(1, 12)),
            AckHandle::none(),
        ];
        settle(handles, Some(&routes));
        assert_eq!(
            book.calls.load(Ordering::SeqCst),
            1,
            "one call per ledger run"
        );
        assert_eq!(book.answers.lock().unwrap().len(), 3);
        assert_eq!(t.acks.load(Ordering::SeqCst), 1);
        let to_0 = inboxes[0].try_recv().unwrap();
        let to_1 = inboxes[1].try_recv().unwrap();
        assert_eq!(to_0, vec![note(0, 11)]);
        assert_eq!(to_1, vec![note(1, 10), note(1, 12)]);
        assert!(inboxes[0].try_recv().is_err() && inboxes[1].try_recv().is_err());

        // A nack or a plain ack sends no note: only a durable write does, through settle.
        AckHandle::slot(book.clone(), 3)
            .noting(note(0, 13))
            .nack(NackReason::StoreFailed);
        assert!(inboxes[0].try_recv().is_err());
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
