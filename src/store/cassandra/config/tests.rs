//! Tests of the Cassandra settings, each through the flags as a user gives them.

use super::parse::{parse_nodes, parse_replication};
use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CassandraArgs,
}

/// Parses flags only: the `ECOM_CASSANDRA_*` variables of whoever runs the tests (set,
/// say, for the live suite) must not change what these tests see.
fn cli(argv: &[&str]) -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut full = vec!["test"];
    full.extend_from_slice(argv);
    let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
    let matches = cmd.try_get_matches_from(full).expect("clap parse");
    Cli::from_arg_matches(&matches).expect("clap parse")
}

fn parse(argv: &[&str]) -> Result<CassandraConfig, ConfigError> {
    cli(argv).args.to_config()
}

fn setting(argv: &[&str]) -> &'static str {
    parse(argv).expect_err("should be refused").setting
}

#[test]
fn defaults_are_valid_and_local() {
    // Env vars of the developer's shell must not leak in: build from Default.
    let c = CassandraArgs::default().to_config().expect("defaults");
    assert_eq!(c.nodes, ["127.0.0.1:9042"]);
    assert_eq!(c.write_consistency, Consistency::LocalQuorum);
    assert_eq!(c.read_consistency, Consistency::LocalQuorum);
    assert_eq!(c.keyspace, "ecom_store");
    assert_eq!(c.replication, Replication::Simple(1));
    assert_eq!(c.tls, None);
    assert_eq!(c.credentials, None);
}

#[test]
fn nodes_parse_with_default_port_and_reject_nonsense() {
    let nodes = |s: &str| parse_nodes(s);
    assert_eq!(
        nodes("a, b:9043,10.0.0.1,[::1]:9042,[::1]").expect("ok"),
        [
            "a:9042",
            "b:9043",
            "10.0.0.1:9042",
            "[::1]:9042",
            "[::1]:9042"
        ]
    );
    assert!(nodes("").is_err());
    assert!(nodes(" , ").is_err());
    assert!(nodes("a:0").is_err());
    assert!(nodes("a:99999").is_err());
    assert!(nodes("a:x").is_err());
    assert!(nodes(":9042").is_err());
    assert!(nodes("::1").is_err());
    let e = parse(&["--cassandra-nodes", "a:x"]).expect_err("bad port");
    assert!(
        e.to_string()
            .starts_with("invalid setting --cassandra-nodes (ECOM_CASSANDRA_NODES):"),
        "{e}"
    );
}

#[test]
fn consistency_levels_parse_in_any_spelling_and_bad_ones_are_named() {
    for s in [
        "LOCAL_QUORUM",
        "local_quorum",
        "local-quorum",
        "LocalQuorum",
    ] {
        assert_eq!(parse_consistency(s), Ok(Consistency::LocalQuorum));
    }
    assert_eq!(
        parse_consistency("each_quorum"),
        Ok(Consistency::EachQuorum)
    );
    assert_eq!(parse_consistency("ONE"), Ok(Consistency::One));
    assert!(parse_consistency("most").is_err());
    assert_eq!(
        setting(&["--cassandra-write-consistency", "any"]),
        "--cassandra-write-consistency (ECOM_CASSANDRA_WRITE_CONSISTENCY)"
    );
    assert_eq!(
        setting(&["--cassandra-write-consistency", "serial"]),
        "--cassandra-write-consistency (ECOM_CASSANDRA_WRITE_CONSISTENCY)"
    );
    assert_eq!(
        setting(&["--cassandra-read-consistency", "each_quorum"]),
        "--cassandra-read-consistency (ECOM_CASSANDRA_READ_CONSISTENCY)"
    );
    let c = parse(&["--cassandra-write-consistency", "quorum"]).expect("ok");
    assert_eq!(c.write_consistency, Consistency::Quorum);
}

#[test]
fn credentials_come_in_pairs_and_the_password_never_shows() {
    assert_eq!(
        setting(&["--cassandra-username", "u"]),
        "--cassandra-password (ECOM_CASSANDRA_PASSWORD)"
    );
    assert_eq!(
        setting(&["--cassandra-password", "p"]),
        "--cassandra-username (ECOM_CASSANDRA_USERNAME)"
    );
    let c = parse(&[
        "--cassandra-username",
        "u",
        "--cassandra-password",
        "hunter2",
    ])
    .expect("ok");
    let creds = c.credentials.clone().expect("credentials");
    assert_eq!(creds.password.expose(), "hunter2");
    for text in [format!("{c:?}"), format!("{creds:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    let args = cli(&["--cassandra-password", "hunter2"]).args;
    assert!(!format!("{args:?}").contains("hunter2"));
}

#[test]
fn tls_files_must_exist_and_pair_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "x").expect("write");
    let ca = ca.to_str().expect("utf8");
    let missing = dir.path().join("nope.pem");
    let missing = missing.to_str().expect("utf8");
    assert_eq!(
        setting(&["--cassandra-tls-ca", missing]),
        "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)"
    );
    assert_eq!(
        setting(&["--cassandra-tls-ca", ca, "--cassandra-tls-cert", ca]),
        "--cassandra-tls-key (ECOM_CASSANDRA_TLS_KEY)"
    );
    assert_eq!(
        setting(&["--cassandra-tls-cert", ca, "--cassandra-tls-key", ca]),
        "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)"
    );
    let c = parse(&[
        "--cassandra-tls-ca",
        ca,
        "--cassandra-tls-verify-hostname",
        "false",
    ])
    .expect("ok");
    let tls = c.tls.expect("tls on");
    assert!(!tls.verify_hostname);
    assert_eq!(tls.client, None);
}

#[test]
fn replication_parses_both_strategies() {
    assert_eq!(
        parse_replication("SimpleStrategy:3"),
        Ok(Replication::Simple(3))
    );
    assert_eq!(
        parse_replication("simplestrategy:1"),
        Ok(Replication::Simple(1))
    );
    assert_eq!(
        parse_replication("dc1:3, dc2:2"),
        Ok(Replication::PerDc(vec![
            ("dc1".into(), 3),
            ("dc2".into(), 2)
        ]))
    );
    for bad in [
        "",
        "SimpleStrategy:0",
        "dc1",
        "dc1:x",
        "dc1:3,dc1:3",
        "d'c:1",
        "dc:99",
    ] {
        assert!(parse_replication(bad).is_err(), "{bad}");
    }
    assert_eq!(
        Replication::PerDc(vec![("dc1".into(), 3), ("dc2".into(), 2)]).to_cql(),
        "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    );
    assert_eq!(
        Replication::Simple(1).to_cql(),
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    );
}

#[test]
fn keyspace_and_bounds_are_checked() {
    assert!(check_identifier("ecom_store").is_ok());
    assert!(check_identifier("ecom_test_0a1b").is_ok());
    for bad in [
        "",
        "1abc",
        "Ecom",
        "ecom-store",
        "ecom;drop",
        &"a".repeat(49),
    ] {
        assert!(check_identifier(bad).is_err(), "{bad}");
    }
    assert_eq!(
        setting(&["--cassandra-keyspace", "x;y"]),
        "--cassandra-keyspace (ECOM_CASSANDRA_KEYSPACE)"
    );
    assert_eq!(
        setting(&["--cassandra-pool-size", "0"]),
        "--cassandra-pool-size (ECOM_CASSANDRA_POOL_SIZE)"
    );
    assert_eq!(
        setting(&["--cassandra-max-in-flight", "0"]),
        "--cassandra-max-in-flight (ECOM_CASSANDRA_MAX_IN_FLIGHT)"
    );
    assert_eq!(
        setting(&["--cassandra-request-timeout", "0s"]),
        "--cassandra-request-timeout (ECOM_CASSANDRA_REQUEST_TIMEOUT)"
    );
}
