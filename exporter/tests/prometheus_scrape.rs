//! A real Prometheus scrapes a real imd-exporter: host metrics arrive and
//! can be rated, every collector reports success, and lines appended to a
//! tailed log file turn into counters and a histogram that Prometheus sees
//! grow.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{free_port, prom_query, result_value, start_imd, start_prometheus, tempdir};

/// Polls `check` every 250 ms until it returns `Ok`, or fails the test with
/// the last reason after `limit`.
fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > limit => {
                panic!("{what}: not true within {limit:?}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn single_value(port: u16, expr: &str) -> Result<f64, String> {
    let r = prom_query(port, expr)?;
    match r.as_slice() {
        [one] => result_value(one).ok_or_else(|| format!("{expr}: no value in {one}")),
        [] => Err(format!("{expr}: no data yet")),
        many => Err(format!("{expr}: {} series, expected one", many.len())),
    }
}

fn append(path: &std::path::Path, lines: &[&str]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening the log");
    for l in lines {
        writeln!(f, "{l}").expect("appending to the log");
    }
    f.flush().expect("flushing the log");
}

#[test]
fn prometheus_scrapes_host_and_log_metrics() {
    let dir = tempdir();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "2024-01-01 old line before the exporter started ERROR E1\n",
    )
    .expect("creating the log");
    let config = dir.path().join("exporter.yml");
    std::fs::write(
        &config,
        format!(
            r#"logs:
  poll_interval: 200ms
  files:
    - path: {log}
      rules:
        - name: imd_log_test_errors_total
          help: Error lines of the test application by code.
          regex: 'ERROR (?P<code>E[0-9]+)'
          labels: [code]
        - name: imd_log_test_request_duration_seconds
          help: Request durations logged by the test application.
          type: histogram
          regex: 'took (?P<ms>[0-9.]+)ms'
          value: ms
          scale: 0.001
          buckets: [0.05, 0.1, 0.5]
"#,
            log = log.display()
        ),
    )
    .expect("writing exporter.yml");

    let imd_port = free_port();
    let _imd = start_imd(
        dir.path(),
        imd_port,
        &[format!("--config.file={}", config.display())],
    );
    let prom_port = free_port();
    let _prom = start_prometheus(
        dir.path(),
        prom_port,
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: imd\n    static_configs:\n      - targets: ['127.0.0.1:{imd_port}']\n"
        ),
    );
    let limit = Duration::from_secs(40);

    // The exporter reads from the end at start-up: the old line is not counted.
    append(
        &log,
        &[
            "ERROR E42 disk full",
            "INFO all good",
            "ERROR E42 disk full again",
            "ERROR E7 timeout",
        ],
    );
    append(
        &log,
        &["GET / took 20ms", "GET /a took 70ms", "GET /b took 300ms"],
    );

    let up = eventually("up{job=\"imd\"} == 1", limit, || {
        let v = single_value(prom_port, "up{job=\"imd\"}")?;
        if v == 1.0 {
            Ok(v)
        } else {
            Err(format!("up = {v}"))
        }
    });
    assert_eq!(up, 1.0);

    eventually("the first batch of log lines is counted", limit, || {
        let e42 = single_value(
            prom_port,
            "imd_log_test_errors_total{job=\"imd\",code=\"E42\"}",
        )?;
        let e7 = single_value(
            prom_port,
            "imd_log_test_errors_total{job=\"imd\",code=\"E7\"}",
        )?;
        if (e42, e7) == (2.0, 1.0) {
            Ok(())
        } else {
            Err(format!("E42 = {e42}, E7 = {e7}"))
        }
    });
    let e1 = prom_query(prom_port, "imd_log_test_errors_total{code=\"E1\"}").expect("query E1");
    assert!(
        e1.is_empty(),
        "a line written before start-up was counted: {e1:?}"
    );

    // Lines written while Prometheus watches make the counter grow.
    append(
        &log,
        &[
            "ERROR E42 disk full",
            "ERROR E42 disk full",
            "ERROR E42 disk full",
        ],
    );
    eventually(
        "the second batch is counted and increase() sees it",
        limit,
        || {
            let v = single_value(
                prom_port,
                "imd_log_test_errors_total{job=\"imd\",code=\"E42\"}",
            )?;
            let inc = single_value(
                prom_port,
                "increase(imd_log_test_errors_total{job=\"imd\",code=\"E42\"}[1m])",
            )?;
            if v == 5.0 && inc > 0.0 {
                Ok(())
            } else {
                Err(format!("value {v}, increase {inc}"))
            }
        },
    );

    eventually("the histogram has the three durations", limit, || {
        let count = single_value(prom_port, "imd_log_test_request_duration_seconds_count")?;
        let sum = single_value(prom_port, "imd_log_test_request_duration_seconds_sum")?;
        let le01 = single_value(
            prom_port,
            "imd_log_test_request_duration_seconds_bucket{le=\"0.1\"}",
        )?;
        let le005 = single_value(
            prom_port,
            "imd_log_test_request_duration_seconds_bucket{le=\"0.05\"}",
        )?;
        if count == 3.0 && (sum - 0.39).abs() < 1e-9 && le01 == 2.0 && le005 == 1.0 {
            Ok(())
        } else {
            Err(format!(
                "count {count}, sum {sum}, le=0.1 {le01}, le=0.05 {le005}"
            ))
        }
    });

    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rates = eventually("rate(node_cpu_seconds_total[1m]) has data", limit, || {
        let r = prom_query(prom_port, "rate(node_cpu_seconds_total{job=\"imd\"}[1m])")?;
        if r.len() >= ncpu * 8 {
            Ok(r)
        } else {
            Err(format!("{} series", r.len()))
        }
    });
    for r in &rates {
        let v = result_value(r).unwrap_or(f64::NAN);
        // A CPU cannot spend more than a second per second in one mode
        // (small overshoot from scrape timing jitter).
        assert!(
            (0.0..=1.5).contains(&v),
            "implausible CPU rate {v} for {}",
            r["metric"]
        );
    }
    // rate() over a window mostly before the first scrape divides by the
    // whole window; irate() uses the last two samples, so their sum over
    // every mode and CPU is the wall-clock time: about one second per CPU.
    let busy = eventually("irate() over two scrapes", limit, || {
        single_value(
            prom_port,
            "sum(irate(node_cpu_seconds_total{job=\"imd\"}[1m]))",
        )
    });
    assert!(
        busy > 0.5 * ncpu as f64 && busy < 1.5 * ncpu as f64,
        "all modes of all CPUs together should add up to about {ncpu} CPU-seconds per second, got {busy}"
    );

    // Every collector that is on succeeds here, except those whose data this
    // machine lacks (checked directly, not assumed).
    let success = prom_query(prom_port, "node_scrape_collector_success{job=\"imd\"}")
        .expect("collector success");
    let mut failed = Vec::new();
    let mut seen = Vec::new();
    for r in &success {
        let name = r["metric"]["collector"].as_str().unwrap_or("?").to_string();
        let ok = result_value(r) == Some(1.0);
        let excused = match name.as_str() {
            "pressure" => !std::path::Path::new("/proc/pressure/cpu").exists(),
            _ => false,
        };
        if !ok && !excused {
            failed.push(name.clone());
        }
        seen.push(name);
    }
    for must in ["cpu", "meminfo", "loadavg", "logs"] {
        assert!(
            seen.iter().any(|s| s == must),
            "collector {must} is not in the scrape: {seen:?}"
        );
    }
    assert!(
        failed.is_empty(),
        "collectors failing under Prometheus: {failed:?} (all: {seen:?})"
    );
    println!(
        "collectors scraped by Prometheus, all successful: {}",
        seen.join(", ")
    );

    let samples =
        single_value(prom_port, "scrape_samples_scraped{job=\"imd\"}").expect("samples scraped");
    assert!(samples > 100.0, "only {samples} samples per scrape");
}
