//! Google's Pub/Sub emulator for the tests (design §7): one per test binary, on a free
//! loopback port, stopped by PID when the binary exits.
//!
//! The emulator runs under a small watchdog shell that knows the test binary's PID: when
//! the binary exits (however it exits, SIGKILL included) the watchdog kills the emulator's
//! JVM by its PID. Tests share the emulator and isolate themselves by project id.
//!
//! Missing emulator or Java: the tests say so loudly and skip, except in CI (`CI=true`),
//! where that is a failure.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cassandra_node::free_port;

/// Where design §7 says the emulator is installed; `ECOM_TEST_PUBSUB_EMULATOR` overrides.
pub const EMULATOR_BIN: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

/// A running emulator.
#[derive(Debug)]
pub struct Emulator {
    /// `127.0.0.1:PORT`, as `PUBSUB_EMULATOR_HOST` takes it.
    pub host: String,
}

static EMULATOR: OnceLock<Result<Emulator, String>> = OnceLock::new();

/// The shared emulator, started on first use. `None` (after a loud message) when it is not
/// installed outside CI; panics in CI or when it is installed but does not start.
pub fn emulator(test: &str) -> Option<&'static Emulator> {
    let result = EMULATOR.get_or_init(start);
    match result {
        Ok(e) => Some(e),
        Err(missing) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: the Pub/Sub emulator is required in CI: {missing}");
            }
            eprintln!("SKIPPED {test}: {missing}");
            None
        }
    }
}

fn binary() -> PathBuf {
    std::env::var_os("ECOM_TEST_PUBSUB_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(EMULATOR_BIN))
}

fn start() -> Result<Emulator, String> {
    let bin = prerequisites()?;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ecom-stream-emulator-{}", std::process::id()));
    let pid = spawn(&bin, port, &dir)?;
    let host = format!("127.0.0.1:{port}");
    eprintln!(
        "Pub/Sub emulator on {host} (pid {pid}, log {})",
        dir.join("emulator.log").display()
    );
    Ok(Emulator { host })
}

/// The emulator's binary, once it and Java are there.
fn prerequisites() -> Result<PathBuf, String> {
    let bin = binary();
    if !bin.is_file() {
        return Err(format!(
            "no Pub/Sub emulator at {} (install google-cloud-cli-pubsub-emulator, or set ECOM_TEST_PUBSUB_EMULATOR)",
            bin.display()
        ));
    }
    if Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_or(true, |s| !s.success())
    {
        return Err("the Pub/Sub emulator needs Java, and `java -version` failed".into());
    }
    Ok(bin)
}

/// Starts an emulator on `port` under its watchdog, logging to `dir/emulator.log`, and
/// returns its PID once it serves.
fn spawn(bin: &Path, port: u16, dir: &Path) -> Result<u32, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let log = dir.join("emulator.log");
    // The watchdog: start the emulator, print its PID, and kill it by that PID as soon as
    // the test binary (our PID) is gone.
    let script = r#"
        "$1" --host=127.0.0.1 --port="$2" >"$4" 2>&1 &
        emu=$!
        echo "$emu"
        exec >/dev/null
        while kill -0 "$3" 2>/dev/null && kill -0 "$emu" 2>/dev/null; do sleep 0.5; done
        kill "$emu" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$emu" 2>/dev/null || exit 0; sleep 0.3; done
        kill -9 "$emu" 2>/dev/null
    "#;
    let mut watchdog = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(bin)
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the emulator's watchdog: {e}"))?;
    let mut line = String::new();
    let stdout = watchdog.stdout.take().ok_or("watchdog has no stdout")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the emulator's PID: {e}"))?;
    let pid: u32 = line
        .trim()
        .parse()
        .map_err(|_| format!("the watchdog printed no PID: {line:?}"))?;
    // Reaped by nobody on purpose: it outlives this call and exits with the test binary.
    std::mem::forget(watchdog);
    wait_until_serving(&format!("127.0.0.1:{port}"), &log, pid)?;
    Ok(pid)
}

/// An emulator of one test's own, which the test may SIGKILL, freeze (SIGSTOP) and start
/// again on the same port. Killed by PID when dropped, and by its watchdog when the test
/// binary exits, like the shared one.
#[derive(Debug)]
pub struct OwnEmulator {
    /// `127.0.0.1:PORT`, the same across restarts.
    pub host: String,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
    pid: Option<u32>,
}

impl OwnEmulator {
    /// `None` when the emulator is missing outside CI (said loudly, as [`emulator`] does).
    pub fn start(test: &str) -> Option<OwnEmulator> {
        let bin = match prerequisites() {
            Ok(bin) => bin,
            Err(missing) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("{test}: the Pub/Sub emulator is required in CI: {missing}");
                }
                eprintln!("SKIPPED {test}: {missing}");
                return None;
            }
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "ecom-stream-emulator-{}-{port}",
            std::process::id()
        ));
        let mut own = OwnEmulator {
            host: format!("127.0.0.1:{port}"),
            bin,
            port,
            dir,
            pid: None,
        };
        own.restart();
        Some(own)
    }

    /// Starts it (again) on the same port, with nothing in it: `setup` must run again.
    pub fn restart(&mut self) {
        assert!(self.pid.is_none(), "the emulator is still running");
        let pid = spawn(&self.bin, self.port, &self.dir)
            .unwrap_or_else(|e| panic!("starting the emulator on {}: {e}", self.host));
        self.pid = Some(pid);
    }

    /// SIGKILL, and wait until its port refuses connections.
    pub fn kill(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        signal(pid, "KILL");
        let started = Instant::now();
        while TcpStream::connect(&self.host).is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} still accepts connections after SIGKILL",
                self.host
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `name` (`STOP`, `CONT`) to the running emulator.
    pub fn signal(&self, name: &str) {
        let pid = self
            .pid
            .unwrap_or_else(|| panic!("the emulator is not running"));
        signal(pid, name);
    }
}

impl Drop for OwnEmulator {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            signal(pid, "CONT");
            signal(pid, "KILL");
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

fn wait_until_serving(host: &str, log: &Path, pid: u32) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Server started") && TcpStream::connect(host).is_ok() {
            return Ok(());
        }
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !alive || started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the Pub/Sub emulator did not start (pid {pid}, {}):\n{text}",
                if alive { "timed out" } else { "exited" }
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A project id no other test uses: tests share the emulator, not its topics.
pub fn fresh_project(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(16)
        .collect();
    format!("t{n}-{tag}-{}", std::process::id() % 100_000)
}
