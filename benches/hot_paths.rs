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
//! - `ack_path`: 1,000 rows answered as the writer answers them: each handle wrapped to
//!   teach the dedup window (`on_ack`), then acked.
//!
//! Run: `cargo bench --bench hot_paths`.

mod support;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ecom_stream::ack::{AckHandle, Acknowledge, NackReason};
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

/// An ack that counts, as a source's would do its bookkeeping.
struct Count(Arc<AtomicU64>);

impl Acknowledge for Count {
    fn ack(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn nack(self: Box<Self>, _: NackReason) {}
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
    let acked = Arc::new(AtomicU64::new(0));
    group.bench_function("ack_path", |b| {
        b.iter_batched(
            || DedupWindow::new(1_000_000),
            |window| {
                for id in 1..=BATCH as i64 {
                    let w = window.clone();
                    let seen = Seen {
                        hash: id as u64,
                        ts: id,
                        dead_lettered: false,
                    };
                    AckHandle::new(Count(acked.clone()))
                        .on_ack(move || w.remember(DedupKey::Order(id), seen))
                        .ack();
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
