//! Secrets (passwords, credentials) that must never reach a log line or printed settings.
//!
//! Owns: [`Secret`], a string whose `Debug`, `Display` and `Serialize` all print
//! `[redacted]`. Must never: hand out its value except through [`Secret::expose`], which is
//! meant for the one place that sends it to its server (a driver's auth call).
//!
//! Use it for every credential in a config struct or clap args (`value_parser` works through
//! `FromStr`), so `{:?}` of the whole config, a `tracing` field or a JSON dump of the
//! settings stays safe.

use serde::{Serialize, Serializer};

const REDACTED: &str = "[redacted]";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself: only for handing it to the server that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        #[derive(Debug, Serialize)]
        struct Settings {
            user: String,
            password: Secret,
        }
        let s = Settings {
            user: "ecom".into(),
            password: "hunter2".parse().unwrap_or_default(),
        };
        for printed in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{}", s.password),
            serde_json::to_string(&s).unwrap_or_default(),
        ] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert_eq!(s.password.expose(), "hunter2");
    }
}
