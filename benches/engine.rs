//! The join engine's hot path, against a baseline measured in the same run (design §8).
//!
//! - `engine/pipeline`: pre-generated message bytes through the in-process source, the
//!   intake (decode, validate, route), the `JoinShard` actors and the `FactWriter` into a
//!   store that does nothing, every message acked: the whole per-message path but the store.
//! - `engine/hashmap_baseline`: the same bytes decoded and joined by a plain single-threaded
//!   loop over a `HashMap`, rows collected in batches and dropped: the least work a join can
//!   do.
//!
//! - `engine/cpu_per_event`: not a criterion figure but printed by it: the process's CPU
//!   time (all threads) per event through the pipeline at 1, 2 and 4 shards, the median of
//!   5 runs each. The shards share nothing, so it should stay flat as shards are added
//!   (issue 21: within 15 %), whatever the cores do to the wall time.
//!
//! Run: `cargo bench --bench engine`. Results and their ratio go in BENCHMARKS.md.

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecom_stream::model::{decode, Event};
use ecom_stream::source::in_process::Message;
use ecom_stream::store::FactWrite;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;
use support::{messages, run_pipeline};

/// Orders, and as many payments; each payment shortly after its order, as in production.
const ORDERS: i64 = 100_000;

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
    let msgs = messages(ORDERS);
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

/// The CPU time of the whole process so far (every thread), from the kernel.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU per event at 1, 2 and 4 shards (median of 5 runs each), printed.
fn cpu_per_event(_: &mut Criterion) {
    let msgs = messages(ORDERS);
    let events = msgs.len() as f64;
    for shards in [1, 2, 4] {
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let before = process_cpu();
                run_pipeline(msgs.clone(), shards);
                (process_cpu() - before).as_nanos() as f64 / events
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!(
            "engine/cpu_per_event/{shards}_shards: {:.0} ns CPU per event (median of 5; runs {})",
            runs[2],
            runs.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

criterion_group!(benches, engine, cpu_per_event);
criterion_main!(benches);
