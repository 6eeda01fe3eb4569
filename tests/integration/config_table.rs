//! The whole settings table, walked (issue 10, design §5): every setting that `ecom-stream
//! config` lists is set once by its flag, once by its variable and once by its file key, and
//! `config` reports the value and where it came from; flags beat variables beat the file beat
//! the default; a bad value names the flag, the variable, the key and its source; and the
//! settings tables of `docs/configuration.md` list the same settings with the same defaults.
//!
//! Owns: the contract that every setting has all three names. Must never: hard-code the list
//! of settings (it comes from the binary), or start anything heavier than `config`.

use crate::cli::{assert_one_error_line, Run, Running};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `ecom-stream config <args…>` in `dir`, with no `ECOM_*` variable (nor
/// `PUBSUB_EMULATOR_HOST`) inherited from whoever runs the tests.
fn config(dir: &Path, args: &[String], env: &[(String, String)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecom-stream"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("ECOM_") || name == "PUBSUB_EMULATOR_HOST" {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .arg("config")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)));
    Running::spawn(cmd).wait()
}

fn text<'a>(row: &'a Value, field: &str) -> &'a str {
    row[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {row}"))
}

/// The layers, lowest first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layer {
    File,
    Env,
    Flag,
}

/// A value of the row's type for `layer` (different per layer where the type allows), as
/// typed, as a TOML literal, and as `config` prints it.
struct Sample {
    typed: String,
    toml: String,
    printed: Value,
}

fn sample(row: &Value, layer: Layer) -> Sample {
    let n = layer as u16 + 1;
    let key = text(row, "key");
    let name = format!("{layer:?}").to_lowercase();
    let quoted = |s: &str| Sample {
        typed: s.to_string(),
        toml: Value::from(s).to_string(),
        printed: Value::from(s),
    };
    match text(row, "type") {
        "duration" => quoted(&format!("{}s", 40 + n)),
        "integer" => Sample {
            typed: (40 + n).to_string(),
            toml: (40 + n).to_string(),
            printed: Value::from(40 + n),
        },
        "bool" => {
            let v = row["value"].as_bool() != Some(true);
            Sample {
                typed: v.to_string(),
                toml: v.to_string(),
                printed: Value::from(v),
            }
        }
        "enum" => {
            let choices = row["choices"]
                .as_array()
                .unwrap_or_else(|| panic!("an enum lists its choices: {row}"));
            let other = choices
                .iter()
                .filter_map(Value::as_str)
                .find(|c| Some(*c) != row["value"].as_str())
                .unwrap_or_else(|| panic!("an enum with one choice: {row}"));
            quoted(other)
        }
        "text" => quoted(&format!("{name}-{key}")),
        "secret" => Sample {
            printed: Value::from("<redacted>"),
            ..quoted(&format!("{name}-s3cret-{n}"))
        },
        "address" => quoted(&format!("127.0.0.1:{}", 40_000 + n)),
        "path" => quoted(&format!("/tmp/{name}-{key}")),
        other => panic!("a new type of setting, {other:?}: give this test a sample of it"),
    }
}

/// The config file setting every row at `layer`'s sample, by dotted keys.
fn file_text(table: &[Value]) -> String {
    table
        .iter()
        .map(|row| format!("{} = {}\n", text(row, "key"), sample(row, Layer::File).toml))
        .collect()
}

fn env_of(table: &[Value]) -> Vec<(String, String)> {
    table
        .iter()
        .map(|row| (text(row, "env").to_string(), sample(row, Layer::Env).typed))
        .collect()
}

fn flags_of(table: &[Value]) -> Vec<String> {
    table
        .iter()
        .flat_map(|row| {
            [
                text(row, "flag").to_string(),
                sample(row, Layer::Flag).typed,
            ]
        })
        .collect()
}

/// Every row of `run` has the value of `layer`'s sample and the source `source`.
fn assert_all_from(run: &Run, table: &[Value], layer: Layer, source: &str) {
    let rows = run.json_lines();
    assert_eq!(rows.len(), table.len(), "{run}");
    for (row, expected) in rows.iter().zip(table) {
        assert_eq!(row["key"], expected["key"], "same order: {run}");
        let want = sample(expected, layer);
        assert_eq!(row["value"], want.printed, "{layer:?} value of {row}");
        assert_eq!(text(row, "source"), source, "{layer:?} source of {row}");
    }
    for (layer_name, row) in [Layer::File, Layer::Env, Layer::Flag]
        .iter()
        .flat_map(|l| table.iter().map(move |r| (l, r)))
    {
        if text(row, "type") == "secret" {
            let raw = sample(row, *layer_name).typed;
            assert!(!run.stdout.contains(&raw), "a password was printed: {run}");
        }
    }
}

#[test]
fn every_setting_takes_effect_from_its_flag_its_variable_and_its_file_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // Nothing set: the table itself, every value a default.
    let defaults = config(d, &[], &[]).ok();
    let table = defaults.json_lines();
    assert!(table.len() > 40, "{defaults}");
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for row in &table {
        assert_eq!(text(row, "source"), "default", "{row}");
        assert!(text(row, "flag").starts_with("--"), "{row}");
        assert!(text(row, "env").starts_with("ECOM_"), "{row}");
        assert!(flags.insert(text(row, "flag")), "a flag twice: {row}");
        assert!(envs.insert(text(row, "env")), "a variable twice: {row}");
        assert!(keys.insert(text(row, "key")), "a key twice: {row}");
    }
    let types: BTreeSet<&str> = table.iter().map(|r| text(r, "type")).collect();
    for kind in ["duration", "integer", "enum", "text", "secret"] {
        assert!(types.contains(kind), "no {kind} setting in the table");
    }

    // Each layer alone, every setting at once.
    let file = d.join("layer.toml");
    std::fs::write(&file, file_text(&table)).expect("write config");
    let file_arg = vec!["--config".to_string(), file.display().to_string()];
    let r = config(d, &file_arg, &[]).ok();
    assert_all_from(&r, &table, Layer::File, &file.display().to_string());
    let r = config(d, &[], &env_of(&table)).ok();
    assert_all_from(&r, &table, Layer::Env, "env");
    let r = config(d, &flags_of(&table), &[]).ok();
    assert_all_from(&r, &table, Layer::Flag, "flag");

    // Precedence, for every setting (so for each type): the file found in the working
    // directory, the variables over it, the flags over both.
    std::fs::write(d.join("ecom-stream.toml"), file_text(&table)).expect("write config");
    let r = config(d, &[], &[]).ok();
    assert_all_from(&r, &table, Layer::File, "ecom-stream.toml");
    let r = config(d, &[], &env_of(&table)).ok();
    assert_all_from(&r, &table, Layer::Env, "env");
    let r = config(d, &flags_of(&table), &env_of(&table)).ok();
    assert_all_from(&r, &table, Layer::Flag, "flag");
}

#[test]
fn pubsub_emulator_host_sits_below_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let google = [("PUBSUB_EMULATOR_HOST".to_string(), "google:1".to_string())];
    let row = |run: &Run| {
        run.json_lines()
            .into_iter()
            .find(|r| r["env"] == "ECOM_PUBSUB_EMULATOR_HOST")
            .unwrap_or_else(|| panic!("no emulator host row: {run}"))
    };
    let r = config(d, &[], &google).ok();
    let host = row(&r);
    assert_eq!(host["value"], "google:1", "{r}");
    assert_eq!(host["source"], "env PUBSUB_EMULATOR_HOST", "{r}");
    let key = text(&host, "key").to_string();
    std::fs::write(d.join("ecom-stream.toml"), format!("{key} = \"file:1\"\n"))
        .expect("write config");
    let r = config(d, &[], &google).ok();
    assert_eq!(row(&r)["value"], "file:1", "{r}");
}

#[test]
fn a_bad_value_names_flag_variable_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let table = config(d, &[], &[]).ok().json_lines();
    let file = d.join("bad.toml");
    let path = file.display().to_string();
    // The first setting of each type that parses its text.
    for (kind, bad) in [
        ("duration", "soon"),
        ("integer", "lots"),
        ("address", "nowhere"),
        ("bool", "maybe"),
        ("enum", "neither"),
    ] {
        let row = table
            .iter()
            .find(|r| r["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} setting"));
        let (key, flag, env) = (text(row, "key"), text(row, "flag"), text(row, "env"));
        let key_quoted = format!("`{key}`");
        let names = [flag, env, key_quoted.as_str(), bad];

        std::fs::write(&file, format!("{key} = {}\n", Value::from(bad))).expect("write");
        let r = config(d, &["--config".into(), path.clone()], &[]).failed();
        assert_one_error_line(&r, &[&names[..], &[path.as_str()]].concat());

        let r = config(d, &[], &[(env.to_string(), bad.to_string())]).failed();
        assert_one_error_line(&r, &[&names[..], &[&format!("set by {env}")]].concat());

        let r = config(d, &[flag.to_string(), bad.to_string()], &[]).failed();
        assert_one_error_line(&r, &[&names[..], &["set by the flag"]].concat());
    }

    // Free text from the file must be a string; a password is not repeated.
    for row in table
        .iter()
        .filter(|r| r["type"] == "text" || r["type"] == "secret")
    {
        let key = text(row, "key");
        std::fs::write(&file, format!("{key} = 98765\n")).expect("write");
        let r = config(d, &["--config".into(), path.clone()], &[]).failed();
        assert_one_error_line(&r, &[text(row, "flag"), text(row, "env"), key, "string"]);
        if row["type"] == "secret" {
            assert!(
                !r.stderr.contains("98765"),
                "the password was repeated: {r}"
            );
        }
    }
}

/// A command's own check (not a parse) names the setting the same way: the engine's
/// retry backoff, one of the settings that had no flag before.
#[test]
fn a_refused_setting_names_its_source_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    for (args, env, source) in [
        (vec!["--retry-backoff", "0s"], vec![], "set by the flag"),
        (
            vec![],
            vec![("ECOM_RETRY_BACKOFF", "0s")],
            "set by ECOM_RETRY_BACKOFF",
        ),
        (
            vec!["--retry-backoff", "2s", "--retry-max-backoff", "1s"],
            vec![],
            "set by the flag",
        ),
    ] {
        let mut argv = vec!["demo", "--orders", "1", "--payments", "1"];
        argv.extend(args);
        let r = crate::cli::run_env(&data, &argv, &env).failed();
        assert_one_error_line(&r, &["--retry-", "ECOM_RETRY_", "file key `retry_", source]);
        assert!(!data.exists(), "a refused setting created the store: {r}");
    }
}

/// Where the settings tables live.
const CONFIGURATION_PAGE: &str = "docs/configuration.md";

/// The settings tables of `docs/configuration.md` have one row per setting, `| --flag |
/// ECOM_VAR | default |`, and the default is what `config` reports.
#[test]
fn the_configuration_page_lists_every_setting_with_its_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = config(dir.path(), &[], &[]).ok().json_lines();
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CONFIGURATION_PAGE);
    let tables = std::fs::read_to_string(&page).expect(CONFIGURATION_PAGE);
    let mut missing = Vec::new();
    for row in &table {
        let start = format!("| `{}` | `{}` |", text(row, "flag"), text(row, "env"));
        let Some(line) = tables.lines().find(|l| l.starts_with(&start)) else {
            missing.push(start);
            continue;
        };
        let default_cell = line[start.len()..].split('|').next().unwrap_or_default();
        let default = match &row["value"] {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        // A duration may be written another way (`60s` for `1m`): compared as durations.
        let same = if row["type"] == "duration" {
            let cell = default_cell.trim().trim_matches('`');
            humantime::parse_duration(cell).ok() == humantime::parse_duration(&default).ok()
        } else {
            default_cell.contains(&default)
        };
        assert!(
            same,
            "{CONFIGURATION_PAGE} gives {default_cell:?} as the default of {}, `config` says {default:?}",
            text(row, "flag")
        );
    }
    assert!(
        missing.is_empty(),
        "{CONFIGURATION_PAGE} rows missing: {missing:#?}"
    );
    // And no row for a setting that does not exist.
    let flags: BTreeSet<&str> = table.iter().map(|r| text(r, "flag")).collect();
    for line in tables.lines().filter(|l| l.starts_with("| `--")) {
        let flag = line[3..].split('`').next().unwrap_or_default();
        if line.contains("| `ECOM_") {
            assert!(
                flags.contains(flag),
                "{CONFIGURATION_PAGE} lists {flag}, which is no setting"
            );
        }
    }
}

/// Issue 19 (7c): the password given as a flag (readable by every user in `ps`) is warned
/// about in one line, once, whatever the command; from its variable it is not.
#[test]
fn the_password_flag_is_warned_about_once_and_the_variable_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let needle = "--cassandra-password on the command line is visible";
    let by_flag = config(
        dir.path(),
        &["--cassandra-password".into(), "s3cr3t-flag".into()],
        &[],
    )
    .ok();
    assert_eq!(by_flag.stderr.matches(needle).count(), 1, "{by_flag}");
    let warning = by_flag
        .stderr
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default();
    assert!(warning.contains("ECOM_CASSANDRA_PASSWORD"), "{by_flag}");
    assert!(!by_flag.stderr.contains("s3cr3t-flag"), "{by_flag}");
    let by_var = config(
        dir.path(),
        &[],
        &[("ECOM_CASSANDRA_PASSWORD".into(), "s3cr3t-var".into())],
    )
    .ok();
    assert!(!by_var.stderr.contains(needle), "{by_var}");
}
