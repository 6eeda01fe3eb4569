//! The Helm chart (`deploy/helm/ecom-stream/`) and the container image, checked without a
//! cluster or a Docker engine: `helm lint` and `helm template` for the default values and
//! each variant under `ci/`, every rendered object validated against the Kubernetes schemas
//! (`scripts/k8s-validate.py`, the `kubernetes-validate` package), and the deployment
//! contract asserted on what was rendered: probes on `/healthz` and `/readyz`, the Cassandra
//! password only from a Secret, the grace period above the shutdown deadline, the PDB, the
//! KEDA triggers naming both subscriptions. The binary itself reads the rendered config file
//! and answers `--help` for every flag the chart passes; the Dockerfile is read against
//! Cargo.toml.
//!
//! Owns: keeping the chart, the Dockerfile and the binary in step. Must never: need a
//! cluster, a Docker engine or the network. Helm or the validator missing: a loud skip
//! locally, a failure in CI (`CI=true`; `.ci/run` installs both).

use crate::cli::Running;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHART: &str = "deploy/helm/ecom-stream";
const RELEASE: &str = "shop";
/// The Deployment's name for [`RELEASE`] (`<release>-<chart>`).
const FULLNAME: &str = "shop-ecom-stream";
/// The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest the
/// validator bundles: an object must be valid for both.
const KUBERNETES_VERSIONS: &[&str] = &["1.25.0", "1.37.0"];
/// `None`: the default values; else `ci/<name>-values.yaml`.
const VARIANTS: &[Option<&str>] = &[
    None,
    Some("keda"),
    Some("hpa"),
    Some("servicemonitor"),
    Some("external-secret"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A missing tool: a failure in CI, a loud skip elsewhere.
fn missing(test: &str, what: &str) {
    assert!(
        !in_ci(),
        "{test}: {what} is required in CI (.ci/run installs it)"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {what}");
}

/// Helm: on PATH, else where `go install` puts it (`$GOBIN`, `$GOPATH/bin`, `~/go/bin`).
fn helm(test: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("helm")];
    for var in ["GOBIN", "GOPATH"] {
        if let Some(dir) = std::env::var_os(var) {
            let dir = PathBuf::from(dir);
            candidates.push(if var == "GOPATH" {
                dir.join("bin/helm")
            } else {
                dir.join("helm")
            });
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join("go/bin/helm"));
    }
    let found = candidates.into_iter().find(|helm| {
        Command::new(helm)
            .args(["version", "--short"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        missing(
            test,
            "helm is not installed (go install helm.sh/helm/v4/cmd/helm@<version>: see .ci/run)",
        );
    }
    found
}

/// Runs a tool under the hang guard; `(success, stdout, stderr)`.
fn run(mut cmd: Command) -> (bool, String, String) {
    cmd.stdin(Stdio::null()).current_dir(repo());
    let done = Running::spawn(cmd).wait();
    (done.status.success(), done.stdout, done.stderr)
}

fn values_file(variant: Option<&str>) -> Option<PathBuf> {
    variant.map(|v| repo().join(CHART).join(format!("ci/{v}-values.yaml")))
}

fn name(variant: Option<&str>) -> &str {
    variant.unwrap_or("default")
}

/// `helm template` of the chart with a variant's values and `--set`s: its output, or what
/// helm said on failure.
fn template(helm: &Path, variant: Option<&str>, sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", RELEASE, CHART, "--namespace", "ecom"]);
    if let Some(file) = values_file(variant) {
        cmd.arg("--values").arg(file);
    }
    for set in sets {
        cmd.args(["--set", set]);
    }
    let (ok, stdout, stderr) = run(cmd);
    if ok {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// The rendered objects of a variant, each validated against the Kubernetes schemas.
/// `None` when the validator is missing outside CI (said loudly).
fn rendered(test: &str, helm: &Path, variant: Option<&str>) -> Option<Vec<Value>> {
    let yaml = template(helm, variant, &[])
        .unwrap_or_else(|e| panic!("helm template ({}) failed: {e}", name(variant)));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &yaml).expect("write the rendered chart");
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("scripts/k8s-validate.py"));
    for version in KUBERNETES_VERSIONS {
        cmd.args(["--kubernetes-version", version]);
    }
    cmd.arg(&file);
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if python.is_err() {
        missing(test, "python3 is not installed");
        return None;
    }
    let (ok, stdout, stderr) = run(cmd);
    if stderr.contains("missing Python package") {
        missing(test, stderr.trim());
        return None;
    }
    assert!(
        ok,
        "rendered objects ({}) are invalid for Kubernetes {KUBERNETES_VERSIONS:?}:\n{stderr}",
        name(variant)
    );
    let objects: Vec<Value> = serde_json::from_str(&stdout).expect("the validator's JSON");
    assert!(!objects.is_empty(), "{}: nothing rendered", name(variant));
    Some(objects)
}

fn kinds(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn the<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let mut found = objects.iter().filter(|o| o["kind"] == kind);
    let one = found.next().unwrap_or_else(|| panic!("no {kind} rendered"));
    assert!(found.next().is_none(), "more than one {kind} rendered");
    one
}

fn all<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no text at {pointer} in {v}"))
}

/// Every container of every workload (Deployment, CronJob, Job) with its pod spec.
fn containers(objects: &[Value]) -> Vec<(String, &Value, &Value)> {
    let mut out = Vec::new();
    for o in objects {
        let pod = match o["kind"].as_str() {
            Some("Deployment") | Some("Job") => &o["spec"]["template"]["spec"],
            Some("CronJob") => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            _ => continue,
        };
        for c in pod["containers"].as_array().expect("containers") {
            let label = format!("{}/{}", o["kind"].as_str().unwrap_or("?"), c["name"]);
            out.push((label, pod, c));
        }
    }
    out
}

/// The config file the ConfigMap carries, parsed.
fn config_file(objects: &[Value]) -> (String, toml::Table) {
    let maps = all(objects, "ConfigMap");
    let map = maps
        .iter()
        .find(|m| m["metadata"]["name"] == FULLNAME)
        .unwrap_or_else(|| panic!("no ConfigMap {FULLNAME}"));
    let text = str_at(map, "/data/ecom-stream.toml").to_string();
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("the ConfigMap's TOML does not parse: {e}\n{text}"));
    (text, table)
}

/// A duration of the binary's syntax as whole seconds (`30s`, `2m`, `1h`).
fn seconds(duration: &str) -> u64 {
    let split = duration
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or_else(|| panic!("no unit in {duration:?}"));
    let (n, unit) = duration.split_at(split);
    let n: u64 = n.parse().expect("a number");
    match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("unit {unit:?} in {duration:?}"),
    }
}

#[test]
fn helm_lint_passes_for_every_variant() {
    let test = "helm_lint_passes_for_every_variant";
    let Some(helm) = helm(test) else { return };
    for variant in VARIANTS {
        let mut cmd = Command::new(&helm);
        cmd.args(["lint", "--strict", CHART]);
        if let Some(file) = values_file(*variant) {
            cmd.arg("--values").arg(file);
        }
        let (ok, stdout, stderr) = run(cmd);
        assert!(
            ok,
            "helm lint ({}) failed:\n{stdout}\n{stderr}",
            name(*variant)
        );
    }
}

#[test]
fn every_variant_renders_valid_objects_of_the_expected_kinds() {
    let test = "every_variant_renders_valid_objects_of_the_expected_kinds";
    let Some(helm) = helm(test) else { return };
    let always = [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ];
    for variant in VARIANTS {
        let Some(objects) = rendered(test, &helm, *variant) else {
            return;
        };
        let kinds = kinds(&objects);
        for kind in always {
            assert!(kinds.contains(kind), "{}: no {kind}", name(*variant));
        }
        let expect = |kind: &str, wanted: bool| {
            assert_eq!(
                kinds.contains(kind),
                wanted,
                "{}: {kind} rendered: {}, expected {wanted}",
                name(*variant),
                kinds.contains(kind)
            )
        };
        match *variant {
            None => {
                for kind in [
                    "ScaledObject",
                    "HorizontalPodAutoscaler",
                    "ServiceMonitor",
                    "Secret",
                    "CronJob",
                    "Job",
                ] {
                    expect(kind, false);
                }
            }
            Some("keda") => {
                expect("ScaledObject", true);
                expect("TriggerAuthentication", true);
                expect("HorizontalPodAutoscaler", false);
            }
            Some("hpa") => {
                expect("HorizontalPodAutoscaler", true);
                expect("ScaledObject", false);
                expect("Secret", true);
            }
            Some("servicemonitor") => expect("ServiceMonitor", true),
            Some("external-secret") => {
                expect("Secret", false);
                expect("CronJob", true);
                expect("Job", true);
            }
            Some(other) => panic!("no expectations for variant {other}"),
        }
    }
}

#[test]
fn rendered_chart_keeps_the_deployment_contract() {
    let test = "rendered_chart_keeps_the_deployment_contract";
    let Some(helm) = helm(test) else { return };
    for variant in VARIANTS {
        let Some(objects) = rendered(test, &helm, *variant) else {
            return;
        };
        let v = name(*variant);
        let deployment = the(&objects, "Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let run = &pod["containers"][0];
        assert_eq!(run["args"][0], "run", "{v}: the Deployment runs `run`");

        // The listener: named port, bound to all addresses, probed on its two paths.
        let port = &run["ports"][0];
        assert_eq!(port["name"], "metrics", "{v}");
        assert_eq!(port["containerPort"], 9464, "{v}");
        let env = run["env"].as_array().expect("env");
        let addr = env
            .iter()
            .find(|e| e["name"] == "ECOM_METRICS_ADDR")
            .unwrap_or_else(|| panic!("{v}: no ECOM_METRICS_ADDR"));
        assert_eq!(addr["value"], "0.0.0.0:9464", "{v}");
        for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            assert_eq!(run[probe]["httpGet"]["path"], path, "{v}: {probe}");
            assert_eq!(run[probe]["httpGet"]["port"], "metrics", "{v}: {probe}");
        }

        // The password: only ever an env var from a Secret.
        for (label, _, c) in containers(&objects) {
            for e in c["env"].as_array().expect("env") {
                if e["name"] == "ECOM_CASSANDRA_PASSWORD" {
                    assert!(e.get("value").is_none(), "{v} {label}: a literal password");
                    assert!(
                        e.pointer("/valueFrom/secretKeyRef/name").is_some(),
                        "{v} {label}: the password not from a Secret: {e}"
                    );
                }
            }
            for arg in c["args"].as_array().expect("args") {
                let arg = arg.as_str().unwrap_or("");
                assert!(!arg.contains("password"), "{v} {label}: argument {arg}");
            }
        }
        let (toml_text, toml) = config_file(&objects);
        assert!(
            !toml_text.contains("password"),
            "{v}: the config file names a password:\n{toml_text}"
        );
        let cassandra = toml["cassandra"].as_table().expect("[cassandra]");
        if cassandra.contains_key("username") {
            let from_secret = env.iter().any(|e| {
                e["name"] == "ECOM_CASSANDRA_PASSWORD"
                    && e.pointer("/valueFrom/secretKeyRef").is_some()
            });
            assert!(from_secret, "{v}: a username but no password Secret");
        }
        for secret in all(&objects, "Secret") {
            assert!(
                secret.get("stringData").is_none(),
                "{v}: a Secret with stringData"
            );
        }

        // The drain ends before the kubelet's SIGKILL.
        assert_eq!(toml["store"].as_str(), Some("cassandra"), "{v}");
        let deadline = seconds(
            toml["shutdown_deadline"]
                .as_str()
                .expect("shutdown_deadline"),
        );
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds");
        assert!(
            grace > deadline,
            "{v}: grace {grace} s not above the deadline {deadline} s"
        );

        // Non-root, read-only root filesystem: in every workload.
        for (label, pod, c) in containers(&objects) {
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{v} {label}");
            assert_eq!(pod["securityContext"]["runAsUser"], 10001, "{v} {label}");
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{v} {label}"
            );
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{v} {label}"
            );
            assert!(
                c.pointer("/resources/requests/cpu").is_some()
                    && c.pointer("/resources/limits/memory").is_some(),
                "{v} {label}: no CPU request or memory limit"
            );
        }

        // The PDB covers the Deployment's pods and lets a drain proceed.
        let pdb = the(&objects, "PodDisruptionBudget");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
            "{v}: the PDB selects other pods"
        );
        assert!(
            pdb["spec"].get("maxUnavailable").is_some(),
            "{v}: a PDB without maxUnavailable can block every drain of a single replica"
        );

        // An autoscaler owns the replica count; without one the chart sets it.
        let autoscaled = kinds(&objects).contains("ScaledObject")
            || kinds(&objects).contains("HorizontalPodAutoscaler");
        assert_eq!(
            deployment["spec"].get("replicas").is_none(),
            autoscaled,
            "{v}: replicas set under an autoscaler, or missing without one"
        );
        for hpa in all(&objects, "HorizontalPodAutoscaler") {
            assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], FULLNAME, "{v}");
            assert_eq!(
                hpa.pointer("/spec/metrics/0/resource/name"),
                Some(&Value::from("cpu")),
                "{v}"
            );
        }
        let service = the(&objects, "Service");
        assert_eq!(service["spec"]["ports"][0]["name"], "metrics", "{v}");
        for monitor in all(&objects, "ServiceMonitor") {
            check_service_monitor(monitor, service);
        }
    }
}

/// The Prometheus Operator's ServiceMonitor has no bundled schema: its fields, checked here.
fn check_service_monitor(monitor: &Value, service: &Value) {
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let spec = monitor["spec"].as_object().expect("spec");
    let known: BTreeSet<&str> = ["selector", "endpoints", "namespaceSelector", "jobLabel"].into();
    for key in spec.keys() {
        assert!(known.contains(key.as_str()), "ServiceMonitor spec.{key}");
    }
    let labels = service["metadata"]["labels"].as_object().expect("labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the ServiceMonitor misses the Service"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["path"], "/metrics");
}

#[test]
fn keda_scales_on_both_subscriptions_with_workload_identity() {
    let test = "keda_scales_on_both_subscriptions_with_workload_identity";
    let Some(helm) = helm(test) else { return };
    let Some(objects) = rendered(test, &helm, Some("keda")) else {
        return;
    };
    // KEDA's CRDs come from no registry we reach: the fields, as KEDA's ScaledObject and
    // gcp-pubsub scaler read them (keda.sh/v1alpha1; pkg/scalers/gcp_pubsub_scaler.go).
    let scaled = the(&objects, "ScaledObject");
    assert_eq!(scaled["apiVersion"], "keda.sh/v1alpha1");
    let spec = scaled["spec"].as_object().expect("spec");
    let known: BTreeSet<&str> = [
        "scaleTargetRef",
        "pollingInterval",
        "initialCooldownPeriod",
        "cooldownPeriod",
        "idleReplicaCount",
        "minReplicaCount",
        "maxReplicaCount",
        "advanced",
        "triggers",
        "fallback",
    ]
    .into();
    for key in spec.keys() {
        assert!(known.contains(key.as_str()), "ScaledObject spec.{key}");
    }
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], FULLNAME);
    assert_eq!(scaled["spec"]["scaleTargetRef"]["kind"], "Deployment");
    let min = scaled["spec"]["minReplicaCount"].as_u64().expect("min");
    let max = scaled["spec"]["maxReplicaCount"].as_u64().expect("max");
    assert!(1 <= min && min <= max, "replicas {min}..={max}");
    assert!(
        scaled
            .pointer("/spec/advanced/horizontalPodAutoscalerConfig/behavior/scaleDown")
            .is_some(),
        "no scale-down behaviour"
    );

    let metadata_keys: BTreeSet<&str> = [
        "subscriptionName",
        "mode",
        "value",
        "activationValue",
        "aggregation",
        "timeHorizon",
        "valueIfNull",
    ]
    .into();
    let triggers = scaled["spec"]["triggers"].as_array().expect("triggers");
    let mut subscriptions = BTreeSet::new();
    for trigger in triggers {
        assert_eq!(trigger["type"], "gcp-pubsub");
        let meta = trigger["metadata"].as_object().expect("metadata");
        for (key, value) in meta {
            assert!(metadata_keys.contains(key.as_str()), "metadata.{key}");
            // KEDA's metadata is a map of strings: a number here fails its admission.
            assert!(value.is_string(), "metadata.{key} is not a string: {value}");
        }
        assert_eq!(meta["mode"], "SubscriptionSize");
        let value: f64 = meta["value"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("value");
        assert!(
            value > 20000.0,
            "value {value} not above max_outstanding_messages: a replica that keeps up \
             would look like a backlog"
        );
        subscriptions.insert(meta["subscriptionName"].as_str().expect("name").to_string());
        let auth = trigger["authenticationRef"]["name"].as_str().expect("auth");
        let auths = all(&objects, "TriggerAuthentication");
        let auth = auths
            .iter()
            .find(|a| a["metadata"]["name"] == auth)
            .unwrap_or_else(|| panic!("TriggerAuthentication {auth} not rendered"));
        assert_eq!(auth["apiVersion"], "keda.sh/v1alpha1");
        assert_eq!(auth["spec"]["podIdentity"]["provider"], "gcp");
    }
    let expected: BTreeSet<String> = [
        "projects/my-gcp-project/subscriptions/orders_data-sub".to_string(),
        "projects/my-gcp-project/subscriptions/payments_data-eu".to_string(),
    ]
    .into();
    assert_eq!(subscriptions, expected, "the triggers' subscriptions");
}

#[test]
fn the_chart_refuses_what_would_lose_data_or_cut_the_drain() {
    let test = "the_chart_refuses_what_would_lose_data_or_cut_the_drain";
    let Some(helm) = helm(test) else { return };
    let refused: &[(&[&str], &str)] = &[
        (
            &["terminationGracePeriodSeconds=30"],
            "terminationGracePeriodSeconds (30) must be above shutdownDeadlineSeconds (30)",
        ),
        (
            &["shutdownDeadlineSeconds=60"],
            "terminationGracePeriodSeconds (45) must be above shutdownDeadlineSeconds (60)",
        ),
        (
            &["config.cassandra.password=hunter2"],
            "config.cassandra.password",
        ),
        (&["config.store=embedded"], "config.store"),
        (&["config.metrics_addr=0.0.0.0:1"], "config.metrics_addr"),
        (
            &["config.cassandra.username=ecom"],
            "config.cassandra.username is set but no password",
        ),
        (&["autoscaling.mode=both"], "autoscaling.mode"),
        (&["setup.enabled=true"], "setup.serviceAccountName"),
    ];
    for (sets, message) in refused {
        match template(&helm, None, sets) {
            Ok(_) => panic!("helm template --set {sets:?} rendered; expected a refusal"),
            Err(stderr) => assert!(
                stderr.contains(message),
                "--set {sets:?}: expected {message:?} in:\n{stderr}"
            ),
        }
    }
    // One second above the deadline is enough.
    template(&helm, None, &["terminationGracePeriodSeconds=31"])
        .unwrap_or_else(|e| panic!("grace 31 s over a 30 s deadline refused: {e}"));
}

/// `ecom-stream <args…>` with the pod's variables and none inherited from the test's
/// environment.
fn binary(args: &[&str], env: &[(&str, &str)]) -> crate::cli::Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecom-stream"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("ECOM_") || name == "PUBSUB_EMULATOR_HOST" {
            cmd.env_remove(&key);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    cmd.current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .args(args)
        .envs(env.iter().copied());
    Running::spawn(cmd).wait()
}

#[test]
fn the_binary_takes_the_rendered_config_and_every_flag_the_chart_passes() {
    let test = "the_binary_takes_the_rendered_config_and_every_flag_the_chart_passes";
    let Some(helm) = helm(test) else { return };
    for variant in [None, Some("keda"), Some("external-secret")] {
        let Some(objects) = rendered(test, &helm, variant) else {
            return;
        };
        let v = name(variant);
        let (toml_text, _) = config_file(&objects);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ecom-stream.toml");
        std::fs::write(&file, &toml_text).expect("write the config file");
        let file = file.to_str().expect("utf-8 path");

        for (label, _, c) in containers(&objects) {
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| a.as_str().expect("text"))
                .collect();
            // The subcommand's own help must know every flag the chart gives it.
            let command: Vec<&str> = args
                .iter()
                .copied()
                .take_while(|a| !a.starts_with('-'))
                .collect();
            let mut help_args = command.clone();
            help_args.push("--help");
            let help = binary(&help_args, &[]).ok();
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.stdout.contains(&format!("{flag} ")),
                    "{v} {label}: `ecom-stream {}` has no flag {flag}:\n{}",
                    command.join(" "),
                    help.stdout
                );
            }
            // The config file path the chart passes is where the ConfigMap is mounted.
            let at = args
                .iter()
                .position(|a| *a == "--config")
                .expect("--config");
            let mount = c["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .find(|m| m["name"] == "config")
                .expect("the config mount");
            assert_eq!(mount["mountPath"], args[at + 1], "{v} {label}");
        }

        // The pod's environment and the rendered file, as the binary resolves them.
        let mut env = vec![("ECOM_METRICS_ADDR", "0.0.0.0:9464")];
        let has_password = toml_text.contains("username");
        if has_password {
            env.push(("ECOM_CASSANDRA_PASSWORD", "from-the-secret"));
        }
        let settings = binary(&["config", "--config", file], &env).ok();
        let lines = settings.json_lines();
        let setting = |key: &str| {
            lines
                .iter()
                .find(|l| l["key"] == key)
                .unwrap_or_else(|| panic!("{v}: `config` has no {key}"))
        };
        assert_eq!(setting("store")["value"], "cassandra", "{v}");
        assert_eq!(setting("metrics_addr")["value"], "0.0.0.0:9464", "{v}");
        assert_eq!(setting("metrics_addr")["source"], "env", "{v}");
        assert_eq!(setting("shutdown_deadline")["value"], "30s", "{v}");
        assert_eq!(setting("shutdown_deadline")["source"], file, "{v}");
        assert_eq!(setting("shards")["value"], 1, "{v}");
        if has_password {
            assert_eq!(setting("cassandra.password")["source"], "env", "{v}");
            assert_eq!(setting("cassandra.password")["value"], "<redacted>", "{v}");
        }
        // The subscriptions KEDA watches are the ones `run` reads.
        for scaled in all(&objects, "ScaledObject") {
            for (i, key) in ["pubsub.orders_subscription", "pubsub.payments_subscription"]
                .iter()
                .enumerate()
            {
                let project = setting("project")["value"].as_str().expect("project");
                // Unset: the topic's name + "-sub", as the binary resolves it.
                let topic = key.replace("_subscription", "_topic");
                let sub = match setting(key)["value"].as_str() {
                    Some(named) => named.to_string(),
                    None => format!("{}-sub", setting(&topic)["value"].as_str().expect("topic")),
                };
                assert_eq!(
                    scaled["spec"]["triggers"][i]["metadata"]["subscriptionName"],
                    format!("projects/{project}/subscriptions/{sub}"),
                    "{v}: trigger {i}"
                );
            }
        }
    }
}

/// Cargo.toml, parsed.
fn cargo_toml() -> toml::Table {
    read("Cargo.toml").parse().expect("Cargo.toml parses")
}

#[test]
fn dockerfile_keeps_in_step_with_cargo_toml_and_the_chart() {
    let docker = read("Dockerfile");
    let cargo = cargo_toml();
    let package = cargo["package"].as_table().expect("[package]");
    let lines: Vec<&str> = docker.lines().map(str::trim).collect();
    let froms: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );

    // The builder's Rust is at least rust-version: `rust:1-…` follows the newest 1.x, a pinned
    // `rust:1.NN-…` must not be older than Cargo.toml asks.
    let builder = froms[0].split_whitespace().next().expect("image");
    let tag = builder
        .strip_prefix("rust:")
        .expect("a rust: builder image");
    let (version, debian) = tag.split_once('-').expect("rust:VERSION-DEBIAN");
    let wanted = package["rust-version"].as_str().expect("rust-version");
    let parse =
        |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().expect("number")).collect() };
    if version != "1" {
        assert!(
            parse(version) >= parse(wanted),
            "builder rust:{version} is older than rust-version {wanted}"
        );
    }
    // The binary links glibc dynamically: it runs on the Debian it was built on.
    let runtime = froms[1].split_whitespace().next().expect("image");
    assert_eq!(
        runtime,
        format!("debian:{debian}-slim"),
        "runtime and builder on different Debian releases"
    );

    // The binary Cargo.toml declares is the one built, copied and run.
    let bin = cargo["bin"][0]["name"].as_str().expect("[[bin]] name");
    assert!(
        docker.contains(&format!("--bin {bin}")),
        "builds another binary"
    );
    assert!(docker.contains("--locked"), "ignores Cargo.lock");
    assert!(
        docker.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
        "entrypoint is not /usr/local/bin/{bin}"
    );
    // Everything the manifest names must be in the build context that is copied in.
    let copied: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1].to_vec()
        })
        .collect();
    let mut needed = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    needed.push(cargo["lib"]["path"].as_str().expect("lib path").to_string());
    needed.push(
        cargo["bin"][0]["path"]
            .as_str()
            .expect("bin path")
            .to_string(),
    );
    for bench in cargo["bench"].as_array().expect("[[bench]]") {
        let name = bench["name"].as_str().expect("bench name");
        needed.push(format!("benches/{name}.rs"));
    }
    for path in &needed {
        assert!(
            repo().join(path).exists(),
            "Cargo.toml names {path}, missing"
        );
        let top = path.split('/').next().expect("top");
        assert!(
            copied.contains(&top),
            "the Dockerfile does not copy {top} (Cargo.toml needs {path})"
        );
    }
    let ignored = read(".dockerignore");
    for path in &needed {
        let top = path.split('/').next().expect("top");
        assert!(
            !ignored.lines().any(|l| l.trim() == top),
            ".dockerignore drops {top}"
        );
    }

    // TLS to Pub/Sub and to Cassandra needs the CA roots in the runtime image.
    let runtime_stage = &docker[docker.rfind("FROM ").expect("FROM")..];
    assert!(
        runtime_stage.contains("ca-certificates"),
        "no CA certificates in the runtime image"
    );
    // The image's user and port are the ones the chart assumes.
    let values = read(&format!("{CHART}/values.yaml"));
    let helpers = read(&format!("{CHART}/templates/_helpers.tpl"));
    assert!(
        docker.contains("USER 10001:10001"),
        "the image's user changed"
    );
    assert!(
        helpers.contains("runAsUser: 10001"),
        "the chart's user changed"
    );
    assert!(docker.contains("EXPOSE 9464"), "the image's port changed");
    assert!(values.contains("port: 9464"), "the chart's port changed");
    assert!(
        docker.contains("ECOM_METRICS_ADDR=0.0.0.0:9464"),
        "the image's listener is not on all addresses"
    );

    // The chart's appVersion (the default image tag) is the crate's version.
    let chart = read(&format!("{CHART}/Chart.yaml"));
    let version = package["version"].as_str().expect("version");
    assert!(
        chart.contains(&format!("appVersion: \"{version}\"")),
        "Chart.yaml appVersion is not Cargo.toml's version {version}"
    );
}

#[test]
fn the_charts_dashboard_is_deploy_grafanas() {
    assert_eq!(
        read(&format!("{CHART}/dashboards/ecom-stream.json")),
        read("deploy/grafana/ecom-stream.json"),
        "the chart's copy of the dashboard differs from deploy/grafana/ecom-stream.json \
         (Helm reads only files inside the chart: copy it over)"
    );
}

#[test]
fn the_probed_paths_are_served() {
    // The listener's routes (src/ops/mod.rs); tests/integration/ops.rs asserts their answers.
    let ops = read("src/ops/mod.rs");
    for path in ["\"/healthz\"", "\"/readyz\"", "\"/metrics\""] {
        assert!(ops.contains(path), "src/ops/mod.rs serves no {path}");
    }
}
