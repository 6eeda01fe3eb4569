//! The Cassandra store's settings: [`CassandraArgs`] (the `[cassandra]` table of the layered
//! configuration, and clap flags with `ECOM_CASSANDRA_*` variables for tools and tests that
//! embed them) and the typed, validated [`CassandraConfig`] they become.
//!
//! Owns: their defaults (written once, in the `#[arg]` attributes: [`CassandraArgs::default`]
//! reads them back), and parsing and checking every Cassandra setting once, at start, with an
//! error that names the flag and its variable. Must never: open a connection (that is
//! `session.rs`), or print, log, serialize or `Debug`-format the password ([`Secret`]
//! redacts it).

use crate::config::{de, parse_duration, ConfigError};
use clap::{ArgAction, Args};
use scylla::statement::Consistency;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must never reach a log line, an error or `--help` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// What `ecom-stream config` shows for a password that is set.
pub const REDACTED: &str = "<redacted>";

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(de::Text).map(Secret)
    }
}

/// The Cassandra/ScyllaDB settings (design §5): the `[cassandra]` table of the config file,
/// whose keys are the flags without `--cassandra-`. As clap flags (for the tools and tests
/// that flatten them), each reads its `ECOM_CASSANDRA_*` variable; `ecom-stream` itself
/// layers the file, the variables and the flags through `config_file.rs` instead.
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
    #[serde(rename = "tls_ca")]
    pub cassandra_tls_ca: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS (needs --cassandra-tls-key).
    #[arg(long, env = "ECOM_CASSANDRA_TLS_CERT", global = true)]
    #[serde(rename = "tls_cert")]
    pub cassandra_tls_cert: Option<PathBuf>,
    /// PEM private key of --cassandra-tls-cert.
    #[arg(long, env = "ECOM_CASSANDRA_TLS_KEY", global = true)]
    #[serde(rename = "tls_key")]
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

/// The error for one setting: "invalid setting --flag (ECOM_VAR): problem".
fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
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

/// `host[:port]` items, comma-separated; a missing port is 9042. IPv6 needs brackets.
fn parse_nodes(s: &str) -> Result<Vec<String>, String> {
    let mut nodes = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (host, port) = if let Some(rest) = item.strip_prefix('[') {
            let (addr, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{item:?}: missing ]"))?;
            let port = match after {
                "" => "9042",
                p => p
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{item:?}: expected [addr]:port"))?,
            };
            (format!("[{addr}]"), port)
        } else if item.matches(':').count() > 1 {
            return Err(format!("{item:?}: write an IPv6 address as [addr]:port"));
        } else {
            match item.split_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (item.to_string(), "9042"),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(format!("{item:?} has no host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{item:?} has an invalid port (expected 1-65535)"))?;
        nodes.push(format!("{host}:{port}"));
    }
    if nodes.is_empty() {
        return Err("names no node (expected host[:port], comma-separated)".into());
    }
    Ok(nodes)
}

/// A consistency level by its CQL name, any case, `_` or `-` optional (`LOCAL_QUORUM`,
/// `local-quorum`, `localquorum`).
pub fn parse_consistency(s: &str) -> Result<Consistency, String> {
    let norm: String = s
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    Ok(match norm.as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "localquorum" => Consistency::LocalQuorum,
        "eachquorum" => Consistency::EachQuorum,
        "localone" => Consistency::LocalOne,
        "serial" => Consistency::Serial,
        "localserial" => Consistency::LocalSerial,
        _ => {
            return Err(format!(
                "unknown consistency level {s:?} (expected one of: one, two, three, quorum, \
                 all, local_quorum, each_quorum, local_one)"
            ))
        }
    })
}

/// A keyspace name Cassandra accepts unquoted: letters, digits and `_`, starting with a
/// letter, at most 48 characters. Unquoted names are case-insensitive in CQL, so only
/// lower case is accepted, to mean exactly what `cqlsh` shows.
pub fn check_identifier(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a keyspace name (lower-case letters, digits and _, starting with a \
             letter, at most 48 characters)"
        ))
    }
}

/// `SimpleStrategy:RF` or `DC:RF[,DC:RF…]`.
fn parse_replication(s: &str) -> Result<Replication, String> {
    let rf = |item: &str, v: &str| -> Result<u32, String> {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|rf| (1..=32).contains(rf))
            .ok_or_else(|| format!("{item:?}: the replication factor must be 1..=32"))
    };
    let s = s.trim();
    if let Some((class, v)) = s.split_once(':') {
        if class.trim().eq_ignore_ascii_case("SimpleStrategy") {
            return Ok(Replication::Simple(rf(s, v)?));
        }
    }
    let mut dcs = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (dc, v) = item
            .split_once(':')
            .ok_or_else(|| format!("{item:?}: expected DC:RF or SimpleStrategy:RF"))?;
        let dc = dc.trim();
        if dc.is_empty() || dc.contains(['\'', '"', '{', '}']) {
            return Err(format!("{item:?}: invalid datacenter name"));
        }
        if dcs.iter().any(|(d, _)| d == dc) {
            return Err(format!("datacenter {dc:?} is named twice"));
        }
        dcs.push((dc.to_string(), rf(item, v)?));
    }
    if dcs.is_empty() {
        return Err("is empty (expected SimpleStrategy:RF or DC:RF[,DC:RF…])".into());
    }
    Ok(Replication::PerDc(dcs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CassandraArgs,
    }

    /// Parses flags only: the `ECOM_CASSANDRA_*` variables of whoever runs the tests (set,
    /// say, for the live suite) must not change what these tests see.
    fn cli(argv: &[&str]) -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        let mut full = vec!["test"];
        full.extend_from_slice(argv);
        let cmd = Cli::command().mut_args(|a| a.env(None::<&str>));
        let matches = cmd.try_get_matches_from(full).expect("clap parse");
        Cli::from_arg_matches(&matches).expect("clap parse")
    }

    fn parse(argv: &[&str]) -> Result<CassandraConfig, ConfigError> {
        cli(argv).args.to_config()
    }

    fn setting(argv: &[&str]) -> &'static str {
        parse(argv).expect_err("should be refused").setting
    }

    #[test]
    fn defaults_are_valid_and_local() {
        // Env vars of the developer's shell must not leak in: build from Default.
        let c = CassandraArgs::default().to_config().expect("defaults");
        assert_eq!(c.nodes, ["127.0.0.1:9042"]);
        assert_eq!(c.write_consistency, Consistency::LocalQuorum);
        assert_eq!(c.read_consistency, Consistency::LocalQuorum);
        assert_eq!(c.keyspace, "ecom_store");
        assert_eq!(c.replication, Replication::Simple(1));
        assert_eq!(c.tls, None);
        assert_eq!(c.credentials, None);
    }

    #[test]
    fn nodes_parse_with_default_port_and_reject_nonsense() {
        let nodes = |s: &str| parse_nodes(s);
        assert_eq!(
            nodes("a, b:9043,10.0.0.1,[::1]:9042,[::1]").expect("ok"),
            [
                "a:9042",
                "b:9043",
                "10.0.0.1:9042",
                "[::1]:9042",
                "[::1]:9042"
            ]
        );
        assert!(nodes("").is_err());
        assert!(nodes(" , ").is_err());
        assert!(nodes("a:0").is_err());
        assert!(nodes("a:99999").is_err());
        assert!(nodes("a:x").is_err());
        assert!(nodes(":9042").is_err());
        assert!(nodes("::1").is_err());
        let e = parse(&["--cassandra-nodes", "a:x"]).expect_err("bad port");
        assert!(
            e.to_string()
                .starts_with("invalid setting --cassandra-nodes (ECOM_CASSANDRA_NODES):"),
            "{e}"
        );
    }

    #[test]
    fn consistency_levels_parse_in_any_spelling_and_bad_ones_are_named() {
        for s in [
            "LOCAL_QUORUM",
            "local_quorum",
            "local-quorum",
            "LocalQuorum",
        ] {
            assert_eq!(parse_consistency(s), Ok(Consistency::LocalQuorum));
        }
        assert_eq!(
            parse_consistency("each_quorum"),
            Ok(Consistency::EachQuorum)
        );
        assert_eq!(parse_consistency("ONE"), Ok(Consistency::One));
        assert!(parse_consistency("most").is_err());
        assert_eq!(
            setting(&["--cassandra-write-consistency", "any"]),
            "--cassandra-write-consistency (ECOM_CASSANDRA_WRITE_CONSISTENCY)"
        );
        assert_eq!(
            setting(&["--cassandra-write-consistency", "serial"]),
            "--cassandra-write-consistency (ECOM_CASSANDRA_WRITE_CONSISTENCY)"
        );
        assert_eq!(
            setting(&["--cassandra-read-consistency", "each_quorum"]),
            "--cassandra-read-consistency (ECOM_CASSANDRA_READ_CONSISTENCY)"
        );
        let c = parse(&["--cassandra-write-consistency", "quorum"]).expect("ok");
        assert_eq!(c.write_consistency, Consistency::Quorum);
    }

    #[test]
    fn credentials_come_in_pairs_and_the_password_never_shows() {
        assert_eq!(
            setting(&["--cassandra-username", "u"]),
            "--cassandra-password (ECOM_CASSANDRA_PASSWORD)"
        );
        assert_eq!(
            setting(&["--cassandra-password", "p"]),
            "--cassandra-username (ECOM_CASSANDRA_USERNAME)"
        );
        let c = parse(&[
            "--cassandra-username",
            "u",
            "--cassandra-password",
            "hunter2",
        ])
        .expect("ok");
        let creds = c.credentials.clone().expect("credentials");
        assert_eq!(creds.password.expose(), "hunter2");
        for text in [format!("{c:?}"), format!("{creds:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        let args = cli(&["--cassandra-password", "hunter2"]).args;
        assert!(!format!("{args:?}").contains("hunter2"));
    }

    #[test]
    fn tls_files_must_exist_and_pair_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").expect("write");
        let ca = ca.to_str().expect("utf8");
        let missing = dir.path().join("nope.pem");
        let missing = missing.to_str().expect("utf8");
        assert_eq!(
            setting(&["--cassandra-tls-ca", missing]),
            "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)"
        );
        assert_eq!(
            setting(&["--cassandra-tls-ca", ca, "--cassandra-tls-cert", ca]),
            "--cassandra-tls-key (ECOM_CASSANDRA_TLS_KEY)"
        );
        assert_eq!(
            setting(&["--cassandra-tls-cert", ca, "--cassandra-tls-key", ca]),
            "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)"
        );
        let c = parse(&[
            "--cassandra-tls-ca",
            ca,
            "--cassandra-tls-verify-hostname",
            "false",
        ])
        .expect("ok");
        let tls = c.tls.expect("tls on");
        assert!(!tls.verify_hostname);
        assert_eq!(tls.client, None);
    }

    #[test]
    fn replication_parses_both_strategies() {
        assert_eq!(
            parse_replication("SimpleStrategy:3"),
            Ok(Replication::Simple(3))
        );
        assert_eq!(
            parse_replication("simplestrategy:1"),
            Ok(Replication::Simple(1))
        );
        assert_eq!(
            parse_replication("dc1:3, dc2:2"),
            Ok(Replication::PerDc(vec![
                ("dc1".into(), 3),
                ("dc2".into(), 2)
            ]))
        );
        for bad in [
            "",
            "SimpleStrategy:0",
            "dc1",
            "dc1:x",
            "dc1:3,dc1:3",
            "d'c:1",
            "dc:99",
        ] {
            assert!(parse_replication(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Replication::PerDc(vec![("dc1".into(), 3), ("dc2".into(), 2)]).to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert_eq!(
            Replication::Simple(1).to_cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
    }

    #[test]
    fn keyspace_and_bounds_are_checked() {
        assert!(check_identifier("ecom_store").is_ok());
        assert!(check_identifier("ecom_test_0a1b").is_ok());
        for bad in [
            "",
            "1abc",
            "Ecom",
            "ecom-store",
            "ecom;drop",
            &"a".repeat(49),
        ] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
        assert_eq!(
            setting(&["--cassandra-keyspace", "x;y"]),
            "--cassandra-keyspace (ECOM_CASSANDRA_KEYSPACE)"
        );
        assert_eq!(
            setting(&["--cassandra-pool-size", "0"]),
            "--cassandra-pool-size (ECOM_CASSANDRA_POOL_SIZE)"
        );
        assert_eq!(
            setting(&["--cassandra-max-in-flight", "0"]),
            "--cassandra-max-in-flight (ECOM_CASSANDRA_MAX_IN_FLIGHT)"
        );
        assert_eq!(
            setting(&["--cassandra-request-timeout", "0s"]),
            "--cassandra-request-timeout (ECOM_CASSANDRA_REQUEST_TIMEOUT)"
        );
    }
}
