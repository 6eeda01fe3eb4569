//! The resilience binary's 3-node Apache Cassandra cluster (`scripts/cassandra-cluster`):
//! nodes on 127.0.0.1..=127.0.0.3, one free native port and one free storage port shared by
//! all, started once on first use and killed with the binary (each node's watchdog follows
//! our PID, and its directory is removed after it).
//!
//! The tests kill and restart nodes on purpose, so they must never run side by side:
//! [`cluster`] hands out a process-wide lock with the cluster, and every test holds it for
//! its whole length.
//!
//! Owns: starting, killing, restarting and checking the nodes. Must never: use
//! `ECOM_CASSANDRA_NODES` (a node of someone else's is not ours to kill), leave a node
//! running after the binary, or let two tests use the cluster at once.

use crate::cassandra_node::{free_port, in_ci, repo_root};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// Nodes in the cluster: the smallest where one can be lost and QUORUM (2 of RF 3) holds.
pub const NODES: usize = 3;

/// Each node's heap: the cluster shares 2 cores and the machine with the emulator and the
/// runs, and these tests write a few thousand small rows.
const HEAP: &str = "512M";

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    /// `host:port` of every node, as `--cassandra-nodes` takes it.
    pub contact_points: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

/// The cluster, started on first use, and the lock that keeps every other test off it
/// while the caller holds it. `None` (said loudly) when Java or Maven is missing outside CI;
/// panics in CI.
pub fn cluster(test: &str) -> Option<(MutexGuard<'static, ()>, &'static Cluster)> {
    // A test that failed while holding the lock poisons it; the cluster is still usable
    // (each test first brings every node back: [`Cluster::ensure_all_up`]).
    let guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => {
            cluster.ensure_all_up();
            Some((guard, cluster))
        }
        Err(why) => {
            if in_ci() {
                panic!("{test}: a Cassandra cluster is required in CI: {why}");
            }
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

/// The same turn as [`cluster`], without the cluster: for a test that needs neither the
/// nodes nor their JVMs' competition for the 2 cores while it measures `run` alone.
pub fn turn() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn script() -> PathBuf {
    repo_root().join("scripts/cassandra-cluster")
}

fn start() -> Result<Cluster, String> {
    let dir = std::env::temp_dir().join(format!("ecom-stream-cluster-{}", std::process::id()));
    let native = free_port();
    let storage = free_port();
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .args(["--dir", &dir.to_string_lossy()])
        .args(["--nodes", &NODES.to_string()])
        .args(["--native-port", &native.to_string()])
        .args(["--storage-port", &storage.to_string()])
        .args(["--heap", HEAP])
        .args(["--owner-pid", &std::process::id().to_string()])
        .arg("--remove-on-exit")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script().display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        // The scripts' "a prerequisite is missing" code.
        Some(3) => return Err(stderr.trim().to_string()),
        _ => panic!(
            "scripts/cassandra-cluster start failed ({}):\n{stderr}",
            out.status
        ),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let contact_points = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("scripts/cassandra-cluster printed no contact points"))
        .trim()
        .to_string();
    eprintln!(
        "RESILIENCE: cluster of {NODES} nodes ({contact_points}) up in {:.0?}",
        started.elapsed()
    );
    Ok(Cluster {
        dir,
        contact_points,
    })
}

impl Cluster {
    fn node_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("node{n}"))
    }

    fn cluster_command(&self, verb: &str, n: usize) {
        let out = Command::new("bash")
            .arg(script())
            .arg(verb)
            .args(["--dir", &self.dir.to_string_lossy()])
            .args(["--node", &n.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running scripts/cassandra-cluster {verb}: {e}"));
        assert!(
            out.status.success(),
            "scripts/cassandra-cluster {verb} --node {n} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL node `n` (1-based); its data stays for [`Cluster::restart`].
    pub fn kill(&self, n: usize) {
        self.cluster_command("kill", n);
    }

    /// Starts node `n` again on its data; returns once it answers CQL.
    pub fn restart(&self, n: usize) {
        self.cluster_command("restart", n);
    }

    /// Whether node `n`'s process lives and answers CQL.
    pub fn is_up(&self, n: usize) -> bool {
        Command::new("bash")
            .arg(repo_root().join("scripts/cassandra-node"))
            .arg("status")
            .args(["--dir", &self.node_dir(n).to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts every node in `nodes` again: the first (the seed, when node 1 is among them)
    /// alone, then the others side by side; returns once all answer CQL.
    pub fn restart_all(&self, nodes: &[usize]) {
        let Some((first, rest)) = nodes.split_first() else {
            return;
        };
        self.restart(*first);
        std::thread::scope(|s| {
            for n in rest {
                s.spawn(move || self.restart(*n));
            }
        });
    }

    /// Restarts every node that is down (a test that failed half-way may have left some).
    pub fn ensure_all_up(&self) {
        let down: Vec<usize> = (1..=NODES).filter(|n| !self.is_up(*n)).collect();
        if !down.is_empty() {
            eprintln!("RESILIENCE: nodes {down:?} were down; restarting them");
            self.restart_all(&down);
        }
    }
}
