//! Bad input at start, found by trying (issue 13): each case fails with one clear line and
//! touches nothing, or, where the input is fine, says what it serves.
//!
//! Owns: "validate everything before touching anything" at the level of the binary. Must
//! never: leave a server, a topic or a data file behind.

use crate::cli::{assert_one_error_line, command, data_dir, Running};
use crate::pubsub::World;
use std::net::TcpListener;

#[test]
fn a_log_filter_that_does_not_parse_fails_at_start() {
    let dir = data_dir();
    let r = crate::cli::run(dir.path(), &["--log", "a[[[=bogus", "dlq", "list"]).failed();
    assert_one_error_line(&r, &["--log", "ECOM_LOG", "a[[[=bogus"]);
    // The same filter from RUST_LOG is named as RUST_LOG.
    let mut cmd = command(dir.path(), &["dlq", "list"]);
    cmd.env("RUST_LOG", "a[[[=bogus");
    let r = Running::spawn(cmd).wait().failed();
    assert_one_error_line(&r, &["RUST_LOG"]);
    // From the file, named by its key and the file; and nothing is opened or created first.
    let config = dir.path().join("ecom-stream.toml");
    std::fs::write(&config, "log = \"a[[[=bogus\"\n").expect("write config");
    let data = dir.path().join("data");
    let config = config.display().to_string();
    let r = crate::cli::run(&data, &["--config", &config, "demo"]).failed();
    assert_one_error_line(&r, &["--log", "ECOM_LOG", "`log`", &config]);
    assert!(!data.exists(), "the demo's data dir was created: {r}");
}

#[test]
fn a_busy_metrics_addr_fails_before_the_store_is_created_and_says_the_os_error_once() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = data_dir();
    let data = dir.path().join("data");
    let mut cmd = command(&data, &["run", "--metrics-addr", &addr]);
    // No Pub/Sub is reached: the listener is bound before any client is built.
    cmd.env("PUBSUB_EMULATOR_HOST", "127.0.0.1:9");
    let r = Running::spawn(cmd).wait().failed();
    assert_busy_addr_line(&r, &addr);
    assert!(
        !data.join("ecom-stream.db").exists(),
        "the store was created before the listener failed: {r}"
    );
}

/// `demo --serve` too: the listener before the store.
#[test]
fn demo_serve_on_a_busy_metrics_addr_fails_before_the_store_is_created() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let dir = data_dir();
    let data = dir.path().join("data");
    let cmd = command(&data, &["demo", "--serve", "--metrics-addr", &addr]);
    let r = Running::spawn(cmd).wait().failed();
    assert_busy_addr_line(&r, &addr);
    assert!(
        !data.join("ecom-stream.db").exists(),
        "the store was created before the listener failed: {r}"
    );
}

/// One line naming the setting by its flag, variable and file key, saying where the address
/// came from, and the OS error exactly once.
fn assert_busy_addr_line(r: &crate::cli::Run, addr: &str) {
    assert_one_error_line(
        r,
        &[
            "--metrics-addr",
            "ECOM_METRICS_ADDR",
            "`metrics_addr`",
            "set by the flag",
            addr,
        ],
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert_eq!(
        line.matches("os error").count(),
        1,
        "the OS error once: {line}"
    );
    assert_eq!(line.matches("ECOM_METRICS_ADDR").count(), 1, "{line}");
}

#[test]
fn setup_refuses_a_bad_store_setting_before_creating_any_topic() {
    let Some(w) = World::without_setup("validate") else {
        return;
    };
    let r = w
        .run(&[
            "setup",
            "--store",
            "cassandra",
            "--cassandra-replication",
            "x:y:z",
        ])
        .failed();
    assert_one_error_line(&r, &["--cassandra-replication"]);
    // A TLS CA that exists but holds no certificate: its contents are checked before any
    // topic too (not only when connecting, after the topics).
    let dir = data_dir();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").expect("write ca");
    let ca = ca.display().to_string();
    let r = w
        .run(&["setup", "--store", "cassandra", "--cassandra-tls-ca", &ca])
        .failed();
    assert_one_error_line(&r, &["--cassandra-tls-ca", "no PEM certificate"]);
    // Nothing was created: a valid setup now creates every topic and subscription.
    let out = w.run(&["setup"]).ok().stdout;
    let steps: Vec<&str> = out.lines().filter(|l| !l.starts_with("store")).collect();
    assert_eq!(steps.len(), 6, "{out}");
    for step in steps {
        assert!(
            step.contains("created"),
            "existed before setup: {step}\n{out}"
        );
    }
}

#[test]
fn run_names_the_address_it_serves_whatever_the_log_level() {
    let Some(w) = World::new("serving_line") else {
        return;
    };
    // World's commands listen on 127.0.0.1:0: only the printed line can tell the port.
    let mut running = w.start(&["--log", "warn"]);
    let addr = crate::ops::served_addr(&mut running);
    let (status, _) = crate::ops::get(addr, "/healthz");
    crate::pubsub::stop(running);
    assert_eq!(status, 200, "http://{addr}/healthz");
}

#[test]
fn every_pubsub_command_exits_non_zero_naming_pubsub_when_it_is_unreachable() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let host = format!("127.0.0.1:{port}");
    let dir = data_dir();
    for args in [
        &["run", "--pubsub-connect-wait", "2s"][..],
        &["setup", "--pubsub-connect-wait", "2s"],
        &["produce", "orders", "--pubsub-connect-wait", "2s"],
    ] {
        let mut cmd = command(dir.path(), args);
        cmd.env("PUBSUB_EMULATOR_HOST", &host);
        cmd.env("ECOM_METRICS_ADDR", "127.0.0.1:0");
        let r = Running::spawn(cmd).wait().failed();
        // What was tried, for how long, and what to do.
        assert_one_error_line(
            &r,
            &[
                &format!("emulator at {host}"),
                "--pubsub-connect-wait (2s)",
                "gcloud beta emulators pubsub start",
            ],
        );
        // Waiting was said once, not once per retry.
        let waiting = r.stderr.matches("does not answer yet").count();
        assert_eq!(waiting, 1, "{args:?}: {r}");
    }
}

/// No emulator and no credentials: each command says at once that the real service was
/// tried with Application Default Credentials, and how to point it at the emulator instead.
/// The endpoint is a closed loopback port and the credentials file does not exist, so no
/// request leaves the machine.
#[test]
fn every_pubsub_command_without_emulator_or_credentials_says_what_it_tried() {
    let dir = data_dir();
    for args in [&["run"][..], &["setup"], &["produce", "payments"]] {
        let mut cmd = command(dir.path(), args);
        cmd.env_remove("PUBSUB_EMULATOR_HOST");
        cmd.env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            dir.path().join("no-such-key.json"),
        );
        cmd.env("ECOM_PUBSUB_ENDPOINT", "http://127.0.0.1:1");
        cmd.env("ECOM_METRICS_ADDR", "127.0.0.1:0");
        let r = Running::spawn(cmd).wait().failed();
        assert_one_error_line(
            &r,
            &["Application Default Credentials", "PUBSUB_EMULATOR_HOST"],
        );
        assert!(
            !r.stderr.contains("has `ecom-stream setup` been run"),
            "{r}"
        );
    }
}

#[test]
fn run_exits_non_zero_naming_a_missing_subscription_at_start() {
    let Some(w) = World::without_setup("missing_sub") else {
        return;
    };
    let r = w.run(&["run"]).failed();
    let subscription = format!("projects/{}/subscriptions/orders_data-sub", w.project());
    assert_one_error_line(&r, &[&subscription, "NOT_FOUND", "ecom-stream setup"]);
}

#[test]
fn run_exits_non_zero_naming_a_missing_dlq_topic_at_start() {
    let Some(w) = World::new("missing_dlq") else {
        return;
    };
    let topic = format!("projects/{}/topics/dlq_payments_data", w.project());
    let config = w.pubsub_config();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            ecom_stream::pubsub::connect::topic_admin(&config)
                .await
                .expect("admin client")
                .delete_topic()
                .set_topic(&topic)
                .send()
                .await
                .expect("delete the DLQ topic");
        });
    let r = w.run(&["run"]).failed();
    assert_one_error_line(&r, &[&topic, "NOT_FOUND"]);
}

#[test]
fn run_exits_non_zero_naming_a_store_it_cannot_open() {
    // The data dir is a file: the embedded store cannot be created. No Pub/Sub is reached.
    let dir = data_dir();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let mut cmd = command(&file, &["run"]);
    cmd.env("PUBSUB_EMULATOR_HOST", "127.0.0.1:9");
    cmd.env("ECOM_METRICS_ADDR", "127.0.0.1:0");
    let r = Running::spawn(cmd).wait().failed();
    assert_one_error_line(&r, &["not-a-dir"]);
}

/// `setup --store-only` makes the store ready with no Pub/Sub at all (an `ingest` user's
/// setup); `setup --pubsub-only` creates the topics and subscriptions and leaves the store
/// alone. Then a full `setup` finds everything there.
#[test]
fn setup_makes_the_store_or_pubsub_ready_alone() {
    let dir = data_dir();
    let store_dir = dir.path().join("store-only");
    let mut cmd = command(&store_dir, &["setup", "--store-only"]);
    // Nobody listens there: a setup that tried Pub/Sub would fail.
    cmd.env("PUBSUB_EMULATOR_HOST", "127.0.0.1:1");
    let r = Running::spawn(cmd).wait().ok();
    assert!(r.stdout.starts_with("store        ready"), "{r}");
    assert!(!r.stdout.contains("topic"), "{r}");
    assert!(store_dir.join(crate::cli::DB_FILE).exists(), "{r}");

    let Some(w) = World::without_setup("setup_parts") else {
        return;
    };
    let r = w.run(&["setup", "--pubsub-only"]).ok();
    assert_eq!(r.stdout.matches("created").count(), 6, "{r}");
    assert!(!r.stdout.contains("store "), "{r}");
    assert!(!w.data_dir().join(crate::cli::DB_FILE).exists(), "{r}");
    let r = w.run(&["setup"]).ok();
    assert_eq!(r.stdout.matches("exists").count(), 6, "{r}");
    assert!(r.stdout.contains("store        ready"), "{r}");
    let r = w.run(&["setup", "--store-only", "--pubsub-only"]).failed();
    assert!(r.stderr.contains("cannot be used with"), "{r}");
}

/// `scripts/cassandra-node start` on a port another process holds says so in one line and
/// exits 1, before any Java starts (it used to end in a Java stack trace).
#[test]
fn the_node_script_names_a_busy_port_instead_of_a_stack_trace() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = busy.local_addr().expect("its address").port().to_string();
    let dir = data_dir();
    let out = std::process::Command::new("bash")
        .arg(crate::cassandra_node::repo_root().join("scripts/cassandra-node"))
        .args(["start", "--dir"])
        .arg(dir.path().join("node"))
        .args(["--native-port", &port])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/cassandra-node");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && !crate::cassandra_node::in_ci() {
        eprintln!("SKIPPED: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("port 127.0.0.1:{port} (--native-port) is in use")),
        "{stderr}"
    );
    assert!(!stderr.contains("Exception"), "{stderr}");
    drop(busy);
}

/// `setup --pubsub-only` on a data dir that does not exist yet, named through `..`, binds
/// the subscriptions to the store `run` then opens there: `run` consumes them instead of
/// refusing them as another store's (the directory is created, so both canonicalize it).
#[test]
fn pubsub_only_setup_binds_to_the_store_run_opens() {
    let Some(emulator) = crate::emulator::emulator("pubsub_only_binding") else {
        return;
    };
    let project = crate::emulator::fresh_project("pubsub_only_binding");
    let dir = data_dir();
    let winding = dir.path().join("not-yet").join("..").join("store");
    let cmd = |args: &[&str]| {
        let mut cmd = command(&winding, args);
        cmd.env("PUBSUB_EMULATOR_HOST", &emulator.host);
        cmd.env("ECOM_PROJECT", &project);
        cmd.env("ECOM_METRICS_ADDR", "127.0.0.1:0");
        cmd
    };
    Running::spawn(cmd(&["setup", "--pubsub-only"])).wait().ok();
    let r = Running::spawn(cmd(&["run", "--until-idle", "1s"]))
        .wait()
        .ok();
    assert!(!r.stderr.contains("not this run's store"), "{r}");
}
