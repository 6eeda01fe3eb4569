//! Which store a command uses, and opening it.
//!
//! Owns: [`StoreConfig`] (the store settings once parsed) and [`open`], the one place a
//! store is chosen and opened, with the access the command needs. Must never: create an
//! embedded store for a command that only reads or changes an existing one (a wrong
//! `--data-dir` must say so, not look like an empty store).

use crate::store::cassandra::{CassandraConfig, CassandraStore};
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore, SyncMode};
use crate::store::{Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

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

/// Opens the store of `config` for `access`.
///
/// Cassandra has no read-only mode to ask for and creates nothing by connecting, so every
/// access opens it the same way (opening prepares every statement, which fails when the
/// schema is missing).
pub async fn open(config: &StoreConfig, access: Access) -> Result<Arc<dyn Store>, OpenError> {
    match config {
        StoreConfig::Cassandra(c) => Ok(Arc::new(CassandraStore::open(c).await?)),
        StoreConfig::Embedded { data_dir, sync } => {
            if access != Access::Write {
                // Fails with the reader's clear "no embedded store at …" when there is none.
                let reader = EmbeddedStore::open_reader(data_dir)?;
                if access == Access::Read {
                    return Ok(Arc::new(reader));
                }
            }
            let opts = EmbeddedOptions {
                sync: *sync,
                ..EmbeddedOptions::default()
            };
            let store =
                EmbeddedStore::open(data_dir, opts).map_err(|source| OpenError::Embedded {
                    data_dir: data_dir.clone(),
                    source,
                })?;
            Ok(Arc::new(store))
        }
    }
}
