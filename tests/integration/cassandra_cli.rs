//! The binary against a real Cassandra node (`cassandra_node`): the demo written to
//! Cassandra leaves the same rows, dead letters and invalid messages as the same demo
//! written to the embedded store, read back through `query` and `dlq list`.
//!
//! Owns: "ECOM_STORE=cassandra behaves exactly as the embedded store" at the level of the
//! commands. Must never: assume Cassandra lists rows in key order (it scans in token
//! order; README "Reading the results").

use crate::cli::{
    command, dlq_by_id, dlq_by_id_any_order, facts_by_id, facts_by_id_any_order, int, Run, Running,
};
use crate::pubsub::CASSANDRA_COMMAND_LIMIT;
use crate::store_contract::{cassandra_test_config, KeyspaceGuard};
use ecom_stream::store::cassandra::CassandraConfig;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The binary with `--store cassandra` on the test node and the config's keyspace. An
/// external node's other `ECOM_CASSANDRA_*` settings (credentials, TLS) pass through.
pub(crate) fn cassandra_command(dir: &Path, config: &CassandraConfig, args: &[&str]) -> Command {
    let mut cmd = command(dir, args);
    for (key, value) in std::env::vars() {
        if key.starts_with("ECOM_CASSANDRA_") {
            cmd.env(key, value);
        }
    }
    let nodes: Vec<String> = config.nodes.iter().map(ToString::to_string).collect();
    cmd.env("ECOM_STORE", "cassandra")
        .env("ECOM_CASSANDRA_NODES", nodes.join(","))
        .env("ECOM_CASSANDRA_KEYSPACE", &config.keyspace)
        .env("ECOM_CASSANDRA_REPLICATION", "SimpleStrategy:1");
    cmd
}

fn run_cassandra(dir: &Path, config: &CassandraConfig, args: &[&str]) -> Run {
    Running::spawn(cassandra_command(dir, config, args))
        .with_limit(CASSANDRA_COMMAND_LIMIT)
        .wait()
}

#[test]
fn the_demo_into_cassandra_leaves_what_the_embedded_demo_leaves() {
    let Some(config) = cassandra_test_config() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(ecom_stream::store::cassandra::apply_schema(&config))
        .expect("apply schema.cql");
    let _drop_keyspace = KeyspaceGuard(config.clone());
    let ks = &config;
    let dir = tempfile::tempdir().expect("tempdir");
    let embedded = dir.path().join("embedded");
    let unused = dir.path().join("unused");

    // The same seeded demo into each store.
    let local = crate::cli::run(&embedded, &["demo", "--json"]).ok().json();
    let remote = run_cassandra(&unused, ks, &["demo", "--json"]).ok().json();
    for key in ["messages", "expected_rows", "expected_dlq"] {
        assert_eq!(local[key], remote[key], "{key}");
    }
    assert_eq!(remote["expected_rows"], 80);
    assert_eq!(remote["expected_dlq"], 420);
    assert_eq!(int(&remote["stats"], "write_failures"), 0, "{remote}");
    assert_eq!(int(&remote["stats"], "invalid"), 6, "{remote}");
    assert_eq!(int(&remote["replay"], "unmatched"), 420, "{remote}");

    // The same rows, whatever order each store lists them in.
    let facts_local = facts_by_id(&crate::cli::run(&embedded, &["query", "facts"]).ok());
    let query = run_cassandra(&unused, ks, &["query", "facts"]).ok();
    // The driver's INFO chatter stays out of the default log level (issue 20).
    assert!(!query.stderr.contains("No sharding information"), "{query}");
    let facts_remote = facts_by_id_any_order(&query);
    assert_eq!(facts_remote.len(), 80);
    assert_eq!(facts_local, facts_remote);

    // The same dead letters (first_seen is a wall-clock time: compared by presence).
    let strip = |run: &Run, local: bool| {
        if local {
            dlq_by_id(run)
        } else {
            dlq_by_id_any_order(run)
        }
        .into_iter()
        .map(|(id, mut e)| {
            assert!(e["first_seen"].is_string(), "{e}");
            e["first_seen"] = serde_json::Value::Null;
            (id, e)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
    };
    let dlq_local = strip(&crate::cli::run(&embedded, &["dlq", "list"]).ok(), true);
    let dlq_remote = strip(&run_cassandra(&unused, ks, &["dlq", "list"]).ok(), false);
    assert_eq!(dlq_remote.len(), 420);
    assert_eq!(dlq_local, dlq_remote);

    // The same invalid messages, keyed by source and message id.
    let invalid = |run: Run| -> BTreeSet<(String, String, String)> {
        run.json_lines()
            .iter()
            .map(|m| {
                let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                (s("source"), s("message_id"), s("payload"))
            })
            .collect()
    };
    let inv_local = invalid(crate::cli::run(&embedded, &["dlq", "list", "--invalid"]).ok());
    let inv_remote = invalid(run_cassandra(&unused, ks, &["dlq", "list", "--invalid"]).ok());
    assert_eq!(inv_remote.len(), 6);
    assert_eq!(inv_local, inv_remote);

    // A replay pass in each changes the same things (attempts only).
    let r_local = crate::cli::run(&embedded, &["dlq", "replay"]).ok().json();
    let r_remote = run_cassandra(&unused, ks, &["dlq", "replay"]).ok().json();
    assert_eq!(r_local, r_remote);
    let after = strip(&run_cassandra(&unused, ks, &["dlq", "list"]).ok(), false);
    assert_eq!(after.len(), 420);
    // 0 when dead-lettered, one from the demo's closing replay pass, one from this one.
    for e in after.values() {
        assert_eq!(int(e, "attempts"), 2, "{e}");
    }
    assert!(
        !unused.join("ecom-stream.db").exists(),
        "the Cassandra runs touched the data dir"
    );
}
