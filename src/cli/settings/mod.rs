//! The settings of the command line (design §5): every setting has a flag, an `ECOM_*`
//! variable and a config-file key, and they are layered file < variables < flags.
//!
//! Owns: the table of settings ([`table`]), what they resolve to ([`values`]), their
//! flags ([`flags`]), the layering itself ([`layers`]) and its errors ([`errors`]), and the
//! Pub/Sub settings' own shape ([`pubsub`]). Must never: hold a default of its own (each is
//! written once, in the config struct it feeds), or read the process environment anywhere
//! but through the `env` function the CLI hands to [`resolve`].

pub mod errors;
pub mod flags;
pub mod layers;
pub mod pubsub;
pub mod table;
pub mod values;

pub use crate::config::{de, ConfigError, EngineConfig, RetryPolicy};
pub use errors::{LoadError, Origin, SettingError};
pub use flags::{flag_args, given_flags};
pub use layers::{locate, resolve, Resolved, Row, DEFAULT_FILE, GOOGLE_EMULATOR_VAR};
pub use table::{by_flag, by_key, Kind, Scope, Setting, SETTINGS};
pub use values::{IngestFormat, LogFormat, Settings, StoreKind, SyncArg, DEFAULT_DATA_DIR};

#[cfg(test)]
mod layering_tests;
