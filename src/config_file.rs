//! The configuration file (design §5): TOML settings that sit below `ECOM_*` variables, which
//! sit below flags.
//!
//! Owns: finding the file (`--config PATH`, `ECOM_CONFIG`, or `ecom-stream.toml` in the
//! working directory if present), reading it, and turning each key into the `ECOM_*` variable
//! of the same setting. Must never: invent settings of its own. A key is valid exactly when a
//! flag declares that variable, so the file, the environment and the flags can never drift
//! apart, and a misspelt key fails at start instead of being ignored.
//!
//! Keys are the variable's name without `ECOM_`, in lower case; a table prefixes its name, so
//! `[cassandra] nodes = "…"` is `ECOM_CASSANDRA_NODES` and top-level `hold = "5s"` is
//! `ECOM_HOLD`. Arrays of scalars become comma-separated lists.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a setting's value is, as far as the file cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// Free text (a password, a path, a host list): only a TOML string keeps it exactly as
    /// written. `password = 1e3` would silently become "1000".
    Text,
    /// A number, a duration, a boolean, a choice: any TOML scalar, read as text.
    Scalar,
}

/// The settings a file may hold: `ECOM_*` variable → the kind of its value.
pub type Known = BTreeMap<String, ValueKind>;

/// The file name looked for in the working directory when none is given.
pub const DEFAULT_FILE: &str = "ecom-stream.toml";

/// One setting read from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSetting {
    /// The key as written in the file (`cassandra.nodes`).
    pub key: String,
    /// The variable it stands for (`ECOM_CASSANDRA_NODES`).
    pub env: String,
    pub value: String,
}

/// The settings of one file, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: Vec<FileSetting>,
}

/// Which file to read: the `--config` flag (as `--config PATH` or `--config=PATH`), else
/// `ECOM_CONFIG`, else [`DEFAULT_FILE`] if it exists. The flag is looked for before clap
/// parses, because the file's values must be in place when clap reads the environment.
/// Returns the path and whether it was asked for explicitly (then it must exist).
pub fn locate(args: &[OsString], env_config: Option<OsString>) -> Option<(PathBuf, bool)> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(s) = arg.to_str() else { continue };
        if s == "--" {
            break;
        }
        if s == "--config" {
            return iter.next().map(|p| (PathBuf::from(p), true));
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some((PathBuf::from(p), true));
        }
    }
    if let Some(p) = env_config.filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let default = PathBuf::from(DEFAULT_FILE);
    default.is_file().then_some((default, false))
}

/// Reads `path` and maps its keys onto `known` variables. Errors are one line naming the
/// file and the key.
pub fn load(path: &Path, known: &Known) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    parse(path, &text, known)
}

/// [`load`] for text already read.
pub fn parse(path: &Path, text: &str, known: &Known) -> Result<ConfigFile, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let msg = e.message().replace('\n', " ");
        let line = e
            .span()
            .map(|span| {
                format!(
                    " (line {})",
                    text[..span.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        format!("invalid config file {}{line}: {msg}", path.display())
    })?;
    let mut settings = Vec::new();
    flatten(path, "", &table, known, &mut settings)?;
    Ok(ConfigFile {
        path: path.to_path_buf(),
        settings,
    })
}

fn flatten(
    path: &Path,
    prefix: &str,
    table: &toml::Table,
    known: &Known,
    out: &mut Vec<FileSetting>,
) -> Result<(), String> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let toml::Value::Table(inner) = value {
            flatten(path, &key, inner, known, out)?;
            continue;
        }
        let env = format!("ECOM_{}", key.replace(['.', '-'], "_").to_uppercase());
        let Some(kind) = known.get(&env) else {
            return Err(format!(
                "unknown setting `{key}` in config file {} (keys are the ECOM_* variables without the prefix, in lower case; tables prefix their name)",
                path.display()
            ));
        };
        let text = |v: &toml::Value| matches!(v, toml::Value::String(_));
        let all_text = match value {
            toml::Value::Array(items) => items.iter().all(text),
            v => text(v),
        };
        if *kind == ValueKind::Text && !all_text {
            return Err(format!(
                "invalid setting `{key}` in config file {}: expected a string in quotes (`{key} = \"…\"`), since a number or boolean would not be kept exactly as written",
                path.display()
            ));
        }
        let value = scalar(value).ok_or_else(|| {
            format!(
                "invalid setting `{key}` in config file {}: expected a string, number, boolean or list of those",
                path.display()
            )
        })?;
        out.push(FileSetting { key, env, value });
    }
    Ok(())
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                toml::Value::Array(_) | toml::Value::Table(_) => None,
                v => scalar(v),
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        toml::Value::Table(_) => None,
    }
}

impl ConfigFile {
    /// The settings whose variable is not set in the environment already (the environment
    /// overrides the file).
    pub fn unset_in(&self, is_set: impl Fn(&str) -> bool) -> Vec<&FileSetting> {
        self.settings.iter().filter(|s| !is_set(&s.env)).collect()
    }

    /// The file setting behind a variable, for error messages.
    pub fn setting_for(&self, env: &str) -> Option<&FileSetting> {
        self.settings.iter().find(|s| s.env == env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known {
        [
            ("ECOM_HOLD", ValueKind::Scalar),
            ("ECOM_CASSANDRA_NODES", ValueKind::Scalar),
            ("ECOM_PUBSUB_STREAMS", ValueKind::Scalar),
            ("ECOM_CASSANDRA_PASSWORD", ValueKind::Text),
        ]
        .iter()
        .map(|(s, k)| (s.to_string(), *k))
        .collect()
    }

    #[test]
    fn text_settings_take_only_strings() {
        let err = parse(
            Path::new("x.toml"),
            "[cassandra]\npassword = 1234\n",
            &known(),
        )
        .expect_err("a number for a password");
        assert!(err.contains("`cassandra.password`"), "{err}");
        assert!(err.contains("expected a string"), "{err}");
        let file = parse(
            Path::new("x.toml"),
            "[cassandra]\npassword = \"1234\"\n",
            &known(),
        )
        .expect("a quoted password");
        assert_eq!(file.settings[0].value, "1234");
    }

    #[test]
    fn keys_map_to_variables_and_values_to_strings() {
        let text = "hold = \"7s\"\n[cassandra]\nnodes = [\"10.0.0.1:9042\", \"10.0.0.2:9042\"]\n[pubsub]\nstreams = 8\n";
        let file = parse(Path::new("x.toml"), text, &known()).expect("parses");
        let pairs: Vec<(&str, &str, &str)> = file
            .settings
            .iter()
            .map(|s| (s.key.as_str(), s.env.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (
                    "cassandra.nodes",
                    "ECOM_CASSANDRA_NODES",
                    "10.0.0.1:9042,10.0.0.2:9042"
                ),
                ("hold", "ECOM_HOLD", "7s"),
                ("pubsub.streams", "ECOM_PUBSUB_STREAMS", "8"),
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_syntax_fail_with_one_line() {
        let err = parse(Path::new("x.toml"), "hodl = \"5s\"", &known()).expect_err("unknown");
        assert!(err.contains("unknown setting `hodl`"), "{err}");
        assert!(err.contains("x.toml"), "{err}");
        let err = parse(Path::new("x.toml"), "hold = ", &known()).expect_err("syntax");
        assert!(err.starts_with("invalid config file x.toml"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = parse(Path::new("x.toml"), "hold = [[1]]", &known()).expect_err("nested");
        assert!(err.contains("invalid setting `hold`"), "{err}");
    }

    #[test]
    fn the_flag_then_the_variable_then_the_default_file() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            locate(&args(&["ecom", "--config", "a.toml", "run"]), None),
            Some((PathBuf::from("a.toml"), true))
        );
        assert_eq!(
            locate(
                &args(&["ecom", "run", "--config=b.toml"]),
                Some("c.toml".into())
            ),
            Some((PathBuf::from("b.toml"), true))
        );
        assert_eq!(
            locate(&args(&["ecom", "run"]), Some("c.toml".into())),
            Some((PathBuf::from("c.toml"), true))
        );
        // After `--`, nothing is a flag.
        assert_eq!(
            locate(
                &args(&["ecom", "--", "--config", "a.toml"]),
                Some("c.toml".into())
            ),
            Some((PathBuf::from("c.toml"), true))
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file = parse(Path::new("x.toml"), "hold = \"7s\"\n", &known()).expect("parses");
        assert!(file.unset_in(|env| env == "ECOM_HOLD").is_empty());
        assert_eq!(file.unset_in(|_| false).len(), 1);
    }
}
