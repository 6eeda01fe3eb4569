//! The documents cannot drift from the tree: every repository path cited in a Markdown file
//! of the repository or in a comment of `Cargo.toml` exists.
//!
//! What counts as a cited path:
//!
//! - a word that starts with one of our top-level directories (`src/`, `tests/`, `docs/`, …)
//!   or names a root document (`README.md`, `schema.cql`, `Dockerfile`, …), wherever it
//!   stands (backticks, code blocks, prose): checked from the repository's root;
//! - a Rust file named without its directory (`status.rs`) or below `src/` without the
//!   `src/` (`store/cassandra/mod.rs`, as module docs and `Cargo.toml` comments cite them):
//!   some file of ours must end with it;
//! - a link target (`[text](path)`): checked from the linking file's directory.
//!
//! Not checked: URLs, paths of other projects (they start with none of our directories),
//! placeholders (`<file>`, `FILE`, `{…}`, `…`), variables (`$DIR/…`), and what a build makes
//! ([`BUILT`]). `file.rs:LINE` and `#anchor` suffixes are dropped; a glob
//! (`tests/resilience*`) must match something.

use std::path::{Path, PathBuf};

/// Our top-level directories: a word starting with one of these is a repository path.
const DIRS: [&str; 9] = [
    "src/",
    "tests/",
    "docs/",
    "load/",
    "scripts/",
    "benches/",
    "examples/",
    "deploy/",
    ".ci/",
];

/// Files at the root that documents cite by name.
const ROOT_FILES: [&str; 10] = [
    "README.md",
    "ARCHITECTURE.md",
    "BENCHMARKS.md",
    "RESILIENCE.md",
    "Cargo.toml",
    "Cargo.lock",
    "Dockerfile",
    "schema.cql",
    "docker-compose-cassandra.yml",
    "ecom-stream.example.toml",
];

/// Paths made by a build, not kept in the repository (`.gitignore`): cited, never present
/// in a fresh clone.
const BUILT: [&str; 1] = ["tests/cassandra/lib"];

/// Path segments that stand for "any" in the documents' prose.
const PLACEHOLDERS: [&str; 8] = ["FILE", "DIR", "NAME", "PATH", "N", "X", "TOPIC", "LINE"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (skipping build output and hidden directories other than `.ci`).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name == "target" || (name.starts_with('.') && name != ".ci") {
                continue;
            }
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A word as cited: without surrounding quotes, brackets and punctuation, a `:LINE` or
/// `#anchor` suffix, or a `file.rs::item` path.
fn clean(word: &str) -> &str {
    let trim = |c: char| "`'\"()[]{},;.:!?*".contains(c);
    let mut w = word.trim_matches(trim);
    if let Some(i) = w.find("::") {
        w = &w[..i];
    }
    if let Some(i) = w.find('#') {
        w = &w[..i];
    }
    // `file.rs:12`, `file.rs:12-30`, `file.rs:12:5`
    while let Some((head, tail)) = w.rsplit_once(':') {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '-') {
            w = head;
        } else {
            break;
        }
    }
    w.trim_end_matches(trim)
}

fn is_placeholder(path: &str) -> bool {
    path.contains(['<', '>', '$', '{', '}', '…', '|', '='])
        || path.contains("...")
        || path.split('/').any(|seg| {
            let stem = seg.split('.').next().unwrap_or(seg);
            PLACEHOLDERS.contains(&stem)
        })
}

/// Whether `path` (from the root) exists; a glob's fixed part must match some file.
fn exists(root: &Path, path: &str) -> bool {
    match path.find(['*', '?']) {
        None => root.join(path).exists(),
        Some(i) => {
            let fixed = &path[..i];
            let (dir, prefix) = fixed.rsplit_once('/').unwrap_or(("", fixed));
            std::fs::read_dir(root.join(dir)).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
            })
        }
    }
}

/// What a cited word asks of the tree, if it is a repository path; `None` when it is not one.
fn check(root: &Path, ours: &[String], word: &str) -> Option<bool> {
    let path = clean(word);
    if path.is_empty() || path.contains("://") || is_placeholder(path) {
        return None;
    }
    if DIRS.iter().any(|d| path.starts_with(d)) || ROOT_FILES.contains(&path) {
        return Some(exists(root, path) || BUILT.iter().any(|b| path.starts_with(b)));
    }
    // A Rust file named short: bare, or below src/ without the `src/`. Other projects'
    // paths (`lib/vector-core/src/…`) do not start with one of our modules and are skipped.
    if path.ends_with(".rs") && !path.starts_with('/') && !path.starts_with("..") {
        let first = path.split('/').next().unwrap_or(path);
        let module = root.join("src").join(first);
        if !path.contains('/') || module.is_dir() {
            let tail = format!("/{path}");
            return Some(ours.iter().any(|f| f.ends_with(&tail)));
        }
    }
    None
}

/// Link targets (`](target)`) of a Markdown text.
fn link_targets(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find([')', ' '])?;
            Some(&rest[..end])
        })
        .collect()
}

#[test]
fn every_path_cited_in_the_docs_and_cargo_toml_exists() {
    let root = root();
    let mut all = Vec::new();
    files(&root, &mut all);
    let ours: Vec<String> = all
        .iter()
        .filter_map(|f| f.strip_prefix(&root).ok())
        .map(|f| format!("/{}", f.display()))
        .collect();
    let mut sources: Vec<(PathBuf, String)> = all
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
        .map(|f| {
            (
                f.clone(),
                std::fs::read_to_string(f).expect("read a Markdown file"),
            )
        })
        .collect();
    // Cargo.toml: its comments only (other lines left empty, so line numbers stay true).
    let cargo = root.join("Cargo.toml");
    let comments: String = std::fs::read_to_string(&cargo)
        .expect("read Cargo.toml")
        .lines()
        .map(|l| format!("{}\n", l.split_once('#').map_or("", |(_, c)| c)))
        .collect();
    sources.push((cargo, comments));
    assert!(
        sources.len() > 5,
        "no documents found under {}",
        root.display()
    );

    let mut stale = Vec::new();
    let mut checked = 0;
    for (file, text) in &sources {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for word in line.split(|c: char| c.is_whitespace() || c == '`') {
                // A link's target is checked from its file below; its text is prose.
                let word = word.split("](").next().unwrap_or(word);
                if let Some(found) = check(&root, &ours, word) {
                    checked += 1;
                    if !found {
                        stale.push(format!("{rel}:{}: {}", n + 1, clean(word)));
                    }
                }
            }
            for target in link_targets(line) {
                let path = clean(target);
                if path.is_empty() || path.contains("://") || path.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                // `/x` is from the repository's root (as GitHub renders it).
                let target = match path.strip_prefix('/') {
                    Some(from_root) => root.join(from_root),
                    None => file.parent().unwrap_or(&root).join(path),
                };
                if !target.exists() {
                    stale.push(format!("{rel}:{}: link {path}", n + 1));
                }
            }
        }
    }
    assert!(
        checked > 200,
        "only {checked} cited paths found: is the scan broken?"
    );
    assert!(
        stale.is_empty(),
        "{} cited paths do not exist (point them at the current file):\n{}",
        stale.len(),
        stale.join("\n")
    );
}

#[test]
fn the_scan_reads_citations_as_a_reader_would() {
    let root = root();
    let ours = vec!["/src/store/embedded/mod.rs".to_string()];
    let check = |w| check(&root, &ours, w);
    assert_eq!(check("`src/lib.rs`"), Some(true));
    assert_eq!(check("`src/lib.rs:12`,"), Some(true));
    assert_eq!(check("(src/lib.rs)."), Some(true));
    assert_eq!(check("`src/nope.rs`"), Some(false));
    assert_eq!(check("`tests/resilience*`"), Some(true));
    assert_eq!(check("`tests/nope*`"), Some(false));
    assert_eq!(check("store/embedded/mod.rs"), Some(true));
    assert_eq!(check("store/embedded.rs"), Some(false));
    assert_eq!(check("(config_file.rs):"), Some(false));
    assert_eq!(check("mod.rs"), Some(true));
    assert_eq!(check("`schema.cql`"), Some(true));
    assert_eq!(check("tests/fixtures/FILE.csv"), None);
    assert_eq!(check("src/<module>/mod.rs"), None);
    assert_eq!(check("lib/vector-core/src/event.rs"), None);
    assert_eq!(check("https://example.com/src/x.rs"), None);
    assert_eq!(check("ecom-stream.toml"), None);
    assert_eq!(check("`tests/cassandra/lib`"), Some(true));
    assert_eq!(
        link_targets("see [the page](docs/design.md#x) and [y](../a.md)"),
        vec!["docs/design.md#x", "../a.md"]
    );
}
