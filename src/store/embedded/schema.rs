//! The embedded store's tables (design §3).
//!
//! Owns: the SQLite schema and the list of tables a store must have. Must never: drop or
//! alter data (it only creates what is missing).

/// The schema. The hidden `*_ts` columns carry each column group's write timestamp (µs),
/// which last-write-wins compares; `query` never prints them.
pub(super) const SCHEMA: &str = "
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS orders_payments_facts (
    order_id         INTEGER PRIMARY KEY,
    customer_id      INTEGER,
    item             TEXT,
    quantity         INTEGER,
    price            REAL,
    shipping_address TEXT,
    order_status     TEXT,
    creation_date    TEXT,
    payment_id       INTEGER,
    payment_method   TEXT,
    card_last_four   TEXT,
    payment_status   TEXT,
    payment_datetime TEXT,
    order_ts         INTEGER,
    payment_ts       INTEGER
);
CREATE TABLE IF NOT EXISTS dlq_payments (
    payment_id       INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL,
    payment_method   TEXT NOT NULL,
    card_last_four   TEXT NOT NULL,
    payment_status   TEXT NOT NULL,
    payment_datetime TEXT NOT NULL,
    reason           TEXT NOT NULL,
    first_seen       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL,
    event_ts         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS invalid_messages (
    source      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    payload     BLOB NOT NULL,
    error       TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, message_id)
);
COMMIT;
";

pub(super) const TABLES: [&str; 3] = ["orders_payments_facts", "dlq_payments", "invalid_messages"];
