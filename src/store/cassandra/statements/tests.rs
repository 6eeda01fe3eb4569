//! Unit tests of the statement table, the bound values and the decoded rows: everything
//! about the CQL that can be checked without a server.

use super::*;
use crate::model::{Order, Payment, StreamKind};
use crate::store::{DlqEntry, InvalidMessage};
use scylla::value::CqlTimestamp;

fn markers(cql: &str) -> usize {
    cql.matches('?').count()
}

fn order() -> Order {
    Order {
        order_id: 7,
        customer_id: 70,
        item: "Laptop".into(),
        quantity: 2,
        price: 9.5,
        shipping_address: "1 Main St".into(),
        order_status: "Shipped".into(),
        creation_date: "2024-05-01 13:45:10".into(),
    }
}

fn payment() -> Payment {
    Payment {
        payment_id: 11,
        order_id: 7,
        payment_method: "Credit Card".into(),
        card_last_four: "1234".into(),
        payment_status: "Completed".into(),
        payment_datetime: "2024-05-01T13:50:00Z".into(),
    }
}

#[test]
fn the_table_is_in_name_order_and_writes_run_at_write_consistency() {
    let cql = Cql::new("ks");
    for (i, (name, access, text)) in cql.all().enumerate() {
        assert_eq!(name as usize, i, "STATEMENTS out of Stmt order at {name:?}");
        assert_eq!(&cql[name], text);
        let writes = ["INSERT", "UPDATE", "DELETE"]
            .iter()
            .any(|w| text.starts_with(w));
        assert_eq!(access == Access::Write, writes, "{name:?}: {text}");
    }
}

#[test]
fn every_statement_is_qualified_with_the_keyspace_and_single_partition() {
    let cql = Cql::new("ks_1");
    let all: Vec<&str> = cql.all().map(|(_, _, text)| text).collect();
    assert_eq!(all.len(), STATEMENTS.len());
    for s in all {
        assert!(s.contains(" ks_1."), "{s}");
        assert!(!s.contains("BATCH"), "{s}");
        assert!(!s.contains(" IN "), "multi-partition read: {s}");
        assert!(!s.contains("ALLOW FILTERING"), "{s}");
    }
}

#[test]
fn fact_writes_touch_only_their_group_and_carry_the_timestamp_last() {
    let cql = Cql::new("ecom_store");
    assert_eq!(
        &cql[Stmt::UpsertOrder],
        "INSERT INTO ecom_store.orders_payments_facts (order_id, customer_id, item, \
         quantity, price, shipping_address, order_status, creation_date) VALUES \
         (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
    );
    for payment_col in [
        "payment_id",
        "payment_method",
        "card_last_four",
        "payment_status",
    ] {
        assert!(!cql[Stmt::UpsertOrder].contains(payment_col));
    }
    for order_col in ["customer_id", "item", "quantity", "price", "order_status"] {
        assert!(!cql[Stmt::UpsertPayment].contains(order_col));
    }
    assert!(cql[Stmt::UpsertPayment].ends_with("USING TIMESTAMP ?"));

    let o = order();
    let v = order_values(&o, 1_700_000_000_123_456);
    assert_eq!(markers(&cql[Stmt::UpsertOrder]), 9);
    assert_eq!(
        v,
        (
            7,
            70,
            "Laptop",
            2,
            9.5,
            "1 Main St",
            "Shipped",
            "2024-05-01 13:45:10",
            1_700_000_000_123_456
        )
    );
    let p = payment();
    let v = payment_values(&p, 5);
    assert_eq!(markers(&cql[Stmt::UpsertPayment]), 7);
    // The partition key is the payment's order_id, not its payment_id.
    assert_eq!(
        v,
        (
            7,
            11,
            "Credit Card",
            "1234",
            "Completed",
            "2024-05-01T13:50:00Z",
            5
        )
    );
}

#[test]
fn dead_letter_values_keep_the_given_first_seen_and_attempts() {
    let cql = Cql::new("ecom_store");
    let e = DlqEntry {
        payment: payment(),
        reason: "order_not_found".into(),
        first_seen: 1_700_000_000_999_999,
        attempts: 0,
        event_ts: 42,
    };
    let v = dead_letter_values(&e, 1_600_000_000_000_000, 3);
    assert_eq!(markers(&cql[Stmt::UpsertDeadLetter]), 10);
    assert_eq!(v.0, 11);
    assert_eq!(v.1, 7);
    assert_eq!(v.6, "order_not_found");
    assert_eq!(v.7, CqlTimestamp(1_600_000_000_000));
    assert_eq!(v.8, 3);
    assert_eq!(v.9, 42, "the write timestamp is the payment's publish time");
    assert_eq!(markers(&cql[Stmt::DeleteDeadLetter]), 2);
    assert!(cql[Stmt::DeleteDeadLetter]
        .starts_with("DELETE FROM ecom_store.dlq_payments USING TIMESTAMP ?"));
    assert_eq!(markers(&cql[Stmt::UpdateAttempts]), 3);
}

#[test]
fn invalid_messages_are_looked_up_then_inserted_without_lwt() {
    let cql = Cql::new("ecom_store");
    assert!(
        !cql[Stmt::InsertInvalid].contains(" IF "),
        "no LWT: {}",
        &cql[Stmt::InsertInvalid]
    );
    assert_eq!(markers(&cql[Stmt::SelectInvalidExists]), 2);
    let m = InvalidMessage {
        source: StreamKind::Payments,
        message_id: "m-1".into(),
        payload: bytes::Bytes::from_static(b"\xff{"),
        error: "bad".into(),
        received_at: 1_700_000_000_000_500,
    };
    let v = invalid_values(&m);
    assert_eq!(markers(&cql[Stmt::InsertInvalid]), 5);
    assert_eq!(
        v,
        (
            "payments",
            "m-1",
            &b"\xff{"[..],
            "bad",
            CqlTimestamp(1_700_000_000_000)
        )
    );
}

/// Serializes `values` against bind markers of these CQL types, as the driver does
/// against a prepared statement's metadata: a Rust type that does not fit its column's
/// CQL type fails here, offline, instead of at the first execute against a node.
fn binds<V: scylla::serialize::row::SerializeRow>(values: V, types: &[NativeType]) {
    try_binds(values, types).expect("values fit the CQL types");
}

fn try_binds<V: scylla::serialize::row::SerializeRow>(
    values: V,
    types: &[NativeType],
) -> Result<(), scylla::serialize::SerializationError> {
    use scylla::frame::response::result::{ColumnSpec, ColumnType, TableSpec};
    use scylla::serialize::row::RowSerializationContext;
    use scylla::serialize::writers::RowWriter;
    let specs: Vec<ColumnSpec<'_>> = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            ColumnSpec::owned(
                format!("c{i}"),
                ColumnType::Native(t.clone()),
                TableSpec::owned("ks".into(), "t".into()),
            )
        })
        .collect();
    let ctx = RowSerializationContext::from_specs(&specs);
    let mut buf = Vec::new();
    values.serialize(&ctx, &mut RowWriter::new(&mut buf))
}

use scylla::frame::response::result::NativeType;

#[test]
fn bound_values_fit_the_schema_types_marker_by_marker() {
    use NativeType::*;
    let (o, p) = (order(), payment());
    // order_id, customer_id, item, quantity, price, shipping_address, order_status,
    // creation_date, [timestamp]
    binds(
        order_values(&o, 1),
        &[
            BigInt, BigInt, Text, BigInt, Double, Text, Text, Text, BigInt,
        ],
    );
    binds(
        payment_values(&p, 1),
        &[BigInt, BigInt, Text, Text, Text, Text, BigInt],
    );
    let e = DlqEntry {
        payment: p.clone(),
        reason: "order_not_found".into(),
        first_seen: 1,
        attempts: 0,
        event_ts: 1,
    };
    // payment_id, order_id, 4 × text, reason, first_seen, attempts, [timestamp]
    binds(
        dead_letter_values(&e, 1, 0),
        &[
            BigInt, BigInt, Text, Text, Text, Text, Text, Timestamp, Int, BigInt,
        ],
    );
    let m = InvalidMessage {
        source: StreamKind::Orders,
        message_id: "m".into(),
        payload: bytes::Bytes::from_static(b"x"),
        error: "e".into(),
        received_at: 1,
    };
    binds(invalid_values(&m), &[Text, Text, Blob, Text, Timestamp]);
    // The small statements, with the tuples mod.rs binds.
    binds((1i64,), &[BigInt]); // point reads by key
    binds((cql_limit(10),), &[Int]); // first scan page: LIMIT
    binds((1i64, cql_limit(10)), &[BigInt, Int]); // token(?) > …, LIMIT
    binds((1i64, 1i64), &[BigInt, BigInt]); // DELETE USING TIMESTAMP ? … payment_id = ?
    binds((1i64, 2i32, 1i64), &[BigInt, Int, BigInt]); // bump
    binds(("orders", "m", cql_limit(10)), &[Text, Text, Int]); // invalid scan
                                                               // The check bites: an int where a bigint goes, a wrong count.
    assert!(try_binds((1i32,), &[BigInt]).is_err());
    assert!(try_binds((1i64, 2i64), &[BigInt]).is_err());
}

/// Type-checks a row struct against result columns of these names and CQL types, as
/// the driver does on every result: a renamed column or a wrong type fails here.
fn decodes<R>(columns: &[(&str, NativeType)])
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    use scylla::frame::response::result::{ColumnSpec, ColumnType, TableSpec};
    let specs: Vec<ColumnSpec<'_>> = columns
        .iter()
        .map(|(name, t)| {
            ColumnSpec::owned(
                name.to_string(),
                ColumnType::Native(t.clone()),
                TableSpec::owned("ks".into(), "t".into()),
            )
        })
        .collect();
    R::type_check(&specs).expect("row struct matches the selected columns");
}

#[test]
fn row_structs_match_the_selected_columns() {
    use NativeType::*;
    let facts = [
        ("order_id", BigInt),
        ("customer_id", BigInt),
        ("item", Text),
        ("quantity", BigInt),
        ("price", Double),
        ("shipping_address", Text),
        ("order_status", Text),
        ("creation_date", Text),
        ("payment_id", BigInt),
        ("payment_method", Text),
        ("card_last_four", Text),
        ("payment_status", Text),
        ("payment_datetime", Text),
    ];
    decodes::<FactCql>(&facts);
    let stamped = [
        facts.as_slice(),
        &[("order_ts", BigInt), ("payment_ts", BigInt)],
    ]
    .concat();
    decodes::<FactStampedCql>(&stamped);
    decodes::<OrderKnownCql>(&[("customer_id", BigInt)]);
    decodes::<DeadLetterStateCql>(&[
        ("first_seen", Timestamp),
        ("attempts", Int),
        ("event_ts", BigInt),
    ]);
    decodes::<AttemptsCql>(&[("attempts", Int), ("attempts_ts", BigInt)]);
    decodes::<DeadLetterCql>(&[
        ("payment_id", BigInt),
        ("order_id", BigInt),
        ("payment_method", Text),
        ("card_last_four", Text),
        ("payment_status", Text),
        ("payment_datetime", Text),
        ("reason", Text),
        ("first_seen", Timestamp),
        ("attempts", Int),
        ("event_ts", BigInt),
    ]);
    decodes::<InvalidExistsCql>(&[("message_id", Text)]);
    decodes::<InvalidCql>(&[
        ("source", Text),
        ("message_id", Text),
        ("payload", Blob),
        ("error", Text),
        ("received_at", Timestamp),
    ]);
    // And the selected column lists are those names, in that order.
    let cql = Cql::new("ks");
    let names: Vec<&str> = facts.iter().map(|(n, _)| *n).collect();
    assert!(
        cql[Stmt::SelectFact].contains(&names.join(", ")),
        "{}",
        &cql[Stmt::SelectFact]
    );
    assert!(cql[Stmt::ScanDeadLettersFirst].contains("WRITETIME(reason) AS event_ts"));
    assert!(cql[Stmt::SelectAttempts].contains("WRITETIME(attempts) AS attempts_ts"));
}

#[test]
fn scans_page_by_token_and_by_clustering_key() {
    let cql = Cql::new("ecom_store");
    assert!(cql[Stmt::ScanFactsAfter].contains("WHERE token(order_id) > token(?) LIMIT ?"));
    assert!(cql[Stmt::ScanDeadLettersAfter].contains("WHERE token(payment_id) > token(?) LIMIT ?"));
    assert!(cql[Stmt::ScanInvalidAfter].contains("WHERE source = ? AND message_id > ? LIMIT ?"));
    assert_eq!(cql_limit(1000), 1000);
    assert_eq!(cql_limit(usize::MAX), i32::MAX);
}

#[test]
fn timestamps_convert_between_micros_and_millis() {
    assert_eq!(
        micros_to_cql(1_700_000_000_123_456),
        CqlTimestamp(1_700_000_000_123)
    );
    assert_eq!(
        cql_to_micros(CqlTimestamp(1_700_000_000_123)),
        1_700_000_000_123_000
    );
    assert_eq!(micros_to_cql(-1), CqlTimestamp(-1));
    assert_eq!(cql_to_micros(CqlTimestamp(i64::MAX)), i64::MAX);
}

#[test]
fn rows_decode_into_store_types() {
    let row = DeadLetterCql {
        payment_id: 11,
        order_id: Some(7),
        payment_method: Some("Credit Card".into()),
        card_last_four: Some("1234".into()),
        payment_status: Some("Completed".into()),
        payment_datetime: Some("2024-05-01T13:50:00Z".into()),
        reason: Some("order_not_found".into()),
        first_seen: Some(CqlTimestamp(1_000)),
        attempts: Some(2),
        event_ts: Some(99),
    };
    let e = row.clone().into_entry().expect("complete");
    assert_eq!(e.payment, payment());
    assert_eq!((e.first_seen, e.attempts, e.event_ts), (1_000_000, 2, 99));
    let partial = DeadLetterCql {
        payment_status: None,
        ..row
    };
    assert_eq!(partial.into_entry(), None);

    let inv = InvalidCql {
        source: "orders".into(),
        message_id: "m".into(),
        payload: None,
        error: Some("e".into()),
        received_at: Some(CqlTimestamp(2)),
    };
    let m = inv.clone().into_message().expect("ok");
    assert_eq!(
        (m.source, m.payload.len(), m.received_at),
        (StreamKind::Orders, 0, 2_000)
    );
    let bad = InvalidCql {
        source: "refunds".into(),
        ..inv
    };
    assert!(bad.into_message().is_err());
}
