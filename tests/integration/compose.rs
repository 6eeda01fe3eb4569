//! `docker-compose-cassandra.yml` without a Docker engine: Compose itself validates it
//! (`docker-compose … config`, Debian's `docker-compose` package), and its images, ports
//! and health checks are the ones `docs/cassandra.md` documents.
//!
//! Owns: keeping the compose file and the docs' "With Docker" section in step. Must never: need
//! a Docker engine or the network (`config` only parses and resolves the file).

use std::path::{Path, PathBuf};
use std::process::Command;

const COMPOSE: &str = "docker-compose-cassandra.yml";
/// The page that documents it (its "With Docker" section).
const DOCKER_PAGE: &str = "docs/cassandra.md";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn compose_validates_the_file() {
    let run = |args: &[&str]| {
        Command::new("docker-compose")
            .arg("-f")
            .arg(repo_file(COMPOSE))
            .args(args)
            .output()
    };
    let out = match run(&["config", "-q"]) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // In CI the package is installed by .ci/run, so missing means broken CI.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "docker-compose is missing in CI (.ci/run installs Debian's docker-compose)"
            );
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: compose_validates_the_file: docker-compose is not installed \
                 (apt-get install docker-compose)"
            );
            return;
        }
        Err(e) => panic!("running docker-compose: {e}"),
    };
    assert!(
        out.status.success(),
        "docker-compose config rejected {COMPOSE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let services = run(&["--profile", "scylla", "config", "--services"]).expect("docker-compose");
    let services = String::from_utf8_lossy(&services.stdout);
    let mut services: Vec<&str> = services.lines().collect();
    services.sort_unstable();
    assert_eq!(services, ["cassandra", "pubsub", "scylla"]);
}

/// `(service, image, host port, has a health check)` read from the compose file's text.
fn services(compose: &str) -> Vec<(String, String, String, bool)> {
    let mut out: Vec<(String, String, String, bool)> = Vec::new();
    let mut in_services = false;
    for line in compose.lines() {
        let trimmed = line.trim();
        if line == "services:" {
            in_services = true;
            continue;
        }
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_services = false;
        }
        if !in_services || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 2 && trimmed.ends_with(':') {
            out.push((
                trimmed.trim_end_matches(':').to_string(),
                String::new(),
                String::new(),
                false,
            ));
        } else if let Some(last) = out.last_mut() {
            if let Some(image) = trimmed.strip_prefix("image: ") {
                last.1 = image.to_string();
            } else if let Some(port) = trimmed.strip_prefix("- \"127.0.0.1:") {
                last.2 = format!("127.0.0.1:{}", port.split(':').next().unwrap_or(""));
            } else if trimmed == "healthcheck:" {
                last.3 = true;
            }
        }
    }
    out
}

#[test]
fn compose_images_ports_and_health_checks_match_the_docs() {
    let compose = read(COMPOSE);
    let readme = read(DOCKER_PAGE);
    let services = services(&compose);
    let names: Vec<&str> = services.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["cassandra", "scylla", "pubsub"]);
    for (name, image, port, health) in &services {
        assert!(*health, "service {name} has no health check");
        assert!(
            !image.is_empty() && !port.is_empty(),
            "{name}: {image} {port}"
        );
        assert!(
            readme.contains(image.as_str()),
            "{DOCKER_PAGE} does not name image {image}"
        );
        assert!(
            readme.contains(port.as_str()),
            "{DOCKER_PAGE} does not name port {port} ({name})"
        );
    }
    assert!(
        compose.contains("image: cassandra:5."),
        "Cassandra is not a 5.x image"
    );
    assert!(readme.contains(&format!("docker compose -f {COMPOSE} up -d")));
    assert!(
        readme.contains("cqlsh"),
        "{DOCKER_PAGE} shows no cqlsh query"
    );
}
