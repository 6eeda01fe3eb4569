//! The storage seam (design §3, §6): the three tables every store keeps, and the rules every
//! store honours.
//!
//! Owns: the [`Store`] trait, its row types and its error type. Implementations:
//! [`memory`] (tests), [`embedded`] (the default, SQLite on local disk), [`cassandra`]
//! (production: Apache Cassandra 4/5 or ScyllaDB). Must never: hold pipeline logic. Stores
//! apply writes; the join decides what to write.
//!
//! The rules, tested by the shared contract suite (`tests/integration/store_contract.rs`):
//! - an order write sets only the order columns of its row, a payment write only the payment
//!   columns; either may create the row (a Cassandra upsert does);
//! - each column group carries the write timestamp (µs) of its last write, and a write with an
//!   older timestamp than the group's never replaces it (`USING TIMESTAMP` last-write-wins).
//!   An equal timestamp replaces in the local stores; Cassandra breaks such a tie per cell by
//!   the greater value, so two *different* writes of one group with the same timestamp may
//!   mix there. Equal timestamps come from the same message (a redelivery, same content), so
//!   only the local-store checks pin the tie;
//! - `first_seen` and `received_at` are kept to the millisecond at least (CQL `timestamp`);
//! - `dead_letters` hold at most one entry per `payment_id`; re-inserting keeps `first_seen`
//!   and `attempts`;
//! - every write is idempotent: applying it twice leaves the same rows.

pub mod cassandra;
pub mod embedded;
pub mod memory;

use crate::config::RetryPolicy;
use crate::model::{Order, Payment, Topic};
use crate::telemetry::Stats;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashSet;

/// One write to `orders_payments_facts`, stamped with its message's publish time.
#[derive(Debug, Clone, PartialEq)]
pub enum FactWrite {
    /// Upsert the order columns of row `order.order_id`.
    Order { order: Order, ts: i64 },
    /// Upsert the payment columns of row `payment.order_id`.
    Payment { payment: Payment, ts: i64 },
}

impl FactWrite {
    pub fn order_id(&self) -> i64 {
        match self {
            FactWrite::Order { order, .. } => order.order_id,
            FactWrite::Payment { payment, .. } => payment.order_id,
        }
    }
}

/// A row of `orders_payments_facts` as `query` prints it: the columns of design §3, with
/// `null` for a column group never written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FactRow {
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

impl FactRow {
    /// The row a store returns for an order-only write; tests build expectations from it.
    pub fn has_order(&self) -> bool {
        self.customer_id.is_some()
    }

    pub fn has_payment(&self) -> bool {
        self.payment_id.is_some()
    }
}

/// An unmatched payment in `dlq_payments`.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqEntry {
    pub payment: Payment,
    /// Why it is here: `order_not_found` from the pipeline.
    pub reason: String,
    /// When the pipeline first dead-lettered it (µs since the Unix epoch).
    pub first_seen: i64,
    /// How many replays found no order for it.
    pub attempts: i32,
    /// The payment message's publish time (µs): replay writes the payment with it, so a
    /// replayed payment never overwrites a newer one.
    pub event_ts: i64,
}

/// A dead letter that replay joined: which entry, and which version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub payment_id: i64,
    pub event_ts: i64,
}

/// A rejected message in `invalid_messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidMessage {
    pub source: Topic,
    pub message_id: String,
    /// The payload as received; `Bytes`, so a large one is shared, not copied, on its way.
    pub payload: bytes::Bytes,
    pub error: String,
    /// µs since the Unix epoch.
    pub received_at: i64,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is there but could not take the call now (busy, overloaded, timed out):
    /// the same call may succeed later.
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// The call cannot succeed as it is (bad data, broken schema, full disk, I/O error).
    #[error("store failure: {0}")]
    Failed(String),
}

impl StoreError {
    /// Whether the writer should retry the same call (with backoff).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The storage operations the pipeline, `dlq replay`, `query` and `dlq list` need.
///
/// Scans page by key: pass the last key of one page as `after` to get the next. The key
/// order is the store's own (ascending for the local stores, token order of the partition
/// key for Cassandra, where `after` means "after this key's token"); a full scan returns
/// every key exactly once either way.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `writes` (LWW per column group). `Ok` means every write is durable.
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError>;

    /// For stores whose rows are independent requests (Cassandra: one single-partition
    /// write per row): applies each write on its own, retrying it with `retry` (counting
    /// retries in `stats`), and returns one final outcome per write, in order. The fact
    /// writer then acks and nacks row by row and retries nothing itself, so attempts are
    /// never multiplied and one failing row never rewrites its batch.
    ///
    /// `None` (the default) means the store writes batches as a unit (one transaction): the
    /// writer then retries whole batches with [`Store::write_facts`] and isolates a
    /// failing row by writing the batch again row by row.
    async fn write_facts_per_row(
        &self,
        _writes: &[FactWrite],
        _retry: &RetryPolicy,
        _stats: &Stats,
    ) -> Option<Vec<Result<(), StoreError>>> {
        None
    }

    /// Of `order_ids`, those whose row has its order columns: the join's read-through.
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError>;

    /// One row of `orders_payments_facts`.
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError>;

    /// Up to `limit` rows after key `after`.
    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<FactRow>, StoreError>;

    /// Inserts dead letters (one entry per `payment_id`; see the module rules).
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError>;

    /// Up to `limit` dead letters after `payment_id` `after`.
    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DlqEntry>, StoreError>;

    /// Removes dead letters that replay resolved, each only if its `event_ts` is still the
    /// one replay read: a newer version of the payment dead-lettered meanwhile (and acked)
    /// must stay until a later pass joins it.
    async fn delete_dead_letters(&self, resolved: &[Resolved]) -> Result<(), StoreError>;

    /// Adds one to `attempts` of these dead letters (replay found no order for them).
    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError>;

    /// Records rejected messages (keyed by source and message id: idempotent).
    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError>;

    /// Up to `limit` invalid messages after key `after`.
    async fn scan_invalid(
        &self,
        after: Option<(Topic, String)>,
        limit: usize,
    ) -> Result<Vec<InvalidMessage>, StoreError>;
}
