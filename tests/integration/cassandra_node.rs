//! A real Apache Cassandra node for the tests: one per test binary, started on first use by
//! `scripts/cassandra-node` on free loopback ports, and killed by PID when the binary exits
//! (the script's watchdog follows our PID, so SIGKILL of the test binary ends it too).
//!
//! `ECOM_CASSANDRA_NODES` set: the tests use that node (or ScyllaDB) instead, with the other
//! `ECOM_CASSANDRA_*` settings as `ecom-stream` reads them.
//!
//! Missing Java, Maven or a node that does not start: a loud skip locally, a failure in CI
//! (`CI=true`). Owns: starting and finding the node. Must never: leave a node running after
//! the binary, or share a keyspace between tests (each test makes its own).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A node the tests can reach.
#[derive(Debug)]
pub struct Node {
    /// `host:port` list, as `--cassandra-nodes` takes it.
    pub nodes: String,
}

static NODE: OnceLock<Result<Node, String>> = OnceLock::new();

/// True under CI, where a missing server is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The repository's root (the script and the yaml template live there).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared node, started on first use; `None` (said loudly) when it cannot be had
/// outside CI. Panics in CI.
pub fn node(test: &str) -> Option<&'static Node> {
    match NODE.get_or_init(start_or_find) {
        Ok(node) => Some(node),
        Err(why) => {
            if in_ci() {
                panic!("{test}: a Cassandra node is required in CI: {why}");
            }
            // Past the harness's capture, so that `cargo test` shows it although the
            // test "passes".
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

fn start_or_find() -> Result<Node, String> {
    if let Some(nodes) = std::env::var_os("ECOM_CASSANDRA_NODES").filter(|v| !v.is_empty()) {
        return Ok(Node {
            nodes: nodes.to_string_lossy().into_owned(),
        });
    }
    let dir = std::env::temp_dir().join(format!("ecom-stream-cassandra-{}", std::process::id()));
    Ok(Node {
        nodes: start_node(&dir, &[])?,
    })
}

/// Starts a node in `dir` on free loopback ports with `extra` options for the script
/// (`--auth`, `--tls KEYSTORE PASSWORD`); it dies with this process. Returns `host:port`.
/// A missing prerequisite comes back as `Err` (a skip outside CI); any other failure to
/// start panics, since that is a defect of ours or of the machine that must be seen.
pub fn start_node(dir: &Path, extra: &[&str]) -> Result<String, String> {
    let native = free_port();
    let storage = free_port();
    let script = repo_root().join("scripts/cassandra-node");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .args(["--dir", &dir.to_string_lossy()])
        .args(["--address", "127.0.0.1"])
        .args(["--native-port", &native.to_string()])
        .args(["--storage-port", &storage.to_string()])
        .args(["--heap", "768M"])
        .args(["--owner-pid", &std::process::id().to_string()])
        .arg("--remove-on-exit")
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
            Ok(format!("127.0.0.1:{native}"))
        }
        // The script's "a prerequisite is missing" code.
        Some(3) => Err(stderr.trim().to_string()),
        _ => panic!(
            "scripts/cassandra-node start failed ({}):\n{stderr}",
            out.status
        ),
    }
}

/// A port nobody listens on now on 127.0.0.1..=3, with the one after it free too (a node's
/// storage port has its TLS twin there), chosen *below* the kernel's ephemeral range.
///
/// Why not port 0: the kernel hands ports from that range to outgoing connections. A node
/// restarted on its old port (the cluster tests stop and restart nodes; the emulator tests
/// restart the emulator) then finds it taken by a client's connection to another node, e.g.
/// 127.0.0.1:P -> 127.0.0.2:P, or by a reconnecting client's self-connect; CI once failed
/// exactly so ("Failed to bind port 45243 on 127.0.0.1"). Below the range only listeners
/// take ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FLOOR: u32 = 10_000;
    let ceiling = ephemeral_floor().max(FLOOR + 1_000);
    let span = ceiling - 1 - FLOOR;
    // Spread test binaries (and CI's concurrent runs) over the span by PID.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = FLOOR + (start + NEXT.fetch_add(2, Ordering::Relaxed)) % span;
        let free = |p: u32| {
            ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
                .iter()
                .all(|ip| TcpListener::bind((*ip, p as u16)).is_ok())
        };
        if free(port) && free(port + 1) {
            return port as u16;
        }
    }
    panic!("no free loopback port below the ephemeral range ({FLOOR}..{ceiling})")
}

/// The first port of `/proc/sys/net/ipv4/ip_local_port_range` (Linux's default 32768 when
/// it cannot be read).
fn ephemeral_floor() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
