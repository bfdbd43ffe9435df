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
fn sms_bridge_example_config_checks_and_names_a_missing_token_file() {
    let example = example("sms-bridge.yml");
    let c = imd_analyzer::alert::sms::SmsBridgeConfig::load(&example).unwrap();
    assert_eq!(c.recipients.len(), 2);
    let check = |config: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
            .args(["sms-bridge", "--check-config", "--config.file"])
            .arg(config)
            .output()
            .unwrap()
    };
    // As shipped, the auth token file is the user's to create.
    let out = check(&example);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sms-bridge.yml")
            && err.contains("gateway.auth_token_file")
            && err.contains("/etc/imd/twilio-auth-token"),
        "{err}"
    );
    // With the file in place it checks, and says what it found.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "secret\n").unwrap();
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace("/etc/imd/twilio-auth-token", &token.display().to_string());
    let config = dir.path().join("sms-bridge.yml");
    std::fs::write(&config, text).unwrap();
    let out = check(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 recipient list(s) (oncall, secondary), 3 number(s)")
            && stdout.contains("https://api.twilio.com/2010-04-01/Accounts/AC0"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret"), "{stdout}");
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
