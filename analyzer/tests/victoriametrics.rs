//! VictoriaMetrics as a back end (Debian's `victoria-metrics`, 1.79): two
//! hours of history imported into it, imd-analyzer reading them through its
//! Prometheus-compatible `query_range` API (under `/prometheus`) and writing
//! its own series back by remote-write, both with basic authentication.
//! VictoriaMetrics answers the points within `-search.latencyOffset` (30 s)
//! of now with the value before them; the source's `query_offset: 30s`
//! keeps imd from taking those provisional values for good.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::{
    Proc, free_port, http_get, http_post, require_tool, tempdir, unix_now_s, url_encode, wait_for,
};

const USER: &str = "imd";
const PASSWORD: &str = "vm-s3cret";
const STEP_S: i64 = 15;
/// Two hours of 15 s samples.
const POINTS: i64 = 480;
/// The newest samples of the spiking series that are raised.
const SPIKE_POINTS: i64 = 5;
const INSTANCES: [&str; 3] = ["a", "b", "c"];

/// Sample `k` of series `i`: a level per series, a small repeating wiggle,
/// and for `c` a jump of 20 over its newest samples.
fn value(i: usize, k: i64) -> f64 {
    let base = 10.0 * (i + 1) as f64
        + 0.1 * ((k * 7 + i as i64) % 11) as f64
        + 0.3 * (k as f64 / 20.0).sin();
    if INSTANCES[i] == "c" && k >= POINTS - SPIKE_POINTS {
        base + 20.0
    } else {
        base
    }
}

/// `method path` (`GET`, or `POST` with `body`) on VictoriaMetrics with
/// basic authentication (or without when `auth` is false): status and body.
fn vm_request(port: u16, method: &str, path: &str, body: &str, auth: bool) -> (u16, String) {
    try_vm_request(port, method, path, body, auth)
        .unwrap_or_else(|e| panic!("{method} {path} to VictoriaMetrics: {e}"))
}

/// [`vm_request`], with a failed connection as an error.
fn try_vm_request(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    auth: bool,
) -> std::io::Result<(u16, String)> {
    let authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let headers: &[(&str, &str)] = if auth {
        &[("authorization", &authorization)]
    } else {
        &[]
    };
    let r = match method {
        "POST" => http_post(port, path, headers, body),
        "GET" => imd_testkit::http_get(port, path, headers),
        _ => panic!("vm_request: no {method} requests"),
    }?;
    Ok((r.status, r.text()))
}

/// The `data.result` of an instant query, failing on a non-200 answer;
/// `nocache=1` evaluates it at now rather than `-search.latencyOffset`
/// (30 s) back, so that freshly written series are seen at once.
fn vm_query(port: u16, promql: &str) -> Vec<serde_json::Value> {
    let (status, body) = vm_request(
        port,
        "GET",
        &format!("/api/v1/query?nocache=1&query={}", url_encode(promql)),
        "",
        true,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The analyzer's `imd_anomaly_score` lines for query `vm`.
fn scores(port: u16) -> Vec<String> {
    let Ok((200, body)) = http_get(port, "/metrics") else {
        return Vec::new();
    };
    body.lines()
        .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains("query=\"vm\""))
        .map(String::from)
        .collect()
}

fn line_value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn analyzer_reads_from_and_writes_to_victoriametrics() {
    let vm_bin = require_tool("victoria-metrics");
    let dir = tempdir();
    let vm_port = free_port();
    let mut vm = Proc::spawn(
        "victoria-metrics",
        &vm_bin,
        &[
            format!("-storageDataPath={}", dir.path().join("vm").display()),
            format!("-httpListenAddr=127.0.0.1:{vm_port}"),
            "-retentionPeriod=100y".to_string(),
            // Imported history is older than the answers it may cache.
            "-search.disableCache".to_string(),
            format!("-httpAuth.username={USER}"),
            format!("-httpAuth.password={PASSWORD}"),
        ],
        dir.path(),
    );
    vm.wait_http_ok(vm_port, "/health", Duration::from_secs(30));
    // `/health` answers before everything behind it may: wait for an
    // authenticated query too (a CI run once had its first request after
    // `/health` reset).
    wait_for("VictoriaMetrics to answer queries", 30, || {
        matches!(
            try_vm_request(vm_port, "GET", "/api/v1/query?query=1", "", true),
            Ok((200, _))
        )
    });

    // The history, in the Prometheus text format with millisecond
    // timestamps, the newest sample 3 s old; plus a counter-like probe
    // series (not analysed) whose samples are 1, 2, 3, ...
    let now_s = unix_now_s();
    let last = now_s - 3;
    let mut text = String::new();
    for (i, instance) in INSTANCES.iter().enumerate() {
        for k in 0..POINTS {
            let t = last - (POINTS - 1 - k) * STEP_S;
            text.push_str(&format!(
                "imd_vm_test{{instance=\"{instance}\"}} {} {}\n",
                value(i, k),
                t * 1000
            ));
        }
    }
    for k in 0..POINTS {
        let t = last - (POINTS - 1 - k) * STEP_S;
        text.push_str(&format!("imd_vm_probe {} {}\n", k + 1, t * 1000));
    }
    // An empty body: VictoriaMetrics refuses before reading one, and a
    // body left unread when it closes may turn its answer into a reset.
    let (status, body) = vm_request(vm_port, "POST", "/api/v1/import/prometheus", "", false);
    assert_eq!(status, 401, "the import must need authentication: {body}");
    let (status, body) = vm_request(vm_port, "POST", "/api/v1/import/prometheus", &text, true);
    assert_eq!(status, 204, "import: {body}");
    let (status, body) = vm_request(vm_port, "GET", "/internal/force_flush", "", true);
    assert_eq!(status, 200, "force_flush: {body}");
    // Every sample arrived.
    let (status, body) = vm_request(
        vm_port,
        "GET",
        &format!("/api/v1/export?match[]={}", url_encode("imd_vm_test")),
        "",
        true,
    );
    assert_eq!(status, 200, "export: {body}");
    let exported: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(exported.len(), INSTANCES.len(), "{body}");
    assert!(
        exported
            .iter()
            .all(|s| s["values"].as_array().map(Vec::len) == Some(POINTS as usize)),
        "every series has {POINTS} samples"
    );

    // Why the source needs query_offset: read up to now, the newest probe
    // sample is answered as the one before it; 30 s back, points are final.
    let probe = |end_s: i64| -> f64 {
        let (status, body) = vm_request(
            vm_port,
            "GET",
            &format!(
                "/prometheus/api/v1/query_range?query=imd_vm_probe&start={}&end={end_s}&step=1",
                last - 120
            ),
            "",
            true,
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let now_s = unix_now_s();
    assert!(
        now_s - last < 25,
        "the probe is slower than the test assumes"
    );
    assert!(
        probe(now_s) < POINTS as f64,
        "VictoriaMetrics answered the newest sample as final"
    );
    assert_eq!(probe(last - 30), (POINTS - 2) as f64);

    // The analyzer: query_range under /prometheus, remote-write to /api/v1/write.
    let an_port = free_port();
    let config = dir.path().join("imd-analyzer.yml");
    let auth = format!("basic_auth: {{username: {USER}, password: {PASSWORD}}}");
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 1s\n  lookback_delta: 10m\n\
             sources:\n  - name: vm\n    type: query_range\n    url: http://127.0.0.1:{vm_port}/prometheus\n\
             \x20   step: 15s\n    query_offset: 30s\n    {auth}\n\
             queries:\n  - name: vm\n    selector: imd_vm_test\n    anomaly_model: mad\n    forecast_model: mad\n    history: 2h\n\
             output:\n  remote_write:\n    - url: http://127.0.0.1:{vm_port}/api/v1/write\n      {auth}\n"
        ),
    )
    .unwrap();
    let mut analyzer = Proc::spawn(
        "imd-analyzer",
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.path().join("an").display()),
            format!("--web.listen-address=127.0.0.1:{an_port}"),
        ],
        dir.path(),
    );
    analyzer.wait_http_ok(an_port, "/-/ready", Duration::from_secs(30));
    wait_for("a score for every loaded series", 60, || {
        scores(an_port).len() == INSTANCES.len()
    });
    // The first reads end 30 s back; wait until the spike's newest sample
    // that is older than that has been taken.
    wait_for("the spike to score at least 0.99", 60, || {
        scores(an_port)
            .iter()
            .any(|l| l.contains("instance=\"c\"") && line_value(l) >= 0.99)
    });
    let lines = scores(an_port);
    for instance in INSTANCES {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("instance=\"{instance}\"")))
            .unwrap_or_else(|| panic!("no score for {instance}: {lines:?}"));
        assert!(line.contains("model=\"mad\""), "{line}");
        let s = line_value(line);
        if instance == "c" {
            assert!(s >= 0.99, "the spike: {line}");
        } else {
            assert!(s < 0.99, "a normal series: {line}");
        }
    }
    let (_, metrics) = http_get(an_port, "/metrics").unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("imd_read_samples_total{source=\"vm\"}")),
        "read metrics missing"
    );

    // imd's series arrived in VictoriaMetrics with the source labels.
    let mut arrived = Vec::new();
    wait_for("imd_anomaly_score in VictoriaMetrics", 60, || {
        arrived = vm_query(vm_port, "imd_anomaly_score{query=\"vm\"}");
        arrived.len() == INSTANCES.len()
    });
    for r in &arrived {
        let m = &r["metric"];
        assert_eq!(m["model"], "mad", "{r}");
        assert!(m.get("__name__").is_some_and(|n| n == "imd_anomaly_score"));
        let instance = m["instance"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(INSTANCES.contains(&instance), "{r}");
    }
    wait_for("the spike's score in VictoriaMetrics", 60, || {
        vm_query(
            vm_port,
            "imd_anomaly_score{query=\"vm\",instance=\"c\"} >= 0.99",
        )
        .len()
            == 1
    });
    assert!(
        !vm_query(vm_port, "imd_forecast{query=\"vm\"}").is_empty(),
        "imd_forecast was not written"
    );
    assert!(
        analyzer.exited().is_none(),
        "the analyzer exited:\n{}",
        analyzer.stderr()
    );
}
