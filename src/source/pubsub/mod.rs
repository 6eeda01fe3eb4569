//! The `OrderSubscriber` and `PaymentSubscriber` of design §1: one [`SubscriberActor`] per
//! subscription, reading it with several streaming pulls and handing batches of
//! [`Envelope`](crate::source::Envelope)s to the pipeline.
//!
//! Owns: the streams, client-side flow control, and each message's Pub/Sub handler, which
//! travels inside the envelope's [`AckHandle`](crate::ack::AckHandle) and is answered only by
//! the pipeline (ack when the effect is durable, nack on failure; an envelope dropped
//! unanswered nacks). Lease extension is left to the client library, which leases a
//! message only once it is read from the stream: so the readers take everything the server
//! sends, up to the budget, also while the pipeline is paused (a store outage), and what
//! they take waits in the batcher's queue, leased. Must never: ack a message itself, stop
//! reading for any reason but the budget or a stop (an unread message is unleased and comes
//! back after one ack deadline), or hold more than `max_outstanding_messages` /
//! `max_outstanding_bytes` of unanswered messages: a permit is taken before each pull and
//! returned only by the answer, so a slow store stops the pulling instead of growing memory
//! (design §4.7).
//!
//! Why several streams: one streaming pull from the emulator delivers ~1,900 msg/s on two
//! cores, while 16 streams on one subscription reach ~20,000/s (see BENCHMARKS.md for the
//! default's measurement).
//!
//! Here: [`SubscriberOptions`]. One job per module below: `actor` (the actor and its
//! messages), `reader` (one streaming pull), `batcher` (batches and hand-overs),
//! `answer` (a message's answer path and its permits), `counters`, `redelivery` (recent
//! ids that recognise a message received again), `sink`, `watch` (the liveness probe and
//! what an outage does to readiness and the logs).

mod actor;
mod answer;
mod batcher;
mod counters;
mod reader;
mod redelivery;
mod sink;
pub mod watch;

pub use actor::{Close, GetCounts, StopPulling, SubscriberActor, SubscriberFailed};
pub use counters::SubscriberCounts;
pub use sink::{AckOnly, Sink};
pub use watch::{watch, StreamSignals};

use std::time::Duration;

/// How a subscription is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberOptions {
    /// Concurrent streaming pulls on the subscription.
    pub streams: usize,
    /// Unanswered messages this subscriber holds at most (all streams together).
    pub max_outstanding_messages: usize,
    /// Unanswered payload bytes this subscriber holds at most (all streams together).
    pub max_outstanding_bytes: usize,
    /// Envelopes per hand-over to the pipeline.
    pub batch_size: usize,
    /// Longest wait for a partial hand-over once its first message is in: `run` uses the
    /// writer's `--linger`. At a steady rate the server sends a few messages at a time, and
    /// handing each few over on its own paid the whole pipeline's per-batch hops (thread
    /// wake-ups, actor messages, a commit) for each few (issue 21).
    pub linger: Duration,
    /// Hand-overs in flight at once.
    pub submit_concurrency: usize,
    /// How long the client keeps extending a message's lease; must exceed the hold time,
    /// or held payments would be redelivered while held.
    pub max_lease: Duration,
    /// How far each lease extension reaches (10 s to 600 s); also the ack deadline each
    /// stream asks for. After a crash, what the dead process held comes back one such
    /// deadline later on Pub/Sub, in waves of it on the emulator (RESILIENCE.md).
    pub lease_extension: Duration,
    /// How long a command's start check waits for Pub/Sub to answer before it fails.
    pub connect_wait: Duration,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions {
            // Measured on 2 cores against the emulator: see BENCHMARKS.md.
            streams: 8,
            max_outstanding_messages: 20_000,
            max_outstanding_bytes: 100 * 1024 * 1024,
            batch_size: 500,
            linger: Duration::from_millis(5),
            submit_concurrency: 4,
            max_lease: Duration::from_secs(3600),
            // Short, so that a restart after a crash has everything back in about a minute
            // on the emulator (measured: RESILIENCE.md, "Recovery after a SIGKILL"); the
            // client re-extends every 3 s, well within it.
            lease_extension: Duration::from_secs(10),
            // A Pub/Sub that answers does so in milliseconds; one that has not answered in
            // 10 s is usually not there at all (no emulator, the wrong address), and a user
            // at a terminal should hear so. On Kubernetes a restart retries it anyway.
            connect_wait: Duration::from_secs(10),
        }
    }
}

impl SubscriberOptions {
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let bound = |setting: &'static str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError {
                    setting,
                    problem: format!("must be between {lo} and {hi}"),
                })
            }
        };
        bound("--pubsub-streams", self.streams, 1, 64)?;
        bound(
            "--pubsub-max-outstanding-messages",
            self.max_outstanding_messages,
            self.streams,
            10_000_000,
        )?;
        bound(
            "--pubsub-max-outstanding-bytes",
            self.max_outstanding_bytes,
            1024,
            u32::MAX as usize,
        )?;
        bound("--pubsub-batch-size", self.batch_size, 1, 100_000)?;
        let ext = self.lease_extension.as_secs();
        if !(10..=600).contains(&ext) {
            return Err(ConfigError {
                setting: "--pubsub-lease-extension",
                problem: "must be between 10s and 600s".into(),
            });
        }
        if self.connect_wait > Duration::from_secs(86_400) {
            return Err(ConfigError {
                setting: "--pubsub-connect-wait",
                problem: "must be at most 1day".into(),
            });
        }
        if self.max_lease < self.lease_extension {
            return Err(ConfigError {
                setting: "--pubsub-max-lease",
                problem: "must be at least --pubsub-lease-extension".into(),
            });
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_bounds_name_their_flag() {
        assert_eq!(SubscriberOptions::default().validate(), Ok(()));
        let o = SubscriberOptions {
            streams: 0,
            ..Default::default()
        };
        assert_eq!(o.validate().map_err(|e| e.setting), Err("--pubsub-streams"));
        let o = SubscriberOptions {
            streams: 8,
            max_outstanding_messages: 4,
            ..Default::default()
        };
        assert_eq!(
            o.validate().map_err(|e| e.setting),
            Err("--pubsub-max-outstanding-messages")
        );
        let o = SubscriberOptions {
            lease_extension: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(
            o.validate().map_err(|e| e.setting),
            Err("--pubsub-lease-extension")
        );
    }
}
