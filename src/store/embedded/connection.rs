//! Opening the embedded store and running its calls: the write connection and the read
//! connection, one transaction per call, off the async runtime.
//!
//! Owns: [`EmbeddedStore::open`], [`EmbeddedStore::open_reader`], the read and write
//! transactions and what a SQLite error means (retriable or not). Must never: block an
//! async runtime thread, write outside a transaction, or create a database when only asked
//! to read one.

use super::schema::{SCHEMA, TABLES};
use super::{EmbeddedOptions, EmbeddedStore, Inner, SyncMode, DB_FILE, DEFAULT_BUSY_TIMEOUT};
use crate::store::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use rusqlite::{Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
        check_side_files_writable(&path)?;

        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let writer =
            Connection::open_with_flags(&path, flags).map_err(|e| classify(&ctx("open"), e))?;
        // Setting WAL on a new file and creating the tables take the write lock. Asked for
        // only briefly here: a command that should wait for a lock held elsewhere tries
        // again ([`is_locked_elsewhere`]), and a short try keeps it answering a signal
        // meanwhile. The full wait applies from then on.
        writer
            .busy_timeout(opts.busy_timeout.min(SCHEMA_LOCK_WAIT))
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
        // Each upsert dirties the page of its key; with SQLite's default 2 MiB cache a table
        // of more than a few thousand rows is read back from the kernel page by page at
        // every commit (9.6 KiB read per message at a steady 5,000 msg/s: issue 21).
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB)
            .map_err(|e| classify(&ctx("cache_size"), e))?;
        // Each upsert of a random key dirties its own page, which goes to the WAL at commit
        // and again to the database at the next checkpoint. With SQLite's default (a
        // checkpoint every 1,000 pages) nearly every page was copied once per write; a
        // longer WAL folds the writes of one page between two checkpoints into one copy
        // (10.4 against 7.2 KiB written per message at a steady 5,000 msg/s: issue 21).
        // Not under `synchronous=NORMAL`: there the WAL is fsynced only at checkpoints, so
        // its length is what a power loss can take of acknowledged writes.
        let checkpoint_pages = match opts.sync {
            SyncMode::Full => WAL_AUTOCHECKPOINT_PAGES,
            SyncMode::Normal => SQLITE_DEFAULT_AUTOCHECKPOINT_PAGES,
        };
        writer
            .pragma_update(None, "wal_autocheckpoint", checkpoint_pages)
            .map_err(|e| classify(&ctx("wal_autocheckpoint"), e))?;
        writer
            .execute_batch(SCHEMA)
            .map_err(|e| classify(&ctx("creating tables"), e))?;
        writer
            .busy_timeout(opts.busy_timeout)
            .map_err(|e| classify(&ctx("busy_timeout"), e))?;

        let reader = open_read_connection(&path, opts.busy_timeout)?;
        tracing::info!(path = %path.display(), sync = ?opts.sync, "embedded store opened");
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                writer: Some(Mutex::new(writer)),
                reader: Mutex::new(reader),
                superseded: Default::default(),
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
                superseded: Default::default(),
            }),
        })
    }

    /// Runs `f` on the read connection in one read transaction (one consistent snapshot).
    pub(super) async fn read<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
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
    /// process waits in the busy handler instead of failing mid-transaction. `f`'s value is
    /// returned once the transaction committed (e.g. which rows a delete removed).
    pub(super) async fn write<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
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
            let value = f(&tx).map_err(|e| classify(op, e))?;
            tx.commit().map_err(|e| classify(op, e))?;
            Ok(value)
        })
        .await
    }
}

/// The writer connection's page cache, in KiB, as SQLite's negative `cache_size` takes it:
/// 32 MiB, about 100,000 rows of the facts table.
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// Pages in the WAL before a commit folds them back into the database, under
/// `synchronous=FULL`: 10,000 pages, so the WAL file grows to about 40 MiB. It can grow
/// further while a long read in another process (`query`, `dlq list`) keeps the checkpoint
/// from reaching the WAL's end, and the file keeps its largest size until the last
/// connection closes.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// SQLite's own default (about 4 MiB of WAL), kept under `synchronous=NORMAL`.
const SQLITE_DEFAULT_AUTOCHECKPOINT_PAGES: i64 = 1_000;

/// How long one try at opening the store (WAL, the tables) waits for the write lock.
const SCHEMA_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Whether `e` says that another connection holds the lock (busy or locked), as opposed to
/// the other retriable states (a full disk, a read-only file): what a start may wait out.
pub fn is_locked_elsewhere(e: &StoreError) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(sqlite) = s.downcast_ref::<rusqlite::Error>() {
            return matches!(
                sqlite.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            );
        }
        source = s.source();
    }
    false
}

/// A connection that reads an existing database: never creates one, refuses writes.
/// Fails with a clear error when the WAL's side files exist and cannot be written. SQLite
/// maps `-shm` into memory: a read-only one (a `chmod`, a copy from a read-only backup) made
/// the process die of SIGBUS on its first write, with no log line at all, so it is refused
/// here, before SQLite touches it.
fn check_side_files_writable(db: &Path) -> Result<(), StoreError> {
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let side = std::path::PathBuf::from(name);
        if std::fs::symlink_metadata(&side).is_err() {
            continue; // absent: SQLite creates it
        }
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(&side) {
            return Err(StoreError::failed_from(
                format!(
                    "{} cannot be written: SQLite needs its WAL files writable by this                      process; fix their owner or permissions (or remove them while no                      process has the store open)",
                    side.display()
                ),
                e,
            ));
        }
    }
    Ok(())
}

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

/// Which SQLite errors are the store's state rather than the call's fault, so the same call
/// may work later: busy and locked (another connection holds the lock), a full disk (space
/// gets freed), a read-only database or file system (permissions get fixed, a volume gets
/// remounted), and I/O errors and "cannot open" (the same causes seen from the VFS). The
/// fact writer treats these as an outage: it holds its rows and pauses the intake instead
/// of failing them. Anything else (a constraint or trigger, a corrupt file, a bad schema)
/// is about the call or the data and will not fix itself. SQLite's error stays the source.
pub(super) fn classify(op: &str, e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen,
        ) => StoreError::unavailable_from(op, e),
        _ => StoreError::failed_from(op, e),
    }
}
