//! End to end through Google's Pub/Sub emulator into a real Cassandra node: `setup` applies
//! `schema.cql` to a fresh keyspace, `run --store cassandra` joins what `produce` publishes,
//! and `query facts`, `dlq list` and the DLQ topic are read back.
//!
//! Owns: "the production path (emulator → `run` → Cassandra) keeps the promises the embedded
//! store keeps": the original scenario, everything published twice with garbage among it,
//! SIGKILL and restart, and the same rows whatever order the messages come in. Scenarios the
//! embedded store runs too live in `pubsub` and run here on a Cassandra [`World`]; this file
//! adds what is new. Must never: assume Cassandra lists rows in key order (it scans in token
//! order), share a keyspace or a project between tests, use a fixed sleep to order events
//! (it waits on what the store shows), or assert on timings.

use crate::cli::int;
use crate::pubsub::{
    assert_garbage_recorded, assert_published_twice_as_once, expected_row, original_scenario,
    produce_twice, publish_garbage, published_twice_done, sigkill_then_restart, stop, wait_until,
    World,
};
use ecom_stream::pubsub::producer::{self, Record};
use google_cloud_pubsub::model::Message;
use serde_json::Value;
use std::collections::BTreeMap;

/// The scenario into Cassandra: 80 joined rows, 420 dead letters in the table and on
/// the topic, nothing left un-acked; and `setup` again is a no-op that still reports the
/// schema version every node agreed on.
#[test]
fn original_scenario_into_cassandra() {
    let Some(w) = World::with_cassandra("cassandra_original") else {
        return;
    };
    let again = w.run(&["setup"]).ok();
    assert!(
        again.stdout.contains("schema version"),
        "setup did not report the agreed schema version: {again}"
    );
    original_scenario(&w);
}

/// Everything published twice, with invalid payloads among it: the rows a single publish
/// leaves, each dead letter once, and every invalid payload listed by `dlq list --invalid`
/// byte for byte with its reason (the 1 MB one too, as a Cassandra blob).
#[test]
fn published_twice_with_garbage_into_cassandra() {
    let Some(w) = World::with_cassandra("cassandra_twice") else {
        return;
    };
    let mut running = w.start(&["--hold", "2s", "--replay-every", "0"]);
    produce_twice(&w);
    let garbage = publish_garbage(&w);
    wait_until(
        &mut running,
        "every message answered and 5 invalid messages recorded",
        || published_twice_done(&w) && w.invalid().len() == garbage.len(),
    );
    let report = stop(running);
    assert_eq!(int(&report["stats"], "invalid"), 5, "{report}");
    assert_published_twice_as_once(&w, &report);
    assert_garbage_recorded(&w, &garbage);
}

/// SIGKILL of `run --store cassandra` in mid-stream, then a restart: every row is, column by
/// column, what an uninterrupted run writes.
#[test]
fn sigkill_mid_stream_then_restart_into_cassandra() {
    let Some(w) = World::with_cassandra("cassandra_sigkill") else {
        return;
    };
    sigkill_then_restart(&w, 3000);
}

/// The seed of the records published by hand below (the one `expected_row` is for).
const SEED: u64 = 42;
/// Orders 1..=ORDERS are published; payments for 1..=PAYMENTS, so the last 20 never join.
const ORDERS: i64 = 60;
const PAYMENTS: i64 = 80;

/// The messages `produce` would publish for these records (seed [`SEED`], first pass), in
/// the order given: the content is the same whatever the order.
fn messages(records: impl Iterator<Item = Record>) -> Vec<Message> {
    records
        .map(|r| Message::new().set_data(serde_json::to_vec(&r).expect("a record as JSON")))
        .collect()
}

fn orders(ids: impl Iterator<Item = i64>) -> Vec<Message> {
    messages(ids.map(|id| Record::Order(producer::order(SEED, id, 0))))
}

fn payments(ids: impl Iterator<Item = i64>) -> Vec<Message> {
    messages(ids.map(|id| Record::Payment(producer::payment(SEED, id, 0))))
}

/// Rows that have their order columns.
fn orders_stored(w: &World) -> usize {
    w.facts()
        .values()
        .filter(|r| !r["customer_id"].is_null())
        .count()
}

/// `dlq list` without `first_seen`, a wall-clock time of the run that dead-lettered.
fn dead_letters_but_first_seen(w: &World) -> BTreeMap<i64, Value> {
    w.dead_letters()
        .into_iter()
        .map(|(id, mut e)| {
            assert!(e["first_seen"].is_string(), "{e}");
            e["first_seen"] = Value::Null;
            (id, e)
        })
        .collect()
}

/// The same messages published in two orders, into two keyspaces, leave the same rows and
/// the same dead letters. A: orders first, ascending, then payments, ascending: each payment
/// finds its order at once. B: payments first, descending, all dead-lettered (no order yet),
/// then orders, descending, and `dlq replay` joins the payments afterwards. Both get one
/// replay pass, so `attempts` match too (the runs replay nothing themselves:
/// `--replay-every 0`).
#[test]
fn the_same_messages_in_two_orders_leave_the_same_rows_in_cassandra() {
    let (Some(a), Some(b)) = (
        World::with_cassandra("cassandra_order_a"),
        World::with_cassandra("cassandra_order_b"),
    ) else {
        return;
    };

    let mut run_a = a.start(&["--hold", "2s", "--replay-every", "0"]);
    a.publish_raw("orders_data", orders(1..=ORDERS));
    wait_until(&mut run_a, "every order stored", || {
        orders_stored(&a) == ORDERS as usize
    });
    a.publish_raw("payments_data", payments(1..=PAYMENTS));
    wait_until(&mut run_a, "every payment joined or dead-lettered", || {
        let f = a.facts();
        f.len() == ORDERS as usize
            && f.values().all(|r| !r["payment_id"].is_null())
            && a.dead_letters().len() == (PAYMENTS - ORDERS) as usize
    });
    let report_a = stop(run_a);
    assert_eq!(
        int(&report_a["stats"], "dead_lettered"),
        PAYMENTS - ORDERS,
        "{report_a}"
    );

    let mut run_b = b.start(&["--hold", "1s", "--replay-every", "0"]);
    b.publish_raw("payments_data", payments((1..=PAYMENTS).rev()));
    wait_until(&mut run_b, "every payment dead-lettered", || {
        b.dead_letters().len() == PAYMENTS as usize
    });
    b.publish_raw("orders_data", orders((1..=ORDERS).rev()));
    wait_until(&mut run_b, "every order stored", || {
        orders_stored(&b) == ORDERS as usize
    });
    let report_b = stop(run_b);
    assert_eq!(
        int(&report_b["stats"], "dead_lettered"),
        PAYMENTS,
        "{report_b}"
    );

    let replay_a = a.run(&["dlq", "replay"]).ok().json();
    assert_eq!(int(&replay_a, "replayed"), 0, "{replay_a}");
    assert_eq!(int(&replay_a, "unmatched"), PAYMENTS - ORDERS, "{replay_a}");
    let replay_b = b.run(&["dlq", "replay"]).ok().json();
    assert_eq!(int(&replay_b, "replayed"), ORDERS, "{replay_b}");
    assert_eq!(int(&replay_b, "unmatched"), PAYMENTS - ORDERS, "{replay_b}");

    let (facts_a, facts_b) = (a.facts(), b.facts());
    assert_eq!(facts_a.len(), ORDERS as usize);
    for id in 1..=ORDERS {
        assert_eq!(facts_a[&id], expected_row(SEED, id), "row {id} in A");
        assert_eq!(facts_b[&id], facts_a[&id], "row {id}: B differs from A");
    }
    assert_eq!(facts_b.len(), facts_a.len());

    let (dlq_a, dlq_b) = (
        dead_letters_but_first_seen(&a),
        dead_letters_but_first_seen(&b),
    );
    assert_eq!(
        dlq_a.keys().copied().collect::<Vec<_>>(),
        (ORDERS + 1..=PAYMENTS)
            .map(|id| producer::payment(SEED, id, 0).payment_id)
            .collect::<Vec<_>>()
    );
    assert!(dlq_a.values().all(|e| int(e, "attempts") == 1), "{dlq_a:?}");
    assert_eq!(dlq_a, dlq_b);
}
