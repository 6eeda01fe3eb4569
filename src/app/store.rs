//! Which store a command uses, and opening it.
//!
//! Owns: [`StoreConfig`] (the store settings once parsed) and [`open`], the one place a
//! store is chosen and opened, with the access the command needs. Must never: create an
//! embedded store for a command that only reads or changes an existing one (a wrong
//! `--data-dir` must say so, not look like an empty store).

use crate::pubsub::binding::{label_value, StoreBinding};
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
