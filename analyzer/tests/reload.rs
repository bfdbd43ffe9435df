//! Configuration reload through the real binary, as Prometheus does it: a
//! real Prometheus serves a TSDB built by `promtool`, imd-analyzer reads it,
//! and its configuration file is rewritten while it runs.
//! - `POST /-/reload` with an invalid file answers 500 naming the file and
//!   key, logs it, sets `imd_analyzer_config_last_reload_successful` to 0,
//!   and the old configuration keeps running.
//! - `SIGHUP` with a valid file that adds a query puts it in force: the new
//!   query's series are analysed, while the unchanged query's series keep
//!   their model state (they are not fitted again).
//! - A reload that changes a query's model refits its series.
//! - Alerting: a reload that points to another Alertmanager moves the
//!   firing alert there; one that removes the rule resolves it.
//! - Without `--web.enable-lifecycle`, `POST /-/reload` answers 403 (as
//!   Prometheus) and reloads nothing; SIGHUP still reloads.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    am_active_alerts, build_recent_tsdb, free_port, http_get, start_alertmanager, start_analyzer,
    start_prometheus_on, tempdir, wait_for,
};

const POINTS: i64 = 240;
const HOSTS: usize = 3;

/// `imd_reload_a` and `imd_reload_b`, three hosts each, over the last hour.
fn build_tsdb(dir: &Path) -> std::path::PathBuf {
    let hosts: Vec<String> = (0..HOSTS).map(|h| format!("h{h}")).collect();
    let mut series = Vec::new();
    for name in ["imd_reload_a", "imd_reload_b"] {
        series.extend(hosts.iter().map(|h| (name, h.as_str())));
    }
    build_recent_tsdb(dir, &series, POINTS, |i, k| {
        5.0 + ((k * 3 + i as i64) % 7) as f64 * 0.2
    })
}

fn config(prom_port: u16, queries: &[(&str, &str, &str)]) -> String {
    let mut c = format!(
        "global:\n  infer_every: 1s\n  lookback_delta: 10m\n\
         sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\nqueries:\n"
    );
    for (name, selector, model) in queries {
        c.push_str(&format!(
            "  - name: {name}\n    selector: {selector}\n    anomaly_model: {model}\n    forecast_model: drift\n    history: 2h\n"
        ));
    }
    c
}

/// Status and body of `POST path` on `127.0.0.1:port`.
fn http_post(port: u16, path: &str) -> (u16, String) {
    let r = common::http_post(port, path, &[], "").unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (r.status, r.text())
}

/// The value of the first sample of `name` (a full sample name with labels,
/// or a name without labels) on /metrics.
fn metric(port: u16, name: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How many series of query `q` have a score on /metrics.
fn scored(port: u16, q: &str) -> usize {
    let Ok((_, body)) = http_get(port, "/metrics") else {
        return 0;
    };
    let tag = format!("query=\"{q}\"");
    body.lines()
        .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains(&tag))
        .count()
}

#[test]
fn reload_rejects_bad_files_and_applies_good_ones_keeping_model_state() {
    let dir = tempdir();
    let tsdb = build_tsdb(dir.path());
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let file = dir.path().join("imd-analyzer.yml");
    std::fs::write(&file, config(prom_port, &[("a", "imd_reload_a", "mad")])).unwrap();
    let (mut an, port) = start_analyzer(&file, dir.path(), &["--web.enable-lifecycle"]);
    wait_for("query a's series to be scored", 30, || {
        scored(port, "a") == HOSTS
    });
    let ok = "imd_analyzer_config_last_reload_successful";
    let when = "imd_analyzer_config_last_reload_success_timestamp_seconds";
    assert_eq!(metric(port, ok), Some(1.0));
    let started = metric(port, when).expect("reload timestamp");
    let fits = |p| metric(p, "imd_analyzer_fits_total").unwrap_or(-1.0);
    assert_eq!(fits(port), HOSTS as f64);

    // An invalid file: rejected with the file and key named, the old
    // configuration keeps running.
    std::fs::write(
        &file,
        config(prom_port, &[("a", "imd_reload_a", "no_such_model")]),
    )
    .unwrap();
    let (status, body) = http_post(port, "/-/reload");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("imd-analyzer.yml") && body.contains("queries[0].anomaly_model"),
        "{body}"
    );
    assert_eq!(metric(port, ok), Some(0.0));
    assert_eq!(metric(port, when), Some(started));
    wait_for("the failure to be logged with its key", 10, || {
        an.stderr().contains("queries[0].anomaly_model")
    });
    let cycles = metric(port, "imd_analyzer_cycles_total").unwrap();
    wait_for("cycles to go on under the old configuration", 10, || {
        metric(port, "imd_analyzer_cycles_total").is_some_and(|c| c >= cycles + 2.0)
    });
    assert_eq!(scored(port, "a"), HOSTS);
    // A file that does not parse at all: rejected the same way, by SIGHUP.
    std::fs::write(&file, "sources: [\n").unwrap();
    an.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metric(port, ok), Some(0.0));
    assert!(an.exited().is_none(), "SIGHUP must not stop the analyzer");

    // A valid file adding query b, by SIGHUP: b's series are fitted, a's
    // keep their state (no refit).
    std::fs::write(
        &file,
        config(
            prom_port,
            &[("a", "imd_reload_a", "mad"), ("b", "imd_reload_b", "mad")],
        ),
    )
    .unwrap();
    an.signal("HUP");
    wait_for("the reload to succeed", 10, || {
        metric(port, ok) == Some(1.0)
    });
    assert!(metric(port, when).unwrap() > started);
    wait_for("query b's series to be scored", 30, || {
        scored(port, "b") == HOSTS
    });
    assert_eq!(scored(port, "a"), HOSTS);
    assert_eq!(
        fits(port),
        2.0 * HOSTS as f64,
        "only b's series are fitted; a's resumed from their state"
    );

    // Changing a's model refits a's series; the same file again changes
    // nothing.
    std::fs::write(
        &file,
        config(
            prom_port,
            &[
                ("a", "imd_reload_a", "zscore"),
                ("b", "imd_reload_b", "mad"),
            ],
        ),
    )
    .unwrap();
    let (status, body) = http_post(port, "/-/reload");
    assert_eq!(status, 200, "{body}");
    wait_for("a's series to be refitted", 30, || {
        fits(port) == 3.0 * HOSTS as f64
    });
    let (status, _) = http_post(port, "/-/reload");
    assert_eq!(status, 200);
    let cycles = metric(port, "imd_analyzer_cycles_total").unwrap();
    wait_for("two more cycles", 10, || {
        metric(port, "imd_analyzer_cycles_total").is_some_and(|c| c >= cycles + 2.0)
    });
    assert_eq!(
        fits(port),
        3.0 * HOSTS as f64,
        "an unchanged reload refits nothing"
    );
    assert!(
        http_get(port, "/-/reload").is_ok_and(|(s, _)| s == 405),
        "reload is POST only"
    );
}

#[test]
fn reload_moves_alerts_to_a_new_alertmanager_and_resolves_removed_rules() {
    let dir = tempdir();
    // One series whose last point is far off its history: it scores high.
    let tsdb = build_recent_tsdb(dir.path(), &[("imd_reload_spike", "s")], 120, |_, k| {
        if k == 119 {
            50.0
        } else {
            5.0 + (k % 5) as f64 * 0.1
        }
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let (_am1, am1) = start_alertmanager(dir.path(), "am1");
    let (_am2, am2) = start_alertmanager(dir.path(), "am2");
    let config = |am: u16, rule: &str| {
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: s\n    selector: imd_reload_spike\n    history: 1h\n\
             alerting:\n  alertmanagers:\n    - url: http://127.0.0.1:{am}\n  resend_delay: 1s\n\
             \x20 rules:\n    - alert: {rule}\n      score_above: 0.99\n"
        )
    };
    let file = dir.path().join("imd-analyzer.yml");
    std::fs::write(&file, config(am1, "ImdReloadSpike")).unwrap();
    let (_an, port) = start_analyzer(&file, dir.path(), &["--web.enable-lifecycle"]);
    let firing = |am: u16, name: &str| {
        am_active_alerts(am)
            .iter()
            .any(|a| a.contains(&format!("\"alertname\":\"{name}\"")))
    };
    wait_for("the alert in the first Alertmanager", 30, || {
        firing(am1, "ImdReloadSpike")
    });
    assert!(am_active_alerts(am2).is_empty());

    // Another Alertmanager: the new notifier sends the firing alert there.
    std::fs::write(&file, config(am2, "ImdReloadSpike")).unwrap();
    let (status, body) = http_post(port, "/-/reload");
    assert_eq!(status, 200, "{body}");
    wait_for("the alert in the second Alertmanager", 30, || {
        firing(am2, "ImdReloadSpike")
    });

    // The rule renamed: the old alert resolves, the new one fires.
    std::fs::write(&file, config(am2, "ImdReloadRenamed")).unwrap();
    let (status, body) = http_post(port, "/-/reload");
    assert_eq!(status, 200, "{body}");
    wait_for("the renamed rule's alert", 30, || {
        firing(am2, "ImdReloadRenamed")
    });
    wait_for("the removed rule's alert to resolve", 30, || {
        !firing(am2, "ImdReloadSpike")
    });
}

#[test]
fn http_reload_needs_the_lifecycle_flag_and_sighup_does_not() {
    let dir = tempdir();
    // Nothing listens on the source's port: reads fail, the analyzer runs.
    let file = dir.path().join("imd-analyzer.yml");
    std::fs::write(&file, config(free_port(), &[("a", "imd_reload_a", "mad")])).unwrap();
    let (mut an, port) = start_analyzer(&file, dir.path(), &[]);
    let when = "imd_analyzer_config_last_reload_success_timestamp_seconds";
    let started = metric(port, when).expect("reload timestamp");
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body) = http_post(port, "/-/reload");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Lifecycle API is not enabled"), "{body}");
    assert_eq!(metric(port, when), Some(started), "nothing was reloaded");
    an.signal("HUP");
    wait_for("SIGHUP to reload", 20, || {
        metric(port, when).is_some_and(|t| t > started)
    });
    assert_eq!(
        metric(port, "imd_analyzer_config_last_reload_successful"),
        Some(1.0)
    );
}
