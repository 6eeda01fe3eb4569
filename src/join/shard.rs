//! `JoinShard`: the actor that owns one slice of the order-id space.
//!
//! Owns: the I/O around [`JoinState`]: the batched store read-through before a batch, the
//! store recheck of payments whose hold ended, telling the state when the store was last
//! out (from the writer's gate, so holds pause through an outage), and the sends to the
//! writer and the dead-letter actor. Must never: process the next batch before the current
//! one has been handed on (handlers are atomic, which keeps per-order arrival order, design
//! §4.6), or send with `do_send` (it ignores mailbox bounds).

use crate::ack::DurableInbox;
use crate::dlq::dead_letter::{DeadLetter, DeadLetterPayments, UnmatchedPayment};
use crate::join::pending::HeldPayment;
use crate::join::state::{JoinLimits, JoinState};
use crate::join::Routed;
use crate::store::OrderLookup;
use crate::telemetry::{ActorKind, PendingGauge, Stats, StoreOp};
use crate::writer::gate::StoreGate;
use crate::writer::{FactWriter, RowWithAck, WriteBatch};
use actix::prelude::*;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A batch of events for this shard, in arrival order. Answered once every event has been
/// handed on (to the writer, the pending buffer, or the DLQ): that answer is what the
/// intake's `send().await` waits for.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Events(pub Vec<Routed>);

/// Shutdown: nack every held payment and hold no more. Answers with how many were nacked.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// Held payments now, for tests and metrics.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct PendingCount;

pub struct JoinShard {
    /// Which shard this is, for logs.
    id: usize,
    /// The join's decisions and its bounded state.
    state: JoinState,
    /// For the read-through and the recheck; written only by the writer and DLQ actors.
    store: Arc<dyn OrderLookup>,
    /// Where joined rows go.
    writer: Addr<FactWriter>,
    /// Where payments go whose order never came.
    dead_letter: Addr<DeadLetter>,
    stats: Arc<Stats>,
    /// Set on start: batches waiting for this shard before senders park.
    mailbox_capacity: usize,
    /// Where this shard reports its pending buffer (size and oldest hold) for metrics.
    pending_gauge: Arc<PendingGauge>,
    /// How often expired holds are looked for: a tenth of the hold time, kept between 5 ms
    /// (no busy timer for tiny holds) and 500 ms (no long overstay for long ones).
    tick: Duration,
    /// When shard 0 last probed a store whose last read failed (see [`Self::probe_reads`]).
    last_probe: Option<Instant>,
    /// The writer's store-health gate: while it says the store is out, no hold runs out.
    gate: Option<Arc<StoreGate>>,
    /// Notes of this shard's effects that became durable, from the writer and the
    /// dead-letter actor: drained into the dedup window before every batch and every tick.
    durable: Option<DurableInbox>,
}

/// How often shard 0 reads the store while its reads are failing.
const READ_PROBE_EVERY: Duration = Duration::from_secs(1);

impl JoinShard {
    pub fn new(
        id: usize,
        limits: &JoinLimits,
        store: Arc<dyn OrderLookup>,
        writer: Addr<FactWriter>,
        dead_letter: Addr<DeadLetter>,
        stats: Arc<Stats>,
        mailbox_capacity: usize,
    ) -> Self {
        JoinShard {
            id,
            state: JoinState::new(limits, stats.clone()).with_shard(id),
            pending_gauge: stats.pending_gauge(id),
            store,
            writer,
            dead_letter,
            stats,
            mailbox_capacity,
            tick: (limits.hold / 10).clamp(Duration::from_millis(5), Duration::from_millis(500)),
            last_probe: None,
            gate: None,
            durable: None,
        }
    }

    /// Reads the notes of this shard's durable effects from `inbox` (see
    /// [`DurableRoutes`](crate::ack::DurableRoutes)): without it the dedup window stays
    /// empty and every duplicate is written again, harmlessly.
    pub fn with_durable_inbox(mut self, inbox: DurableInbox) -> Self {
        self.durable = Some(inbox);
        self
    }

    /// Takes every note waiting in the inbox into the dedup window.
    fn learn_durable(&mut self) {
        let Some(inbox) = self.durable.as_mut() else {
            return;
        };
        while let Ok(notes) = inbox.try_recv() {
            self.state.remember_durable(notes);
        }
    }

    /// Pauses the holds while `gate` says the store is out (design §4.3, "Holds and store
    /// outages"): the gate the writer closes and the intake waits on.
    pub fn with_gate(mut self, gate: Arc<StoreGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Tells the state when the store was last out; returns whether holds are paused.
    fn note_store(&mut self, now: Instant) -> bool {
        if let Some(at) = self.gate.as_ref().and_then(|g| g.last_out(&self.stats)) {
            self.state.store_out(at);
        }
        self.state.holds_paused(now)
    }

    /// Reads which of `ids` the store knows. An empty list costs nothing.
    fn lookup(
        &self,
        ids: Vec<i64>,
    ) -> impl Future<Output = Result<HashSet<i64>, crate::store::StoreError>> + 'static {
        let store = self.store.clone();
        let stats = self.stats.clone();
        async move {
            if ids.is_empty() {
                return Ok(HashSet::new());
            }
            Stats::incr(&stats.store_reads);
            let found = store.known_orders(&ids).await;
            stats.on_store_result(StoreOp::Read, &found);
            found
        }
    }

    /// Publishes the pending buffer's size and oldest hold; called after every change.
    fn report_pending(&mut self) {
        let oldest = self.state.oldest_held_since();
        self.pending_gauge.set(self.state.pending_len(), oldest);
    }

    /// Rechecks the store for held payments, then joins or dead-letters each.
    fn recheck(&mut self, held: Vec<HeldPayment>) -> ResponseActFuture<Self, ()> {
        let ids = {
            let mut ids: Vec<i64> = held.iter().map(|h| h.payment.order_id).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        Box::pin(self.lookup(ids).into_actor(self).then(move |found, act, _| {
            let (writes, unmatched) = match found {
                Ok(in_store) => {
                    let r = act.state.resolve(held, &in_store);
                    (r.writes, r.unmatched)
                }
                Err(e) => {
                    // Neither joined nor provably unmatched: held again for another hold
                    // time (a nack would bring them straight back while the store is out;
                    // the intake's gate stops new deliveries meanwhile).
                    let payments = held.len();
                    let overflow = act.state.hold_again(held, Instant::now());
                    act.report_pending();
                    tracing::warn!(shard = act.id, payments, nacked = overflow.len(), error = %e.chain(), "store recheck failed; holding the payments again");
                    for payment in overflow {
                        payment.ack.nack(crate::ack::NackReason::StoreFailed);
                    }
                    (Vec::new(), Vec::new())
                }
            };
            let unmatched = unmatched
                .into_iter()
                .map(|mut h| UnmatchedPayment {
                    ack: act.state.dead_letter_ack(&mut h),
                    payment: h.payment,
                    ts: h.ts,
                })
                .collect();
            act.forward(writes, unmatched)
        }))
    }

    /// Hands rows to the writer and unmatched payments to the DLQ, waiting for room in each.
    /// If either actor is gone the message is dropped, and dropping nacks its deliveries.
    fn forward(
        &self,
        writes: Vec<RowWithAck>,
        unmatched: Vec<UnmatchedPayment>,
    ) -> ResponseActFuture<Self, ()> {
        let writer = self.writer.clone();
        let dead_letter = self.dead_letter.clone();
        let shard = self.id;
        let stats = self.stats.clone();
        Box::pin(
            async move {
                if !writes.is_empty() {
                    let sent = stats.mailbox(ActorKind::FactWriter, writer.send(WriteBatch(writes)));
                    if let Err(e) = sent.await {
                        tracing::error!(shard, error = %e, "writer unavailable; rows nacked");
                    }
                }
                if !unmatched.is_empty() {
                    let sent = stats.mailbox(
                        ActorKind::DeadLetter,
                        dead_letter.send(DeadLetterPayments(unmatched)),
                    );
                    if let Err(e) = sent.await {
                        tracing::error!(shard, error = %e, "dead-letter actor unavailable; payments nacked");
                    }
                }
            }
            .into_actor(self),
        )
    }

    /// A failed read marks the store down until a read succeeds, but once the store is back
    /// a run whose payments all find their order in the cache never reads again, and
    /// `/readyz` would stay 503 while everything works. So while reads are failing, shard 0
    /// (one probe per process, not per shard) reads one key a second; its outcome is
    /// recorded like any read's.
    fn probe_reads(&mut self, ctx: &mut Context<Self>) {
        if self.id != 0 || !self.stats.store_failing(StoreOp::Read) {
            return;
        }
        let now = Instant::now();
        if self
            .last_probe
            .is_some_and(|at| now.duration_since(at) < READ_PROBE_EVERY)
        {
            return;
        }
        self.last_probe = Some(now);
        let probe = self.lookup(vec![1]);
        ctx.spawn(
            async move {
                let _ = probe.await;
            }
            .into_actor(self),
        );
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        self.learn_durable();
        self.probe_reads(ctx);
        let now = Instant::now();
        self.note_store(now);
        let expired = self.state.expired(now);
        self.report_pending();
        if !expired.is_empty() {
            // `wait`: no batch is processed until these payments are decided, so an order
            // arriving meanwhile cannot slip between the recheck and the DLQ.
            let fut = self.recheck(expired);
            ctx.wait(fut);
        }
    }
}

impl Actor for JoinShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox_capacity.max(1));
        ctx.run_interval(self.tick, |act, ctx| act.on_tick(ctx));
    }
}

impl Handler<Events> for JoinShard {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Events, _: &mut Self::Context) -> Self::Result {
        self.learn_durable();
        let misses = self.state.misses(&msg.0);
        AtomicResponse::new(Box::pin(self.lookup(misses).into_actor(self).then(
            move |found, act, _| {
                let in_store = found.unwrap_or_else(|e| {
                    // Unknown is safe here: such payments are held and rechecked at expiry.
                    tracing::warn!(shard = act.id, error = %e.chain(), "order read-through failed; holding the payments");
                    HashSet::new()
                });
                let now = Instant::now();
                let fx = act.state.apply(msg.0, &in_store, now);
                act.report_pending();
                let forward = act.forward(fx.writes, Vec::new());
                let mut spilled = fx.spilled;
                if !spilled.is_empty() && act.note_store(now) {
                    // The buffer is full while the store is out: the oldest payment's order
                    // may be stuck behind the store, so it is not dead-lettered but handed
                    // back for redelivery (it waits at the intake's gate meanwhile).
                    // Debug only: the nacks are counted (`store_failed`), and once the store
                    // is back every batch may spill until the buffer drains.
                    tracing::debug!(shard = act.id, payments = spilled.len(), "pending buffer full during a store outage; oldest held payments nacked for redelivery");
                    for payment in spilled.drain(..) {
                        payment.ack.nack(crate::ack::NackReason::StoreFailed);
                    }
                }
                forward.then(move |(), act, _| -> ResponseActFuture<Self, ()> {
                    if spilled.is_empty() {
                        Box::pin(actix::fut::ready(()))
                    } else {
                        act.recheck(spilled)
                    }
                })
            },
        )))
    }
}

impl Handler<Drain> for JoinShard {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> usize {
        let held = self.state.drain();
        self.report_pending();
        let n = held.len();
        if n > 0 {
            tracing::info!(
                shard = self.id,
                payments = n,
                "shutdown: held payments nacked for redelivery"
            );
        }
        for payment in held {
            payment.ack.nack(crate::ack::NackReason::Shutdown);
        }
        n
    }
}

impl Handler<PendingCount> for JoinShard {
    type Result = usize;

    fn handle(&mut self, _: PendingCount, _: &mut Self::Context) -> usize {
        self.state.pending_len()
    }
}
