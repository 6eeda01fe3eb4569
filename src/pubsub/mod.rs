//! Google Cloud Pub/Sub (design §1, §2, §5), on Google's official `google-cloud-pubsub` crate.
//!
//! Owns: where the service is and what things are called ([`PubSubConfig`]), and the
//! clients built from that ([`connect`]). The parts:
//! - [`admin`]: `setup`'s topics and subscriptions;
//! - [`binding`]: which store a subscription feeds (`setup` labels it, `run` checks it);
//! - [`producer`]: `produce`'s mock orders and payments;
//! - [`probe`]: the cheap round trip that tells whether Pub/Sub answers for our
//!   subscriptions (start-up check and `run`'s liveness probe).
//!
//! The clients' users live with their roles: the subscribers are a source
//! ([`crate::source::pubsub`]), the DLQ topic publisher is part of the dead-letter queue
//! ([`crate::dlq::topic`]).
//!
//! Must never: decode payloads or decide what a message means (the intake and the join do),
//! or ack a message itself.

pub mod admin;
pub mod binding;
pub mod connect;
pub mod probe;
pub mod producer;

use crate::model::StreamKind;

/// Where Pub/Sub is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Google's emulator at `host:port`: plaintext, anonymous credentials (what Google's
    /// clients do when `PUBSUB_EMULATOR_HOST` is set).
    Emulator(String),
    /// The real service, with Application Default Credentials; `None` is the global
    /// endpoint.
    Google(Option<String>),
}

/// Project, endpoint and resource names (design §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    pub project: String,
    pub endpoint: Endpoint,
    pub orders_topic: String,
    pub payments_topic: String,
    pub dlq_topic: String,
    pub orders_subscription: String,
    pub payments_subscription: String,
    pub dlq_subscription: String,
}

impl PubSubConfig {
    /// The design's names in `project`: topics `orders_data`, `payments_data`,
    /// `dlq_payments_data`, subscriptions `<topic>-sub`.
    pub fn with_defaults(project: impl Into<String>, endpoint: Endpoint) -> Self {
        PubSubConfig {
            project: project.into(),
            endpoint,
            orders_topic: "orders_data".into(),
            payments_topic: "payments_data".into(),
            dlq_topic: "dlq_payments_data".into(),
            orders_subscription: "orders_data-sub".into(),
            payments_subscription: "payments_data-sub".into(),
            dlq_subscription: "dlq_payments_data-sub".into(),
        }
    }

    pub fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    pub fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }

    /// The subscription a source topic is read from.
    pub fn subscription_of(&self, topic: StreamKind) -> &str {
        match topic {
            StreamKind::Orders => &self.orders_subscription,
            StreamKind::Payments => &self.payments_subscription,
        }
    }

    /// The topic a source's messages are published to.
    pub fn topic_of(&self, topic: StreamKind) -> &str {
        match topic {
            StreamKind::Orders => &self.orders_topic,
            StreamKind::Payments => &self.payments_topic,
        }
    }

    /// Checks names against Pub/Sub's rules, so a typo fails at start with the setting's
    /// name rather than as a NOT_FOUND later.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let project_ok = (6..=30).contains(&self.project.len())
            && self
                .project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !project_ok {
            return Err(ConfigError {
                setting: "--project",
                problem: format!(
                    "{:?} is not a project id (6 to 30 lower-case letters, digits or hyphens)",
                    self.project
                ),
            });
        }
        for (setting, name) in [
            ("--orders-topic", &self.orders_topic),
            ("--payments-topic", &self.payments_topic),
            ("--dlq-topic", &self.dlq_topic),
            ("--orders-subscription", &self.orders_subscription),
            ("--payments-subscription", &self.payments_subscription),
            ("--dlq-subscription", &self.dlq_subscription),
        ] {
            if let Err(problem) = check_resource_name(name) {
                return Err(ConfigError { setting, problem });
            }
        }
        if let Endpoint::Emulator(host) = &self.endpoint {
            if host.contains("://") || !host.contains(':') {
                return Err(ConfigError {
                    setting: "--pubsub-emulator-host",
                    problem: format!("{host:?} is not host:port"),
                });
            }
        }
        Ok(())
    }
}

/// Pub/Sub's rule for topic and subscription ids.
fn check_resource_name(name: &str) -> Result<(), String> {
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c));
    if (3..=255).contains(&name.len()) && first_ok && chars_ok && !name.starts_with("goog") {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (3 to 255 letters, digits or -_.~+%, starting with a letter)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_designs_names_and_validate() {
        let c = PubSubConfig::with_defaults("ecom-local", Endpoint::Google(None));
        assert_eq!(
            c.topic_path(&c.orders_topic),
            "projects/ecom-local/topics/orders_data"
        );
        assert_eq!(
            c.subscription_path(c.subscription_of(StreamKind::Payments)),
            "projects/ecom-local/subscriptions/payments_data-sub"
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn bad_names_fail_naming_the_setting() {
        let mut c = PubSubConfig::with_defaults("Ecom Local", Endpoint::Google(None));
        assert_eq!(c.validate().map_err(|e| e.setting), Err("--project"));
        c.project = "ecom-local".into();
        c.dlq_topic = "9lives".into();
        assert_eq!(c.validate().map_err(|e| e.setting), Err("--dlq-topic"));
        c.dlq_topic = "dlq".into();
        c.endpoint = Endpoint::Emulator("http://localhost:8085".into());
        assert_eq!(
            c.validate().map_err(|e| e.setting),
            Err("--pubsub-emulator-host")
        );
    }
}
