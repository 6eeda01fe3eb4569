//! The fact writer against raw batched writes to the same embedded store (design §8).
//!
//! - `writer/raw_batched`: `FactSink::write_facts` called in a loop with batches of 1,000 rows,
//!   one at a time: the store's own ceiling.
//! - `writer/raw_orders_then_payments`: the writes `ingest` makes of matching orders and
//!   payments files, written the same raw way: half the rows as new orders, then a payment
//!   for each (an update of the row). The same 50,000 writes; `load/ingest.sh` sets `ingest`
//!   against it, since an update costs SQLite more than an insert.
//! - `writer/fact_writer`: the same rows sent to the `FactWriter` actor in messages of 500
//!   (as shards send them), each row with an ack handle; timed until every row is acked.
//!
//! Both write to a fresh SQLite store (WAL, synchronous=FULL, the default) per iteration.
//! Run: `cargo bench --bench writer`.

use actix::Actor;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ecom_stream::ack::{AckHandle, Acknowledge};
use ecom_stream::config::EngineConfig;
use ecom_stream::generator::MockData;
use ecom_stream::store::embedded::{EmbeddedOptions, EmbeddedStore};
use ecom_stream::store::{FactSink, FactWrite};
use ecom_stream::telemetry::Stats;
use ecom_stream::writer::{FactWriter, Flush, RowWithAck, WriteBatch, WriterOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROWS: i64 = 50_000;

fn rows() -> Vec<FactWrite> {
    let mut mock = MockData::new(11);
    (1..=ROWS)
        .map(|id| FactWrite::Order {
            order: mock.order(id),
            ts: 1,
        })
        .collect()
}

/// Orders `1..=ROWS/2`, then a payment for each: the writes of an ingest of matching files.
fn ingest_writes() -> Vec<FactWrite> {
    let mut mock = MockData::new(12);
    let half = ROWS / 2;
    let orders = (1..=half).map(|id| FactWrite::Order {
        order: mock.order(id),
        ts: 1,
    });
    let mut orders: Vec<FactWrite> = orders.collect();
    orders.extend((1..=half).map(|id| FactWrite::Payment {
        payment: mock.payment(1_000_000 + id, id),
        ts: 2,
    }));
    orders
}

fn fresh_store() -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open store");
    (dir, Arc::new(store))
}

struct Count(Arc<AtomicU64>);

impl Acknowledge for Count {
    fn ack(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn nack(self: Box<Self>, _: ecom_stream::ack::NackReason) {}
}

fn raw_batched(rows: &[FactWrite]) -> Duration {
    let (_dir, store) = fresh_store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let started = Instant::now();
        for chunk in rows.chunks(1000) {
            store.write_facts(chunk).await.expect("write");
        }
        started.elapsed()
    })
}

fn through_writer(rows: Vec<FactWrite>) -> Duration {
    let (_dir, store) = fresh_store();
    actix_rt::System::new().block_on(async move {
        let defaults = EngineConfig::default();
        let writer = FactWriter::new(
            store,
            Arc::new(Stats::default()),
            WriterOptions {
                batch_size: defaults.batch_size,
                linger: defaults.linger,
                max_in_flight: defaults.max_in_flight,
                mailbox_capacity: defaults.mailbox_capacity,
                retry: defaults.retry,
                max_write_attempts: defaults.max_write_attempts,
            },
        )
        .start();
        let acked = Arc::new(AtomicU64::new(0));
        let mut msgs = Vec::new();
        let mut batch = Vec::with_capacity(500);
        for write in rows {
            batch.push(RowWithAck {
                write,
                ack: AckHandle::new(Count(acked.clone())),
            });
            if batch.len() == 500 {
                msgs.push(std::mem::take(&mut batch));
            }
        }
        msgs.push(batch);
        let started = Instant::now();
        for m in msgs {
            writer.send(WriteBatch(m)).await.expect("writer alive");
        }
        writer.send(Flush).await.expect("writer alive");
        let elapsed = started.elapsed();
        assert_eq!(acked.load(Ordering::Relaxed), ROWS as u64);
        elapsed
    })
}

fn writer(c: &mut Criterion) {
    let rows = rows();
    let mut group = c.benchmark_group("writer");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("raw_batched", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_batched(&rows)).sum())
    });
    let mixed = ingest_writes();
    group.bench_function("raw_orders_then_payments", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| raw_batched(&mixed)).sum())
    });
    group.bench_function("fact_writer", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| through_writer(rows.clone())).sum())
    });
    group.finish();
}

criterion_group!(benches, writer);
criterion_main!(benches);
