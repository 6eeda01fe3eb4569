//! `query order ID --explain` through the binary: each column group's write time and the
//! payment's dead letter, read back exactly as `query_export::seed` wrote them, on the
//! embedded store and on a real Cassandra node (`WRITETIME`).
//!
//! Owns: "--explain shows exactly the timestamps written" and its missing-row exit. Must
//! never: check the wording of the notes beyond the phrases that carry their meaning.

use crate::cassandra_cli::cassandra_command;
use crate::cli::{data_dir, run, Running};
use crate::pubsub::CASSANDRA_COMMAND_LIMIT;
use crate::query_export::{
    as_json, block_on, facts_from_csv, seed, seed_embedded, ORDER_TS, PAYMENT_TS,
};
use crate::store_contract::{cassandra_test_config, KeyspaceGuard};
use ecom_stream::store::cassandra::CassandraStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// `--explain --json` of order `id`, checked against what `seed` wrote.
fn assert_explained(x: &Value, rows: &BTreeMap<i64, Value>) {
    let id = x["order_id"].as_i64().expect("order_id");
    assert_eq!(x["row"], rows[&id], "{x}");
    assert_eq!(x["joined_by"], "not recorded", "{x}");
    match id {
        1 => {
            assert_eq!(x["order_columns"]["write_ts_us"], ORDER_TS, "{x}");
            assert_eq!(
                x["order_columns"]["write_time"],
                "2023-11-14T22:13:20.123456Z"
            );
            assert_eq!(x["payment_columns"]["write_ts_us"], PAYMENT_TS, "{x}");
            let dl = &x["dead_letters"];
            assert_eq!(dl.as_array().map(Vec::len), Some(1), "{x}");
            assert_eq!(dl[0]["payment_id"], 1_000_001);
            assert_eq!(dl[0]["entry"]["reason"], "order_not_found");
            assert_eq!(dl[0]["entry"]["attempts"], 0);
            assert_eq!(dl[0]["entry"]["event_ts_us"], PAYMENT_TS);
            assert_eq!(dl[0]["entry"]["first_seen"], "2023-11-14T22:13:21.000000Z");
        }
        2 => {
            assert_eq!(x["order_columns"]["write_ts_us"], ORDER_TS, "{x}");
            assert_eq!(
                x["payment_columns"],
                json!({"written": false, "write_ts_us": null, "write_time": null})
            );
            assert_eq!(x["dead_letters"][0]["payment_id"], 1_000_002);
            assert_eq!(x["dead_letters"][0]["entry"]["attempts"], 2);
        }
        3 => {
            assert_eq!(x["order_columns"]["written"], false, "{x}");
            assert_eq!(x["payment_columns"]["write_ts_us"], PAYMENT_TS, "{x}");
            assert_eq!(x["dead_letters"][0]["entry"], Value::Null, "{x}");
        }
        other => panic!("unexpected order {other}"),
    }
}

#[test]
fn explain_shows_the_timestamps_written_and_the_dead_letter() {
    let dir = data_dir();
    let rows = as_json(&seed_embedded(dir.path()));
    let d = dir.path();
    for id in ["1", "2", "3"] {
        let x = run(d, &["query", "order", id, "--explain", "--json"])
            .ok()
            .json();
        assert_explained(&x, &rows);
    }

    let text = run(d, &["query", "order", "1", "--explain"]).ok().stdout;
    for needle in [
        "order 1\n",
        "order columns    written at 2023-11-14T22:13:20.123456Z (1700000000123456 µs",
        "payment columns  payment 1000001, written at 2023-11-14T22:13:20.654321Z (1700000000654321 µs",
        "dead letter      payment 1000001 (the row's payment_id): present: reason order_not_found",
        "joined by        not recorded",
        "has not removed the entry yet",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    let text = run(d, &["query", "order", "2", "--explain"]).ok().stdout;
    assert!(
        text.contains("payment 1000002 is dead-lettered (order_not_found"),
        "{text}"
    );
    assert!(text.contains("the next `dlq replay` joins it"), "{text}");

    let missing = run(d, &["query", "order", "9", "--explain"]).failed();
    assert_eq!(missing.stdout, "");
    assert!(
        missing.stderr.contains("no row for order_id 9"),
        "{missing}"
    );
    let r = run(d, &["query", "order", "1", "--json"]).failed();
    assert!(r.stderr.contains("--explain"), "{r}");
}

/// The same on a real Cassandra node: `--explain` reads the WRITETIME of known writes, and
/// the CSV export holds exactly the rows written (in token order).
#[test]
fn on_cassandra_explain_reads_the_write_times_and_csv_exports_the_rows() {
    let Some(config) = cassandra_test_config() else {
        return;
    };
    block_on(ecom_stream::store::cassandra::apply_schema(&config)).expect("apply schema");
    let _drop_keyspace = KeyspaceGuard(config.clone());
    let rows = block_on(async {
        let store = CassandraStore::open(&config).await.expect("open");
        seed(&store).await
    });
    let rows = as_json(&rows);
    let dir = data_dir();
    let run_cql = |args: &[&str]| {
        Running::spawn(cassandra_command(dir.path(), &config, args))
            .with_limit(CASSANDRA_COMMAND_LIMIT)
            .wait()
    };
    for id in ["1", "2", "3"] {
        let x = run_cql(&["query", "order", id, "--explain", "--json"])
            .ok()
            .json();
        assert_explained(&x, &rows);
    }
    let csv = run_cql(&["query", "facts", "--format", "csv"]).ok();
    assert_eq!(facts_from_csv(&csv.stdout), rows, "{csv}");
}
