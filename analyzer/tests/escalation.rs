//! Escalation, acknowledgement and resolution end to end: the analyzer
//! binary reads a series from a loopback `query_range` source whose values
//! the test controls, fires an alert, and escalates it through a real
//! Alertmanager (Debian's `prometheus-alertmanager`) whose routes send each
//! level to its own webhook receiver; level 1 also goes through the SMS
//! bridge (`imd-analyzer sms-bridge`) to a fake Twilio-style gateway.
//!
//! Every process listens on a loopback port picked at run time, writes into
//! a temp dir, and is stopped by PID when its guard is dropped.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use common::{Proc, free_port, spawn_alertmanager, start_analyzer, tempdir, unix_now_ms, wait_for};
use serde_json::{Value, json};

/// A runtime for the test's own servers.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Serves `app` on a loopback port of `rt`; returns the port.
fn serve(rt: &tokio::runtime::Runtime, app: axum::Router) -> u16 {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = l.local_addr().unwrap().port();
    rt.spawn(async move { axum::serve(l, app).await });
    port
}

/// The series `imd_test_value{instance="a"}` over `query_range`: slightly
/// noisy around 10, or 60 while the test says so. Values depend only on
/// the time, so every read of a past range agrees with the previous ones.
#[derive(Default)]
struct Signal {
    /// (from when, spiking) in time order.
    changes: Mutex<Vec<(i64, bool)>>,
}

impl Signal {
    fn set_spike(&self, on: bool) {
        self.changes.lock().unwrap().push((unix_now_ms(), on));
    }

    fn value(&self, t_ms: i64) -> f64 {
        let spiking = self
            .changes
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(from, _)| *from <= t_ms)
            .is_some_and(|(_, on)| *on);
        if spiking {
            60.0
        } else {
            let noise = [0.4, -0.3, 0.2, -0.1, 0.1, -0.2, 0.3, 0.0];
            10.0 + noise[(t_ms / 1000).rem_euclid(8) as usize]
        }
    }
}

async fn query_range(
    State(signal): State<Arc<Signal>>,
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
        values.push(json!([t as f64 / 1000.0, signal.value(t).to_string()]));
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

/// Webhook receivers `/a`, `/b`, `/c` (one per escalation level) that
/// record every notification.
#[derive(Default)]
struct Sink {
    got: Mutex<Vec<(String, Value)>>,
}

impl Sink {
    /// Notifications at `path` holding an alert in `status` at `level`.
    fn count(&self, path: &str, status: &str, level: &str) -> usize {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .filter(|(_, n)| {
                n["alerts"].as_array().into_iter().flatten().any(|a| {
                    a["status"] == status
                        && a["labels"]["escalation_level"] == level
                        && a["labels"]["alertname"] == "ImdTestAnomaly"
                })
            })
            .count()
    }

    fn paths(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }
}

/// One request to the fake gateway: path, Authorization, form.
type GatewayRequest = (String, String, BTreeMap<String, String>);

/// The fake SMS gateway: records every request.
#[derive(Default)]
struct Gateway {
    got: Mutex<Vec<GatewayRequest>>,
}

/// A stand-in Alertmanager that records what imd posts (label set →
/// every `startsAt` posted for it) and knows no silences.
#[derive(Default)]
struct Recorder {
    posts: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Recorder {
    /// Distinct `startsAt` posted for the label set of `level`.
    fn starts(&self, level: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains(&format!("\"escalation_level\":\"{level}\"")))
            .flat_map(|(_, s)| s.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The test's servers.
struct Fakes {
    signal: Arc<Signal>,
    sink: Arc<Sink>,
    gateway: Arc<Gateway>,
    recorder: Arc<Recorder>,
    source_port: u16,
    sink_port: u16,
    gateway_port: u16,
    recorder_port: u16,
    _rt: tokio::runtime::Runtime,
}

impl Fakes {
    fn start() -> Fakes {
        let rt = runtime();
        let signal = Arc::new(Signal::default());
        let source_port = serve(
            &rt,
            axum::Router::new()
                .route("/api/v1/query_range", axum::routing::get(query_range))
                .with_state(signal.clone()),
        );
        let sink = Arc::new(Sink::default());
        let s = sink.clone();
        let sink_port = serve(
            &rt,
            axum::Router::new().route(
                "/{which}",
                axum::routing::post(move |uri: Uri, body: Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).expect("webhook payload is JSON");
                    s.got.lock().unwrap().push((uri.path().to_string(), v));
                    "ok"
                }),
            ),
        );
        let gateway = Arc::new(Gateway::default());
        let g = gateway.clone();
        let gateway_port = serve(
            &rt,
            axum::Router::new().route(
                "/{*rest}",
                axum::routing::post(
                    move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
                        let form = reqwest::Url::parse(&format!(
                            "http://x/?{}",
                            String::from_utf8_lossy(&body)
                        ))
                        .unwrap()
                        .query_pairs()
                        .into_owned()
                        .collect();
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        g.got
                            .lock()
                            .unwrap()
                            .push((uri.path().to_string(), auth, form));
                        (axum::http::StatusCode::CREATED, "{\"sid\":\"SM1\"}")
                    },
                ),
            ),
        );
        let recorder = Arc::new(Recorder::default());
        let r = recorder.clone();
        let recorder_port = serve(
            &rt,
            axum::Router::new()
                .route(
                    "/api/v2/alerts",
                    axum::routing::post(move |body: Bytes| async move {
                        let alerts: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        let mut posts = r.posts.lock().unwrap();
                        for a in alerts {
                            posts
                                .entry(a["labels"].to_string())
                                .or_default()
                                .push(a["startsAt"].as_str().unwrap_or("").to_string());
                        }
                        "ok"
                    }),
                )
                .route("/api/v2/silences", axum::routing::get(|| async { "[]" })),
        );
        Fakes {
            signal,
            sink,
            gateway,
            recorder,
            source_port,
            sink_port,
            gateway_port,
            recorder_port,
            _rt: rt,
        }
    }
}

fn client() -> reqwest::blocking::Client {
    imd_analyzer::http::install_ring_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn get_json(c: &reqwest::blocking::Client, url: &str) -> Value {
    let r = c
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let text = r.text().unwrap();
    assert!(status.is_success(), "GET {url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
}

fn post_json(c: &reqwest::blocking::Client, url: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// Starts Alertmanager on `port` with its data in `dir/alertmanager`,
/// routing each escalation level to its own receiver; level 1 also to the
/// SMS bridge.
fn start_alertmanager(dir: &Path, port: u16, sink: u16, bridge: u16) -> Proc {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"route:
  receiver: a
  group_by: [alertname, escalation_level]
  group_wait: 100ms
  group_interval: 300ms
  repeat_interval: 1h
  routes:
    - matchers: ['escalation_level="1"']
      receiver: b
    - matchers: ['escalation_level="2"']
      receiver: c
receivers:
  - name: a
    webhook_configs: [{{url: 'http://127.0.0.1:{sink}/a', send_resolved: true}}]
  - name: b
    webhook_configs:
      - {{url: 'http://127.0.0.1:{sink}/b', send_resolved: true}}
      - {{url: 'http://127.0.0.1:{bridge}/webhook/secondary', send_resolved: false}}
  - name: c
    webhook_configs: [{{url: 'http://127.0.0.1:{sink}/c', send_resolved: true}}]
"#
        ),
    )
    .unwrap();
    spawn_alertmanager("alertmanager", dir, &cfg, port, &[])
}

fn start_bridge(dir: &Path, port: u16, gateway: u16) -> Proc {
    let cfg = dir.join("sms-bridge.yml");
    std::fs::write(
        &cfg,
        format!(
            r#"gateway:
  url: http://127.0.0.1:{gateway}
  account_sid: AC1
  auth_token: tok
  from: "+15550000000"
recipients:
  secondary: ["+15550000002"]
retry: {{attempts: 3, min_backoff: 100ms, max_backoff: 1s}}
"#
        ),
    )
    .unwrap();
    let mut p = Proc::spawn(
        "sms-bridge",
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &[
            "sms-bridge".to_string(),
            format!("--config.file={}", cfg.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir,
    );
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    p
}

/// Writes the analyzer's configuration: the fake source, the rule, the
/// policy with levels after `delays`, the Alertmanagers at `ams`.
fn write_config(dir: &Path, source: u16, ams: &[u16], delays: [u64; 2]) -> std::path::PathBuf {
    let ams: String = ams
        .iter()
        .map(|p| format!("    - url: http://127.0.0.1:{p}\n"))
        .collect();
    let cfg = dir.join("imd-analyzer.yml");
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
{ams}  resend_delay: 1s
  rules:
    - alert: ImdTestAnomaly
      score_above: 0.99
      labels: {{severity: critical}}
      annotations: {{summary: 'imd_test_value is {{{{ $value }}}}'}}
  escalation:
    silence_poll_interval: 300ms
    restart_grace: 10s
    policies:
      - name: critical
        match: {{severity: critical}}
        levels:
          - after: {}s
            labels: {{escalation: secondary, notify: sms}}
          - after: {}s
            labels: {{escalation: manager}}
"#,
            delays[0], delays[1]
        ),
    )
    .unwrap();
    cfg
}

/// The analyzer's record of the test alert, if any.
fn record(c: &reqwest::blocking::Client, port: u16) -> Option<Value> {
    let v = get_json(c, &format!("http://127.0.0.1:{port}/api/v1/alerts"));
    assert_eq!(v["status"], "success");
    v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "ImdTestAnomaly")
        .cloned()
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// Alertmanager's active (unresolved) alerts named ImdTestAnomaly.
fn am_alerts(c: &reqwest::blocking::Client, port: u16) -> Vec<Value> {
    get_json(c, &format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "ImdTestAnomaly")
        .cloned()
        .collect()
}

/// The fakes, the SMS bridge, one Alertmanager and the analyzer with
/// escalation delays `delays` (seconds), as most tests here start them.
struct Stack {
    // Processes first: they stop before the temp dir goes.
    analyzer: Proc,
    am: Proc,
    bridge: Proc,
    an: u16,
    am_port: u16,
    bridge_port: u16,
    http: reqwest::blocking::Client,
    fakes: Fakes,
    dir: tempfile::TempDir,
}

impl Stack {
    fn start(delays: [u64; 2]) -> Stack {
        let dir = tempdir();
        let fakes = Fakes::start();
        let http = client();
        let bridge_port = free_port();
        let bridge = start_bridge(dir.path(), bridge_port, fakes.gateway_port);
        let am_port = free_port();
        let am = start_alertmanager(dir.path(), am_port, fakes.sink_port, bridge_port);
        let cfg = write_config(dir.path(), fakes.source_port, &[am_port], delays);
        let (analyzer, an) = start_analyzer(&cfg, dir.path(), &["--log.level=debug"]);
        Stack {
            analyzer,
            am,
            bridge,
            an,
            am_port,
            bridge_port,
            http,
            fakes,
            dir,
        }
    }
}

/// The alert escalates from level 0 (receiver a) to level 1 (receiver b
/// and an SMS) after its delay, stops escalating once someone silences it
/// in Alertmanager, and resolves when its condition clears.
#[test]
fn escalates_sends_an_sms_stops_when_silenced_and_resolves() {
    let Stack {
        dir,
        fakes,
        http,
        bridge_port,
        am_port,
        bridge: _bridge,
        am: _am,
        analyzer,
        an,
    } = Stack::start([2, 6]);

    // Normal values: nothing fires.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        record(&http, an).is_none(),
        "an alert fired on normal values"
    );
    assert!(fakes.sink.paths().is_empty());

    fakes.signal.set_spike(true);
    wait_for("level 0 at receiver a", 30, || {
        fakes.sink.count("/a", "firing", "0") == 1
    });
    let r = record(&http, an).unwrap();
    assert_eq!(r["state"], "firing");
    assert_eq!(r["escalation"]["policy"], "critical");
    assert_eq!(r["escalation"]["level"], 0);
    assert!(r["labels"].get("escalation_level").is_none(), "{r}");
    let level0 = ts(&r["escalation"]["levels"][0]["at"]);
    assert_eq!(
        ts(&r["escalation"]["nextLevelAt"]),
        level0 + Duration::from_secs(2)
    );

    wait_for("level 1 at receiver b", 20, || {
        fakes.sink.count("/b", "firing", "1") == 1
    });
    let r = record(&http, an).unwrap();
    assert_eq!(r["escalation"]["level"], 1);
    let level1 = ts(&r["escalation"]["levels"][1]["at"]);
    let waited = level1.duration_since(level0);
    assert!(
        waited >= jiff::SignedDuration::from_secs(2) && waited < jiff::SignedDuration::from_secs(4),
        "level 1 came {waited:?} after level 0"
    );
    let l1 = &r["escalation"]["levels"][1]["labels"];
    assert_eq!(l1["escalation"], "secondary");
    assert_eq!(l1["notify"], "sms");
    assert_eq!(l1["escalation_level"], "1");
    // Level 0 keeps firing (previous_levels: keep) and was not re-notified.
    assert_eq!(fakes.sink.count("/a", "firing", "0"), 1);
    assert_eq!(am_alerts(&http, am_port).len(), 2);

    // The SMS bridge turned level 1 into an SMS through the gateway.
    wait_for("the SMS", 10, || {
        !fakes.gateway.got.lock().unwrap().is_empty()
    });
    {
        let got = fakes.gateway.got.lock().unwrap();
        let (path, auth, form) = &got[0];
        assert_eq!(path, "/2010-04-01/Accounts/AC1/Messages.json");
        assert_eq!(auth, "Basic QUMxOnRvaw=="); // AC1:tok
        assert_eq!(form["To"], "+15550000002");
        assert_eq!(form["From"], "+15550000000");
        let body = &form["Body"];
        assert!(
            body.starts_with("[FIRING:1] ImdTestAnomaly escalation_level=1: imd_test_value is 60"),
            "{body}"
        );
    }
    let (_, m) = common::http_get(bridge_port, "/metrics").unwrap();
    assert!(m.contains("imd_sms_sent_total 1"), "{m}");

    // Someone silences it in Alertmanager (as its UI or amtool would).
    let start = jiff::Timestamp::now();
    let (status, created) = post_json(
        &http,
        &format!("http://127.0.0.1:{am_port}/api/v2/silences"),
        json!({
            "matchers": [{"name": "alertname", "value": "ImdTestAnomaly", "isRegex": false, "isEqual": true}],
            "startsAt": start.to_string(),
            "endsAt": (start + Duration::from_secs(3600)).to_string(),
            "createdBy": "alice",
            "comment": "looking into it",
        }),
    );
    assert_eq!(status, 200, "{created}");
    wait_for("the acknowledgement", 10, || {
        record(&http, an).is_some_and(|r| r["state"] == "acknowledged")
    });
    let r = record(&http, an).unwrap();
    let ack = &r["acknowledged"];
    assert_eq!(ack["by"], "alice");
    assert_eq!(ack["via"], "silence");
    assert_eq!(ack["comment"], "looking into it");
    assert_eq!(ack["silenceId"], created["silenceID"]);
    assert!(r["escalation"]["nextLevelAt"].is_null());
    assert!(
        ts(&r["escalation"]["levels"][1]["at"]) + Duration::from_secs(6) > jiff::Timestamp::now(),
        "acknowledged too late to prove anything"
    );

    // Level 2 was due 6 s after level 1: it never comes.
    let due = ts(&r["escalation"]["levels"][1]["at"]) + Duration::from_secs(6);
    while jiff::Timestamp::now() < due + Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = record(&http, an).unwrap();
    assert_eq!(r["escalation"]["level"], 1);
    assert!(!fakes.sink.paths().contains(&"/c".to_string()));

    // The condition clears: imd resolves it and Alertmanager drops it.
    fakes.signal.set_spike(false);
    wait_for("the resolution", 20, || {
        record(&http, an).is_some_and(|r| r["state"] == "resolved")
    });
    let r = record(&http, an).unwrap();
    assert_eq!(r["resolved"]["by"], "imd-analyzer");
    assert_eq!(r["resolved"]["manual"], false);
    assert_eq!(
        r["acknowledged"]["by"], "alice",
        "the acknowledgement stays"
    );
    wait_for("Alertmanager to resolve both levels", 20, || {
        am_alerts(&http, am_port).is_empty()
    });
    let (_, m) = common::http_get(an, "/metrics").unwrap();
    for line in [
        "imd_alert_escalations_total{policy=\"critical\",level=\"1\"} 1",
        "imd_alert_acknowledgements_total{via=\"silence\"} 1",
        "imd_alert_resolutions_total{how=\"condition\"} 1",
        "imd_alert_lifecycle_alerts{state=\"resolved\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}");
    }
    drop(analyzer);
    // The history of the alert survives in the data dir.
    let saved = std::fs::read_to_string(dir.path().join("an/escalation-state.json")).unwrap();
    assert!(saved.contains("\"alice\""), "{saved}");
}

/// Acknowledged through imd's API: imd creates the silence in
/// Alertmanager, and when the alert resolves it expires that silence first,
/// so that every receiver that was paged gets Alertmanager's ordinary
/// resolved notification. A manual resolution through the API does the
/// same while the condition still holds.
#[test]
fn acknowledged_through_imd_the_paged_receivers_learn_the_resolution() {
    let Stack {
        dir: _dir,
        fakes,
        http,
        bridge_port: _,
        am_port,
        bridge: _bridge,
        am: _am,
        analyzer: _analyzer,
        an,
    } = Stack::start([2, 30]);
    let api = |p: &str| format!("http://127.0.0.1:{an}{p}");

    fakes.signal.set_spike(true);
    wait_for("level 1 at receiver b", 30, || {
        fakes.sink.count("/b", "firing", "1") == 1
    });
    assert_eq!(fakes.sink.count("/a", "firing", "0"), 1);

    // Nothing to acknowledge: 404; bad requests: 400.
    let (s, e) = post_json(
        &http,
        &api("/api/v1/alerts/ack"),
        json!({"labels": {"alertname": "Nope"}, "by": "bob"}),
    );
    assert_eq!(
        (s, e["errorType"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );
    let (s, _) = post_json(
        &http,
        &api("/api/v1/alerts/ack"),
        json!({"labels": {"alertname": "ImdTestAnomaly"}}),
    );
    assert_eq!(s, 400);

    let (s, v) = post_json(
        &http,
        &api("/api/v1/alerts/ack"),
        json!({"labels": {"alertname": "ImdTestAnomaly", "instance": "a"}, "by": "bob", "comment": "on it"}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(v.get("warnings").is_none(), "{v}");
    let silences = v["data"]["silences"].as_array().unwrap().clone();
    assert_eq!(silences.len(), 1, "{v}");
    let id = silences[0]["id"].as_str().unwrap().to_string();
    let r = &v["data"]["alerts"][0];
    assert_eq!(r["state"], "acknowledged");
    assert_eq!(r["acknowledged"]["by"], "bob");
    assert_eq!(r["acknowledged"]["via"], "api");
    // The silence in Alertmanager: by bob, on the alert's own labels, so
    // it covers every level.
    let all = get_json(
        &http,
        &format!("http://127.0.0.1:{am_port}/api/v2/silences"),
    );
    let sil = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("imd's silence in Alertmanager")
        .clone();
    assert_eq!(sil["status"]["state"], "active");
    assert_eq!(sil["createdBy"], "bob");
    assert_eq!(sil["comment"], "on it");
    assert!(
        !sil["matchers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "escalation_level")
    );
    wait_for("Alertmanager to mark both levels silenced", 10, || {
        let a = am_alerts(&http, am_port);
        a.len() == 2 && a.iter().all(|x| x["status"]["state"] == "suppressed")
    });
    // Acknowledging again changes nothing.
    let (s, v) = post_json(
        &http,
        &api("/api/v1/alerts/ack"),
        json!({"fingerprint": r["fingerprint"], "by": "carol"}),
    );
    assert_eq!(s, 200);
    assert_eq!(v["data"]["changed"], json!([]));
    assert_eq!(v["data"]["alerts"][0]["acknowledged"]["by"], "bob");

    // The condition clears: the silence is expired, then both levels
    // resolve and both receivers are told.
    fakes.signal.set_spike(false);
    wait_for("resolved notifications at a and b", 30, || {
        fakes.sink.count("/a", "resolved", "0") == 1 && fakes.sink.count("/b", "resolved", "1") == 1
    });
    let all = get_json(
        &http,
        &format!("http://127.0.0.1:{am_port}/api/v2/silences"),
    );
    let sil = all
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(sil["status"]["state"], "expired");
    let r = record(&http, an).unwrap();
    assert_eq!(r["state"], "resolved");
    assert_eq!(r["acknowledged"]["by"], "bob");
    assert_eq!(r["silences"], json!([]));

    // It fires again: a new alert at level 0 (Alertmanager notifies anew,
    // as the previous one resolved). Resolved by hand while the condition
    // still holds: Alertmanager resolves it, no level 1 comes, and a
    // second resolution is refused.
    fakes.signal.set_spike(true);
    wait_for("the new alert at receiver a", 30, || {
        fakes.sink.count("/a", "firing", "0") == 2
    });
    let r = record(&http, an).unwrap();
    assert_eq!(r["state"], "firing");
    assert_eq!(r["escalation"]["level"], 0);
    let fp = r["fingerprint"].clone();
    let (s, v) = post_json(
        &http,
        &api("/api/v1/alerts/resolve"),
        json!({"fingerprint": fp, "by": "dave", "comment": "false alarm"}),
    );
    assert_eq!(s, 200, "{v}");
    let r = &v["data"]["alerts"][0];
    assert_eq!(r["state"], "resolved");
    assert_eq!(r["resolved"]["by"], "dave");
    assert_eq!(r["resolved"]["manual"], true);
    wait_for("the manual resolution at receiver a", 20, || {
        fakes.sink.count("/a", "resolved", "0") == 2
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(fakes.sink.count("/b", "firing", "1"), 1, "no new level 1");
    assert!(am_alerts(&http, am_port).is_empty());
    let (s, e) = post_json(
        &http,
        &api("/api/v1/alerts/resolve"),
        json!({"fingerprint": fp, "by": "dave"}),
    );
    assert_eq!((s, e["errorType"].as_str()), (409, Some("conflict")), "{e}");
}

/// The analyzer is killed (SIGKILL) between levels and restarted, twice,
/// and Alertmanager is restarted too: no level is sent twice (each level's
/// alert keeps the label set and `startsAt` it had), none is lost, and the
/// next level still comes at its time.
#[test]
fn a_killed_analyzer_resumes_escalation_without_repeating_a_level() {
    let dir = tempdir();
    let fakes = Fakes::start();
    let http = client();
    let bridge_port = free_port();
    let _bridge = start_bridge(dir.path(), bridge_port, fakes.gateway_port);
    let am_port = free_port();
    let mut am = start_alertmanager(dir.path(), am_port, fakes.sink_port, bridge_port);
    // The recorder sees every post, so repeats hidden by Alertmanager's
    // deduplication would show there.
    let cfg = write_config(
        dir.path(),
        fakes.source_port,
        &[am_port, fakes.recorder_port],
        [4, 4],
    );
    let (mut analyzer, an) = start_analyzer(&cfg, dir.path(), &["--log.level=debug"]);
    fakes.signal.set_spike(true);
    wait_for("level 0 at receiver a", 30, || {
        fakes.sink.count("/a", "firing", "0") == 1
    });
    let before = record(&http, an).unwrap();
    let level0 = ts(&before["escalation"]["levels"][0]["at"]);

    // Crash between level 0 and level 1, restart at once.
    analyzer.kill();
    let killed_at = jiff::Timestamp::now();
    assert!(
        killed_at < level0 + Duration::from_secs(4),
        "too slow to test"
    );
    let (mut analyzer, an) = start_analyzer(&cfg, dir.path(), &["--log.level=debug"]);
    let after = record(&http, an).expect("the alert survived the crash");
    assert_eq!(
        after["escalation"]["levels"][0],
        before["escalation"]["levels"][0]
    );
    assert_eq!(after["activeAt"], before["activeAt"]);

    wait_for("level 1 at receiver b", 30, || {
        fakes.sink.count("/b", "firing", "1") == 1
    });
    let r = record(&http, an).unwrap();
    let level1 = ts(&r["escalation"]["levels"][1]["at"]);
    // Timed from level 0 before the crash (a fresh start would have
    // counted from the restart), give or take a cycle.
    let late = level1.duration_since(level0 + Duration::from_secs(4));
    assert!(
        late >= jiff::SignedDuration::ZERO && late < jiff::SignedDuration::from_secs(3),
        "level 1 came {late:?} after its time"
    );

    // Crash again before level 2, and restart Alertmanager meanwhile.
    analyzer.kill();
    am.stop();
    let mut am = start_alertmanager(dir.path(), am_port, fakes.sink_port, bridge_port);
    let (_analyzer, an) = start_analyzer(&cfg, dir.path(), &["--log.level=debug"]);
    wait_for("level 2 at receiver c", 30, || {
        fakes.sink.count("/c", "firing", "2") == 1
    });
    let r = record(&http, an).unwrap();
    let level2 = ts(&r["escalation"]["levels"][2]["at"]);
    let late = level2.duration_since(level1 + Duration::from_secs(4));
    assert!(
        late >= jiff::SignedDuration::ZERO && late < jiff::SignedDuration::from_secs(3),
        "level 2 came {late:?} after its time"
    );
    assert_eq!(ts(&r["escalation"]["levels"][1]["at"]), level1);

    // Each level was posted with one startsAt only: never as a new alert.
    std::thread::sleep(Duration::from_secs(2));
    let level_starts = |l: &str| fakes.recorder.starts(l);
    assert_eq!(level_starts("0").len(), 1, "{:?}", level_starts("0"));
    assert_eq!(level_starts("1"), [level1.to_string()]);
    assert_eq!(level_starts("2"), [level2.to_string()]);
    // And each receiver was paged once.
    assert_eq!(fakes.sink.count("/a", "firing", "0"), 1);
    assert_eq!(fakes.sink.count("/b", "firing", "1"), 1);
    assert_eq!(fakes.sink.count("/c", "firing", "2"), 1);
    assert_eq!(fakes.gateway.got.lock().unwrap().len(), 1, "one SMS");
    am.stop();
}

/// The table row of the alert with fingerprint `fp` on the page.
fn page_row(page: &str, fp: &str) -> String {
    let at = page
        .find(&format!("id=\"alert-{fp}\""))
        .unwrap_or_else(|| panic!("alert {fp} not on the page: {page}"));
    let rest = &page[at..];
    rest[..rest.find("</tr>").unwrap()].to_string()
}

/// The CSRF token the page's forms carry.
fn page_token(page: &str) -> String {
    let at = page
        .find("name=\"csrf_token\" value=\"")
        .unwrap_or_else(|| panic!("no form token on the page: {page}"))
        + "name=\"csrf_token\" value=\"".len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

fn get_page(c: &reqwest::blocking::Client, an: u16) -> String {
    let r = c.get(format!("http://127.0.0.1:{an}/")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.text().unwrap()
}

/// The page lists the alert with its level; its "Acknowledge" and
/// "Resolve" forms act as the JSON API does and lead back to the page.
#[test]
fn the_page_lists_alerts_and_its_forms_acknowledge_and_resolve() {
    let Stack {
        dir: _dir,
        fakes,
        http,
        bridge_port: _,
        am_port,
        bridge: _bridge,
        am: _am,
        analyzer: _analyzer,
        an,
    } = Stack::start([2, 60]);
    let url = |p: &str| format!("http://127.0.0.1:{an}{p}");

    assert!(get_page(&http, an).contains("Active alerts"));
    fakes.signal.set_spike(true);
    wait_for("level 1 at receiver b", 30, || {
        fakes.sink.count("/b", "firing", "1") == 1
    });
    let r = record(&http, an).unwrap();
    let fp = r["fingerprint"].as_str().unwrap().to_string();
    let row = page_row(&get_page(&http, an), &fp);
    assert!(row.contains("<b>ImdTestAnomaly</b>"), "{row}");
    assert!(row.contains("instance=&quot;a&quot;"), "{row}");
    assert!(row.contains("severity=&quot;critical&quot;"), "{row}");
    assert!(
        row.contains("<td class=\"level\">1 (critical)</td>"),
        "{row}"
    );
    assert!(
        row.contains(&format!("<td>{}</td>", r["activeAt"].as_str().unwrap())),
        "{row}"
    );
    assert!(row.contains("<td class=\"ack\">—</td>"), "{row}");
    assert!(row.contains("action=\"/alerts/ack\""), "{row}");
    assert!(row.contains("action=\"/alerts/resolve\""), "{row}");
    let token = page_token(&get_page(&http, an));
    let tk = token.as_str();

    // A form without the page's token (as another site would post it), or
    // posted from another origin: refused.
    let r = http
        .post(url("/alerts/ack"))
        .form(&[("fingerprint", fp.as_str()), ("by", "eve")])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = http
        .post(url("/alerts/ack"))
        .header("origin", "http://evil.example")
        .form(&[
            ("fingerprint", fp.as_str()),
            ("by", "eve"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // Refused forms answer with an escaped message, and change nothing.
    let r = http
        .post(url("/alerts/ack"))
        .form(&[
            ("fingerprint", fp.as_str()),
            ("by", " "),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("is required"));
    let r = http
        .post(url("/alerts/ack"))
        .form(&[
            ("fingerprint", "<script>"),
            ("by", "carol"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().unwrap();
    assert!(
        !text.contains("<script>") && text.contains("&lt;script&gt;"),
        "{text}"
    );
    let r = http
        .post(url("/alerts/ack"))
        .form(&[
            ("fingerprint", "0123456789abcdef"),
            ("by", "carol"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(record(&http, an).unwrap()["state"], "firing");

    // Acknowledge as the form does: 303 back to the page, which shows it.
    let r = http
        .post(url("/alerts/ack"))
        .form(&[
            ("fingerprint", fp.as_str()),
            ("by", "<i>carol</i>"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.url().path(), "/", "redirected back to the page");
    let row = page_row(&r.text().unwrap(), &fp);
    assert!(row.contains("by &lt;i&gt;carol&lt;/i&gt; at "), "{row}");
    assert!(!row.contains("action=\"/alerts/ack\""), "{row}");
    assert!(row.contains("action=\"/alerts/resolve\""), "{row}");
    let v = record(&http, an).unwrap();
    assert_eq!(v["state"], "acknowledged");
    assert_eq!(v["acknowledged"]["by"], "<i>carol</i>");
    assert_eq!(v["acknowledged"]["via"], "api");
    assert_eq!(v["silences"].as_array().unwrap().len(), 1, "{v}");
    wait_for("Alertmanager to mark both levels silenced", 10, || {
        let a = am_alerts(&http, am_port);
        a.len() == 2 && a.iter().all(|x| x["status"]["state"] == "suppressed")
    });

    // Resolve through the page's other form.
    let r = http
        .post(url("/alerts/resolve"))
        .form(&[
            ("fingerprint", fp.as_str()),
            ("by", "dave"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let row = page_row(&r.text().unwrap(), &fp);
    assert!(row.contains("<td class=\"resolved\">by dave at "), "{row}");
    assert!(!row.contains("<form"), "{row}");
    let v = record(&http, an).unwrap();
    assert_eq!(v["state"], "resolved");
    assert_eq!(v["resolved"]["by"], "dave");
    assert_eq!(v["resolved"]["manual"], true);
    wait_for("the manual resolution at receivers a and b", 20, || {
        fakes.sink.count("/a", "resolved", "0") == 1 && fakes.sink.count("/b", "resolved", "1") == 1
    });
    let r = http
        .post(url("/alerts/resolve"))
        .form(&[
            ("fingerprint", fp.as_str()),
            ("by", "dave"),
            ("csrf_token", tk),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 409);
}
