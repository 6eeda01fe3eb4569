//! `schema.cql` applied by `ecom-stream setup`: split into statements, the keyspace name and
//! replication substituted from the configuration, each statement run in turn, then a wait
//! until every node agrees on the schema.
//!
//! Owns: the one copy of the schema (`schema.cql` at the repo root, compiled in, so that
//! `cqlsh -f schema.cql` and `setup` can never disagree) and its application. Must never:
//! drop or alter anything (every statement is `IF NOT EXISTS`, so `setup` is idempotent),
//! or report success before the cluster agrees on the new schema.

use super::config::{CassandraConfig, Replication};
use super::session::connect;
use crate::config::RetryPolicy;
use crate::retry::with_retries;
use crate::store::StoreError;
use scylla::statement::unprepared::Statement;
use std::time::Duration;

/// The client timeout of one schema statement. A keyspace or table change is coordinated
/// across the cluster and flushes the schema tables, which on a busy node takes far longer
/// than a write (10 s and more was seen with a loaded two-core machine); the request
/// timeout of the hot path would fail `setup` there for nothing.
const SCHEMA_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `schema.cql`, as `cqlsh -f` would apply it: keyspace `ecom_store`, `SimpleStrategy` RF 1.
pub const SCHEMA_CQL: &str = include_str!("../../../schema.cql");

/// The keyspace name written in `schema.cql`.
const FILE_KEYSPACE: &str = "ecom_store";

/// What [`apply_schema`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaApplied {
    pub keyspace: String,
    /// Statements run (all `IF NOT EXISTS`: already existing objects count too).
    pub statements: usize,
    /// The schema version every node agreed on.
    pub schema_version: String,
}

/// Splits CQL text into statements at `;`, dropping `--` and `//` line comments and `/* */`
/// block comments, and leaving `;` inside quoted strings alone.
pub fn split_statements(cql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = cql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            cur.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                cur.push(c);
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                cur.push(' ');
            }
            ';' => {
                push_statement(&mut out, &cur);
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    push_statement(&mut out, &cur);
    out
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

/// Collapses whitespace, so statements read as one line in logs and tests.
fn push_statement(out: &mut Vec<String>, text: &str) {
    let s = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if !s.is_empty() {
        out.push(s);
    }
}

/// The statements of `schema.cql` for this keyspace and replication.
pub fn statements(keyspace: &str, replication: &Replication) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for s in split_statements(SCHEMA_CQL) {
        let s = s.replace(&format!(" {FILE_KEYSPACE}."), &format!(" {keyspace}."));
        if s.starts_with("CREATE KEYSPACE") {
            let (head, _) = s.split_once(" WITH replication = ").ok_or_else(|| {
                StoreError::failed("schema.cql: CREATE KEYSPACE has no replication")
            })?;
            let head = head.replace(
                &format!("IF NOT EXISTS {FILE_KEYSPACE}"),
                &format!("IF NOT EXISTS {keyspace}"),
            );
            out.push(format!(
                "{head} WITH replication = {}",
                replication.to_cql()
            ));
        } else {
            out.push(s);
        }
    }
    Ok(out)
}

/// A replication setting that works but is probably wrong for the routing settings.
pub fn replication_warning(config: &CassandraConfig) -> Option<String> {
    match (&config.replication, &config.local_dc) {
        (Replication::PerDc(dcs), Some(local)) if !dcs.iter().any(|(dc, _)| dc == local) => {
            Some(format!(
                "--cassandra-replication (ECOM_CASSANDRA_REPLICATION) places no replica in the \
                 local datacenter {local:?}: LOCAL_* reads and writes there will fail"
            ))
        }
        _ => None,
    }
}

/// The keyspace's replication as `system_schema.keyspaces` holds it (`class`,
/// `replication_factor` or one entry per datacenter).
async fn keyspace_replication(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let rows = session
        .query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(|e| super::errors::classify("reading the keyspace's replication", &e))?
        .into_rows_result()
        .map_err(|e| StoreError::failed_from("reading the keyspace's replication", e))?;
    let row = rows
        .maybe_first_row::<(std::collections::HashMap<String, String>,)>()
        .map_err(|e| StoreError::failed_from("reading the keyspace's replication", e))?;
    Ok(row.map(|(r,)| r).unwrap_or_default())
}

/// The one line `setup` logs for a keyspace with a single replica (in any datacenter): a
/// node's crash there loses the writes it acknowledged but had not synced to its commit
/// log, and no other replica has them. `None` for two replicas or more everywhere.
pub fn single_replica_warning(
    keyspace: &str,
    replication: &std::collections::HashMap<String, String>,
) -> Option<String> {
    // A factor may read `3/1` (transient replicas): the full replicas come first.
    let factor = |v: &String| {
        v.split('/')
            .next()
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    let mut single: Vec<&str> = replication
        .iter()
        .filter(|(k, _)| k.as_str() != "class")
        .filter(|(_, v)| factor(v) == Some(1))
        .map(|(k, _)| k.as_str())
        .collect();
    if single.is_empty() {
        return None;
    }
    single.sort_unstable();
    let place = match single.as_slice() {
        ["replication_factor"] => String::new(),
        dcs => format!(" in {}", dcs.join(", ")),
    };
    Some(format!(
        "keyspace {keyspace} has replication factor 1{place}: a single node's crash can lose \
         acknowledged writes unless its commit log syncs before acknowledging \
         (commitlog_sync: batch or group); use 3 replicas for production (RESILIENCE.md, \"What 0 lost depends on\")"
    ))
}

/// Creates the keyspace and tables if missing (`ecom-stream setup`), then waits for schema
/// agreement. Idempotent. `CREATE KEYSPACE IF NOT EXISTS` leaves an existing keyspace's
/// replication as it is: change that with `ALTER KEYSPACE` and a repair.
pub async fn apply_schema(config: &CassandraConfig) -> Result<SchemaApplied, StoreError> {
    let session = connect(config)
        .await
        .map_err(|e| StoreError::failed_from("connecting to Cassandra", e))?;
    if let Some(warning) = replication_warning(config) {
        tracing::warn!("{warning}");
    }
    let statements = statements(&config.keyspace, &config.replication)?;
    for (i, s) in statements.iter().enumerate() {
        tracing::info!(statement = %s, "applying schema ({}/{})", i + 1, statements.len());
        // Unprepared on purpose: DDL runs once, and preparing it buys nothing.
        let mut statement = Statement::new(s.as_str());
        statement.set_request_timeout(Some(SCHEMA_STATEMENT_TIMEOUT.max(config.request_timeout)));
        // Every statement is `IF NOT EXISTS`, so one that timed out (and may have been
        // applied anyway) is safe to send again.
        with_retries(
            &RetryPolicy::default(),
            "apply schema statement",
            || tracing::warn!(statement = %s, "schema statement failed retriably; retrying"),
            || async {
                session
                    .query_unpaged(statement.clone(), &[])
                    .await
                    .map_err(|e| super::errors::classify("applying schema.cql", &e))
            },
        )
        .await?;
    }
    // Read back, not taken from the setting: an existing keyspace keeps the replication it
    // was created with, whatever `--cassandra-replication` says now.
    match keyspace_replication(&session, &config.keyspace).await {
        Ok(replication) => {
            if let Some(warning) = single_replica_warning(&config.keyspace, &replication) {
                tracing::warn!("{warning}");
            }
        }
        Err(e) => tracing::warn!(
            keyspace = %config.keyspace,
            error = %e.chain(),
            "could not read the keyspace's replication back; its replication factor is unchecked"
        ),
    }
    let version = session
        .await_schema_agreement()
        .await
        .map_err(|e| StoreError::unavailable_from("waiting for schema agreement", e))?;
    tracing::info!(keyspace = %config.keyspace, %version, "schema applied; all nodes agree");
    Ok(SchemaApplied {
        keyspace: config.keyspace.clone(),
        statements: statements.len(),
        schema_version: version.to_string(),
    })
}

/// Drops a keyspace (tests and the load script use a fresh random one per run).
pub async fn drop_keyspace(
    session: &scylla::client::session::Session,
    keyspace: &str,
) -> Result<(), StoreError> {
    super::config::check_identifier(keyspace).map_err(StoreError::failed)?;
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await
        .map_err(|e| super::errors::classify("dropping keyspace", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_splitter_handles_comments_and_quoted_semicolons() {
        let cql = "-- a comment; with a semicolon\nCREATE TABLE a (x int); /* block; */\n\
                   INSERT INTO a (x, y) VALUES (1, 'a;b'); // tail\n  ";
        assert_eq!(
            split_statements(cql),
            [
                "CREATE TABLE a (x int)",
                "INSERT INTO a (x, y) VALUES (1, 'a;b')"
            ]
        );
        assert!(split_statements("  -- only a comment\n").is_empty());
    }

    #[test]
    fn schema_cql_has_the_keyspace_and_the_three_tables_of_design_3() {
        let s = statements("ecom_store", &Replication::Simple(1)).expect("statements");
        assert_eq!(s.len(), 4, "{s:#?}");
        assert_eq!(
            s[0],
            "CREATE KEYSPACE IF NOT EXISTS ecom_store WITH replication = \
             {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert!(s.iter().all(|s| s.contains("IF NOT EXISTS")));
        assert!(s[1].starts_with("CREATE TABLE IF NOT EXISTS ecom_store.orders_payments_facts ("));
        for col in [
            "order_id bigint PRIMARY KEY",
            "customer_id bigint",
            "item text",
            "quantity bigint",
            "price double",
            "shipping_address text",
            "order_status text",
            "creation_date text",
            "payment_id bigint",
            "payment_method text",
            "card_last_four text",
            "payment_status text",
            "payment_datetime text",
        ] {
            assert!(s[1].contains(col), "{col}");
        }
        assert!(s[2].starts_with("CREATE TABLE IF NOT EXISTS ecom_store.dlq_payments ("));
        for col in [
            "payment_id bigint PRIMARY KEY",
            "reason text",
            "first_seen timestamp",
            "attempts int",
        ] {
            assert!(s[2].contains(col), "{col}");
        }
        assert!(s[3].starts_with("CREATE TABLE IF NOT EXISTS ecom_store.invalid_messages ("));
        assert!(s[3].contains("payload blob"));
        assert!(s[3].contains("PRIMARY KEY ((source), message_id)"));
    }

    #[test]
    fn replication_that_misses_the_local_dc_is_warned_about() {
        let mut c = CassandraConfig::local("127.0.0.1").expect("config");
        assert_eq!(replication_warning(&c), None);
        // One local DC with SimpleStrategy (the Docker setup) is fine.
        c.local_dc = Some("dc1".into());
        assert_eq!(replication_warning(&c), None);
        c.replication = Replication::PerDc(vec![("dc2".into(), 3)]);
        assert!(replication_warning(&c).is_some_and(|w| w.contains("\"dc1\"")));
        c.replication = Replication::PerDc(vec![("dc1".into(), 3), ("dc2".into(), 3)]);
        assert_eq!(replication_warning(&c), None);
    }

    #[test]
    fn a_single_replica_is_warned_about_in_one_line() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<std::collections::HashMap<_, _>>()
        };
        let simple = |rf: &str| {
            map(&[
                ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                ("replication_factor", rf),
            ])
        };
        let w = single_replica_warning("ks", &simple("1")).expect("RF 1 is warned about");
        assert!(
            w.starts_with("keyspace ks has replication factor 1: "),
            "{w}"
        );
        assert!(w.contains("commitlog_sync"), "{w}");
        assert!(!w.contains('\n'), "{w}");
        assert_eq!(single_replica_warning("ks", &simple("3")), None);
        let nts = map(&[
            (
                "class",
                "org.apache.cassandra.locator.NetworkTopologyStrategy",
            ),
            ("dc1", "3"),
            ("dc2", "1"),
        ]);
        let w = single_replica_warning("ks", &nts).expect("one DC with one replica");
        assert!(w.contains("replication factor 1 in dc2:"), "{w}");
        let nts = map(&[("class", "NetworkTopologyStrategy"), ("dc1", "3/1")]);
        assert_eq!(single_replica_warning("ks", &nts), None);
    }

    #[test]
    fn keyspace_and_replication_are_substituted() {
        let repl = Replication::PerDc(vec![("dc1".into(), 3), ("dc2".into(), 3)]);
        let s = statements("shop_prod", &repl).expect("statements");
        assert_eq!(
            s[0],
            "CREATE KEYSPACE IF NOT EXISTS shop_prod WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 3}"
        );
        assert!(s[1..].iter().all(|s| s.contains(" shop_prod.")));
        assert!(s.iter().all(|s| !s.contains("ecom_store")));
    }
}
