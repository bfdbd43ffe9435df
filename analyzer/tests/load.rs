//! A bounded load test on loopback: 8 concurrent clients send 800 requests
//! each to the analyzer's `/metrics`, the analyzer's page `/` and the
//! exporter's `/metrics` (2,400 in all, a few seconds). Latency stays flat
//! (p50 and p99 of the second half of each run within a generous factor of
//! the first half's) and memory stays flat (VmRSS after within a factor of
//! VmRSS after a warm-up): no leak, no queue building up.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Proc, build_recent_tsdb, free_port, http_get, start_analyzer, start_prometheus_on, tempdir,
    wait_for,
};

const CLIENTS: usize = 8;
const REQUESTS: usize = 800;

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The imd-exporter binary next to imd-analyzer's, built when missing
/// (`cargo test -p imd-analyzer` builds only the analyzer's binaries).
fn exporter_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_imd-analyzer"))
        .parent()
        .unwrap()
        .to_path_buf();
    let bin = dir.join("imd-exporter");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "imd-exporter", "--bin", "imd-exporter"])
            .current_dir(common::repo_root())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && bin.is_file(),
            "building imd-exporter into {}",
            dir.display()
        );
    }
    bin
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sends `REQUESTS` GETs of `path` from `CLIENTS` threads; returns the
/// latencies in the order the requests were started.
fn hammer(port: u16, path: &str) -> Vec<Duration> {
    let next = AtomicUsize::new(0);
    let mut out = vec![Duration::ZERO; REQUESTS];
    let results: Vec<Vec<(usize, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= REQUESTS {
                            return mine;
                        }
                        let started = Instant::now();
                        let (status, body) = http_get(port, path).expect("request");
                        assert_eq!(status, 200, "{path}: {body}");
                        assert!(!body.is_empty());
                        mine.push((i, started.elapsed()));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, d) in results.into_iter().flatten() {
        out[i] = d;
    }
    out
}

/// Loads one endpoint and checks latency and memory stay flat.
fn check(name: &str, pid: u32, port: u16, path: &str) {
    // Warm-up: caches, allocator arenas, connection handling.
    for _ in 0..50 {
        http_get(port, path).expect("warm-up request");
    }
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let lat = hammer(port, path);
    let took = started.elapsed();
    let rss_after = rss_kib(pid);
    let (first, second) = lat.split_at(REQUESTS / 2);
    let stats = |half: &[Duration]| {
        let mut v = half.to_vec();
        v.sort();
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };
    let ((p50a, p99a), (p50b, p99b)) = (stats(first), stats(second));
    eprintln!(
        "{name} {path}: {REQUESTS} requests in {:.2} s ({:.0}/s); p50 {:.2} -> {:.2} ms, p99 {:.2} -> {:.2} ms; VmRSS {} -> {} KiB",
        took.as_secs_f64(),
        REQUESTS as f64 / took.as_secs_f64(),
        p50a.as_secs_f64() * 1e3,
        p50b.as_secs_f64() * 1e3,
        p99a.as_secs_f64() * 1e3,
        p99b.as_secs_f64() * 1e3,
        rss_before,
        rss_after
    );
    // Generous factors: a loaded 2-core machine is noisy; a leak or a
    // queue building up grows far beyond them.
    let ms = Duration::from_millis;
    assert!(
        p50b <= p50a * 3 + ms(5),
        "{name}: p50 grew from {p50a:?} to {p50b:?}"
    );
    assert!(
        p99b <= p99a * 4 + ms(25),
        "{name}: p99 grew from {p99a:?} to {p99b:?}"
    );
    assert!(
        rss_after <= rss_before * 3 / 2 + 16 * 1024,
        "{name}: VmRSS grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn metrics_and_the_page_stay_flat_under_load() {
    let dir = tempdir();
    let hosts: Vec<String> = (0..20).map(|h| format!("h{h}")).collect();
    let series: Vec<(&str, &str)> = hosts
        .iter()
        .map(|h| ("imd_load_test", h.as_str()))
        .collect();
    let tsdb = build_recent_tsdb(dir.path(), &series, 120, |i, k| {
        3.0 + ((k * 3 + i as i64) % 7) as f64 * 0.1
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let file = dir.path().join("imd-analyzer.yml");
    std::fs::write(
        &file,
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: l\n    selector: imd_load_test\n    history: 1h\n    horizons: [1m, 5m]\n"
        ),
    )
    .unwrap();
    let (mut an, port) = start_analyzer(&file, dir.path(), &[]);
    wait_for("every series to be scored", 30, || {
        http_get(port, "/metrics")
            .map(|(_, b)| {
                b.lines()
                    .filter(|l| l.starts_with("imd_anomaly_score{"))
                    .count()
            })
            .unwrap_or(0)
            == 20
    });
    let exp_port = free_port();
    let mut exp = Proc::spawn(
        "imd-exporter",
        &exporter_bin(),
        &[
            format!("--web.listen-address=127.0.0.1:{exp_port}"),
            format!("--storage.path={}", dir.path().join("exp").display()),
        ],
        dir.path(),
    );
    exp.wait_http_ok(exp_port, "/-/ready", Duration::from_secs(20));

    let an_pid = an.pid().unwrap();
    check("imd-analyzer", an_pid, port, "/metrics");
    check("imd-analyzer", an_pid, port, "/");
    check("imd-exporter", exp.pid().unwrap(), exp_port, "/metrics");
    assert!(an.exited().is_none() && exp.exited().is_none());
}
