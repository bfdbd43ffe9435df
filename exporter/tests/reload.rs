//! Configuration reload of the real imd-exporter binary, as Prometheus does
//! it: `POST /-/reload` with an invalid file answers 500 naming the key,
//! sets `imd_exporter_config_last_reload_successful` to 0 and keeps the old
//! collectors running; `SIGHUP` with a valid file rebuilds the collectors
//! (a collector switched on appears), and the log reader resumes at its
//! saved offset, so no log line is counted twice. Without
//! `--web.enable-lifecycle` the endpoint answers 403 and SIGHUP still works.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::{Proc, free_port, http_get, imd_exporter_bin, scrape, tempdir};

fn config(log: &Path, time_enabled: bool) -> String {
    format!(
        "collectors:\n  time:\n    enabled: {time_enabled}\n\
         logs:\n  poll_interval: 100ms\n  files:\n    - path: {}\n      from: beginning\n      rules:\n\
         \x20       - name: imd_test_errors_total\n          regex: 'ERROR'\n",
        log.display()
    )
}

fn append(log: &Path, lines: usize) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .expect("opening the log");
    for i in 0..lines {
        writeln!(f, "ERROR something failed {i}").expect("writing the log");
    }
}

fn value(port: u16, name: &str) -> Option<f64> {
    scrape(port, &[])
        .get(name)
        .and_then(|f| f.samples.first())
        .map(|s| s.value)
}

/// Polls until the value of `name` is `want`, failing after 10 s.
fn wait_value(port: u16, name: &str, want: Option<f64>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = value(port, name);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(port: u16, path: &str) -> (u16, String) {
    let r = common::http_post(port, path, &[], "").unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (r.status, r.text())
}

#[test]
fn reload_rejects_bad_files_and_rebuilds_collectors_from_good_ones() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    append(&log, 3);
    let file = dir.path().join("imd-exporter.yml");
    std::fs::write(&file, config(&log, false)).unwrap();
    let port = free_port();
    let mut p = Proc::spawn(
        "imd-exporter",
        &imd_exporter_bin(),
        [
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--storage.path={}", dir.path().join("state").display()),
            format!("--config.file={}", file.display()),
            "--web.enable-lifecycle".to_string(),
        ],
        dir.path(),
    );
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(20));
    let errors = "imd_test_errors_total";
    let ok = "imd_exporter_config_last_reload_successful";
    wait_value(port, errors, Some(3.0));
    assert_eq!(value(port, "node_time_seconds"), None);
    assert_eq!(value(port, ok), Some(1.0));

    // Invalid: an unknown collector. Rejected with the key named; the old
    // collectors keep running.
    std::fs::write(
        &file,
        config(&log, true).replacen(
            "collectors:\n",
            "collectors:\n  nope:\n    enabled: true\n",
            1,
        ),
    )
    .unwrap();
    let (status, body) = post(port, "/-/reload");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("collectors.nope"), "{body}");
    assert_eq!(value(port, ok), Some(0.0));
    assert_eq!(value(port, "node_time_seconds"), None);
    append(&log, 1);
    wait_value(port, errors, Some(4.0));

    // Valid, by SIGHUP: `time` switched on appears; the log reader starts
    // again from its saved offset: its counter restarts and counts only the
    // lines written from now on.
    std::fs::write(&file, config(&log, true)).unwrap();
    p.signal("HUP");
    wait_value(port, ok, Some(1.0));
    assert!(value(port, "node_time_seconds").is_some_and(|t| t > 1.5e9));
    append(&log, 2);
    wait_value(port, errors, Some(2.0));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(value(port, errors), Some(2.0), "no line is counted twice");
    assert!(p.exited().is_none(), "SIGHUP must not stop the exporter");
    assert!(
        http_get(port, "/-/reload", &[]).is_ok_and(|r| r.status == 405),
        "reload is POST only"
    );
}

#[test]
fn http_reload_needs_the_lifecycle_flag_and_sighup_does_not() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    append(&log, 1);
    let file = dir.path().join("imd-exporter.yml");
    std::fs::write(&file, config(&log, false)).unwrap();
    let port = free_port();
    let mut p = Proc::spawn(
        "imd-exporter",
        &imd_exporter_bin(),
        [
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--storage.path={}", dir.path().join("state").display()),
            format!("--config.file={}", file.display()),
        ],
        dir.path(),
    );
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(20));
    std::fs::write(&file, config(&log, true)).unwrap();
    let (status, body) = post(port, "/-/reload");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Lifecycle API is not enabled"), "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(value(port, "node_time_seconds"), None, "nothing reloaded");
    p.signal("HUP");
    wait_value(
        port,
        "imd_exporter_config_last_reload_successful",
        Some(1.0),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while value(port, "node_time_seconds").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
