//! imd-analyzer's page with roles, end to end: the analyzer reads a series
//! from a loopback `query_range` source that spikes a few seconds after
//! start, fires an alert to a real Alertmanager (Debian's
//! `prometheus-alertmanager`), and serves its page behind a web config with
//! basic-auth users, roles and a trusted proxy.
//!
//! - `roles_decide_who_may_acknowledge`: viewers read but cannot act, the
//!   proxy's user header counts only from the proxy's address, and the
//!   acknowledgement records the authenticated user.
//! - `page_in_chromium_acknowledges_through_a_real_alertmanager`: headless
//!   Chromium (Debian's `chromium`, driven by `playwright-core` from npm
//!   through `tests/browser/page.cjs`) logs in as an operator, sees the
//!   series, scores and alert, clicks Acknowledge, and the silence exists
//!   in Alertmanager. A screenshot is kept in `target/test-artifacts/`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use common::{Proc, free_port, repo_root, require_tool, tempdir, unix_now_ms, wait_for};
use serde_json::{Value, json};

/// `imd_test_value{instance="a"}`: about 10, and 60 from `spike_at` on.
async fn query_range(
    State(spike_at): State<Arc<i64>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> axum::response::Response {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<f64>().ok());
    let (Some(start), Some(end), Some(step)) = (num("start"), num("end"), num("step")) else {
        return (axum::http::StatusCode::BAD_REQUEST, "start, end, step").into_response();
    };
    let (start, end, step) = (
        (start * 1000.0) as i64,
        ((end * 1000.0) as i64).min(unix_now_ms()),
        ((step * 1000.0) as i64).max(1),
    );
    let mut values = Vec::new();
    let mut t = start;
    while t <= end {
        let noise = [0.4, -0.3, 0.2, -0.1, 0.1, -0.2, 0.3, 0.0];
        let v = if t >= *spike_at {
            60.0
        } else {
            10.0 + noise[(t / 1000).rem_euclid(8) as usize]
        };
        values.push(json!([t as f64 / 1000.0, v.to_string()]));
        t += step;
    }
    let body = json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "imd_test_value", "instance": "a"}, "values": values}
    ]}});
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

const PASSWORD: &str = "correct horse";

/// Alertmanager, the fake source, and the analyzer behind a web config:
/// alice an operator, bob a viewer, and a proxy at 127.0.0.2 whose
/// `X-Forwarded-User` is believed (group `sre` = operators).
struct Stack {
    dir: tempfile::TempDir,
    am_port: u16,
    an: u16,
    _am: Proc,
    _analyzer: Proc,
    _rt: tokio::runtime::Runtime,
}

fn start() -> Stack {
    let dir = tempdir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let spike_at = Arc::new(unix_now_ms() + 6_000);
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let source = l.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/api/v1/query_range", axum::routing::get(query_range))
        .with_state(spike_at);
    rt.spawn(async move { axum::serve(l, app).await });
    let (am, am_port) = common::start_alertmanager(dir.path(), "alertmanager");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  alice: '{hash}'\n  bob: '{hash}'\n\
             trusted_proxy:\n  user_header: X-Forwarded-User\n  groups_header: X-Forwarded-Groups\n  trusted_proxies: [127.0.0.2/32]\n\
             roles:\n  operators: [alice]\n  viewers: [bob]\n  operator_groups: [sre]\n"
        ),
    )
    .unwrap();
    let cfg = dir.path().join("imd-analyzer.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"global:
  infer_every: 1s
  lookback_delta: 30s
sources:
  - name: fake
    url: http://127.0.0.1:{source}
    type: query_range
    step: 1s
queries:
  - name: test
    selector: imd_test_value
    anomaly_model: mad
    forecast_model: mad
    params: {{window: 300, min_points: 8}}
    history: 10m
alerting:
  alertmanagers:
    - url: http://127.0.0.1:{am_port}
  resend_delay: 1s
  rules:
    - alert: ImdTestAnomaly
      score_above: 0.99
      labels: {{severity: critical}}
  escalation:
    silence_poll_interval: 500ms
    policies:
      - name: critical
        match: {{severity: critical}}
        levels:
          - after: 1h
            labels: {{escalation: secondary}}
output:
  grafana_url: http://grafana.example:3000
"#
        ),
    )
    .unwrap();
    let an = free_port();
    let analyzer = Proc::spawn(
        "imd-analyzer",
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.path={}", dir.path().join("an").display()),
            format!("--web.listen-address=127.0.0.1:{an}"),
            format!("--web.config.file={}", web.display()),
        ],
        dir.path(),
    );
    let c = client(None);
    wait_for("the analyzer to answer", 30, || {
        c.get(format!("http://127.0.0.1:{an}/-/ready"))
            .basic_auth("bob", Some(PASSWORD))
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    Stack {
        dir,
        am_port,
        an,
        _am: am,
        _analyzer: analyzer,
        _rt: rt,
    }
}

/// A client, connecting from `from` (e.g. the proxy's 127.0.0.2).
fn client(from: Option<&str>) -> reqwest::blocking::Client {
    imd_analyzer::http::install_ring_provider();
    let mut b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
    if let Some(a) = from {
        b = b.local_address(a.parse::<std::net::IpAddr>().unwrap());
    }
    b.build().unwrap()
}

/// The test alert's record, once it fires.
fn wait_alert(c: &reqwest::blocking::Client, an: u16) -> Value {
    let mut found = Value::Null;
    wait_for("the alert to fire", 60, || {
        let Ok(r) = c
            .get(format!("http://127.0.0.1:{an}/api/v1/alerts"))
            .basic_auth("bob", Some(PASSWORD))
            .send()
        else {
            return false;
        };
        let v: Value = serde_json::from_str(&r.text().unwrap_or_default()).unwrap_or_default();
        if let Some(a) = v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == "ImdTestAnomaly")
        {
            found = a.clone();
            return true;
        }
        false
    });
    found
}

fn ack(
    c: &reqwest::blocking::Client,
    an: u16,
    auth: Option<&str>,
    headers: &[(&str, &str)],
    fp: &str,
) -> (u16, Value) {
    let mut r = c
        .post(format!("http://127.0.0.1:{an}/api/v1/alerts/ack"))
        .header("content-type", "application/json")
        .body(json!({"fingerprint": fp, "by": "mallory"}).to_string());
    if let Some(u) = auth {
        r = r.basic_auth(u, Some(PASSWORD));
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn roles_decide_who_may_acknowledge() {
    let s = start();
    let local = client(None);
    let alert = wait_alert(&local, s.an);
    let fp = alert["fingerprint"].as_str().unwrap().to_string();

    // A viewer sees the page, without forms, and cannot act.
    let page = local
        .get(format!("http://127.0.0.1:{}/", s.an))
        .basic_auth("bob", Some(PASSWORD))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(page.contains("ImdTestAnomaly"), "{page}");
    assert!(page.contains("Signed in as <b>bob</b> (viewer)"), "{page}");
    assert!(!page.contains("<form"), "{page}");
    let (status, v) = ack(&local, s.an, Some("bob"), &[], &fp);
    assert_eq!((status, &v["errorType"]), (403, &json!("forbidden")), "{v}");
    // The proxy's header from elsewhere than the proxy changes nothing: bob
    // stays bob, and without credentials nobody gets in.
    let forged = [("X-Forwarded-User", "alice"), ("X-Forwarded-Groups", "sre")];
    assert_eq!(ack(&local, s.an, Some("bob"), &forged, &fp).0, 403);
    assert_eq!(ack(&local, s.an, None, &forged, &fp).0, 401);
    // From the proxy: a user outside the operators' group is a viewer.
    let proxy = client(Some("127.0.0.2"));
    let dave = [("X-Forwarded-User", "dave"), ("X-Forwarded-Groups", "dev")];
    assert_eq!(ack(&proxy, s.an, None, &dave, &fp).0, 403);
    // An operator must send JSON (a cross-site form cannot).
    let r = local
        .post(format!("http://127.0.0.1:{}/api/v1/alerts/ack", s.an))
        .basic_auth("alice", Some(PASSWORD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("fingerprint={fp}&by=alice"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(wait_alert(&local, s.an)["state"], "firing");
    // The proxy's operator (group sre) acknowledges; who is the proxy's
    // user, not the body's `by`.
    let carol = [
        ("X-Forwarded-User", "carol"),
        ("X-Forwarded-Groups", "dev, sre"),
    ];
    let (status, v) = ack(&proxy, s.an, None, &carol, &fp);
    assert_eq!(status, 200, "{v}");
    let a = wait_alert(&local, s.an);
    assert_eq!(a["state"], "acknowledged");
    assert_eq!(a["acknowledged"]["by"], "carol");
    let silences = am_silences(s.am_port);
    assert!(
        silences.iter().any(|x| x["createdBy"] == "carol"),
        "{silences:?}"
    );
}

/// Active silences in Alertmanager.
fn am_silences(port: u16) -> Vec<Value> {
    let (status, body) = common::http_get(port, "/api/v2/silences").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"]["state"] == "active")
        .cloned()
        .collect()
}

#[test]
fn page_in_chromium_acknowledges_through_a_real_alertmanager() {
    let node = require_tool("node");
    let chromium = require_tool("chromium");
    let modules = common::node_modules("playwright-core");
    let s = start();
    let local = client(None);
    let alert = wait_alert(&local, s.an);
    assert_eq!(alert["state"], "firing");
    let artifacts = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot: PathBuf = artifacts.join("page.png");
    let _ = std::fs::remove_file(&shot);
    let driver = repo_root().join("analyzer/tests/browser/page.cjs");
    let out = std::process::Command::new(&node)
        .arg(&driver)
        .arg(&modules)
        .arg(format!("http://127.0.0.1:{}/", s.an))
        .arg("alice")
        .arg(PASSWORD)
        .arg(&shot)
        .env("CHROMIUM", &chromium)
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser driver failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let before = v["before"].as_str().unwrap();
    // Rendered with data: the series, its score, the alert and its level.
    for want in [
        "imd-analyzer",
        "Current anomalies",
        "imd_test_value",
        "ImdTestAnomaly",
        "Signed in as alice (operator)",
        "0 (critical)",
    ] {
        assert!(before.contains(want), "{want:?} not on the page:\n{before}");
    }
    assert!(
        before.contains("1.000") || before.contains("0.99"),
        "no anomaly score on the page:\n{before}"
    );
    let row = v["rowText"].as_str().unwrap();
    assert!(row.contains("by alice at"), "{row}");
    assert!(!row.contains("Acknowledge"), "{row}");
    // The silence the click made, in the real Alertmanager.
    let silences = am_silences(s.am_port);
    let ours = silences
        .iter()
        .find(|x| x["createdBy"] == "alice")
        .unwrap_or_else(|| panic!("no silence by alice: {silences:?}"));
    assert!(
        ours["matchers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "alertname" && m["value"] == "ImdTestAnomaly"),
        "{ours}"
    );
    let a = wait_alert(&local, s.an);
    assert_eq!(a["state"], "acknowledged");
    assert_eq!(a["acknowledged"]["by"], "alice");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot"
    );
}
