//! The Pub/Sub settings as the layered configuration reads them (file keys `project` and
//! `[pubsub] …`, `ECOM_PROJECT` and `ECOM_PUBSUB_*`, the flags of `cli::settings::SETTINGS`):
//! where the service is, what things are called, how subscriptions are read and how `setup`
//! creates them.
//!
//! Owns: their defaults (each written once, here or in the config struct it feeds) and turning
//! them into [`PubSubConfig`], [`SubscriberOptions`] and [`SubscriptionSettings`]. Must never:
//! connect to anything, or read the environment (`PUBSUB_EMULATOR_HOST` is one more layer of
//! the configuration, below the file).

use crate::config::de;
use crate::pubsub::admin::SubscriptionSettings;
use crate::pubsub::{Endpoint, PubSubConfig};
use crate::source::pubsub::SubscriberOptions;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The project of the topics and subscriptions when none is set.
pub const DEFAULT_PROJECT: &str = "ecom-local";

/// The project (a top-level key) and the `[pubsub]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubSettings {
    /// Google Cloud project of the topics and subscriptions (the file's top-level
    /// `project`, hence skipped here: [`super::Settings`] holds it).
    #[serde(skip)]
    pub project: String,
    /// The emulator's host:port; `PUBSUB_EMULATOR_HOST` is the layer below the file.
    #[serde(with = "de::opt_text")]
    pub emulator_host: Option<String>,
    #[serde(with = "de::opt_text")]
    pub endpoint: Option<String>,
    #[serde(with = "de::text")]
    pub orders_topic: String,
    #[serde(with = "de::text")]
    pub payments_topic: String,
    #[serde(with = "de::text")]
    pub dlq_topic: String,
    /// Default: the topic's name + `-sub`.
    #[serde(with = "de::opt_text")]
    pub orders_subscription: Option<String>,
    #[serde(with = "de::opt_text")]
    pub payments_subscription: Option<String>,
    #[serde(with = "de::opt_text")]
    pub dlq_subscription: Option<String>,
    #[serde(with = "de::parsed")]
    pub streams: usize,
    #[serde(with = "de::parsed")]
    pub max_outstanding_messages: usize,
    #[serde(with = "de::parsed")]
    pub max_outstanding_bytes: usize,
    #[serde(with = "de::parsed")]
    pub batch_size: usize,
    #[serde(with = "de::duration")]
    pub max_lease: Duration,
    #[serde(with = "de::duration")]
    pub lease_extension: Duration,
    #[serde(with = "de::duration")]
    pub connect_wait: Duration,
    #[serde(with = "de::duration")]
    pub ack_deadline: Duration,
    #[serde(with = "de::duration")]
    pub retention: Duration,
    /// Unset: subscriptions without a dead-letter policy.
    #[serde(with = "de::opt_parsed")]
    pub max_delivery_attempts: Option<u32>,
}

impl Default for PubSubSettings {
    fn default() -> Self {
        let names = PubSubConfig::with_defaults(DEFAULT_PROJECT, Endpoint::Google(None));
        let subscriber = SubscriberOptions::default();
        let subscriptions = SubscriptionSettings::default();
        PubSubSettings {
            project: names.project,
            emulator_host: None,
            endpoint: None,
            orders_topic: names.orders_topic,
            payments_topic: names.payments_topic,
            dlq_topic: names.dlq_topic,
            orders_subscription: None,
            payments_subscription: None,
            dlq_subscription: None,
            streams: subscriber.streams,
            max_outstanding_messages: subscriber.max_outstanding_messages,
            max_outstanding_bytes: subscriber.max_outstanding_bytes,
            batch_size: subscriber.batch_size,
            max_lease: subscriber.max_lease,
            lease_extension: subscriber.lease_extension,
            connect_wait: subscriber.connect_wait,
            ack_deadline: subscriptions.ack_deadline,
            retention: subscriptions.retention,
            max_delivery_attempts: subscriptions.max_delivery_attempts,
        }
    }
}

impl PubSubSettings {
    /// The validated names and endpoint. An empty emulator host means the real service.
    pub fn to_config(&self) -> Result<PubSubConfig, crate::config::ConfigError> {
        let emulator = self.emulator_host.clone().filter(|h| !h.is_empty());
        let endpoint = match (emulator, &self.endpoint) {
            (Some(host), _) => Endpoint::Emulator(host),
            (None, endpoint) => Endpoint::Google(endpoint.clone()),
        };
        let sub = |given: &Option<String>, topic: &str| {
            given.clone().unwrap_or_else(|| default_subscription(topic))
        };
        let config = PubSubConfig {
            project: self.project.clone(),
            endpoint,
            orders_topic: self.orders_topic.clone(),
            payments_topic: self.payments_topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            orders_subscription: sub(&self.orders_subscription, &self.orders_topic),
            payments_subscription: sub(&self.payments_subscription, &self.payments_topic),
            dlq_subscription: sub(&self.dlq_subscription, &self.dlq_topic),
        };
        config.validate()?;
        Ok(config)
    }

    /// How `run` reads each subscription, validated.
    pub fn to_options(&self) -> Result<SubscriberOptions, crate::config::ConfigError> {
        let options = SubscriberOptions {
            streams: self.streams,
            max_outstanding_messages: self.max_outstanding_messages,
            max_outstanding_bytes: self.max_outstanding_bytes,
            batch_size: self.batch_size,
            max_lease: self.max_lease,
            lease_extension: self.lease_extension,
            connect_wait: self.connect_wait,
            ..SubscriberOptions::default()
        };
        options.validate()?;
        Ok(options)
    }

    /// How `setup` creates subscriptions, validated.
    pub fn to_settings(&self) -> Result<SubscriptionSettings, crate::config::ConfigError> {
        let settings = SubscriptionSettings {
            ack_deadline: self.ack_deadline,
            retention: self.retention,
            max_delivery_attempts: self.max_delivery_attempts,
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// A topic's subscription when none is named: the topic's name + `-sub`, as `setup` creates
/// it.
pub(super) fn default_subscription(topic: &str) -> String {
    format!("{topic}-sub")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_config_structs_defaults_and_valid() {
        let s = PubSubSettings::default();
        let config = s.to_config().expect("default names");
        assert_eq!(
            config,
            PubSubConfig::with_defaults(DEFAULT_PROJECT, Endpoint::Google(None))
        );
        assert_eq!(
            s.to_options().expect("default options"),
            SubscriberOptions::default()
        );
        assert_eq!(
            s.to_settings().expect("default subscriptions"),
            SubscriptionSettings::default()
        );
    }

    #[test]
    fn an_empty_emulator_host_means_the_real_service() {
        let s = PubSubSettings {
            emulator_host: Some(String::new()),
            endpoint: Some("https://europe-west1-pubsub.googleapis.com".into()),
            ..PubSubSettings::default()
        };
        assert!(matches!(
            s.to_config().expect("valid").endpoint,
            Endpoint::Google(Some(_))
        ));
        let s = PubSubSettings {
            emulator_host: Some("127.0.0.1:8085".into()),
            ..PubSubSettings::default()
        };
        assert_eq!(
            s.to_config().expect("valid").endpoint,
            Endpoint::Emulator("127.0.0.1:8085".into())
        );
    }
}
