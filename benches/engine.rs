//! The join engine's hot path, against a baseline measured in the same run (design §8).
//!
//! - `engine/pipeline`: pre-generated message bytes through the in-process source, the
//!   intake (decode, validate, route), the `JoinShard` actors and the `FactWriter` into a
//!   store that does nothing, every message acked: the whole per-message path but the store.
//! - `engine/hashmap_baseline`: the same bytes decoded and joined by a plain single-threaded
//!   loop over a `HashMap`, rows collected in batches and dropped: the least work a join can
//!   do.
//!
//! Run: `cargo bench --bench engine`. Results and their ratio go in BENCHMARKS.md.

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecom_stream::app::pipeline::{Drained, Pipeline};
use ecom_stream::config::EngineConfig;
use ecom_stream::dlq::TableOnly;
use ecom_stream::generator::MockData;
use ecom_stream::model::{decode, Event, StreamKind};
use ecom_stream::shutdown::Shutdown;
use ecom_stream::source::in_process::{Delivery, InProcessSource, Message, SourceOptions};
use ecom_stream::store::{
    DeadLetterStore, DlqEntry, FactSink, FactWrite, InvalidMessage, OrderLookup, Page,
    ReplayedEntry, StoreError,
};
use ecom_stream::telemetry::Stats;
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Orders, and as many payments; each payment shortly after its order, as in production.
const ORDERS: i64 = 100_000;

fn messages() -> Vec<Message> {
    let mut mock = MockData::new(7);
    let mut out = Vec::with_capacity(2 * ORDERS as usize);
    let mut pending = Vec::new();
    for id in 1..=ORDERS {
        let order = serde_json::to_vec(&mock.order(id)).unwrap();
        out.push(message(StreamKind::Orders, format!("o{id}"), order));
        let payment = serde_json::to_vec(&mock.payment(1_000_000 + id, id)).unwrap();
        pending.push(message(StreamKind::Payments, format!("p{id}"), payment));
        // Payments trail their orders by up to 8 messages.
        if pending.len() == 8 {
            out.append(&mut pending);
        }
    }
    out.append(&mut pending);
    out
}

fn message(topic: StreamKind, message_id: String, data: Vec<u8>) -> Message {
    Message {
        topic,
        message_id,
        data: Bytes::from(data),
        publish_time: 1,
    }
}

/// Accepts everything, keeps nothing: isolates the engine from storage.
struct NoopStore;

#[async_trait]
impl FactSink for NoopStore {
    async fn write_facts(&self, _: &[FactWrite]) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl OrderLookup for NoopStore {
    async fn known_orders(&self, _: &[i64]) -> Result<HashSet<i64>, StoreError> {
        Ok(HashSet::new())
    }
}

#[async_trait]
impl DeadLetterStore for NoopStore {
    async fn put_dead_letters(&self, _: &[DlqEntry]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn scan_dead_letters(
        &self,
        _: Option<i64>,
        _: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        Ok(Page::last(Vec::new()))
    }
    async fn delete_dead_letters(&self, _: &[ReplayedEntry]) -> Result<Vec<i64>, StoreError> {
        Ok(Vec::new())
    }
    async fn bump_dead_letter_attempts(&self, _: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn put_invalid(&self, _: &[InvalidMessage]) -> Result<(), StoreError> {
        Ok(())
    }
    async fn scan_invalid(
        &self,
        _: Option<(StreamKind, String)>,
        _: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError> {
        Ok(Page::last(Vec::new()))
    }
}

/// One run of `msgs` through a fresh pipeline; returns the time from first delivery to last
/// ack (start-up and shutdown excluded).
fn run_pipeline(msgs: Vec<Message>, shards: usize) -> Duration {
    actix_rt::System::new().block_on(async move {
        let config = EngineConfig {
            shards,
            ..EngineConfig::default()
        };
        let stats = Arc::new(Stats::default());
        let pipeline = Pipeline::start(&config, Arc::new(NoopStore), Arc::new(TableOnly), stats)
            .expect("valid config");
        let source = InProcessSource::new(SourceOptions::default());
        let n = msgs.len() as u64;
        let started = Instant::now();
        let outcome = source
            .deliver(msgs, &pipeline.intake(), &Shutdown::never())
            .await;
        let elapsed = started.elapsed();
        assert_eq!(outcome, Delivery::Completed);
        assert_eq!(source.counts().acked, n);
        assert_eq!(pipeline.shutdown().await, Drained::Clean);
        elapsed
    })
}

/// The baseline: decode and join in one loop, rows batched by 1,000 and dropped.
fn hashmap_join(msgs: &[Message]) -> usize {
    let mut orders: HashMap<i64, ()> = HashMap::new();
    let mut early: HashMap<i64, Vec<FactWrite>> = HashMap::new();
    let mut batch: Vec<FactWrite> = Vec::with_capacity(1000);
    let mut written = 0;
    for m in msgs {
        match decode(m.topic, &m.data) {
            Ok(Event::Order(order)) => {
                orders.insert(order.order_id, ());
                if let Some(held) = early.remove(&order.order_id) {
                    batch.extend(held);
                }
                batch.push(FactWrite::Order {
                    order,
                    ts: m.publish_time,
                });
            }
            Ok(Event::Payment(payment)) => {
                let write = FactWrite::Payment {
                    payment,
                    ts: m.publish_time,
                };
                if orders.contains_key(&write.order_id()) {
                    batch.push(write);
                } else {
                    early.entry(write.order_id()).or_default().push(write);
                }
            }
            Err(_) => {}
        }
        if batch.len() >= 1000 {
            written += batch.len();
            black_box(&batch);
            batch.clear();
        }
    }
    written + batch.len()
}

fn engine(c: &mut Criterion) {
    let msgs = messages();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(msgs.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("hashmap_baseline", |b| {
        b.iter(|| assert_eq!(hashmap_join(black_box(&msgs)), msgs.len()))
    });
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut shard_counts = vec![1, cores];
    shard_counts.dedup();
    for shards in shard_counts {
        group.bench_with_input(
            BenchmarkId::new("pipeline", format!("{shards}_shards")),
            &shards,
            |b, &shards| {
                b.iter_custom(|iters| (0..iters).map(|_| run_pipeline(msgs.clone(), shards)).sum())
            },
        );
    }
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
