//! One resilience test's world: a project of its own on the shared Pub/Sub emulator, a fresh
//! keyspace on the cluster at RF 3 read and written at QUORUM, the commands that use both,
//! and what the tests watch while `run` runs: its operations listener (`/metrics`,
//! `/readyz`), its PID and its peak RSS.
//!
//! Owns: how a resilience test starts commands and reads their state. Must never: guess a
//! port (each run listens on port 0 and the test reads the `serving on` line), or wait
//! without a limit that names what it waited for.

use crate::cli::{command, dlq_by_id_any_order, facts_by_id_any_order, Run, Running};
use crate::cluster::Cluster;
use crate::emulator::{emulator, fresh_project, Emulator};
use ecom_stream::pubsub::producer;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a one-shot command (`setup`, `query`, `dlq`, `produce`) may live: `setup`
/// waits for schema agreement across the three nodes after each table, on 2 busy cores.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(180);

/// How long a `run` may live in these tests (a hang guard: the longest scenario, the
/// outage, takes 2-3 minutes on the 2-core machine).
pub const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The seed `produce` uses by default; [`expected_row`] rebuilds its records.
const SEED: u64 = 42;

pub struct World {
    emulator: &'static Emulator,
    project: String,
    /// `(contact points, keyspace)`; `None`: the embedded SQLite store under `dir`.
    cassandra: Option<(String, String)>,
    dir: TempDir,
}

impl World {
    /// A fresh project and keyspace, both made by `setup` (topics with a 10 s ack deadline,
    /// so that what a run nacks or loses comes back soon; the keyspace at RF 3). `None`
    /// when the emulator is missing outside CI (the harness has said so).
    pub fn new(test: &str, cluster: &Cluster) -> Option<World> {
        let emulator = emulator(test)?;
        let project = fresh_project(test);
        let keyspace = format!("res_{}", project.replace('-', "_"));
        Some(World::set_up(
            emulator,
            project,
            Some((cluster.contact_points.clone(), keyspace)),
        ))
    }

    /// As [`World::new`] on the embedded SQLite store (`--store embedded` under the world's
    /// own data dir): for the tests that kill `run`, not the store.
    pub fn embedded(test: &str) -> Option<World> {
        let emulator = emulator(test)?;
        Some(World::set_up(emulator, fresh_project(test), None))
    }

    fn set_up(
        emulator: &'static Emulator,
        project: String,
        cassandra: Option<(String, String)>,
    ) -> World {
        let world = World {
            emulator,
            project,
            cassandra,
            dir: tempfile::tempdir().expect("data dir"),
        };
        world
            .run(&["setup", "--ack-deadline", "10s", "--retention", "10m"])
            .ok();
        world
    }

    /// The binary with this world's project and store (the keyspace and consistency, or the
    /// embedded store); its listener on a free port.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = command(self.dir.path(), args);
        cmd.env("PUBSUB_EMULATOR_HOST", &self.emulator.host)
            .env("ECOM_PROJECT", &self.project)
            .env("ECOM_METRICS_ADDR", "127.0.0.1:0");
        if let Some((contact_points, keyspace)) = &self.cassandra {
            cmd.env("ECOM_STORE", "cassandra")
                .env("ECOM_CASSANDRA_NODES", contact_points)
                .env("ECOM_CASSANDRA_KEYSPACE", keyspace)
                .env("ECOM_CASSANDRA_REPLICATION", "SimpleStrategy:3")
                .env("ECOM_CASSANDRA_WRITE_CONSISTENCY", "quorum")
                .env("ECOM_CASSANDRA_READ_CONSISTENCY", "quorum");
        } else {
            cmd.env("ECOM_STORE", "embedded");
        }
        cmd
    }

    /// A one-shot command, run to its end.
    pub fn run(&self, args: &[&str]) -> Run {
        Running::spawn(self.command(args))
            .with_limit(COMMAND_LIMIT)
            .wait()
    }

    /// `run --json` in the background, lease extensions of 10 s (what it loses comes back
    /// soon), with `extra` options.
    pub fn start(&self, extra: &[&str]) -> Running {
        let mut args = vec!["run", "--json", "--pubsub-lease-extension", "10s"];
        args.extend_from_slice(extra);
        Running::spawn(self.command(&args)).with_limit(RUN_LIMIT)
    }

    /// `produce KIND --ids IDS` to its end.
    pub fn produce(&self, kind: &str, ids: &str) {
        self.run(&["produce", kind, "--ids", ids, "--json"]).ok();
    }

    /// `produce orders` and `produce payments` for `ids` in the background, each at `rate`
    /// messages a second, so that what the test does lands mid-stream.
    pub fn produce_in_background(&self, ids: &str, rate: &str) -> Vec<Running> {
        ["orders", "payments"]
            .iter()
            .map(|kind| {
                Running::spawn(
                    self.command(&["produce", kind, "--ids", ids, "--rate", rate, "--json"]),
                )
                .with_limit(COMMAND_LIMIT)
            })
            .collect()
    }

    /// `query facts` (read at QUORUM) by order id.
    pub fn facts(&self) -> BTreeMap<i64, Value> {
        facts_by_id_any_order(&self.run(&["query", "facts"]).ok())
    }

    /// `dlq list` (read at QUORUM) by payment id.
    pub fn dead_letters(&self) -> BTreeMap<i64, Value> {
        dlq_by_id_any_order(&self.run(&["dlq", "list"]).ok())
    }

    /// The embedded store's data dir (for the tests that lock its database).
    #[allow(dead_code)] // tests/redelivery.rs; not the cluster scenarios
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The PID of this world's `run` started by this process (the one whose command line
    /// names this world's data dir). For one `run` at a time.
    pub fn run_pid(&self) -> u32 {
        let me = std::process::id();
        let dir = self.dir.path().to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid …`; comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(me) {
                continue;
            }
            let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "run") && args.contains(&dir) {
                found.push(pid);
            }
        }
        assert_eq!(
            found.len(),
            1,
            "one `run` of this world expected: {found:?}"
        );
        found[0]
    }
}

/// The peak resident set of process `pid` so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// The row `produce` makes for `id` once both its order and its payment arrived.
pub fn expected_row(id: i64) -> Value {
    let o = producer::order(SEED, id, 0);
    let p = producer::payment(SEED, id, 0);
    serde_json::json!({
        "order_id": id, "customer_id": o.customer_id, "item": o.item, "quantity": o.quantity,
        "price": o.price, "shipping_address": o.shipping_address, "order_status": o.order_status,
        "creation_date": o.creation_date, "payment_id": p.payment_id,
        "payment_method": p.payment_method, "card_last_four": p.card_last_four,
        "payment_status": p.payment_status, "payment_datetime": p.payment_datetime,
    })
}

/// A run's operations listener.
#[derive(Clone, Copy, Debug)]
pub struct Ops(pub SocketAddr);

impl Ops {
    /// The address from the run's `serving on http://ADDR/` line.
    pub fn of(run: &mut Running) -> Ops {
        let started = Instant::now();
        loop {
            let addr = run.stderr_so_far().lines().find_map(|l| {
                let rest = l.strip_prefix("serving on http://")?;
                rest.trim_end_matches('/').parse().ok()
            });
            if let Some(addr) = addr {
                return Ops(addr);
            }
            if let Some(status) = run.try_wait() {
                panic!(
                    "exited ({status}) before its `serving on` line: {}",
                    run.output_so_far()
                );
            }
            assert!(
                started.elapsed() < WAIT_LIMIT,
                "no `serving on` line within {WAIT_LIMIT:?}: {}",
                run.output_so_far()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let addr = self.0;
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut raw = String::new();
        stream
            .read_to_string(&mut raw)
            .unwrap_or_else(|e| panic!("read GET {path}: {e}"));
        let status = raw
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
        let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    /// `/readyz`'s status code.
    pub fn ready_status(&self) -> u16 {
        self.get("/readyz").0
    }

    /// `/metrics` now.
    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "/metrics: {body}");
        Metrics(
            body.lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_string(), value.parse().ok()?))
                })
                .collect(),
        )
    }
}

/// One scrape of `/metrics`: `name{labels}` → value.
#[derive(Debug)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    /// `name` for `source` (`orders`, `payments`); 0 before the first sample.
    pub fn of(&self, name: &str, source: &str) -> u64 {
        let label = format!("source=\"{source}\"");
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name) && k.contains(&label))
            .map(|(_, v)| *v as u64)
            .sum()
    }

    /// `name`, a metric without labels; 0 before the first sample.
    pub fn total(&self, name: &str) -> u64 {
        self.0.get(name).map_or(0, |v| *v as u64)
    }

    /// `name` summed over both sources.
    pub fn both(&self, name: &str) -> u64 {
        self.of(name, "orders") + self.of(name, "payments")
    }

    /// `name` summed over every series that has `label` (`key="value"`).
    pub fn labelled(&self, name: &str, label: &str) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name) && k.contains(label))
            .map(|(_, v)| *v as u64)
            .sum()
    }
}

/// `{source, how}`: messages the run received again, by how it recognised them.
pub const REDELIVERED: &str = "ecom_stream_pubsub_redelivered_total";

pub const RECEIVED: &str = "ecom_stream_messages_received_total";
pub const ACKED: &str = "ecom_stream_messages_acked_total";
pub const NACKED: &str = "ecom_stream_messages_nacked_total";
pub const DUPLICATES: &str = "ecom_stream_duplicates_total";
pub const OUTSTANDING: &str = "ecom_stream_subscriber_outstanding_messages";

/// How long any one condition may take to come true before the test fails naming it.
pub const WAIT_LIMIT: Duration = Duration::from_secs(240);

/// Polls `check` until it holds (every 250 ms), failing naming `what` when one of `runs`
/// exits or outlives its limit first, or after [`WAIT_LIMIT`]. Returns how long it took.
pub fn wait_until(what: &str, runs: &mut [&mut Running], check: impl FnMut() -> bool) -> Duration {
    wait_within(what, WAIT_LIMIT, runs, check)
}

/// As [`wait_until`] with its own limit.
pub fn wait_within(
    what: &str,
    limit: Duration,
    runs: &mut [&mut Running],
    mut check: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check() {
            return started.elapsed();
        }
        for run in runs.iter_mut() {
            if let Some(status) = run.try_wait() {
                panic!(
                    "exited ({status}) while waiting for {what}: {}",
                    run.output_so_far()
                );
            }
            run.check_not_hung(what);
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not so within {limit:?}\n{}",
            runs.iter()
                .map(|r| r.output_so_far())
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
