//! The whole pipeline against the real components: a target whose value the
//! test controls, a real Prometheus scraping it every second, imd-analyzer
//! reading Prometheus by remote-read, and a real Alertmanager receiving the
//! alert. An injected spike must raise `imd_anomaly_score` above the
//! threshold and fire the alert; normal values before it must not; the alert
//! must resolve once the values are normal again.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    am_active_alerts, free_port, http_get, spawn_prometheus, start_alertmanager, start_analyzer_as,
    tempdir, wait_for,
};

/// Serves `imd_test_value{instance="a"} V` on /metrics, V set by the test.
struct Target {
    port: u16,
    value: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let value = Arc::new(AtomicU64::new(1.0f64.to_bits()));
        let stop = Arc::new(AtomicBool::new(false));
        let (v, s) = (value.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        let _ = c.read(&mut buf);
                        let body = format!(
                            "# TYPE imd_test_value gauge\nimd_test_value{{instance=\"a\"}} {}\n",
                            f64::from_bits(v.load(Ordering::Relaxed))
                        );
                        let _ = write!(
                            c,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target { port, value, stop }
    }

    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::Relaxed);
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The analyzer's current score for the test series, if published.
fn score(port: u16) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with("imd_anomaly_score{") && l.contains("query=\"test\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Names of the alerts Alertmanager holds as active (unresolved).
fn am_active(port: u16) -> Vec<String> {
    am_active_alerts(port)
        .iter()
        .filter_map(|labels| {
            serde_json::from_str::<std::collections::BTreeMap<String, String>>(labels)
                .ok()?
                .remove("alertname")
        })
        .collect()
}

#[test]
fn spike_scores_high_fires_an_alert_and_resolves_streamed() {
    pipeline(true);
}

#[test]
fn spike_scores_high_fires_an_alert_and_resolves_samples() {
    pipeline(false);
}

/// The whole scenario, reading by remote-read with streamed XOR chunks or
/// with samples.
fn pipeline(prefer_streamed: bool) {
    let dir = tempdir();
    let target = Target::start();

    let prom_port = free_port();
    let _prom = spawn_prometheus(
        "prometheus",
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: target\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            target.port
        ),
        &dir.path().join("tsdb"),
        prom_port,
        &["--web.enable-remote-write-receiver".to_string()],
    );
    let (_am, am_port) = start_alertmanager(dir.path(), "alertmanager");

    let config = dir.path().join("imd-analyzer.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 15s\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n    prefer_streamed: {prefer_streamed}\n\
             queries:\n  - name: test\n    selector: imd_test_value\n    anomaly_model: mad\n    forecast_model: mad\n\
             \x20   params: {{window: 60, min_points: 8}}\n    history: 10m\n\
             alerting:\n  alertmanagers:\n    - url: http://127.0.0.1:{am_port}\n  resend_delay: 1s\n\
             \x20 rules:\n    - alert: ImdTestAnomaly\n      score_above: 0.99\n      labels: {{severity: warning}}\n\
             output:\n  remote_write:\n    - url: http://127.0.0.1:{prom_port}/api/v1/write\n"
        ),
    )
    .unwrap();
    let (mut analyzer, an_port) = start_analyzer_as(
        "imd-analyzer",
        &config,
        dir.path(),
        &["--log.level=debug"],
        Duration::from_secs(30),
    );

    // Normal, slightly noisy values until the model has scored a dozen points.
    let normal = [10.0, 10.4, 9.7, 10.2, 9.9, 10.1, 9.8, 10.3];
    let mut i = 0;
    let mut quiet_scores = Vec::new();
    let start = Instant::now();
    while quiet_scores.len() < 12 {
        target.set(normal[i % normal.len()]);
        i += 1;
        std::thread::sleep(Duration::from_millis(1000));
        if let Some(s) = score(an_port) {
            quiet_scores.push(s);
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no score published; analyzer said:\n{}",
            analyzer.stderr()
        );
    }
    // Skip the warm-up: the last points are judged on a full enough window.
    let settled = &quiet_scores[quiet_scores.len() - 5..];
    assert!(
        settled.iter().all(|s| *s < 0.99),
        "normal values scored {settled:?}"
    );
    assert!(
        am_active(am_port).is_empty(),
        "an alert fired before the spike"
    );

    // The spike.
    target.set(60.0);
    wait_for("the spike to score above 0.99", 20, || {
        score(an_port).is_some_and(|s| s >= 0.99)
    });
    wait_for("Alertmanager to hold ImdTestAnomaly", 20, || {
        am_active(am_port).contains(&"ImdTestAnomaly".to_string())
    });
    let (_, metrics) = http_get(an_port, "/metrics").unwrap();
    assert!(
        metrics.contains("imd_notifications_sent_total"),
        "notifier metrics missing"
    );
    assert!(
        metrics.contains("imd_read_samples_total{source=\"prom\"}"),
        "read metrics missing"
    );

    // The scores were also written back to Prometheus by remote-write.
    wait_for(
        "imd_anomaly_score in Prometheus by remote-write",
        20,
        || {
            http_get(
                prom_port,
                "/api/v1/query?query=imd_anomaly_score%7Bquery%3D%22test%22%7D",
            )
            .map(|(_, b)| {
                b.contains("\"exported_instance\":\"a\"") && b.contains("\"model\":\"mad\"")
            })
            .unwrap_or(false)
        },
    );

    // Back to normal: the score falls and the alert resolves.
    target.set(10.0);
    wait_for("the score to fall below 0.99", 30, || {
        score(an_port).is_some_and(|s| s < 0.99)
    });
    wait_for("the alert to resolve in Alertmanager", 30, || {
        !am_active(am_port).contains(&"ImdTestAnomaly".to_string())
    });

    analyzer.stop();
    assert!(
        dir.path().join("an/engine-state.json").exists(),
        "model state was not saved at shutdown"
    );
}
