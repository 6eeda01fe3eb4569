//! The embedded store under process-level stress (design §4.4, §6): a SIGKILL in the middle
//! of a demo, and readers in other processes beside a running writer.

use crate::cli::{
    assert_fully_joined, command, dlq_by_id, facts_by_id, int, run, Run, Running, DB_FILE,
    PAYMENT_ID_OFFSET,
};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Big enough that a debug build runs for several seconds (about 4–6 s on an idle 2-core
/// machine), so the kill and the reads land mid-run; the tests fail loudly if it ends first.
const ORDERS: &str = "40000";
const PAYMENTS: &str = "50000";
const ORDERS_N: i64 = 40_000;
const PAYMENTS_N: i64 = 50_000;

/// How long one of these big demos may live before it counts as hung. Far beyond the
/// `HANG_LIMIT` of ordinary commands: 90,000 messages through a debug build, sometimes two
/// demos side by side, on a 2-core machine shared with other tests' JVMs.
const BIG_DEMO_LIMIT: Duration = Duration::from_secs(300);

/// A big demo in the background, with [`BIG_DEMO_LIMIT`].
fn spawn_big_demo(dir: &Path, args: &[&str]) -> Running {
    Running::spawn(command(dir, args)).with_limit(BIG_DEMO_LIMIT)
}

fn big_demo_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "demo",
        "--orders",
        ORDERS,
        "--payments",
        PAYMENTS,
        "--hold",
        "1s",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// The store's file opened read-only beside the writer; `None` while there is no file yet.
fn open_read_only(dir: &Path) -> Option<Connection> {
    let path = dir.join(DB_FILE);
    if !path.is_file() {
        return None;
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    Some(conn)
}

/// Rows in `table`, read straight from the file (read-only); `None` while the store is not
/// there yet (no file, or no schema yet).
fn count_rows(dir: &Path, table: &str) -> Option<i64> {
    open_read_only(dir)?
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .ok()
}

/// The keys (`key` column) of every row committed to `table` so far, read straight from the
/// file in one read transaction.
fn committed_keys(dir: &Path, table: &str, key: &str) -> BTreeSet<i64> {
    let conn = open_read_only(dir).unwrap_or_else(|| panic!("no store in {}", dir.display()));
    conn.prepare(&format!("SELECT {key} FROM {table}"))
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("reading {key} from {table} in {}: {e}", dir.display()))
}

/// `what` ids of `before` that `after` lacks, for a message naming them.
fn assert_kept(what: &str, before: &BTreeSet<i64>, after: &BTreeSet<i64>) {
    let missing: Vec<i64> = before.difference(after).copied().collect();
    assert!(
        missing.is_empty(),
        "{} of the {} {what} committed before the kill are gone after it: {missing:?}",
        missing.len(),
        before.len()
    );
}

fn integrity_check(dir: &Path) {
    let path = dir.join(DB_FILE);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let result: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("integrity_check on {}: {e}", path.display()));
    assert_eq!(result, ["ok"], "integrity_check on {}", path.display());
}

/// Waits until `ready` holds while `child` still runs. Panics, with the child's output, if
/// the child exits first or outlives its limit.
fn wait_while_running(child: &mut Running, what: &str, mut ready: impl FnMut() -> bool) {
    loop {
        if let Some(status) = child.try_wait() {
            panic!(
                "the demo ended ({status}) before {what}: make the run bigger\n{}",
                child.output_so_far()
            );
        }
        if ready() {
            return;
        }
        child.check_not_hung(what);
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_completed_demo(run: &Run) {
    let report = run.json();
    assert_eq!(report["interrupted"], false, "{run}");
    assert_eq!(int(&report["stats"], "write_failures"), 0, "{run}");
}

/// `dlq list` entries without the columns that legitimately differ between runs.
fn dlq_comparable(run: &Run) -> BTreeMap<i64, Value> {
    dlq_by_id(run)
        .into_iter()
        .map(|(id, mut e)| {
            let o = e.as_object_mut().expect("object");
            o.remove("first_seen");
            o.remove("attempts");
            (id, e)
        })
        .collect()
}

/// `dlq list --invalid` without `received_at`.
fn invalid_comparable(run: &Run) -> Vec<Value> {
    run.json_lines()
        .into_iter()
        .map(|mut m| {
            m.as_object_mut().expect("object").remove("received_at");
            m
        })
        .collect()
}

/// SIGKILL mid-run leaves a store that reopens cleanly with every commit it had, and a
/// rerun of the same demo converges to what one uninterrupted run produces.
#[test]
fn sigkill_mid_demo_then_rerun_matches_an_uninterrupted_run() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let args = big_demo_args(&[]);

    let mut demo = spawn_big_demo(a.path(), &args);
    wait_while_running(&mut demo, "facts and DLQ rows were committed", || {
        count_rows(a.path(), "orders_payments_facts").unwrap_or(0) > 0
            && count_rows(a.path(), "dlq_payments").unwrap_or(0) > 0
    });
    // What is committed now, by key: each of these must survive the kill below.
    let facts_before_kill = committed_keys(a.path(), "orders_payments_facts", "order_id");
    let dlq_before_kill = committed_keys(a.path(), "dlq_payments", "payment_id");
    let killed = demo.kill();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "the demo was not killed mid-run (it ended by itself first?): {killed}"
        );
    }
    assert!(
        !killed.stdout.contains("\"interrupted\""),
        "the demo printed its summary, so it was not killed mid-run: {killed}"
    );

    // The store reopens: every row committed before the kill is still there, by key, and
    // the file is sound.
    let facts = run(a.path(), &["query", "facts"]).ok();
    let partial = facts_by_id(&facts);
    let facts_after_kill: BTreeSet<i64> = partial.keys().copied().collect();
    assert_kept("fact rows", &facts_before_kill, &facts_after_kill);
    let strays: Vec<i64> = facts_after_kill
        .iter()
        .copied()
        .filter(|id| !(1..=ORDERS_N).contains(id))
        .collect();
    assert!(strays.is_empty(), "rows for no demo order: {strays:?}");
    let dlq = run(a.path(), &["dlq", "list"]).ok();
    let dlq_after_kill: BTreeSet<i64> = dlq_by_id(&dlq).keys().copied().collect();
    assert_kept("DLQ entries", &dlq_before_kill, &dlq_after_kill);
    run(a.path(), &["dlq", "list", "--invalid"])
        .ok()
        .json_lines();
    integrity_check(a.path());

    // The same demo again on A, and once uninterrupted on B (side by side).
    let rerun = spawn_big_demo(a.path(), &args);
    let fresh = spawn_big_demo(b.path(), &args);
    let rerun = rerun.wait().ok();
    let fresh = fresh.wait().ok();
    assert_completed_demo(&rerun);
    assert_completed_demo(&fresh);
    integrity_check(a.path());
    integrity_check(b.path());

    let facts_a = run(a.path(), &["query", "facts"]).ok();
    let facts_b = run(b.path(), &["query", "facts"]).ok();
    let (rows_a, rows_b) = (facts_by_id(&facts_a), facts_by_id(&facts_b));
    assert_eq!(rows_b.len() as i64, ORDERS_N, "{facts_b}");
    for row in rows_b.values() {
        assert_fully_joined(row);
    }
    assert_eq!(rows_a.len(), rows_b.len(), "A: {facts_a}\nB: {facts_b}");
    for (id, row_b) in &rows_b {
        assert_eq!(
            rows_a.get(id),
            Some(row_b),
            "row {id} differs between A and B"
        );
    }

    let dlq_a = run(a.path(), &["dlq", "list"]).ok();
    let dlq_b = run(b.path(), &["dlq", "list"]).ok();
    let (dead_a, dead_b) = (dlq_comparable(&dlq_a), dlq_comparable(&dlq_b));
    assert_eq!(dead_b.len() as i64, PAYMENTS_N - ORDERS_N, "{dlq_b}");
    for (payment_id, e) in &dead_b {
        assert_eq!(e["reason"], "order_not_found", "{e}");
        assert!(int(e, "order_id") > ORDERS_N, "{e}");
        assert_eq!(*payment_id, PAYMENT_ID_OFFSET + int(e, "order_id"), "{e}");
    }
    assert_eq!(dead_a.len(), dead_b.len(), "A: {dlq_a}\nB: {dlq_b}");
    for (id, e_b) in &dead_b {
        assert_eq!(
            dead_a.get(id),
            Some(e_b),
            "DLQ entry {id} differs between A and B"
        );
    }

    let invalid_a = run(a.path(), &["dlq", "list", "--invalid"]).ok();
    let invalid_b = run(b.path(), &["dlq", "list", "--invalid"]).ok();
    assert_eq!(
        invalid_comparable(&invalid_a),
        invalid_comparable(&invalid_b),
        "A: {invalid_a}\nB: {invalid_b}"
    );
}

/// `query facts` and `dlq list` in other processes work while a demo writes (design §6), and the
/// demo then finishes normally.
#[test]
fn readers_in_other_processes_beside_a_running_demo() {
    let c = tempfile::tempdir().expect("tempdir");
    // Paced, so that the run lasts well beyond the hold and the reads overlap real writes.
    let args = big_demo_args(&["--rate", "10000"]);
    let mut demo = spawn_big_demo(c.path(), &args);

    // Wait for the store to be set up (schema created, first rows committed): from then on
    // every read must succeed.
    wait_while_running(&mut demo, "the first rows were committed", || {
        count_rows(c.path(), "orders_payments_facts").unwrap_or(0) > 0
    });

    // Read from other processes until both reads returned rows while the writer was still
    // running after they returned.
    let mut reads = 0;
    loop {
        let facts = run(c.path(), &["query", "facts"]);
        assert!(
            facts.status.success(),
            "query facts failed beside the running demo: {facts}\n--- demo ---\n{}",
            demo.output_so_far()
        );
        let rows = facts_by_id(&facts);
        let dlq = run(c.path(), &["dlq", "list"]);
        assert!(
            dlq.status.success(),
            "dlq list failed beside the running demo: {dlq}\n--- demo ---\n{}",
            demo.output_so_far()
        );
        let dead = dlq_by_id(&dlq);
        for e in dead.values() {
            assert_eq!(e["reason"], "order_not_found", "{e}");
        }
        reads += 1;
        if let Some(status) = demo.try_wait() {
            panic!(
                "the demo ended ({status}) before both reads returned rows while it ran \
                 ({reads} reads; last: {} rows, {} DLQ entries): make the run longer\n{}",
                rows.len(),
                dead.len(),
                demo.output_so_far()
            );
        }
        if !rows.is_empty() && !dead.is_empty() {
            break;
        }
        demo.check_not_hung("reads returning rows and DLQ entries");
        std::thread::sleep(Duration::from_millis(50));
    }

    let done = demo.wait().ok();
    assert_completed_demo(&done);
    let facts = run(c.path(), &["query", "facts"]).ok();
    let rows = facts_by_id(&facts);
    assert_eq!(rows.len() as i64, ORDERS_N, "after {reads} reads: {facts}");
    for row in rows.values() {
        assert_fully_joined(row);
    }
    let dlq = run(c.path(), &["dlq", "list"]).ok();
    assert_eq!(dlq_by_id(&dlq).len() as i64, PAYMENTS_N - ORDERS_N, "{dlq}");
}

/// SIGINT (Ctrl-C) and SIGTERM stop a demo gracefully (design §4.8): exit 0 with a partial
/// summary, and a store that is consistent and readable.
#[test]
fn sigint_and_sigterm_stop_a_demo_gracefully() {
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_big_demo(dir.path(), &big_demo_args(&[]));
        wait_while_running(&mut child, "the first rows", || {
            count_rows(dir.path(), "orders_payments_facts").is_some_and(|n| n > 0)
        });
        child.signal(signal);
        let run = child.wait().ok();
        let report = run.json();
        assert_eq!(report["interrupted"], true, "SIG{signal}: {run}");
        assert!(
            run.stderr.contains(&format!("SIG{signal} received")),
            "SIG{signal}: {run}"
        );
        integrity_check(dir.path());
        let facts = crate::cli::run(dir.path(), &["query", "facts"]).ok();
        let rows = facts_by_id(&facts);
        assert!(!rows.is_empty(), "SIG{signal}: no rows");
        // Rows only for the demo's orders (its other payments never find an order).
        let strays: Vec<i64> = rows
            .keys()
            .copied()
            .filter(|id| !(1..=ORDERS_N).contains(id))
            .collect();
        assert!(
            strays.is_empty(),
            "SIG{signal}: rows for no demo order: {strays:?}"
        );
        // What was written is whole: every row has its order half or its payment half.
        let halfless: Vec<&i64> = rows
            .iter()
            .filter(|(_, r)| r["customer_id"].is_null() && r["payment_id"].is_null())
            .map(|(id, _)| id)
            .collect();
        assert!(
            halfless.is_empty(),
            "SIG{signal}: rows with neither half: {halfless:?}"
        );
    }
}
