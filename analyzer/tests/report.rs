//! `imd-analyzer report` against a real Prometheus (Debian's), whose TSDB
//! `promtool` builds from a fixture holding a source series (`node_load1`
//! of two hosts, one with a hostile `instance` value) and imd's published
//! series for it (`imd_anomaly_score`, `imd_expected*`, `imd_forecast*`),
//! plus the analyzer's alert records (`alert-history.jsonl`,
//! `escalation-state.json`). The JSON's numbers are checked exactly; the
//! HTML must hold the charts and escape the hostile label. A second test
//! runs the analyzer with `reports:` and waits for the scheduled files.
//!
//! Every process listens on a loopback port picked at run time and is
//! stopped by PID when its guard is dropped.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Proc, free_port, repo_root, start_prometheus_on, tempdir, tsdb_from_openmetrics};
use serde_json::Value;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;
/// Points per series, one a minute.
const N: i64 = 120;
const HOSTILE: &str = "<script>alert(1)</script>";

/// The fixture: host-a's load is 1 but 9 at minutes 60–62 (scored 0.995,
/// 0.999, 0.997); the hostile host's load is always 1 but scored 0.992 at
/// minute 100. imd expected 1 in [0.5, 1.5] and forecast 1 in [0.5, 1.5]
/// five minutes ahead throughout.
fn build_tsdb(dir: &Path) -> PathBuf {
    let hosts = ["host-a", HOSTILE];
    let mut om = String::new();
    let family = |om: &mut String, name: &str, extra: &str, v: &dyn Fn(usize, i64) -> f64| {
        om.push_str(&format!("# TYPE {name} gauge\n"));
        for (h, host) in hosts.iter().enumerate() {
            for k in 0..N {
                om.push_str(&format!(
                    "{name}{{instance=\"{host}\"{extra}}} {} {}\n",
                    v(h, k),
                    T0 + k * 60
                ));
            }
        }
    };
    family(&mut om, "node_load1", "", &|h, k| {
        if h == 0 && (60..=62).contains(&k) {
            9.0
        } else {
            1.0
        }
    });
    family(
        &mut om,
        "imd_anomaly_score",
        ",query=\"load\",model=\"mad\"",
        &|h, k| match (h, k) {
            (0, 60) => 0.995,
            (0, 61) => 0.999,
            (0, 62) => 0.997,
            (1, 100) => 0.992,
            _ => 0.1,
        },
    );
    for (name, v) in [
        ("imd_expected", 1.0),
        ("imd_expected_lower", 0.5),
        ("imd_expected_upper", 1.5),
    ] {
        family(&mut om, name, ",query=\"load\",model=\"mad\"", &|_, _| v);
    }
    for (name, v) in [
        ("imd_forecast", 1.0),
        ("imd_forecast_lower", 0.5),
        ("imd_forecast_upper", 1.5),
    ] {
        family(
            &mut om,
            name,
            ",query=\"load\",model=\"mad\",horizon=\"5m\"",
            &|_, _| v,
        );
    }
    om.push_str("# EOF\n");
    tsdb_from_openmetrics(dir, &om)
}

fn ts(minutes: i64) -> String {
    jiff::Timestamp::from_second(T0 + minutes * 60)
        .unwrap()
        .to_string()
}

/// An alert record as the analyzer saves it.
fn record(instance: &str, fired_min: i64, extra: Value) -> Value {
    let mut r = serde_json::json!({
        "labels": {"alertname": "LoadAnomaly", "instance": instance, "query": "load", "severity": "critical"},
        "startsAt": ts(fired_min - 1),
        "policy": "critical",
        "levels": [{"at": ts(fired_min), "labels": {"escalation_level": "0"}}],
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// The data directory: one closed alert (escalated at minute 65,
/// acknowledged at 67 by alice, resolved at 80) in the history, one open
/// alert (fired at 100) in the state file, one alert of 2025 (outside).
fn write_alerts(dir: &Path) {
    let closed = record(
        "host-a",
        60,
        serde_json::json!({
            "levels": [
                {"at": ts(60), "labels": {"escalation_level": "0"}},
                {"at": ts(65), "labels": {"escalation_level": "1", "notify": "sms"}},
            ],
            "acknowledged": {"by": "alice", "at": ts(67), "via": "api"},
            "resolved": {"by": "imd-analyzer", "at": ts(80), "comment": "condition cleared", "manual": false},
            "cleared": true,
        }),
    );
    let old = record("host-b", -600_000, serde_json::json!({}));
    std::fs::write(
        dir.join("alert-history.jsonl"),
        format!("{old}\n{closed}\n"),
    )
    .unwrap();
    let open = record(HOSTILE, 100, serde_json::json!({}));
    std::fs::write(
        dir.join("escalation-state.json"),
        serde_json::json!({"version": 1, "alerts": [open]}).to_string(),
    )
    .unwrap();
}

fn write_config(dir: &Path, prom: u16, reports: &str) -> PathBuf {
    let cfg = dir.join("imd-analyzer.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  infer_every: 1s\nsources:\n  - name: prom\n    url: http://127.0.0.1:{prom}\n\
             queries:\n  - name: load\n    selector: node_load1\n    anomaly_model: mad\n    forecast_model: mad\n{reports}"
        ),
    )
    .unwrap();
    cfg
}

fn report(args: &[String]) -> Vec<u8> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

struct Setup {
    dir: tempfile::TempDir,
    prom: u16,
    _prometheus: Proc,
    data: PathBuf,
}

fn setup() -> Setup {
    let dir = tempdir();
    let tsdb = build_tsdb(dir.path());
    let prom = free_port();
    let prometheus = start_prometheus_on(&tsdb, dir.path(), prom, &[]);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_alerts(&data);
    Setup {
        dir,
        prom,
        _prometheus: prometheus,
        data,
    }
}

#[test]
fn report_from_prometheus_and_alert_records() {
    let s = setup();
    let cfg = write_config(s.dir.path(), s.prom, "");
    let common_args = |format: &str| {
        vec![
            format!("--config.file={}", cfg.display()),
            format!("--storage.path={}", s.data.display()),
            "--from=2026-01-01T00:00:00Z".to_string(),
            "--to=2026-01-01T02:00:00Z".to_string(),
            format!("--format={format}"),
        ]
    };
    let v: Value = serde_json::from_slice(&report(&common_args("json"))).unwrap();
    assert_eq!(v["notes"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["summary"],
        serde_json::json!({"series": 2, "anomalous_series": 2, "anomalous_points": 4, "events": 2, "hosts": 2})
    );
    // Top events: host-a's three minutes first (peak 0.999).
    let e = &v["top_events"][0];
    assert_eq!(e["host"], "host-a");
    assert_eq!(e["start"], ts(60));
    assert_eq!(e["end"], ts(62));
    assert_eq!(e["duration_seconds"], 120.0);
    assert_eq!(e["points"], 3);
    assert_eq!(e["peak_score"], 0.999);
    assert_eq!(e["peak_at"], ts(61));
    assert_eq!(e["value_at_peak"], 9.0);
    assert_eq!(
        (
            &e["expected_at_peak"],
            &e["lower_at_peak"],
            &e["upper_at_peak"]
        ),
        (&Value::from(1.0), &Value::from(0.5), &Value::from(1.5))
    );
    assert!(!e["chart"]["values"].as_array().unwrap().is_empty());
    assert!(!e["chart"]["expected"].as_array().unwrap().is_empty());
    let e2 = &v["top_events"][1];
    assert_eq!(e2["labels"]["instance"], HOSTILE);
    assert_eq!(e2["peak_score"], 0.992);
    // Hosts: host-a has the most events... both have one; by name then.
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts.len(), 2);
    // Forecast accuracy: each forecast of 1 against the load 5 minutes
    // later: 115 pairs per host, off by 8 three times (host-a, targets at
    // minutes 60–62), outside [0.5, 1.5] those three times.
    let a = &v["accuracy"][0];
    assert_eq!(
        (&a["query"], &a["horizon"], &a["model"]),
        (
            &Value::from("load"),
            &Value::from("5m"),
            &Value::from("mad")
        )
    );
    assert_eq!(a["series"], 2);
    assert_eq!(a["pairs"], 230);
    assert_eq!(a["mae"].as_f64().unwrap(), 24.0 / 230.0);
    assert_eq!(
        a["coverage_percent"].as_f64().unwrap(),
        100.0 * 227.0 / 230.0
    );
    assert!((a["smape_percent"].as_f64().unwrap() - 100.0 * 4.8 / 230.0).abs() < 1e-9);
    // Alerts: the 2025 one is outside the range.
    let al = &v["alert_summary"];
    assert_eq!(al["alerts"], 2);
    assert_eq!(al["acknowledged"], 1);
    assert_eq!(al["resolved"], 1);
    assert_eq!(al["escalated"], 1);
    assert_eq!(
        al["time_to_acknowledge"],
        serde_json::json!({"count": 1, "mean_seconds": 420.0, "median_seconds": 420.0, "max_seconds": 420.0})
    );
    assert_eq!(al["time_to_resolve"]["median_seconds"], 1200.0);
    let first = &v["alerts"][0];
    assert_eq!(first["fired_at"], ts(60));
    assert_eq!(first["max_level"], 1);
    assert_eq!(first["acknowledged_by"], "alice");
    assert_eq!(first["time_to_acknowledge_seconds"], 420.0);
    assert_eq!(first["time_to_resolve_seconds"], 1200.0);
    assert_eq!(v["alerts"][1]["state"], "firing");
    assert_eq!(v["alerts"][1]["time_to_acknowledge_seconds"], Value::Null);

    // HTML: the same content, charts inline, the hostile label escaped.
    let out = s.dir.path().join("report.html");
    let mut args = common_args("html");
    args.push(format!("--output={}", out.display()));
    assert!(
        report(&args).is_empty(),
        "--output writes nothing to stdout"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(html.matches("<svg").count(), 2, "one chart per top event");
    assert!(html.contains("<polygon"), "expected band");
    assert!(!html.contains("<script"), "hostile label not escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "self-contained"
    );
    assert!(html.contains("median 7m"), "time to acknowledge: {html}");
    assert!(html.contains("median 20m"), "time to resolve");
    // Kept for people to look at (README links a copy in docs/).
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("example-report.html"), &html).unwrap();

    // Without a configuration: imd's series only, and a note says why.
    let v: Value = serde_json::from_slice(&report(&[
        format!("--prometheus=http://127.0.0.1:{}", s.prom),
        format!("--storage.path={}", s.data.display()),
        "--from=2026-01-01T00:00:00Z".to_string(),
        "--to=2026-01-01T02:00:00Z".to_string(),
        "--format=json".to_string(),
    ]))
    .unwrap();
    assert_eq!(v["summary"]["events"], 2);
    assert_eq!(v["accuracy"], serde_json::json!([]));
    assert!(v["notes"][0].as_str().unwrap().contains("--config.file"));

    // Mistakes are errors naming what is wrong.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .args([
            "report",
            "--from=yesterday",
            "--prometheus=http://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from"));
}

#[test]
fn scheduled_reports_are_written_to_the_directory() {
    let s = setup();
    let reports = s.dir.path().join("reports");
    let cfg = write_config(
        s.dir.path(),
        s.prom,
        &format!(
            "reports:\n  every: 2s\n  range: {}h\n  directory: {}\n",
            // Back to a day before the fixture (and not to the 2025 alert).
            (jiff::Timestamp::now().as_second() - T0) / 3600 + 24,
            reports.display()
        ),
    );
    let port = free_port();
    let mut an = Proc::spawn(
        "analyzer",
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.path={}", s.data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        s.dir.path(),
    );
    an.wait_http_ok(port, "/-/healthy", Duration::from_secs(30));
    common::wait_for("a scheduled report", 60, || {
        reports.join("imd-report-latest.json").exists()
            && reports.join("imd-report-latest.html").exists()
    });
    let v: Value =
        serde_json::from_slice(&std::fs::read(reports.join("imd-report-latest.json")).unwrap())
            .unwrap();
    assert_eq!(v["summary"]["events"], 2, "{v:#}");
    assert_eq!(v["alert_summary"]["alerts"], 2);
    let stamped = std::fs::read_dir(&reports)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("imd-report-2") && n.ends_with(".html")
        })
        .count();
    assert!(stamped >= 1);
    let (_, metrics) = common::http_get(port, "/metrics").unwrap();
    let written = metrics
        .lines()
        .find(|l| l.starts_with("imd_reports_written_total{format=\"html\"}"))
        .unwrap_or_else(|| panic!("no report counter: {metrics}"));
    assert!(!written.ends_with(" 0"), "{written}");
    assert!(metrics.contains("imd_report_last_success_timestamp_seconds "));
}
