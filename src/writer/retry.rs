//! Retries of store and publish calls: exponential backoff with full jitter, and only for
//! errors that say a retry can help.
//!
//! Owns: the retry loop shared by the fact writer and the dead-letter actor. Must never:
//! retry an error that is not retriable, or retry without a bound.

use crate::config::RetryPolicy;
use crate::rng::SplitMix64;
use crate::telemetry::Stats;
use std::future::Future;
use std::time::Duration;

/// An error that knows whether the same call may succeed later.
pub trait Retriable: std::fmt::Display {
    fn is_retriable(&self) -> bool;
}

impl Retriable for crate::store::StoreError {
    fn is_retriable(&self) -> bool {
        crate::store::StoreError::is_retriable(self)
    }
}

/// The wait before try number `attempt + 1` (after `attempt` failures): uniform in
/// `[0, min(max, initial * 2^(attempt-1))]` ("full jitter"), so that many writers that failed
/// together do not retry together.
pub fn backoff(policy: &RetryPolicy, attempt: u32, rng: &mut SplitMix64) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max_backoff);
    cap.mul_f64(rng.unit())
}

/// Runs `call` until it succeeds, fails with a non-retriable error, or has been tried
/// `policy.max_attempts` times.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    stats: &Stats,
    what: &'static str,
    mut call: F,
) -> Result<T, E>
where
    E: Retriable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut rng = SplitMix64::from_entropy();
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() && attempt < policy.max_attempts => {
                let wait = backoff(policy, attempt, &mut rng);
                tracing::warn!(what, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                Stats::incr(&stats.write_retries);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::cell::Cell;

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy(10);
        let mut rng = SplitMix64::new(1);
        for attempt in 1..30 {
            assert!(backoff(&p, attempt, &mut rng) <= p.max_backoff);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_retriable_errors_and_stops_at_the_bound() {
        let stats = Stats::default();
        let calls = Cell::new(0);
        let r: Result<(), StoreError> = with_retries(&policy(3), &stats, "t", || {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Unavailable("busy".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 3);

        calls.set(0);
        let r: Result<(), StoreError> = with_retries(&policy(3), &stats, "t", || {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Failed("disk full".into())) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let r: Result<u8, StoreError> = with_retries(&policy(5), &stats, "t", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(StoreError::Unavailable("busy".into()))
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
    }
}
