//! The README's walkthroughs, run as written (issue 20): a newcomer who follows one top to
//! bottom, alone, must get exactly the numbers it promises. Each fenced `sh` block of the
//! README whose first line is `# walkthrough: NAME` is run with `bash` (`set -euo pipefail`)
//! in a fresh temporary directory, and every line whose comment starts with a number must
//! print that number.
//!
//! The only changes made to a block: `cargo run --release --` becomes this test's binary,
//! `scripts/` the repository's scripts, the emulator's `127.0.0.1:8085` the address of an
//! emulator started for that walkthrough alone (a `run` leaves dead streams that the
//! emulator keeps feeding for its lifetime, so walkthroughs never share one), and for the
//! Cassandra walkthrough `127.0.0.1:9042` the test binary's node, whose
//! `scripts/cassandra-node` lines are skipped (the harness started the node). The
//! walkthrough makes its own fresh keyspace; the node is discarded with the test binary.
//! And `ECOM_METRICS_ADDR=127.0.0.1:0`: walkthroughs run side by side (and beside other
//! tests), so their `run`s cannot all have the default port 9464.
//!
//! Owns: keeping the README's walkthroughs true. Must never: change what a walkthrough
//! does beyond those substitutions, or check a number the README does not print.

use crate::cassandra_node::{node, repo_root};
use crate::cli::{Run, Running};
use crate::emulator::OwnEmulator;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A walkthrough runs `setup`, two `produce`, a `run` that waits out the 5 s hold and its
/// idle time, and the checks, each a debug-build process on a loaded 2-core machine; into
/// Cassandra, `setup` also waits for schema agreement. A hang guard, not a measurement.
const WALKTHROUGH_LIMIT: Duration = Duration::from_secs(300);

/// What the README promises each walkthrough prints, in order.
const PROMISES: [(&str, &[u64]); 3] = [
    ("demo", &[80, 420, 6]),
    ("pubsub", &[80, 420, 420]),
    ("cassandra", &[80, 420, 420]),
];

/// One marked block of the README.
#[derive(Debug)]
struct Walkthrough {
    name: String,
    lines: Vec<String>,
}

fn readme_walkthroughs() -> Vec<Walkthrough> {
    let path = repo_root().join("README.md");
    let readme =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in readme.lines() {
        match block.as_mut() {
            None if line.trim_start() == "```sh" => block = Some(Vec::new()),
            None => {}
            Some(lines) if line.trim_start() == "```" => {
                if let Some(name) = lines
                    .first()
                    .and_then(|l| l.strip_prefix("# walkthrough: "))
                {
                    out.push(Walkthrough {
                        name: name.trim().to_string(),
                        lines: lines[1..].to_vec(),
                    });
                }
                block = None;
            }
            Some(lines) => lines.push(line.to_string()),
        }
    }
    out
}

fn walkthrough(name: &str) -> Walkthrough {
    readme_walkthroughs()
        .into_iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("the README has no block marked `# walkthrough: {name}`"))
}

/// A line's command, and the number its comment promises it prints: a comment that starts
/// with a number followed by a space, a colon or nothing (`# 80 joined rows`, `# 420: …`;
/// not `# 127.0.0.1:9042`). Commands and comments are set apart by two spaces before `#`.
fn promise(line: &str) -> (&str, Option<u64>) {
    let Some(at) = line.find("  #") else {
        return (line, None);
    };
    let (cmd, comment) = (line[..at].trim_end(), line[at + 3..].trim_start());
    let number: String = comment
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .collect();
    let ends_there = matches!(
        comment[number.len()..].chars().next(),
        None | Some(' ' | ':')
    );
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    (
        cmd,
        if ends_there {
            digits.parse().ok()
        } else {
            None
        },
    )
}

/// The promised numbers of a walkthrough, in order.
fn promises(w: &Walkthrough) -> Vec<u64> {
    w.lines.iter().filter_map(|l| promise(l).1).collect()
}

/// The block as a bash script: the substitutions of the module doc, lines starting with
/// one of `skip` left out, and each promising line's output captured as `CHECK N|OUTPUT`.
fn script(w: &Walkthrough, subs: &[(&str, &str)], skip: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_ecom-stream");
    let scripts = format!("{}/scripts/", repo_root().display());
    let mut out = String::from("set -euo pipefail\n");
    for line in &w.lines {
        let trimmed = line.trim_start();
        if trimmed.is_empty()
            || trimmed.starts_with('#')
            || skip.iter().any(|s| trimmed.starts_with(s))
        {
            continue;
        }
        let (cmd, promised) = promise(line);
        let mut cmd = cmd.replace("cargo run --release --", &format!("'{bin}'"));
        if cmd.starts_with("scripts/") {
            cmd = cmd.replacen("scripts/", &scripts, 1);
        }
        for (from, to) in subs {
            cmd = cmd.replace(from, to);
        }
        match promised {
            Some(n) => out.push_str(&format!(
                "out=$({cmd})\nprintf 'CHECK %s|%s\\n' {n} \"$(echo $out)\"\n"
            )),
            None => out.push_str(&format!("{cmd}\n")),
        }
    }
    out
}

/// Runs the walkthrough in a fresh directory with no `ECOM_*` setting (nor
/// `PUBSUB_EMULATOR_HOST`) inherited, except those named in `keep`, and the operations
/// listener on a free port.
fn run(w: &Walkthrough, subs: &[(&str, &str)], skip: &[&str], keep: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = script(w, subs, skip);
    let mut cmd = Command::new("bash");
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        let ours = name.starts_with("ECOM_") || name == "PUBSUB_EMULATOR_HOST";
        if ours && !keep.iter().any(|k| name.starts_with(k)) {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("ECOM_METRICS_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .arg("-c")
        .arg(&text);
    let run = Running::spawn(cmd).with_limit(WALKTHROUGH_LIMIT).wait();
    assert!(
        run.status.success(),
        "walkthrough {} failed\n--- script ---\n{text}\n{run}",
        w.name
    );
    run
}

/// Every promised number came out as promised.
fn assert_promises_kept(w: &Walkthrough, run: &Run) {
    let checks: Vec<(u64, String)> = run
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .map(|l| {
            let (n, got) = l.split_once('|').unwrap_or((l, ""));
            (n.parse().unwrap_or(u64::MAX), got.trim().to_string())
        })
        .collect();
    let promised = promises(w);
    assert_eq!(
        checks.len(),
        promised.len(),
        "walkthrough {}: not every check ran\n{run}",
        w.name
    );
    for (n, got) in &checks {
        assert_eq!(
            got,
            &n.to_string(),
            "walkthrough {}: the README promises {n}, the line printed {got:?}\n{run}",
            w.name
        );
    }
}

#[test]
fn the_readme_promises_the_original_scenarios_numbers() {
    let found: Vec<String> = readme_walkthroughs().into_iter().map(|w| w.name).collect();
    assert_eq!(found, PROMISES.map(|(name, _)| name.to_string()));
    for (name, numbers) in PROMISES {
        assert_eq!(promises(&walkthrough(name)), numbers, "walkthrough {name}");
    }
}

#[test]
fn the_demo_walkthrough_gives_what_it_promises() {
    let w = walkthrough("demo");
    let run = run(&w, &[], &[], &[]);
    assert_promises_kept(&w, &run);
}

#[test]
fn the_pubsub_walkthrough_gives_what_it_promises() {
    let Some(emulator) = OwnEmulator::start("walkthroughs::pubsub") else {
        return;
    };
    let w = walkthrough("pubsub");
    let run = run(&w, &[("127.0.0.1:8085", &emulator.host)], &[], &[]);
    assert_promises_kept(&w, &run);
}

#[test]
fn the_cassandra_walkthrough_gives_what_it_promises() {
    let Some(node) = node("walkthroughs::cassandra") else {
        return;
    };
    let Some(emulator) = OwnEmulator::start("walkthroughs::cassandra") else {
        return;
    };
    let w = walkthrough("cassandra");
    let subs = [
        ("127.0.0.1:8085", emulator.host.as_str()),
        ("127.0.0.1:9042", node.nodes.as_str()),
    ];
    // A node of the user's own (`ECOM_CASSANDRA_NODES`) keeps its credentials and TLS.
    let run = run(&w, &subs, &["scripts/cassandra-node"], &["ECOM_CASSANDRA_"]);
    assert_promises_kept(&w, &run);
}
