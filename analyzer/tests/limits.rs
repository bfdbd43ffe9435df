//! Limits through the real binary: with `global.max_series_per_query`, a
//! query matching more series than that analyses only that many, logs it,
//! and counts the ones left out in
//! `imd_analyzer_series_limited_total{query}` every cycle; a limit of 0 is
//! a configuration error naming the key. Likewise for
//! `global.max_samples_per_read` and `global.max_emitted_series`.

mod common;

use std::path::Path;

use common::{
    build_recent_tsdb, free_port, http_get, start_analyzer, start_prometheus_on, tempdir, wait_for,
};

fn sample(port: u16, prefix: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn scored(port: u16) -> usize {
    http_get(port, "/metrics")
        .map(|(_, b)| {
            b.lines()
                .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains("query=\"a\""))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn series_over_the_limit_are_left_out_and_counted() {
    let dir = tempdir();
    let hosts: Vec<String> = (0..5).map(|h| format!("h{h}")).collect();
    let series: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| ("imd_limit_test", h.as_str()))
        .collect();
    let tsdb = build_recent_tsdb(dir.path(), &series, 120, |i, k| {
        3.0 + ((k + i as i64) % 5) as f64 * 0.1
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let config = |max: usize| {
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n  max_series_per_query: {max}\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: a\n    selector: imd_limit_test\n    history: 1h\n"
        )
    };
    let file = dir.path().join("imd-analyzer.yml");
    let bin = Path::new(env!("CARGO_BIN_EXE_imd-analyzer"));

    std::fs::write(&file, config(0)).unwrap();
    let out = std::process::Command::new(bin)
        .args([
            &format!("--config.file={}", file.display()),
            "--check-config",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("global.max_series_per_query"), "{err}");

    std::fs::write(&file, config(3)).unwrap();
    let (an, port) = start_analyzer(&file, dir.path(), &[]);
    let limited = "imd_analyzer_series_limited_total{query=\"a\"}";
    wait_for("two series to be left out", 20, || {
        sample(port, limited).is_some_and(|n| n >= 2.0)
    });
    assert_eq!(
        scored(port),
        3,
        "only max_series_per_query series are analysed"
    );
    // Counted again in each cycle they are still left out.
    let (n, cycles) = (
        sample(port, limited).unwrap(),
        sample(port, "imd_analyzer_cycles_total ").unwrap(),
    );
    wait_for("two more cycles", 20, || {
        sample(port, "imd_analyzer_cycles_total ").is_some_and(|c| c >= cycles + 2.0)
    });
    let later = sample(port, limited).unwrap();
    assert!(
        later >= n + 4.0 && (later - n) % 2.0 == 0.0,
        "{n} then {later}"
    );
    assert_eq!(scored(port), 3);
    assert!(
        an.stderr().contains("max_series_per_query"),
        "the limit is logged:\n{}",
        an.stderr()
    );
}

/// `global.max_samples_per_read` stops a read while decoding (the series
/// decoded whole before the limit are analysed, the read is counted in
/// `imd_read_limited_total{reason="samples"}`), and
/// `global.max_emitted_series` caps what `/metrics` publishes (the rest is
/// counted in `imd_analyzer_emitted_series_limited`); 0 is refused.
#[test]
fn samples_per_read_and_emitted_series_are_capped_and_counted() {
    let dir = tempdir();
    let hosts: Vec<String> = (0..5).map(|h| format!("h{h}")).collect();
    let series: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| ("imd_limit_samples", h.as_str()))
        .collect();
    // 5 series × 120 points; a limit of 300 samples stops the first read
    // after 2 series.
    let tsdb = build_recent_tsdb(dir.path(), &series, 120, |i, k| {
        3.0 + ((k + i as i64) % 5) as f64 * 0.1
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let config = |samples: usize, emitted: usize| {
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n  max_samples_per_read: {samples}\n  max_emitted_series: {emitted}\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: a\n    selector: imd_limit_samples\n    history: 1h\n    horizons: [1m]\n"
        )
    };
    let file = dir.path().join("imd-analyzer.yml");
    let bin = Path::new(env!("CARGO_BIN_EXE_imd-analyzer"));
    for (samples, emitted, key) in [
        (0, 10, "global.max_samples_per_read"),
        (10, 0, "global.max_emitted_series"),
    ] {
        std::fs::write(&file, config(samples, emitted)).unwrap();
        let out = std::process::Command::new(bin)
            .args([
                &format!("--config.file={}", file.display()),
                "--check-config",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{err}");
    }

    std::fs::write(&file, config(300, 3)).unwrap();
    let (an, port) = start_analyzer(&file, dir.path(), &[]);
    let limited = "imd_read_limited_total{source=\"prom\",query=\"a\",reason=\"samples\"}";
    // The first read (the whole history) stops at the limit; the series it
    // lacks are read on their own later (new series get their history read
    // series by series), and incremental reads stay under the limit.
    wait_for("a read to be stopped by the samples limit", 20, || {
        sample(port, limited).is_some_and(|n| n >= 1.0)
    });
    wait_for("every series to be analysed", 20, || {
        sample(port, "imd_analyzer_series ") == Some(5.0)
    });
    // 5 series publish a score, an expected value with bounds and a
    // forecast with bounds each; only 3 samples are published, scores
    // first.
    let (_, body) = http_get(port, "/metrics").unwrap();
    let published = body
        .lines()
        .filter(|l| {
            (l.starts_with("imd_anomaly_score{")
                || l.starts_with("imd_forecast")
                || l.starts_with("imd_expected"))
                && l.contains("query=\"a\"")
        })
        .count();
    assert_eq!(published, 3, "{body}");
    assert_eq!(scored(port), 3, "scores come first");
    assert!(
        sample(port, "imd_analyzer_emitted_series_limited ").is_some_and(|n| n >= 5.0 * 7.0 - 3.0),
        "{body}"
    );
    assert!(
        an.stderr().contains("max_samples_per_read"),
        "the limit is logged:\n{}",
        an.stderr()
    );
}
