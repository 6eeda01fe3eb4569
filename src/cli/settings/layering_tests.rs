//! Tests of the layered configuration: the table against [`Settings`], the order of the
//! layers, and the errors' wording.

use super::values::json_values;
use super::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_object() {
                leaves(&key, v, out);
            } else {
                out.push(key);
            }
        }
    }
}

#[test]
fn every_setting_has_one_row_and_valid_defaults() {
    let mut keys = Vec::new();
    leaves("", &json_values(&Settings::default()), &mut keys);
    let mut table: Vec<String> = SETTINGS.iter().map(|s| s.key.to_string()).collect();
    keys.sort();
    table.sort();
    assert_eq!(keys, table, "Settings' fields and SETTINGS differ");
    for s in SETTINGS {
        assert_eq!(
            s.env,
            format!("ECOM_{}", s.key.replace('.', "_").to_uppercase()),
            "{s:?}"
        );
        assert_eq!(SETTINGS.iter().filter(|t| t.flag == s.flag).count(), 1);
        assert!(!s.flag.contains('_'), "{s:?}");
        assert_eq!(s.kind == Kind::Enum, s.choices.is_some(), "{s:?}");
        assert!(!s.scope.commands().is_empty() || s.scope == Scope::Global);
    }
    let d = Settings::default();
    d.engine().validate().expect("engine defaults");
    d.pubsub().to_config().expect("pubsub defaults");
    d.cassandra.to_config().expect("cassandra defaults");
    assert_eq!(d.engine(), EngineConfig::default());
}

#[test]
fn nothing_set_resolves_to_the_defaults() {
    let r = resolve(None, no_env, Vec::new()).expect("defaults");
    assert_eq!(r.settings, Settings::default());
    assert!(r.rows().iter().all(|row| row.source == "default"));
}

#[test]
fn flags_over_variables_over_the_file_over_the_google_variable() {
    let (_dir, path) = file(
        "hold = \"7s\"\nbatch_size = 7\n[pubsub]\nemulator_host = \"file:1\"\nstreams = \"3\"\n[cassandra]\nnodes = [\"a:1\", \"b:2\"]\n",
    );
    let env = |var: &str| -> Option<OsString> {
        match var {
            "ECOM_BATCH_SIZE" => Some("8".into()),
            "ECOM_HOLD" => Some("8s".into()),
            "PUBSUB_EMULATOR_HOST" => Some("google:1".into()),
            _ => None,
        }
    };
    let hold = by_key("hold").expect("hold");
    let r = resolve(Some(&path), env, vec![(hold, "9s".into())]).expect("resolves");
    assert_eq!(r.settings.hold, Duration::from_secs(9));
    assert_eq!(r.origin(hold), Origin::Flag);
    assert_eq!(r.settings.batch_size, 8);
    let batch = by_key("batch_size").expect("batch");
    assert_eq!(r.origin(batch), Origin::Env("ECOM_BATCH_SIZE"));
    assert_eq!(r.settings.pubsub.streams, 3, "a number as a string");
    assert_eq!(r.settings.pubsub.emulator_host.as_deref(), Some("file:1"));
    assert_eq!(r.settings.cassandra.cassandra_nodes, "a:1,b:2");
    let nodes = by_key("cassandra.nodes").expect("nodes");
    assert_eq!(r.origin(nodes), Origin::File(path.clone()));
    // Without the file, PUBSUB_EMULATOR_HOST is the emulator.
    let r = resolve(None, env, Vec::new()).expect("resolves");
    assert_eq!(r.settings.pubsub.emulator_host.as_deref(), Some("google:1"));
    let host = by_key("pubsub.emulator_host").expect("host");
    assert_eq!(r.origin(host).label(host), "env PUBSUB_EMULATOR_HOST");
}

#[test]
fn a_bad_value_names_the_flag_the_variable_the_key_and_the_source() {
    let (_dir, path) = file("[pubsub]\nmax_lease = \"soon\"\n");
    let e = resolve(Some(&path), no_env, Vec::new()).expect_err("bad duration");
    let line = e.to_string();
    for needle in [
        "--pubsub-max-lease",
        "ECOM_PUBSUB_MAX_LEASE",
        "`pubsub.max_lease`",
        &path.display().to_string(),
        "\"soon\"",
    ] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    let env = |var: &str| (var == "ECOM_PENDING_CAPACITY").then(|| OsString::from("lots"));
    let line = resolve(None, env, Vec::new())
        .expect_err("bad int")
        .to_string();
    assert!(line.contains("set by ECOM_PENDING_CAPACITY"), "{line}");
    assert!(line.contains("\"lots\""), "{line}");
    let store = by_key("store").expect("store");
    let line = resolve(None, no_env, vec![(store, "mongodb".into())])
        .expect_err("bad enum")
        .to_string();
    assert!(line.contains("set by the flag"), "{line}");
    assert!(line.contains("mongodb"), "{line}");
}

#[test]
fn text_settings_take_only_strings_and_never_repeat_a_password() {
    let (_dir, path) = file("[cassandra]\npassword = 1234\n");
    let line = resolve(Some(&path), no_env, Vec::new())
        .expect_err("a number for a password")
        .to_string();
    assert!(line.contains("`cassandra.password`"), "{line}");
    assert!(line.contains("expected a string"), "{line}");
    assert!(!line.contains("1234"), "{line}");
    // From a variable, text is text.
    let env = |var: &str| (var == "ECOM_CASSANDRA_PASSWORD").then(|| OsString::from("1234"));
    let r = resolve(None, env, Vec::new()).expect("a numeric password");
    let password = r
        .settings
        .cassandra
        .cassandra_password
        .as_ref()
        .expect("set");
    assert_eq!(password.expose(), "1234");
    let row = r
        .rows()
        .into_iter()
        .find(|row| row.key == "cassandra.password")
        .expect("row");
    assert_eq!(row.value, "<redacted>");
    assert_eq!(row.source, "env");
}

#[test]
fn unknown_keys_and_bad_syntax_fail_with_one_line() {
    for (text, needle) in [
        ("hodl = \"5s\"", "unknown setting `hodl`"),
        ("[pubsub]\nstreamz = 4", "unknown setting `pubsub.streamz`"),
        (
            "streams = 8",
            "x.toml; did you mean `streams` in the `[pubsub]` table?",
        ),
        (
            "[pubsub]\nhold = \"5s\"",
            "did you mean `hold` at the top level, outside any table?",
        ),
        ("hold = ", "invalid config file"),
        ("hold = [[1]]", "`hold`"),
    ] {
        let (_dir, path) = file(text);
        let line = resolve(Some(&path), no_env, Vec::new())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(line.contains(needle), "{text}: {line}");
        assert!(line.contains("x.toml"), "{text}: {line}");
        assert!(!line.contains('\n'), "{text}: {line}");
    }
    let e = resolve(Some(Path::new("/nonexistent/e.toml")), no_env, Vec::new())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with("cannot read config file /nonexistent/e.toml"),
        "{e}"
    );
}

#[test]
fn a_validation_error_is_explained_by_its_setting() {
    let env = |var: &str| (var == "ECOM_RETRY_BACKOFF").then(|| OsString::from("0s"));
    let r = resolve(None, env, Vec::new()).expect("parses");
    let e = r.settings.engine().validate().expect_err("zero backoff");
    let line = r.explain(&e).expect("a setting").to_string();
    assert_eq!(
        line,
        "invalid setting --retry-backoff (ECOM_RETRY_BACKOFF, file key `retry_backoff`; \
         set by ECOM_RETRY_BACKOFF): must be longer than 0s"
    );
    let cassandra = ConfigError {
        setting: "--cassandra-nodes (ECOM_CASSANDRA_NODES)",
        problem: "names no node".into(),
    };
    let line = r.explain(&cassandra).expect("a setting").to_string();
    assert_eq!(line.matches("ECOM_CASSANDRA_NODES").count(), 1, "{line}");
    let own = ConfigError {
        setting: "--every",
        problem: "x".into(),
    };
    assert!(r.explain(&own).is_none());
}

/// Every free-text setting of the table (text, secret, path) refuses a TOML number or
/// boolean, naming its file key and the type it expects, and never echoing the value.
#[test]
fn every_text_setting_refuses_a_number_or_boolean_in_the_file() {
    let text_kinds = [Kind::Text, Kind::Secret, Kind::Path];
    let texts: Vec<&Setting> = SETTINGS
        .iter()
        .filter(|s| text_kinds.contains(&s.kind))
        .collect();
    assert!(texts.len() >= 20, "the table lost its text settings");
    for s in texts {
        let (table, key) = match s.key.rsplit_once('.') {
            Some((table, key)) => (format!("[{table}]\n"), key),
            None => (String::new(), s.key),
        };
        for value in ["1234", "12.5", "true"] {
            let (_dir, path) = file(&format!("{table}{key} = {value}\n"));
            let line = match resolve(Some(&path), no_env, Vec::new()) {
                Ok(_) => panic!("{} = {value} was accepted", s.key),
                Err(e) => e.to_string(),
            };
            assert!(line.contains(&format!("`{}`", s.key)), "{line}");
            assert!(line.contains("expected a string"), "{line}");
            assert!(!line.contains(value), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
