//! Builds the official clients for a [`PubSubConfig`]: the emulator with anonymous
//! credentials, or the real service with Application Default Credentials.
//!
//! Owns: endpoint and credential choice, and turning client errors into one line that names
//! what to fix. Must never: log credentials.

use super::{Endpoint, PubSubConfig};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use std::time::Duration;

/// Failing to build a client (bad endpoint, no credentials): not retriable.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Pub/Sub ({endpoint}): {message}")]
pub struct ConnectError {
    pub endpoint: String,
    pub message: String,
}

impl PubSubConfig {
    /// What to say in logs and errors about where Pub/Sub is.
    pub fn describe_endpoint(&self) -> String {
        match &self.endpoint {
            Endpoint::Emulator(host) => format!("emulator at {host}"),
            Endpoint::Google(None) => "pubsub.googleapis.com".into(),
            Endpoint::Google(Some(e)) => e.clone(),
        }
    }

    fn connect_error(&self, e: impl std::fmt::Display) -> ConnectError {
        let mut message = e.to_string();
        if matches!(self.endpoint, Endpoint::Google(_)) {
            message.push_str(
                " (outside Google Cloud, set up Application Default Credentials, or set PUBSUB_EMULATOR_HOST for the emulator)",
            );
        }
        ConnectError {
            endpoint: self.describe_endpoint(),
            message,
        }
    }
}

/// Applies endpoint and credentials to any of the crate's client builders (they share the
/// same two setters but no trait).
macro_rules! configure {
    ($config:expr, $builder:expr) => {{
        let builder = $builder;
        match &$config.endpoint {
            Endpoint::Emulator(host) => builder
                .with_endpoint(format!("http://{host}"))
                .with_credentials(Anonymous::new().build()),
            Endpoint::Google(Some(endpoint)) => builder.with_endpoint(endpoint.clone()),
            Endpoint::Google(None) => builder,
        }
    }};
}

/// A subscriber client with `channels` gRPC connections, so that several streams of one
/// subscription do not share one HTTP/2 connection's window.
pub async fn subscriber(
    config: &PubSubConfig,
    channels: usize,
) -> Result<Subscriber, ConnectError> {
    configure!(config, Subscriber::builder())
        .with_grpc_subchannel_count(channels.max(1))
        .build()
        .await
        .map_err(|e| config.connect_error(e))
}

/// Batching of one publisher: a batch goes out at `max_messages`, `max_bytes`, or after
/// `max_delay`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max_messages: u32,
    pub max_bytes: u32,
    pub max_delay: Duration,
}

impl Batching {
    /// For the DLQ topic: small batches soon, because each batch holds up acks.
    pub fn for_dlq() -> Self {
        Batching {
            max_messages: 100,
            max_bytes: 1_000_000,
            max_delay: Duration::from_millis(5),
        }
    }

    /// For `produce`: the largest batches Pub/Sub takes (1,000 messages), so that load runs
    /// measure the pipeline rather than the producer.
    pub fn for_load() -> Self {
        Batching {
            max_messages: 1000,
            max_bytes: 9_000_000,
            max_delay: Duration::from_millis(20),
        }
    }
}

/// A batching publisher for `topic` (a topic id, not a path).
pub async fn publisher(
    config: &PubSubConfig,
    topic: &str,
    batching: Batching,
) -> Result<Publisher, ConnectError> {
    configure!(config, Publisher::builder(config.topic_path(topic)))
        .set_message_count_threshold(batching.max_messages)
        .set_byte_threshold(batching.max_bytes)
        .set_delay_threshold(batching.max_delay)
        .build()
        .await
        .map_err(|e| config.connect_error(e))
}

pub async fn topic_admin(config: &PubSubConfig) -> Result<TopicAdmin, ConnectError> {
    configure!(config, TopicAdmin::builder())
        .build()
        .await
        .map_err(|e| config.connect_error(e))
}

pub async fn subscription_admin(config: &PubSubConfig) -> Result<SubscriptionAdmin, ConnectError> {
    configure!(config, SubscriptionAdmin::builder())
        .build()
        .await
        .map_err(|e| config.connect_error(e))
}

/// One line for a failed RPC: the status code and message when the service answered, the
/// transport error otherwise.
pub fn describe(e: &google_cloud_pubsub::Error) -> String {
    match e.status() {
        Some(status) => format!("{}: {}", status.code.name(), status.message),
        None => e.to_string(),
    }
}

/// Whether an RPC failure may succeed when tried again (unavailable, deadline, overload),
/// as opposed to a misconfiguration (not found, permission denied, invalid argument).
pub fn is_retriable(e: &google_cloud_pubsub::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    match e.status().map(|s| s.code) {
        Some(
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled,
        ) => true,
        Some(_) => false,
        // No status: the request never got an answer (connect, I/O, timeout).
        None => e.is_timeout() || e.is_io() || e.is_connect() || e.is_transport(),
    }
}
