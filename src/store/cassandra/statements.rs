//! Every CQL statement of the Cassandra store, the values bound to each, and the rows they
//! return, as plain data that unit tests check without a server.
//!
//! Owns: statement text (one constant shape per operation, qualified with the configured
//! keyspace), the order of bound values, and the decoding of result rows into the store's
//! types. Must never: build CQL from message content (values are always bound, never
//! formatted in), or send a multi-partition batch: each statement touches one partition.
//!
//! Timestamps: every fact write carries `USING TIMESTAMP <publish time µs>`, so Cassandra's
//! last-write-wins per cell gives design §4.3's per-group rule for free: an order write
//! only has order cells, a payment write only payment cells. A dead letter's cells all
//! carry the payment's publish time (`event_ts`), which `WRITETIME(reason)` reads back and
//! which the conditional delete (`DELETE … USING TIMESTAMP event_ts`) compares against.
//! The CQL `timestamp` columns (`first_seen`, `received_at`) hold milliseconds.

use crate::model::{Order, Payment, Topic};
use crate::store::{DlqEntry, FactRow, InvalidMessage};
use scylla::value::CqlTimestamp;

/// The name of each statement. The one list of what the store sends is [`STATEMENTS`]; a
/// name is an index into it (and into [`Cql`] and the prepared statements built from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stmt {
    UpsertOrder,
    UpsertPayment,
    SelectFact,
    SelectOrderKnown,
    ScanFactsFirst,
    ScanFactsAfter,
    SelectDeadLetterState,
    UpsertDeadLetter,
    ScanDeadLettersFirst,
    ScanDeadLettersAfter,
    DeleteDeadLetter,
    SelectAttempts,
    UpdateAttempts,
    SelectInvalidExists,
    InsertInvalid,
    ScanInvalidFirst,
    ScanInvalidAfter,
}

/// Which configured consistency a statement runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The fully qualified table names of one keyspace: all that is formatted into CQL text.
pub struct Tables {
    pub facts: String,
    pub dlq: String,
    pub invalid: String,
}

/// One row of [`STATEMENTS`].
pub struct Statement {
    pub name: Stmt,
    pub access: Access,
    /// The CQL text for a keyspace's tables.
    pub cql: fn(&Tables) -> String,
}

/// Every statement the store prepares, once each, in [`Stmt`] order (a unit test checks
/// the order): its name, its consistency and its text.
pub const STATEMENTS: [Statement; 17] = [
    // Order columns only: a payment's cells in the same row are not touched.
    Statement {
        name: Stmt::UpsertOrder,
        access: Access::Write,
        cql: |t| {
            format!(
                "INSERT INTO {} (order_id, customer_id, item, quantity, price, \
                 shipping_address, order_status, creation_date) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                t.facts
            )
        },
    },
    // Payment columns only.
    Statement {
        name: Stmt::UpsertPayment,
        access: Access::Write,
        cql: |t| {
            format!(
                "INSERT INTO {} (order_id, payment_id, payment_method, card_last_four, \
                 payment_status, payment_datetime) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                t.facts
            )
        },
    },
    // One row (`query order`, and the contract suite).
    Statement {
        name: Stmt::SelectFact,
        access: Access::Read,
        cql: |t| format!("SELECT {FACT_COLUMNS} FROM {} WHERE order_id = ?", t.facts),
    },
    // The join's read-through: is there a row with order columns?
    Statement {
        name: Stmt::SelectOrderKnown,
        access: Access::Read,
        cql: |t| format!("SELECT customer_id FROM {} WHERE order_id = ?", t.facts),
    },
    // First page of `query facts`.
    Statement {
        name: Stmt::ScanFactsFirst,
        access: Access::Read,
        cql: |t| format!("SELECT {FACT_COLUMNS} FROM {} LIMIT ?", t.facts),
    },
    // Next page: partitions come back in token order, so pages go by token, not key.
    Statement {
        name: Stmt::ScanFactsAfter,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {FACT_COLUMNS} FROM {} WHERE token(order_id) > token(?) LIMIT ?",
                t.facts
            )
        },
    },
    // A dead letter's state before it is (re)written: kept `first_seen`/`attempts`, and
    // the version (`event_ts`) it holds.
    Statement {
        name: Stmt::SelectDeadLetterState,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT first_seen, attempts, WRITETIME(reason) AS event_ts FROM {} \
                 WHERE payment_id = ?",
                t.dlq
            )
        },
    },
    // Writes a whole dead letter, every cell at the payment's publish time.
    Statement {
        name: Stmt::UpsertDeadLetter,
        access: Access::Write,
        cql: |t| {
            format!(
                "INSERT INTO {} (payment_id, order_id, payment_method, card_last_four, \
                 payment_status, payment_datetime, reason, first_seen, attempts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                t.dlq
            )
        },
    },
    Statement {
        name: Stmt::ScanDeadLettersFirst,
        access: Access::Read,
        cql: |t| format!("SELECT {DEAD_LETTER_COLUMNS} FROM {} LIMIT ?", t.dlq),
    },
    Statement {
        name: Stmt::ScanDeadLettersAfter,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM {} WHERE token(payment_id) > token(?) \
                 LIMIT ?",
                t.dlq
            )
        },
    },
    // Removes the version replay read and nothing newer (see module doc).
    Statement {
        name: Stmt::DeleteDeadLetter,
        access: Access::Write,
        cql: |t| {
            format!(
                "DELETE FROM {} USING TIMESTAMP ? WHERE payment_id = ?",
                t.dlq
            )
        },
    },
    // `attempts` and its write time, for the bump.
    Statement {
        name: Stmt::SelectAttempts,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT attempts, WRITETIME(attempts) AS attempts_ts FROM {} \
                 WHERE payment_id = ?",
                t.dlq
            )
        },
    },
    // Writes `attempts` at the cell's own timestamp: see `bump_dead_letter_attempts`.
    Statement {
        name: Stmt::UpdateAttempts,
        access: Access::Write,
        cql: |t| {
            format!(
                "UPDATE {} USING TIMESTAMP ? SET attempts = ? WHERE payment_id = ?",
                t.dlq
            )
        },
    },
    // Whether a message is recorded already: the first record wins, so a put reads first.
    // (Not `INSERT … IF NOT EXISTS`: ScyllaDB keyspaces with tablets, the default there for
    // NetworkTopologyStrategy, do not support lightweight transactions.)
    Statement {
        name: Stmt::SelectInvalidExists,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT message_id FROM {} WHERE source = ? AND message_id = ?",
                t.invalid
            )
        },
    },
    Statement {
        name: Stmt::InsertInvalid,
        access: Access::Write,
        cql: |t| {
            format!(
                "INSERT INTO {} ({INVALID_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                t.invalid
            )
        },
    },
    Statement {
        name: Stmt::ScanInvalidFirst,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {INVALID_COLUMNS} FROM {} WHERE source = ? LIMIT ?",
                t.invalid
            )
        },
    },
    Statement {
        name: Stmt::ScanInvalidAfter,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {INVALID_COLUMNS} FROM {} WHERE source = ? AND message_id > ? \
                 LIMIT ?",
                t.invalid
            )
        },
    },
];

const FACT_COLUMNS: &str = "order_id, customer_id, item, quantity, price, shipping_address, \
    order_status, creation_date, payment_id, payment_method, card_last_four, payment_status, \
    payment_datetime";

const DEAD_LETTER_COLUMNS: &str = "payment_id, order_id, payment_method, card_last_four, \
    payment_status, payment_datetime, reason, first_seen, attempts, \
    WRITETIME(reason) AS event_ts";

const INVALID_COLUMNS: &str = "source, message_id, payload, error, received_at";

/// The text of every statement for one keyspace, indexed by [`Stmt`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cql(Vec<String>);

impl Cql {
    /// The statements for `keyspace`, which must be a checked identifier
    /// ([`super::config::check_identifier`]): it is the only thing formatted into the text.
    pub fn new(keyspace: &str) -> Self {
        let tables = Tables {
            facts: format!("{keyspace}.orders_payments_facts"),
            dlq: format!("{keyspace}.dlq_payments"),
            invalid: format!("{keyspace}.invalid_messages"),
        };
        Cql(STATEMENTS.iter().map(|s| (s.cql)(&tables)).collect())
    }

    /// Every statement with its name and consistency, in [`STATEMENTS`] order.
    pub fn all(&self) -> impl Iterator<Item = (Stmt, Access, &str)> {
        STATEMENTS
            .iter()
            .zip(&self.0)
            .map(|(s, text)| (s.name, s.access, text.as_str()))
    }
}

impl std::ops::Index<Stmt> for Cql {
    type Output = str;

    fn index(&self, name: Stmt) -> &str {
        // Built from STATEMENTS, one text per name: every index is in range.
        &self.0[name as usize]
    }
}

// ---------------------------------------------------------------------------------------
// Bound values, in the order of the `?` markers above.
// ---------------------------------------------------------------------------------------

pub type OrderValues<'a> = (i64, i64, &'a str, i64, f64, &'a str, &'a str, &'a str, i64);

pub fn order_values(o: &Order, ts: i64) -> OrderValues<'_> {
    (
        o.order_id,
        o.customer_id,
        &o.item,
        o.quantity,
        o.price,
        &o.shipping_address,
        &o.order_status,
        &o.creation_date,
        ts,
    )
}

pub type PaymentValues<'a> = (i64, i64, &'a str, &'a str, &'a str, &'a str, i64);

pub fn payment_values(p: &Payment, ts: i64) -> PaymentValues<'_> {
    (
        p.order_id,
        p.payment_id,
        &p.payment_method,
        &p.card_last_four,
        &p.payment_status,
        &p.payment_datetime,
        ts,
    )
}

pub type DeadLetterValues<'a> = (
    i64,
    i64,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    CqlTimestamp,
    i32,
    i64,
);

/// The whole entry; `first_seen` and `attempts` are the ones to keep (see
/// `put_dead_letters`), the timestamp is the payment's publish time.
pub fn dead_letter_values(e: &DlqEntry, first_seen: i64, attempts: i32) -> DeadLetterValues<'_> {
    let p = &e.payment;
    (
        p.payment_id,
        p.order_id,
        &p.payment_method,
        &p.card_last_four,
        &p.payment_status,
        &p.payment_datetime,
        &e.reason,
        micros_to_cql(first_seen),
        attempts,
        e.event_ts,
    )
}

pub type InvalidValues<'a> = (&'a str, &'a str, &'a [u8], &'a str, CqlTimestamp);

pub fn invalid_values(m: &InvalidMessage) -> InvalidValues<'_> {
    (
        m.source.as_str(),
        &m.message_id,
        &m.payload[..],
        &m.error,
        micros_to_cql(m.received_at),
    )
}

/// A scan's `LIMIT`, which CQL takes as an `int`.
pub fn cql_limit(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

/// µs since the epoch → CQL `timestamp` (ms), rounding down (also before 1970).
pub fn micros_to_cql(micros: i64) -> CqlTimestamp {
    CqlTimestamp(micros.div_euclid(1000))
}

/// CQL `timestamp` (ms) → µs since the epoch.
pub fn cql_to_micros(t: CqlTimestamp) -> i64 {
    t.0.saturating_mul(1000)
}

// ---------------------------------------------------------------------------------------
// Result rows, matched to the selected columns by name.
// ---------------------------------------------------------------------------------------

/// A row of `select_fact` / `scan_facts_*`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct FactCql {
    pub order_id: i64,
    pub customer_id: Option<i64>,
    pub item: Option<String>,
    pub quantity: Option<i64>,
    pub price: Option<f64>,
    pub shipping_address: Option<String>,
    pub order_status: Option<String>,
    pub creation_date: Option<String>,
    pub payment_id: Option<i64>,
    pub payment_method: Option<String>,
    pub card_last_four: Option<String>,
    pub payment_status: Option<String>,
    pub payment_datetime: Option<String>,
}

impl From<FactCql> for FactRow {
    fn from(r: FactCql) -> Self {
        FactRow {
            order_id: r.order_id,
            customer_id: r.customer_id,
            item: r.item,
            quantity: r.quantity,
            price: r.price,
            shipping_address: r.shipping_address,
            order_status: r.order_status,
            creation_date: r.creation_date,
            payment_id: r.payment_id,
            payment_method: r.payment_method,
            card_last_four: r.card_last_four,
            payment_status: r.payment_status,
            payment_datetime: r.payment_datetime,
        }
    }
}

/// A row of `select_order_known`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct OrderKnownCql {
    pub customer_id: Option<i64>,
}

/// A row of `select_dead_letter_state`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct DeadLetterStateCql {
    pub first_seen: Option<CqlTimestamp>,
    pub attempts: Option<i32>,
    pub event_ts: Option<i64>,
}

/// A row of `select_attempts`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct AttemptsCql {
    pub attempts: Option<i32>,
    pub attempts_ts: Option<i64>,
}

/// A row of `scan_dead_letters_*`. Every column is optional on the wire (CQL has no NOT
/// NULL); [`DeadLetterCql::into_entry`] refuses a row missing one instead of inventing it.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct DeadLetterCql {
    pub payment_id: i64,
    pub order_id: Option<i64>,
    pub payment_method: Option<String>,
    pub card_last_four: Option<String>,
    pub payment_status: Option<String>,
    pub payment_datetime: Option<String>,
    pub reason: Option<String>,
    pub first_seen: Option<CqlTimestamp>,
    pub attempts: Option<i32>,
    pub event_ts: Option<i64>,
}

impl DeadLetterCql {
    /// The entry, or `None` for a partial row. Only a write outside this program (or a
    /// delete racing a re-insert of the same payment at an older timestamp) leaves one.
    pub fn into_entry(self) -> Option<DlqEntry> {
        Some(DlqEntry {
            payment: Payment {
                payment_id: self.payment_id,
                order_id: self.order_id?,
                payment_method: self.payment_method?,
                card_last_four: self.card_last_four?,
                payment_status: self.payment_status?,
                payment_datetime: self.payment_datetime?,
            },
            reason: self.reason?,
            first_seen: cql_to_micros(self.first_seen?),
            attempts: self.attempts.unwrap_or(0),
            event_ts: self.event_ts?,
        })
    }
}

/// A row of `select_invalid_exists`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct InvalidExistsCql {
    pub message_id: String,
}

/// A row of `scan_invalid_*`.
#[derive(Debug, Clone, PartialEq, scylla::DeserializeRow)]
pub struct InvalidCql {
    pub source: String,
    pub message_id: String,
    pub payload: Option<Vec<u8>>,
    pub error: Option<String>,
    pub received_at: Option<CqlTimestamp>,
}

impl InvalidCql {
    pub fn into_message(self) -> Result<InvalidMessage, String> {
        Ok(InvalidMessage {
            source: self.source.parse::<Topic>()?,
            message_id: self.message_id,
            payload: bytes::Bytes::from(self.payload.unwrap_or_default()),
            error: self.error.unwrap_or_default(),
            received_at: self.received_at.map(cql_to_micros).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(all.len(), 17);
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
            source: Topic::Payments,
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
            source: Topic::Orders,
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
        assert!(
            cql[Stmt::ScanDeadLettersAfter].contains("WHERE token(payment_id) > token(?) LIMIT ?")
        );
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
            (Topic::Orders, 0, 2_000)
        );
        let bad = InvalidCql {
            source: "refunds".into(),
            ..inv
        };
        assert!(bad.into_message().is_err());
    }
}
