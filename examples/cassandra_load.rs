//! Load tool for the Cassandra store (design §8): rows/s written by the pipeline's
//! `FactWriter` into a live node, next to a raw-driver baseline measured in the same run,
//! and their ratio. Driven by `load/cassandra_writer.sh`; see there for usage.
//!
//! Both sides write the same prepared order upsert (`Stmt::UpsertOrder`, same
//! consistency, idempotent), into the same fresh keyspace, with the same bound on requests
//! in flight (`--cassandra-max-in-flight`, default 256), on the same single-threaded actix
//! runtime, on disjoint order ids (so neither overwrites the other's rows). The baseline is
//! a bare `buffer_unordered` loop over `execute_unpaged`; the writer side sends rows in
//! messages of 500 (as join shards do), each with an ack handle, and is timed until every
//! row is acked. Before round 1 the raw driver writes `--warmup` rows unmeasured (the
//! node's JIT is cold at first); then each round runs both sides, the baseline first in
//! odd rounds and the writer first in even ones. Each side's rows/s and the CPU this
//! process spent per row (from `/proc/self/stat`) are printed, then the medians.
//!
//! Needs `ECOM_CASSANDRA_NODES` (and any other `ECOM_CASSANDRA_*` setting); without it, it
//! says so and exits 0 (`load/cassandra_writer.sh` starts a node of its own when it is
//! unset). `--raw-only` measures the baseline alone. The keyspace `ecom_load_<random>` is
//! dropped at the end.

use actix::Actor;
use clap::Parser;
use ecom_stream::ack::{AckHandle, Acknowledge};
use ecom_stream::config::EngineConfig;
use ecom_stream::generator::MockData;
use ecom_stream::model::Order;
use ecom_stream::store::cassandra::statements::{order_values, Cql, Stmt};
use ecom_stream::store::cassandra::{self, CassandraArgs, CassandraStore};
use ecom_stream::store::FactWrite;
use ecom_stream::telemetry::Stats;
use ecom_stream::writer::{FactWriter, Flush, RowWithAck, WriteBatch, WriterOptions};
use futures_util::stream::{self, StreamExt};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
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
    /// Rows the raw driver writes before round 1, unmeasured (the node's JIT warms up on
    /// them, for both sides alike).
    #[arg(long, default_value_t = 20_000)]
    warmup: i64,
    /// Measure the raw-driver baseline only (the rate `load/pubsub_cassandra.sh` shows
    /// next to the pipeline's).
    #[arg(long)]
    raw_only: bool,
    #[command(flatten)]
    cassandra: CassandraArgs,
}

struct Count(Arc<AtomicU64>, Arc<AtomicU64>);

impl Acknowledge for Count {
    fn ack(self: Box<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn nack(self: Box<Self>, _: ecom_stream::ack::NackReason) {
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
        args.rows > 0 && args.rounds > 0 && args.warmup >= 0,
        "--rows and --rounds must be positive, --warmup not negative"
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
        .prepare(&Cql::new(&config.keyspace)[Stmt::UpsertOrder])
        .await?;
    raw.set_is_idempotent(true);
    raw.set_consistency(config.write_consistency);
    let concurrency = config.max_in_flight;
    println!(
        "cores: {}; nodes: {}; rows per side per round: {}; rounds: {}; in flight: {}; \
         write consistency: {:?}; warm-up rows: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        config.nodes.join(","),
        args.rows,
        args.rounds,
        concurrency,
        config.write_consistency,
        args.warmup
    );
    // Ids: round r uses 1 + 2·r·rows .. for both sides (disjoint), the warm-up the ids after
    // every round's.
    if args.warmup > 0 {
        let first = 1 + 2 * args.rows * args.rounds as i64;
        raw_side(&session, &raw, orders(first, args.warmup), concurrency).await?;
    }
    let (mut base, mut writer) = (Vec::new(), Vec::new());
    for round in 0..args.rounds as i64 {
        let base_first = 1 + round * 2 * args.rows;
        let base_rows = orders(base_first, args.rows);
        let writer_rows: Vec<FactWrite> = orders(base_first + args.rows, args.rows)
            .into_iter()
            .map(|order| FactWrite::Order { order, ts: 1 })
            .collect();
        // The side that goes first alternates, so that neither always meets a node warmed
        // (or loaded: compaction, flushes) by the other.
        let (b, w) = if args.raw_only {
            let b = raw_side(&session, &raw, base_rows, concurrency).await?;
            (b, None)
        } else if round % 2 == 0 {
            let b = raw_side(&session, &raw, base_rows, concurrency).await?;
            (b, Some(through_writer(store.clone(), writer_rows).await?))
        } else {
            let w = through_writer(store.clone(), writer_rows).await?;
            (
                raw_side(&session, &raw, base_rows, concurrency).await?,
                Some(w),
            )
        };
        let b = Side::new(args.rows, b);
        let mut line = format!("round {}: raw driver {}", round + 1, b.show());
        if let Some(w) = w {
            let w = Side::new(args.rows, w);
            line += &format!(
                "   FactWriter {}   ratio {:.2}{}",
                w.show(),
                w.rate / b.rate,
                if round % 2 == 0 {
                    ""
                } else {
                    " (writer first)"
                }
            );
            writer.push(w);
        }
        println!("{line}");
        base.push(b);
    }
    let (b_rate, b_cpu) = (
        median(base.iter().map(|s| s.rate).collect()),
        median(base.iter().map(|s| s.cpu_us_per_row).collect()),
    );
    if args.raw_only {
        println!("median: raw driver {b_rate:.0} rows/s, {b_cpu:.1} µs CPU/row");
        return Ok(());
    }
    let (w_rate, w_cpu) = (
        median(writer.iter().map(|s| s.rate).collect()),
        median(writer.iter().map(|s| s.cpu_us_per_row).collect()),
    );
    println!(
        "median: raw driver {b_rate:.0} rows/s, {b_cpu:.1} µs CPU/row; FactWriter {w_rate:.0} \
         rows/s, {w_cpu:.1} µs CPU/row; ratio (writer/raw) {:.2}",
        w_rate / b_rate
    );
    Ok(())
}

/// One side's figures in one round.
struct Side {
    rate: f64,
    took: Duration,
    /// CPU (user + system) this process spent per row while the side ran: the client's own
    /// cost, which the node's load on the same cores does not change much.
    cpu_us_per_row: f64,
}

impl Side {
    fn new(rows: i64, (took, cpu_s): (Duration, f64)) -> Self {
        Side {
            rate: rate(rows, took),
            took,
            cpu_us_per_row: cpu_s * 1e6 / rows as f64,
        }
    }

    fn show(&self) -> String {
        format!(
            "{:>8.0} rows/s ({:.2}s, {:.1} µs CPU/row)",
            self.rate,
            self.took.as_secs_f64(),
            self.cpu_us_per_row
        )
    }
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in the kernel's
/// USER_HZ = 100 ticks per second); 0 where there is no procfs.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(11) + tick(12)) as f64 / 100.0
}

/// The baseline: the bare driver, same statement, same bound on requests in flight.
/// Returns the wall time and the CPU seconds it took.
async fn raw_side(
    session: &Session,
    raw: &PreparedStatement,
    batch: Vec<Order>,
    concurrency: usize,
) -> anyhow::Result<(Duration, f64)> {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let results: Vec<_> = stream::iter(
        batch
            .iter()
            .map(|order| session.execute_unpaged(raw, order_values(order, 1))),
    )
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let took = (started.elapsed(), cpu_seconds() - cpu);
    let failed = results.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "baseline: {failed} writes failed");
    Ok(took)
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(1e-9)
}

/// The pipeline's writer into the Cassandra store, timed until every row is acked.
/// Returns the wall time and the CPU seconds it took.
async fn through_writer(
    store: Arc<CassandraStore>,
    rows: Vec<FactWrite>,
) -> anyhow::Result<(Duration, f64)> {
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
            max_write_attempts: defaults.max_write_attempts,
        },
    )
    .start();
    let (acked, nacked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut msgs = Vec::new();
    let mut batch = Vec::with_capacity(500);
    for write in rows {
        batch.push(RowWithAck {
            write,
            ack: AckHandle::new(Count(acked.clone(), nacked.clone())),
        });
        if batch.len() == 500 {
            msgs.push(std::mem::take(&mut batch));
        }
    }
    msgs.push(batch);
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for m in msgs {
        writer.send(WriteBatch(m)).await?;
    }
    writer.send(Flush).await?;
    let took = (started.elapsed(), cpu_seconds() - cpu);
    let (a, f) = (
        acked.load(Ordering::Relaxed),
        nacked.load(Ordering::Relaxed),
    );
    anyhow::ensure!(a == n && f == 0, "writer: {a} acked, {f} nacked of {n}");
    Ok(took)
}
