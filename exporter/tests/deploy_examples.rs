//! The exporter's command lines in examples/kubernetes (DaemonSet, with its
//! ConfigMap) and examples/docker-compose are accepted by `imd-exporter
//! --check-config`: every flag exists and the configuration loads.

use std::path::PathBuf;
use std::process::Command;

use serde_yaml_ng::Value;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

fn check(args: &[String]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_imd-exporter"))
        .args(args)
        .arg("--check-config")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}:\n{text}");
    text
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_daemonset_command_line_and_configmap_check() {
    let text = std::fs::read_to_string(repo("examples/kubernetes/exporter.yml")).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imd-exporter.yml");
    std::fs::write(
        &cfg,
        kind("ConfigMap")["data"]["imd-exporter.yml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mut args: Vec<String> =
        strings(&kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["args"])
            .into_iter()
            .map(|a| {
                if a.starts_with("--config.file=") {
                    format!("--config.file={}", cfg.display())
                } else if a.starts_with("--storage.path=") {
                    format!("--storage.path={}", dir.path().join("state").display())
                } else {
                    a
                }
            })
            .collect();
    assert!(args.iter().any(|a| a.starts_with("--config.file=")));
    let out = check(&args);
    assert!(out.contains("processgroups"), "{out}");
    // A flag the exporter does not know fails the same check.
    args.push("--path.nosuch=/x".into());
    let bad = Command::new(env!("CARGO_BIN_EXE_imd-exporter"))
        .args(&args)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn the_compose_command_line_checks() {
    let text = std::fs::read_to_string(repo("examples/docker-compose/docker-compose.yml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = strings(&doc["services"]["imd-exporter"]["command"])
        .into_iter()
        .map(|a| {
            if a.starts_with("--storage.path=") {
                format!("--storage.path={}", dir.path().join("state").display())
            } else {
                a
            }
        })
        .collect();
    assert!(args.iter().any(|a| a == "--path.procfs=/host/proc"));
    check(&args);
}
