//! What a driver error means for the pipeline: retry later ([`StoreError::Unavailable`]) or
//! give up ([`StoreError::Failed`]); and, at start-up, whether to wait for the cluster or
//! stop with a line naming the setting to fix.
//!
//! Owns: the mapping from `scylla` errors to [`StoreError`] and [`ConnectProblem`]. Must
//! never: turn an error into success (a write the cluster did not acknowledge at the
//! requested consistency — `WriteTimeout`, `Unavailable` — is an error here, always), or call
//! retriable something a retry cannot fix (bad query, schema, auth), which would only delay
//! the nack.

use crate::store::StoreError;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestError,
    ConnectionSetupRequestErrorKind, CqlRequestKind, DbError, ExecutionError, MetadataError,
    NewSessionError, PrepareError, RequestAttemptError,
};

/// Classifies a failed execute. `what` names the operation and table for the message.
/// The driver's error is kept as the source; a hint to the likely fix goes in the context.
pub fn classify(what: &str, e: &ExecutionError) -> StoreError {
    if is_retriable(e) {
        StoreError::unavailable_from(what, e.clone())
    } else {
        StoreError::failed_from(format!("{what}{}", hint(e)), e.clone())
    }
}

/// Whether the same request may succeed later. Timeouts, overload and too few live
/// replicas are the cluster's state, not the request's fault; every statement this store
/// sends is idempotent (upserts with explicit timestamps), so repeating one is safe even
/// when the first attempt was applied on some replicas.
pub fn is_retriable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::LastAttemptError(a) => attempt_is_retriable(a),
        // Client-side timeout: the request may or may not have been applied; idempotent.
        ExecutionError::RequestTimeout(_) => true,
        // No connection to the chosen node (down, restarting, pool still opening).
        ExecutionError::ConnectionPoolError(_) => true,
        ExecutionError::PrepareError(PrepareError::ConnectionPoolError(_)) => true,
        // EmptyPlan (no node in the preferred DC), bad values, schema and metadata errors:
        // the same request fails the same way.
        _ => false,
    }
}

fn attempt_is_retriable(a: &RequestAttemptError) -> bool {
    match a {
        RequestAttemptError::DbError(db, _) => db_is_retriable(db),
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        _ => false,
    }
}

/// The server errors a retry can fix: the ones that describe load or liveness.
pub fn db_is_retriable(db: &DbError) -> bool {
    matches!(
        db,
        // Too few replicas acknowledged in time at the requested consistency. The write may
        // have landed on some replicas; it is NOT a success, and repeating it is safe.
        DbError::WriteTimeout { .. }
            | DbError::ReadTimeout { .. }
            // Too few replicas alive to even try at the requested consistency.
            | DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::RateLimitReached { .. }
    )
}

/// A pointer to the likely fix for errors that usually mean misconfiguration.
fn hint(e: &ExecutionError) -> &'static str {
    match e {
        ExecutionError::EmptyPlan => {
            " (no node to send it to: is --cassandra-local-dc / ECOM_CASSANDRA_LOCAL_DC a \
             datacenter of this cluster?)"
        }
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Unauthorized,
            _,
        )) => " (the user lacks a permission on the keyspace)",
        _ => "",
    }
}

/// Classifies a failed prepare (at start-up: the statement or the schema is wrong).
pub fn classify_prepare(what: &str, keyspace: &str, e: &PrepareError) -> StoreError {
    let text = e.to_string();
    let missing = text.contains("unconfigured table")
        || text.contains("does not exist")
        || text.contains("Keyspace");
    if matches!(e, PrepareError::ConnectionPoolError(_)) {
        StoreError::unavailable_from(format!("preparing {what}"), e.clone())
    } else if missing {
        StoreError::failed_from(
            format!(
                "preparing {what} (is the schema applied to keyspace {keyspace}? run \
                 `ecom-stream setup` with ECOM_STORE=cassandra first)"
            ),
            e.clone(),
        )
    } else {
        StoreError::failed_from(format!("preparing {what}"), e.clone())
    }
}

/// Why a session could not be opened, and whether waiting can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectProblem {
    /// The nodes did not answer (down, booting, unreachable, name not resolving yet):
    /// start-up retries with backoff until `--cassandra-connect-wait` runs out.
    NotReachable(String),
    /// A setting is wrong; waiting cannot help. The text names the setting.
    Misconfigured(String),
}

/// Sorts a session error into "wait and retry" or "stop and name the setting".
pub fn classify_connect(e: &NewSessionError) -> ConnectProblem {
    match e {
        NewSessionError::EmptyKnownNodesList => ConnectProblem::Misconfigured(
            "invalid setting --cassandra-nodes (ECOM_CASSANDRA_NODES): names no node".into(),
        ),
        NewSessionError::IllegalConfig(why) => ConnectProblem::Misconfigured(format!(
            "the Cassandra settings are not a combination the driver supports: {why}"
        )),
        NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error,
            },
        )) => classify_connection(last_connection_error, e),
        _ => ConnectProblem::NotReachable(e.to_string()),
    }
}

fn classify_connection(c: &ConnectionError, whole: &NewSessionError) -> ConnectProblem {
    // The cluster asks for a login and none is configured. Not "refused the credentials"
    // (there were none), and not the driver's own text, which points at its Rust API
    // (`SessionBuilder::user`) instead of our settings.
    if matches!(
        c,
        ConnectionError::ConnectionSetupRequestError(ConnectionSetupRequestError {
            error: ConnectionSetupRequestErrorKind::MissingAuthentication,
            ..
        })
    ) {
        return ConnectProblem::Misconfigured(
            "the cluster requires a login (PasswordAuthenticator) and none is configured: set \
             --cassandra-username and --cassandra-password (ECOM_CASSANDRA_USERNAME / \
             ECOM_CASSANDRA_PASSWORD)"
                .into(),
        );
    }
    let text = c.to_string();
    // Authentication is refused during connection setup, with the server's error code (or,
    // from an authenticator the driver has no variant for, in words).
    let refused = matches!(
        c,
        ConnectionError::ConnectionSetupRequestError(ConnectionSetupRequestError {
            error: ConnectionSetupRequestErrorKind::DbError(
                DbError::AuthenticationError | DbError::Unauthorized,
                _
            ),
            ..
        })
    );
    if refused || text.contains("Authentication") || text.contains("authenticat") {
        return ConnectProblem::Misconfigured(format!(
            "the cluster refused the credentials: check --cassandra-username / \
             --cassandra-password (ECOM_CASSANDRA_USERNAME / ECOM_CASSANDRA_PASSWORD): {whole}"
        ));
    }
    if let ConnectionError::IoError(io) = c {
        // rustls reports certificate and handshake problems as InvalidData.
        if io.kind() == std::io::ErrorKind::InvalidData {
            return ConnectProblem::Misconfigured(format!(
                "the TLS handshake failed: check --cassandra-tls-ca / --cassandra-tls-cert / \
                 --cassandra-tls-verify-hostname (ECOM_CASSANDRA_TLS_*): {whole}"
            ));
        }
    }
    ConnectProblem::NotReachable(whole.to_string())
}

/// The node closed the connection at the driver's first request (OPTIONS), before any
/// answer. A node that requires TLS does that to a plain client; so does a port proxy whose
/// node is still booting (Docker's published ports accept and then close), which is why it
/// stays "wait and retry" and only earns a hint ([`PLAIN_CLIENT_HINT`]).
pub fn closed_at_first_request(e: &NewSessionError) -> bool {
    matches!(
        e,
        NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error: ConnectionError::ConnectionSetupRequestError(
                    ConnectionSetupRequestError {
                        request_kind: CqlRequestKind::Options,
                        error: ConnectionSetupRequestErrorKind::BrokenConnection(_),
                        ..
                    }
                ),
            }
        ))
    )
}

/// What [`closed_at_first_request`] most likely means when TLS is not configured.
pub const PLAIN_CLIENT_HINT: &str = "the node closed the connection at the first request: if \
     the cluster requires TLS (client_encryption_options), set --cassandra-tls-ca \
     (ECOM_CASSANDRA_TLS_CA)";

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{BrokenConnectionErrorKind, WriteType};
    use scylla::statement::Consistency;
    use std::sync::Arc;
    use std::time::Duration;

    fn db(e: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "msg".into()))
    }

    #[test]
    fn load_and_liveness_errors_are_retriable() {
        let retriable = [
            db(DbError::WriteTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                write_type: WriteType::Simple,
            }),
            db(DbError::WriteTimeout {
                consistency: Consistency::LocalSerial,
                received: 0,
                required: 2,
                write_type: WriteType::Cas,
            }),
            db(DbError::ReadTimeout {
                consistency: Consistency::LocalQuorum,
                received: 1,
                required: 2,
                data_present: true,
            }),
            db(DbError::Unavailable {
                consistency: Consistency::LocalQuorum,
                required: 2,
                alive: 1,
            }),
            db(DbError::Overloaded),
            db(DbError::IsBootstrapping),
            ExecutionError::RequestTimeout(Duration::from_secs(10)),
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Initializing),
            ExecutionError::LastAttemptError(RequestAttemptError::UnableToAllocStreamId),
            ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(
                BrokenConnectionErrorKind::KeepaliveTimeout("127.0.0.1".parse().expect("addr"))
                    .into(),
            )),
        ];
        for e in &retriable {
            let s = classify("write fact (orders_payments_facts)", e);
            assert!(s.is_retriable(), "{e}");
            assert!(s.to_string().contains("orders_payments_facts"), "{s}");
        }
    }

    #[test]
    fn a_write_below_the_requested_consistency_is_never_success() {
        // One replica of two acknowledged: the driver returns WriteTimeout, and the store
        // must report an error (retriable), never Ok.
        let e = db(DbError::WriteTimeout {
            consistency: Consistency::Quorum,
            received: 1,
            required: 2,
            write_type: WriteType::Simple,
        });
        let s = classify("write", &e);
        assert!(matches!(s, StoreError::Unavailable { .. }));
        // The driver's error is the source, and the chain shows it.
        let source = std::error::Error::source(&s).map(ToString::to_string);
        assert_eq!(source, Some(e.to_string()));
        let chain = s.chain().to_string();
        assert!(chain.contains("received: 1, required: 2"), "{chain}");
    }

    #[test]
    fn request_errors_are_not_retriable() {
        let failed = [
            db(DbError::SyntaxError),
            db(DbError::Invalid),
            db(DbError::Unauthorized),
            db(DbError::ServerError),
            db(DbError::WriteFailure {
                consistency: Consistency::One,
                received: 0,
                required: 1,
                numfailures: 1,
                write_type: WriteType::Simple,
            }),
            db(DbError::ReadFailure {
                consistency: Consistency::One,
                received: 0,
                required: 1,
                numfailures: 1,
                data_present: false,
            }),
            db(DbError::Other(0x9999)),
            ExecutionError::EmptyPlan,
        ];
        for e in &failed {
            assert!(!classify("write", e).is_retriable(), "{e}");
        }
        let s = classify("write", &ExecutionError::EmptyPlan);
        assert!(s.to_string().contains("--cassandra-local-dc"), "{s}");
    }

    #[test]
    fn connect_problems_split_into_wait_and_stop() {
        assert!(matches!(
            classify_connect(&NewSessionError::EmptyKnownNodesList),
            ConnectProblem::Misconfigured(m) if m.contains("--cassandra-nodes")
        ));
        let refused = NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error: ConnectionError::IoError(Arc::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
            },
        ));
        assert!(matches!(
            classify_connect(&refused),
            ConnectProblem::NotReachable(_)
        ));
        let tls = NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error: ConnectionError::IoError(Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "invalid peer certificate: UnknownIssuer",
                ))),
            },
        ));
        assert!(matches!(
            classify_connect(&tls),
            ConnectProblem::Misconfigured(m) if m.contains("--cassandra-tls-ca")
        ));
        let dns = NewSessionError::FailedToResolveAnyHostname(vec!["cassandra:9042".into()]);
        assert!(matches!(
            classify_connect(&dns),
            ConnectProblem::NotReachable(_)
        ));
    }
}
