//! A row the store always rejects, through the Pub/Sub emulator with `setup
//! --max-delivery-attempts`: the rest flows, that row ends in the dead-letter path as
//! `write_failed` (table and topic), its message is acked, and the redelivery loop ends.
//! The store is the real embedded one; a SQLite trigger rejects exactly one order.

use crate::cli::{assert_one_error_line, int};
use crate::pubsub::{
    assert_nothing_left_unacked, expected_row, stop, wait_until, World, UNCONTENDED_QUIET,
};
use ecom_stream::pubsub::connect;

/// The payment columns of a row, empty while no payment was written.
const PAYMENT_COLUMNS: [&str; 5] = [
    "payment_id",
    "payment_method",
    "card_last_four",
    "payment_status",
    "payment_datetime",
];

/// The order the store rejects.
const POISON: i64 = 13;
/// Our own bound (`--max-write-attempts`), below the subscription's policy.
const MAX_WRITE_ATTEMPTS: &str = "3";
/// The subscriptions' dead-letter policy (`setup --max-delivery-attempts`).
const MAX_DELIVERY_ATTEMPTS: i32 = 5;

#[test]
fn a_row_the_store_rejects_is_dead_lettered_as_write_failed_and_its_loop_ends() {
    let Some(w) = World::without_setup("poison_row_pubsub") else {
        return;
    };
    // Out of Pub/Sub's range: refused before anything is created.
    let refused = w.run(&["setup", "--max-delivery-attempts", "3"]).failed();
    assert_one_error_line(
        &refused,
        &[
            "--max-delivery-attempts",
            "ECOM_PUBSUB_MAX_DELIVERY_ATTEMPTS",
            "5 and 100",
        ],
    );
    let attempts = MAX_DELIVERY_ATTEMPTS.to_string();
    let setup = w
        .run(&[
            "setup",
            "--ack-deadline",
            "10s",
            "--retention",
            "10m",
            "--max-delivery-attempts",
            &attempts,
        ])
        .ok();
    // All six were created by this setup: the refused one created nothing.
    let created = setup
        .stdout
        .lines()
        .filter(|l| {
            (l.starts_with("topic") || l.starts_with("subscription")) && l.contains(" created ")
        })
        .count();
    assert_eq!(created, 6, "{setup}");
    assert_policies(&w);

    let db = w.data_dir().join("ecom-stream.db");
    rusqlite::Connection::open(&db)
        .and_then(|c| {
            c.execute_batch(&format!(
                "CREATE TRIGGER reject_poison BEFORE INSERT ON orders_payments_facts \
                 WHEN NEW.order_id = {POISON} BEGIN SELECT RAISE(ABORT, 'order {POISON} rejected'); END;"
            ))
        })
        .expect("the trigger");

    let mut running = w.start(&["--max-write-attempts", MAX_WRITE_ATTEMPTS]);
    w.produce("orders", "1..=20", &[]);
    wait_until(
        &mut running,
        "19 rows and the poison order dead-lettered",
        || w.facts().len() == 19 && !w.invalid().is_empty(),
    );
    let report = stop(running);

    let facts = w.facts();
    for id in (1..=20).filter(|&id| id != POISON) {
        // Orders only were published: the producer's record with no payment columns.
        let mut expected = expected_row(42, id);
        for column in PAYMENT_COLUMNS {
            expected[column] = serde_json::Value::Null;
        }
        assert_eq!(facts[&id], expected, "row {id}");
    }
    assert!(!facts.contains_key(&POISON), "{report}");
    let invalid = w.invalid();
    assert_eq!(invalid.len(), 1, "{invalid:?}");
    let record = &invalid[0];
    assert_eq!(record["source"], "orders", "{record}");
    let error = record["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("write_failed") && error.contains(&format!("order {POISON} rejected")),
        "{record}"
    );
    // The loop ended at our bound: the poison order was tried three times, nacked twice,
    // then acked with its record; Pub/Sub numbered the redeliveries.
    let orders = &report["orders"];
    assert_eq!(int(orders, "nacked"), 2, "{report}");
    assert_eq!(int(orders, "acked"), 20, "{report}");

    // The DLQ topic has it too, with its reason.
    let topic = w.drain("dlq_payments_data-sub", UNCONTENDED_QUIET);
    assert_eq!(topic.len(), 1, "{topic:?}");
    let message = &topic[0];
    assert_eq!(
        message.attributes.get("reason").map(String::as_str),
        Some("write_failed"),
        "{message:?}"
    );
    let order: serde_json::Value = serde_json::from_slice(&message.data).expect("order JSON");
    assert_eq!(int(&order, "order_id"), POISON);
    assert_nothing_left_unacked(&w);
}

/// The orders and payments subscriptions have the dead-letter policy `setup` was given,
/// to the DLQ topic; the DLQ's own subscription has none.
fn assert_policies(w: &World) {
    let config = w.pubsub_config();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin = connect::subscription_admin(&config)
            .await
            .expect("subscription admin");
        for (subscription, policy) in [
            (&config.orders_subscription, true),
            (&config.payments_subscription, true),
            (&config.dlq_subscription, false),
        ] {
            let name = config.subscription_path(subscription);
            let got = admin
                .get_subscription()
                .set_subscription(&name)
                .send()
                .await
                .expect("get subscription");
            match (&got.dead_letter_policy, policy) {
                (Some(p), true) => {
                    assert_eq!(p.dead_letter_topic, config.topic_path(&config.dlq_topic));
                    assert_eq!(p.max_delivery_attempts, MAX_DELIVERY_ATTEMPTS);
                }
                (None, false) => {}
                (other, _) => panic!("{name}: dead-letter policy {other:?}"),
            }
        }
    });
}
