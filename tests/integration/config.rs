//! The config file (design §5): TOML below `ECOM_*` variables below flags, a misspelt key
//! fails at start, and the shipped example is valid.

use crate::cli::{assert_one_error_line, command, data_dir, int, Running, DB_FILE};
use std::path::Path;

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("ecom-stream.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn demo(dir: &Path, config: &str, extra: &[&str], env: &[(&str, &str)]) -> crate::cli::Run {
    let mut args = vec![
        "--config",
        config,
        "demo",
        "--json",
        "--orders",
        "5",
        "--payments",
        "8",
    ];
    args.extend_from_slice(extra);
    let mut cmd = command(dir, &args);
    cmd.envs(env.iter().copied());
    Running::spawn(cmd).wait()
}

#[test]
fn the_file_sits_below_variables_which_sit_below_flags() {
    let dir = data_dir();
    let d = dir.path().join("store");
    let bad = write_config(dir.path(), "hold = \"2s\"\nbatch_size = 0\n");

    // From the file: rejected, and the line says where the value came from.
    let r = demo(&d, &bad, &[], &[]).failed();
    assert_one_error_line(&r, &["--batch-size", "ECOM_BATCH_SIZE"]);
    assert!(!d.join(DB_FILE).exists(), "{r}");

    // The variable overrides the file; the flag overrides the variable.
    let r = demo(&d, &bad, &[], &[("ECOM_BATCH_SIZE", "50")]).ok();
    assert_eq!(int(&r.json()["stats"], "orders_upserted"), 5, "{r}");
    let r = demo(
        &d,
        &bad,
        &["--batch-size", "50"],
        &[("ECOM_BATCH_SIZE", "0")],
    )
    .ok();
    assert_eq!(int(&r.json()["stats"], "orders_upserted"), 5, "{r}");

    // A value that does not parse names the flag, its variable and the file's key.
    let unparsable = write_config(dir.path(), "hold = \"soon\"\n");
    let r = demo(&d, &unparsable, &[], &[]).failed();
    assert_one_error_line(&r, &["--hold", "ECOM_HOLD", "`hold`", "ecom-stream.toml"]);
}

#[test]
fn a_key_no_flag_knows_fails_at_start() {
    let dir = data_dir();
    let d = dir.path().join("store");
    for (text, needle) in [
        ("hodl = \"5s\"\n", "unknown setting `hodl`"),
        (
            "[pubsub]\nstreamz = 4\n",
            "unknown setting `pubsub.streamz`",
        ),
        ("hold = \n", "invalid config file"),
    ] {
        let config = write_config(dir.path(), text);
        let r = demo(&d, &config, &[], &[]).failed();
        assert_one_error_line(&r, &[needle]);
        assert!(!d.join(DB_FILE).exists(), "{r}");
    }
    let r = demo(&d, "/nonexistent/ecom.toml", &[], &[]).failed();
    assert_one_error_line(&r, &["cannot read config file /nonexistent/ecom.toml"]);
}

/// The shipped example names only real settings, and its values all parse: `demo` reads
/// the global and engine ones (the Pub/Sub ones are exercised by the emulator tests).
#[test]
fn the_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/ecom-stream.example.toml");
    let dir = data_dir();
    // The flag --data-dir (set by `command`) overrides the example's data_dir.
    let r = demo(&dir.path().join("store"), example, &[], &[]).ok();
    assert_eq!(int(&r.json()["stats"], "orders_upserted"), 5, "{r}");
}
