//! The write timestamp of a record read from a file (design §4.3, README "ingest").
//!
//! Owns: turning a `--timestamp-field` value into µs since the epoch (RFC 3339 text, or an
//! integer of µs), and the default stamp (the file's modification time plus the record's
//! line). Must never: read the clock: a rerun of the same file must give the same stamps,
//! or it would not converge to the same rows.

use std::time::{SystemTime, UNIX_EPOCH};

/// The last µs of the year 9999, the latest time RFC 3339 can write. A larger integer is
/// almost surely nanoseconds given as µs: taken as µs it would stamp the row for the year
/// 56,000, and every later correct write to it would lose.
pub const LATEST_US: i64 = 253_402_300_799_999_999;

fn in_range(us: i64) -> bool {
    (1..=LATEST_US).contains(&us)
}

/// The default write timestamp of the record on `line` of a file modified at `mtime_us`:
/// later lines win over earlier ones of the same file, and a rerun stamps alike.
pub fn positional(mtime_us: i64, line: u64) -> i64 {
    mtime_us.saturating_add(line.min(i64::MAX as u64) as i64)
}

/// A file's modification time in µs since the epoch (0 for a time before it).
pub fn micros_of(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// A JSON field's value: an integer of µs since the epoch, or RFC 3339 text.
pub fn from_json(value: &serde_json::Value) -> Result<i64, String> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().filter(|us| in_range(*us)).ok_or_else(|| {
            format!("{n} is not an integer of µs since the epoch (1 to {LATEST_US}, the year 9999)")
        }),
        serde_json::Value::String(s) => from_text(s),
        other => Err(format!(
            "{other} is neither RFC 3339 text nor µs since the epoch"
        )),
    }
}

/// A CSV cell (or JSON string): digits are µs since the epoch, anything else RFC 3339.
pub fn from_text(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .filter(|us| in_range(*us))
            .ok_or_else(|| {
                format!(
                    "{text} is not an integer of µs since the epoch (1 to {LATEST_US}, the year 9999)"
                )
            });
    }
    rfc3339(text)
        .filter(|us| in_range(*us))
        .ok_or_else(|| format!("{text:?} is not an RFC 3339 time between 1970 and 9999"))
}

/// RFC 3339 with `Z` or a `±HH:MM` offset. humantime reads the UTC form; an offset is
/// taken off here and applied after.
fn rfc3339(text: &str) -> Option<i64> {
    let (utc, offset_s) = split_offset(text)?;
    let time = humantime::parse_rfc3339(&format!("{utc}Z")).ok()?;
    let us = time.duration_since(UNIX_EPOCH).ok()?.as_micros();
    i64::try_from(us).ok()?.checked_sub(offset_s * 1_000_000)
}

/// `2024-05-01T13:45:10+02:00` → (`2024-05-01T13:45:10`, 7200).
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(utc) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        return Some((utc, 0));
    }
    // `split_at_checked`: the cut may fall inside a multi-byte character of any text.
    let (head, tail) = text.split_at_checked(text.len().checked_sub(6)?)?;
    let sign = match tail.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = tail[1..].split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    Some((head, sign * (h * 3600 + m * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rfc3339_with_any_offset_and_integer_micros() {
        let z = from_text("2024-05-01T13:45:10Z").unwrap();
        assert_eq!(z, 1_714_571_110_000_000);
        assert_eq!(from_text("2024-05-01T15:45:10+02:00"), Ok(z));
        assert_eq!(from_text("2024-05-01T12:45:10-01:00"), Ok(z));
        assert_eq!(from_text("2024-05-01T13:45:10.5Z"), Ok(z + 500_000));
        assert_eq!(from_json(&json!(z)), Ok(z));
        assert_eq!(from_json(&json!("2024-05-01T13:45:10Z")), Ok(z));
        assert_eq!(from_text(" 1714571110000000 "), Ok(z));
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01 13:45:10",
            "0",
            "2024年5月1日",
            "年5月1日+02:00",
            "1714571110000000000",
            "9999-12-31T23:59:59-01:00",
        ] {
            assert!(from_text(bad).is_err(), "{bad:?}");
        }
        assert_eq!(from_text("9999-12-31T23:59:59.999999Z"), Ok(LATEST_US));
        for bad in [
            json!(-5),
            json!(1.5),
            json!(null),
            json!(true),
            json!("x"),
            json!(1_714_571_110_000_000_000_i64),
        ] {
            assert!(from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn positional_stamps_follow_lines() {
        assert_eq!(positional(1_000, 1), 1_001);
        assert!(positional(1_000, 2) > positional(1_000, 1));
    }
}
