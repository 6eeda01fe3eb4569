//! Password authentication and TLS against a real Apache Cassandra node, through the
//! `ecom-stream` binary: the right login over TLS works end to end; a wrong password, no
//! credentials and an untrusted CA each stop at start with one clear line on stderr; a
//! plain client waits out `--cassandra-connect-wait` and ends with a line naming TLS; and no
//! password is ever printed, even at `--log debug` and `--log trace`.
//!
//! A test binary of its own, so its node never competes with the main integration binary's
//! node (cargo runs test binaries one after another). One node serves every case: it has
//! `PasswordAuthenticator` and client encryption (`optional: false`) together. Nothing is
//! lost by sharing it, because every failure case changes exactly one thing from the working
//! setup (the password; no credentials; the CA; no TLS), and the node checks TLS before it
//! sees a login, so each failure is the one the case is about. The keystore is made at run
//! time from the test PEM files in `tests/fixtures/cassandra-tls/` (README there).
//!
//! Owns: that a login and TLS work end to end, and that each way of getting them wrong ends
//! in a clear line naming the setting to fix. Must never: use `ECOM_CASSANDRA_NODES` or any
//! other external node (its users and CA are not these), leave its node running after the
//! binary (the script's watchdog follows our PID), share a keyspace between tests, or pass
//! silently without a node (a skip is said on stderr; in CI it is a failure).

// Only `start_node` and `in_ci` are used here; `node()` is the main binary's plain node.
#[allow(dead_code)]
#[path = "integration/cassandra_node.rs"]
mod cassandra_node;

use ecom_stream::store::cassandra::config::Secret;
use ecom_stream::store::cassandra::{session, CassandraArgs, CassandraConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role the tests log in as. Not the default superuser `cassandra`/`cassandra`: its
/// password is also its name, which legitimately appears in output, so "the password is
/// never printed" could not be checked with it.
const USER: &str = "ecom_writer";
const PASSWORD: &str = "Pw-5b1e93c7-never-printed";
/// A wrong password, as distinctive: it must not be printed either.
const WRONG_PASSWORD: &str = "Wrong-8d24a6f0-never-printed";
const KEYSTORE_PASSWORD: &str = "keystore-test-only";

/// How long any one command may take before the test calls it hung. Far above what a
/// bounded failure needs (`--cassandra-connect-wait 5s`), so only a real hang trips it.
const HANG: Duration = Duration::from_secs(120);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cassandra-tls")
        .join(name)
}

/// The node with `--auth --tls`, and the `ecom_writer` role on it.
struct SecureNode {
    /// `host:port`, as `--cassandra-nodes` takes it.
    nodes: String,
}

static NODE: OnceLock<Result<SecureNode, String>> = OnceLock::new();

/// The node, started on first use; `None` (said loudly) when it cannot be had outside CI.
/// Panics in CI.
fn secure_node(test: &str) -> Option<&'static SecureNode> {
    match NODE.get_or_init(start_secure_node) {
        Ok(node) => Some(node),
        Err(why) => {
            if cassandra_node::in_ci() {
                panic!("{test}: a Cassandra node with auth and TLS is required in CI: {why}");
            }
            // Past the harness's capture, so that `cargo test` shows it although the test
            // "passes".
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            None
        }
    }
}

fn start_secure_node() -> Result<SecureNode, String> {
    let dir = std::env::temp_dir().join(format!(
        "ecom-stream-cassandra-secure-{}",
        std::process::id()
    ));
    // A directory left by an earlier process with the same PID would be restarted with its
    // data (the script's rule); this node must start fresh.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let keystore = make_keystore(&dir)?;
    let nodes = cassandra_node::start_node(
        &dir.join("node"),
        &[
            "--auth",
            "--tls",
            &keystore.to_string_lossy(),
            KEYSTORE_PASSWORD,
        ],
    )?;
    create_role(&nodes);
    Ok(SecureNode { nodes })
}

/// The node's JKS keystore (key and certificate chain) from the PEM fixtures, the way an
/// operator would make one: `openssl pkcs12 -export`, then `keytool -importkeystore`.
/// A missing tool is a prerequisite (skip locally); a tool that fails is a defect (panic).
fn make_keystore(dir: &Path) -> Result<PathBuf, String> {
    let p12 = dir.join("node.p12");
    let jks = dir.join("node.jks");
    let pass = format!("pass:{KEYSTORE_PASSWORD}");
    let mut openssl = Command::new("openssl");
    openssl
        .args(["pkcs12", "-export", "-name", "node", "-in"])
        .arg(fixture("node.pem"))
        .arg("-inkey")
        .arg(fixture("node.key"))
        .arg("-certfile")
        .arg(fixture("ca.pem"))
        .arg("-out")
        .arg(&p12)
        .args(["-passout", &pass]);
    tool(openssl, "openssl (Debian: openssl)")?;
    let mut keytool = Command::new("keytool");
    keytool
        .args(["-importkeystore", "-noprompt", "-srcstoretype", "PKCS12"])
        .arg("-srckeystore")
        .arg(&p12)
        .args(["-srcstorepass", KEYSTORE_PASSWORD, "-deststoretype", "JKS"])
        .arg("-destkeystore")
        .arg(&jks)
        .args(["-deststorepass", KEYSTORE_PASSWORD]);
    tool(
        keytool,
        "keytool (part of Java; Debian: openjdk-17-jre-headless)",
    )?;
    Ok(jks)
}

fn tool(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} is needed to make the node's keystore: {e}"))?;
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Creates the tests' login role as the default superuser. The authorizer is
/// `AllowAllAuthorizer`, so the role may do anything a test needs.
fn create_role(nodes: &str) {
    let superuser = args(nodes, "cassandra", "cassandra")
        .to_config()
        .expect("superuser config");
    let rt = runtime();
    rt.block_on(async {
        let session = session::connect(&superuser)
            .await
            .unwrap_or_else(|e| panic!("log in as the default superuser: {e}"));
        session
            .query_unpaged(
                format!(
                    "CREATE ROLE IF NOT EXISTS {USER} WITH PASSWORD = '{PASSWORD}' \
                     AND LOGIN = true"
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {USER}: {e}"));
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The settings that work: this user, over TLS with the test CA, hostname checked.
fn args(nodes: &str, user: &str, password: &str) -> CassandraArgs {
    CassandraArgs {
        cassandra_nodes: nodes.to_string(),
        cassandra_username: Some(user.to_string()),
        cassandra_password: Some(Secret::from(password.to_string())),
        cassandra_tls_ca: Some(fixture("ca.pem")),
        cassandra_connect_wait: Duration::from_secs(30),
        ..CassandraArgs::default()
    }
}

/// A fresh keyspace with the schema, dropped when the test ends.
struct Keyspace(CassandraConfig);

impl Keyspace {
    fn new(node: &SecureNode) -> Keyspace {
        let mut args = args(&node.nodes, USER, PASSWORD);
        let n = ecom_stream::rng::SplitMix64::from_entropy().next_u64();
        args.cassandra_keyspace = format!("ecom_secure_{n:016x}");
        let config = args.to_config().expect("valid test config");
        runtime()
            .block_on(ecom_stream::store::cassandra::apply_schema(&config))
            .unwrap_or_else(|e| panic!("apply schema.cql as {USER} over TLS: {e}"));
        Keyspace(config)
    }

    fn name(&self) -> &str {
        &self.0.keyspace
    }
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        let config = self.0.clone();
        let dropped = runtime().block_on(async {
            let session = session::connect(&config).await.map_err(|e| e.to_string())?;
            ecom_stream::store::cassandra::schema::drop_keyspace(&session, &config.keyspace)
                .await
                .map_err(|e| e.to_string())
        });
        if let Err(e) = dropped {
            eprintln!(
                "warning: test keyspace {} was not dropped: {e}",
                config.keyspace
            );
        }
    }
}

/// The binary against the secure node, with nothing from the outer environment: no
/// `ECOM_*` variable, no `RUST_LOG` (so the level is the default `info`, where a retry
/// warning would show), no config file (it runs in an empty directory). The connect wait is
/// short so that a failure that *is* retried still ends soon; the cases check the words
/// of the message, not the time.
fn ecom(node: &SecureNode, dir: &Path, keyspace: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecom-stream"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ECOM_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("ECOM_STORE", "cassandra")
        .env("ECOM_CASSANDRA_NODES", &node.nodes)
        .env("ECOM_CASSANDRA_KEYSPACE", keyspace)
        .env("ECOM_CASSANDRA_CONNECT_WAIT", "5s")
        .current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("unused"))
        .stdin(Stdio::null());
    cmd
}

/// Adds the working login (password through the variable, as a deployment passes it).
fn login<'a>(cmd: &'a mut Command, password: &str) -> &'a mut Command {
    cmd.env("ECOM_CASSANDRA_USERNAME", USER)
        .env("ECOM_CASSANDRA_PASSWORD", password)
}

/// Adds TLS with this CA.
fn tls<'a>(cmd: &'a mut Command, ca: &str) -> &'a mut Command {
    cmd.env("ECOM_CASSANDRA_TLS_CA", fixture(ca))
}

/// A finished command.
struct Run {
    cmd: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "`{}` ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }

    /// Exit 0.
    fn ok(self) -> Run {
        assert!(self.status.success(), "expected success: {}", self.show());
        self
    }

    /// A failure at start: non-zero exit, nothing on stdout, exactly one line on stderr,
    /// an `error:` line with no panic or backtrace. Returns that line.
    fn start_failure(&self) -> String {
        assert_eq!(self.status.code(), Some(1), "{}", self.show());
        assert_eq!(self.stdout, "", "{}", self.show());
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "not one line on stderr: {}", self.show());
        let line = lines[0];
        assert!(line.starts_with("error: "), "{}", self.show());
        for word in ["panicked", "backtrace", "RUST_BACKTRACE", "retrying"] {
            assert!(!self.stderr.contains(word), "{word:?}: {}", self.show());
        }
        line.to_string()
    }

    /// Neither password is anywhere in what the command printed.
    fn never_prints_a_password(&self) {
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "the password was printed: {}",
                self.show()
            );
        }
    }
}

/// Runs `cmd` to the end (at most [`HANG`]); every run is checked for passwords.
fn run(mut cmd: Command, args: &[&str]) -> Run {
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let desc = format!("ecom-stream {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{desc}`: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            // Killed, so its pipes are closed and the readers end.
            let stderr = stderr.join().unwrap_or_default();
            panic!("`{desc}` hung: still running after {HANG:?}; killed it\n--- stderr so far ---\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        cmd: desc,
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    run.never_prints_a_password();
    run
}

#[test]
fn the_right_login_over_tls_works_and_never_prints_the_password() {
    let Some(node) = secure_node("the_right_login_over_tls_works_and_never_prints_the_password")
    else {
        return;
    };
    let ks = Keyspace::new(node);
    let dir = tempfile::tempdir().expect("tempdir");

    // The demo into the keyspace at debug level: the driver's and our own debug lines too
    // must not carry the password. The password goes through the flag here, the variable
    // below: both ways in are covered.
    let mut demo = ecom(node, dir.path(), ks.name());
    tls(&mut demo, "ca.pem");
    let demo = run(
        demo,
        &[
            "--log",
            "debug",
            "--cassandra-username",
            USER,
            "--cassandra-password",
            PASSWORD,
            "demo",
            "--orders",
            "10",
            "--payments",
            "20",
            "--json",
        ],
    )
    .ok();
    assert!(
        demo.stderr.contains("connected to Cassandra") && demo.stderr.contains("tls=true"),
        "no TLS connection logged: {}",
        demo.show()
    );
    assert!(demo.stderr.contains("auth=true"), "{}", demo.show());
    // The debug level really was on (else the check above proves little).
    assert!(demo.stderr.contains("DEBUG"), "{}", demo.show());
    let report: serde_json::Value = serde_json::from_str(demo.stdout.trim())
        .unwrap_or_else(|e| panic!("demo --json: {e}: {}", demo.show()));
    assert_eq!(report["expected_rows"], 10, "{}", demo.show());
    assert_eq!(report["stats"]["write_failures"], 0, "{}", demo.show());

    // Read back through the same login, at trace level: the TLS library's handshake dumps
    // and the driver's frame logs too must not carry it.
    let mut query = ecom(node, dir.path(), ks.name());
    login(&mut query, PASSWORD);
    tls(&mut query, "ca.pem");
    let facts = run(query, &["--log", "trace", "query", "facts"]).ok();
    assert!(facts.stderr.contains("TRACE"), "{}", facts.show());
    let ids: std::collections::BTreeSet<u64> = facts
        .stdout
        .lines()
        .map(|l| {
            let row: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            row["order_id"].as_u64().unwrap_or_else(|| panic!("{l}"))
        })
        .collect();
    assert_eq!(ids, (1..=10).collect(), "{}", facts.show());
}

#[test]
fn a_wrong_password_stops_at_start_with_one_line() {
    let Some(node) = secure_node("a_wrong_password_stops_at_start_with_one_line") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = ecom(node, dir.path(), "ecom_store");
    login(&mut cmd, WRONG_PASSWORD);
    tls(&mut cmd, "ca.pem");
    let run = run(cmd, &["query", "facts"]);
    let line = run.start_failure();
    // It names what was refused and which settings to fix, and passes on the server's own
    // words (which name the user, never the password).
    assert!(line.contains("refused the credentials"), "{line}");
    assert!(line.contains("--cassandra-password"), "{line}");
    assert!(line.contains("ECOM_CASSANDRA_PASSWORD"), "{line}");
    assert!(
        line.contains(&format!(
            "Provided username {USER} and/or password are incorrect"
        )),
        "{line}"
    );
}

#[test]
fn no_credentials_stop_at_start_with_one_line() {
    let Some(node) = secure_node("no_credentials_stop_at_start_with_one_line") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // None at all: the node asks for a login the binary cannot give.
    let mut cmd = ecom(node, dir.path(), "ecom_store");
    tls(&mut cmd, "ca.pem");
    let none = run(cmd, &["query", "facts"]);
    let line = none.start_failure();
    assert!(line.contains("--cassandra-username"), "{line}");
    assert!(line.contains("--cassandra-password"), "{line}");
    assert!(line.contains("requires a login"), "{line}");
    // Not "refused the credentials" (there were none), and not the driver's advice about
    // its Rust API.
    assert!(!line.contains("refused"), "{line}");
    assert!(!line.contains("SessionBuilder"), "{line}");

    // A user without a password: a setting error, before any connection.
    let mut cmd = ecom(node, dir.path(), "ecom_store");
    tls(&mut cmd, "ca.pem").env("ECOM_CASSANDRA_USERNAME", USER);
    let half = run(cmd, &["query", "facts"]);
    let line = half.start_failure();
    // The setting named with its flag, its variable (once) and its file key.
    assert!(
        line.contains(
            "invalid setting --cassandra-password (ECOM_CASSANDRA_PASSWORD, file key \
             `cassandra.password`"
        ),
        "{line}"
    );
    assert!(
        line.contains("is required with --cassandra-username"),
        "{line}"
    );
    assert_eq!(line.matches("ECOM_CASSANDRA_PASSWORD").count(), 1, "{line}");
}

#[test]
fn an_untrusted_ca_stops_at_start_with_one_line() {
    let Some(node) = secure_node("an_untrusted_ca_stops_at_start_with_one_line") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = ecom(node, dir.path(), "ecom_store");
    login(&mut cmd, PASSWORD);
    tls(&mut cmd, "other-ca.pem");
    let run = run(cmd, &["query", "facts"]);
    let line = run.start_failure();
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert!(line.contains("--cassandra-tls-ca"), "{line}");
    // rustls's reason: the node's certificate is not signed by the CA we trust.
    assert!(line.contains("UnknownIssuer"), "{line}");
}

/// A node that requires TLS closes a plain connection at its first request. So does a
/// Docker port proxy in front of a node still booting, so this is waited for like an
/// unreachable node (`--cassandra-connect-wait`, 5 s here), not stopped at once; what the
/// case needs is that every line says what is wrong, and that the last names TLS.
#[test]
fn a_plain_client_against_the_tls_node_ends_with_a_line_naming_tls() {
    let Some(node) = secure_node("a_plain_client_against_the_tls_node_ends_with_a_line_naming_tls")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = ecom(node, dir.path(), "ecom_store");
    login(&mut cmd, PASSWORD);
    let run = run(cmd, &["query", "facts"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.show());
    assert_eq!(run.stdout, "", "{}", run.show());
    for word in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!run.stderr.contains(word), "{word:?}: {}", run.show());
    }
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let (last, retries) = lines.split_last().expect("some stderr");
    // Our own retry warnings only (not the driver's lines), each with the hint.
    for retry in retries {
        assert!(
            retry.contains("ecom_stream::store::cassandra::session")
                && retry.contains("Cassandra not reachable yet; retrying")
                && retry.contains("requires TLS"),
            "{retry}\n{}",
            run.show()
        );
    }
    assert!(last.starts_with("error: "), "{}", run.show());
    assert!(last.contains("--cassandra-connect-wait (5s)"), "{last}");
    assert!(
        last.contains(
            "if the cluster requires TLS (client_encryption_options), set --cassandra-tls-ca"
        ),
        "{last}"
    );
}
