//! The answer path of pulled messages: each message's entry, and the ledger of a batch.
//!
//! Owns: [`Entry`] (the library's handler plus the flow-control permits the message holds,
//! answered exactly once: by its batch's ledger, or by the nack of a drop), [`Pulled`] and
//! [`PulledBatch`], the [`Ledger`] of one batch. Must never: ack or nack on its own
//! initiative: only the pipeline answers, through the envelopes' [`AckHandle`](crate::ack::AckHandle)s.

use super::counters::{AnswerTime, Counters, Receipt};
use crate::ack::{Answer, Ledger, NackReason};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler as PubSubHandler;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// One pulled message's answer path: the library's handler plus the flow-control permits
/// it holds until answered. Dropped unanswered (a stop while it waits for a batch), it nacks
/// and is counted like any other nack.
pub(super) struct Entry {
    handler: Option<PubSubHandler>,
    receipt: Receipt,
    counters: Arc<Counters>,
    _message_permit: OwnedSemaphorePermit,
    _byte_permit: OwnedSemaphorePermit,
}

impl Entry {
    pub(super) fn new(
        handler: PubSubHandler,
        receipt: Receipt,
        counters: Arc<Counters>,
        message_permit: OwnedSemaphorePermit,
        byte_permit: OwnedSemaphorePermit,
    ) -> Self {
        Entry {
            handler: Some(handler),
            receipt,
            counters,
            _message_permit: message_permit,
            _byte_permit: byte_permit,
        }
    }

    fn answer(&mut self, answer: Answer, now: AnswerTime) {
        let Some(handler) = self.handler.take() else {
            return;
        };
        match answer {
            Answer::Ack => {
                self.counters.answered_at(self.receipt, None, now);
                handler.ack();
            }
            Answer::Nack(reason) => {
                self.counters.answered_at(self.receipt, Some(reason), now);
                handler.nack();
            }
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.handler.is_some() {
            self.answer(Answer::Nack(NackReason::Dropped), AnswerTime::now());
        }
    }
}

/// A message pulled and paid for (permits taken), on its way to a batch.
pub(super) struct Pulled {
    pub(super) message: Message,
    /// Pub/Sub's delivery count (only on subscriptions with a dead-letter policy).
    pub(super) delivery_attempt: Option<i32>,
    pub(super) entry: Entry,
}

/// The ledger of one batch handed to the pipeline: its messages' entries, by slot. A write
/// answers its rows of the batch with one call (one lock), and the permits of each go back
/// as it is answered.
pub(super) struct PulledBatch {
    entries: Mutex<Box<[Option<Entry>]>>,
}

impl PulledBatch {
    pub(super) fn new(entries: Vec<Option<Entry>>) -> Self {
        PulledBatch {
            // Shrunk to the batch: a ledger lives as long as its last unanswered message (a
            // held payment), and a few messages gathered into a vector sized for a full
            // batch would keep the whole vector alive meanwhile.
            entries: Mutex::new(entries.into_boxed_slice()),
        }
    }
}

impl Ledger for PulledBatch {
    fn settle(&self, slots: &[u32], answer: Answer) {
        // A poisoned lock (a panic mid-settle) is taken over: each entry answers at most once
        // whatever happened, and giving up would leave messages unanswered.
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = AnswerTime::now();
        for &slot in slots {
            // Taken out, so that its permits go back now, not when the whole batch is done.
            if let Some(mut entry) = entries.get_mut(slot as usize).and_then(Option::take) {
                entry.answer(answer, now);
            }
        }
    }
}
