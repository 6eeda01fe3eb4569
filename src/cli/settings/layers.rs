//! The layers of the configuration (design §5): `PUBSUB_EMULATOR_HOST`, then the config
//! file, then the `ECOM_*` variables, then the flags given, merged by figment, which keeps
//! where every value came from.
//!
//! Owns: finding and reading the file (each key checked against the table), turning
//! variables and flags into layers, [`resolve`], and the rows `ecom-stream config` prints.
//! Must never: put anything into the process environment, or read it other than through the
//! `env` function it is given (tests and the CLI decide what the environment is).

use super::values::{derived_value, json_values, value_at};
use super::{by_flag, by_key, ConfigError, Kind, LoadError, Origin, Setting, SettingError};
use super::{Settings, SETTINGS};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The file name looked for in the working directory when none is given.
pub const DEFAULT_FILE: &str = "ecom-stream.toml";

/// The variable Google's clients read for the emulator: the layer below the file.
pub const GOOGLE_EMULATOR_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// Which file to read: the one asked for (`--config` or `ECOM_CONFIG`; it must exist), else
/// [`DEFAULT_FILE`] in the working directory if it is there.
pub fn locate(asked: Option<PathBuf>) -> Option<PathBuf> {
    match asked.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => Some(path),
        None => {
            let default = PathBuf::from(DEFAULT_FILE);
            default.is_file().then_some(default)
        }
    }
}

/// The metadata names of the layers that are not files.
const ENV_LAYER: &str = "ECOM_* variables";
const GOOGLE_LAYER: &str = "PUBSUB_EMULATOR_HOST";
const FLAG_LAYER: &str = "flags";

/// One layer of settings, as figment reads it.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Puts `value` at the dotted `key` of `dict`.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_string(), value);
        }
        Some((table, rest)) => {
            let entry = dict
                .entry(table.to_string())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// A layer of text values (variables, flags): kept as text, since only the setting's type
/// knows whether `1234` is a number or a password.
fn text_layer(
    metadata: Metadata,
    values: Vec<(&'static Setting, OsString)>,
    origin: impl Fn(&'static Setting) -> Origin,
) -> Result<Layer, SettingError> {
    let mut dict = Dict::new();
    for (setting, value) in values {
        let Some(text) = value.to_str() else {
            return Err(SettingError {
                setting,
                origin: origin(setting),
                problem: "is not valid UTF-8".into(),
                source: None,
            });
        };
        insert(&mut dict, setting.key, Value::from(text.to_string()));
    }
    Ok(Layer { metadata, dict })
}

/// The config file's settings, each key checked against [`SETTINGS`].
fn file_layer(path: &Path) -> Result<Layer, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|source: toml::de::Error| {
        let line = source
            .span()
            .map(|span| {
                format!(
                    " (line {})",
                    text[..span.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        LoadError::Syntax {
            path: path.to_path_buf(),
            line,
            message: source.message().replace('\n', " "),
            source: Box::new(source),
        }
    })?;
    check_keys(path, "", &table)?;
    let dict = match Value::serialize(&table) {
        Ok(Value::Dict(_, dict)) => dict,
        // A TOML table always serializes to a dictionary.
        _ => Dict::new(),
    };
    Ok(Layer {
        metadata: Metadata::from("config file", Source::File(path.to_path_buf())),
        dict,
    })
}

fn check_keys(path: &Path, prefix: &str, table: &toml::Table) -> Result<(), LoadError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) if by_key(&key).is_none() => check_keys(path, &key, inner)?,
            _ if by_key(&key).is_some() => {}
            _ => {
                return Err(LoadError::UnknownKey {
                    hint: elsewhere(name, &key),
                    key,
                    path: path.to_path_buf(),
                })
            }
        }
    }
    Ok(())
}

/// What figment says of a value, in our words where its own would read badly (its list of
/// variants comes with backticks already, which it wraps in another pair).
fn problem_text(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownVariant(found, expected) => format!(
            "unknown value `{found}`, expected {}",
            expected
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        other => other.to_string(),
    }
}

/// `; did you mean …?` naming the setting called `name` in another table (a top-level
/// `streams = 8` is `[pubsub] streams`), or nothing when no setting has that name.
fn elsewhere(name: &str, key: &str) -> String {
    let Some(setting) = SETTINGS
        .iter()
        .find(|s| s.key != key && s.key.rsplit('.').next() == Some(name))
    else {
        return String::new();
    };
    match setting.key.rsplit_once('.') {
        Some((table, name)) => format!("; did you mean `{name}` in the `[{table}]` table?"),
        None => format!(
            "; did you mean `{}` at the top level, outside any table?",
            setting.key
        ),
    }
}

/// The settings as the layers resolve them, and where each value came from.
#[derive(Debug)]
pub struct Resolved {
    pub settings: Settings,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    figment: Figment,
}

/// Reads the layers, lowest first: `PUBSUB_EMULATOR_HOST`, the file, the `ECOM_*`
/// variables (through `env`), the flags given.
pub fn resolve(
    file: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    flags: Vec<(&'static Setting, OsString)>,
) -> Result<Resolved, LoadError> {
    let emulator = by_key("pubsub.emulator_host")
        .into_iter()
        .filter_map(|s| env(GOOGLE_EMULATOR_VAR).map(|v| (s, v)))
        .collect();
    let google = text_layer(Metadata::named(GOOGLE_LAYER), emulator, |_| {
        Origin::Env(GOOGLE_EMULATOR_VAR)
    })?;
    let mut figment = Figment::new().merge(google);
    if let Some(path) = file {
        figment = figment.merge(file_layer(path)?);
    }
    let vars = SETTINGS
        .iter()
        .filter_map(|s| env(s.env).map(|v| (s, v)))
        .collect();
    figment = figment.merge(text_layer(Metadata::named(ENV_LAYER), vars, |s| {
        Origin::Env(s.env)
    })?);
    figment = figment.merge(text_layer(Metadata::named(FLAG_LAYER), flags, |_| {
        Origin::Flag
    })?);
    let settings = figment.extract::<Settings>().map_err(|e| {
        let key = e.path.join(".");
        match by_key(&key) {
            Some(setting) => LoadError::Setting(SettingError {
                setting,
                origin: origin_of(setting, e.metadata.as_ref()),
                problem: problem_text(&e.kind),
                source: Some(Box::new(e)),
            }),
            None => LoadError::Other(Box::new(e)),
        }
    })?;
    Ok(Resolved {
        settings,
        file: file.map(Path::to_path_buf),
        figment,
    })
}

fn origin_of(setting: &'static Setting, metadata: Option<&Metadata>) -> Origin {
    let Some(metadata) = metadata else {
        return Origin::Default;
    };
    if let Some(Source::File(path)) = &metadata.source {
        return Origin::File(path.clone());
    }
    match metadata.name.as_ref() {
        ENV_LAYER => Origin::Env(setting.env),
        GOOGLE_LAYER => Origin::Env(GOOGLE_EMULATOR_VAR),
        FLAG_LAYER => Origin::Flag,
        _ => Origin::Default,
    }
}

/// One line of `ecom-stream config`.
#[derive(Debug, Serialize)]
pub struct Row {
    pub key: &'static str,
    pub flag: String,
    pub env: &'static str,
    /// The value in effect: for a setting whose default is worked out at start (the shards,
    /// the log filter, the subscription names), what it works out to; JSON null only when
    /// unset means "none" (no deadline, no emulator); the password as `<redacted>`.
    pub value: serde_json::Value,
    pub source: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

impl Resolved {
    /// Where the value of `setting` came from.
    pub fn origin(&self, setting: &'static Setting) -> Origin {
        origin_of(setting, self.figment.find_metadata(setting.key))
    }

    /// A command's validation error about a setting, named by all three names and by where
    /// its value came from; `None` for an error about something else (a command's own flag).
    pub fn explain(&self, e: &ConfigError) -> Option<SettingError> {
        // Some settings name their variable already (`--cassandra-nodes (ECOM_…)`).
        let flag = e.setting.split_whitespace().next()?;
        let setting = by_flag(flag)?;
        Some(SettingError {
            setting,
            origin: self.origin(setting),
            problem: e.problem.clone(),
            source: Some(Box::new(e.clone())),
        })
    }

    /// Every setting with its effective value and its source, in table order.
    pub fn rows(&self) -> Vec<Row> {
        let values = json_values(&self.settings);
        SETTINGS
            .iter()
            .map(|s| Row {
                key: s.key,
                flag: format!("--{}", s.flag),
                env: s.env,
                value: match value_at(&values, s.key) {
                    serde_json::Value::Null => derived_value(&self.settings, s.key),
                    given => given.clone(),
                },
                source: self.origin(s).label(s),
                kind: s.kind,
                choices: s
                    .choices
                    .map(|c| c().iter().map(|v| v.get_name().to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }
}
