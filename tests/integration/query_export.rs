//! Exports through the binary: `query facts` and `dlq list` as JSON lines or CSV, to stdout
//! or `--out FILE`; and the rows both this file and `query_explain.rs` read.
//!
//! Owns: "an export parses back to exactly the rows written", and [`seed`], the scenario
//! written through the library with chosen timestamps and awkward text before the binary
//! reads it in its own process. Must never: assume Cassandra lists rows in key order.

use crate::cli::{data_dir, run, Run};
use ecom_stream::model::{Order, Payment, StreamKind};
use ecom_stream::store::embedded::{EmbeddedOptions, EmbeddedStore};
use ecom_stream::store::{DlqEntry, FactRow, FactWrite, InvalidMessage, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) const ORDER_TS: i64 = 1_700_000_000_123_456;
pub(crate) const PAYMENT_TS: i64 = 1_700_000_000_654_321;

pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Text that CSV must quote, and a float whose shortest form has 17 digits.
fn tricky_order(order_id: i64) -> Order {
    Order {
        order_id,
        customer_id: 42,
        item: "Desk, \"oak\"\nwith drawer".into(),
        quantity: 3,
        price: 0.1 + 0.2,
        shipping_address: "12 Elm St, Apt \"B\", Springfield\r\nUSA".into(),
        order_status: "Shipped".into(),
        creation_date: "2024-05-01 13:45:10".into(),
    }
}

fn plain_order(order_id: i64) -> Order {
    Order {
        order_id,
        customer_id: 7,
        item: String::new().into(), // an empty text in a written group
        quantity: 0,
        price: 1e21,
        shipping_address: "1 Main St".into(),
        order_status: "Pending".into(),
        creation_date: "2024-05-02 08:00:00".into(),
    }
}

fn payment(order_id: i64) -> Payment {
    Payment {
        payment_id: 1_000_000 + order_id,
        order_id,
        payment_method: "Credit Card".into(),
        card_last_four: "0042".into(),
        payment_status: "Completed, \"late\"".into(),
        payment_datetime: "2024-05-01T13:50:00Z".into(),
    }
}

fn dead_letter(order_id: i64, attempts: i32) -> DlqEntry {
    DlqEntry {
        payment: payment(order_id),
        reason: "order_not_found".into(),
        first_seen: 1_700_000_001_000_000,
        attempts,
        event_ts: PAYMENT_TS,
    }
}

/// Writes the scenario every test here reads: order 1 joined (tricky text), order 2 order
/// only, order 3 payment only; payments of orders 1 and 2 dead-lettered (1: replay not
/// done removing it; 2: its order came late), one invalid message. Returns the rows.
pub(crate) async fn seed(store: &dyn Store) -> Vec<FactRow> {
    let writes = [
        FactWrite::Order {
            order: tricky_order(1),
            ts: ORDER_TS,
        },
        FactWrite::Payment {
            payment: payment(1),
            ts: PAYMENT_TS,
        },
        FactWrite::Order {
            order: plain_order(2),
            ts: ORDER_TS,
        },
        FactWrite::Payment {
            payment: payment(3),
            ts: PAYMENT_TS,
        },
    ];
    store.write_facts(&writes).await.expect("write_facts");
    store
        .put_dead_letters(&[dead_letter(1, 0), dead_letter(2, 0)])
        .await
        .expect("put_dead_letters");
    // Two passes, one bump each (Cassandra may merge concurrent bumps of one entry).
    for _ in 0..2 {
        store
            .bump_dead_letter_attempts(&[1_000_002])
            .await
            .expect("bump");
    }
    let invalid = InvalidMessage {
        source: StreamKind::Orders,
        message_id: "m-1".into(),
        payload: bytes::Bytes::from_static(b"{\"a\":1,\n\"b\"}"),
        error: "invalid order: key must be a string, at line 2".into(),
        received_at: 1_700_000_002_000_000,
    };
    store.put_invalid(&[invalid]).await.expect("put_invalid");
    let mut rows = Vec::new();
    for id in 1..=3 {
        rows.push(store.fact(id).await.expect("fact").expect("row written"));
    }
    rows
}

pub(crate) fn seed_embedded(dir: &Path) -> Vec<FactRow> {
    block_on(async {
        let store = EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open");
        seed(&store).await
    })
}

pub(crate) fn as_json(rows: &[FactRow]) -> BTreeMap<i64, Value> {
    rows.iter()
        .map(|r| (r.order_id, serde_json::to_value(r).expect("row as JSON")))
        .collect()
}

/// A CSV listing as (header, records), parsed by a real CSV reader.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader
        .headers()
        .expect("a header row")
        .iter()
        .map(str::to_string)
        .collect();
    let records = reader
        .records()
        .map(|r| {
            r.expect("a CSV record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, records)
}

const INTS: [&str; 4] = ["order_id", "customer_id", "quantity", "payment_id"];

/// A `query facts` CSV listing back as the rows' JSON: a cell is a missing value only when
/// its group's id column (`customer_id`, `payment_id`) is empty (README: CSV).
pub(crate) fn facts_from_csv(text: &str) -> BTreeMap<i64, Value> {
    let (header, records) = parse_csv(text);
    assert_eq!(header, crate::cli::FACT_KEYS, "CSV header");
    let mut out = BTreeMap::new();
    for rec in records {
        let cells: BTreeMap<&str, &str> = header
            .iter()
            .map(String::as_str)
            .zip(rec.iter().map(String::as_str))
            .collect();
        let mut row = serde_json::Map::new();
        for (i, key) in header.iter().enumerate() {
            let cell = rec[i].as_str();
            let group_id = if crate::cli::PAYMENT_KEYS.contains(&key.as_str()) {
                "payment_id"
            } else if key == "order_id" {
                "order_id"
            } else {
                "customer_id"
            };
            let value = if cells[group_id].is_empty() {
                Value::Null
            } else if INTS.contains(&key.as_str()) {
                json!(cell
                    .parse::<i64>()
                    .unwrap_or_else(|e| panic!("{key}={cell:?}: {e}")))
            } else if key == "price" {
                json!(cell
                    .parse::<f64>()
                    .unwrap_or_else(|e| panic!("price={cell:?}: {e}")))
            } else {
                json!(cell)
            };
            row.insert(key.clone(), value);
        }
        let id = row["order_id"].as_i64().expect("order_id");
        assert!(
            out.insert(id, Value::Object(row)).is_none(),
            "order {id} twice"
        );
    }
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn csv_and_jsonl_exports_parse_back_to_exactly_the_rows_written() {
    let dir = data_dir();
    let expected = as_json(&seed_embedded(dir.path()));
    assert_eq!(expected[&1]["price"], json!(0.30000000000000004));
    let d = dir.path();

    let jsonl = run(d, &["query", "facts"]).ok();
    assert_eq!(crate::cli::facts_by_id(&jsonl), expected);
    let explicit = run(d, &["query", "facts", "--format", "jsonl"]).ok();
    assert_eq!(explicit.stdout, jsonl.stdout);

    let csv = run(d, &["query", "facts", "--format", "csv"]).ok();
    assert_eq!(facts_from_csv(&csv.stdout), expected, "{csv}");

    // --out: the same bytes in the file, nothing on stdout; an existing file is replaced.
    let out = dir.path().join("facts.csv");
    std::fs::write(&out, "stale content that must go\n".repeat(1000)).expect("stale file");
    let to_file = run(
        d,
        &["query", "facts", "--format", "csv", "--out", path(&out)],
    )
    .ok();
    assert_eq!(to_file.stdout, "", "{to_file}");
    assert_eq!(read(&out), csv.stdout);
    let out_jsonl = dir.path().join("facts.jsonl");
    run(d, &["query", "facts", "--out", path(&out_jsonl)]).ok();
    assert_eq!(read(&out_jsonl), jsonl.stdout);
    assert_no_partial_files(dir.path());
}

#[test]
fn an_empty_table_exports_a_csv_header_only() {
    let dir = data_dir();
    block_on(async { EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).map(drop) })
        .expect("create the store");
    let csv = run(dir.path(), &["query", "facts", "--format", "csv"]).ok();
    assert_eq!(csv.stdout, format!("{}\n", crate::cli::FACT_KEYS.join(",")));
    let dlq = run(dir.path(), &["dlq", "list", "--format", "csv"]).ok();
    assert_eq!(dlq.stdout, format!("{}\n", crate::cli::DLQ_KEYS.join(",")));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn assert_no_partial_files(dir: &Path) {
    let partial: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(partial.is_empty(), "left behind: {partial:?}");
}

fn assert_error_naming(run: &Run, needles: &[&str]) {
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "one error line: {run}");
    assert!(line.starts_with("error: "), "{run}");
    for n in needles {
        assert!(line.contains(n), "{n:?} not in the error: {run}");
    }
    assert_eq!(run.stdout, "", "{run}");
}

#[test]
fn an_unwritable_out_is_a_clear_error_and_an_existing_file_survives_a_failed_export() {
    let dir = data_dir();
    seed_embedded(dir.path());
    let d = dir.path();

    let missing = dir.path().join("no-such-dir").join("facts.csv");
    let r = run(d, &["query", "facts", "--out", path(&missing)]).failed();
    assert_error_naming(&r, &[path(&missing), "No such file or directory"]);
    let r = run(d, &["dlq", "list", "--format", "csv", "--out", path(d)]).failed();
    assert_error_naming(&r, &[path(d), "directory"]);

    // The store cannot be read (no database in this dir): the file keeps what it held.
    let empty = data_dir();
    let keep = dir.path().join("keep.csv");
    std::fs::write(&keep, "previous export\n").expect("write");
    let r = run(
        empty.path(),
        &["query", "facts", "--format", "csv", "--out", path(&keep)],
    );
    r.failed();
    assert_eq!(read(&keep), "previous export\n");
    assert_no_partial_files(dir.path());
}

#[test]
fn dlq_list_exports_csv_with_the_same_entries_as_json_lines() {
    let dir = data_dir();
    seed_embedded(dir.path());
    let d = dir.path();
    let lines = crate::cli::dlq_by_id(&run(d, &["dlq", "list"]).ok());
    assert_eq!(
        lines.keys().copied().collect::<Vec<_>>(),
        [1_000_001, 1_000_002]
    );

    let csv = run(d, &["dlq", "list", "--format", "csv"]).ok();
    let (header, records) = parse_csv(&csv.stdout);
    assert_eq!(header, crate::cli::DLQ_KEYS);
    let from_csv: BTreeMap<i64, Value> = records
        .iter()
        .map(|rec| {
            let mut obj = serde_json::Map::new();
            for (key, cell) in header.iter().zip(rec) {
                let v = match key.as_str() {
                    "payment_id" | "order_id" | "attempts" => {
                        json!(cell.parse::<i64>().expect("an integer cell"))
                    }
                    _ => json!(cell),
                };
                obj.insert(key.clone(), v);
            }
            (obj["payment_id"].as_i64().expect("id"), Value::Object(obj))
        })
        .collect();
    assert_eq!(from_csv, lines);
    assert_eq!(lines[&1_000_002]["attempts"], 2);
    assert_eq!(lines[&1_000_001]["payment_status"], "Completed, \"late\"");

    // Invalid messages too, to a file: the payload's base64 and the error's comma survive.
    let out = dir.path().join("invalid.csv");
    run(
        d,
        &[
            "dlq",
            "list",
            "--invalid",
            "--format",
            "csv",
            "--out",
            path(&out),
        ],
    )
    .ok();
    let (header, records) = parse_csv(&read(&out));
    assert_eq!(
        header,
        ["source", "message_id", "payload", "error", "received_at"]
    );
    let json_line = run(d, &["dlq", "list", "--invalid"]).ok().json();
    assert_eq!(records.len(), 1);
    for (key, cell) in header.iter().zip(&records[0]) {
        assert_eq!(json_line[key.as_str()], json!(cell), "{key}");
    }
}
