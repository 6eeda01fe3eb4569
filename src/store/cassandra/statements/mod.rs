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
//!
//! Files: this one holds the table of statements ([`STATEMENTS`]); [`values`] the bound
//! values, in the order of each statement's `?` markers; [`rows`] the decoded result rows.

mod rows;
mod values;

pub use rows::*;
pub use values::*;

/// The name of each statement. The one list of what the store sends is [`STATEMENTS`]; a
/// name is an index into it (and into [`Cql`] and the prepared statements built from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stmt {
    UpsertOrder,
    UpsertPayment,
    SelectFact,
    SelectFactStamped,
    SelectOrderKnown,
    ScanFactsFirst,
    ScanFactsAfter,
    SelectDeadLetterState,
    UpsertDeadLetter,
    ScanDeadLettersFirst,
    ScanDeadLettersAfter,
    SelectDeadLetter,
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
pub const STATEMENTS: [Statement; 19] = [
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
    // One row with each column group's write time (`query order --explain`): every cell of
    // a group is written by one `INSERT … USING TIMESTAMP`, so one column stands for it.
    Statement {
        name: Stmt::SelectFactStamped,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {FACT_COLUMNS}, WRITETIME(customer_id) AS order_ts, \
                 WRITETIME(payment_id) AS payment_ts FROM {} WHERE order_id = ?",
                t.facts
            )
        },
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
    // One dead letter (`query order --explain`).
    Statement {
        name: Stmt::SelectDeadLetter,
        access: Access::Read,
        cql: |t| {
            format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM {} WHERE payment_id = ?",
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

#[cfg(test)]
mod tests;
