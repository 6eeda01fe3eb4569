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
//!
//! Files by job: [`schema`] (the tables), [`connection`] (opening, the read and write
//! transactions, error classification), [`facts`] (the fact sink, the read-through and
//! `query`), [`dead_letters`] (the DLQ tables).

mod connection;
mod dead_letters;
mod facts;
mod schema;

pub use connection::is_locked_elsewhere;

use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The database file inside the data dir.
pub const DB_FILE: &str = "ecom-stream.db";

/// How long a call waits for a lock held elsewhere (another process's writer, a WAL
/// checkpoint) before giving up with a retriable [`StoreError::Unavailable`](crate::store::StoreError::Unavailable).
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
    /// Committed fact writes that lost to a newer stored version (see
    /// [`FactSink::superseded_writes`](crate::store::FactSink::superseded_writes)).
    superseded: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("read_only", &self.inner.writer.is_none())
            .finish()
    }
}

/// A page size as SQLite's `LIMIT` (a `usize` beyond `i64` means "no limit" anyway).
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A text field binds as SQLite TEXT straight from its bytes, without a copy.
impl rusqlite::types::ToSql for crate::model::Text {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Text(self.as_bytes()),
        ))
    }
}

/// A text field reads back as TEXT, validated as UTF-8 like a `String`.
impl rusqlite::types::FromSql for crate::model::Text {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        String::column_result(value).map(crate::model::Text::from)
    }
}

#[cfg(test)]
mod tests {
    //! What the contract suite cannot reach: error classification under real lock
    //! contention, the pragmas actually in force, and a poisoned connection.

    use super::connection::classify;
    use super::*;
    use crate::model::Order;
    use crate::store::{FactReader, FactSink, FactWrite};

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
    fn outages_are_retriable_and_row_failures_are_not() {
        let err = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        // The store's state: busy, locked, full, read-only, I/O, cannot open.
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(classify("op", err(code)).is_retriable(), "code {code}");
        }
        // The call's or the data's fault: a trigger or constraint, a corrupt file.
        for code in [
            rusqlite::ffi::SQLITE_CONSTRAINT,
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_ERROR,
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
        // The longer WAL of issue 21 only where every commit is fsynced: under NORMAL the
        // WAL's length is what a power loss can take.
        for (sync, expected, pages) in [(SyncMode::Full, 2, 10_000), (SyncMode::Normal, 1, 1_000)] {
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
            let checkpoint: i64 = writer
                .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
                .expect("wal_autocheckpoint");
            assert_eq!((mode.as_str(), level), ("wal", expected));
            assert_eq!(checkpoint, pages, "{sync:?}");
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

    #[test]
    fn a_wal_side_file_that_cannot_be_written_fails_the_open_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("first open");
        // A `-shm` that cannot be opened for writing: a directory in its place, which fails
        // for every user (a read-only file would not stop root, who runs CI).
        let shm = dir.path().join(format!("{DB_FILE}-shm"));
        let _ = std::fs::remove_file(&shm);
        std::fs::create_dir(&shm).expect("a directory as -shm");
        let Err(e) = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()) else {
            panic!("an unwritable -shm must fail the open");
        };
        let text = e.chain();
        assert!(
            text.contains("-shm cannot be written") && text.contains("permissions"),
            "{text}"
        );
        assert!(!e.is_retriable(), "{text}");
    }
}
