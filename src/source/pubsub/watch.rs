//! Whether `run` can read Pub/Sub right now: the liveness probe, the outage it notices, and
//! what an outage does to readiness and the logs.
//!
//! Owns: [`StreamSignals`] (what the readers report: stream failures, and the request to
//! open fresh streams), the outage state machine ([`WatchState`]) and the task that drives
//! it ([`watch`]). Must never: log once per retry or per probe (one WARN when an outage
//! begins, one INFO when it ends), block a reader (readers only bump atomics), or give up on
//! an error that may pass (only a refusal that lasts [`REFUSAL_GRACE`] ends the run).
//!
//! Why a probe: the client library retries a broken streaming pull inside itself and says
//! nothing, and a frozen server (SIGSTOP) breaks nothing at all; so every
//! [`PROBE_INTERVAL`] the watch asks the server about each subscription
//! ([`Prober::probe`], bounded by its deadline). Why a grace for refusals: after an emulator
//! restart (or an operator recreating a subscription) "not found" is briefly true and then
//! not; a subscription that stays deleted, or a permission that stays revoked, ends the run.

use super::actor::SubscriberFailed;
use crate::health::{Component, Readiness};
use crate::pubsub::probe::{Probe, Prober};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch as channel};

/// Time between the end of one probe and the start of the next.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a refusal (not found, permission denied) must last before the run ends.
pub const REFUSAL_GRACE: Duration = Duration::from_secs(30);

/// What the readers report to the watch, and the watch's request to them. Shared by every
/// reader of a run; counters only, no queue.
#[derive(Debug)]
pub struct StreamSignals {
    failures: AtomicU64,
    refusals: AtomicU64,
    last: Mutex<Option<(String, String)>>,
    fresh_streams: channel::Sender<u64>,
}

impl Default for StreamSignals {
    fn default() -> Self {
        StreamSignals {
            failures: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            last: Mutex::new(None),
            fresh_streams: channel::channel(0).0,
        }
    }
}

impl StreamSignals {
    /// A stream of `subscription` ended with an error the library would not retry.
    pub(super) fn stream_failed(&self, subscription: &str, cause: String, retriable: bool) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !retriable {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some((subscription.to_string(), cause));
        }
    }

    /// Changes whenever the readers should drop their streams and open fresh ones.
    pub(super) fn fresh_streams(&self) -> channel::Receiver<u64> {
        self.fresh_streams.subscribe()
    }

    fn ask_for_fresh_streams(&self) {
        self.fresh_streams.send_modify(|n| *n += 1);
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.failures.load(Ordering::Relaxed),
            self.refusals.load(Ordering::Relaxed),
        )
    }

    fn last(&self) -> Option<(String, String)> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// What one look (a probe plus the readers' news since the last look) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Look {
    pub probe: Probe,
    /// Streams that failed since the last look, and how many of those were refusals.
    pub stream_failures: u64,
    pub stream_refusals: u64,
    /// The last stream failure: subscription and cause.
    pub last_stream_failure: Option<(String, String)>,
}

/// An outage under way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outage {
    since: Instant,
    failed_probes: u64,
    stream_failures: u64,
}

/// What changed at a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    /// Pub/Sub stopped answering (or refused): the first failed look.
    WentDown {
        subscription: String,
        cause: String,
    },
    /// Answering again after `lasted`, with the outage's counts.
    CameBack {
        lasted: Duration,
        failed_probes: u64,
        stream_failures: u64,
    },
    /// A refusal lasted [`REFUSAL_GRACE`]: the run must end.
    Fatal(SubscriberFailed),
}

/// The outage state machine: up, or an outage under way; and how long refusals have lasted.
#[derive(Debug, Default)]
pub struct WatchState {
    outage: Option<Outage>,
    refused_since: Option<Instant>,
    last_refusal: Option<Instant>,
}

impl WatchState {
    pub fn observe(&mut self, now: Instant, look: Look) -> Change {
        let stream_failure = || {
            look.last_stream_failure
                .clone()
                .unwrap_or_else(|| ("(a stream)".into(), "stream failed".into()))
        };
        let (failed, refused) = match &look.probe {
            Probe::Refused {
                subscription,
                cause,
            } => (Some((subscription.clone(), cause.clone())), true),
            Probe::Unanswered {
                subscription,
                cause,
            } => (Some((subscription.clone(), cause.clone())), false),
            Probe::Answered if look.stream_failures > 0 => {
                (Some(stream_failure()), look.stream_refusals > 0)
            }
            Probe::Answered => (None, false),
        };
        if refused {
            self.last_refusal = Some(now);
            let since = *self.refused_since.get_or_insert(now);
            if now.duration_since(since) >= REFUSAL_GRACE {
                let (subscription, message) = failed.unwrap_or_else(stream_failure);
                return Change::Fatal(SubscriberFailed {
                    subscription,
                    message,
                });
            }
        } else if self
            .last_refusal
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_GRACE)
        {
            self.refused_since = None;
        }
        match (failed, self.outage.as_mut()) {
            (Some(_), Some(outage)) => {
                outage.failed_probes += u64::from(look.probe != Probe::Answered);
                outage.stream_failures += look.stream_failures;
                Change::None
            }
            (Some((subscription, cause)), None) => {
                self.outage = Some(Outage {
                    since: now,
                    failed_probes: u64::from(look.probe != Probe::Answered),
                    stream_failures: look.stream_failures,
                });
                Change::WentDown {
                    subscription,
                    cause,
                }
            }
            (None, Some(_)) => match self.outage.take() {
                Some(o) => Change::CameBack {
                    lasted: now.duration_since(o.since),
                    failed_probes: o.failed_probes,
                    stream_failures: o.stream_failures,
                },
                None => Change::None,
            },
            (None, None) => Change::None,
        }
    }
}

/// Probes every [`PROBE_INTERVAL`] until the task is dropped or a refusal lasts
/// [`REFUSAL_GRACE`] (then sends it on `failures` and ends). Turns the Pub/Sub component
/// unready for the length of an outage and asks the readers for fresh streams when it ends,
/// so that they need not wait out the library's reconnect backoff (up to a minute).
pub async fn watch(
    prober: Prober,
    signals: Arc<StreamSignals>,
    readiness: Arc<Readiness>,
    failures: mpsc::UnboundedSender<SubscriberFailed>,
) {
    let mut state = WatchState::default();
    let mut seen = signals.counts();
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let probe = prober.probe().await;
        let counts = signals.counts();
        let look = Look {
            probe,
            stream_failures: counts.0 - seen.0,
            stream_refusals: counts.1 - seen.1,
            last_stream_failure: signals.last(),
        };
        seen = counts;
        match state.observe(Instant::now(), look) {
            Change::None => {}
            Change::WentDown {
                subscription,
                cause,
            } => {
                tracing::warn!(
                    %subscription, %cause,
                    "Pub/Sub outage: no answer; /readyz unready, reconnecting by itself"
                );
                readiness.set(Component::PubSub, false);
            }
            Change::CameBack {
                lasted,
                failed_probes,
                stream_failures,
            } => {
                signals.ask_for_fresh_streams();
                tracing::info!(
                    lasted = %humantime::format_duration(round(lasted)),
                    failed_probes,
                    stream_failures,
                    "Pub/Sub answers again; outage over, streams reopened"
                );
                // After the line: whoever sees 200 can find the line.
                readiness.set(Component::PubSub, true);
            }
            Change::Fatal(failed) => {
                readiness.set(Component::PubSub, false);
                let _ = failures.send(failed);
                return;
            }
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
