//! The embedded store (design §6), the default: the three tables of §3 in one SQLite file,
//! `<data_dir>/ecom-stream.db`, with the semantics every store shares (see [`crate::store`]).
//!
//! Owns: the SQLite schema, the connections and every SQL statement of the local store.
//! Must never: weaken durability (no `journal_mode=OFF`/`MEMORY`, no `synchronous=OFF`, no
//! write outside a transaction), answer `Ok` to a write before its transaction committed,
//! block an async runtime thread on SQLite (every call runs in `spawn_blocking`), panic on
//! anything it reads or is given, or create a database when it was only asked to read one.
//!
//! Why SQLite: in WAL mode it allows one writer and any number of readers, including readers
//! in other processes, which design §6 requires so that `query` and `dlq list` work beside a running
//! `run` or `demo` (and `dlq replay` can write from another process, waiting its turn for the
//! lock). Each commit is atomic and crash-safe: a SIGKILL at any instant leaves the last
//! committed state, never a corrupt file, and with `synchronous=FULL` an acknowledged write
//! also survives power loss. There is no server to install, and the `bundled` feature
//! compiles SQLite into the binary, so no system library has to match. Its upsert
//! (`ON CONFLICT … DO UPDATE … WHERE`) states design §4.3's per-group last-write-wins in one
//! statement. The alternatives fall short: sled and redb lock their files to a single
//! process, and RocksDB admits other processes only as read-only/secondary instances and is
//! a long C++ build on 2 cores.

use crate::model::{Order, Payment, Topic};
use crate::store::{
    DeadLetterStore, DlqEntry, FactReader, FactRow, FactSink, FactWrite, InvalidMessage,
    OrderLookup, Page, Resolved, StoreError,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row};
use rusqlite::{Transaction, TransactionBehavior};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The database file inside the data dir.
pub const DB_FILE: &str = "ecom-stream.db";

/// How long a call waits for a lock held elsewhere (another process's writer, a WAL
/// checkpoint) before giving up with a retriable [`StoreError::Unavailable`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite's `synchronous` setting for the writer: how far a commit goes before `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=NORMAL`: the WAL is fsynced only at checkpoints. A commit survives a
    /// process crash (SIGKILL included) but the last commits may be lost on power loss or an
    /// OS crash. Faster; acks then promise less than design §4.4 asks.
    Normal,
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an acknowledged write
    /// survives power loss too. The default.
    #[default]
    Full,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    }
}

/// How [`EmbeddedStore::open`] sets up the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Durability of each commit: see [`SyncMode`].
    pub sync: SyncMode,
    /// Wait for a lock held by another connection before failing with `Unavailable`.
    pub busy_timeout: Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            sync: SyncMode::Full,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// The schema. The hidden `*_ts` columns carry each column group's write timestamp (µs),
/// which last-write-wins compares; `query` never prints them.
const SCHEMA: &str = "
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

const TABLES: [&str; 3] = ["orders_payments_facts", "dlq_payments", "invalid_messages"];

const UPSERT_ORDER: &str = "
INSERT INTO orders_payments_facts (order_id, customer_id, item, quantity, price,
    shipping_address, order_status, creation_date, order_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT(order_id) DO UPDATE SET
    customer_id = excluded.customer_id, item = excluded.item, quantity = excluded.quantity,
    price = excluded.price, shipping_address = excluded.shipping_address,
    order_status = excluded.order_status, creation_date = excluded.creation_date,
    order_ts = excluded.order_ts
WHERE orders_payments_facts.order_ts IS NULL
   OR excluded.order_ts >= orders_payments_facts.order_ts";

const UPSERT_PAYMENT: &str = "
INSERT INTO orders_payments_facts (order_id, payment_id, payment_method, card_last_four,
    payment_status, payment_datetime, payment_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT(order_id) DO UPDATE SET
    payment_id = excluded.payment_id, payment_method = excluded.payment_method,
    card_last_four = excluded.card_last_four, payment_status = excluded.payment_status,
    payment_datetime = excluded.payment_datetime, payment_ts = excluded.payment_ts
WHERE orders_payments_facts.payment_ts IS NULL
   OR excluded.payment_ts >= orders_payments_facts.payment_ts";

const FACT_COLUMNS: &str = "order_id, customer_id, item, quantity, price, shipping_address,
    order_status, creation_date, payment_id, payment_method, card_last_four, payment_status,
    payment_datetime";

const UPSERT_DEAD_LETTER: &str = "
INSERT INTO dlq_payments (payment_id, order_id, payment_method, card_last_four,
    payment_status, payment_datetime, reason, first_seen, attempts, event_ts)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
ON CONFLICT(payment_id) DO UPDATE SET
    order_id = excluded.order_id, payment_method = excluded.payment_method,
    card_last_four = excluded.card_last_four, payment_status = excluded.payment_status,
    payment_datetime = excluded.payment_datetime, reason = excluded.reason,
    event_ts = excluded.event_ts
WHERE excluded.event_ts >= dlq_payments.event_ts";

const DEAD_LETTER_COLUMNS: &str = "payment_id, order_id, payment_method, card_last_four,
    payment_status, payment_datetime, reason, first_seen, attempts, event_ts";

const INVALID_COLUMNS: &str = "source, message_id, payload, error, received_at";

/// The SQLite store. Clones share the same connections.
#[derive(Clone)]
pub struct EmbeddedStore {
    /// Shared with the blocking tasks that run the calls, which must own what they use.
    inner: Arc<Inner>,
}

struct Inner {
    /// The database file: every error names it, since several data dirs may be in use.
    path: PathBuf,
    /// The one connection that writes. SQLite admits one writer at a time anyway; holding
    /// it behind a mutex queues this process's writes here instead of in SQLITE_BUSY
    /// retries. `None` for a store from [`EmbeddedStore::open_reader`].
    writer: Option<Mutex<Connection>>,
    /// Reads use their own connection so that, under WAL, they never wait for a write in
    /// progress and always see the last commit.
    reader: Mutex<Connection>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("read_only", &self.inner.writer.is_none())
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir` for reading and writing.
    ///
    /// Blocks briefly (file creation, schema check): call it at start-up, not on a hot path.
    pub fn open(data_dir: &Path, opts: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::failed_from(format!("cannot create data dir {}", data_dir.display()), e)
        })?;
        let path = data_dir.join(DB_FILE);
        let ctx = |what: &str| format!("opening {} ({what})", path.display());

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer =
            Connection::open_with_flags(&path, flags).map_err(|e| classify(&ctx("open"), e))?;
        writer
            .busy_timeout(opts.busy_timeout)
            .map_err(|e| classify(&ctx("busy_timeout"), e))?;
        let mode: String = writer
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| classify(&ctx("journal_mode"), e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Without WAL, readers in other processes would block the writer and vice versa.
            return Err(StoreError::failed(format!(
                "{}: SQLite refused WAL mode (got {mode}); is the data dir on a network or \
                 read-only file system?",
                ctx("journal_mode")
            )));
        }
        writer
            .pragma_update(None, "synchronous", opts.sync.pragma())
            .map_err(|e| classify(&ctx("synchronous"), e))?;
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| classify(&ctx("creating tables"), e))?;

        let reader = open_read_connection(&path, opts.busy_timeout)?;
        tracing::info!(path = %path.display(), sync = ?opts.sync, "embedded store opened");
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer: Some(Mutex::new(writer)),
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Opens an existing store in `data_dir` for reading only (`query`, `dlq list`), also
    /// while another process writes to it. Writes through it fail. Never creates a database.
    pub fn open_reader(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(StoreError::failed(format!(
                "no embedded store at {}: nothing has written to this data dir yet \
                 (try `ecom-stream demo`, or set --data-dir / ECOM_DATA_DIR)",
                path.display()
            )));
        }
        let reader = open_read_connection(&path, DEFAULT_BUSY_TIMEOUT)?;
        let ctx = format!("opening {} (schema check)", path.display());
        for table in TABLES {
            let found: Option<i64> = reader
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| classify(&ctx, e))?;
            if found.is_none() {
                return Err(StoreError::failed(format!(
                    "{} is not an ecom-stream store: table {table} is missing",
                    path.display()
                )));
            }
        }
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer: None,
                reader: Mutex::new(reader),
            }),
        })
    }

    /// Runs `f` on the read connection in one read transaction (one consistent snapshot).
    async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(op, move || {
            let mut conn = lock(&inner.reader, op)?;
            let tx = conn.transaction().map_err(|e| classify(op, e))?;
            let out = f(&tx).map_err(|e| classify(op, e))?;
            // Read-only: dropping the transaction would roll back just as well, but an
            // explicit end surfaces errors.
            tx.commit().map_err(|e| classify(op, e))?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` on the write connection in one IMMEDIATE transaction: all of it commits or
    /// none of it does. IMMEDIATE takes the write lock up front, so contention with another
    /// process waits in the busy handler instead of failing mid-transaction.
    async fn write<F>(&self, op: &'static str, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<()> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        run_blocking(op, move || {
            let Some(writer) = inner.writer.as_ref() else {
                return Err(StoreError::failed(format!(
                    "{op}: {} was opened read-only",
                    inner.path.display()
                )));
            };
            let mut conn = lock(writer, op)?;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| classify(op, e))?;
            f(&tx).map_err(|e| classify(op, e))?;
            tx.commit().map_err(|e| classify(op, e))
        })
        .await
    }
}

/// A connection that reads an existing database: never creates one, refuses writes.
fn open_read_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let ctx = format!("opening {} for reading", path.display());
    // READ_WRITE rather than READ_ONLY: a WAL reader must be able to create the `-shm` index
    // when no writer is running. `query_only` forbids writes instead.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| classify(&ctx, e))?;
    conn.busy_timeout(busy_timeout)
        .map_err(|e| classify(&ctx, e))?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|e| classify(&ctx, e))?;
    Ok(conn)
}

/// Runs blocking SQLite work off the async runtime (current-thread runtimes included).
async fn run_blocking<T, F>(op: &'static str, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::failed_from(format!("{op}: blocking task failed"), e))?
}

fn lock<'a>(
    conn: &'a Mutex<Connection>,
    op: &str,
) -> Result<MutexGuard<'a, Connection>, StoreError> {
    conn.lock().map_err(|_| {
        StoreError::failed(format!(
            "{op}: connection unusable (an earlier call panicked while holding it)"
        ))
    })
}

/// Busy and locked mean another connection holds the lock right now: the same call may work
/// later. Anything else (I/O, full disk, corrupt file, bad schema) will not fix itself.
/// SQLite's error stays the source.
fn classify(op: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::unavailable_from(op, e)
        }
        _ => StoreError::failed_from(op, e),
    }
}

/// A page size as SQLite's `LIMIT` (a `usize` beyond `i64` means "no limit" anyway).
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn fact_row(row: &Row<'_>) -> rusqlite::Result<FactRow> {
    Ok(FactRow {
        order_id: row.get(0)?,
        customer_id: row.get(1)?,
        item: row.get(2)?,
        quantity: row.get(3)?,
        price: row.get(4)?,
        shipping_address: row.get(5)?,
        order_status: row.get(6)?,
        creation_date: row.get(7)?,
        payment_id: row.get(8)?,
        payment_method: row.get(9)?,
        card_last_four: row.get(10)?,
        payment_status: row.get(11)?,
        payment_datetime: row.get(12)?,
    })
}

fn dead_letter(row: &Row<'_>) -> rusqlite::Result<DlqEntry> {
    Ok(DlqEntry {
        payment: Payment {
            payment_id: row.get(0)?,
            order_id: row.get(1)?,
            payment_method: row.get(2)?,
            card_last_four: row.get(3)?,
            payment_status: row.get(4)?,
            payment_datetime: row.get(5)?,
        },
        reason: row.get(6)?,
        first_seen: row.get(7)?,
        attempts: row.get(8)?,
        event_ts: row.get(9)?,
    })
}

fn invalid_message(row: &Row<'_>) -> rusqlite::Result<InvalidMessage> {
    let source: String = row.get(0)?;
    let source: Topic = source.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(InvalidMessage {
        source,
        message_id: row.get(1)?,
        payload: bytes::Bytes::from(row.get::<_, Vec<u8>>(2)?),
        error: row.get(3)?,
        received_at: row.get(4)?,
    })
}

fn upsert_order(tx: &Transaction<'_>, o: &Order, ts: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(UPSERT_ORDER)?.execute(params![
        o.order_id,
        o.customer_id,
        o.item,
        o.quantity,
        o.price,
        o.shipping_address,
        o.order_status,
        o.creation_date,
        ts
    ])?;
    Ok(())
}

fn upsert_payment(tx: &Transaction<'_>, p: &Payment, ts: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(UPSERT_PAYMENT)?.execute(params![
        p.order_id,
        p.payment_id,
        p.payment_method,
        p.card_last_four,
        p.payment_status,
        p.payment_datetime,
        ts
    ])?;
    Ok(())
}

#[async_trait]
impl FactSink for EmbeddedStore {
    async fn write_facts(&self, writes: &[FactWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let writes = writes.to_vec();
        self.write("write_facts (orders_payments_facts)", move |tx| {
            for write in &writes {
                match write {
                    FactWrite::Order { order, ts } => upsert_order(tx, order, *ts)?,
                    FactWrite::Payment { payment, ts } => upsert_payment(tx, payment, *ts)?,
                }
            }
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl OrderLookup for EmbeddedStore {
    async fn known_orders(&self, order_ids: &[i64]) -> Result<HashSet<i64>, StoreError> {
        if order_ids.is_empty() {
            return Ok(HashSet::new());
        }
        // A prepared point lookup per id: each is a rowid seek, and it needs no SQL built
        // per call nor a cap on the number of ids.
        let ids: HashSet<i64> = order_ids.iter().copied().collect();
        self.read("known_orders (orders_payments_facts)", move |tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT 1 FROM orders_payments_facts WHERE order_id = ?1 AND order_ts IS NOT NULL",
            )?;
            let mut known = HashSet::new();
            for id in ids {
                if stmt.exists([id])? {
                    known.insert(id);
                }
            }
            Ok(known)
        })
        .await
    }
}

#[async_trait]
impl FactReader for EmbeddedStore {
    async fn fact(&self, order_id: i64) -> Result<Option<FactRow>, StoreError> {
        self.read("fact (orders_payments_facts)", move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {FACT_COLUMNS} FROM orders_payments_facts WHERE order_id = ?1"
            ))?
            .query_row([order_id], fact_row)
            .optional()
        })
        .await
    }

    async fn scan_facts(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<FactRow, i64>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_facts (orders_payments_facts)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some(after) => tx
                    .prepare_cached(&format!(
                        "SELECT {FACT_COLUMNS} FROM orders_payments_facts WHERE order_id > ?1 \
                         ORDER BY order_id LIMIT ?2"
                    ))?
                    .query_map(params![after, limit], fact_row)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {FACT_COLUMNS} FROM orders_payments_facts \
                         ORDER BY order_id LIMIT ?1"
                    ))?
                    .query_map([limit], fact_row)?
                    .collect(),
            }
        })
        .await
        .map(|rows| Page::of_rows(rows, limit, |r: &FactRow| r.order_id))
    }
}

#[async_trait]
impl DeadLetterStore for EmbeddedStore {
    async fn put_dead_letters(&self, entries: &[DlqEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write("put_dead_letters (dlq_payments)", move |tx| {
            let mut stmt = tx.prepare_cached(UPSERT_DEAD_LETTER)?;
            for e in &entries {
                let p = &e.payment;
                stmt.execute(params![
                    p.payment_id,
                    p.order_id,
                    p.payment_method,
                    p.card_last_four,
                    p.payment_status,
                    p.payment_datetime,
                    e.reason,
                    e.first_seen,
                    e.attempts,
                    e.event_ts
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn scan_dead_letters(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Page<DlqEntry, i64>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_dead_letters (dlq_payments)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some(after) => tx
                    .prepare_cached(&format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM dlq_payments WHERE payment_id > ?1 \
                         ORDER BY payment_id LIMIT ?2"
                    ))?
                    .query_map(params![after, limit], dead_letter)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM dlq_payments \
                         ORDER BY payment_id LIMIT ?1"
                    ))?
                    .query_map([limit], dead_letter)?
                    .collect(),
            }
        })
        .await
        .map(|rows| Page::of_rows(rows, limit, |e: &DlqEntry| e.payment.payment_id))
    }

    async fn delete_dead_letters(&self, resolved: &[Resolved]) -> Result<(), StoreError> {
        if resolved.is_empty() {
            return Ok(());
        }
        let resolved = resolved.to_vec();
        self.write("delete_dead_letters (dlq_payments)", move |tx| {
            let mut stmt = tx.prepare_cached(
                "DELETE FROM dlq_payments WHERE payment_id = ?1 AND event_ts = ?2",
            )?;
            for r in &resolved {
                stmt.execute([r.payment_id, r.event_ts])?;
            }
            Ok(())
        })
        .await
    }

    async fn bump_dead_letter_attempts(&self, payment_ids: &[i64]) -> Result<(), StoreError> {
        if payment_ids.is_empty() {
            return Ok(());
        }
        let ids = payment_ids.to_vec();
        self.write("bump_dead_letter_attempts (dlq_payments)", move |tx| {
            // Capped so that reading it back as an i32 can never fail.
            let mut stmt = tx.prepare_cached(
                "UPDATE dlq_payments SET attempts = MIN(attempts + 1, 2147483647) \
                 WHERE payment_id = ?1",
            )?;
            for id in &ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    async fn put_invalid(&self, entries: &[InvalidMessage]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let entries = entries.to_vec();
        self.write("put_invalid (invalid_messages)", move |tx| {
            // The first record of a message wins: a redelivery is the same message.
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO invalid_messages ({INVALID_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT(source, message_id) DO NOTHING"
            ))?;
            for e in &entries {
                stmt.execute(params![
                    e.source.as_str(),
                    e.message_id,
                    &e.payload[..],
                    e.error,
                    e.received_at
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn scan_invalid(
        &self,
        after: Option<(Topic, String)>,
        limit: usize,
    ) -> Result<Page<InvalidMessage, (Topic, String)>, StoreError> {
        if limit == 0 {
            return Ok(Page::last(Vec::new()));
        }
        self.read("scan_invalid (invalid_messages)", move |tx| {
            let limit = sql_limit(limit);
            match after {
                Some((source, message_id)) => tx
                    .prepare_cached(&format!(
                        "SELECT {INVALID_COLUMNS} FROM invalid_messages \
                         WHERE (source, message_id) > (?1, ?2) \
                         ORDER BY source, message_id LIMIT ?3"
                    ))?
                    .query_map(params![source.as_str(), message_id, limit], invalid_message)?
                    .collect(),
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {INVALID_COLUMNS} FROM invalid_messages \
                         ORDER BY source, message_id LIMIT ?1"
                    ))?
                    .query_map([limit], invalid_message)?
                    .collect(),
            }
        })
        .await
        .map(|rows| {
            Page::of_rows(rows, limit, |m: &InvalidMessage| {
                (m.source, m.message_id.clone())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    //! What the contract suite cannot reach: error classification under real lock
    //! contention, the pragmas actually in force, and a poisoned connection.

    use super::*;
    use crate::store::FactWrite;

    fn order(id: i64) -> FactWrite {
        FactWrite::Order {
            order: Order {
                order_id: id,
                customer_id: 1,
                item: "Laptop".into(),
                quantity: 1,
                price: 10.0,
                shipping_address: "1 Main St".into(),
                order_status: "Shipped".into(),
                creation_date: "2024-05-01 13:45:10".into(),
            },
            ts: 1,
        }
    }

    #[test]
    fn busy_and_locked_are_retriable_other_errors_are_not() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert!(classify("op", err(rusqlite::ffi::SQLITE_BUSY)).is_retriable());
        assert!(classify("op", err(rusqlite::ffi::SQLITE_LOCKED)).is_retriable());
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_READONLY,
        ] {
            let e = classify("write_facts (orders_payments_facts)", err(code));
            assert!(!e.is_retriable(), "{e}");
            assert!(e
                .to_string()
                .contains("write_facts (orders_payments_facts)"));
        }
        assert!(!classify("op", rusqlite::Error::QueryReturnedNoRows).is_retriable());
    }

    #[tokio::test]
    async fn a_write_blocked_by_another_process_lock_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = EmbeddedOptions {
            busy_timeout: Duration::from_millis(50),
            ..EmbeddedOptions::default()
        };
        let store = EmbeddedStore::open(dir.path(), opts).expect("open");
        // Another connection (as another process would) holds the write lock.
        let other = Connection::open(dir.path().join(DB_FILE)).expect("second connection");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");

        let err = store.write_facts(&[order(1)]).await.expect_err("locked");
        assert!(err.is_retriable(), "{err}");
        // Reads are not blocked by a writer under WAL.
        assert_eq!(store.fact(1).await.expect("read while locked"), None);

        other.execute_batch("COMMIT").expect("unlock");
        store
            .write_facts(&[order(1)])
            .await
            .expect("retry succeeds");
    }

    #[tokio::test]
    async fn a_batch_that_fails_part_way_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open");
        // No valid input makes an upsert fail, so a trigger plays the failing disk.
        let other = Connection::open(dir.path().join(DB_FILE)).expect("second connection");
        other
            .execute_batch(
                "CREATE TRIGGER fail_13 BEFORE INSERT ON orders_payments_facts \
                 WHEN NEW.order_id = 13 BEGIN SELECT RAISE(ABORT, 'injected'); END;",
            )
            .expect("trigger");

        let err = store
            .write_facts(&[order(1), order(13)])
            .await
            .expect_err("injected failure");
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("write_facts"), "{err}");
        assert_eq!(
            store.fact(1).await.expect("read"),
            None,
            "half a batch committed"
        );
    }

    #[test]
    fn pragmas_in_force_match_the_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (sync, expected) in [(SyncMode::Full, 2), (SyncMode::Normal, 1)] {
            let opts = EmbeddedOptions {
                sync,
                ..EmbeddedOptions::default()
            };
            let store = EmbeddedStore::open(dir.path(), opts).expect("open");
            let writer = store
                .inner
                .writer
                .as_ref()
                .expect("writer")
                .lock()
                .expect("lock");
            let mode: String = writer
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .expect("journal_mode");
            let level: i64 = writer
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .expect("synchronous");
            assert_eq!((mode.as_str(), level), ("wal", expected));
        }
    }

    #[tokio::test]
    async fn a_poisoned_connection_fails_instead_of_panicking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open");
        let inner = Arc::clone(&store.inner);
        let _ = std::thread::spawn(move || {
            let _guard = inner.writer.as_ref().map(|w| w.lock());
            panic!("poison the writer");
        })
        .join();
        let err = store.write_facts(&[order(1)]).await.expect_err("poisoned");
        assert!(!err.is_retriable());
        assert!(err.to_string().contains("panicked"), "{err}");
        // The read side has its own connection and still works.
        assert_eq!(store.fact(1).await.expect("read"), None);
    }
}
