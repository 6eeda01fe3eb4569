//! Builds the official clients for a [`PubSubConfig`]: the emulator with anonymous
//! credentials, or the real service with Application Default Credentials.
//!
//! Owns: endpoint and credential choice, the typed errors of a failed client or call
//! ([`ConnectError`], [`ClientError`]) and whether a failure may succeed when tried again.
//! Must never: log credentials, or lose the library's error (it travels as the `source`).

use super::{Endpoint, PubSubConfig};
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use std::time::Duration;

/// Failing to build a client (bad endpoint, no credentials): not retriable.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Pub/Sub ({endpoint}){hint}")]
pub struct ConnectError {
    pub endpoint: String,
    /// What was tried and what to do about it ([`PubSubConfig::unreachable_hint`]).
    pub hint: String,
    #[source]
    pub source: ClientError,
}

/// What went wrong in the client library, as one line (the status code and message when the
/// service answered), keeping the library's error itself ([`ClientError::library_error`]).
///
/// Its `source()` is the library error's cause only where the line does not already say it:
/// the RPC and publish errors of the library write their causes into their own `Display`
/// and return them as `source()` too, so following them would print every cause twice in
/// `{:#}`; a client builder's error does not, so its cause follows.
#[derive(Debug)]
pub struct ClientError {
    line: String,
    code: Option<Code>,
    retriable: bool,
    /// Whether `source()` is the library error's cause (see the type's doc).
    cause_not_in_line: bool,
    library: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if self.cause_not_in_line {
            self.library.source()
        } else {
            None
        }
    }
}

impl ClientError {
    /// A failed RPC.
    pub fn rpc(e: google_cloud_pubsub::Error) -> Self {
        ClientError {
            line: describe(&e),
            code: e.status().map(|s| s.code),
            retriable: is_retriable(&e),
            cause_not_in_line: false,
            library: Box::new(e),
        }
    }

    /// A failed publish: the line is the library's (it names the RPC's failure).
    pub fn publish(e: google_cloud_pubsub::error::PublishError) -> Self {
        use google_cloud_pubsub::error::PublishError as E;
        let (code, retriable) = match &e {
            E::Rpc(inner) => (inner.status().map(|s| s.code), is_retriable(inner)),
            _ => (None, false),
        };
        ClientError {
            line: e.to_string(),
            code,
            retriable,
            cause_not_in_line: false,
            library: Box::new(e),
        }
    }

    /// A client that could not be built: a misconfiguration, never retriable.
    pub fn build(e: google_cloud_gax::client_builder::Error) -> Self {
        ClientError {
            line: e.to_string(),
            code: None,
            retriable: false,
            cause_not_in_line: true,
            library: Box::new(e),
        }
    }

    /// The status code, when the service answered.
    pub fn code(&self) -> Option<Code> {
        self.code
    }

    /// Whether the call may succeed when tried again (see [`is_retriable`]).
    pub fn is_retriable(&self) -> bool {
        self.retriable
    }

    /// The client library's error, with its own chain of causes: a
    /// `google_cloud_pubsub::Error`, a `PublishError` or a client builder's error.
    pub fn library_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.library.as_ref()
    }
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

    /// What was tried and what to do about it, for a Pub/Sub that does not answer or takes
    /// no credentials: a newcomer's first error is most often the wrong one of the two.
    pub fn unreachable_hint(&self) -> String {
        match &self.endpoint {
            Endpoint::Emulator(host) => format!(
                " (PUBSUB_EMULATOR_HOST or --pubsub-emulator-host names the emulator at {host}: \
                 start it there, e.g. `gcloud beta emulators pubsub start --host-port={host}`, \
                 or unset it to use the real service)"
            ),
            Endpoint::Google(_) => " (no PUBSUB_EMULATOR_HOST, so the real service was tried \
                 with Application Default Credentials: for the emulator set \
                 PUBSUB_EMULATOR_HOST=127.0.0.1:8085; for Google Cloud run `gcloud auth \
                 application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to a key file)"
                .to_string(),
        }
    }

    fn connect_error(&self, e: google_cloud_gax::client_builder::Error) -> ConnectError {
        ConnectError {
            endpoint: self.describe_endpoint(),
            hint: self.unreachable_hint(),
            source: ClientError::build(e),
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
/// transport error otherwise. A call that failed for want of credentials says so in our
/// words (the library's own text reads "… might succeed. but future attempts may succeed").
pub fn describe(e: &google_cloud_pubsub::Error) -> String {
    if is_credentials(e) {
        return NO_TOKEN.to_string();
    }
    match e.status() {
        Some(status) => format!("{}: {}", status.code.name(), status.message),
        None => e.to_string(),
    }
}

/// What a call that could not get an access token says.
pub const NO_TOKEN: &str = "cannot get an access token from Application Default Credentials";

/// Whether an RPC failed before it was sent because no access token could be had (no
/// Application Default Credentials, or none that work): the library wraps the credentials'
/// error as the call's source.
pub fn is_credentials(e: &google_cloud_pubsub::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<google_cloud_gax::error::CredentialsError>()
            .is_some()
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether an RPC failure may succeed when tried again (unavailable, deadline, overload),
/// as opposed to a misconfiguration (not found, permission denied, invalid argument).
pub fn is_retriable(e: &google_cloud_pubsub::Error) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_credentials() -> google_cloud_gax::client_builder::Error {
        google_cloud_gax::client_builder::Error::cred("no credentials found")
    }

    #[test]
    fn a_connect_error_keeps_its_cause_and_says_what_was_tried() {
        let emulator = PubSubConfig::with_defaults("p", Endpoint::Emulator("h:1".into()));
        let e = emulator.connect_error(no_credentials());
        assert!(
            e.to_string()
                .starts_with("cannot connect to Pub/Sub (emulator at h:1) (PUBSUB_EMULATOR_HOST"),
            "{e}"
        );
        assert!(!e.source.is_retriable());
        let line = format!("{:#}", anyhow::Error::new(e));
        assert!(
            line.starts_with("cannot connect to Pub/Sub (emulator at h:1) ("),
            "{line}"
        );
        assert!(line.contains("no credentials found"), "{line}");
        let google = PubSubConfig::with_defaults("p", Endpoint::Google(None));
        let e = google.connect_error(no_credentials());
        assert!(
            e.to_string()
                .contains("gcloud auth application-default login"),
            "{e}"
        );
        assert!(e
            .source
            .library_error()
            .downcast_ref::<google_cloud_gax::client_builder::Error>()
            .is_some());
    }
}
