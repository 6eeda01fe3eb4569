//! Unit tests of opening a session: the settings it is built from and the driver logs it
//! quiets while connecting.

use super::*;

#[test]
fn the_builder_takes_every_setting_without_a_server() {
    let mut config = CassandraConfig::local("127.0.0.1:9042,127.0.0.2").expect("config");
    config.local_dc = Some("dc1".into());
    builder(&config).expect("builder");
}

#[test]
fn routing_warnings_name_the_local_dc_setting() {
    let mut config = CassandraConfig::local("127.0.0.1").expect("config");
    let dcs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(routing_warning(&config, &dcs(&["dc1", "dc1"])), None);
    let w = routing_warning(&config, &dcs(&["dc1", "dc2"])).expect("two DCs, none chosen");
    assert!(w.contains("--cassandra-local-dc"), "{w}");
    config.local_dc = Some("dc3".into());
    let w = routing_warning(&config, &dcs(&["dc1", "dc2"])).expect("unknown DC");
    assert!(w.contains("\"dc3\""), "{w}");
    config.local_dc = Some("dc2".into());
    assert_eq!(routing_warning(&config, &dcs(&["dc1", "dc2"])), None);
}

#[test]
fn a_bad_ca_file_names_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").expect("write");
    let err = tls_config(&TlsFiles {
        ca: ca.clone(),
        client: None,
        verify_hostname: true,
    })
    .expect_err("no certificate");
    assert!(
        err.0.starts_with("invalid setting --cassandra-tls-ca"),
        "{err}"
    );
    assert!(err.0.contains("ca.pem"), "{err}");
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[test]
fn tls_configs_build_from_pem_files() {
    for verify_hostname in [true, false] {
        tls_config(&TlsFiles {
            ca: fixture("ca.pem"),
            client: None,
            verify_hostname,
        })
        .expect("CA only");
    }
    let mutual = tls_config(&TlsFiles {
        ca: fixture("ca.pem"),
        client: Some((fixture("client.pem"), fixture("client.key"))),
        verify_hostname: true,
    })
    .expect("client certificate");
    assert!(mutual.client_auth_cert_resolver.has_certs());
    // A key that is not the certificate's is refused, naming the key setting.
    let err = tls_config(&TlsFiles {
        ca: fixture("ca.pem"),
        client: Some((fixture("client.pem"), fixture("ca.pem"))),
        verify_hostname: true,
    })
    .expect_err("no key in ca.pem");
    assert!(
        err.0.starts_with("invalid setting --cassandra-tls-key"),
        "{err}"
    );
}

/// Lines written through [`quiet_driver_while_connecting`] at this `debug` setting.
fn logged(debug: bool) -> String {
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let level = if debug { "debug" } else { "info" };
    let filter =
        tracing_subscriber::EnvFilter::new(level).and(quiet_driver_while_connecting(debug));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || out.clone())
        .with_filter(filter);
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::error_span!(CONNECT_SPAN, attempt = 1).in_scope(|| {
            tracing::warn!(target: "scylla::cluster", "driver inside connect");
            tracing::warn!("ours inside connect");
        });
        tracing::warn!(target: "scylla::cluster", "driver while running");
    });
    let bytes = buf.0.lock().expect("buf").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_drivers_lines_during_a_connect_attempt_show_at_debug_only() {
    let info = logged(false);
    assert!(!info.contains("driver inside connect"), "{info}");
    assert!(info.contains("ours inside connect"), "{info}");
    assert!(info.contains("driver while running"), "{info}");
    let debug = logged(true);
    assert!(debug.contains("driver inside connect"), "{debug}");
}

#[tokio::test]
async fn an_unreachable_node_is_retried_until_the_wait_runs_out() {
    // Port 1 on loopback refuses at once: nothing listens there.
    let mut config = CassandraConfig::local("127.0.0.1:1").expect("config");
    config.connect_wait = Duration::from_millis(700);
    let started = Instant::now();
    let err = connect(&config).await.expect_err("nothing listens");
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "gave up early"
    );
    assert!(err.0.contains("--cassandra-connect-wait"), "{err}");
    assert!(err.0.contains("127.0.0.1:1"), "{err}");
}
