//! The documented example files load, validate and mean what they say.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/single-host")
        .join(name)
}

#[test]
fn exporter_example_config_is_valid() {
    let config = imd_exporter::config::Config::load(&example("imd-exporter.yml")).unwrap();
    assert!(config.collectors["processes"].enabled == Some(true));
    assert_eq!(config.process_groups.len(), 4);
    assert_eq!(config.logs.as_ref().unwrap().files.len(), 2);
}

#[test]
fn exporter_check_config_accepts_the_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_imd-exporter"))
        .args(["--check-config", "--storage.path"])
        .arg(std::env::temp_dir().join("imd-examples-test"))
        .arg("--config.file")
        .arg(example("imd-exporter.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("processes") && stdout.contains("processgroups"),
        "{stdout}"
    );
}

#[test]
fn web_config_example_parses_and_its_password_is_the_documented_one() {
    // The example points at certificate files a user creates; check the
    // schema and the documented password without loading them.
    let text = std::fs::read_to_string(example("web-config.yml")).unwrap();
    let c: imd_exporter::web::WebConfig =
        imd_exporter::config::parse_yaml(&example("web-config.yml"), &text).unwrap();
    c.validate(&example("web-config.yml")).unwrap();
    let hash = &c.basic_auth_users["prometheus"];
    assert!(bcrypt::verify("change-me", hash).unwrap());
}

#[test]
fn prometheus_example_config_passes_promtool() {
    let out = Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(example("prometheus.yml"))
        .output()
        .expect("promtool is missing: run `bash .ci/test`, which installs it");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn invalid_config_is_rejected_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yml");
    std::fs::write(&f, "logs:\n  files:\n    - path: /var/log/x.log\n      rules:\n        - name: ok_total\n          regex: '('\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imd-exporter"))
        .arg("--check-config")
        .arg("--config.file")
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml") && err.contains("logs.files[0].rules[0].regex"),
        "{err}"
    );
}
