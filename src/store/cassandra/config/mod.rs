//! The Cassandra store's settings: [`CassandraArgs`] (the `[cassandra]` table of the layered
//! configuration, and clap flags with `ECOM_CASSANDRA_*` variables for tools and tests that
//! embed them) and the typed, validated [`CassandraConfig`] they become.
//!
//! Owns: their defaults (written once, in the `#[arg]` attributes: [`CassandraArgs::default`]
//! reads them back), and parsing and checking every Cassandra setting once, at start, with an
//! error that names the flag and its variable. Must never: open a connection (that is
//! `session.rs`), or print, log, serialize or `Debug`-format the password ([`Secret`]
//! redacts it).
//!
//! Here: the parsed, typed settings ([`CassandraConfig`] and its parts). Below: `args` (the
//! flags, the file's table and the checks that turn them into a config), `parse` (the
//! value syntaxes: nodes, consistency levels, identifiers, replication) and `secret`.

mod args;
mod parse;
mod secret;
#[cfg(test)]
mod tests;

pub use args::CassandraArgs;
pub use parse::{check_identifier, parse_consistency};
pub use secret::{Secret, REDACTED};

use crate::config::ConfigError;
use scylla::statement::Consistency;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// Username and password for the driver's plain-text authenticator.
#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// TLS to the nodes: the CA to trust, and optionally a client certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    /// Certificate chain and private key, for clusters that require client certificates.
    pub client: Option<(PathBuf, PathBuf)>,
    pub verify_hostname: bool,
}

/// Keyspace replication, as `setup` writes it into `CREATE KEYSPACE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// One datacenter (local use, tests): `SimpleStrategy` with this replication factor.
    Simple(u32),
    /// `NetworkTopologyStrategy` with a replication factor per datacenter.
    PerDc(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal of `WITH replication = …`.
    pub fn to_cql(&self) -> String {
        match self {
            Replication::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Replication::PerDc(dcs) => {
                let dcs: Vec<String> = dcs.iter().map(|(dc, rf)| format!("'{dc}': {rf}")).collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

/// Every Cassandra setting, checked. Built by [`CassandraArgs::to_config`].
#[derive(Debug, Clone, PartialEq)]
pub struct CassandraConfig {
    /// Contact points as `host:port`; the driver discovers the rest of the cluster.
    pub nodes: Vec<String>,
    pub local_dc: Option<String>,
    pub credentials: Option<Credentials>,
    pub tls: Option<TlsFiles>,
    pub write_consistency: Consistency,
    pub read_consistency: Consistency,
    pub request_timeout: Duration,
    pub pool_size: NonZeroUsize,
    /// A plain CQL identifier (checked), so it can be put into statement text as it is.
    pub keyspace: String,
    pub replication: Replication,
    pub max_in_flight: usize,
    pub connect_wait: Duration,
}

impl CassandraConfig {
    /// The defaults with these nodes: for tests and tools.
    pub fn local(nodes: &str) -> Result<Self, ConfigError> {
        CassandraArgs {
            cassandra_nodes: nodes.to_string(),
            ..CassandraArgs::default()
        }
        .to_config()
    }
}
