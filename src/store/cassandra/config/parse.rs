//! The syntax of the Cassandra settings that are more than a number or a path.
//!
//! Owns: contact points, consistency levels, CQL identifiers and replication strings, and the
//! error shape of one bad setting. Must never: accept an identifier that is not a plain CQL
//! name (keyspaces are formatted into statement text).

use super::Replication;
use crate::config::ConfigError;
use scylla::statement::Consistency;

/// The error for one setting: "invalid setting --flag (ECOM_VAR): problem".
pub(super) fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}
/// `host[:port]` items, comma-separated; a missing port is 9042. IPv6 needs brackets.
pub(super) fn parse_nodes(s: &str) -> Result<Vec<String>, String> {
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
pub(super) fn parse_replication(s: &str) -> Result<Replication, String> {
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
