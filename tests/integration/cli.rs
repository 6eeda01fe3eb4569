//! The `ecom-stream` binary as a user runs it (design §5): `demo`, `query`, `dlq`, and bad
//! configuration, each in its own process on its own data dir.
//!
//! The helpers at the top are shared with `crash.rs`.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Helpers (also used by crash.rs)
// ---------------------------------------------------------------------------------------

/// How long a child command may live, from its start, before the test calls it hung, kills
/// it and fails naming it. A hang guard, not a performance assertion: every ordinary command
/// of these tests ends within seconds in a debug build, so a minute is room enough on a loaded
/// 2-core machine while a hang still fails within about a minute. The few commands that
/// genuinely run longer say so with a named limit ([`Running::with_limit`]): see
/// `crash::BIG_DEMO_LIMIT`, `ops::PACED_DEMO_LIMIT`, `pubsub::REDELIVERY_LIMIT` and
/// `pubsub::CASSANDRA_COMMAND_LIMIT`.
pub(crate) const HANG_LIMIT: Duration = Duration::from_secs(60);

/// The database file of the embedded store inside a data dir.
pub(crate) const DB_FILE: &str = "ecom-stream.db";

/// `ecom-stream --data-dir <dir> <args…>`, with no `ECOM_*` variable inherited from the
/// environment running the tests (they would change defaults under the test's feet).
pub(crate) fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecom-stream"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECOM_") {
            cmd.env_remove(key);
        }
    }
    // Plain log lines in failure messages (tracing-subscriber honours NO_COLOR).
    cmd.env("NO_COLOR", "1");
    cmd.arg("--data-dir").arg(dir).args(args);
    cmd.stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| *k != "NO_COLOR")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("{} ecom-stream {}", envs.join(" "), args.join(" "))
        .trim()
        .to_string()
}

/// A finished command and what it printed.
pub(crate) struct Run {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Long outputs (`query facts` on 40,000 rows) are cut in the middle for messages.
fn clip(s: &str) -> String {
    const KEEP: usize = 3000;
    if s.len() <= 2 * KEEP {
        return s.to_string();
    }
    let mut head = KEEP;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - KEEP;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[… {} bytes cut …]\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.status,
            clip(&self.stdout),
            clip(&self.stderr)
        )
    }
}

impl Run {
    /// Panics, with everything the command printed, unless it exited 0.
    pub fn ok(self) -> Self {
        assert!(self.status.success(), "expected success: {self}");
        self
    }

    /// Panics unless it exited non-zero.
    pub fn failed(self) -> Self {
        assert!(
            !self.status.success(),
            "expected a non-zero exit code: {self}"
        );
        self
    }

    /// stdout as JSON lines, one object each.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("stdout line {} is not JSON ({e}): {line:?}\n{self}", i + 1)
                });
                assert!(
                    v.is_object(),
                    "stdout line {} is not an object: {line}",
                    i + 1
                );
                v
            })
            .collect()
    }

    /// stdout as exactly one JSON object.
    pub fn json(&self) -> Value {
        let lines = self.json_lines();
        assert_eq!(lines.len(), 1, "expected one JSON line: {self}");
        lines.into_iter().next().unwrap()
    }
}

/// A running child: killed and waited for when dropped, whatever path the test takes.
/// Its stdout and stderr go to anonymous files, so a chatty child can never block on a
/// full pipe, and they are readable at any time for messages.
pub(crate) struct Running {
    pub cmd: String,
    child: Option<Child>,
    stdout: File,
    stderr: File,
    started: Instant,
    /// How long it may live before it counts as hung ([`HANG_LIMIT`] unless set).
    limit: Duration,
}

fn read_all(file: &File) -> String {
    let mut file = file;
    let mut bytes = Vec::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        let stdout = tempfile::tempfile().expect("tempfile for stdout");
        let stderr = tempfile::tempfile().expect("tempfile for stderr");
        cmd.stdout(stdout.try_clone().expect("clone stdout file"));
        cmd.stderr(stderr.try_clone().expect("clone stderr file"));
        let desc = describe(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
        Running {
            cmd: desc,
            child: Some(child),
            stdout,
            stderr,
            started: Instant::now(),
            limit: HANG_LIMIT,
        }
    }

    /// Allows this child `limit` from its start instead of [`HANG_LIMIT`]: for the few
    /// commands that genuinely run longer, each with a named limit saying why.
    pub fn with_limit(mut self, limit: Duration) -> Running {
        self.limit = limit;
        self
    }

    /// Fails the test if the child has outlived its limit: kills and reaps it, then panics
    /// naming the command, what the test was waiting for, and what it printed (stderr first,
    /// where its logs are). Call it in every loop that waits on a running child.
    pub fn check_not_hung(&mut self, waiting_for: &str) {
        let elapsed = self.started.elapsed();
        if elapsed < self.limit {
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "`{}` hung: still running {elapsed:.1?} after it started (limit {:?}) while the \
             test waited for {waiting_for}; killed it\n--- stderr so far ---\n{}\n\
             --- stdout so far ---\n{}",
            self.cmd,
            self.limit,
            clip(&read_all(&self.stderr)),
            clip(&read_all(&self.stdout)),
        );
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let cmd = self.cmd.clone();
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("try_wait on `{cmd}`: {e}"))
    }

    /// What the child wrote to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        read_all(&self.stdout)
    }

    /// What the child wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        read_all(&self.stderr)
    }

    /// What the child printed so far, for messages.
    pub fn output_so_far(&self) -> String {
        format!(
            "`{}`\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            clip(&read_all(&self.stdout)),
            clip(&read_all(&self.stderr))
        )
    }

    fn finish(mut self, status: ExitStatus) -> Run {
        self.child = None;
        Run {
            cmd: self.cmd.clone(),
            status,
            stdout: read_all(&self.stdout),
            stderr: read_all(&self.stderr),
        }
    }

    /// Waits for the child to exit by itself (failing the test, and killing the child,
    /// once it outlives its limit: [`Running::check_not_hung`]).
    pub fn wait(mut self) -> Run {
        loop {
            if let Some(status) = self.try_wait() {
                return self.finish(status);
            }
            self.check_not_hung("it to exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal by name (`INT`, `TERM`) with the system's `kill` command.
    pub fn signal(&mut self, name: &str) {
        let pid = self.child().id().to_string();
        let status = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .unwrap_or_else(|e| panic!("run kill -{name}: {e}"));
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// SIGKILL (on unix), then reap.
    pub fn kill(mut self) -> Run {
        let cmd = self.cmd.clone();
        let child = self.child();
        child.kill().unwrap_or_else(|e| panic!("kill `{cmd}`: {e}"));
        let status = child
            .wait()
            .unwrap_or_else(|e| panic!("wait for `{cmd}`: {e}"));
        self.finish(status)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `ecom-stream --data-dir <dir> <args…>` to completion and captures its output.
pub(crate) fn run(dir: &Path, args: &[&str]) -> Run {
    Running::spawn(command(dir, args)).wait()
}

/// As [`run`], with extra environment variables.
pub(crate) fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = command(dir, args);
    cmd.envs(env.iter().copied());
    Running::spawn(cmd).wait()
}

/// The columns of `orders_payments_facts` (design §3), in the order `query` prints them.
pub(crate) const FACT_KEYS: [&str; 13] = [
    "order_id",
    "customer_id",
    "item",
    "quantity",
    "price",
    "shipping_address",
    "order_status",
    "creation_date",
    "payment_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
];
pub(crate) const ORDER_KEYS: [&str; 7] = [
    "customer_id",
    "item",
    "quantity",
    "price",
    "shipping_address",
    "order_status",
    "creation_date",
];
pub(crate) const PAYMENT_KEYS: [&str; 5] = [
    "payment_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
];
/// A `dlq list` line: the payment's columns, then the DLQ's own (design §3).
pub(crate) const DLQ_KEYS: [&str; 9] = [
    "payment_id",
    "order_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
    "reason",
    "first_seen",
    "attempts",
];

pub(crate) fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

pub(crate) fn int(v: &Value, key: &str) -> i64 {
    v.get(key)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("{key} is not an integer in {v}"))
}

/// `query facts` lines by order id; each must have exactly the design §3 columns, and order ids
/// must come once each, ascending: the embedded store lists in key order.
pub(crate) fn facts_by_id(run: &Run) -> BTreeMap<i64, Value> {
    lines_by_key(run, &FACT_KEYS, "order_id", Order::Ascending)
}

/// `dlq list` lines by payment id, each with exactly the DLQ columns, ascending.
pub(crate) fn dlq_by_id(run: &Run) -> BTreeMap<i64, Value> {
    lines_by_key(run, &DLQ_KEYS, "payment_id", Order::Ascending)
}

/// As [`facts_by_id`], for a store that lists in its own order (Cassandra: token order,
/// see README "Reading the results"): each order id exactly once, in any order.
pub(crate) fn facts_by_id_any_order(run: &Run) -> BTreeMap<i64, Value> {
    lines_by_key(run, &FACT_KEYS, "order_id", Order::Any)
}

/// As [`dlq_by_id`], in any order: each payment id exactly once.
pub(crate) fn dlq_by_id_any_order(run: &Run) -> BTreeMap<i64, Value> {
    lines_by_key(run, &DLQ_KEYS, "payment_id", Order::Any)
}

#[derive(PartialEq)]
enum Order {
    Ascending,
    Any,
}

fn lines_by_key(run: &Run, columns: &[&str], key: &str, order: Order) -> BTreeMap<i64, Value> {
    let expected: BTreeSet<&str> = columns.iter().copied().collect();
    let mut out = BTreeMap::new();
    let mut last = None;
    for line in run.json_lines() {
        assert_eq!(keys(&line), expected, "columns of {line}");
        let id = int(&line, key);
        if order == Order::Ascending {
            assert!(
                last < Some(id),
                "{key}s not strictly ascending: {id} after {last:?}"
            );
        }
        last = Some(id);
        assert!(
            out.insert(id, line).is_none(),
            "{key} {id} listed more than once"
        );
    }
    out
}

pub(crate) fn assert_fully_joined(row: &Value) {
    for key in ORDER_KEYS.iter().chain(&PAYMENT_KEYS) {
        assert!(!row[key].is_null(), "{key} is null in {row}");
    }
}

/// Demo payment ids are the order id plus this (`PAYMENT_ID_OFFSET`, src/model.rs).
pub(crate) const PAYMENT_ID_OFFSET: i64 = 1_000_000;

pub(crate) fn data_dir() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The single `error:` line of a failed start, which must name `needle`.
pub(crate) fn assert_one_error_line(run: &Run, needles: &[&str]) {
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "expected one `error:` line: {run}");
    for needle in needles {
        assert!(
            errors[0].to_lowercase().contains(&needle.to_lowercase()),
            "the error line does not mention {needle:?}: {run}"
        );
    }
    assert!(
        !run.stderr.contains("panicked"),
        "a configuration error must not panic: {run}"
    );
    assert!(run.stdout.is_empty(), "nothing on stdout expected: {run}");
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// The default demo (80 orders, payments for order ids 1..=500) leaves what design §5 promises.
#[test]
fn default_demo_then_query_and_dlq_list() {
    let dir = data_dir();
    let d = dir.path();
    let demo = run(d, &["demo", "--json"]).ok();
    let report = demo.json();

    // The summary's own counters.
    assert_eq!(report["interrupted"], false, "{demo}");
    assert_eq!(report["expected_rows"], 80, "{demo}");
    assert_eq!(report["expected_dlq"], 420, "{demo}");
    let stats = &report["stats"];
    let replay = &report["replay"];
    assert_eq!(int(stats, "invalid"), 6, "{demo}");
    assert_eq!(int(stats, "write_failures"), 0, "{demo}");
    assert!(int(stats, "received") >= int(&report, "messages"), "{demo}");
    // Some orders are late: their payments are dead-lettered, then the closing replay
    // joins them.
    assert!(int(replay, "replayed") >= 1, "{demo}");
    assert_eq!(int(replay, "unmatched"), 420, "{demo}");
    assert_eq!(
        int(replay, "scanned"),
        int(replay, "replayed") + int(replay, "unmatched"),
        "{demo}"
    );
    assert!(
        int(stats, "dead_lettered") >= 420 + int(replay, "replayed"),
        "{demo}"
    );
    assert!(int(stats, "payments_joined_after_hold") >= 1, "{demo}");
    assert!(
        int(stats, "payments_joined")
            + int(stats, "payments_joined_after_hold")
            + int(replay, "replayed")
            >= 80,
        "{demo}"
    );

    // query facts: 80 rows, order ids 1..=80, each with its order and its payment.
    let facts_run = run(d, &["query", "facts"]).ok();
    let facts = facts_by_id(&facts_run);
    assert_eq!(
        facts.keys().copied().collect::<Vec<_>>(),
        (1..=80).collect::<Vec<i64>>(),
        "{facts_run}"
    );
    for (id, row) in &facts {
        assert_fully_joined(row);
        assert_eq!(int(row, "payment_id"), PAYMENT_ID_OFFSET + id, "{row}");
    }

    // dlq list: 420 entries, order ids 81..=500, all order_not_found.
    let dlq_run = run(d, &["dlq", "list"]).ok();
    let dlq = dlq_by_id(&dlq_run);
    assert_eq!(dlq.len(), 420, "{dlq_run}");
    let order_ids: BTreeSet<i64> = dlq.values().map(|e| int(e, "order_id")).collect();
    assert_eq!(
        order_ids,
        (81..=500).collect::<BTreeSet<i64>>(),
        "{dlq_run}"
    );
    for (payment_id, e) in &dlq {
        assert_eq!(e["reason"], "order_not_found", "{e}");
        assert_eq!(*payment_id, PAYMENT_ID_OFFSET + int(e, "order_id"), "{e}");
        // Dead-lettered with 0 attempts while the demo ran; then the demo's one closing
        // replay pass (src/app/demo.rs) found no order for it and added one (src/dlq/replay.rs).
        assert_eq!(int(e, "attempts"), 1, "{e}");
        assert!(
            e["first_seen"].as_str().is_some_and(|s| !s.is_empty()),
            "{e}"
        );
    }

    // dlq list --invalid: the six invalid payloads, each with its reason.
    let invalid_run = run(d, &["dlq", "list", "--invalid"]).ok();
    let invalid = invalid_run.json_lines();
    assert_eq!(invalid.len(), 6, "{invalid_run}");
    let mut seen = BTreeSet::new();
    for m in &invalid {
        assert!(
            m["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
            "no error in {m}"
        );
        let source = m["source"].as_str().unwrap_or_default();
        assert!(source == "orders" || source == "payments", "source of {m}");
        assert!(m["payload"].is_string(), "payload of {m}");
        let id = m["message_id"]
            .as_str()
            .unwrap_or_else(|| panic!("message_id of {m}"));
        assert!(
            seen.insert((source.to_string(), id.to_string())),
            "listed twice: {m}"
        );
    }

    // query order 7: the same row as in the listing.
    let one = run(d, &["query", "order", "7"]).ok();
    let row = one.json();
    assert_eq!(int(&row, "order_id"), 7, "{one}");
    assert_eq!(row, facts[&7], "{one}");

    // A missing order: exit 1 and a message naming it, nothing on stdout.
    let missing = run(d, &["query", "order", "999999"]);
    assert_eq!(missing.status.code(), Some(1), "{missing}");
    assert!(missing.stdout.is_empty(), "{missing}");
    assert!(missing.stderr.contains("999999"), "{missing}");
}

/// `dlq replay` after the demo changes nothing but `attempts`: every remaining entry's
/// order is still unknown.
#[test]
fn dlq_replay_after_the_demo_is_idempotent() {
    let dir = data_dir();
    let d = dir.path();
    run(d, &["demo", "--json"]).ok();
    let facts_before = run(d, &["query", "facts"]).ok();
    let dlq_before = dlq_by_id(&run(d, &["dlq", "list"]).ok());
    assert_eq!(dlq_before.len(), 420);

    for pass in 1..=2i64 {
        let replay = run(d, &["dlq", "replay"]).ok();
        let report = replay.json();
        assert_eq!(int(&report, "replayed"), 0, "pass {pass}: {replay}");
        assert_eq!(int(&report, "unmatched"), 420, "pass {pass}: {replay}");
        assert_eq!(int(&report, "scanned"), 420, "pass {pass}: {replay}");

        let dlq_after = dlq_by_id(&run(d, &["dlq", "list"]).ok());
        assert_eq!(
            dlq_after.keys().collect::<Vec<_>>(),
            dlq_before.keys().collect::<Vec<_>>(),
            "pass {pass}: the same entries must remain"
        );
        for (id, before) in &dlq_before {
            let after = &dlq_after[id];
            assert_eq!(
                int(after, "attempts"),
                int(before, "attempts") + pass,
                "pass {pass}: attempts of {id}: before {before}, after {after}"
            );
            let mut unchanged = after.clone();
            unchanged["attempts"] = before["attempts"].clone();
            assert_eq!(&unchanged, before, "pass {pass}: only attempts may change");
        }
        let facts_after = run(d, &["query", "facts"]).ok();
        assert_eq!(
            facts_after.stdout, facts_before.stdout,
            "pass {pass}: replay changed the facts"
        );
    }
}

/// Bad configuration fails at start: a non-zero exit and one `error:` line naming the
/// setting, before anything is written.
#[test]
fn bad_configuration_fails_at_start_naming_the_setting() {
    // A setting the engine validates.
    let dir = data_dir();
    let d = dir.path().join("batch");
    let r = run(&d, &["demo", "--batch-size", "0"]).failed();
    assert_one_error_line(&r, &["--batch-size"]);
    assert!(
        !d.join(DB_FILE).exists(),
        "a rejected configuration created a store: {r}"
    );

    // A value that does not parse, as a flag and as its variable.
    let d = dir.path().join("hold");
    let r = run(&d, &["demo", "--hold", "nonsense"]).failed();
    assert_one_error_line(&r, &["--hold", "nonsense"]);
    let r = run_env(&d, &["demo"], &[("ECOM_HOLD", "nonsense")]).failed();
    assert_one_error_line(&r, &["hold", "nonsense"]);
    assert!(!d.join(DB_FILE).exists(), "{r}");

    // A store kind that does not exist.
    let d = dir.path().join("store");
    let r = run_env(&d, &["demo"], &[("ECOM_STORE", "mongodb")]).failed();
    assert_one_error_line(&r, &["store", "mongodb"]);
    assert!(!d.join(DB_FILE).exists(), "{r}");

    // A bad Cassandra setting stops before any connection, naming flag and variable.
    let d = dir.path().join("cassandra");
    let cassandra = ("ECOM_STORE", "cassandra");
    let r = run_env(
        &d,
        &["query", "facts"],
        &[cassandra, ("ECOM_CASSANDRA_WRITE_CONSISTENCY", "most")],
    )
    .failed();
    assert_one_error_line(
        &r,
        &[
            "--cassandra-write-consistency",
            "ECOM_CASSANDRA_WRITE_CONSISTENCY",
            "most",
        ],
    );
    let r = run_env(
        &d,
        &["dlq", "list"],
        &[cassandra, ("ECOM_CASSANDRA_USERNAME", "ecom")],
    )
    .failed();
    assert_one_error_line(&r, &["--cassandra-password", "ECOM_CASSANDRA_PASSWORD"]);
    // A node that never answers is retried until the connect wait runs out, then named.
    let r = run_env(
        &d,
        &["demo"],
        &[
            cassandra,
            ("ECOM_CASSANDRA_NODES", "127.0.0.1:1"),
            ("ECOM_CASSANDRA_CONNECT_WAIT", "1s"),
        ],
    )
    .failed();
    assert_one_error_line(
        &r,
        &[
            "--cassandra-nodes",
            "127.0.0.1:1",
            "--cassandra-connect-wait",
        ],
    );
    assert!(r.stderr.contains("retrying"), "no retry was logged: {r}");
    assert!(!d.join(DB_FILE).exists(), "{r}");

    // Reading (or replaying) where there is no store: say so, and create nothing.
    let empty = data_dir();
    for args in [
        &["query", "facts"][..],
        &["query", "order", "1"],
        &["dlq", "list"],
        &["dlq", "list", "--invalid"],
        &["dlq", "replay"],
        &["dlq", "replay", "--every", "1s"],
    ] {
        let r = run(empty.path(), args).failed();
        assert_one_error_line(&r, &["no embedded store"]);
        assert!(
            r.stderr.contains(&empty.path().display().to_string()),
            "the message must name the data dir: {r}"
        );
        assert_eq!(
            entries(empty.path()),
            Vec::<String>::new(),
            "a read created files: {r}"
        );
    }
    let missing = empty.path().join("not-there");
    let r = run(&missing, &["query", "facts"]).failed();
    assert_one_error_line(&r, &["no embedded store"]);
    assert!(!missing.exists(), "a read created the data dir: {r}");
}

/// A mistyped flag or command keeps clap's tip and its pointer to `--help`; a flag is named
/// as a setting (with its variable) only by the command whose setting it is; a value that is
/// not one of a setting's choices lists them once, quoted once.
#[test]
fn usage_errors_keep_the_tip_and_name_only_the_commands_own_settings() {
    let dir = data_dir();
    let d = dir.path();
    let r = run(d, &["demo", "--hodl", "2s"]).failed();
    assert!(r.stderr.contains("unexpected argument '--hodl'"), "{r}");
    assert!(
        r.stderr.contains("similar argument exists: '--hold'"),
        "{r}"
    );
    assert!(r.stderr.contains("try '--help'"), "{r}");
    let r = run(d, &["qurey", "facts"]).failed();
    assert!(
        r.stderr.contains("similar subcommand exists: 'query'"),
        "{r}"
    );
    // `query --format` is the export format, not the ingest setting of the same flag name.
    let r = run(d, &["query", "facts", "--format", "tsv"]).failed();
    assert!(r.stderr.contains("possible values: jsonl, csv"), "{r}");
    assert!(!r.stderr.contains("ECOM_INGEST_FORMAT"), "{r}");
    let r = run(d, &["ingest", "--orders", "x", "--format", "tsv"]).failed();
    assert!(r.stderr.contains("ECOM_INGEST_FORMAT"), "{r}");
    let r = run_env(d, &["query", "facts"], &[("ECOM_STORE", "sqlite")]).failed();
    assert_one_error_line(&r, &["ECOM_STORE", "`sqlite`", "`embedded` or `cassandra`"]);
    assert!(!r.stderr.contains("``"), "doubled backticks: {r}");
    assert!(!d.join(DB_FILE).exists(), "{r}");
}

/// `config` prints the value a run would use for settings whose default is worked out at
/// start, not `null`.
#[test]
fn config_prints_the_effective_value_of_derived_defaults() {
    let dir = data_dir();
    let r = run_env(dir.path(), &["config"], &[]).ok();
    let rows: BTreeMap<String, Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .map(|v| {
            (
                v["key"].as_str().unwrap_or_default().to_string(),
                v["value"].clone(),
            )
        })
        .collect();
    assert!(rows["shards"].as_u64().is_some_and(|n| n >= 1), "{r}");
    assert!(rows["log"].is_string(), "{r}");
    assert_eq!(rows["pubsub.orders_subscription"], "orders_data-sub", "{r}");
    assert_eq!(
        rows["pubsub.payments_subscription"], "payments_data-sub",
        "{r}"
    );
    assert_eq!(
        rows["pubsub.dlq_subscription"], "dlq_payments_data-sub",
        "{r}"
    );
    // Unset means "none" for these: still null.
    assert!(rows["until_idle"].is_null(), "{r}");
}

/// A read against a Cassandra node that is not there fails within seconds (5 s unless
/// `--cassandra-connect-wait` says otherwise), with a handful of lines, not a minute of them.
#[test]
fn reads_against_an_absent_cassandra_node_fail_within_their_short_wait() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nodes = format!("127.0.0.1:{port}");
    let dir = data_dir();
    for args in [&["query", "facts"][..], &["dlq", "list"]] {
        let r = run_env(
            dir.path(),
            args,
            &[
                ("ECOM_STORE", "cassandra"),
                ("ECOM_CASSANDRA_NODES", &nodes),
            ],
        )
        .failed();
        assert_one_error_line(&r, &[&nodes, "--cassandra-connect-wait (5s)"]);
        let warnings = r.stderr.matches(" WARN ").count();
        assert!(warnings <= 4, "{warnings} WARN lines for a 5 s wait: {r}");
        assert!(!r.stderr.contains("No sharding information"), "{r}");
    }
}

/// `dlq replay --every` repeats passes until Ctrl-C, then exits 0 (design §4.9, §4.8).
#[test]
fn dlq_replay_every_repeats_until_interrupted() {
    let dir = data_dir();
    run(
        dir.path(),
        &[
            "demo",
            "--orders",
            "20",
            "--payments",
            "30",
            "--hold",
            "100ms",
        ],
    )
    .ok();
    let mut replay = Running::spawn(command(dir.path(), &["dlq", "replay", "--every", "100ms"]));
    while read_all(&replay.stdout).lines().count() < 3 {
        assert!(
            replay.try_wait().is_none(),
            "replay --every ended by itself: {}",
            replay.output_so_far()
        );
        replay.check_not_hung("three replay passes");
        std::thread::sleep(Duration::from_millis(20));
    }
    replay.signal("INT");
    let done = replay.wait().ok();
    let passes = done.json_lines();
    assert!(passes.len() >= 3, "{done}");
    for pass in &passes {
        assert_eq!(int(pass, "unmatched"), 10, "{done}");
        assert_eq!(int(pass, "replayed"), 0, "{done}");
    }
    // Each pass counted one more attempt on every entry still unmatched: the demo's closing
    // pass, then every pass printed. A pass that Ctrl-C cut short is not printed, but its
    // one bump (the ten entries are one page, bumped in one statement) may have landed: so
    // one more at most, and the same on every entry.
    let dlq = dlq_by_id(&run(dir.path(), &["dlq", "list"]).ok());
    assert_eq!(dlq.len(), 10);
    let printed = passes.len() as i64;
    let attempts: BTreeSet<i64> = dlq.values().map(|e| int(e, "attempts")).collect();
    assert!(
        attempts == BTreeSet::from([1 + printed]) || attempts == BTreeSet::from([2 + printed]),
        "attempts {attempts:?} after the demo's pass and {printed} printed passes: {dlq:?}"
    );
}
