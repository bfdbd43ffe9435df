//! Faults survived, with the real processes started and killed by PID:
//! - Prometheus killed: reads fail and are counted, the source backs off
//!   (`imd_read_backoff_seconds`), scores go stale (not published once no
//!   fresh point came within the lookback) while the series keep their
//!   models; Prometheus restarted on the same port and TSDB: reads recover
//!   without restarting the analyzer and fresh scores come back, no refit.
//! - A Prometheus that stalls past the timeout: reads time out, counted,
//!   with backoff; the analyzer keeps serving.
//! - The analyzer SIGKILLed mid-cycle while it refits 60 series: the
//!   state file is intact, the restarted analyzer loads it (no refit) and
//!   scores go on.
//! - Two Alertmanagers, one down: the other receives every alert at once;
//!   the down one gets its queue (firing and resolved) when it is back.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use imd_analyzer::alert::{Alert, AlertmanagerConfig, Notifier, NotifierConfig};
use imd_analyzer::engine::persist::StateFile;

use common::{
    Proc, am_active_alerts, build_recent_tsdb, free_port, http_get, metrics_body, sample_value,
    spawn_prometheus, start_alertmanager, start_alertmanager_on, start_analyzer_as,
    start_prometheus_on, tempdir, wait_for,
};

fn metric(port: u16, prefix: &str) -> Option<f64> {
    sample_value(&metrics_body(port), prefix)
}

fn scores(port: u16, query: &str) -> usize {
    let q = format!("query=\"{query}\"");
    metrics_body(port)
        .lines()
        .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains(&q))
        .count()
}

/// The analyzer as `name` with `config` (YAML text, written to
/// `dir/<name>.yml`); up to 2 minutes to get ready, since a restarted one
/// loads the state of many series.
fn start_analyzer(dir: &Path, config: &str, name: &str) -> (Proc, u16) {
    let file = dir.join(format!("{name}.yml"));
    std::fs::write(&file, config).unwrap();
    start_analyzer_as(name, &file, dir, &[], Duration::from_secs(120))
}

/// Prometheus as `name` scraping itself every second into `tsdb` on `port`.
fn start_scraping_prometheus(dir: &Path, tsdb: &Path, port: u16, name: &str) -> Proc {
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    );
    spawn_prometheus(name, dir, &config, tsdb, port, &[])
}

#[test]
fn prometheus_killed_and_restarted_scores_go_stale_then_recover_without_restart() {
    let dir = tempdir();
    let tsdb = dir.path().join("tsdb");
    let prom_port = free_port();
    let mut prom = start_scraping_prometheus(dir.path(), &tsdb, prom_port, "prometheus");
    let config = format!(
        "global:\n  infer_every: 1s\n  lookback_delta: 4s\n\
         sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n    timeout: 2s\n\
         queries:\n  - name: p\n    selector: 'scrape_duration_seconds{{job=\"self\"}}'\n    history: 1h\n    params: {{min_points: 5}}\n"
    );
    let (an, port) = start_analyzer(dir.path(), &config, "imd-analyzer");
    wait_for("the scrape series to be scored", 60, || {
        scores(port, "p") == 1
    });
    let fits = metric(port, "imd_analyzer_fits_total ").unwrap();
    let errors = |kind: &str| {
        metric(
            port,
            &format!("imd_read_errors_total{{source=\"prom\",kind=\"{kind}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let backoff = "imd_read_backoff_seconds{source=\"prom\"}";
    let failures = "imd_read_consecutive_failures{source=\"prom\"}";
    assert_eq!(metric(port, failures), Some(0.0));

    // Down: failures counted, backoff, and the score goes stale.
    prom.kill();
    let down_at = Instant::now();
    wait_for("reads to fail and back off", 20, || {
        errors("unavailable") >= 2.0 && metric(port, failures).is_some_and(|f| f >= 2.0)
    });
    let mut seen_backoff = 0.0f64;
    wait_for("the score to go stale", 20, || {
        seen_backoff = seen_backoff.max(metric(port, backoff).unwrap_or(0.0));
        scores(port, "p") == 0
    });
    assert!(
        down_at.elapsed() >= Duration::from_secs(3),
        "not stale before the lookback"
    );
    let m = metrics_body(port);
    assert_eq!(
        sample_value(&m, "imd_analyzer_series "),
        Some(1.0),
        "state kept"
    );
    assert_eq!(sample_value(&m, "imd_analyzer_series_stale "), Some(1.0));
    assert!(errors("backoff") >= 1.0, "cycles in backoff skip the read");
    assert!(seen_backoff > 0.0, "backoff published");

    // Back on the same port and TSDB: recovery, fresh scores, no refit.
    let _prom = start_scraping_prometheus(dir.path(), &tsdb, prom_port, "prometheus2");
    wait_for("fresh scores after the restart", 60, || {
        scores(port, "p") == 1
    });
    let m = metrics_body(port);
    assert_eq!(sample_value(&m, failures), Some(0.0));
    assert_eq!(sample_value(&m, backoff), Some(0.0));
    assert_eq!(sample_value(&m, "imd_analyzer_series_stale "), Some(0.0));
    assert_eq!(
        sample_value(&m, "imd_analyzer_fits_total "),
        Some(fits),
        "the series kept its model through the outage\n{m}\n{}",
        an.stderr()
    );
    drop(an);
}

#[test]
fn a_stalled_prometheus_times_out_with_backoff_and_the_analyzer_keeps_serving() {
    let dir = tempdir();
    // Accepts connections and never answers.
    let stall = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_port = stall.local_addr().unwrap().port();
    let config = format!(
        "global:\n  infer_every: 1s\n\
         sources:\n  - name: slow\n    url: http://127.0.0.1:{stall_port}\n    timeout: 500ms\n\
         queries:\n  - name: s\n    selector: up\n    history: 1h\n"
    );
    let (_an, port) = start_analyzer(dir.path(), &config, "imd-analyzer");
    wait_for("timeouts to be counted", 20, || {
        metric(
            port,
            "imd_read_errors_total{source=\"slow\",kind=\"timeout\"}",
        )
        .is_some_and(|n| n >= 2.0)
    });
    wait_for("the source to back off", 20, || {
        metric(port, "imd_read_consecutive_failures{source=\"slow\"}").is_some_and(|n| n >= 2.0)
            && metric(
                port,
                "imd_read_errors_total{source=\"slow\",kind=\"backoff\"}",
            )
            .is_some_and(|n| n >= 1.0)
    });
    let started = Instant::now();
    assert!(http_get(port, "/metrics").is_ok_and(|r| r.0 == 200));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/metrics answers while the source stalls"
    );
    drop(stall);
}

#[test]
fn a_sigkilled_analyzer_restarts_from_intact_state_and_scores_on() {
    let dir = tempdir();
    const SERIES: usize = 60;
    let hosts: Vec<String> = (0..SERIES).map(|h| format!("h{h}")).collect();
    let series: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| ("imd_kill_test", h.as_str()))
        .collect();
    let tsdb = build_recent_tsdb(dir.path(), &series, 240, |i, k| {
        5.0 + ((k * 7 + i as i64) % 11) as f64 * 0.1 + (k as f64 / 20.0).sin()
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let config = |fit_every: &str| {
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n  fit_every: {fit_every}\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: k\n    selector: imd_kill_test\n    history: 2h\n    anomaly_model: ets\n    forecast_model: ets\n"
        )
    };
    // First run: fitted, then stopped cleanly: the state is saved.
    let (mut an, port) = start_analyzer(dir.path(), &config("1h"), "run1");
    wait_for("every series to be scored", 180, || {
        scores(port, "k") == SERIES
    });
    an.stop();
    let state = StateFile::in_dir(&dir.path().join("an")).unwrap();
    assert_eq!(state.load().len(), SERIES);
    let saved = std::fs::read(state.path()).unwrap();

    // Second run refits every series at every cycle (fit_every 1s), and is
    // killed in the middle of that work.
    let (mut an, port) = start_analyzer(dir.path(), &config("1s"), "run2");
    wait_for("two cycles of refits", 60, || {
        metric(port, "imd_analyzer_fits_total ").is_some_and(|f| f >= SERIES as f64)
    });
    let cycle = metric(port, "imd_analyzer_last_cycle_duration_seconds ").unwrap_or(0.0);
    eprintln!("a refitting cycle takes {cycle:.2} s; killing the analyzer");
    an.kill();
    // No save happened since the first run's (saves are atomic and every
    // 5 minutes); the file is whole.
    assert_eq!(std::fs::read(state.path()).unwrap(), saved);
    assert_eq!(state.load().len(), SERIES, "the state file loads");

    // Third run: the state loads, nothing is refitted, scores go on.
    let (an, port) = start_analyzer(dir.path(), &config("1h"), "run3");
    wait_for("scores after the restart", 60, || {
        scores(port, "k") == SERIES
    });
    assert_eq!(metric(port, "imd_analyzer_fits_total "), Some(0.0));
    assert!(
        an.stderr().contains(&format!("restored_series={SERIES}")),
        "{}",
        an.stderr()
    );
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).unwrap()
}

fn alert(name: &str, at: jiff::Timestamp) -> Alert {
    Alert::new([("alertname", name), ("instance", "host:9100")], at)
}

fn names(port: u16) -> Vec<String> {
    let mut v: Vec<String> = am_active_alerts(port)
        .into_iter()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(&l).ok()?["alertname"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn with_one_of_two_alertmanagers_down_the_other_gets_everything_and_the_queue_waits() {
    let dir = tempdir();
    let (_am1, up) = start_alertmanager(dir.path(), "am1");
    let down = free_port();
    let n = Notifier::new(NotifierConfig {
        alertmanagers: vec![
            AlertmanagerConfig::new(format!("http://127.0.0.1:{up}")),
            AlertmanagerConfig::new(format!("http://127.0.0.1:{down}")),
        ],
        eval_interval: Duration::from_secs(1),
        retry_min_backoff: Duration::from_millis(100),
        retry_max_backoff: Duration::from_millis(500),
        ..NotifierConfig::default()
    })
    .expect("building the notifier");
    let t0 = now();
    n.sync(t0, vec![alert("ImdA", t0), alert("ImdB", t0)]);
    wait_for("the live Alertmanager to get both alerts", 10, || {
        names(up) == ["ImdA", "ImdB"]
    });
    wait_for("failed attempts on the down one", 10, || {
        n.metrics().errors_total(1) >= 2
    });
    // A resolves and C fires while the second is still down.
    std::thread::sleep(Duration::from_millis(1100));
    let t1 = now();
    n.sync(t1, vec![alert("ImdB", t0), alert("ImdC", t1)]);
    wait_for("the live Alertmanager to follow", 10, || {
        names(up) == ["ImdB", "ImdC"]
    });
    assert_eq!(n.metrics().sent_total(1), 0);
    assert!(n.metrics().queued(1) > 0, "the down one's alerts wait");

    // The second comes up: it gets the state as it is now.
    let _am2 = start_alertmanager_on(dir.path(), "am2", down);
    wait_for("the returning Alertmanager to get the queue", 15, || {
        names(down) == ["ImdB", "ImdC"]
    });
    wait_for("its queue to drain", 10, || n.metrics().queued(1) == 0);
    assert!(n.metrics().sent_total(1) >= 2);
    assert_eq!(names(up), ["ImdB", "ImdC"]);
}
