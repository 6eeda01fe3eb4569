//! Where a setting's value came from, and the errors of reading the configuration.
//!
//! Owns: [`Origin`], [`SettingError`] (one bad setting, named by its flag, variable and file
//! key and by its source) and [`LoadError`]. Must never: repeat a value that may be a secret
//! (the Cassandra password) in a message.

use super::Setting;
use std::path::PathBuf;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable (the setting's own, or `PUBSUB_EMULATOR_HOST`).
    Env(&'static str),
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::File(path) => write!(f, "set in {}", path.display()),
            Origin::Env(var) => write!(f, "set by {var}"),
            Origin::Flag => f.write_str("set by the flag"),
        }
    }
}

impl Origin {
    /// How `config` names it: `default`, `flag`, `env`, `env PUBSUB_EMULATOR_HOST`, or the
    /// file's path.
    pub fn label(&self, setting: &Setting) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File(path) => path.display().to_string(),
            Origin::Env(var) if *var == setting.env => "env".into(),
            Origin::Env(var) => format!("env {var}"),
            Origin::Flag => "flag".into(),
        }
    }
}

/// One setting whose value cannot be used: the line names the flag, the variable and the file
/// key, and where the value came from.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting --{flag} ({env}, file key `{key}`; {origin}): {problem}", flag = .setting.flag, env = .setting.env, key = .setting.key)]
pub struct SettingError {
    pub setting: &'static Setting,
    pub origin: Origin,
    pub problem: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {}{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        /// ` (line N)`, when known.
        line: String,
        /// The parser's message, on one line.
        message: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("unknown setting `{key}` in config file {}{hint} (keys are the ECOM_* variables without the prefix, in lower case; tables prefix their name)", path.display())]
    UnknownKey {
        key: String,
        path: PathBuf,
        /// `; did you mean …?` when a setting of that name lives in another table.
        hint: String,
    },
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// A figment error about no known setting (not expected: every key is checked first).
    #[error("invalid configuration: {0}")]
    Other(#[source] Box<figment::Error>),
}
