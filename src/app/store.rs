//! Which store a command uses, and opening it.
//!
//! Owns: [`StoreConfig`] (the store settings once parsed) and [`open`], the one place a
//! store is chosen and opened, with the access the command needs, and [`open_waiting`], the
//! start of the long-running commands, which waits out a write lock another process holds.
//! Must never: create an embedded store for a command that only reads or changes an
//! existing one (a wrong `--data-dir` must say so, not look like an empty store), or wait
//! without saying so in one log line.

use crate::pubsub::binding::{label_value, StoreBinding};
use crate::shutdown::Shutdown;
use crate::store::cassandra::{CassandraConfig, CassandraStore};
use crate::store::embedded::{
    is_locked_elsewhere, EmbeddedOptions, EmbeddedStore, SyncMode, DEFAULT_BUSY_TIMEOUT,
};
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pause between two tries at a store whose lock another process holds (each try also
/// waits up to a second for the lock itself).
const LOCKED_RETRY: Duration = Duration::from_millis(500);

/// The store settings of design §5 (`--store`, `--data-dir`, `--sync`, `--cassandra-*`).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// SQLite under `data_dir`.
    Embedded { data_dir: PathBuf, sync: SyncMode },
    /// Apache Cassandra or ScyllaDB.
    Cassandra(Box<CassandraConfig>),
}

/// What the command does with the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Writes, creating the embedded store if there is none (`run`, `demo`, `setup`).
    Write,
    /// Writes to a store that must exist already (`dlq replay`).
    WriteExisting,
    /// Reads only (`query`, `dlq list`).
    Read,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Creating or opening the embedded store for writing failed.
    #[error("opening the embedded store in {}", .data_dir.display())]
    Embedded {
        data_dir: PathBuf,
        #[source]
        source: StoreError,
    },
    /// The store's own error names the problem and the place already (no embedded store at
    /// the path; a Cassandra connection or schema failure).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StoreConfig {
    /// Where rows go, for summaries: the directory, or the nodes and keyspace.
    pub fn label(&self) -> String {
        match self {
            StoreConfig::Embedded { data_dir, .. } => data_dir.display().to_string(),
            StoreConfig::Cassandra(c) => {
                format!("cassandra {} (keyspace {})", c.nodes.join(","), c.keyspace)
            }
        }
    }
}

impl StoreConfig {
    /// The identity `setup` binds subscriptions to and `run` checks them against
    /// ([`crate::pubsub::binding`]).
    ///
    /// Embedded: a hash of the directory's canonical path (a path does not fit a label).
    /// Cassandra: the keyspace, not the contact points: instances of one pipeline may list
    /// different nodes of the same cluster, and must still be seen as one store. Two
    /// clusters with the same keyspace name, or two machines with the same data directory
    /// path, look alike to it.
    pub fn binding(&self) -> StoreBinding {
        let label = match self {
            StoreConfig::Embedded { data_dir, .. } => {
                let path = std::fs::canonicalize(data_dir)
                    .or_else(|_| std::path::absolute(data_dir))
                    .unwrap_or_else(|_| data_dir.clone());
                let hash = fnv1a(path.as_os_str().as_encoded_bytes());
                label_value("embedded", &format!("{hash:016x}"))
            }
            StoreConfig::Cassandra(c) => label_value("cassandra", &c.keyspace),
        };
        StoreBinding {
            label,
            describe: self.label(),
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher promises neither), and
/// a label's worth of bits.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Opens the store of `config` for `access`.
///
/// Cassandra has no read-only mode to ask for and creates nothing by connecting, so every
/// access opens it the same way (opening prepares every statement, which fails when the
/// schema is missing).
pub async fn open(config: &StoreConfig, access: Access) -> Result<Arc<dyn Store>, OpenError> {
    match config {
        StoreConfig::Cassandra(c) => Ok(Arc::new(CassandraStore::open(c).await?)),
        StoreConfig::Embedded { data_dir, sync } => {
            open_embedded(data_dir, *sync, access, DEFAULT_BUSY_TIMEOUT)
        }
    }
}

/// The embedded store for `access`, trying again for up to `patience` while another
/// connection holds the lock (each try waits for it briefly). Blocking.
fn open_embedded(
    data_dir: &Path,
    sync: SyncMode,
    access: Access,
    patience: Duration,
) -> Result<Arc<dyn Store>, OpenError> {
    let started = Instant::now();
    loop {
        match open_embedded_once(data_dir, sync, access) {
            Err(OpenError::Embedded { source, .. })
                if is_locked_elsewhere(&source) && started.elapsed() < patience =>
            {
                std::thread::sleep(LOCKED_RETRY)
            }
            opened => return opened,
        }
    }
}

fn open_embedded_once(
    data_dir: &Path,
    sync: SyncMode,
    access: Access,
) -> Result<Arc<dyn Store>, OpenError> {
    if access != Access::Write {
        // Fails with the reader's clear "no embedded store at …" when there is none.
        let reader = EmbeddedStore::open_reader(data_dir)?;
        if access == Access::Read {
            return Ok(Arc::new(reader));
        }
    }
    let opts = EmbeddedOptions {
        sync,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open(data_dir, opts).map_err(|source| OpenError::Embedded {
        data_dir: data_dir.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(store))
}

/// As [`open`], but an embedded store whose write lock another process holds (a `BEGIN
/// IMMEDIATE` left open, a long `dlq replay`, a backup) is waited for: one WARN line when
/// the wait starts, one INFO line when it ends, `waiting(true)` and `waiting(false)` around
/// it (for a progress display), and nothing more however long it lasts. `Ok(None)`:
/// `shutdown` fired during the wait, and nothing was opened.
pub async fn open_waiting(
    config: &StoreConfig,
    access: Access,
    mut shutdown: Shutdown,
    waiting: impl Fn(bool),
) -> Result<Option<Arc<dyn Store>>, OpenError> {
    let mut since: Option<Instant> = None;
    loop {
        let error = match open_blocking(config, access).await {
            Ok(store) => {
                if let Some(since) = since {
                    waiting(false);
                    tracing::info!(
                        store = %config.label(),
                        waited_s = since.elapsed().as_secs(),
                        "the store's write lock was released: going on"
                    );
                }
                return Ok(Some(store));
            }
            Err(e) => e,
        };
        let locked = match &error {
            OpenError::Embedded { source, .. } | OpenError::Store(source) => {
                is_locked_elsewhere(source)
            }
        };
        if !locked {
            return Err(error);
        }
        if since.is_none() {
            since = Some(Instant::now());
            waiting(true);
            tracing::warn!(
                store = %config.label(),
                error = %error_line(&error),
                "the store is locked by another process: waiting for it (Ctrl-C stops)"
            );
        }
        tokio::select! {
            biased;
            _ = shutdown.wait() => {
                waiting(false);
                return Ok(None);
            }
            _ = tokio::time::sleep(LOCKED_RETRY) => {},
        }
    }
}

/// [`open`] off the async threads: opening the embedded store waits for its lock in
/// SQLite's busy handler.
async fn open_blocking(config: &StoreConfig, access: Access) -> Result<Arc<dyn Store>, OpenError> {
    match config {
        StoreConfig::Cassandra(_) => open(config, access).await,
        StoreConfig::Embedded { data_dir, sync } => {
            let (data_dir, sync) = (data_dir.clone(), *sync);
            // One try: the caller's loop waits, between tries, for a signal too.
            tokio::task::spawn_blocking(move || {
                open_embedded(&data_dir, sync, access, Duration::ZERO)
            })
            .await
            .map_err(|e| {
                OpenError::Store(StoreError::failed_from("opening the store: task failed", e))
            })?
        }
    }
}

/// The error and its sources on one line.
fn error_line(e: &OpenError) -> String {
    match e {
        OpenError::Embedded { source, .. } | OpenError::Store(source) => source.chain(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_names_the_directory_or_the_keyspace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let embedded = |p: &std::path::Path| StoreConfig::Embedded {
            data_dir: p.to_path_buf(),
            sync: SyncMode::Full,
        };
        let a = embedded(dir.path()).binding();
        assert!(a.label.starts_with("embedded-"), "{a:?}");
        // The same directory however it is written; another one differs.
        assert_eq!(embedded(&dir.path().join(".")).binding().label, a.label);
        assert_ne!(embedded(&dir.path().join("other")).binding().label, a.label);
        let mut c = CassandraConfig::local("127.0.0.1").expect("config");
        c.keyspace = "shop_prod".into();
        let b = StoreConfig::Cassandra(Box::new(c.clone())).binding();
        assert_eq!(b.label, "cassandra-shop_prod");
        c.nodes = vec!["127.0.0.2:9042".into()];
        assert_eq!(StoreConfig::Cassandra(Box::new(c)).binding().label, b.label);
    }
}
