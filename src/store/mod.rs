//! The storage seam (design §3, §6): the three tables every store keeps, and the rules every
//! store honours.
//!
//! Owns: the store traits, cut along their callers ([`FactSink`], [`OrderLookup`],
//! [`FactReader`], [`DeadLetterStore`], and [`Store`], all of them), the [`Page`] rule of
//! every scan, the row types and the error type. Implementations:
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

use crate::model::{Order, Payment, StreamKind};
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
    /// Makes the row's text own its bytes: for a row kept for long (see
    /// [`Text::detached`](crate::model::Text::detached)).
    pub fn detach(&mut self) {
        match self {
            FactWrite::Order { order, .. } => order.detach(),
            FactWrite::Payment { payment, .. } => payment.detach(),
        }
    }

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

/// A row with the write timestamp (µs) of each column group: the publish time of the
/// message whose write won last-write-wins, `None` for a group never written. What
/// `query order --explain` reports; the pipeline never reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedFact {
    pub row: FactRow,
    pub order_ts: Option<i64>,
    pub payment_ts: Option<i64>,
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
pub struct ReplayedEntry {
    pub payment_id: i64,
    pub event_ts: i64,
}

/// A rejected message in `invalid_messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidMessage {
    pub source: StreamKind,
    pub message_id: String,
    /// The payload as received; `Bytes`, so a large one is shared, not copied, on its way.
    pub payload: bytes::Bytes,
    pub error: String,
    /// µs since the Unix epoch.
    pub received_at: i64,
}

/// The underlying error of a [`StoreError`]: the driver's, SQLite's, the runtime's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed: whether a retry can help, what the store was doing (`context`,
/// naming the operation and table), and the underlying error as the `source`, so that
/// `{:#}` with anyhow (and [`StoreError::chain`]) prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is there but could not take the call now (busy, overloaded, timed out):
    /// the same call may succeed later.
    #[error("store temporarily unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The call cannot succeed as it is (bad data, broken schema, full disk, I/O error).
    #[error("store failure: {context}")]
    Failed {
        context: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// A retriable error with no underlying error to carry.
    pub fn unavailable(context: impl Into<String>) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// A retriable error caused by `source`.
    pub fn unavailable_from(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A lasting error with no underlying error to carry.
    pub fn failed(context: impl Into<String>) -> Self {
        StoreError::Failed {
            context: context.into(),
            source: None,
        }
    }

    /// A lasting error caused by `source`.
    pub fn failed_from(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Failed {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// Whether the writer should retry the same call (with backoff).
    pub fn is_retriable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// What the store was doing.
    pub fn context(&self) -> &str {
        match self {
            StoreError::Unavailable { context, .. } | StoreError::Failed { context, .. } => context,
        }
    }

    /// The error and its sources on one line, `: `-separated (as anyhow's `{:#}`): for
    /// logs, where the bare `Display` would drop the underlying error.
    pub fn chain(&self) -> String {
        crate::retry::chain(self)
    }
}

impl crate::retry::Retriable for StoreError {
    fn is_retriable(&self) -> bool {
        StoreError::is_retriable(self)
    }
}

/// One page of a scan, and where the next one starts.
///
/// The end of a scan is defined here, once, for every store and every caller: **`next ==
/// None` means the scan is complete**; `Some(key)` means more may follow, and the caller
/// asks again with `after = key`. The length of `items` says nothing about the end: a page
/// may be short, or even empty, with `Some(next)` (Cassandra's token scan skips partial
/// rows and walks partition by partition), and a full page may be the last one. Callers
/// loop on `next`, never on the page's length.
///
/// The key order is the store's own (ascending for the local stores, token order of the
/// partition key for Cassandra, where `after` means "after this key's token"); a full scan
/// returns every key exactly once either way. A scan with `limit == 0` asks for nothing and
/// gets an empty page with `next == None`: it is not a way to page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    /// Where the next page starts (pass as `after`); `None` when the scan is complete.
    pub next: Option<K>,
}

impl<T, K> Page<T, K> {
    /// The last page: nothing follows.
    pub fn last(items: Vec<T>) -> Self {
        Page { items, next: None }
    }

    /// A page of a store that reads `limit` keys in key order: `read` rows were read
    /// (skipped ones included), the last of them `last_key`. A read that came back short of `limit` reached the end.
    pub fn after_read(items: Vec<T>, read: usize, limit: usize, last_key: Option<K>) -> Self {
        let next = if limit > 0 && read >= limit {
            last_key
        } else {
            None
        };
        Page { items, next }
    }

    /// [`Page::after_read`] for a read that skips nothing: every row read is an item.
    pub fn of_rows(items: Vec<T>, limit: usize, key: impl Fn(&T) -> K) -> Self {
        let last = items.last().map(key);
        let read = items.len();
        Page::after_read(items, read, limit, last)
    }
}

/// The hot path: where the fact writer puts joined rows (and replay its payments).
#[async_trait]
pub trait FactSink: Send + Sync + 'static {
    /// Applies `writes` as one unit (LWW per column group). `Ok` means every write is
    /// durable.
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError>;

    /// For stores whose rows are independent requests (Cassandra: one single-partition
    /// write per row): applies each write on its own, once, and returns one outcome per
    /// write, in order. The store never retries: the fact writer retries the rows that
    /// failed retriably with its own policy, so attempts are never multiplied, and one
    /// failing row never rewrites its batch.
    ///
    /// `None` (the default) means the store writes batches as a unit (one transaction): the
    /// writer then retries whole batches with [`FactSink::write_facts`] and isolates a
    /// failing row by writing the batch again row by row.
    async fn write_facts_per_row(
        &self,
        _writes: &[FactWrite],
    ) -> Option<Vec<Result<(), StoreError>>> {
        None
    }

    /// Of the writes this store committed since it was opened, those that changed nothing
    /// because the stored version was newer (last-write-wins kept it): what `ingest`
    /// reports as `superseded` rather than as written. `None` (the default): the store
    /// cannot tell (Cassandra accepts a write with an older timestamp and shadows it).
    fn superseded_writes(&self) -> Option<u64> {
        None
    }
}

/// The join's read-through.
#[async_trait]
pub trait OrderLookup: Send + Sync + 'static {
    /// Of `order_ids`, those whose row has its order columns.
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError>;
}

/// `query`: reads of `orders_payments_facts`, and the point read of a dead letter that
/// `query order --explain` adds to a row.
#[async_trait]
pub trait FactReader: Send + Sync + 'static {
    /// One row of `orders_payments_facts`.
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError>;

    /// One row with its column groups' write timestamps (see [`StampedFact`]).
    async fn fact_with_timestamps(&self, order_id: i64) -> Result<Option<StampedFact>, StoreError>;

    /// The dead letter of `payment_id` in `dlq_payments`, if there is one now. A read for
    /// one answer, not for the pipeline: `dlq_payments` keeps no history, so `None` cannot
    /// tell "never dead-lettered" from "replayed and removed".
    async fn dead_letter(&self, payment_id: i64) -> Result<Option<DlqEntry>, StoreError>;

    /// Up to `limit` rows after key `after` (see [`Page`] for where the scan ends).
    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError>;
}

/// The dead-letter tables: `dlq_payments` and `invalid_messages`, for the dead-letter
/// actor, `dlq replay` and `dlq list`.
#[async_trait]
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Inserts dead letters (one entry per `payment_id`; see the module rules).
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError>;

    /// Up to `limit` dead letters after `payment_id` `after` (see [`Page`]).
    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError>;

    /// Removes dead letters that replay resolved, each only if its `event_ts` is still the
    /// one replay read: a newer version of the payment dead-lettered meanwhile (and acked)
    /// must stay until a later pass joins it.
    ///
    /// Returns the payment ids of the entries this call removed, and only those: an entry
    /// already gone (another replay removed it) or replaced by a newer version is not
    /// named, so two replays at once count each resolved entry once.
    async fn delete_dead_letters(&self, resolved: &[ReplayedEntry])
        -> Result<Vec<i64>, StoreError>;

    /// Adds one to `attempts` of these dead letters (replay found no order for them).
    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError>;

    /// Records rejected messages (keyed by source and message id: idempotent).
    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError>;

    /// Up to `limit` invalid messages after key `after` (see [`Page`]).
    async fn scan_invalid(
        &self,
        after: Option<(StreamKind, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (StreamKind, String)>, StoreError>;
}

/// What the pipeline and `dlq replay` write through: the fact sink, the read-through and
/// the dead letters (everything but the query reads).
pub trait PipelineStore: FactSink + OrderLookup + DeadLetterStore {}

impl<S: FactSink + OrderLookup + DeadLetterStore + ?Sized> PipelineStore for S {}

/// Every table at once: what the wiring opens and hands around as one `Arc`. Each consumer
/// takes the narrowest trait it needs (an `Arc<dyn Store>` coerces to any of them).
pub trait Store: PipelineStore + FactReader {}

impl<S: PipelineStore + FactReader + ?Sized> Store for S {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_keeps_its_context_and_source_apart_and_prints_the_chain() {
        let io = std::io::Error::other("disk full");
        let e = StoreError::failed_from("write_facts (orders_payments_facts)", io);
        assert!(!e.is_retriable());
        assert_eq!(e.context(), "write_facts (orders_payments_facts)");
        assert_eq!(
            e.to_string(),
            "store failure: write_facts (orders_payments_facts)"
        );
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk full"));
        let expected = "store failure: write_facts (orders_payments_facts): disk full";
        assert_eq!(e.chain(), expected);
        assert_eq!(format!("{:#}", anyhow::Error::from(e)), expected);

        let busy = StoreError::unavailable("busy");
        assert!(busy.is_retriable());
        assert_eq!(busy.chain(), "store temporarily unavailable: busy");
    }

    #[test]
    fn a_page_ends_only_without_next() {
        let full: Page<i64, i64> = Page::of_rows(vec![1, 2, 3], 3, |k| *k);
        assert_eq!(full.next, Some(3), "a full page may have more after it");
        let short: Page<i64, i64> = Page::of_rows(vec![1, 2], 3, |k| *k);
        assert_eq!(
            short.next, None,
            "a read short of the limit reached the end"
        );
        // Two rows read and skipped: an empty page that is not the end.
        let skipped: Page<i64, i64> = Page::after_read(Vec::new(), 2, 2, Some(9));
        assert_eq!(
            skipped,
            Page {
                items: vec![],
                next: Some(9)
            }
        );
        let nothing: Page<i64, i64> = Page::of_rows(Vec::new(), 0, |k| *k);
        assert_eq!(nothing.next, None);
    }
}
