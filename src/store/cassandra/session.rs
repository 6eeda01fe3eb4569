//! Opening a driver session from a [`CassandraConfig`]: contact points, DC- and token-aware
//! routing, consistency, request timeout, pool size, password authentication and TLS; and
//! waiting for a cluster that is not up yet.
//!
//! Owns: the `SessionBuilder` and the TLS client configuration. Must never: log the
//! password, downgrade consistency (the driver's default retry policy never does, and no
//! other is installed), or give up on a node that is merely not up yet before
//! `--cassandra-connect-wait` has passed, or keep waiting when a setting is wrong.

use super::config::{CassandraConfig, TlsFiles};
use super::errors::{classify_connect, closed_at_first_request, ConnectProblem, PLAIN_CLIENT_HINT};
use crate::config::RetryPolicy;
use crate::retry::backoff;
use crate::rng::SplitMix64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::client::PoolSize;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The span each start-up connection attempt runs in (see [`quiet_driver_while_connecting`]).
pub const CONNECT_SPAN: &str = "cassandra_connect";

/// A log filter that drops the driver's own lines (`scylla::*`) emitted inside a start-up
/// connection attempt, unless `debug` (the log filter lets debug lines through). A failed
/// attempt is reported by [`connect`] in one line that names the setting to fix (or as a
/// retry warning); the driver's lines say the same again, one of them as a Rust `Debug`
/// dump, and bury that line. Its lines outside start-up (a node lost while running) are
/// kept.
pub fn quiet_driver_while_connecting<S>(debug: bool) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::filter::DynFilterFn::new(move |meta, cx| {
        if debug || !meta.is_event() || !meta.target().starts_with("scylla") {
            return true;
        }
        cx.lookup_current()
            .is_none_or(|span| !span.scope().any(|s| s.name() == CONNECT_SPAN))
    })
    // "No limit of its own": without a hint, combined with `EnvFilter` by `and`, the
    // combination would have none either, and every trace-level callsite would be
    // evaluated at run time.
    .with_max_level_hint(tracing::level_filters::LevelFilter::TRACE)
}

/// A session could not be opened: the message names what to fix, or says how long the
/// nodes were waited for.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// The builder for `config`. Separate from [`connect`] so tests can check it offline.
pub fn builder(config: &CassandraConfig) -> Result<SessionBuilder, ConnectError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_dc {
        // Requests go to the local DC; other DCs are not used as a fallback, since LOCAL_*
        // consistency there would silently mean another DC's quorum.
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.write_consistency)
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy.build())
        // Retries once on another node where that is safe; never lowers consistency.
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .build();
    let mut b = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .default_execution_profile_handle(profile.into_handle())
        .pool_size(PoolSize::PerShard(config.pool_size))
        .connection_timeout(config.request_timeout.min(Duration::from_secs(10)));
    if let Some(c) = &config.credentials {
        b = b.user(c.username.clone(), c.password.expose());
    }
    if let Some(tls) = &config.tls {
        b = b.tls_context(Some(Arc::new(tls_config(tls)?)));
    }
    Ok(b)
}

/// The rustls client configuration: trust the given CA only; present a client certificate
/// when one is configured.
pub fn tls_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, ConnectError> {
    let named = |setting: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ConnectError(format!(
            "invalid setting {setting}: {}: {e}",
            path.display()
        ))
    };
    const CA: &str = "--cassandra-tls-ca (ECOM_CASSANDRA_TLS_CA)";
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&tls.ca).map_err(|e| named(CA, &tls.ca, &e))?;
    for cert in certs {
        let cert = cert.map_err(|e| named(CA, &tls.ca, &e))?;
        roots.add(cert).map_err(|e| named(CA, &tls.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(named(CA, &tls.ca, &"no PEM certificate in it"));
    }
    let roots = Arc::new(roots);
    // The provider is named, not taken from the process default: if another dependency
    // also enabled `ring`, rustls would have no single default and `builder()` would panic.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let base = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnectError(format!("TLS setup: {e}")))
    };
    let builder = if tls.verify_hostname {
        base()?.with_root_certificates(roots)
    } else {
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| named(CA, &tls.ca, &e))?;
        base()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
    };
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            const CERT: &str = "--cassandra-tls-cert (ECOM_CASSANDRA_TLS_CERT)";
            const KEY: &str = "--cassandra-tls-key (ECOM_CASSANDRA_TLS_KEY)";
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| named(CERT, cert, &e))?
                .collect::<Result<_, _>>()
                .map_err(|e| named(CERT, cert, &e))?;
            if chain.is_empty() {
                return Err(named(CERT, cert, &"no PEM certificate in it"));
            }
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| named(KEY, key, &e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| named(KEY, key, &e))
        }
    }
}

/// Checks the certificate chain against the CA but accepts a certificate that does not
/// name the node's IP address (`--cassandra-tls-verify-hostname false`). The driver
/// connects by IP, and node certificates issued by cluster tooling often carry no IP SAN.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        // webpki checks the chain first and the name last, so a name error means the chain
        // is good.
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A routing setting that works but is probably not what a multi-DC deployment wants, given
/// the datacenters of the cluster's nodes.
pub fn routing_warning(config: &CassandraConfig, node_dcs: &[String]) -> Option<String> {
    let mut dcs: Vec<&str> = node_dcs.iter().map(String::as_str).collect();
    dcs.sort_unstable();
    dcs.dedup();
    match &config.local_dc {
        None if dcs.len() > 1 => Some(format!(
            "the cluster has datacenters {dcs:?} but --cassandra-local-dc \
             (ECOM_CASSANDRA_LOCAL_DC) is not set: requests may go to a remote datacenter, \
             where LOCAL_* consistency means that datacenter's replicas"
        )),
        Some(dc) if !dcs.is_empty() && !dcs.contains(&dc.as_str()) => Some(format!(
            "--cassandra-local-dc (ECOM_CASSANDRA_LOCAL_DC) is {dc:?}, which is none of the \
             cluster's datacenters {dcs:?}: requests will fail with no node to send them to"
        )),
        _ => None,
    }
}

/// How start-up waits between tries: short at first (a node restarting), then every few
/// seconds (a container still booting, which takes Cassandra about a minute).
const CONNECT_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    initial_backoff: Duration::from_millis(500),
    max_backoff: Duration::from_secs(5),
};

/// Opens a session, retrying unreachable nodes with backoff and jitter for up to
/// `config.connect_wait`, and failing at once on a wrong setting.
pub async fn connect(config: &CassandraConfig) -> Result<Session, ConnectError> {
    let builder = builder(config)?;
    let started = Instant::now();
    let mut rng = SplitMix64::from_entropy();
    let mut attempt = 1u32;
    loop {
        // ERROR level: the span must be enabled whatever the log filter lets through, or the
        // filter above cannot see that the driver's lines come from inside it.
        let attempt_span = tracing::error_span!(CONNECT_SPAN, attempt);
        match builder.build().instrument(attempt_span).await {
            Ok(session) => {
                let state = session.get_cluster_state();
                let dcs: Vec<String> = state
                    .get_nodes_info()
                    .iter()
                    .filter_map(|n| n.datacenter.clone())
                    .collect();
                if let Some(warning) = routing_warning(config, &dcs) {
                    tracing::warn!("{warning}");
                }
                tracing::info!(
                    nodes = ?config.nodes,
                    local_dc = config.local_dc.as_deref().unwrap_or("(any)"),
                    keyspace = %config.keyspace,
                    tls = config.tls.is_some(),
                    auth = config.credentials.is_some(),
                    "connected to Cassandra"
                );
                return Ok(session);
            }
            Err(e) => match classify_connect(&e) {
                ConnectProblem::Misconfigured(msg) => return Err(ConnectError(msg)),
                ConnectProblem::NotReachable(mut msg) => {
                    if config.tls.is_none() && closed_at_first_request(&e) {
                        msg = format!("{msg} ({PLAIN_CLIENT_HINT})");
                    }
                    let waited = started.elapsed();
                    if waited >= config.connect_wait {
                        return Err(ConnectError(format!(
                            "no Cassandra node of --cassandra-nodes (ECOM_CASSANDRA_NODES) = \
                             {} answered within --cassandra-connect-wait ({}): {msg}",
                            config.nodes.join(","),
                            humantime::format_duration(config.connect_wait)
                        )));
                    }
                    let wait = backoff(&CONNECT_BACKOFF, attempt, &mut rng)
                        .max(Duration::from_millis(100))
                        .min(config.connect_wait.saturating_sub(waited));
                    // One line at the first failure, then one per doubling of the attempts:
                    // a node that stays away for the whole wait costs a handful of lines,
                    // not one per retry.
                    if attempt.is_power_of_two() {
                        tracing::warn!(
                            attempt,
                            nodes = ?config.nodes,
                            error = %msg,
                            wait_ms = wait.as_millis() as u64,
                            connect_wait = %humantime::format_duration(config.connect_wait),
                            "Cassandra not reachable yet; retrying until --cassandra-connect-wait runs out"
                        );
                    }
                    tokio::time::sleep(wait).await;
                    attempt = attempt.saturating_add(1);
                }
            },
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
