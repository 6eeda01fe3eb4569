//! Retries: exponential backoff with full jitter, and only for errors that say a retry can
//! help. A ground-floor module: the fact writer, the dead-letter actor and the Cassandra
//! session's connect loop all use it.
//!
//! Owns: the backoff rule, the [`Retriable`] trait and the retry loop. Must never: import
//! `store` or `telemetry` (they import this; callers count retries through the `on_retry`
//! callback), retry an error that is not retriable, or retry without a bound.

use crate::config::RetryPolicy;
use crate::rng::SplitMix64;
use std::future::Future;
use std::time::Duration;

/// An error that knows whether the same call may succeed later.
pub trait Retriable: std::error::Error {
    fn is_retriable(&self) -> bool;
}

/// `e` and its sources on one line, `: `-separated (as anyhow's `{:#}`), for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
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

/// The wait before try number `attempt + 1` of a loop that does not give up (a store
/// outage): uniform in `[cap/2, cap]` with `cap = min(max, initial * 2^(attempt-1))`, so
/// the waits grow to the cap instead of staying near zero half the time, and still spread.
pub fn backoff_from_half(policy: &RetryPolicy, attempt: u32, rng: &mut SplitMix64) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max_backoff);
    cap.mul_f64(0.5 + rng.unit() / 2.0)
}

/// Runs `call` until it succeeds, fails with a non-retriable error, or has been tried
/// `policy.max_attempts` times. `on_retry` runs once per retry (before its wait): the
/// caller's counter.
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &'static str,
    mut on_retry: impl FnMut(),
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
                tracing::warn!(what, attempt, error = %chain(&e), wait_ms = wait.as_millis() as u64, "retrying");
                on_retry();
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
    use std::cell::Cell;

    #[derive(Debug)]
    enum TestError {
        Busy,
        DiskFull,
    }

    impl std::fmt::Display for TestError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    impl std::error::Error for TestError {}

    impl Retriable for TestError {
        fn is_retriable(&self) -> bool {
            matches!(self, TestError::Busy)
        }
    }

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
            let held = backoff_from_half(&p, attempt, &mut rng);
            assert!(held <= p.max_backoff);
        }
        // Past the cap the outage wait never drops below half of it.
        assert!(backoff_from_half(&p, 10, &mut rng) >= p.max_backoff / 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_only_retriable_errors_and_stops_at_the_bound() {
        let retries = Cell::new(0);
        let on_retry = || retries.set(retries.get() + 1);
        let calls = Cell::new(0);
        let r: Result<(), TestError> = with_retries(&policy(3), "t", on_retry, || {
            calls.set(calls.get() + 1);
            async { Err(TestError::Busy) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 3);
        assert_eq!(retries.get(), 2, "one retry counted per wait");

        calls.set(0);
        let r: Result<(), TestError> = with_retries(&policy(3), "t", on_retry, || {
            calls.set(calls.get() + 1);
            async { Err(TestError::DiskFull) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1);

        calls.set(0);
        let r: Result<u8, TestError> = with_retries(&policy(5), "t", on_retry, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(TestError::Busy)
                } else {
                    Ok(7)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
    }
}
