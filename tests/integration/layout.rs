//! The layout is the architecture (ARCHITECTURE.md "Layout", `src/lib.rs`): modules sit on
//! layers, and a module may use only modules on its own layer or below. This test reads the
//! sources and fails on any `crate::…` path (outside comments) that points up, and on any
//! top-level module that has no layer here, so a new module must be placed deliberately.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules by layer, the command line on top, the ground floor at 0.
const LAYERS: &[(&str, u8)] = &[
    ("cli", 7),
    ("app", 6),
    ("ops", 5),
    ("source", 4),
    ("join", 3),
    ("writer", 2),
    ("dlq", 2),
    ("pubsub", 1),
    ("store", 1),
    ("model", 0),
    ("generator", 0),
    ("config", 0),
    ("telemetry", 0),
    ("health", 0),
    ("ack", 0),
    ("shutdown", 0),
    ("clock", 0),
    ("rng", 0),
    ("retry", 0),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/join/shard.rs` → `join`).
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn no_module_uses_one_on_a_higher_layer() {
    let layers: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut unplaced = Vec::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = layers.get(module.as_str()) else {
            unplaced.push(module);
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (i, _) in code.match_indices("crate::") {
                // `ecom_crate::` or a longer identifier ending in `crate` is not ours.
                if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let used: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                match layers.get(used.as_str()) {
                    Some(&theirs) if theirs > own => violations.push(format!(
                        "{}:{}: `{module}` (layer {own}) uses `{used}` (layer {theirs})",
                        file.display(),
                        n + 1
                    )),
                    Some(_) => {}
                    None if used.is_empty() => {}
                    None => unplaced.push(used),
                }
            }
        }
    }
    unplaced.sort();
    unplaced.dedup();
    assert!(
        unplaced.is_empty(),
        "modules with no layer in LAYERS (place them, and in ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "imports pointing up:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_module_is_on_the_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut missing = Vec::new();
    for line in lib.lines() {
        let Some(name) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        else {
            continue;
        };
        if !lib.contains(&format!("[`{name}`]")) && !lib.contains(&format!("[`{name}::")) {
            missing.push(format!("src/lib.rs layout does not show `{name}`"));
        }
        if !architecture.contains(&format!("src/{name}")) {
            missing.push(format!("ARCHITECTURE.md does not show src/{name}"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
