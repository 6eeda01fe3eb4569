//! The Cassandra / ScyllaDB store (design §3, §6) on the `scylla` driver: the production
//! store, for data that outgrows one machine.
//!
//! Owns: [`CassandraStore`], the [`Store`](crate::store::Store) implementation: prepared
//! statements (prepared once, at open), concurrency bounded by one semaphore, per-row fact
//! writes. Must never: retry a fact write (the fact writer does, with its policy), send an
//! unprepared statement on the data path, batch across partitions,
//! answer `Ok` for a write the cluster did not acknowledge at the configured consistency,
//! or hold pipeline logic. It stays thin on purpose: nothing here can be tested without a
//! server except through the contract suite, so every decision that can be is made in a
//! unit-tested sibling:
//!
//! - [`config`]: flags → checked [`CassandraConfig`];
//! - [`session`]: connecting (routing, auth, TLS, waiting for a booting node);
//! - [`statements`]: CQL text, bound values, decoded rows;
//! - [`errors`]: retriable or not;
//! - [`decisions`]: what a dead-letter put or bump writes, scan plans, error choice;
//! - [`schema`]: `schema.cql` and `ecom-stream setup`;
//! - `dead_letters`: the dead-letter tables' half of the store (this file holds the facts').
//!
//! # Semantics, operation by operation
//!
//! - Fact writes: one `INSERT … USING TIMESTAMP <publish µs>` per row, order or payment
//!   columns only. Cassandra's per-cell last-write-wins is the design §4.3 rule.
//! - Scans page by partition token (`token(key) > token(?)`): each key exactly once, in
//!   token order. Two keys with the same 64-bit Murmur3 token would make a page boundary
//!   between them skip the second; that is possible in principle and ignored here.
//! - Dead letters: every cell of an entry is written at the payment's publish time
//!   (`event_ts`, read back as `WRITETIME(reason)`). A put reads the entry first to keep its
//!   `first_seen` and `attempts` (a read-before-write: two processes dead-lettering the same
//!   payment at once may both think it new; the one with the newer payment wins whole,
//!   which differs only in `first_seen`). The conditional delete is
//!   `DELETE … USING TIMESTAMP event_ts`: it removes exactly the cells of the version replay
//!   read (timestamps ≤ event_ts) and never a newer version's. Its tombstone also hides a
//!   later re-insert of that same or an older version, which is right: that payment was
//!   joined. What it removed is read just before it (`WRITETIME(reason)`): replay counts
//!   an entry only if it was there, so a replay that comes after another's delete counts
//!   nothing; two replays deleting the same entry in the same instant may both count it
//!   (telling them apart would take a lightweight transaction).
//! - `bump_dead_letter_attempts` reads `attempts` and its write time and writes
//!   `attempts + 1` at that same timestamp. Cassandra and ScyllaDB resolve equal
//!   timestamps by the greater value (unsigned byte order, which for a non-negative `int`
//!   is numeric order), so the bump wins over the old value, concurrent bumps converge to
//!   the largest (a lost increment, never a decrease), and the bumped cell still belongs to
//!   the version the conditional delete removes. A bump that races a re-put of a newer
//!   version can be lost the same way. `attempts` is a diagnostic count, never a decision
//!   input, so an occasional lost increment is accepted rather than paying for a
//!   lightweight transaction (which ScyllaDB tablets would also refuse).
//! - Invalid messages: the first record of a message wins, so a put looks the key up and
//!   inserts only when it is absent. Not `INSERT … IF NOT EXISTS`: ScyllaDB does not support
//!   lightweight transactions in keyspaces with tablets (its default for
//!   NetworkTopologyStrategy). Two processes recording the same message at the same instant
//!   may both insert; one record then wins whole, and a redelivered message has the same
//!   payload and error anyway. Scans go partition by partition (`orders`, then `payments`),
//!   in `message_id` order.

pub mod config;
mod dead_letters;
pub mod decisions;
pub mod errors;
pub mod schema;
pub mod session;
pub mod statements;

pub use config::{CassandraArgs, CassandraConfig};
pub use schema::{apply_schema, SchemaApplied};

use crate::store::{
    DlqEntry, FactReader, FactRow, FactSink, FactWrite, OrderLookup, Page, StampedFact, StoreError,
};
use async_trait::async_trait;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use statements::{Access, Cql, DeadLetterCql, FactCql, FactStampedCql, OrderKnownCql, Stmt};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The statements of [`statements::STATEMENTS`], prepared once at open, indexed by name.
#[derive(Debug)]
struct Prepared(Vec<PreparedStatement>);

impl std::ops::Index<Stmt> for Prepared {
    type Output = PreparedStatement;

    fn index(&self, name: Stmt) -> &PreparedStatement {
        // Prepared from the whole table, in its order: every name is in range.
        &self.0[name as usize]
    }
}

/// The Cassandra store. Share it behind an `Arc`; the session inside is one connection pool
/// per node for the whole process.
pub struct CassandraStore {
    session: Arc<Session>,
    prepared: Prepared,
    /// One permit per request in flight, across every call of this store: the bound of
    /// `--cassandra-max-in-flight`, so that many writers and a replay together cannot
    /// flood the cluster (and the driver's stream ids).
    in_flight: Arc<Semaphore>,
    /// The same bound, as the width of each call's concurrent stream.
    max_in_flight: usize,
    keyspace: String,
}

impl std::fmt::Debug for CassandraStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraStore")
            .field("keyspace", &self.keyspace)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

impl CassandraStore {
    /// Connects (waiting for booting nodes up to `--cassandra-connect-wait`) and prepares
    /// every statement. Fails with a hint to run `setup` when the schema is missing.
    pub async fn open(config: &CassandraConfig) -> Result<Self, StoreError> {
        let session = session::connect(config)
            .await
            .map_err(|e| StoreError::failed_from("connecting to Cassandra", e))?;
        Self::with_session(Arc::new(session), config).await
    }

    /// Prepares the statements on an existing session (tests and the load tool share one).
    pub async fn with_session(
        session: Arc<Session>,
        config: &CassandraConfig,
    ) -> Result<Self, StoreError> {
        let cql = Cql::new(&config.keyspace);
        let ks = config.keyspace.as_str();
        let mut prepared = Vec::with_capacity(statements::STATEMENTS.len());
        for (_, access, text) in cql.all() {
            let consistency = match access {
                Access::Read => config.read_consistency,
                Access::Write => config.write_consistency,
            };
            prepared.push(prepare(&session, ks, text, consistency).await?);
        }
        let prepared = Prepared(prepared);
        tracing::info!(keyspace = %config.keyspace, "Cassandra store ready: statements prepared");
        Ok(CassandraStore {
            session,
            prepared,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            max_in_flight: config.max_in_flight,
            keyspace: config.keyspace.clone(),
        })
    }

    /// The driver session (the load tool's raw-driver baseline uses the same one).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Runs one statement under a permit.
    async fn execute(
        &self,
        what: &'static str,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|e| StoreError::failed_from(format!("{what}: store closed"), e))?;
        self.session
            .execute_unpaged(stmt, values)
            .await
            .map_err(|e| errors::classify(what, &e))
    }

    /// Runs a query and decodes every row it returns.
    async fn rows<R>(
        &self,
        what: &'static str,
        stmt: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> DeserializeRow<'f, 'm>,
    {
        let result = self.execute(what, stmt, values).await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| StoreError::failed_from(what, e))?;
        rows.rows::<R>()
            .map_err(|e| StoreError::failed_from(what, e))?
            .collect::<Result<Vec<R>, _>>()
            .map_err(|e| StoreError::failed_from(what, e))
    }

    /// One fact write: one single-partition request.
    async fn write_one(&self, write: &FactWrite) -> Result<(), StoreError> {
        match write {
            FactWrite::Order { order, ts } => self
                .execute(
                    "write order (orders_payments_facts)",
                    &self.prepared[Stmt::UpsertOrder],
                    statements::order_values(order, *ts),
                )
                .await
                .map(drop),
            FactWrite::Payment { payment, ts } => self
                .execute(
                    "write payment (orders_payments_facts)",
                    &self.prepared[Stmt::UpsertPayment],
                    statements::payment_values(payment, *ts),
                )
                .await
                .map(drop),
        }
    }

    /// Runs the calls, at most `max_in_flight` at once, and returns the first error,
    /// preferring one that retrying cannot fix (so the caller does not retry what will fail
    /// again). The calls come as a `Vec` of not-yet-started futures rather than a lazy
    /// iterator: a closure inside the stream would make the `Send` check of the trait's
    /// boxed future fail on its higher-ranked lifetimes.
    async fn all_ok<Fut>(&self, calls: Vec<Fut>) -> Result<(), StoreError>
    where
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let results: Vec<Result<(), StoreError>> = stream::iter(calls)
            .buffer_unordered(self.max_in_flight)
            .collect()
            .await;
        decisions::first_error(results)
    }

    /// `Some(id)` if the row of `id` has its order columns.
    async fn order_known(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let rows: Vec<OrderKnownCql> = self
            .rows(
                "read order (orders_payments_facts)",
                &self.prepared[Stmt::SelectOrderKnown],
                (id,),
            )
            .await?;
        Ok(rows.first().and_then(|r| r.customer_id).map(|_| id))
    }
}

/// Prepares one statement: idempotent (every statement here may be repeated safely, so the
/// driver may retry or speculate), at the given consistency.
async fn prepare(
    session: &Session,
    keyspace: &str,
    cql: &str,
    consistency: Consistency,
) -> Result<PreparedStatement, StoreError> {
    let mut p = session
        .prepare(cql)
        .await
        .map_err(|e| errors::classify_prepare(cql, keyspace, &e))?;
    p.set_is_idempotent(true);
    p.set_consistency(consistency);
    Ok(p)
}

#[async_trait]
impl FactSink for CassandraStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        self.all_ok(writes.iter().map(|w| self.write_one(w)).collect())
            .await
    }

    async fn write_facts_per_row(
        &self,
        writes: &[FactWrite],
    ) -> Option<Vec<Result<(), StoreError>>> {
        // One try per row (the fact writer retries the failed ones); `buffered` keeps the
        // outcomes in row order.
        let calls: Vec<_> = writes.iter().map(|w| self.write_one(w)).collect();
        let outcomes = stream::iter(calls)
            .buffered(self.max_in_flight)
            .collect()
            .await;
        Some(outcomes)
    }
}

#[async_trait]
impl OrderLookup for CassandraStore {
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        let ids: Vec<i64> = order_ids
            .iter()
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        // One point read per id, concurrently: a multi-partition `IN` would make one
        // coordinator wait for every partition's replicas.
        let calls: Vec<_> = ids.into_iter().map(|id| self.order_known(id)).collect();
        stream::iter(calls)
            .buffer_unordered(self.max_in_flight)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }
}

#[async_trait]
impl FactReader for CassandraStore {
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError> {
        let rows: Vec<FactCql> = self
            .rows(
                "read fact (orders_payments_facts)",
                &self.prepared[Stmt::SelectFact],
                (order_id,),
            )
            .await?;
        Ok(rows.into_iter().next().map(FactRow::from))
    }

    async fn fact_with_timestamps(&self, order_id: i64) -> Result<Option<StampedFact>, StoreError> {
        let rows: Vec<FactStampedCql> = self
            .rows(
                "read fact with write times (orders_payments_facts)",
                &self.prepared[Stmt::SelectFactStamped],
                (order_id,),
            )
            .await?;
        Ok(rows.into_iter().next().map(StampedFact::from))
    }

    /// A partial row (written by something other than ecom-stream) is `None`, as scans skip
    /// it.
    async fn dead_letter(&self, payment_id: i64) -> Result<Option<DlqEntry>, StoreError> {
        let rows: Vec<DeadLetterCql> = self
            .rows(
                "read dead letter (dlq_payments)",
                &self.prepared[Stmt::SelectDeadLetter],
                (payment_id,),
            )
            .await?;
        Ok(rows.into_iter().next().and_then(DeadLetterCql::into_entry))
    }

    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        let what = "scan orders_payments_facts";
        let n = statements::cql_limit(limit);
        let rows: Vec<FactCql> = match after {
            None => {
                self.rows(what, &self.prepared[Stmt::ScanFactsFirst], (n,))
                    .await?
            }
            Some(a) => {
                self.rows(what, &self.prepared[Stmt::ScanFactsAfter], (a, n))
                    .await?
            }
        };
        // Partial rows (one column group only) are rows too: every row read is an item.
        let rows: Vec<FactRow> = rows.into_iter().map(FactRow::from).collect();
        Ok(Page::of_rows(rows, limit, |r| r.order_id))
    }
}
