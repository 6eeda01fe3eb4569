//! Load tool for the Cassandra store (DESIGN §8): rows/s written by the pipeline's
//! `FactWriter` into a live node, next to a raw-driver baseline measured in the same run,
//! and their ratio. Driven by `load/cassandra_writer.sh`; see there for usage.
//!
//! Both sides write the same prepared order upsert (`statements::Cql::upsert_order`, same
//! consistency, idempotent), into the same fresh keyspace, with the same bound on requests
//! in flight (`--cassandra-max-in-flight`, default 256), on the same single-threaded actix
//! runtime, on disjoint order ids (so neither overwrites the other's rows). The baseline is
//! a bare `buffer_unordered` loop over `execute_unpaged`; the writer side sends rows in
//! messages of 500 (as join shards do), each with an ack handle, and is timed until every
//! row is acked. Rounds alternate baseline/writer; medians are printed.
//!
//! Needs `ECOM_CASSANDRA_NODES` (and any other `ECOM_CASSANDRA_*` setting); without it, it
//! says so and exits 0. The keyspace `ecom_load_<random>` is dropped at the end.

use actix::Actor;
use clap::Parser;
use ecom_stream::ack::{AckHandle, Acknowledge};
use ecom_stream::config::EngineConfig;
use ecom_stream::model::Order;
use ecom_stream::source::generator::MockData;
use ecom_stream::store::cassandra::statements::{order_values, Cql};
use ecom_stream::store::cassandra::{self, CassandraArgs, CassandraStore};
use ecom_stream::store::FactWrite;
use ecom_stream::telemetry::Stats;
use ecom_stream::writer::{FactWriter, Flush, PendingWrite, WriteBatch, WriterOptions};
use futures_util::stream::{self, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Cassandra writer load: FactWriter vs raw driver, same run")]
struct Args {
    /// Rows per side per round.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// Rounds (each: baseline, then writer); medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[command(flatten)]
    cassandra: CassandraArgs,
}

struct Count(Arc<AtomicU64>, Arc<AtomicU64>);

impl Acknowledge for Count {
    fn ack(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn nack(self: Box<Self>) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

fn orders(first_id: i64, n: i64) -> Vec<Order> {
    let mut mock = MockData::new(first_id as u64);
    (first_id..first_id + n).map(|id| mock.order(id)).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("ECOM_CASSANDRA_NODES").is_none_or(|v| v.is_empty()) {
        eprintln!(
            "SKIPPED: cassandra_load needs a live node: set ECOM_CASSANDRA_NODES (e.g. \
             127.0.0.1:9042, see README 'Cassandra / ScyllaDB with Docker')"
        );
        return Ok(());
    }
    let args = Args::parse();
    anyhow::ensure!(
        args.rows > 0 && args.rounds > 0,
        "--rows and --rounds must be positive"
    );
    let mut cass = args.cassandra.clone();
    let tag = ecom_stream::rng::SplitMix64::from_entropy().next_u64();
    cass.cassandra_keyspace = format!("ecom_load_{tag:016x}");
    let config = cass.to_config()?;
    actix_rt::System::new().block_on(async move {
        cassandra::apply_schema(&config).await?;
        let store = Arc::new(CassandraStore::open(&config).await?);
        let result = measure(&args, &config, store.clone()).await;
        cassandra::schema::drop_keyspace(store.session(), &config.keyspace).await?;
        result
    })
}

async fn measure(
    args: &Args,
    config: &cassandra::CassandraConfig,
    store: Arc<CassandraStore>,
) -> anyhow::Result<()> {
    let session = store.session().clone();
    let mut raw = session
        .prepare(Cql::new(&config.keyspace).upsert_order)
        .await?;
    raw.set_is_idempotent(true);
    raw.set_consistency(config.write_consistency);
    let concurrency = config.max_in_flight;
    println!(
        "cores: {}; nodes: {}; rows per side per round: {}; rounds: {}; in flight: {}; \
         write consistency: {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.nodes.join(","),
        args.rows,
        args.rounds,
        concurrency,
        config.write_consistency
    );
    let (mut base_rates, mut writer_rates) = (Vec::new(), Vec::new());
    for round in 0..args.rounds as i64 {
        let base_first = 1 + round * 2 * args.rows;

        // Baseline: the bare driver, same statement, same bound on requests in flight.
        let batch = orders(base_first, args.rows);
        let started = Instant::now();
        let results: Vec<_> = stream::iter(
            batch
                .iter()
                .map(|order| session.execute_unpaged(&raw, order_values(order, 1))),
        )
        .buffer_unordered(concurrency)
        .collect()
        .await;
        let base = started.elapsed();
        let failed = results.iter().filter(|r| r.is_err()).count();
        anyhow::ensure!(failed == 0, "baseline: {failed} writes failed");

        // The pipeline's writer into the Cassandra store.
        let writer_rows = orders(base_first + args.rows, args.rows)
            .into_iter()
            .map(|order| FactWrite::Order { order, ts: 1 })
            .collect();
        let took = through_writer(store.clone(), writer_rows).await?;

        let (b, w) = (rate(args.rows, base), rate(args.rows, took));
        println!(
            "round {}: raw driver {b:>10.0} rows/s ({:.2}s)   FactWriter {w:>10.0} rows/s ({:.2}s)   ratio {:.2}",
            round + 1,
            base.as_secs_f64(),
            took.as_secs_f64(),
            w / b
        );
        base_rates.push(b);
        writer_rates.push(w);
    }
    let (b, w) = (median(base_rates), median(writer_rates));
    println!(
        "median: raw driver {b:.0} rows/s; FactWriter {w:.0} rows/s; ratio (writer/raw) {:.2}",
        w / b
    );
    Ok(())
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9)
}

async fn through_writer(
    store: Arc<CassandraStore>,
    rows: Vec<FactWrite>,
) -> anyhow::Result<Duration> {
    let defaults = EngineConfig::default();
    let n = rows.len() as u64;
    let writer = FactWriter::new(
        store,
        Arc::new(Stats::default()),
        WriterOptions {
            batch_size: defaults.batch_size,
            linger: defaults.linger,
            max_in_flight: defaults.max_in_flight,
            mailbox_capacity: defaults.mailbox_capacity,
            retry: defaults.retry,
        },
    )
    .start();
    let (acked, nacked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut msgs = Vec::new();
    let mut batch = Vec::with_capacity(500);
    for write in rows {
        batch.push(PendingWrite {
            write,
            ack: AckHandle::new(Count(acked.clone(), nacked.clone())),
        });
        if batch.len() == 500 {
            msgs.push(std::mem::take(&mut batch));
        }
    }
    msgs.push(batch);
    let started = Instant::now();
    for m in msgs {
        writer.send(WriteBatch(m)).await?;
    }
    writer.send(Flush).await?;
    let took = started.elapsed();
    let (a, f) = (
        acked.load(Ordering::Relaxed),
        nacked.load(Ordering::Relaxed),
    );
    anyhow::ensure!(a == n && f == 0, "writer: {a} acked, {f} nacked of {n}");
    Ok(took)
}
