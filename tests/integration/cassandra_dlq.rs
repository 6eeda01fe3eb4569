//! `dlq replay` and `dlq list` over a DLQ table of thousands of entries on the real
//! Cassandra node: many pages, some entries resolvable and some not, and partial rows
//! scattered among them (what a write outside ecom-stream, or a delete racing an older
//! re-insert, leaves). The store skips partial rows, so a scan page comes back short before
//! the real end of the table: nothing may stop there.
//!
//! Owns: "every resolvable entry is replayed, none is skipped, and listings reach the real
//! end" against Cassandra's token paging. Must never: depend on the order of a scan.

use crate::cassandra_cli::cassandra_command;
use crate::cli::{dlq_by_id_any_order, facts_by_id_any_order, int, Running};
use crate::pubsub::CASSANDRA_COMMAND_LIMIT;
use crate::store_contract::{cassandra_test_config, KeyspaceGuard};
use ecom_stream::model::{Order, Payment};
use ecom_stream::store::cassandra::{self as cql_store, CassandraStore};
use ecom_stream::store::{DeadLetterStore, DlqEntry, FactSink, FactWrite};
use std::collections::BTreeSet;

/// Entries in the DLQ table: several of `dlq replay`'s 1,000-entry pages.
const ENTRIES: i64 = 3_500;
/// Every third entry's order exists, so it is resolvable.
fn resolvable(id: i64) -> bool {
    id % 3 == 0
}
/// Partial rows (only `attempts`) under their own payment ids, spread over the token range.
const PARTIAL: std::ops::Range<i64> = 1_000_000..1_000_300;

fn payment(id: i64) -> Payment {
    Payment {
        payment_id: id,
        order_id: id,
        payment_method: "Card".into(),
        card_last_four: "4242".into(),
        payment_status: "Completed".into(),
        payment_datetime: "2026-12-01T10:00:00Z".into(),
    }
}

fn order(id: i64) -> Order {
    Order {
        order_id: id,
        customer_id: 7,
        item: "Laptop".into(),
        quantity: 1,
        price: 999.5,
        shipping_address: "1 Main St".into(),
        order_status: "Shipped".into(),
        creation_date: "2026-12-01T09:00:00Z".into(),
    }
}

#[test]
fn replay_and_list_reach_the_real_end_past_short_pages() {
    let Some(config) = cassandra_test_config() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(cql_store::apply_schema(&config))
        .expect("apply schema.cql");
    let _drop_keyspace = KeyspaceGuard(config.clone());

    rt.block_on(async {
        let store = CassandraStore::open(&config).await.expect("open store");
        let entries: Vec<DlqEntry> = (1..=ENTRIES)
            .map(|id| DlqEntry {
                payment: payment(id),
                reason: "order_not_found".into(),
                first_seen: 1_764_000_000_000_000,
                attempts: 0,
                event_ts: 1_764_000_000_000_000 + id,
            })
            .collect();
        for chunk in entries.chunks(500) {
            store
                .put_dead_letters(chunk)
                .await
                .expect("put dead letters");
        }
        let orders: Vec<FactWrite> = (1..=ENTRIES)
            .filter(|&id| resolvable(id))
            .map(|id| FactWrite::Order {
                order: order(id),
                ts: 1_764_000_000_000_000,
            })
            .collect();
        for chunk in orders.chunks(500) {
            store.write_facts(chunk).await.expect("write orders");
        }
        // Partial rows, written as another program would: no payment columns at all.
        let session = cql_store::session::connect(&config).await.expect("connect");
        for id in PARTIAL {
            session
                .query_unpaged(
                    format!(
                        "INSERT INTO {}.dlq_payments (payment_id, attempts) VALUES ({id}, 1)",
                        config.keyspace
                    ),
                    &[],
                )
                .await
                .expect("insert a partial row");
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        Running::spawn(cassandra_command(dir.path(), &config, args))
            .with_limit(CASSANDRA_COMMAND_LIMIT)
            .wait()
    };

    // Before: `dlq list` lists every whole entry once, past the pages the partial rows
    // shortened, and nothing of the partial rows.
    let listed = dlq_by_id_any_order(&run(&["dlq", "list"]).ok());
    let all: BTreeSet<i64> = (1..=ENTRIES).collect();
    assert_eq!(listed.keys().copied().collect::<BTreeSet<_>>(), all);

    // One pass replays every resolvable entry and bumps every other one.
    let report = run(&["dlq", "replay"]).ok().json();
    let expected_replayed = (1..=ENTRIES).filter(|&id| resolvable(id)).count() as i64;
    assert_eq!(int(&report, "replayed"), expected_replayed, "{report}");
    assert_eq!(
        int(&report, "unmatched"),
        ENTRIES - expected_replayed,
        "{report}"
    );
    assert_eq!(int(&report, "scanned"), ENTRIES, "{report}");

    // After: exactly the unresolvable entries are left, each bumped once.
    let left = dlq_by_id_any_order(&run(&["dlq", "list"]).ok());
    let unresolvable: BTreeSet<i64> = (1..=ENTRIES).filter(|&id| !resolvable(id)).collect();
    assert_eq!(left.keys().copied().collect::<BTreeSet<_>>(), unresolvable);
    for entry in left.values() {
        assert_eq!(int(entry, "attempts"), 1, "{entry}");
    }
    // And every resolvable payment is now on its order's row.
    let facts = facts_by_id_any_order(&run(&["query", "facts"]).ok());
    assert_eq!(facts.len() as i64, expected_replayed);
    for (id, row) in &facts {
        assert_eq!(int(row, "payment_id"), *id, "{row}");
    }
}
