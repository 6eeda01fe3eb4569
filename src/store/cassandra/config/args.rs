//! The Cassandra settings as given: [`CassandraArgs`], clap flags and the `[cassandra]`
//! table of the config file, and their checks.
//!
//! Owns: every default (written once, in the `#[arg]` attributes) and [`CassandraArgs::to_config`].
//! Must never: open a file other than to check that a TLS file exists, or show the password.

use super::parse::{bad, check_identifier, parse_consistency, parse_nodes, parse_replication};
use super::{CassandraConfig, Credentials, Secret, TlsFiles};
use crate::config::{de, parse_duration, ConfigError};
use clap::{ArgAction, Args};
use scylla::statement::Consistency;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// The Cassandra/ScyllaDB settings (design §5): the `[cassandra]` table of the config file,
/// whose keys are the flags without `--cassandra-`. As clap flags (for the tools and tests
/// that flatten them), each reads its `ECOM_CASSANDRA_*` variable; `ecom-stream` itself
/// layers the file, the variables and the flags through `config::layers` instead.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CassandraArgs {
    /// Contact points, comma-separated `host[:port]` (port 9042 if omitted).
    #[arg(
        long,
        env = "ECOM_CASSANDRA_NODES",
        default_value = "127.0.0.1:9042",
        global = true
    )]
    #[serde(rename = "nodes", with = "de::text")]
    pub cassandra_nodes: String,
    /// The local datacenter: requests go to its nodes first (DC-aware routing). Unset: all
    /// nodes are treated alike, which suits a single-DC cluster only.
    #[arg(long, env = "ECOM_CASSANDRA_LOCAL_DC", global = true)]
    #[serde(rename = "local_dc", with = "de::opt_text")]
    pub cassandra_local_dc: Option<String>,
    /// User for password authentication (needs --cassandra-password).
    #[arg(long, env = "ECOM_CASSANDRA_USERNAME", global = true)]
    #[serde(rename = "username", with = "de::opt_text")]
    pub cassandra_username: Option<String>,
    /// Password for --cassandra-username. Never printed or logged.
    #[arg(
        long,
        env = "ECOM_CASSANDRA_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    #[serde(rename = "password")]
    pub cassandra_password: Option<Secret>,
    /// PEM file of the CA that signed the nodes' certificates: turns TLS on.
    #[arg(long, env = "ECOM_CASSANDRA_TLS_CA", global = true)]
    #[serde(rename = "tls_ca", with = "de::opt_path")]
    pub cassandra_tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS (needs --cassandra-tls-key).
    #[arg(long, env = "ECOM_CASSANDRA_TLS_CERT", global = true)]
    #[serde(rename = "tls_cert", with = "de::opt_path")]
    pub cassandra_tls_cert: Option<PathBuf>,
    /// PEM private key of --cassandra-tls-cert.
    #[arg(long, env = "ECOM_CASSANDRA_TLS_KEY", global = true)]
    #[serde(rename = "tls_key", with = "de::opt_path")]
    pub cassandra_tls_key: Option<PathBuf>,
    /// Check that a node's certificate names its IP address. Node certificates often carry
    /// no IP SAN; `false` still checks the chain against --cassandra-tls-ca.
    #[arg(long, env = "ECOM_CASSANDRA_TLS_VERIFY_HOSTNAME", action = ArgAction::Set,
          default_value_t = true, global = true)]
    #[serde(rename = "tls_verify_hostname", with = "de::parsed")]
    pub cassandra_tls_verify_hostname: bool,
    /// Consistency level of writes (e.g. local_quorum, quorum, each_quorum, one).
    #[arg(
        long,
        env = "ECOM_CASSANDRA_WRITE_CONSISTENCY",
        default_value = "local_quorum",
        global = true
    )]
    #[serde(rename = "write_consistency", with = "de::text")]
    pub cassandra_write_consistency: String,
    /// Consistency level of reads (e.g. local_quorum, quorum, one).
    #[arg(
        long,
        env = "ECOM_CASSANDRA_READ_CONSISTENCY",
        default_value = "local_quorum",
        global = true
    )]
    #[serde(rename = "read_consistency", with = "de::text")]
    pub cassandra_read_consistency: String,
    /// Client-side timeout of one request (e.g. 10s). Keep it above the server's
    /// write/read timeouts (2 s/5 s by default) so the server's answer arrives first.
    #[arg(long, env = "ECOM_CASSANDRA_REQUEST_TIMEOUT", default_value = "10s",
          value_parser = parse_duration, global = true)]
    #[serde(rename = "request_timeout", with = "de::duration")]
    pub cassandra_request_timeout: Duration,
    /// Connections per node (per shard on ScyllaDB).
    #[arg(
        long,
        env = "ECOM_CASSANDRA_POOL_SIZE",
        default_value_t = 1,
        global = true
    )]
    #[serde(rename = "pool_size", with = "de::parsed")]
    pub cassandra_pool_size: usize,
    /// The keyspace of the three tables.
    #[arg(
        long,
        env = "ECOM_CASSANDRA_KEYSPACE",
        default_value = "ecom_store",
        global = true
    )]
    #[serde(rename = "keyspace", with = "de::text")]
    pub cassandra_keyspace: String,
    /// Keyspace replication for `setup`: `SimpleStrategy:RF` (one DC, local use) or
    /// `DC:RF[,DC:RF…]` (NetworkTopologyStrategy, production).
    #[arg(
        long,
        env = "ECOM_CASSANDRA_REPLICATION",
        default_value = "SimpleStrategy:1",
        global = true
    )]
    #[serde(rename = "replication", with = "de::text")]
    pub cassandra_replication: String,
    /// Requests this process has in flight at once against the cluster (all writers and
    /// readers together); each row is its own single-partition request.
    #[arg(
        long,
        env = "ECOM_CASSANDRA_MAX_IN_FLIGHT",
        default_value_t = 256,
        global = true
    )]
    #[serde(rename = "max_in_flight", with = "de::parsed")]
    pub cassandra_max_in_flight: usize,
    /// How long start-up keeps retrying nodes that do not answer (e.g. still booting).
    #[arg(long, env = "ECOM_CASSANDRA_CONNECT_WAIT", default_value = "60s",
          value_parser = parse_duration, global = true)]
    #[serde(rename = "connect_wait", with = "de::duration")]
    pub cassandra_connect_wait: Duration,
}
impl Default for CassandraArgs {
    /// The defaults of the `#[arg]` attributes above, read back by parsing no flags with no
    /// variable: the one place each default is written.
    fn default() -> Self {
        use clap::FromArgMatches;
        let cmd = CassandraArgs::augment_args(clap::Command::new("defaults"))
            .mut_args(|a| a.env(None::<&str>));
        let parsed = cmd
            .try_get_matches_from(["defaults"])
            .and_then(|m| CassandraArgs::from_arg_matches(&m));
        // Only a default that does not parse could fail here: no input reaches it, and the
        // unit test `defaults_are_valid_and_local` would.
        parsed.expect("the #[arg] defaults of CassandraArgs parse")
    }
}

impl CassandraArgs {
    /// Checks every setting; the first bad one comes back naming its flag and variable.
    pub fn to_config(&self) -> Result<CassandraConfig, ConfigError> {
        const NODES: &str = "--cassandra-nodes (ECOM_CASSANDRA_NODES)";
        const USER: &str = "--cassandra-username (ECOM_CASSANDRA_USERNAME)";
        const PASSWORD: &str = "--cassandra-password (ECOM_CASSANDRA_PASSWORD)";
        const CA: &str = "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)";
        const CERT: &str = "--cassandra-tls-cert (ECOM_CASSANDRA_TLS_CERT)";
        const KEY: &str = "--cassandra-tls-key (ECOM_CASSANDRA_TLS_KEY)";
        const LOCAL_DC: &str = "--cassandra-local-dc (ECOM_CASSANDRA_LOCAL_DC)";
        const WRITE_CL: &str = "--cassandra-write-consistency (ECOM_CASSANDRA_WRITE_CONSISTENCY)";
        const READ_CL: &str = "--cassandra-read-consistency (ECOM_CASSANDRA_READ_CONSISTENCY)";
        const TIMEOUT: &str = "--cassandra-request-timeout (ECOM_CASSANDRA_REQUEST_TIMEOUT)";
        const POOL: &str = "--cassandra-pool-size (ECOM_CASSANDRA_POOL_SIZE)";
        const KEYSPACE: &str = "--cassandra-keyspace (ECOM_CASSANDRA_KEYSPACE)";
        const REPLICATION: &str = "--cassandra-replication (ECOM_CASSANDRA_REPLICATION)";
        const IN_FLIGHT: &str = "--cassandra-max-in-flight (ECOM_CASSANDRA_MAX_IN_FLIGHT)";
        const WAIT: &str = "--cassandra-connect-wait (ECOM_CASSANDRA_CONNECT_WAIT)";

        let nodes = parse_nodes(&self.cassandra_nodes).map_err(|p| bad(NODES, p))?;
        let local_dc = match self.cassandra_local_dc.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(dc) if dc.contains(['\'', '"']) => {
                return Err(bad(LOCAL_DC, "must not contain quotes"))
            }
            Some(dc) => Some(dc.to_string()),
        };
        let credentials = match (&self.cassandra_username, &self.cassandra_password) {
            (None, None) => None,
            (Some(u), Some(p)) if !u.is_empty() => Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }),
            (Some(_), Some(_)) => return Err(bad(USER, "must not be empty")),
            (Some(_), None) => return Err(bad(PASSWORD, "is required with --cassandra-username")),
            (None, Some(_)) => return Err(bad(USER, "is required with --cassandra-password")),
        };
        let readable = |setting: &'static str, p: &PathBuf| -> Result<PathBuf, ConfigError> {
            if p.is_file() {
                Ok(p.clone())
            } else {
                Err(bad(
                    setting,
                    format!("{} is not a readable file", p.display()),
                ))
            }
        };
        let client = match (&self.cassandra_tls_cert, &self.cassandra_tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((readable(CERT, c)?, readable(KEY, k)?)),
            (Some(_), None) => return Err(bad(KEY, "is required with --cassandra-tls-cert")),
            (None, Some(_)) => return Err(bad(CERT, "is required with --cassandra-tls-key")),
        };
        let tls = match &self.cassandra_tls_ca {
            Some(ca) => Some(TlsFiles {
                ca: readable(CA, ca)?,
                client,
                verify_hostname: self.cassandra_tls_verify_hostname,
            }),
            None if client.is_some() => {
                return Err(bad(CA, "is required with a client certificate"))
            }
            None => None,
        };
        let write_consistency =
            parse_consistency(&self.cassandra_write_consistency).map_err(|p| bad(WRITE_CL, p))?;
        match write_consistency {
            Consistency::Any => {
                return Err(bad(
                    WRITE_CL,
                    "ANY acknowledges writes kept only as hints on a coordinator, which is not \
                     durable enough to ack a message (design §4.4)",
                ))
            }
            Consistency::Serial | Consistency::LocalSerial => {
                return Err(bad(
                    WRITE_CL,
                    "SERIAL levels are for reads and LWT conditions",
                ))
            }
            _ => {}
        }
        let read_consistency =
            parse_consistency(&self.cassandra_read_consistency).map_err(|p| bad(READ_CL, p))?;
        if matches!(read_consistency, Consistency::Any | Consistency::EachQuorum) {
            return Err(bad(READ_CL, "ANY and EACH_QUORUM are for writes only"));
        }
        let request_timeout = self.cassandra_request_timeout;
        if request_timeout.is_zero() || request_timeout > Duration::from_secs(600) {
            return Err(bad(TIMEOUT, "must be between 1ms and 10m"));
        }
        let pool_size = NonZeroUsize::new(self.cassandra_pool_size)
            .filter(|n| n.get() <= 64)
            .ok_or_else(|| bad(POOL, "must be between 1 and 64"))?;
        let keyspace = self.cassandra_keyspace.trim().to_string();
        check_identifier(&keyspace).map_err(|p| bad(KEYSPACE, p))?;
        let replication =
            parse_replication(&self.cassandra_replication).map_err(|p| bad(REPLICATION, p))?;
        if !(1..=65_536).contains(&self.cassandra_max_in_flight) {
            return Err(bad(IN_FLIGHT, "must be between 1 and 65536"));
        }
        if self.cassandra_connect_wait > Duration::from_secs(86_400) {
            return Err(bad(WAIT, "must not be longer than 1day"));
        }
        Ok(CassandraConfig {
            nodes,
            local_dc,
            credentials,
            tls,
            write_consistency,
            read_consistency,
            request_timeout,
            pool_size,
            keyspace,
            replication,
            max_in_flight: self.cassandra_max_in_flight,
            connect_wait: self.cassandra_connect_wait,
        })
    }
}
