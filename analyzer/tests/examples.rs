//! The documented analyzer example loads and checks.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/single-host")
        .join(name)
}

#[test]
fn analyzer_example_config_checks() {
    let c = imd_analyzer::config::Config::load(&example("imd-analyzer.yml")).unwrap();
    assert_eq!(c.queries.len(), 4);
    assert_eq!(c.alerting.as_ref().unwrap().rules.len(), 2);
    let out = Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .arg("--check-config")
        .arg("--config.file")
        .arg(example("imd-analyzer.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 source(s) (prometheus), 4 quer(ies), 2 alerting rule(s)"),
        "{stdout}"
    );
}

#[test]
fn a_bad_config_names_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yml");
    std::fs::write(
        &f,
        "sources:\n  - name: p\n    url: http://localhost:9090\nqueries:\n  - name: q\n    selector: 'up{'\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .args(["--check-config", "--config.file"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml") && err.contains("queries[0].selector"),
        "{err}"
    );
}
