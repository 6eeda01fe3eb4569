//! The Cassandra store's decisions that need no server: what a dead-letter put writes, what
//! a bump writes, which partitions an invalid-message scan reads, which error a concurrent
//! call reports.
//!
//! Owns: pure functions from what was read to what to send. Must never: do I/O. `mod.rs`
//! reads, calls these, and sends what they return, so that the contract suite and these
//! unit tests together cover the logic (design §7: keep the adapter thin).

use super::statements::{cql_to_micros, AttemptsCql, DeadLetterStateCql};
use crate::model::StreamKind;
use crate::store::{DlqEntry, StoreError};

/// What a dead-letter put writes: `None` when the stored version is newer (every cell of
/// the write would lose anyway), else the `(first_seen, attempts)` to write with the entry:
/// the stored ones when there is an entry (they belong to the entry, not to the payment
/// version), the entry's own when there is none.
pub fn dead_letter_write(
    state: Option<&DeadLetterStateCql>,
    entry: &DlqEntry,
) -> Option<(i64, i32)> {
    match state {
        Some(s) if s.event_ts.is_some_and(|ts| ts > entry.event_ts) => None,
        Some(DeadLetterStateCql {
            first_seen: Some(first_seen),
            attempts,
            ..
        }) => Some((
            cql_to_micros(*first_seen),
            attempts.unwrap_or(entry.attempts),
        )),
        _ => Some((entry.first_seen, entry.attempts)),
    }
}

/// What a bump writes: `(timestamp, attempts)` = the cell's own write time and one more, or
/// `None` when there is no entry (resolved meanwhile) or it cannot grow.
///
/// Writing at the cell's own timestamp keeps the bumped value part of the entry's version
/// (so the conditional delete of that version removes it), and Cassandra/ScyllaDB resolve
/// an equal-timestamp tie by the greater value, so the bump wins over the value it read.
pub fn bump(row: Option<&AttemptsCql>) -> Option<(i64, i32)> {
    let AttemptsCql {
        attempts: Some(attempts),
        attempts_ts: Some(ts),
    } = row?
    else {
        return None;
    };
    let next = attempts.checked_add(1)?;
    Some((*ts, next))
}

/// The partitions an invalid-message scan reads, in order, each with the message id to
/// start after: `invalid_messages` is partitioned by source, so a scan is one
/// single-partition range read per source, in `(source, message_id)` order.
pub fn invalid_scan(after: Option<&(StreamKind, String)>) -> Vec<(StreamKind, Option<&str>)> {
    [StreamKind::Orders, StreamKind::Payments]
        .into_iter()
        .filter_map(|source| match after {
            Some((s, _)) if source < *s => None,
            Some((s, id)) if source == *s => Some((source, Some(id.as_str()))),
            _ => Some((source, None)),
        })
        .collect()
}

/// `items` grouped by key, each group in its original order, groups in order of first
/// appearance: read-modify-write operations run a group sequentially, groups concurrently.
pub fn group_by_key<T, K>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Vec<&T>>
where
    K: std::hash::Hash + Eq,
{
    let mut index: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    let mut groups: Vec<Vec<&T>> = Vec::new();
    for item in items {
        let i = *index.entry(key(item)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[i].push(item);
    }
    groups
}

/// Whether a replay's delete of version `event_ts` removes the entry `state` read just
/// before it: there is one, and it is that version or an older one (`DELETE … USING
/// TIMESTAMP event_ts` removes cells written at or before it). Only then does the delete
/// count as this replay's: an entry already gone was another replay's, and a newer one
/// stays.
pub fn delete_removes(state: Option<&DeadLetterStateCql>, event_ts: i64) -> bool {
    state
        .and_then(|s| s.event_ts)
        .is_some_and(|stored| stored <= event_ts)
}

/// The error a call made of many requests reports: one that retrying cannot fix if there
/// is one (so the caller does not retry what will fail again), else the first retriable one.
pub fn first_error(results: Vec<Result<(), StoreError>>) -> Result<(), StoreError> {
    let mut first_retriable = None;
    for r in results {
        match r {
            Ok(()) => {}
            Err(e) if e.is_retriable() => {
                first_retriable.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    first_retriable.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payment;
    use scylla::value::CqlTimestamp;

    fn entry(event_ts: i64) -> DlqEntry {
        DlqEntry {
            payment: Payment {
                payment_id: 1,
                order_id: 2,
                payment_method: "m".into(),
                card_last_four: "1234".into(),
                payment_status: "s".into(),
                payment_datetime: "d".into(),
            },
            reason: "order_not_found".into(),
            first_seen: 9_000,
            attempts: 0,
            event_ts,
        }
    }

    fn state(first_seen_ms: i64, attempts: i32, event_ts: i64) -> DeadLetterStateCql {
        DeadLetterStateCql {
            first_seen: Some(CqlTimestamp(first_seen_ms)),
            attempts: Some(attempts),
            event_ts: Some(event_ts),
        }
    }

    #[test]
    fn a_new_dead_letter_is_written_with_its_own_first_seen_and_attempts() {
        assert_eq!(dead_letter_write(None, &entry(10)), Some((9_000, 0)));
    }

    #[test]
    fn a_re_put_keeps_first_seen_and_attempts_and_an_older_version_is_dropped() {
        let stored = state(100, 3, 10);
        assert_eq!(
            dead_letter_write(Some(&stored), &entry(20)),
            Some((100_000, 3))
        );
        assert_eq!(
            dead_letter_write(Some(&stored), &entry(10)),
            Some((100_000, 3)),
            "the same version again rewrites the same cells"
        );
        assert_eq!(dead_letter_write(Some(&stored), &entry(9)), None);
        // A row without first_seen (not written by ecom-stream) is treated as new.
        let partial = DeadLetterStateCql {
            first_seen: None,
            attempts: None,
            event_ts: Some(5),
        };
        assert_eq!(
            dead_letter_write(Some(&partial), &entry(10)),
            Some((9_000, 0))
        );
    }

    #[test]
    fn a_bump_writes_one_more_at_the_cells_own_timestamp() {
        let row = |a, ts| AttemptsCql {
            attempts: a,
            attempts_ts: ts,
        };
        assert_eq!(bump(Some(&row(Some(2), Some(77)))), Some((77, 3)));
        assert_eq!(bump(Some(&row(None, Some(77)))), None);
        assert_eq!(bump(Some(&row(Some(i32::MAX), Some(77)))), None);
        assert_eq!(bump(None), None);
    }

    #[test]
    fn invalid_scans_go_partition_by_partition_from_the_cursor() {
        assert_eq!(
            invalid_scan(None),
            [(StreamKind::Orders, None), (StreamKind::Payments, None)]
        );
        let after = (StreamKind::Orders, "m-7".to_string());
        assert_eq!(
            invalid_scan(Some(&after)),
            [
                (StreamKind::Orders, Some("m-7")),
                (StreamKind::Payments, None)
            ]
        );
        let after = (StreamKind::Payments, "m-1".to_string());
        assert_eq!(
            invalid_scan(Some(&after)),
            [(StreamKind::Payments, Some("m-1"))]
        );
    }

    #[test]
    fn groups_keep_first_appearance_and_inner_order() {
        let items = [(1, 'a'), (2, 'b'), (1, 'c'), (3, 'd'), (2, 'e')];
        let groups = group_by_key(&items, |(k, _)| *k);
        let shape: Vec<Vec<char>> = groups
            .iter()
            .map(|g| g.iter().map(|(_, c)| *c).collect())
            .collect();
        assert_eq!(shape, [vec!['a', 'c'], vec!['b', 'e'], vec!['d']]);
        assert!(group_by_key(&[] as &[i64], |k| *k).is_empty());
    }

    #[test]
    fn a_failure_retrying_cannot_fix_wins_over_a_retriable_one() {
        let busy = || Err(StoreError::unavailable("busy"));
        let bad = || Err(StoreError::failed("bad"));
        assert!(first_error(vec![Ok(()), Ok(())]).is_ok());
        let e = first_error(vec![busy(), Ok(()), bad(), busy()]).expect_err("failed");
        assert!(!e.is_retriable());
        let e = first_error(vec![Ok(()), busy()]).expect_err("busy");
        assert!(e.is_retriable());
    }

    #[test]
    fn a_delete_counts_only_a_version_it_removes() {
        assert!(delete_removes(Some(&state(1, 0, 10)), 10));
        assert!(delete_removes(Some(&state(1, 0, 9)), 10));
        // A newer version stays; an entry already gone was removed by someone else.
        assert!(!delete_removes(Some(&state(1, 0, 11)), 10));
        assert!(!delete_removes(None, 10));
        let partial = DeadLetterStateCql {
            first_seen: None,
            attempts: None,
            event_ts: None,
        };
        assert!(!delete_removes(Some(&partial), 10));
    }
}
