//! The README's first command: `imd-analyzer demo` serves live node
//! metrics, anomaly scores and forecasts on /metrics and a page, with no
//! Prometheus.

mod common;

use std::time::Duration;

use common::{Proc, free_port, http_get, tempdir, wait_for};

#[test]
fn the_embedded_default_serves_scores_forecasts_and_a_page() {
    let dir = tempdir();
    let port = free_port();
    let mut demo = Proc::spawn(
        "imd-analyzer-demo",
        std::path::Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &[
            "demo".to_string(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--scrape.interval=300ms".to_string(),
        ],
        dir.path(),
    );
    demo.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    let metrics = || http_get(port, "/metrics").map(|r| r.1).unwrap_or_default();
    // 12 points at 300 ms: scores and forecasts within a few seconds.
    wait_for("imd_anomaly_score and imd_forecast on /metrics", 30, || {
        let m = metrics();
        m.contains("imd_anomaly_score{")
            && m.contains("imd_forecast{")
            && m.contains("horizon=\"1m\"")
    });
    let m = metrics();
    for needle in [
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
        "node_memory_MemAvailable_bytes",
        "imd_anomaly_score{cpu=\"0\",mode=\"idle\",query=\"cpu_idle\",model=\"mad\"}",
        "imd_forecast_breach_seconds{",
        "imd_analyzer_cycles_total",
        "imd_store_samples",
    ] {
        assert!(m.contains(needle), "{needle} missing from /metrics");
    }
    for line in m.lines().filter(|l| l.starts_with("imd_anomaly_score{")) {
        let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&v), "score out of [0,1]: {line}");
    }
    let (status, page) = http_get(port, "/").unwrap();
    assert_eq!(status, 200);
    assert!(
        page.contains("<h2 id=\"q-cpu_idle\">cpu_idle</h2>"),
        "page lacks the cpu_idle section"
    );
    assert!(page.contains("<svg"), "page has no chart");
    assert!(page.contains("series under analysis"));
    assert_eq!(http_get(port, "/-/healthy").unwrap().0, 200);
    demo.stop();
}
