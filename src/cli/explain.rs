//! `query order ID --explain`: what the store can say about one row: each column group's
//! write time (the publish time that won last-write-wins), the dead letter of its payment
//! if one exists now, and what is not recorded anywhere.
//!
//! Owns: turning a [`StampedFact`] and the dead letters looked up for it into an
//! [`Explanation`], and its text and JSON forms. Must never: read the store (the command
//! hands it what it read), or state as known what no table records: `dlq_payments` keeps no
//! history, and nothing records whether the order cache or a store read made a join.

use super::output::{rfc3339, DlqLine};
use crate::model::PAYMENT_ID_OFFSET;
use crate::store::{DlqEntry, FactRow, StampedFact};
use serde::Serialize;
use std::io::Write;

/// What no table records, said instead of a guess.
pub(super) const NOT_RECORDED: &str = "not recorded";

/// The payment ids whose dead letter `--explain` reads for `row`: the row's own payment id,
/// and the producers' convention (`order_id + 1,000,000`) when it differs or the row has
/// no payment. `dlq_payments` is keyed by payment id, so no other can be found.
pub(super) fn payment_ids_to_look_up(row: &FactRow) -> Vec<(i64, &'static str)> {
    let mut ids = Vec::with_capacity(2);
    if let Some(id) = row.payment_id {
        ids.push((id, "the row's payment_id"));
    }
    if let Some(conventional) = row.order_id.checked_add(PAYMENT_ID_OFFSET) {
        if row.payment_id != Some(conventional) {
            ids.push((
                conventional,
                "order_id + 1000000, the producers' payment id",
            ));
        }
    }
    ids
}

/// One column group: whether it is written, and when (µs and RFC 3339).
#[derive(Debug, Serialize)]
pub(super) struct Group {
    written: bool,
    write_ts_us: Option<i64>,
    write_time: Option<String>,
}

impl Group {
    fn of(ts: Option<i64>) -> Group {
        Group {
            written: ts.is_some(),
            write_ts_us: ts,
            write_time: ts.map(rfc3339),
        }
    }
}

/// A dead letter as it stands now, with the publish time of the version it holds.
#[derive(Debug, Serialize)]
pub(super) struct EntryView<'a> {
    #[serde(flatten)]
    line: DlqLine<'a>,
    event_ts_us: i64,
    #[serde(skip)]
    entry: &'a DlqEntry,
}

/// One dead-letter lookup: which payment id, why that one, and the entry if there is one.
#[derive(Debug, Serialize)]
pub(super) struct Lookup<'a> {
    payment_id: i64,
    looked_up_as: &'static str,
    entry: Option<EntryView<'a>>,
}

/// Everything `--explain` prints.
#[derive(Debug, Serialize)]
pub(super) struct Explanation<'a> {
    order_id: i64,
    row: &'a FactRow,
    order_columns: Group,
    payment_columns: Group,
    dead_letters: Vec<Lookup<'a>>,
    joined_by: &'static str,
    notes: Vec<String>,
}

/// The explanation of `fact`, given the dead letters read for
/// [`payment_ids_to_look_up`] (same order).
pub(super) fn explain<'a>(
    fact: &'a StampedFact,
    looked_up: &'a [(i64, &'static str, Option<DlqEntry>)],
) -> Explanation<'a> {
    let row = &fact.row;
    let mut notes = Vec::new();
    if fact.order_ts.is_none() {
        notes.push(
            "the order columns were never written: no order message has been stored for this id"
                .to_string(),
        );
    }
    for (id, _, entry) in looked_up {
        notes.push(note(fact, *id, entry.as_ref()));
    }
    notes.push(format!(
        "whether the order cache or a store read joined the payment is {NOT_RECORDED}: no table keeps it"
    ));
    Explanation {
        order_id: row.order_id,
        row,
        order_columns: Group::of(fact.order_ts),
        payment_columns: Group::of(fact.payment_ts),
        dead_letters: looked_up
            .iter()
            .map(|(id, why, entry)| Lookup {
                payment_id: *id,
                looked_up_as: why,
                entry: entry.as_ref().map(|e| EntryView {
                    line: DlqLine::from(e),
                    event_ts_us: e.event_ts,
                    entry: e,
                }),
            })
            .collect(),
        joined_by: NOT_RECORDED,
        notes,
    }
}

/// What one lookup lets us say, and what it does not.
fn note(fact: &StampedFact, id: i64, entry: Option<&DlqEntry>) -> String {
    let in_row = fact.row.payment_id == Some(id);
    match (in_row, entry, fact.payment_ts) {
        (true, Some(e), Some(ts)) if e.event_ts == ts => format!(
            "payment {id} is in the row and still dead-lettered, at the same publish time: a \
             replay wrote it and has not removed the entry yet, or another delivery joined \
             once the order was there; the next `dlq replay` writes it again (no change) and \
             removes the entry"
        ),
        (true, Some(e), Some(ts)) if e.event_ts > ts => format!(
            "a newer version of payment {id} (published {}) is dead-lettered; the row holds \
             the one published {} until `dlq replay` joins the newer one",
            rfc3339(e.event_ts),
            rfc3339(ts)
        ),
        (true, Some(_), _) => format!(
            "an older version of payment {id} is dead-lettered; the row holds a newer one, \
             which replaying the older never replaces (last write wins)"
        ),
        (true, None, _) => format!(
            "payment {id} has no dead letter now: it joined in time, or it was dead-lettered \
             and later replayed (replay removes the entry); which of the two is {NOT_RECORDED}, \
             since dead letters keep no history"
        ),
        (false, Some(e), _) => {
            let order = if fact.order_ts.is_some() {
                "the order columns are there now, so the next `dlq replay` joins it"
            } else {
                "the order columns are not there either; `dlq replay` joins it once they are"
            };
            format!(
                "payment {id} is dead-lettered ({}, first seen {}, {} replay attempts): its \
                 order was not found within the hold; {order}",
                e.reason,
                rfc3339(e.first_seen),
                e.attempts
            )
        }
        (false, None, _) => format!(
            "no dead letter for payment {id} now: it never came, is still held by a running \
             pipeline, was replayed into another row's payment, or the payment carries another \
             id (dead letters are found by payment id only)"
        ),
    }
}

/// The human-readable form.
pub(super) fn write_text(out: &mut impl Write, x: &Explanation<'_>) -> std::io::Result<()> {
    writeln!(out, "order {}", x.order_id)?;
    let group = |g: &Group| match (&g.write_time, g.write_ts_us) {
        (Some(time), Some(us)) => format!("written at {time} ({us} µs, the publish time that won)"),
        _ => "not written".to_string(),
    };
    writeln!(out, "  order columns    {}", group(&x.order_columns))?;
    let payment = match x.row.payment_id {
        Some(id) => format!("payment {id}, {}", group(&x.payment_columns)),
        None => group(&x.payment_columns),
    };
    writeln!(out, "  payment columns  {payment}")?;
    for l in &x.dead_letters {
        let entry = match &l.entry {
            Some(e) => format!(
                "present: reason {}, first seen {}, attempts {}, payment published {}",
                e.entry.reason,
                rfc3339(e.entry.first_seen),
                e.entry.attempts,
                rfc3339(e.event_ts_us)
            ),
            None => "none now".to_string(),
        };
        writeln!(
            out,
            "  dead letter      payment {} ({}): {entry}",
            l.payment_id, l.looked_up_as
        )?;
    }
    writeln!(
        out,
        "  joined by        {} (order cache or store read)",
        x.joined_by
    )?;
    writeln!(out, "  what this says")?;
    for n in &x.notes {
        writeln!(out, "    - {n}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Payment;

    fn fact(order_ts: Option<i64>, payment: Option<i64>, payment_ts: Option<i64>) -> StampedFact {
        StampedFact {
            row: FactRow {
                order_id: 7,
                customer_id: order_ts.map(|_| 1),
                item: None,
                quantity: None,
                price: None,
                shipping_address: None,
                order_status: None,
                creation_date: None,
                payment_id: payment,
                payment_method: None,
                card_last_four: None,
                payment_status: None,
                payment_datetime: None,
            },
            order_ts,
            payment_ts,
        }
    }

    fn entry(id: i64, event_ts: i64) -> DlqEntry {
        DlqEntry {
            payment: Payment {
                payment_id: id,
                order_id: 7,
                payment_method: "Card".into(),
                card_last_four: "1234".into(),
                payment_status: "Completed".into(),
                payment_datetime: "2024-05-01T13:50:00Z".into(),
            },
            reason: "order_not_found".into(),
            first_seen: 5,
            attempts: 2,
            event_ts,
        }
    }

    #[test]
    fn looks_up_the_rows_payment_and_the_conventional_id_once_each() {
        let f = fact(Some(1), Some(1_000_007), Some(2));
        assert_eq!(payment_ids_to_look_up(&f.row).len(), 1);
        let f = fact(Some(1), Some(55), Some(2));
        let ids: Vec<i64> = payment_ids_to_look_up(&f.row).iter().map(|p| p.0).collect();
        assert_eq!(ids, [55, 1_000_007]);
        let f = fact(Some(1), None, None);
        let ids: Vec<i64> = payment_ids_to_look_up(&f.row).iter().map(|p| p.0).collect();
        assert_eq!(ids, [1_000_007]);
    }

    #[test]
    fn each_case_says_what_is_known_and_what_is_not() {
        let cases = [
            (
                fact(Some(1), Some(1_000_007), Some(9)),
                Some(entry(1_000_007, 9)),
                "has not removed the entry yet",
            ),
            (
                fact(Some(1), Some(1_000_007), Some(9)),
                Some(entry(1_000_007, 12)),
                "a newer version",
            ),
            (
                fact(Some(1), Some(1_000_007), Some(9)),
                Some(entry(1_000_007, 3)),
                "an older version",
            ),
            (
                fact(Some(1), Some(1_000_007), Some(9)),
                None,
                "which of the two is not recorded",
            ),
            (
                fact(Some(1), None, None),
                Some(entry(1_000_007, 3)),
                "the next `dlq replay` joins it",
            ),
            (
                fact(None, None, None),
                Some(entry(1_000_007, 3)),
                "not there either",
            ),
            (
                fact(Some(1), None, None),
                None,
                "no dead letter for payment 1000007",
            ),
        ];
        for (f, e, expected) in cases {
            let looked_up = [(1_000_007, "why", e)];
            let x = explain(&f, &looked_up);
            let text = x.notes.join("\n");
            assert!(text.contains(expected), "{expected:?} not in {text}");
            assert!(
                text.contains("joined the payment is not recorded"),
                "{text}"
            );
            assert_eq!(x.joined_by, NOT_RECORDED);
        }
    }
}
