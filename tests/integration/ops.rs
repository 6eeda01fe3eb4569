//! Operability (issue 5): `/metrics` agrees with what the pipeline did, `/readyz` follows the
//! store and shutdown, logs can be JSON, and the status page works in a real browser.
//!
//! Listeners bind port 0; the tests read the bound address (from `demo --serve`'s
//! "serving on http://ADDR/" line, or from the server handle) and never guess ports.

use crate::cli::{assert_one_error_line, command, data_dir, int, run, Running};
use crate::support::{engine, order_msg, payment_msg, start_pipeline, HookedStore, WriteHook};
use async_trait::async_trait;
use ecom_stream::generator::MockData;
use ecom_stream::health::{Component, Readiness};
use ecom_stream::ops;
use ecom_stream::shutdown;
use ecom_stream::source::in_process::{Delivery, InProcessSource, SourceOptions};
use ecom_stream::store::StoreError;
use ecom_stream::telemetry::WRITE_LATENCY_BUCKETS;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `GET path` over HTTP/1.1 with a blocking socket: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> (u16, String) {
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
    parse_response(&raw)
}

/// The same request from async code (in-process servers run on the test's runtime, so a
/// blocking client there would deadlock).
pub(crate) async fn get_async(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    parse_response(&String::from_utf8_lossy(&raw))
}

fn parse_response(raw: &str) -> (u16, String) {
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// `/metrics` as `name{labels}` → value (comments and blank lines skipped).
pub(crate) fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad metrics line {l:?}"));
            let value = value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {l:?}: {e}"));
            (name.to_string(), value)
        })
        .collect()
}

pub(crate) fn metric(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    let v = m
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics: {m:#?}"));
    *v as u64
}

/// Waits for `find` to return something from what the child has printed, failing if the
/// child exits first or outlives its limit.
fn wait_for<T>(child: &mut Running, what: &str, mut find: impl FnMut(&Running) -> Option<T>) -> T {
    loop {
        if let Some(found) = find(child) {
            return found;
        }
        if let Some(status) = child.try_wait() {
            panic!(
                "exited ({status}) before {what}:\n{}",
                child.output_so_far()
            );
        }
        child.check_not_hung(what);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address from `demo --serve`'s "serving on http://ADDR/" line.
pub(crate) fn served_addr(child: &mut Running) -> SocketAddr {
    wait_for(child, "the `serving on` line", |c| {
        c.stderr_so_far().lines().find_map(|l| {
            let rest = l.strip_prefix("serving on http://")?;
            rest.trim_end_matches('/').parse().ok()
        })
    })
}

// ---------------------------------------------------------------------------------------
// /metrics against the demo
// ---------------------------------------------------------------------------------------

/// The Prometheus name of each counter of the demo's JSON `stats` (README's table).
const COUNTERS: [(&str, &str); 17] = [
    ("received", "ecom_stream_intake_messages_total"),
    ("invalid", "ecom_stream_invalid_messages_total"),
    ("duplicates", "ecom_stream_duplicates_total"),
    ("orders_upserted", "ecom_stream_orders_upserted_total"),
    ("payments_upserted", "ecom_stream_payments_upserted_total"),
    ("payments_joined", "ecom_stream_payments_joined_total"),
    (
        "payments_joined_after_hold",
        "ecom_stream_payments_joined_after_hold_total",
    ),
    ("payments_held", "ecom_stream_payments_held_total"),
    ("dead_lettered", "ecom_stream_payments_dead_lettered_total"),
    ("spilled_early", "ecom_stream_payments_spilled_early_total"),
    ("replayed", "ecom_stream_payments_replayed_total"),
    ("cache_hits", "ecom_stream_order_cache_hits_total"),
    ("cache_misses", "ecom_stream_order_cache_misses_total"),
    ("store_reads", "ecom_stream_store_reads_total"),
    ("writer_batches", "ecom_stream_writer_batches_total"),
    ("write_retries", "ecom_stream_store_retries_total"),
    ("write_failures", "ecom_stream_write_failures_total"),
];

#[test]
fn metrics_scraped_during_and_after_a_demo_agree_with_its_summary() {
    let dir = data_dir();
    let mut child = Running::spawn(command(
        dir.path(),
        &["demo", "--serve", "--metrics-addr", "127.0.0.1:0", "--json"],
    ));
    let addr = served_addr(&mut child);
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_string()));
    let early = scrape(addr);
    // The summary is printed once the demo is done; the listener keeps serving after it.
    let report: Value = wait_for(&mut child, "the JSON summary", |c| {
        let out = c.stdout_so_far();
        let line = out.lines().next()?;
        out.ends_with('\n')
            .then(|| serde_json::from_str(line).ok())?
    });
    let end = scrape(addr);
    let stats = &report["stats"];
    for (key, name) in COUNTERS {
        let value = metric(&end, name);
        assert_eq!(value, int(stats, key) as u64, "{name} vs summary {key}");
        // Counters only grow: the scrape taken during the run is never ahead.
        assert!(
            early.get(name).map_or(0, |v| *v as u64) <= value,
            "{name} went down"
        );
    }
    // The scenario's shape (README): 80 orders (duplicates may upsert again), 420 payments
    // whose order never came, 6 invalid payloads.
    assert!(metric(&end, "ecom_stream_orders_upserted_total") >= 80);
    assert_eq!(
        metric(&end, "ecom_stream_payments_dead_lettered_total")
            - metric(&end, "ecom_stream_payments_replayed_total"),
        420
    );
    assert_eq!(metric(&end, "ecom_stream_invalid_messages_total"), 6);
    assert_eq!(
        metric(&end, "ecom_stream_rows_written_total"),
        int(stats, "orders_upserted") as u64 + int(stats, "payments_upserted") as u64
    );
    // Per source: what the source reported.
    let source = &report["source"];
    let per_source = |name: &str| {
        metric(&end, &format!("{name}{{source=\"orders\"}}"))
            + metric(&end, &format!("{name}{{source=\"payments\"}}"))
    };
    assert_eq!(
        per_source("ecom_stream_messages_received_total"),
        int(source, "delivered") as u64
    );
    assert_eq!(
        per_source("ecom_stream_messages_acked_total"),
        int(source, "acked") as u64
    );
    assert_eq!(
        per_source("ecom_stream_messages_nacked_total"),
        int(source, "nacked") as u64
    );
    assert_eq!(per_source("ecom_stream_subscriber_outstanding_messages"), 0);
    // Everything answered: nothing held, in flight or queued.
    assert_eq!(metric(&end, "ecom_stream_pending_payments"), 0);
    for actor in ["join_shard", "fact_writer", "dead_letter"] {
        assert_eq!(
            metric(
                &end,
                &format!("ecom_stream_mailbox_depth{{actor=\"{actor}\"}}")
            ),
            0
        );
    }
    for writer in ["facts", "dead_letter"] {
        assert_eq!(
            metric(
                &end,
                &format!("ecom_stream_writes_in_flight{{writer=\"{writer}\"}}")
            ),
            0
        );
    }
    // One latency sample per fact write; none failed here.
    assert_eq!(
        metric(&end, "ecom_stream_write_duration_seconds_count"),
        int(stats, "writer_batches") as u64
    );
    assert!(end.contains_key("ecom_stream_write_duration_seconds_bucket{le=\"+Inf\"}"));
    // The histogram is rendered once, from the one set of samples the status page reads too:
    // typed as a histogram, buckets cumulative, `+Inf` equal to `_count`.
    let (_, text) = get(addr, "/metrics");
    assert_eq!(
        text.matches("# TYPE ecom_stream_write_duration_seconds histogram")
            .count(),
        1,
        "{text}"
    );
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("ecom_stream_write_duration_seconds_bucket{le=\""))
        .map(|l| {
            l.rsplit_once(' ')
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or_else(|| panic!("bad bucket line {l:?}"))
        })
        .collect();
    assert_eq!(buckets.len(), WRITE_LATENCY_BUCKETS.len() + 1, "{text}");
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "buckets are not cumulative: {buckets:?}"
    );
    assert_eq!(
        buckets.last().copied(),
        Some(int(stats, "writer_batches") as u64),
        "+Inf"
    );
    assert!(
        text.contains("ecom_stream_write_duration_seconds_sum "),
        "{text}"
    );
    // Every series the Grafana dashboard queries is exported.
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/ecom-stream.json"),
    )
    .expect("deploy/grafana/ecom-stream.json");
    for name in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if name.starts_with("ecom_stream_") {
            assert!(
                end.keys()
                    .any(|k| k == name || k.starts_with(&format!("{name}{{"))),
                "the dashboard queries {name}, which /metrics does not export"
            );
        }
    }
    assert_eq!(metric(&end, "ecom_stream_store_up"), 1);
    assert_eq!(metric(&end, "ecom_stream_ready"), 1);
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".to_string()));
    // The status page and its data are on the same listener.
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("status.json") && !page.contains("http://") && !page.contains("https://"),
        "the page must be self-contained"
    );
    let (status, json) = get(addr, "/status.json");
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&json).expect("status.json is JSON");
    assert_eq!(json["counters"], *stats);
    assert!(!json["history"].as_array().expect("history").is_empty());
    // Who is serving, against what; the DLQ now (this process's dead letters less its
    // replays: the 420 payments whose order never came); the last 5 of the 6 invalid
    // payloads' reasons, without their payloads.
    let identity = &json["identity"];
    assert_eq!(identity["mode"], "demo", "{identity}");
    assert_eq!(identity["store"], dir.path().display().to_string());
    assert_eq!(identity["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["uptime_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert_eq!(json["dlq_entries_now"], 420);
    let invalid = json["recent_invalid"].as_array().expect("recent_invalid");
    assert_eq!(invalid.len(), 5, "{invalid:?}");
    for note in invalid {
        assert!(
            note["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{note}"
        );
        assert!(
            note["source"] == "orders" || note["source"] == "payments",
            "{note}"
        );
        assert!(note.get("payload").is_none(), "{note}");
    }
    // The publish-to-ack lag: one sample per acked message (the in-process source knows
    // every publish time), on /metrics as well.
    let lag = json["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("a sample");
    assert_eq!(
        lag["lag_count"],
        per_source("ecom_stream_messages_acked_total")
    );
    assert_eq!(
        per_source("ecom_stream_publish_to_ack_seconds_count"),
        per_source("ecom_stream_messages_acked_total")
    );
    // Nacks by reason sum to the nacks; the in-process source has no leases to report.
    for source in ["orders", "payments"] {
        let s = &json["sources"][source];
        let by_reason: u64 = s["nacked_by_reason"]
            .as_object()
            .expect("nacked_by_reason")
            .values()
            .map(|v| v.as_u64().expect("a count"))
            .sum();
        assert_eq!(Some(by_reason), s["nacked"].as_u64(), "{s}");
        assert_eq!(s["lease"]["max_lease_seconds"], 0, "{s}");
    }
    // SIGTERM after the summary: a clean exit.
    child.signal("TERM");
    child.wait().ok();
}

#[test]
fn a_taken_metrics_address_fails_at_start_naming_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = data_dir();
    let run = run(dir.path(), &["demo", "--serve", "--metrics-addr", &addr]).failed();
    assert_one_error_line(&run, &["--metrics-addr", "ECOM_METRICS_ADDR", &addr]);
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = data_dir();
    let run = run(
        dir.path(),
        &[
            "--log-format",
            "json",
            "demo",
            "--orders",
            "5",
            "--payments",
            "8",
            "--hold",
            "50ms",
        ],
    )
    .ok();
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(!lines.is_empty(), "no logs: {run}");
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// /readyz, in process
// ---------------------------------------------------------------------------------------

/// Until the test says otherwise, every write fails as "unreachable".
#[derive(Default)]
struct Unreachable {
    down: AtomicBool,
}

#[async_trait]
impl WriteHook for Unreachable {
    async fn before_write(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("connection refused (injected)"));
        }
        Ok(())
    }
}

/// Polls `/readyz` until it answers `status` (bounded), returning the body.
async fn readyz_becomes(addr: SocketAddr, status: u16) -> String {
    for _ in 0..3000 {
        let (s, body) = get_async(addr, "/readyz").await;
        if s == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/readyz never answered {status}");
}

#[actix_rt::test]
async fn readyz_is_unready_while_the_store_is_unreachable_and_ready_again_after() {
    let store = HookedStore::new(Unreachable::default());
    let (pipeline, stats) = start_pipeline(&engine(Duration::from_secs(30)), store.clone());
    let readiness = Arc::new(Readiness::new());
    readiness.register(Component::Store);
    readiness.set(Component::Store, true);
    let server = ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        stats.clone(),
        readiness.clone(),
        shutdown::Shutdown::never(),
        ops::status::Identity::named("test"),
    )
    .await
    .expect("serve");
    let addr = server.local_addr();
    assert_eq!(
        get_async(addr, "/readyz").await,
        (200, "ready\n".to_string())
    );

    // The store goes away; the next writes fail and /readyz says so.
    store.hook.down.store(true, Ordering::SeqCst);
    let mut mock = MockData::new(9);
    let msgs: Vec<_> = (1..=20)
        .flat_map(|i| {
            [
                order_msg(&mut mock, i, ""),
                payment_msg(&mut mock, 100 + i, i, ""),
            ]
        })
        .collect();
    let source = InProcessSource::with_stats(SourceOptions::default(), stats.clone());
    let (done_tx, done) = shutdown::channel();
    let delivery = crate::support::spawn_delivery(&source, &pipeline, msgs, done);
    let body = readyz_becomes(addr, 503).await;
    assert_eq!(body, "not ready: store\n");
    let (_, status) = get_async(addr, "/status.json").await;
    let status: Value = serde_json::from_str(&status).expect("json");
    assert_eq!(status["gauges"]["store_up"], false);
    assert_eq!(status["ready"], false);
    // Liveness is not readiness: the process is alive all along.
    assert_eq!(get_async(addr, "/healthz").await.0, 200);

    // It comes back: the redelivered messages are written and /readyz recovers.
    store.hook.down.store(false, Ordering::SeqCst);
    readyz_becomes(addr, 200).await;
    assert_eq!(delivery.await.expect("delivery task"), Delivery::Completed);
    assert_eq!(source.counts().acked, 40);
    drop(done_tx);
    pipeline.shutdown().await;
}

#[actix_rt::test]
async fn readyz_turns_unready_on_shutdown_while_healthz_stays_ok() {
    let (trigger, listener) = shutdown::channel();
    let readiness = Arc::new(Readiness::new());
    readiness.register(Component::Store);
    readiness.register(Component::PubSub);
    let server = ops::serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(ecom_stream::telemetry::Stats::default()),
        readiness.clone(),
        listener,
        ops::status::Identity::named("test"),
    )
    .await
    .expect("serve");
    let addr = server.local_addr();
    // Registered components start not ready.
    assert_eq!(
        get_async(addr, "/readyz").await,
        (503, "not ready: pubsub, store\n".to_string())
    );
    readiness.set(Component::Store, true);
    readiness.set(Component::PubSub, true);
    assert_eq!(get_async(addr, "/readyz").await.0, 200);

    trigger.trigger();
    assert_eq!(readyz_becomes(addr, 503).await, "shutting down\n");
    // Components reporting ready again do not undo a shutdown.
    readiness.set(Component::Store, true);
    assert_eq!(get_async(addr, "/readyz").await.0, 503);
    assert_eq!(get_async(addr, "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get_async(addr, "/nope").await.0, 404);
}

// ---------------------------------------------------------------------------------------
// The status page in a real browser
// ---------------------------------------------------------------------------------------

/// Debian's `chromium` (`.ci/run` installs it). Missing: skip loudly, but fail in CI.
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is missing in CI: .ci/run must install it"
        );
        eprintln!(
            "SKIPPED: the status page browser test needs chromium (apt-get install chromium)"
        );
    }
    found
}

/// The page as headless Chromium renders it after its scripts ran (`--dump-dom`).
fn rendered_page(chromium: &std::path::Path, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", chromium.display()));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number shown in the element with `id` (digits only: "1,234" → 1234).
fn shown(page: &str, id: &str) -> Option<u64> {
    let start = page.find(&format!("id=\"{id}\">"))? + id.len() + 6;
    let text = &page[start..start + page[start..].find('<')?];
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// How long the paced demo of the status page test may live before it counts as hung: it
/// sends 6,000 messages at 200 a second (30 s), and headless Chromium renders the page
/// beside it, several seconds each time on a loaded 2-core machine.
const PACED_DEMO_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn status_page_shows_live_numbers_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let dir = data_dir();
    // Paced, so the demo is still running while the page is read twice.
    let mut child = Running::spawn(command(
        dir.path(),
        &[
            "demo",
            "--serve",
            "--metrics-addr",
            "127.0.0.1:0",
            "--orders",
            "3000",
            "--payments",
            "3000",
            "--rate",
            "200",
            "--hold",
            "1s",
        ],
    ))
    .with_limit(PACED_DEMO_LIMIT);
    let addr = served_addr(&mut child);
    let url = format!("http://{addr}/");
    let first = rendered_page(&chromium, &url);
    let received =
        |page: &str| shown(page, "orders-received").zip(shown(page, "payments-received"));
    let (o1, p1) = received(&first).unwrap_or_else(|| panic!("the page shows no counts:\n{first}"));
    assert!(
        first.contains("id=\"ready\" class=\"ok\">ready<"),
        "{first}"
    );
    // Read again until the numbers moved (the demo runs for ~30 s; bounded by PACED_DEMO_LIMIT).
    let second = wait_for(&mut child, "the page's numbers to move", |_| {
        let page = rendered_page(&chromium, &url);
        let (o, p) = received(&page)?;
        (o + p > o1 + p1).then_some(page)
    });
    let (o2, p2) = received(&second).expect("counts");
    // Plausible: counts only grow, and stay within what the demo sends (duplicates and
    // invalid payloads included).
    assert!(o2 >= o1 && p2 >= p1);
    assert!(o2 <= 3000 * 11 / 10 && p2 <= 3000 * 11 / 10, "{o2} {p2}");
    for id in [
        "orders-rate",
        "payments-rate",
        "joined",
        "pending",
        "writes",
        // The DLQ entries now, beside what replays took out of it.
        "dlq-now",
        "replayed",
        "invalid",
        // The identity header.
        "shards",
    ] {
        assert!(
            shown(&second, id).is_some(),
            "no number in #{id}:\n{second}"
        );
    }
    // The identity header names the mode, the store's directory, the hold and the version.
    for (id, text) in [
        ("mode", "demo".to_string()),
        ("store", dir.path().display().to_string()),
        ("source", "in-process generator".to_string()),
        ("hold", "1s".to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ] {
        assert!(
            second.contains(&format!("id=\"{id}\">{text}<")),
            "#{id} does not show {text:?}:\n{second}"
        );
    }
    assert!(second.contains("href=\"metrics\""), "no link to /metrics");
    // No wall of zeros: the demo has no Pub/Sub leases, so their panel is hidden.
    assert!(
        second.contains("id=\"lease-panel\" hidden"),
        "the lease panel shows outside `run`:\n{second}"
    );
    // A script error would show in #updated instead of the poll count.
    assert!(
        second.contains(" polls)<"),
        "the page never polled or its script failed:\n{second}"
    );
    if let Some(path) = std::env::var_os("ECOM_STATUS_SCREENSHOT") {
        screenshot(&chromium, &url, std::path::Path::new(&path));
    }
    child.signal("INT");
    child.wait().ok();
}

/// Writes a PNG of the page as headless Chromium draws it: how `docs/status-page.png` is
/// made (README, "The status page").
fn screenshot(chromium: &std::path::Path, url: &str, path: &std::path::Path) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,780",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", chromium.display()));
    assert!(
        out.status.success() && path.is_file(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
