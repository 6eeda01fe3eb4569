//! The store contract of the reads `query order --explain` makes: a row with each column
//! group's winning write timestamp, and one dead letter by payment id. Run on every store
//! by `store_contract`'s `contract_tests!` (these are two of its checks).
//!
//! Owns: the rule that the timestamps read back are exactly those last-write-wins kept.
//! Must never: depend on one store's internals.

use ecom_stream::model::{Order, Payment};
use ecom_stream::store::{DlqEntry, FactWrite, StampedFact, Store};

fn order(order_id: i64, status: &str) -> Order {
    Order {
        order_id,
        customer_id: 500 + order_id,
        item: format!("item-{order_id}").into(),
        quantity: 1,
        price: 0.1 + 0.2,
        shipping_address: "1 Main St, Springfield".into(),
        order_status: status.into(),
        creation_date: "2024-05-01 13:45:10".into(),
    }
}

fn payment(order_id: i64, status: &str) -> Payment {
    Payment {
        payment_id: 1_000_000 + order_id,
        order_id,
        payment_method: "Card".into(),
        card_last_four: "4242".into(),
        payment_status: status.into(),
        payment_datetime: "2024-05-01T13:50:00Z".into(),
    }
}

async fn stamped(store: &dyn Store, order_id: i64) -> StampedFact {
    store
        .fact_with_timestamps(order_id)
        .await
        .expect("fact_with_timestamps")
        .unwrap_or_else(|| panic!("row {order_id} missing"))
}

/// Each group reports the timestamp of the write that won, not of the last one applied;
/// a group never written reports none; the row is the one `fact` returns.
pub(crate) async fn fact_with_timestamps_reports_the_winning_writes(store: &dyn Store) {
    let (o_new, o_old) = (order(1, "Shipped"), order(1, "Pending"));
    let p = payment(1, "Completed");
    // Older order write after the newer one: it loses, and so does its timestamp.
    let writes = [
        FactWrite::Order {
            order: o_new.clone(),
            ts: 1_700_000_000_123_456,
        },
        FactWrite::Order {
            order: o_old,
            ts: 1_700_000_000_000_001,
        },
        FactWrite::Payment {
            payment: p,
            ts: 1_700_000_000_654_321,
        },
        FactWrite::Order {
            order: order(2, "Pending"),
            ts: 42,
        },
    ];
    store.write_facts(&writes).await.expect("write_facts");

    let one = stamped(store, 1).await;
    assert_eq!(one.order_ts, Some(1_700_000_000_123_456));
    assert_eq!(one.payment_ts, Some(1_700_000_000_654_321));
    assert_eq!(one.row.order_status.as_deref(), Some("Shipped"));
    assert_eq!(Some(&one.row), store.fact(1).await.expect("fact").as_ref());

    let two = stamped(store, 2).await;
    assert_eq!((two.order_ts, two.payment_ts), (Some(42), None));
    assert_eq!(two.row.payment_id, None);

    assert_eq!(store.fact_with_timestamps(3).await.expect("read"), None);
}

/// A dead letter is found by its payment id, whole; another id finds nothing, and a
/// replayed (deleted) entry is gone.
pub(crate) async fn dead_letter_reads_one_entry_by_payment_id(store: &dyn Store) {
    let entry = DlqEntry {
        payment: payment(7, "Completed"),
        reason: "order_not_found".into(),
        first_seen: 1_700_000_000_000_000,
        attempts: 0,
        event_ts: 1_700_000_000_777_000,
    };
    store
        .put_dead_letters(std::slice::from_ref(&entry))
        .await
        .expect("put");
    store
        .bump_dead_letter_attempts(&[1_000_007])
        .await
        .expect("bump");
    let found = store.dead_letter(1_000_007).await.expect("read");
    assert_eq!(
        found,
        Some(DlqEntry {
            attempts: 1,
            ..entry.clone()
        })
    );
    assert_eq!(store.dead_letter(1_000_008).await.expect("read"), None);

    let gone = store
        .delete_dead_letters(&[ecom_stream::store::ReplayedEntry {
            payment_id: 1_000_007,
            event_ts: entry.event_ts,
        }])
        .await
        .expect("delete");
    assert_eq!(gone, [1_000_007]);
    assert_eq!(store.dead_letter(1_000_007).await.expect("read"), None);
}
