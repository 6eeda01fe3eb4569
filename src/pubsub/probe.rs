//! The cheapest round trip that proves Pub/Sub answers for our subscriptions: one
//! `GetSubscription` per subscription, each under a deadline, none retried by the library.
//!
//! Owns: [`Prober`], what one probe found ([`Probe`]), and the start-up check that waits for
//! the first answer ([`Prober::wait_until_answered`]) and then looks for the DLQ topic once. Must never: retry inside a probe (a
//! frozen or dead server must show up as a failed probe within the deadline, not as a slow
//! one), or decide what a failure means for the run (`source::pubsub::watch` does).
//!
//! Why `GetSubscription`: the streaming pull gives no signal while the library reconnects
//! (transient errors are retried inside it, silently), and a frozen server gives none at all.
//! An admin call that names the subscription answers both "is anyone there" and "does the
//! subscription still exist, may we read it" with one small request.

use super::connect::{self, ClientError, ConnectError};
use super::PubSubConfig;
use crate::model::StreamKind;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::options::RequestOptionsBuilder;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use std::time::{Duration, Instant};

/// How long one probe of one subscription may take before it counts as unanswered.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// What one probe of every subscription found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Every subscription answered.
    Answered,
    /// No answer, or an error that may pass (unavailable, deadline, connection refused).
    Unanswered { subscription: String, cause: String },
    /// An answer that will not change by itself: the subscription does not exist, permission
    /// denied, an invalid name.
    Refused { subscription: String, cause: String },
}

/// Pub/Sub cannot be reached at all: what every command that needs it says, within its
/// connect wait, instead of waiting in silence.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("Pub/Sub ({endpoint}) did not answer within --pubsub-connect-wait ({waited}): {cause}{hint}")]
    Unanswered {
        endpoint: String,
        waited: String,
        cause: String,
        /// What was tried and what to do ([`PubSubConfig::unreachable_hint`]).
        hint: String,
    },
    #[error("Pub/Sub ({endpoint}): {cause}{hint}")]
    Credentials {
        endpoint: String,
        cause: String,
        hint: String,
    },
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Waits until Pub/Sub answers one call (a `GetTopic` of the orders topic; any answer of the
/// service counts, `NOT_FOUND` included, since `setup` may be about to create it), retrying
/// what goes unanswered until `wait` has passed. Missing credentials fail at once: waiting
/// will not bring them.
pub async fn wait_until_reachable(config: &PubSubConfig, wait: Duration) -> Result<(), ReachError> {
    let topics = connect::topic_admin(config).await?;
    Reach::of(config).wait(&topics, wait).await
}

/// The reachability check, with what its errors say.
#[derive(Debug, Clone)]
struct Reach {
    topic: String,
    endpoint: String,
    hint: String,
}

impl Reach {
    fn of(config: &PubSubConfig) -> Self {
        Reach {
            topic: config.topic_path(&config.orders_topic),
            endpoint: config.describe_endpoint(),
            hint: config.unreachable_hint(),
        }
    }

    async fn wait(&self, topics: &TopicAdmin, wait: Duration) -> Result<(), ReachError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        let mut warned = false;
        loop {
            // No attempt outlives the wait by more than a moment.
            let deadline = PROBE_DEADLINE
                .min(wait.saturating_sub(started.elapsed()))
                .max(Duration::from_millis(100));
            let call = topics
                .get_topic()
                .set_topic(&self.topic)
                .with_retry_policy(NeverRetry)
                .with_attempt_timeout(deadline)
                .send();
            let cause = match tokio::time::timeout(deadline + Duration::from_millis(500), call)
                .await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e))
                    if connect::is_credentials(&e)
                        || e.status().map(|s| s.code) == Some(Code::Unauthenticated) =>
                {
                    tracing::debug!(error = ?e, "Pub/Sub refused our credentials");
                    return Err(ReachError::Credentials {
                        endpoint: self.endpoint.clone(),
                        cause: connect::describe(&e),
                        hint: self.hint.clone(),
                    });
                }
                // The service answered: it is there (what it said is for the real call).
                Ok(Err(e)) if e.status().is_some() && !connect::is_retriable(&e) => return Ok(()),
                Ok(Err(e)) => connect::describe(&e),
                Err(_) => format!("no answer within {}", humantime::format_duration(deadline)),
            };
            let waited = started.elapsed();
            if waited >= wait {
                return Err(ReachError::Unanswered {
                    endpoint: self.endpoint.clone(),
                    waited: humantime::format_duration(wait).to_string(),
                    cause,
                    hint: self.hint.clone(),
                });
            }
            if !warned {
                warned = true;
                tracing::warn!(
                    endpoint = %self.endpoint, %cause,
                    wait = %humantime::format_duration(wait),
                    "Pub/Sub does not answer yet; retrying until --pubsub-connect-wait runs out"
                );
            }
            tokio::time::sleep(pause.min(wait.saturating_sub(waited))).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// Start-up found Pub/Sub refusing a subscription, or not answering within the wait.
#[derive(Debug, thiserror::Error)]
pub enum StartCheckError {
    /// Pub/Sub itself cannot be reached, or takes no credentials from us.
    #[error(transparent)]
    Reach(#[from] ReachError),
    /// Not retriable: it needs `setup`, a permission or a name fixed.
    #[error(
        "subscription {subscription}: {cause} (has `ecom-stream setup` been run for this project?)"
    )]
    Refused { subscription: String, cause: String },
    /// The dead-letter topic cannot be published to: unmatched payments could never be
    /// acked. Not retriable either.
    #[error("DLQ topic {topic}: {cause} (has `ecom-stream setup` been run for this project?)")]
    DlqTopic { topic: String, cause: String },
    /// Retriable in principle, but start-up waited as long as it may.
    #[error("Pub/Sub ({endpoint}) did not answer for subscription {subscription} within --pubsub-connect-wait ({waited}): {cause}")]
    Unanswered {
        endpoint: String,
        subscription: String,
        waited: String,
        cause: String,
    },
}

/// Probes the orders and payments subscriptions of one project.
#[derive(Debug, Clone)]
pub struct Prober {
    admin: SubscriptionAdmin,
    subscriptions: Vec<String>,
    endpoint: String,
    topics: TopicAdmin,
    dlq_topic: String,
    reach: Reach,
}

impl Prober {
    /// Builds the admin client (no call is made yet).
    pub async fn connect(config: &PubSubConfig) -> Result<Self, ConnectError> {
        Ok(Prober {
            admin: connect::subscription_admin(config).await?,
            subscriptions: [StreamKind::Orders, StreamKind::Payments]
                .into_iter()
                .map(|t| config.subscription_path(config.subscription_of(t)))
                .collect(),
            endpoint: config.describe_endpoint(),
            topics: connect::topic_admin(config).await?,
            dlq_topic: config.topic_path(&config.dlq_topic),
            reach: Reach::of(config),
        })
    }

    /// One `GetSubscription` per subscription, side by side, each within [`PROBE_DEADLINE`].
    /// The first failure (orders before payments) is the verdict, but a refusal outranks an
    /// unanswered call (it is the more specific news).
    pub async fn probe(&self) -> Probe {
        let calls = self.subscriptions.iter().map(|s| self.probe_one(s));
        let results = futures_util::future::join_all(calls).await;
        let mut verdict = Probe::Answered;
        for r in results {
            match (&verdict, r) {
                (_, Probe::Answered) | (Probe::Refused { .. }, _) => {}
                (Probe::Unanswered { .. }, Probe::Unanswered { .. }) => {}
                (_, other) => verdict = other,
            }
        }
        verdict
    }

    async fn probe_one(&self, subscription: &str) -> Probe {
        let call = self
            .admin
            .get_subscription()
            .set_subscription(subscription)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(PROBE_DEADLINE)
            .send();
        // The attempt timeout should fire first; this bound holds even if it does not.
        match tokio::time::timeout(PROBE_DEADLINE + Duration::from_secs(1), call).await {
            Ok(Ok(_)) => Probe::Answered,
            Ok(Err(e)) => {
                let e = ClientError::rpc(e);
                let (subscription, cause) = (subscription.to_string(), e.to_string());
                if e.is_retriable() {
                    Probe::Unanswered {
                        subscription,
                        cause,
                    }
                } else {
                    Probe::Refused {
                        subscription,
                        cause,
                    }
                }
            }
            Err(_) => Probe::Unanswered {
                subscription: subscription.to_string(),
                cause: format!(
                    "no answer within {}",
                    humantime::format_duration(PROBE_DEADLINE)
                ),
            },
        }
    }

    /// Once, after the subscriptions answered: the DLQ topic must exist. Only a refusal
    /// fails; a call that goes unanswered now is left to the dead-letter path's retries.
    async fn dlq_topic_exists(&self) -> Result<(), StartCheckError> {
        let call = self
            .topics
            .get_topic()
            .set_topic(&self.dlq_topic)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(PROBE_DEADLINE)
            .send();
        match tokio::time::timeout(PROBE_DEADLINE + Duration::from_secs(1), call).await {
            Ok(Err(e)) => {
                let e = ClientError::rpc(e);
                if e.is_retriable() {
                    Ok(())
                } else {
                    Err(StartCheckError::DlqTopic {
                        topic: self.dlq_topic.clone(),
                        cause: e.to_string(),
                    })
                }
            }
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }

    /// Start-up: probes until every subscription answers. A refusal fails at once; no answer
    /// is retried with backoff (one WARN line, then one per doubling of the wait) until
    /// `wait` has passed, then fails naming the subscription and the last cause.
    pub async fn wait_until_answered(&self, wait: Duration) -> Result<(), StartCheckError> {
        let started = Instant::now();
        // First Pub/Sub itself (is anyone there, do our credentials work), so that the
        // error names that rather than a subscription.
        self.reach.wait(&self.topics, wait).await?;
        let mut pause = Duration::from_millis(200);
        let mut warned = false;
        loop {
            match self.probe().await {
                Probe::Answered => return self.dlq_topic_exists().await,
                Probe::Refused {
                    subscription,
                    cause,
                } => {
                    return Err(StartCheckError::Refused {
                        subscription,
                        cause,
                    })
                }
                Probe::Unanswered {
                    subscription,
                    cause,
                } => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Err(StartCheckError::Unanswered {
                            endpoint: self.endpoint.clone(),
                            subscription,
                            waited: humantime::format_duration(wait).to_string(),
                            cause,
                        });
                    }
                    if !warned {
                        warned = true;
                        tracing::warn!(
                            endpoint = %self.endpoint, %subscription, %cause,
                            wait = %humantime::format_duration(wait),
                            "Pub/Sub does not answer yet; retrying until --pubsub-connect-wait runs out"
                        );
                    }
                    tokio::time::sleep(pause.min(wait.saturating_sub(waited))).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_check_lines_name_the_subscription_and_the_cause() {
        let e = StartCheckError::Refused {
            subscription: "projects/p/subscriptions/orders_data-sub".into(),
            cause: "NOT_FOUND: Subscription does not exist".into(),
        };
        let line = e.to_string();
        assert!(
            line.contains("projects/p/subscriptions/orders_data-sub"),
            "{line}"
        );
        assert!(line.contains("NOT_FOUND"), "{line}");
        let e = StartCheckError::Unanswered {
            endpoint: "emulator at 127.0.0.1:9".into(),
            subscription: "projects/p/subscriptions/orders_data-sub".into(),
            waited: "5s".into(),
            cause: "connection refused".into(),
        };
        let line = e.to_string();
        for needle in [
            "127.0.0.1:9",
            "--pubsub-connect-wait (5s)",
            "connection refused",
        ] {
            assert!(line.contains(needle), "{needle}: {line}");
        }
    }
}
