//! The last few invalid payloads' reasons, for the status page: what was rejected, from
//! which source, and when.
//!
//! Owns: [`RecentInvalid`], a ring of the last [`RECENT_INVALID`] reasons. Must never: keep a
//! payload (the reason, the source, the message id and the time are all it stores, the reason
//! cut to [`REASON_CHARS`]), grow past its bound, or hold its lock for more than a copy.

use super::lock;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Reasons kept.
pub const RECENT_INVALID: usize = 5;

/// Characters of a reason kept (a decoder's message can quote a field of the payload; the
/// full reason is in the `invalid_messages` table).
pub const REASON_CHARS: usize = 160;

/// One rejected payload, without the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidNote {
    /// The topic it came from (`orders`, `payments`).
    pub source: &'static str,
    pub message_id: String,
    /// Why it was rejected, cut to [`REASON_CHARS`].
    pub reason: String,
    /// When it was rejected, µs since the Unix epoch.
    pub at_micros: i64,
}

/// The ring; newest last.
#[derive(Debug, Default)]
pub struct RecentInvalid {
    notes: Mutex<VecDeque<InvalidNote>>,
}

impl RecentInvalid {
    /// Remembers a rejection, forgetting the oldest beyond [`RECENT_INVALID`].
    pub fn push(&self, source: &'static str, message_id: &str, reason: &str, at_micros: i64) {
        let mut reason_cut: String = reason.chars().take(REASON_CHARS).collect();
        if reason_cut.len() < reason.len() {
            reason_cut.push('…');
        }
        let note = InvalidNote {
            source,
            message_id: message_id.chars().take(REASON_CHARS).collect(),
            reason: reason_cut,
            at_micros,
        };
        let mut notes = lock(&self.notes);
        if notes.len() == RECENT_INVALID {
            notes.pop_front();
        }
        notes.push_back(note);
    }

    /// The notes kept, oldest first.
    pub fn snapshot(&self) -> Vec<InvalidNote> {
        lock(&self.notes).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_few_and_cuts_long_reasons() {
        let r = RecentInvalid::default();
        for i in 0..8 {
            r.push("payments", &format!("m{i}"), &"x".repeat(i * 100), i as i64);
        }
        let notes = r.snapshot();
        assert_eq!(notes.len(), RECENT_INVALID);
        assert_eq!(notes[0].message_id, "m3");
        assert_eq!(notes[4].message_id, "m7");
        assert_eq!(notes[4].reason.chars().count(), REASON_CHARS + 1);
        assert!(notes[4].reason.ends_with('…'));
        assert_eq!(notes[1].reason.chars().count(), REASON_CHARS + 1);
        assert_eq!(notes[0].reason.chars().count(), REASON_CHARS + 1);
    }
}
