//! A value that must never be shown.
//!
//! Owns: [`Secret`] and how it serializes and `Debug`-formats (redacted). Must never: give its
//! text out other than through [`Secret::expose`], whose callers hand it to the driver only.

use crate::config::de;
use serde::{Deserialize, Serialize};

/// A value that must never reach a log line, an error or `--help` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// What `ecom-stream config` shows for a password that is set.
pub const REDACTED: &str = "<redacted>";

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(de::Text).map(Secret)
    }
}
