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

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local addr").port()
}
