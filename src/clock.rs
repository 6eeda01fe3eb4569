//! Wall-clock time as the product records it.
//!
//! Owns: "now" in microseconds since the Unix epoch, the unit of every write timestamp,
//! `first_seen` and `received_at` (design §3, §4.3). Must never: be used to measure
//! durations (use `Instant`), since the wall clock may step.

/// Microseconds since the Unix epoch, now: the write timestamp of in-process messages and
/// the `first_seen`/`received_at` of DLQ rows.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
