//! The one store contract suite (design §6: "all stores pass one shared contract test
//! suite"), run against every store.
//!
//! Owns: the executable form of the rules in `ecom_stream::store`. Each check is an
//! `async fn(&dyn Store)` that expects an empty store and fails if its rule breaks;
//! [`contract_tests!`] turns every check into one `#[tokio::test]` per store. Must never:
//! depend on a particular store's internals (those tests live beside the store), or assume
//! a scan order other than "each key exactly once" outside the local-store checks.
//!
//! Cassandra runs the same checks against a real node: the one `cassandra_node` starts, or
//! the one `ECOM_CASSANDRA_NODES` names (each test in a fresh random keyspace, dropped
//! afterwards). Without Java or Maven each of its tests says loudly that it skipped (a
//! failure in CI). Times written to CQL `timestamp` columns (`first_seen`, `received_at`)
//! are whole milliseconds here, since that is what Cassandra keeps.

use crate::store_explain::{
    dead_letter_reads_one_entry_by_payment_id, fact_with_timestamps_reports_the_winning_writes,
};
use ecom_stream::model::{Order, Payment, StreamKind};
use ecom_stream::store::cassandra::{self as cql_store, CassandraConfig, CassandraStore};
use ecom_stream::store::embedded::{EmbeddedOptions, EmbeddedStore};
use ecom_stream::store::memory::MemoryStore;
use ecom_stream::store::{
    DlqEntry, FactRow, FactWrite, InvalidMessage, Page, ReplayedEntry, Store,
};
use std::collections::HashSet;
use std::sync::Arc;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Fixtures: one empty store per test, plus whatever must outlive it.
// ---------------------------------------------------------------------------------------

/// A store under test. Fields drop in order: the store closes before its directory or
/// keyspace goes.
pub struct Fixture {
    store: Arc<dyn Store>,
    /// Keeps the embedded store's directory alive for the test's duration.
    _dir: Option<TempDir>,
    /// Drops the Cassandra test keyspace when the test ends.
    _keyspace: Option<KeyspaceGuard>,
}

async fn memory_fixture() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
        _keyspace: None,
    })
}

async fn embedded_fixture() -> Option<Fixture> {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open store");
    Some(Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        _keyspace: None,
    })
}

/// A real Cassandra node's store in a fresh keyspace, or `None` (said loudly) when no node
/// can be had outside CI.
async fn cassandra_fixture() -> Option<Fixture> {
    let config = cassandra_test_config()?;
    cql_store::apply_schema(&config)
        .await
        .expect("apply schema.cql to a fresh keyspace");
    let guard = KeyspaceGuard(config.clone());
    let store = CassandraStore::open(&config)
        .await
        .expect("open the Cassandra store");
    Some(Fixture {
        store: Arc::new(store),
        _dir: None,
        _keyspace: Some(guard),
    })
}

/// The configuration of the test node (started on first use, see `cassandra_node`) in a new
/// random keyspace with RF 1, or `None` (said loudly) when no node can be had outside CI.
/// Shared with the other Cassandra tests.
pub fn cassandra_test_config() -> Option<CassandraConfig> {
    let node = crate::cassandra_node::node("the live Cassandra tests")?;
    use clap::Parser;
    #[derive(Parser)]
    struct Env {
        #[command(flatten)]
        args: cql_store::CassandraArgs,
    }
    // The other ECOM_CASSANDRA_* settings (credentials, TLS, consistency) apply as for
    // `ecom-stream` when the node is an external one.
    let mut args = Env::try_parse_from(["contract"])
        .expect("ECOM_CASSANDRA_* variables")
        .args;
    args.cassandra_nodes = node.nodes.clone();
    let n = ecom_stream::rng::SplitMix64::from_entropy().next_u64();
    args.cassandra_keyspace = format!("ecom_test_{n:016x}");
    args.cassandra_replication = "SimpleStrategy:1".into();
    Some(args.to_config().expect("valid ECOM_CASSANDRA_* settings"))
}

/// Drops its keyspace on drop. Drop cannot await, and the test's runtime is blocked while
/// it runs, so the drop uses its own thread, runtime and session.
pub struct KeyspaceGuard(pub CassandraConfig);

impl Drop for KeyspaceGuard {
    fn drop(&mut self) {
        let config = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let session = cql_store::session::connect(&config).await?;
                cql_store::schema::drop_keyspace(&session, &config.keyspace)
                    .await
                    .map_err(|e| cql_store::session::ConnectError(e.to_string()))
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("warning: test keyspace {} was not dropped", self.0.keyspace);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn order(order_id: i64, status: &str) -> Order {
    Order {
        order_id,
        customer_id: 100 + order_id,
        item: format!("item-{order_id}").into(),
        quantity: 2,
        price: 19.5,
        shipping_address: "1 Main St".into(),
        order_status: status.into(),
        creation_date: "2024-05-01 13:45:10".into(),
    }
}

fn payment(payment_id: i64, order_id: i64, status: &str) -> Payment {
    Payment {
        payment_id,
        order_id,
        payment_method: "Credit Card".into(),
        card_last_four: "1234".into(),
        payment_status: status.into(),
        payment_datetime: "2024-05-01T13:50:00Z".into(),
    }
}

fn w_order(o: &Order, ts: i64) -> FactWrite {
    FactWrite::Order {
        order: o.clone(),
        ts,
    }
}

fn w_payment(p: &Payment, ts: i64) -> FactWrite {
    FactWrite::Payment {
        payment: p.clone(),
        ts,
    }
}

/// The row a store must hold after these halves were written.
fn row(order_id: i64, o: Option<&Order>, p: Option<&Payment>) -> FactRow {
    FactRow {
        order_id,
        customer_id: o.map(|o| o.customer_id),
        item: o.map(|o| o.item.to_string()),
        quantity: o.map(|o| o.quantity),
        price: o.map(|o| o.price),
        shipping_address: o.map(|o| o.shipping_address.to_string()),
        order_status: o.map(|o| o.order_status.to_string()),
        creation_date: o.map(|o| o.creation_date.to_string()),
        payment_id: p.map(|p| p.payment_id),
        payment_method: p.map(|p| p.payment_method.to_string()),
        card_last_four: p.map(|p| p.card_last_four.to_string()),
        payment_status: p.map(|p| p.payment_status.to_string()),
        payment_datetime: p.map(|p| p.payment_datetime.to_string()),
    }
}

fn dead_letter(payment_id: i64, status: &str, first_seen: i64, event_ts: i64) -> DlqEntry {
    DlqEntry {
        payment: payment(payment_id, 9_000 + payment_id, status),
        reason: "order_not_found".into(),
        first_seen,
        attempts: 0,
        event_ts,
    }
}

fn invalid(source: StreamKind, message_id: &str, payload: &[u8]) -> InvalidMessage {
    InvalidMessage {
        source,
        message_id: message_id.into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        error: "invalid order: expected value".into(),
        received_at: 1_700_000_000_000_000,
    }
}

async fn write(store: &dyn Store, writes: &[FactWrite]) {
    store.write_facts(writes).await.expect("write_facts");
}

async fn fact(store: &dyn Store, order_id: i64) -> FactRow {
    store
        .fact(order_id)
        .await
        .expect("fact")
        .unwrap_or_else(|| panic!("row {order_id} missing"))
}

/// Every page of a scan, checking page sizes, until the store says the scan is complete
/// (`next == None`; a short or empty page with `Some(next)` is not the end); `scan` gives
/// the page after a key.
async fn all_pages<T, K, F, Fut>(limit: usize, mut scan: F) -> Vec<T>
where
    F: FnMut(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Page<T, K>>,
{
    let mut all = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = scan(after.take()).await;
        assert!(
            page.items.len() <= limit,
            "page of {} > limit {limit}",
            page.items.len()
        );
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return all,
        }
    }
    panic!("scan does not end");
}

async fn all_facts(store: &dyn Store, limit: usize) -> Vec<FactRow> {
    all_pages(limit, |after| async move {
        store.scan_facts(after, limit).await.expect("scan_facts")
    })
    .await
}

async fn all_dead_letters(store: &dyn Store, limit: usize) -> Vec<DlqEntry> {
    all_pages(limit, |after| async move {
        let page = store.scan_dead_letters(after, limit).await;
        page.expect("scan_dead_letters")
    })
    .await
}

async fn all_invalid(store: &dyn Store, limit: usize) -> Vec<InvalidMessage> {
    all_pages(limit, |after| async move {
        store
            .scan_invalid(after, limit)
            .await
            .expect("scan_invalid")
    })
    .await
}

/// Asserts `keys` holds each of `expected` exactly once, in any order.
fn assert_each_once<K: std::hash::Hash + Eq + std::fmt::Debug + Clone>(keys: &[K], expected: &[K]) {
    let unique: HashSet<&K> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "a key came back twice: {keys:?}");
    assert_eq!(unique, expected.iter().collect::<HashSet<_>>());
}

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

async fn order_then_payment_make_one_row(store: &dyn Store) {
    let (o, p) = (order(1, "Shipped"), payment(10, 1, "Completed"));
    write(store, &[w_order(&o, 100)]).await;
    assert_eq!(fact(store, 1).await, row(1, Some(&o), None));
    write(store, &[w_payment(&p, 200)]).await;
    assert_eq!(fact(store, 1).await, row(1, Some(&o), Some(&p)));
    assert_eq!(all_facts(store, 10).await.len(), 1);
}

async fn payment_then_order_make_the_same_row(store: &dyn Store) {
    let (o, p) = (order(2, "Shipped"), payment(20, 2, "Completed"));
    write(store, &[w_payment(&p, 200)]).await;
    let payment_only = fact(store, 2).await;
    assert_eq!(payment_only, row(2, None, Some(&p)));
    assert!(!payment_only.has_order() && payment_only.has_payment());
    write(store, &[w_order(&o, 100)]).await;
    assert_eq!(fact(store, 2).await, row(2, Some(&o), Some(&p)));
}

async fn both_halves_in_one_batch_make_one_row(store: &dyn Store) {
    let (o, p) = (order(3, "Shipped"), payment(30, 3, "Completed"));
    write(store, &[w_payment(&p, 5), w_order(&o, 5)]).await;
    assert_eq!(fact(store, 3).await, row(3, Some(&o), Some(&p)));
}

/// An order and a payment of one row in one batch keep each group's own last-write-wins
/// against what is stored (a store that merges the two into one statement must too).
async fn a_batch_pair_keeps_each_groups_last_write_wins(store: &dyn Store) {
    // Stored order newer, payment new: only the payment lands.
    let (stored, p) = (order(11, "Delivered"), payment(110, 11, "Completed"));
    write(store, &[w_order(&stored, 500)]).await;
    write(
        store,
        &[w_order(&order(11, "Stale"), 100), w_payment(&p, 100)],
    )
    .await;
    assert_eq!(fact(store, 11).await, row(11, Some(&stored), Some(&p)));

    // Stored payment newer, order new (the payment first in the batch): only the order lands.
    let (o, stored) = (order(12, "Shipped"), payment(120, 12, "Refunded"));
    write(store, &[w_payment(&stored, 500)]).await;
    write(
        store,
        &[w_payment(&payment(121, 12, "Stale"), 100), w_order(&o, 100)],
    )
    .await;
    assert_eq!(fact(store, 12).await, row(12, Some(&o), Some(&stored)));

    // Both older than what is stored: the row is left alone.
    write(
        store,
        &[
            w_order(&order(12, "Older"), 50),
            w_payment(&payment(122, 12, "Older"), 50),
        ],
    )
    .await;
    assert_eq!(fact(store, 12).await, row(12, Some(&o), Some(&stored)));

    // Several writes of a group around the pair: the newest of each group wins.
    let (o, p) = (order(13, "Delivered"), payment(131, 13, "Completed"));
    write(
        store,
        &[
            w_payment(&payment(130, 13, "Pending"), 10),
            w_order(&order(13, "Shipped"), 10),
            w_order(&o, 30),
            w_payment(&p, 20),
            w_order(&order(13, "Stale"), 20),
        ],
    )
    .await;
    assert_eq!(fact(store, 13).await, row(13, Some(&o), Some(&p)));
}

async fn a_group_write_never_clobbers_the_other_group(store: &dyn Store) {
    let (o, p) = (order(4, "Shipped"), payment(40, 4, "Completed"));
    write(store, &[w_order(&o, 100), w_payment(&p, 100)]).await;

    let o2 = Order {
        customer_id: 999,
        item: "Phone".into(),
        ..order(4, "Delivered")
    };
    write(store, &[w_order(&o2, 300)]).await;
    assert_eq!(fact(store, 4).await, row(4, Some(&o2), Some(&p)));

    let p2 = Payment {
        payment_method: "PayPal".into(),
        ..payment(41, 4, "Refunded")
    };
    write(store, &[w_payment(&p2, 300)]).await;
    assert_eq!(fact(store, 4).await, row(4, Some(&o2), Some(&p2)));
}

async fn order_group_is_last_write_wins(store: &dyn Store) {
    let newer = order(5, "Delivered");
    write(store, &[w_order(&newer, 200)]).await;
    write(store, &[w_order(&order(5, "Shipped"), 199)]).await;
    assert_eq!(
        fact(store, 5).await,
        row(5, Some(&newer), None),
        "older write won"
    );

    // Inside one batch too: the later, older write loses.
    let newest = order(5, "Cancelled");
    write(
        store,
        &[w_order(&newest, 300), w_order(&order(5, "Stale"), 250)],
    )
    .await;
    assert_eq!(fact(store, 5).await, row(5, Some(&newest), None));
}

async fn payment_group_is_last_write_wins(store: &dyn Store) {
    let newer = payment(60, 6, "Completed");
    write(store, &[w_payment(&newer, 200)]).await;
    write(store, &[w_payment(&payment(60, 6, "Pending"), 199)]).await;
    assert_eq!(
        fact(store, 6).await,
        row(6, None, Some(&newer)),
        "older write won"
    );

    // Inside one batch too.
    let newest = payment(62, 6, "Refunded");
    write(
        store,
        &[
            w_payment(&newest, 300),
            w_payment(&payment(63, 6, "Stale"), 250),
        ],
    )
    .await;
    assert_eq!(fact(store, 6).await, row(6, None, Some(&newest)));
}

/// Local stores only: a write with the same timestamp as the group's replaces it.
/// (Cassandra breaks such a tie per cell by the greater value; see `ecom_stream::store`.)
async fn local_equal_timestamps_replace(store: &dyn Store) {
    write(store, &[w_order(&order(5, "Delivered"), 200)]).await;
    let same_ts = order(5, "Accepted");
    write(store, &[w_order(&same_ts, 200)]).await;
    assert_eq!(
        fact(store, 5).await,
        row(5, Some(&same_ts), None),
        "equal ts must replace"
    );
    write(store, &[w_payment(&payment(61, 6, "Refunded"), 200)]).await;
    let same_ts = payment(60, 6, "Completed");
    write(store, &[w_payment(&same_ts, 200)]).await;
    assert_eq!(
        fact(store, 6).await,
        row(6, None, Some(&same_ts)),
        "equal ts must replace"
    );
    // Inside one batch, with an order of the row after them: the later of two equal
    // payments wins (a store that merges a row's order and payment must merge that one).
    let (o, later) = (order(9, "Shipped"), payment(91, 9, "Completed"));
    write(
        store,
        &[
            w_payment(&payment(90, 9, "Pending"), 400),
            w_payment(&later, 400),
            w_order(&o, 300),
        ],
    )
    .await;
    assert_eq!(
        fact(store, 9).await,
        row(9, Some(&o), Some(&later)),
        "equal ts must replace"
    );
}

async fn group_timestamps_are_independent(store: &dyn Store) {
    // A new order timestamp does not make an older payment write stale, nor the reverse.
    let (o, p) = (order(7, "Shipped"), payment(70, 7, "Completed"));
    write(store, &[w_order(&o, 1_000_000)]).await;
    write(store, &[w_payment(&p, 10)]).await;
    assert_eq!(fact(store, 7).await, row(7, Some(&o), Some(&p)));

    let (o, p) = (order(8, "Shipped"), payment(80, 8, "Completed"));
    write(store, &[w_payment(&p, 1_000_000)]).await;
    write(store, &[w_order(&o, 10)]).await;
    assert_eq!(fact(store, 8).await, row(8, Some(&o), Some(&p)));
}

async fn the_same_batch_twice_leaves_the_same_rows(store: &dyn Store) {
    let batch = vec![
        w_order(&order(1, "Shipped"), 10),
        w_payment(&payment(10, 1, "Pending"), 11),
        w_order(&order(1, "Delivered"), 12),
        w_payment(&payment(10, 1, "Completed"), 13),
        w_payment(&payment(20, 2, "Completed"), 20),
        w_order(&order(3, "Shipped"), 30),
        w_order(&order(3, "Stale"), 29),
    ];
    write(store, &batch).await;
    let once = all_facts(store, 100).await;
    write(store, &batch).await;
    let twice = all_facts(store, 100).await;
    assert_eq!(once.len(), 3);
    assert_eq!(once, twice);
    let first = once.iter().find(|r| r.order_id == 1).expect("row 1");
    assert_eq!(first.order_status.as_deref(), Some("Delivered"));
    assert_eq!(first.payment_status.as_deref(), Some("Completed"));
}

async fn known_orders_counts_only_rows_with_an_order(store: &dyn Store) {
    write(
        store,
        &[
            w_order(&order(1, "Shipped"), 1),
            w_payment(&payment(20, 2, "Completed"), 1),
        ],
    )
    .await;
    let known = store.known_orders(&[1, 2, 3]).await.expect("known_orders");
    assert_eq!(known, HashSet::from([1]));
    assert!(store.known_orders(&[]).await.expect("empty").is_empty());
}

async fn known_orders_takes_many_ids(store: &dyn Store) {
    let writes: Vec<FactWrite> = (1..=1_000)
        .map(|i| w_order(&order(2 * i, "Shipped"), 1))
        .collect();
    write(store, &writes).await;
    let mut asked: Vec<i64> = (1..=2_000).collect();
    asked.extend([2, 2, 4]); // duplicates are harmless
    let known = store.known_orders(&asked).await.expect("known_orders");
    assert_eq!(known, (1..=1_000).map(|i| 2 * i).collect::<HashSet<i64>>());
}

async fn a_missing_fact_is_none(store: &dyn Store) {
    assert_eq!(store.fact(42).await.expect("fact"), None);
    write(store, &[w_order(&order(41, "Shipped"), 1)]).await;
    assert_eq!(store.fact(42).await.expect("fact"), None);
}

async fn scan_facts_pages_through_every_row_once(store: &dyn Store) {
    assert!(all_facts(store, 3).await.is_empty());
    let ids = [7, 3, 10, 1, 9, 2, 8, 4, 6, 5];
    let writes: Vec<FactWrite> = ids
        .iter()
        .map(|&id| w_order(&order(id, "Shipped"), 1))
        .collect();
    write(store, &writes).await;
    // Partial rows (payment columns only, their order not seen yet) are rows of the scan.
    let payment_only = [13, 11, 14, 12];
    let writes: Vec<FactWrite> = payment_only
        .iter()
        .map(|&id| w_payment(&payment(100 + id, id, "Completed"), 1))
        .collect();
    write(store, &writes).await;
    let all_ids: Vec<i64> = ids.iter().chain(&payment_only).copied().collect();
    // Page sizes smaller than the table (one dividing it, one not), equal to it, and larger.
    for limit in [1, 3, 7, 14, 100] {
        let rows = all_facts(store, limit).await;
        let keys: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
        assert_each_once(&keys, &all_ids);
        assert!(rows.iter().all(|r| if r.order_id > 10 {
            !r.has_order() && r.payment_status.as_deref() == Some("Completed")
        } else {
            r.order_status.as_deref() == Some("Shipped") && !r.has_payment()
        }));
    }
    let empty = store.scan_facts(None, 0).await.expect("limit 0");
    assert!(empty.items.is_empty() && empty.next.is_none(), "{empty:?}");
}

async fn dead_letters_put_scan_delete(store: &dyn Store) {
    let entries = [
        dead_letter(1, "Completed", 100_000, 10),
        dead_letter(2, "Completed", 100_000, 10),
    ];
    store.put_dead_letters(&entries).await.expect("put");
    assert_eq!(all_dead_letters(store, 10).await.len(), 2);
    let stored = all_dead_letters(store, 10).await;
    assert!(entries.iter().all(|e| stored.contains(e)), "{stored:?}");

    let resolved = |payment_id, event_ts| ReplayedEntry {
        payment_id,
        event_ts,
    };
    // Each call names the entries it removed, and only those (replay counts them).
    let removed = store
        .delete_dead_letters(&[resolved(1, 10), resolved(999, 10)])
        .await
        .expect("delete");
    assert_eq!(removed, vec![1]);
    assert_eq!(all_dead_letters(store, 10).await, vec![entries[1].clone()]);
    // A version other than the stored one is not deleted: replay read an older entry, and
    // a newer one was dead-lettered (and acked) since.
    let removed = store
        .delete_dead_letters(&[resolved(2, 9)])
        .await
        .expect("delete");
    assert_eq!(removed, Vec::<i64>::new());
    assert_eq!(all_dead_letters(store, 10).await, vec![entries[1].clone()]);
    let removed = store
        .delete_dead_letters(&[resolved(2, 10)])
        .await
        .expect("delete");
    assert_eq!(removed, vec![2]);
    assert!(all_dead_letters(store, 10).await.is_empty());
    // Deleting it again (a second replay that read it too) removes, and counts, nothing.
    let removed = store
        .delete_dead_letters(&[resolved(2, 10), resolved(1, 10)])
        .await
        .expect("delete again");
    assert_eq!(removed, Vec::<i64>::new());
}

async fn a_re_put_dead_letter_keeps_one_entry_first_seen_and_attempts(store: &dyn Store) {
    store
        .put_dead_letters(&[dead_letter(5, "Pending", 100_000, 10)])
        .await
        .expect("put");
    store.bump_dead_letter_attempts(&[5]).await.expect("bump");

    // A redelivery later: new first_seen, zero attempts, newer payment.
    let newer = DlqEntry {
        attempts: 0,
        ..dead_letter(5, "Completed", 999_000, 20)
    };
    store
        .put_dead_letters(std::slice::from_ref(&newer))
        .await
        .expect("re-put");
    let expected = DlqEntry {
        first_seen: 100_000,
        attempts: 1,
        ..newer.clone()
    };
    assert_eq!(all_dead_letters(store, 10).await, vec![expected.clone()]);

    // An older payment does not replace a newer one.
    store
        .put_dead_letters(&[dead_letter(5, "Stale", 50_000, 15)])
        .await
        .expect("re-put older");
    assert_eq!(all_dead_letters(store, 10).await, vec![expected]);
}

/// Replay read version 10, the pipeline dead-lettered version 20 (and acked it), then
/// replay resolved version 10: the newer entry stays whole, `first_seen` and `attempts`
/// included, and a later pass can still bump and delete it.
async fn deleting_an_older_version_keeps_the_newer_entry_whole(store: &dyn Store) {
    store
        .put_dead_letters(&[dead_letter(7, "Pending", 100_000, 10)])
        .await
        .expect("put");
    store.bump_dead_letter_attempts(&[7]).await.expect("bump");
    let newer = dead_letter(7, "Completed", 500_000, 20);
    store
        .put_dead_letters(std::slice::from_ref(&newer))
        .await
        .expect("re-put");
    let removed = store
        .delete_dead_letters(&[ReplayedEntry {
            payment_id: 7,
            event_ts: 10,
        }])
        .await
        .expect("delete");
    assert_eq!(
        removed,
        Vec::<i64>::new(),
        "the newer version was not removed"
    );
    let kept = DlqEntry {
        first_seen: 100_000,
        attempts: 1,
        ..newer
    };
    assert_eq!(all_dead_letters(store, 10).await, vec![kept.clone()]);
    store.bump_dead_letter_attempts(&[7]).await.expect("bump");
    assert_eq!(
        all_dead_letters(store, 10).await,
        vec![DlqEntry {
            attempts: 2,
            ..kept
        }]
    );
    let removed = store
        .delete_dead_letters(&[ReplayedEntry {
            payment_id: 7,
            event_ts: 20,
        }])
        .await
        .expect("delete");
    assert_eq!(removed, vec![7]);
    assert!(all_dead_letters(store, 10).await.is_empty());
}

/// A payment named twice in one call is applied in order, as if in two calls (the
/// Cassandra store reads before it writes, so it must not run the two concurrently).
async fn repeated_keys_in_one_call_apply_in_order(store: &dyn Store) {
    let newer = dead_letter(8, "Completed", 700_000, 20);
    store
        .put_dead_letters(&[dead_letter(8, "Pending", 600_000, 10), newer.clone()])
        .await
        .expect("put");
    store
        .bump_dead_letter_attempts(&[8, 8])
        .await
        .expect("bump");
    let expected = DlqEntry {
        first_seen: 600_000,
        attempts: 2,
        ..newer
    };
    assert_eq!(all_dead_letters(store, 10).await, vec![expected]);
}

async fn dead_letter_attempts_bump(store: &dyn Store) {
    let entries = [
        dead_letter(1, "Completed", 100_000, 10),
        dead_letter(2, "Completed", 100_000, 10),
    ];
    store.put_dead_letters(&entries).await.expect("put");
    store
        .bump_dead_letter_attempts(&[1, 2])
        .await
        .expect("bump");
    store
        .bump_dead_letter_attempts(&[1, 404])
        .await
        .expect("bump");
    let attempts: Vec<(i64, i32)> = all_dead_letters(store, 10)
        .await
        .iter()
        .map(|d| (d.payment.payment_id, d.attempts))
        .collect();
    assert_each_once(&attempts, &[(1, 2), (2, 1)]);
}

async fn dead_letters_page(store: &dyn Store) {
    let ids: Vec<i64> = vec![70, 10, 40, 20, 60, 30, 50];
    let entries: Vec<DlqEntry> = ids
        .iter()
        .map(|&id| dead_letter(id, "Completed", 1_000, 1))
        .collect();
    store.put_dead_letters(&entries).await.expect("put");
    for limit in [1, 3, 7, 50] {
        let keys: Vec<i64> = all_dead_letters(store, limit)
            .await
            .iter()
            .map(|d| d.payment.payment_id)
            .collect();
        assert_each_once(&keys, &ids);
    }
}

async fn invalid_messages_put_scan_and_re_put(store: &dyn Store) {
    // 1 MB that is not UTF-8 (0xFF never appears in UTF-8) must come back byte for byte.
    let big: Vec<u8> = (0..1_000_000u32)
        .map(|i| if i % 7 == 0 { 0xFF } else { (i % 256) as u8 })
        .collect();
    assert!(std::str::from_utf8(&big).is_err());
    let first = invalid(StreamKind::Orders, "m-1", &big);
    let small = invalid(StreamKind::Payments, "m-1", b"");
    store
        .put_invalid(&[first.clone(), small.clone()])
        .await
        .expect("put");

    let again = InvalidMessage {
        payload: bytes::Bytes::from_static(b"other"),
        error: "other error".into(),
        received_at: 1,
        ..first.clone()
    };
    store.put_invalid(&[again]).await.expect("re-put");
    let stored = all_invalid(store, 10).await;
    assert_eq!(stored.len(), 2, "one entry per (source, message_id)");
    assert!(
        stored.contains(&first),
        "the first record must stay, payload intact"
    );
    assert!(stored.contains(&small));

    store
        .put_invalid(std::slice::from_ref(&first))
        .await
        .expect("re-put same");
    assert_eq!(
        all_invalid(store, 10).await,
        stored,
        "an identical re-put changes nothing"
    );
}

async fn invalid_messages_page_by_source_and_message_id(store: &dyn Store) {
    let mut keys = Vec::new();
    for source in [StreamKind::Payments, StreamKind::Orders] {
        for id in ["b", "a", "c", "aa", "ü"] {
            keys.push((source, id.to_string()));
        }
    }
    let entries: Vec<InvalidMessage> = keys.iter().map(|(s, id)| invalid(*s, id, b"x")).collect();
    store.put_invalid(&entries).await.expect("put");
    // 5 is one source's worth: a page that ends exactly at the end of a partition.
    for limit in [1, 2, 5, 10, 50] {
        let got: Vec<(StreamKind, String)> = all_invalid(store, limit)
            .await
            .iter()
            .map(|m| (m.source, m.message_id.clone()))
            .collect();
        assert_each_once(&got, &keys);
    }
}

async fn empty_calls_are_no_ops(store: &dyn Store) {
    store.write_facts(&[]).await.expect("write_facts");
    store.put_dead_letters(&[]).await.expect("put_dead_letters");
    store.delete_dead_letters(&[]).await.expect("delete");
    store.bump_dead_letter_attempts(&[]).await.expect("bump");
    store.put_invalid(&[]).await.expect("put_invalid");
    assert!(all_facts(store, 5).await.is_empty());
    assert!(all_dead_letters(store, 5).await.is_empty());
    assert!(all_invalid(store, 5).await.is_empty());
}

/// Local stores only (memory, embedded): scans come back in ascending key order.
async fn local_scans_are_ascending(store: &dyn Store) {
    let writes: Vec<FactWrite> = [5, 1, 4, 2, 3]
        .iter()
        .map(|&id| w_order(&order(id, "Shipped"), 1))
        .collect();
    write(store, &writes).await;
    let dlq: Vec<DlqEntry> = [30, 10, 20]
        .iter()
        .map(|&id| dead_letter(id, "C", 1, 1))
        .collect();
    store.put_dead_letters(&dlq).await.expect("put");
    let inv: Vec<InvalidMessage> = [
        (StreamKind::Payments, "a"),
        (StreamKind::Orders, "b"),
        (StreamKind::Orders, "a"),
    ]
    .iter()
    .map(|(s, id)| invalid(*s, id, b"x"))
    .collect();
    store.put_invalid(&inv).await.expect("put");

    let facts: Vec<i64> = all_facts(store, 2)
        .await
        .iter()
        .map(|r| r.order_id)
        .collect();
    assert_eq!(facts, [1, 2, 3, 4, 5]);
    let dead: Vec<i64> = all_dead_letters(store, 2)
        .await
        .iter()
        .map(|d| d.payment.payment_id)
        .collect();
    assert_eq!(dead, [10, 20, 30]);
    let invalid: Vec<(StreamKind, String)> = all_invalid(store, 2)
        .await
        .iter()
        .map(|m| (m.source, m.message_id.clone()))
        .collect();
    let expected = [
        (StreamKind::Orders, "a"),
        (StreamKind::Orders, "b"),
        (StreamKind::Payments, "a"),
    ];
    assert_eq!(invalid, expected.map(|(s, id)| (s, id.to_string())));
}

// ---------------------------------------------------------------------------------------
// One #[tokio::test] per (store, check)
// ---------------------------------------------------------------------------------------

/// `contract_tests!(name, fixture_fn)` runs every check against the store `fixture_fn`
/// builds (a fresh, empty one per test; `None` skips). Add `; local` for stores whose scans
/// are in ascending key order, to run the ordering check too.
macro_rules! contract_tests {
    ($name:ident, $fixture:ident $(; $local:ident)?) => {
        mod $name {
            use super::*;
            contract_tests!(@each $fixture;
                order_then_payment_make_one_row,
                payment_then_order_make_the_same_row,
                both_halves_in_one_batch_make_one_row,
                a_batch_pair_keeps_each_groups_last_write_wins,
                a_group_write_never_clobbers_the_other_group,
                order_group_is_last_write_wins,
                payment_group_is_last_write_wins,
                group_timestamps_are_independent,
                the_same_batch_twice_leaves_the_same_rows,
                known_orders_counts_only_rows_with_an_order,
                known_orders_takes_many_ids,
                a_missing_fact_is_none,
                scan_facts_pages_through_every_row_once,
                dead_letters_put_scan_delete,
                a_re_put_dead_letter_keeps_one_entry_first_seen_and_attempts,
                deleting_an_older_version_keeps_the_newer_entry_whole,
                repeated_keys_in_one_call_apply_in_order,
                dead_letter_attempts_bump,
                dead_letters_page,
                invalid_messages_put_scan_and_re_put,
                invalid_messages_page_by_source_and_message_id,
                empty_calls_are_no_ops,
                fact_with_timestamps_reports_the_winning_writes,
                dead_letter_reads_one_entry_by_payment_id,
            );
            $(contract_tests!(@$local $fixture);)?
        }
    };
    (@local $fixture:ident) => {
        contract_tests!(@each $fixture; local_scans_are_ascending, local_equal_timestamps_replace);
    };
    (@each $fixture:ident; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                if let Some(fixture) = $fixture().await {
                    super::$check(&*fixture.store).await;
                }
            }
        )+
    };
}

contract_tests!(memory, memory_fixture; local);
contract_tests!(embedded, embedded_fixture; local);
contract_tests!(cassandra, cassandra_fixture);

// ---------------------------------------------------------------------------------------
// Embedded only: what a file on disk adds to the contract.
// ---------------------------------------------------------------------------------------

mod embedded_on_disk {
    use super::*;
    use ecom_stream::store::{DeadLetterStore, FactSink, OrderLookup};

    fn open(dir: &TempDir) -> EmbeddedStore {
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open")
    }

    #[tokio::test]
    async fn a_reader_sees_the_writers_commits_while_the_writer_is_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = open(&dir);
        let o = order(1, "Shipped");
        writer.write_facts(&[w_order(&o, 1)]).await.expect("write");

        let reader = EmbeddedStore::open_reader(dir.path()).expect("open_reader");
        assert_eq!(fact(&reader, 1).await, row(1, Some(&o), None));

        // Commits after the reader opened are visible to its next read.
        let p = payment(10, 1, "Completed");
        writer
            .write_facts(&[w_payment(&p, 2)])
            .await
            .expect("write");
        writer
            .put_dead_letters(&[dead_letter(3, "Completed", 1, 1)])
            .await
            .expect("put");
        assert_eq!(fact(&reader, 1).await, row(1, Some(&o), Some(&p)));
        assert_eq!(all_dead_letters(&reader, 10).await.len(), 1);

        // A reader refuses to write, and says why.
        let err = reader
            .write_facts(&[w_order(&o, 3)])
            .await
            .expect_err("reader wrote");
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    /// Each write refused by last-write-wins is counted once as superseded (what `ingest`
    /// reports), whatever else of its row the batch holds.
    #[tokio::test]
    async fn superseded_writes_are_counted_per_write_in_a_batch_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir);
        let superseded = || store.superseded_writes().expect("counted");
        store
            .write_facts(&[
                w_order(&order(1, "Delivered"), 500),
                w_payment(&payment(20, 2, "Refunded"), 500),
            ])
            .await
            .expect("write");
        assert_eq!(superseded(), 0);
        let stale_pairs = [
            // Row 1: the order loses, the payment lands.
            w_order(&order(1, "Stale"), 100),
            w_payment(&payment(10, 1, "Completed"), 100),
            // Row 2: the payment loses, the order lands.
            w_payment(&payment(21, 2, "Stale"), 100),
            w_order(&order(2, "Shipped"), 100),
            // Row 3: new, both land.
            w_order(&order(3, "Shipped"), 100),
            w_payment(&payment(30, 3, "Completed"), 100),
        ];
        store.write_facts(&stale_pairs).await.expect("write");
        assert_eq!(superseded(), 2);
        // The same batch again: everything equal to what is stored lands again (`>=`)…
        store.write_facts(&stale_pairs).await.expect("write");
        assert_eq!(superseded(), 4);
        // …and a pair older on both sides is refused whole, counted twice.
        store
            .write_facts(&[
                w_order(&order(3, "Older"), 50),
                w_payment(&payment(31, 3, "Older"), 50),
            ])
            .await
            .expect("write");
        assert_eq!(superseded(), 6);
    }

    #[tokio::test]
    async fn data_survives_drop_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (o, p) = (order(1, "Shipped"), payment(10, 1, "Completed"));
        let dl = dead_letter(2, "Completed", 100, 10);
        let inv = invalid(StreamKind::Payments, "m-9", b"\xff\xfe");
        {
            let store = open(&dir);
            store
                .write_facts(&[w_order(&o, 1), w_payment(&p, 1)])
                .await
                .expect("write");
            store
                .put_dead_letters(std::slice::from_ref(&dl))
                .await
                .expect("dlq");
            store.bump_dead_letter_attempts(&[2]).await.expect("bump");
            store
                .put_invalid(std::slice::from_ref(&inv))
                .await
                .expect("invalid");
        }
        let bumped = DlqEntry {
            attempts: 1,
            ..dl.clone()
        };
        for store in [
            EmbeddedStore::open_reader(dir.path()).expect("open_reader"),
            open(&dir),
        ] {
            assert_eq!(fact(&store, 1).await, row(1, Some(&o), Some(&p)));
            assert_eq!(all_dead_letters(&store, 10).await, vec![bumped.clone()]);
            assert_eq!(all_invalid(&store, 10).await, vec![inv.clone()]);
        }

        // LWW timestamps survive too: an older write after reopening still loses.
        let store = open(&dir);
        store
            .write_facts(&[w_order(&order(1, "Stale"), 0)])
            .await
            .expect("write");
        assert_eq!(fact(&store, 1).await, row(1, Some(&o), Some(&p)));
    }

    #[tokio::test]
    async fn open_reader_on_an_empty_dir_fails_clearly_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = EmbeddedStore::open_reader(dir.path()).expect_err("no store there");
        let msg = err.to_string();
        assert!(msg.contains("no embedded store at"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains("ecom-stream demo"), "{msg}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("read_dir").count(), 0);

        let missing = dir.path().join("not-there");
        assert!(EmbeddedStore::open_reader(&missing).is_err());
        assert!(!missing.exists());
    }

    #[tokio::test]
    async fn open_creates_the_data_dir_and_reopens_idempotently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a").join("b");
        let store = EmbeddedStore::open(&nested, EmbeddedOptions::default()).expect("open");
        store
            .write_facts(&[w_order(&order(1, "Shipped"), 1)])
            .await
            .expect("write");
        // A second writer on the same file (as `dlq replay` in another process would be).
        let second = EmbeddedStore::open(&nested, EmbeddedOptions::default()).expect("reopen");
        assert!(second.known_orders(&[1]).await.expect("known").contains(&1));
    }
}
