//! `ecom-stream setup`'s Pub/Sub half: the three topics and a subscription for each.
//!
//! Owns: creating them idempotently, with the configured ack deadline, retention, the
//! binding to the store they feed ([`super::binding`]) and (when asked) a dead-letter
//! policy on the two source subscriptions. Must
//! never: delete or change an existing topic or subscription (an operator may have tuned it);
//! it reports what it found instead.

use super::binding::{classify, labels, Found, StoreBinding};
use super::connect::{self, ClientError};
use super::PubSubConfig;
use google_cloud_gax::error::rpc::Code;
use std::time::Duration;

/// Settings of the subscriptions `setup` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// How long Pub/Sub waits for an ack before redelivering (10 s to 600 s); the client
    /// extends leases of held messages, so this (with the streams' own deadline,
    /// `--pubsub-lease-extension`) bounds redelivery after a crash. 10 s: RESILIENCE.md,
    /// "Recovery after a SIGKILL".
    pub ack_deadline: Duration,
    /// How long unacked messages are kept (10 min to 7 days).
    pub retention: Duration,
    /// When set, the orders and payments subscriptions get a dead-letter policy: after this
    /// many deliveries (5 to 100) Pub/Sub forwards a message to the DLQ topic itself, and
    /// every delivery carries its `delivery_attempt`, which the writer's poison-row bound
    /// counts too. Keep `--max-write-attempts` below it, so that a row that cannot be
    /// written reaches the DLQ with its reason (`write_failed`) before Pub/Sub forwards the
    /// bare message.
    pub max_delivery_attempts: Option<u32>,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        SubscriptionSettings {
            ack_deadline: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_delivery_attempts: None,
        }
    }
}

impl SubscriptionSettings {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let secs = self.ack_deadline.as_secs();
        if !(10..=600).contains(&secs) || self.ack_deadline.subsec_nanos() != 0 {
            return Err(ConfigError {
                setting: "--ack-deadline",
                problem: "must be whole seconds between 10s and 600s (Pub/Sub's range)".into(),
            });
        }
        let retention = self.retention.as_secs();
        if !(600..=7 * 24 * 3600).contains(&retention) {
            return Err(ConfigError {
                setting: "--retention",
                problem: "must be between 10m and 7days (Pub/Sub's range)".into(),
            });
        }
        if let Some(n) = self.max_delivery_attempts {
            if !(5..=100).contains(&n) {
                return Err(ConfigError {
                    setting: "--max-delivery-attempts",
                    problem: "must be between 5 and 100 (Pub/Sub's range)".into(),
                });
            }
        }
        Ok(())
    }
}

/// What `setup` did to one resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetupStep {
    /// `topic` or `subscription`.
    pub kind: &'static str,
    pub name: String,
    /// `created` or `exists`.
    pub outcome: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Connect(#[from] connect::ConnectError),
    #[error("creating {kind} {name}")]
    Create {
        kind: &'static str,
        name: String,
        #[source]
        source: ClientError,
    },
}

impl SetupError {
    /// Whether running `setup` again may succeed (the service was unavailable, overloaded,
    /// …), as opposed to a misconfiguration (permission denied, bad project).
    pub fn is_retriable(&self) -> bool {
        match self {
            SetupError::Connect(_) => false,
            SetupError::Create { source, .. } => source.is_retriable(),
        }
    }
}

/// Creates the orders, payments and DLQ topics and a subscription for each; what exists is
/// left as it is.
pub async fn setup(
    config: &PubSubConfig,
    settings: SubscriptionSettings,
    binding: &StoreBinding,
) -> Result<Vec<SetupStep>, SetupError> {
    let topics = connect::topic_admin(config).await?;
    let subscriptions = connect::subscription_admin(config).await?;
    let mut steps = Vec::new();
    let pairs = [
        (&config.orders_topic, &config.orders_subscription),
        (&config.payments_topic, &config.payments_subscription),
        (&config.dlq_topic, &config.dlq_subscription),
    ];
    for (topic, _) in pairs {
        let name = config.topic_path(topic);
        let result = topics.create_topic().set_name(&name).send().await;
        steps.push(step("topic", name, result)?);
    }
    for (topic, subscription) in pairs {
        let name = config.subscription_path(subscription);
        // The DLQ's own subscription never dead-letters into itself.
        let policy = settings
            .max_delivery_attempts
            .filter(|_| topic != &config.dlq_topic)
            .map(|n| {
                google_cloud_pubsub::model::DeadLetterPolicy::new()
                    .set_dead_letter_topic(config.topic_path(&config.dlq_topic))
                    .set_max_delivery_attempts(n as i32)
            });
        // The source subscriptions are bound to the store they feed; nothing consumes
        // the DLQ's for a store.
        let labels = (topic != &config.dlq_topic).then(|| labels(binding));
        let result = subscriptions
            .create_subscription()
            .set_name(&name)
            .set_labels(labels.into_iter().flatten())
            .set_topic(config.topic_path(topic))
            .set_ack_deadline_seconds(settings.ack_deadline.as_secs() as i32)
            .set_message_retention_duration(google_cloud_wkt::Duration::clamp(
                settings.retention.as_secs() as i64,
                0,
            ))
            .set_or_clear_dead_letter_policy(policy)
            .send()
            .await;
        let step = step("subscription", name, result)?;
        if step.outcome == "exists" && topic != &config.dlq_topic {
            warn_if_bound_elsewhere(&subscriptions, &step.name, binding).await;
        }
        steps.push(step);
    }
    Ok(steps)
}

/// An existing subscription is left as it is; one bound to another store is worth a line
/// now, since `run` on this store will refuse it.
async fn warn_if_bound_elsewhere(
    subscriptions: &google_cloud_pubsub::client::SubscriptionAdmin,
    name: &str,
    binding: &StoreBinding,
) {
    let found = subscriptions
        .get_subscription()
        .set_subscription(name)
        .send()
        .await;
    if let Ok(found) = found {
        if let Found::Other(bound) = classify(&found.labels, binding) {
            tracing::warn!(
                subscription = %name,
                "exists and feeds store {bound}, not {} ({}): left as it is; `run` on this \
                 store refuses it without --rebind-subscriptions",
                binding.label,
                binding.describe
            );
        }
    }
}

fn step<T>(
    kind: &'static str,
    name: String,
    result: google_cloud_pubsub::Result<T>,
) -> Result<SetupStep, SetupError> {
    match result {
        Ok(_) => {
            tracing::info!(kind, %name, "created");
            Ok(SetupStep {
                kind,
                name,
                outcome: "created",
            })
        }
        Err(e) if e.status().map(|s| s.code) == Some(Code::AlreadyExists) => {
            tracing::info!(kind, %name, "exists; left as it is");
            Ok(SetupStep {
                kind,
                name,
                outcome: "exists",
            })
        }
        Err(e) => Err(SetupError::Create {
            kind,
            name,
            source: ClientError::rpc(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc_error(code: Code, message: &str) -> ClientError {
        use google_cloud_gax::error::rpc::Status;
        ClientError::rpc(google_cloud_pubsub::Error::service(
            Status::default().set_code(code).set_message(message),
        ))
    }

    #[test]
    fn a_failed_create_keeps_its_line_and_the_library_error() {
        let e = SetupError::Create {
            kind: "topic",
            name: "projects/p/topics/orders".into(),
            source: rpc_error(Code::PermissionDenied, "no"),
        };
        assert_eq!(e.to_string(), "creating topic projects/p/topics/orders");
        let source = std::error::Error::source(&e).expect("the client error");
        assert_eq!(source.to_string(), "PERMISSION_DENIED: no");
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "creating topic projects/p/topics/orders: PERMISSION_DENIED: no"
        );
        let client = rpc_error(Code::PermissionDenied, "no");
        assert!(client
            .library_error()
            .downcast_ref::<google_cloud_pubsub::Error>()
            .is_some_and(|e| e.status().is_some()));
    }

    #[test]
    fn only_transient_failures_are_retriable() {
        let create = |source| SetupError::Create {
            kind: "subscription",
            name: "s".into(),
            source,
        };
        assert!(create(rpc_error(Code::Unavailable, "later")).is_retriable());
        assert!(!create(rpc_error(Code::PermissionDenied, "no")).is_retriable());
        assert!(!create(rpc_error(Code::NotFound, "no project")).is_retriable());
    }

    #[test]
    fn settings_outside_pubsubs_ranges_fail() {
        assert_eq!(SubscriptionSettings::default().validate(), Ok(()));
        let bad = SubscriptionSettings {
            ack_deadline: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.setting), Err("--ack-deadline"));
        let bad = SubscriptionSettings {
            retention: Duration::from_secs(30 * 24 * 3600),
            ..Default::default()
        };
        assert_eq!(bad.validate().map_err(|e| e.setting), Err("--retention"));
    }
}
