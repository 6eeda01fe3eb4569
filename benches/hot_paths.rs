//! The engine's per-message hot paths on their own, so that a change that makes one of
//! them slower shows up here even when the whole-pipeline bench (`engine`) is too noisy to
//! tell (docs/profile.md has their share of the instructions per message).
//!
//! - `decode`: one order and one payment from bytes to an `Event` (serde_json, validation).
//! - `content_hash`: the dedup key's content hash of an order and a payment.
//!
//! Run: `cargo bench --bench hot_paths`.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ecom_stream::model::decode;
use std::hint::black_box;

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
    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
