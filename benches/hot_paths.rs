//! The engine's per-message hot paths on their own, so that a change that makes one of
//! them slower shows up here even when the whole-pipeline bench (`engine`) is too noisy to
//! tell (docs/profile.md has their share of the instructions per message).
//!
//! - `decode`: one order and one payment from bytes to an `Event` (serde_json, validation).
//! - `content_hash`: the dedup key's content hash of an order and a payment.
//! - `route`: the shard of 1,000 order ids.
//! - `shard_apply`: one shard's `JoinState::apply` of a batch of 500 orders and their 500
//!   payments on a fresh state (order cache, dedup window lookups, content hashes, the rows
//!   and their ack wrappers).
//! - `ack_path`: 1,000 rows of one delivered batch answered as the writer answers them:
//!   each handle a slot of the batch's ledger carrying its durable note, all settled at
//!   once (`ack::settle`), the notes drained into the shard's dedup window.
//!
//! Run: `cargo bench --bench hot_paths`.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ecom_stream::ack::{self, AckHandle, Answer, Durable, DurableRoutes, Ledger};
use ecom_stream::config::EngineConfig;
use ecom_stream::join::dedup::{DedupKey, DedupWindow, Seen};
use ecom_stream::join::router::shard_of;
use ecom_stream::join::state::{JoinLimits, JoinState};
use ecom_stream::join::Routed;
use ecom_stream::model::decode;
use ecom_stream::telemetry::Stats;
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A batch's ledger that counts its acks, as a source's would do its bookkeeping.
struct CountLedger(AtomicU64);

impl Ledger for CountLedger {
    fn settle(&self, slots: &[u32], answer: Answer) {
        if answer == Answer::Ack {
            self.0.fetch_add(slots.len() as u64, Ordering::Relaxed);
        }
    }
}

fn limits() -> JoinLimits {
    let c = EngineConfig::default();
    JoinLimits {
        hold: c.hold,
        pending_capacity: c.pending_capacity,
        order_cache_capacity: c.order_cache_capacity,
        order_cache_ttl: c.order_cache_ttl,
        dedup_capacity: c.dedup_capacity,
    }
}

fn hot_paths(c: &mut Criterion) {
    // One order and its payment, as the engine bench sends them.
    let msgs = support::messages(1);
    let events: Vec<_> = msgs
        .iter()
        .map(|m| decode(m.topic, &m.data).expect("mock messages are valid"))
        .collect();
    let mut group = c.benchmark_group("hot_paths");
    group.throughput(Throughput::Elements(msgs.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for m in &msgs {
                let _ = black_box(decode(m.topic, black_box(&m.data)));
            }
        })
    });
    group.bench_function("content_hash", |b| {
        b.iter(|| {
            for e in &events {
                black_box(black_box(e).content_hash());
            }
        })
    });

    const BATCH: u64 = 1_000;
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("route", |b| {
        b.iter(|| {
            for id in 1..=BATCH as i64 {
                black_box(shard_of(black_box(id), 4));
            }
        })
    });
    // 500 orders, then their 500 payments: every payment finds its order in the cache.
    let batch: Vec<_> = support::messages(BATCH as i64 / 2)
        .iter()
        .map(|m| decode(m.topic, &m.data).expect("mock messages are valid"))
        .collect();
    let (orders, payments): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .partition(|e| matches!(e, ecom_stream::model::Event::Order(_)));
    let events: Vec<_> = orders.into_iter().chain(payments).collect();
    let stats = Arc::new(Stats::default());
    let none = HashSet::new();
    group.bench_function("shard_apply", |b| {
        b.iter_batched(
            || {
                let routed: Vec<Routed> = events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| Routed {
                        event: e.clone(),
                        ts: i as i64 + 1,
                        ack: AckHandle::none(),
                    })
                    .collect();
                (JoinState::new(&limits(), stats.clone()), routed)
            },
            |(mut state, routed)| {
                let fx = state.apply(routed, &none, tokio::time::Instant::now());
                black_box(fx.writes.len());
                (state, fx)
            },
            BatchSize::LargeInput,
        )
    });
    let (routes, mut inboxes) = DurableRoutes::new(1);
    group.bench_function("ack_path", |b| {
        b.iter_batched(
            || DedupWindow::new(1_000_000),
            |mut window| {
                let ledger: Arc<dyn Ledger> = Arc::new(CountLedger(AtomicU64::new(0)));
                let handles: Vec<AckHandle> = (1..=BATCH as i64)
                    .map(|id| {
                        let seen = Seen {
                            hash: id as u64,
                            ts: id,
                            dead_lettered: false,
                        };
                        AckHandle::slot(ledger.clone(), id as u32).noting(Durable {
                            shard: 0,
                            key: DedupKey::Order(id),
                            seen,
                        })
                    })
                    .collect();
                ack::settle(handles, Some(&routes));
                while let Ok(notes) = inboxes[0].try_recv() {
                    for note in notes {
                        window.remember(note.key, note.seen);
                    }
                }
                window
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
