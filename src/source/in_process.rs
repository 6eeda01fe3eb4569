//! A source that delivers messages from memory with Pub/Sub's contract: flow control on
//! outstanding (un-acked) messages, redelivery of nacked ones, and an ack per message.
//!
//! Owns: delivering a finite feed through the [`Intake`] and waiting until every message of
//! it is acked. Used by `demo`, the tests and the benches, so they exercise the same
//! ack/nack path a Pub/Sub subscription does. Must never: count a message as done before it
//! is acked, or hold more than `max_outstanding` un-acked messages.

use crate::ack::{AckHandle, Answer, Ledger, NackReason};
use crate::clock::now_micros;
use crate::model::StreamKind;
use crate::shutdown::Shutdown;
use crate::source::intake::Intake;
use crate::source::Envelope;
use crate::telemetry::{AckLags, Stats};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// A message as published: what the source keeps until it is acked.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: StreamKind,
    pub message_id: String,
    pub data: Bytes,
    /// µs since the epoch; 0 means "stamp it when first delivered" (generation time).
    pub publish_time: i64,
}

/// Flow control and pacing.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// Un-acked messages at most (Pub/Sub's max outstanding messages).
    pub max_outstanding: usize,
    /// Un-acked payload bytes at most (Pub/Sub's max outstanding bytes). A message larger
    /// than this is delivered alone.
    pub max_outstanding_bytes: usize,
    /// Messages per delivery to the intake.
    pub batch_size: usize,
    /// Deliveries being decoded and routed at once.
    pub concurrency: usize,
    /// Messages per second, or unlimited.
    pub rate: Option<f64>,
    /// How long a nacked message waits before it is delivered again, so a failing store is
    /// not hammered in a tight loop.
    pub redelivery_delay: Duration,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            max_outstanding: 50_000,
            max_outstanding_bytes: 100 * 1024 * 1024,
            batch_size: 500,
            concurrency: 4,
            rate: None,
            redelivery_delay: Duration::from_millis(200),
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every message was acked.
    Completed,
    /// Shutdown fired first; un-acked messages stay un-acked.
    Interrupted,
}

/// Flow-control high-water marks of the source. Deliveries, acks and nacks are counted per
/// topic in the shared [`Stats`] (`Stats::source`), as a Pub/Sub subscriber counts them.
#[derive(Debug, Default)]
struct HighWater {
    /// The most messages ever outstanding at once: tests assert flow control with it.
    outstanding_high_water: AtomicU64,
    /// The most payload bytes ever outstanding at once.
    outstanding_bytes_high_water: AtomicU64,
}

struct Shared {
    options: SourceOptions,
    /// One permit per message that may be outstanding.
    outstanding: Arc<Semaphore>,
    /// One permit per payload byte that may be outstanding.
    bytes: Arc<Semaphore>,
    /// Nacked messages, when they may be delivered again, and the permits they still hold:
    /// a message waiting for redelivery is still outstanding, so this queue is bounded by
    /// `max_outstanding` and by `max_outstanding_bytes`.
    redeliver: Mutex<VecDeque<(Instant, Message, Permits)>>,
    /// Woken on every nack, and on acks when the delivery loop can act on them (see
    /// [`Shared::wake_after_acks`]).
    changed: Notify,
    /// Acks so far: every `wake_every`-th wakes the loop.
    acks: AtomicU64,
    /// Acks per wake-up of the loop: a batch's worth of room, or a quarter of the bound when
    /// that is smaller.
    wake_every: u64,
    counts: HighWater,
    /// Received / acked / nacked per topic: the source's own counters are these.
    stats: Arc<Stats>,
}

/// What a message holds while it is outstanding: one message permit and this many byte
/// permits, taken from the semaphores and given back by [`Shared::release`] on its ack.
/// Counted by hand, not held as permit objects, so that a batch's acks give back their
/// permits in one call per semaphore.
#[derive(Debug)]
struct Permits {
    bytes: u32,
}

/// The in-process source. Clones share state.
#[derive(Clone)]
pub struct InProcessSource {
    shared: Arc<Shared>,
}

/// A snapshot of the source's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SourceCounts {
    pub delivered: u64,
    pub acked: u64,
    pub nacked: u64,
    /// Delivered and not acked: in the pipeline, or nacked and waiting for redelivery.
    pub outstanding: u64,
    /// Of `outstanding`, the nacked messages waiting for redelivery.
    pub awaiting_redelivery: u64,
    pub outstanding_high_water: u64,
    pub outstanding_bytes_high_water: u64,
}

impl InProcessSource {
    /// A source that counts into its own [`Stats`].
    pub fn new(options: SourceOptions) -> Self {
        Self::with_stats(options, Arc::new(Stats::default()))
    }

    /// A source that counts deliveries, acks and nacks per topic into `stats` (the
    /// pipeline's, so `/metrics` and the status page show them).
    pub fn with_stats(options: SourceOptions, stats: Arc<Stats>) -> Self {
        let max = options.max_outstanding.clamp(1, Semaphore::MAX_PERMITS);
        let max_bytes = options
            .max_outstanding_bytes
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        InProcessSource {
            shared: Arc::new(Shared {
                outstanding: Arc::new(Semaphore::new(max)),
                bytes: Arc::new(Semaphore::new(max_bytes)),
                options: SourceOptions {
                    max_outstanding: max,
                    max_outstanding_bytes: max_bytes,
                    batch_size: options.batch_size.max(1),
                    concurrency: options.concurrency.max(1),
                    ..options
                },
                redeliver: Mutex::new(VecDeque::new()),
                changed: Notify::new(),
                acks: AtomicU64::new(0),
                wake_every: options.batch_size.min(max / 4).max(1) as u64,
                counts: HighWater::default(),
                stats,
            }),
        }
    }

    pub fn counts(&self) -> SourceCounts {
        let c = &self.shared.counts;
        let stats = &self.shared.stats;
        let (o, p) = (
            stats.source(StreamKind::Orders).snapshot(),
            stats.source(StreamKind::Payments).snapshot(),
        );
        SourceCounts {
            delivered: o.received + p.received,
            acked: o.acked + p.acked,
            nacked: o.nacked + p.nacked,
            outstanding: self.outstanding() as u64,
            awaiting_redelivery: lock(&self.shared.redeliver).len() as u64,
            outstanding_high_water: c.outstanding_high_water.load(Ordering::Relaxed),
            outstanding_bytes_high_water: c.outstanding_bytes_high_water.load(Ordering::Relaxed),
        }
    }

    fn outstanding(&self) -> usize {
        self.shared.options.max_outstanding - self.shared.outstanding.available_permits()
    }

    /// Delivers `messages` (and redeliveries of any that are nacked) through `intake` until
    /// every one is acked, or until `shutdown` fires.
    pub async fn deliver<I>(&self, messages: I, intake: &Intake, shutdown: &Shutdown) -> Delivery
    where
        I: IntoIterator<Item = Message>,
    {
        let opts = &self.shared.options;
        let batch_size = match opts.rate {
            // A batch is sent at once, so at low rates it must be small to pace smoothly.
            Some(rate) => ((rate / 20.0) as usize).clamp(1, opts.batch_size),
            None => opts.batch_size,
        };
        let slots = Arc::new(Semaphore::new(opts.concurrency));
        let mut fresh = messages.into_iter();
        // A fresh message taken from `fresh` that had no permits yet.
        let mut waiting: Option<Message> = None;
        let mut fresh_done = false;
        let started = Instant::now();
        let mut sent: u64 = 0;
        loop {
            if shutdown.is_triggered() {
                return Delivery::Interrupted;
            }
            let mut batch = Vec::with_capacity(batch_size);
            let mut kept = Vec::with_capacity(batch_size);
            while batch.len() < batch_size {
                if let Some((msg, permits)) = self.due_redelivery() {
                    batch.push(self.envelope(msg, permits, &mut kept));
                    continue;
                }
                let Some(msg) = waiting.take().or_else(|| fresh.next()) else {
                    fresh_done = true;
                    break;
                };
                match self.permits_for(&msg) {
                    Some(permits) => batch.push(self.envelope(msg, permits, &mut kept)),
                    None => {
                        waiting = Some(msg);
                        break;
                    }
                }
            }
            self.open_ledger(&mut batch, kept);
            if batch.is_empty() {
                if fresh_done && waiting.is_none() && self.outstanding() == 0 {
                    return Delivery::Completed;
                }
                // Nothing can go out now: wait for an ack, a nack, or a redelivery to fall due.
                let mut stop = shutdown.clone();
                tokio::select! {
                    _ = self.shared.changed.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = stop.wait() => return Delivery::Interrupted,
                }
                continue;
            }
            self.note_outstanding();
            // Both waits below end at shutdown: with a stalled store a slot may never free
            // up, and the batch in hand is then dropped, which nacks it.
            let mut stop = shutdown.clone();
            if let Some(rate) = opts.rate {
                sent += batch.len() as u64;
                let due = started + Duration::from_secs_f64(sent as f64 / rate);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.wait() => return Delivery::Interrupted,
                }
            }
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return Delivery::Interrupted,
                },
                _ = stop.wait() => return Delivery::Interrupted,
            };
            let intake = intake.clone();
            // Spawned, not awaited inline: this loop must keep polling acks while the
            // pipeline works, and `slots` bounds how many deliveries are in the air.
            actix_rt::spawn(async move {
                let _slot = slot;
                if let Err(e) = intake.submit(batch).await {
                    // The batch's handles were dropped, which nacks them: redelivered later.
                    tracing::warn!(error = %e, "delivery failed; messages will be redelivered");
                }
            });
        }
    }

    /// Takes the permits `msg` needs to be outstanding, if they are free now.
    fn permits_for(&self, msg: &Message) -> Option<Permits> {
        let message = self.shared.outstanding.try_acquire().ok()?;
        let max = self.shared.options.max_outstanding_bytes;
        let n = msg.data.len().clamp(1, max) as u32;
        let bytes = self.shared.bytes.try_acquire_many(n).ok()?;
        // Given back by `Shared::release` when the message is acked.
        message.forget();
        bytes.forget();
        Some(Permits { bytes: n })
    }

    /// The envelope of one delivery of `msg`; the message itself (kept for redelivery) goes
    /// to `kept`, the batch's ledger-to-be, at the envelope's position.
    fn envelope(
        &self,
        mut msg: Message,
        permits: Permits,
        kept: &mut Vec<Option<(Message, Permits)>>,
    ) -> Envelope {
        if msg.publish_time == 0 {
            msg.publish_time = generation_time();
        }
        let envelope = Envelope {
            topic: msg.topic,
            message_id: msg.message_id.clone(),
            data: msg.data.clone(),
            publish_time: msg.publish_time,
            // Not counted here: the fact writer's own bound applies.
            delivery_attempt: None,
            // Replaced by the message's slot in the batch's ledger (`open_ledger`).
            ack: AckHandle::none(),
        };
        kept.push(Some((msg, permits)));
        envelope
    }

    /// Keeps one ledger for the batch: each envelope's answer is its slot in it.
    fn open_ledger(&self, batch: &mut [Envelope], kept: Vec<Option<(Message, Permits)>>) {
        if batch.is_empty() {
            return;
        }
        let mut received = [0u64; 2];
        for env in batch.iter() {
            received[topic_index(env.topic)] += 1;
        }
        for (topic, n) in TOPICS.into_iter().zip(received) {
            if n > 0 {
                self.shared.stats.source(topic).on_received(n);
            }
        }
        let ledger: Arc<dyn Ledger> = Arc::new(DeliveryLedger {
            shared: self.shared.clone(),
            // Shrunk to the batch: the ledger lives as long as its last unanswered message.
            kept: Mutex::new(kept.into_boxed_slice()),
        });
        for (slot, env) in batch.iter_mut().enumerate() {
            env.ack = AckHandle::slot(ledger.clone(), slot as u32);
        }
    }

    fn due_redelivery(&self) -> Option<(Message, Permits)> {
        let mut queue = lock(&self.shared.redeliver);
        match queue.front() {
            Some((due, _, _)) if *due <= Instant::now() => {
                queue.pop_front().map(|(_, m, p)| (m, p))
            }
            _ => None,
        }
    }

    fn note_outstanding(&self) {
        let counts = &self.shared.counts;
        let messages = self.outstanding() as u64;
        counts
            .outstanding_high_water
            .fetch_max(messages, Ordering::Relaxed);
        let bytes =
            self.shared.options.max_outstanding_bytes - self.shared.bytes.available_permits();
        counts
            .outstanding_bytes_high_water
            .fetch_max(bytes as u64, Ordering::Relaxed);
    }
}

/// A write timestamp for a message generated in process: the clock in µs, made strictly
/// increasing, so that no two messages of this process tie under last-write-wins (a tie
/// would let the order in which writes happen to land decide the row).
fn generation_time() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_micros();
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    now.max(prev.saturating_add(1))
}

/// Locks the redelivery queue. A poisoned lock (a panic while holding it) is taken over
/// rather than given up on: the queue itself is always in a valid state, and giving up would
/// lose the messages in it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

const TOPICS: [StreamKind; 2] = [StreamKind::Orders, StreamKind::Payments];

fn topic_index(topic: StreamKind) -> usize {
    match topic {
        StreamKind::Orders => 0,
        StreamKind::Payments => 1,
    }
}

impl Shared {
    /// Queues nacked messages (with the permits they still hold) for redelivery after the
    /// redelivery delay, and counts them.
    fn redeliver_later(&self, nacked: Vec<(Message, Permits)>, reason: NackReason) {
        let due = Instant::now() + self.options.redelivery_delay;
        let mut queue = lock(&self.redeliver);
        for (message, permits) in nacked {
            self.stats.source(message.topic).on_nacked(1, reason);
            queue.push_back((due, message, permits));
        }
        drop(queue);
        self.changed.notify_one();
    }

    /// Gives back the permits of `messages` acked messages holding `bytes` byte permits.
    fn release(&self, messages: usize, bytes: usize) {
        self.outstanding.add_permits(messages);
        self.bytes.add_permits(bytes);
    }

    /// Wakes the delivery loop when acks let it act: every `wake_every` acks (room for
    /// another batch) and whenever nothing is outstanding (a delivery may be complete). A
    /// wake per ack cost a cross-thread wake-up (a syscall and a context switch) per message
    /// while the loop waited for a chunk's last acks (docs/profile.md); the loop also looks
    /// again every 20 ms.
    fn wake_after_acks(&self, n: u64) {
        let before = self.acks.fetch_add(n, Ordering::Relaxed);
        let idle = self.outstanding.available_permits() == self.options.max_outstanding;
        if idle || before / self.wake_every != (before + n) / self.wake_every {
            self.changed.notify_one();
        }
    }
}

/// The ledger of one delivered batch: each message kept for redelivery, with the permits
/// it holds, until its slot is settled.
struct DeliveryLedger {
    shared: Arc<Shared>,
    kept: Mutex<Box<[Kept]>>,
}

/// A ledger slot: the message and its permits until answered.
type Kept = Option<(Message, Permits)>;

impl Ledger for DeliveryLedger {
    fn settle(&self, slots: &[u32], answer: Answer) {
        let stats = &self.shared.stats;
        match answer {
            Answer::Ack => {
                let (mut messages, mut bytes, mut acked) = (0usize, 0usize, [0u64; 2]);
                let now = now_micros();
                let mut lags = [AckLags::at(now), AckLags::at(now)];
                {
                    let mut kept = lock(&self.kept);
                    for &slot in slots {
                        let Some((message, permits)) =
                            kept.get_mut(slot as usize).and_then(Option::take)
                        else {
                            continue;
                        };
                        let topic = topic_index(message.topic);
                        lags[topic].push(message.publish_time);
                        acked[topic] += 1;
                        messages += 1;
                        bytes += permits.bytes as usize;
                    }
                }
                for ((topic, n), lags) in TOPICS.into_iter().zip(acked).zip(&lags) {
                    if n > 0 {
                        stats.source(topic).on_acked(n);
                        stats.source(topic).on_acked_lags(lags);
                    }
                }
                // Release the permits before waking the loop, so it sees the messages as done.
                self.shared.release(messages, bytes);
                self.shared.wake_after_acks(messages as u64);
            }
            Answer::Nack(reason) => {
                let nacked: Vec<(Message, Permits)> = {
                    let mut kept = lock(&self.kept);
                    slots
                        .iter()
                        .filter_map(|&slot| kept.get_mut(slot as usize).and_then(Option::take))
                        .collect()
                };
                self.shared.redeliver_later(nacked, reason);
            }
        }
    }
}

/// A ledger goes when its last handle does, and every handle answers its slot when it goes,
/// so nothing is left here then. If something were (a panic between taking a slot out of
/// its handle and settling it), it is handed back for redelivery, with its permits, as a
/// drop is: never lost, and never holding the source's budget for ever.
impl Drop for DeliveryLedger {
    fn drop(&mut self) {
        let kept = self
            .kept
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left: Vec<(Message, Permits)> = kept.iter_mut().filter_map(Option::take).collect();
        if !left.is_empty() {
            self.shared.redeliver_later(left, NackReason::Dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::generation_time;

    #[test]
    fn generation_times_strictly_increase() {
        let mut last = generation_time();
        for _ in 0..100_000 {
            let t = generation_time();
            assert!(t > last);
            last = t;
        }
    }
}
