//! The Pub/Sub settings as flags, each with its `ECOM_*` variable (and so its config-file
//! key): where the service is, what things are called, how subscriptions are read and how
//! `setup` creates them.
//!
//! Owns: parsing those settings into [`PubSubConfig`], [`SubscriberOptions`] and
//! [`SubscriptionSettings`]. Must never: connect to anything.

use super::admin::SubscriptionSettings;
use super::{Endpoint, PubSubConfig};
use crate::source::pubsub::SubscriberOptions;
use clap::Args;
use std::time::Duration;

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 5s, 250ms, 2m)"))
}

/// Where Pub/Sub is and what the topics and subscriptions are called.
#[derive(Debug, Clone, Args)]
pub struct PubSubArgs {
    /// Google Cloud project of the topics and subscriptions.
    #[arg(long, env = "ECOM_PROJECT", default_value = "ecom-local")]
    pub project: String,
    /// The Pub/Sub emulator's host:port (plaintext, anonymous credentials). Default:
    /// PUBSUB_EMULATOR_HOST, as Google's clients read it; unset means the real service
    /// with Application Default Credentials.
    #[arg(long, env = "ECOM_PUBSUB_EMULATOR_HOST")]
    pub pubsub_emulator_host: Option<String>,
    /// A Pub/Sub endpoint other than the global one (regional, private).
    #[arg(long, env = "ECOM_PUBSUB_ENDPOINT")]
    pub pubsub_endpoint: Option<String>,
    #[arg(long, env = "ECOM_PUBSUB_ORDERS_TOPIC", default_value = "orders_data")]
    pub orders_topic: String,
    #[arg(
        long,
        env = "ECOM_PUBSUB_PAYMENTS_TOPIC",
        default_value = "payments_data"
    )]
    pub payments_topic: String,
    #[arg(
        long,
        env = "ECOM_PUBSUB_DLQ_TOPIC",
        default_value = "dlq_payments_data"
    )]
    pub dlq_topic: String,
    /// Default: the orders topic's name + `-sub`.
    #[arg(long, env = "ECOM_PUBSUB_ORDERS_SUBSCRIPTION")]
    pub orders_subscription: Option<String>,
    /// Default: the payments topic's name + `-sub`.
    #[arg(long, env = "ECOM_PUBSUB_PAYMENTS_SUBSCRIPTION")]
    pub payments_subscription: Option<String>,
    /// Default: the DLQ topic's name + `-sub` (created by `setup`, so that dead letters
    /// are kept for whoever reads them).
    #[arg(long, env = "ECOM_PUBSUB_DLQ_SUBSCRIPTION")]
    pub dlq_subscription: Option<String>,
}

impl PubSubArgs {
    /// The validated config; `emulator_env` is `PUBSUB_EMULATOR_HOST`.
    pub fn to_config(
        &self,
        emulator_env: Option<String>,
    ) -> Result<PubSubConfig, crate::config::ConfigError> {
        let emulator = self
            .pubsub_emulator_host
            .clone()
            .or(emulator_env)
            .filter(|h| !h.is_empty());
        let endpoint = match (emulator, &self.pubsub_endpoint) {
            (Some(host), _) => Endpoint::Emulator(host),
            (None, endpoint) => Endpoint::Google(endpoint.clone()),
        };
        let sub = |given: &Option<String>, topic: &str| {
            given.clone().unwrap_or_else(|| format!("{topic}-sub"))
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
}

/// How `run` reads each subscription.
#[derive(Debug, Clone, Args)]
pub struct SubscriberArgs {
    /// Concurrent streaming pulls per subscription.
    #[arg(long, env = "ECOM_PUBSUB_STREAMS", default_value_t = SubscriberOptions::default().streams)]
    pub pubsub_streams: usize,
    /// Unanswered messages held at most, per subscription.
    #[arg(long, env = "ECOM_PUBSUB_MAX_OUTSTANDING_MESSAGES", default_value_t = SubscriberOptions::default().max_outstanding_messages)]
    pub pubsub_max_outstanding_messages: usize,
    /// Unanswered payload bytes held at most, per subscription.
    #[arg(long, env = "ECOM_PUBSUB_MAX_OUTSTANDING_BYTES", default_value_t = SubscriberOptions::default().max_outstanding_bytes)]
    pub pubsub_max_outstanding_bytes: usize,
    /// Messages per hand-over to the join.
    #[arg(long, env = "ECOM_PUBSUB_BATCH_SIZE", default_value_t = SubscriberOptions::default().batch_size)]
    pub pubsub_batch_size: usize,
    /// How long the client keeps extending an unanswered message's lease (longer than
    /// --hold).
    #[arg(long, env = "ECOM_PUBSUB_MAX_LEASE", value_parser = parse_duration, default_value = "1h")]
    pub pubsub_max_lease: Duration,
    /// How far each lease extension reaches (10s to 600s): after a crash, un-acked
    /// messages come back after at most this long.
    #[arg(long, env = "ECOM_PUBSUB_LEASE_EXTENSION", value_parser = parse_duration, default_value = "60s")]
    pub pubsub_lease_extension: Duration,
}

impl SubscriberArgs {
    pub fn to_options(&self) -> Result<SubscriberOptions, crate::config::ConfigError> {
        let options = SubscriberOptions {
            streams: self.pubsub_streams,
            max_outstanding_messages: self.pubsub_max_outstanding_messages,
            max_outstanding_bytes: self.pubsub_max_outstanding_bytes,
            batch_size: self.pubsub_batch_size,
            max_lease: self.pubsub_max_lease,
            lease_extension: self.pubsub_lease_extension,
            ..SubscriberOptions::default()
        };
        options.validate()?;
        Ok(options)
    }
}

/// How `setup` creates subscriptions.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionArgs {
    /// Ack deadline of created subscriptions (10s to 600s).
    #[arg(long, env = "ECOM_PUBSUB_ACK_DEADLINE", value_parser = parse_duration, default_value = "60s")]
    pub ack_deadline: Duration,
    /// How long created subscriptions keep unacked messages (10m to 7days).
    #[arg(long, env = "ECOM_PUBSUB_RETENTION", value_parser = parse_duration, default_value = "7days")]
    pub retention: Duration,
}

impl SubscriptionArgs {
    pub fn to_settings(&self) -> Result<SubscriptionSettings, crate::config::ConfigError> {
        let settings = SubscriptionSettings {
            ack_deadline: self.ack_deadline,
            retention: self.retention,
        };
        settings.validate()?;
        Ok(settings)
    }
}
