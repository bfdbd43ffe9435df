//! The notifier against tiny in-test Alertmanager stand-ins (axum on
//! loopback) that record every request and answer as scripted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};

use super::*;
use crate::alert::BasicAuth;

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    alerts: Vec<Alert>,
    status: u16,
}

#[derive(Default)]
struct SinkState {
    got: Vec<Received>,
    /// Statuses to answer with, in order; 200 when empty.
    script: VecDeque<u16>,
    /// While set, every request gets 503.
    down: bool,
}

/// An Alertmanager stand-in on 127.0.0.1.
struct Sink {
    url: String,
    state: Arc<Mutex<SinkState>>,
    _runtime: tokio::runtime::Runtime,
}

async fn receive(
    State(state): State<Arc<Mutex<SinkState>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let alerts: Vec<Alert> = serde_json::from_slice(&body).expect("sink got invalid JSON");
    let mut s = state.lock().unwrap();
    let status = if s.down {
        503
    } else {
        s.script.pop_front().unwrap_or(200)
    };
    s.got.push(Received {
        path: uri.path().to_string(),
        headers,
        alerts,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

impl Sink {
    fn start() -> Sink {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(SinkState::default()));
        let app = axum::Router::new()
            .fallback(axum::routing::post(receive))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Sink {
            url: format!("http://127.0.0.1:{port}"),
            state,
            _runtime: runtime,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// The alerts of the successful requests, in order.
    fn delivered(&self) -> Vec<Alert> {
        self.got()
            .into_iter()
            .filter(|r| r.status == 200)
            .flat_map(|r| r.alerts)
            .collect()
    }

    fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }
}

/// Polls `cond` until it holds, failing after 10 s with `what`.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn config(urls: &[&str]) -> NotifierConfig {
    NotifierConfig {
        alertmanagers: urls.iter().map(|u| AlertmanagerConfig::new(*u)).collect(),
        resend_delay: Duration::from_secs(60),
        eval_interval: Duration::from_secs(15),
        retry_min_backoff: Duration::from_millis(20),
        retry_max_backoff: Duration::from_millis(100),
        ..NotifierConfig::default()
    }
}

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

fn secs(s: u64) -> Timestamp {
    t0().checked_add(Duration::from_secs(s)).unwrap()
}

fn alert(name: &str) -> Alert {
    Alert::new([("alertname", name), ("job", "node")], t0())
        .with_annotation("summary", format!("{name} is odd"))
        .with_generator_url("http://imd:9110/")
}

fn names(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a.labels["alertname"].clone())
        .collect()
}

#[test]
fn first_send_posts_the_alert_with_ends_at_ahead() {
    let sink = Sink::start();
    let mut cfg = config(&[&format!("{}/", sink.url)]);
    cfg.alertmanagers[0].path_prefix = "/am".into();
    cfg.external_labels.insert("cluster".into(), "c1".into());
    let n = Notifier::new(cfg).unwrap();
    let report = n.sync(secs(0), vec![alert("A")]);
    assert_eq!(report.queued, 1);
    wait_for("the first POST", || sink.got().len() == 1);
    let r = &sink.got()[0];
    assert_eq!(r.path, "/am/api/v2/alerts");
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("imd-analyzer/")
    );
    let a = &r.alerts[0];
    assert_eq!(a.labels["cluster"], "c1");
    assert_eq!(a.annotations["summary"], "A is odd");
    assert_eq!(a.generator_url, "http://imd:9110/");
    assert_eq!(a.starts_at, t0());
    // 4 × max(resend_delay 60 s, eval_interval 15 s).
    assert_eq!(a.ends_at, Some(secs(240)));
    wait_for("the success to be counted", || {
        n.metrics().sent_total(0) == 1
    });
    assert_eq!(n.alerts().len(), 1);
    let text = imd_exporter::exposition::encode(
        &n.metrics().families(),
        imd_exporter::exposition::Format::Text,
    );
    assert!(text.contains("imd_alerts_active 1"), "{text}");
}

#[test]
fn firing_alerts_are_resent_only_after_resend_delay() {
    let sink = Sink::start();
    let n = Notifier::new(config(&[&sink.url])).unwrap();
    n.sync(secs(0), vec![alert("A")]);
    wait_for("the first POST", || sink.got().len() == 1);
    assert_eq!(n.sync(secs(15), vec![alert("A")]).queued, 0);
    assert_eq!(n.sync(secs(45), vec![alert("A")]).queued, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.got().len(), 1, "nothing sent within the resend delay");
    assert_eq!(n.sync(secs(60), vec![alert("A")]).queued, 1);
    wait_for("the resend", || sink.got().len() == 2);
    let again = &sink.got()[1].alerts[0];
    assert_eq!(again.starts_at, t0(), "startsAt unchanged");
    assert_eq!(again.ends_at, Some(secs(300)));
}

#[test]
fn resolved_alerts_are_sent_with_ends_at_when_they_resolved() {
    let sink = Sink::start();
    let n = Notifier::new(config(&[&sink.url])).unwrap();
    n.sync(secs(0), vec![alert("A"), alert("B")]);
    wait_for("the first POST", || sink.delivered().len() == 2);
    n.sync(secs(30), vec![alert("B")]);
    wait_for("the resolve", || sink.delivered().len() == 3);
    let resolved = &sink.delivered()[2];
    assert_eq!(names(std::slice::from_ref(resolved)), ["A"]);
    assert_eq!(resolved.starts_at, t0());
    assert_eq!(resolved.ends_at, Some(secs(30)));
    assert_eq!(
        n.metrics()
            .families()
            .iter()
            .find(|f| f.name == "imd_alerts_active")
            .unwrap()
            .samples[0]
            .value,
        1.0
    );
}

#[test]
fn failed_requests_are_retried_until_the_alertmanager_recovers() {
    let sink = Sink::start();
    sink.script(&[500, 503]);
    let n = Notifier::new(config(&[&sink.url])).unwrap();
    n.sync(secs(0), vec![alert("A")]);
    wait_for("two failures and a success", || sink.got().len() == 3);
    let statuses: Vec<u16> = sink.got().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 200]);
    assert_eq!(names(&sink.delivered()), ["A"]);
    wait_for("the counters", || n.metrics().sent_total(0) == 1);
    assert_eq!(n.metrics().errors_total(0), 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.got().len(), 3, "nothing sent twice after the success");
}

#[test]
fn refused_batches_are_dropped_not_retried() {
    let sink = Sink::start();
    sink.script(&[400]);
    let n = Notifier::new(config(&[&sink.url])).unwrap();
    n.sync(secs(0), vec![alert("A")]);
    wait_for("the refused POST", || n.metrics().errors_total(0) == 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(sink.got().len(), 1);
    // The next resend goes through.
    n.sync(secs(60), vec![alert("A")]);
    wait_for("the resend", || sink.delivered().len() == 1);
}

#[test]
fn a_full_queue_drops_the_oldest_and_a_returning_alertmanager_gets_the_rest() {
    let sink = Sink::start();
    sink.set_down(true);
    let mut cfg = config(&[&sink.url]);
    cfg.queue_capacity = 3;
    cfg.max_batch_size = 2;
    let n = Notifier::new(cfg).unwrap();
    n.sync(secs(0), ["A", "B", "C", "D", "E"].map(alert).to_vec());
    assert_eq!(n.metrics().dropped_total(), 2);
    wait_for("failed attempts", || n.metrics().errors_total(0) >= 4);
    assert_eq!(n.metrics().dropped_total(), 2, "retries do not drop more");
    // While down, D resolves: the queue holds its latest state only.
    n.sync(secs(30), ["A", "B", "C", "E"].map(alert).to_vec());
    // Two more failed requests: at most one was in flight during the sync,
    // so the queue now holds the new state only.
    let seen = sink.got().len();
    wait_for("attempts after the sync", || sink.got().len() >= seen + 2);
    sink.set_down(false);
    wait_for("delivery", || {
        n.metrics().queued(0) == 0 && n.metrics().sent_total(0) == 3
    });
    let got = sink.delivered();
    assert_eq!(names(&got), ["C", "E", "D"]);
    assert_eq!(got[2].ends_at, Some(secs(30)));
    assert!(
        sink.got()
            .iter()
            .filter(|r| r.status == 200)
            .all(|r| r.alerts.len() <= 2)
    );
}

#[test]
fn every_alertmanager_gets_every_alert_and_a_dead_one_blocks_no_one() {
    let up = Sink::start();
    let down = Sink::start();
    down.set_down(true);
    let n = Notifier::new(config(&[&up.url, &down.url])).unwrap();
    n.sync(secs(0), vec![alert("A")]);
    wait_for("the live Alertmanager", || up.delivered().len() == 1);
    n.sync(secs(10), vec![]);
    wait_for("the resolve on the live one", || up.delivered().len() == 2);
    let seen = down.got().len();
    wait_for("attempts after the resolve", || {
        down.got().len() >= seen + 2
    });
    assert!(down.delivered().is_empty());
    down.set_down(false);
    wait_for("the returning Alertmanager", || down.delivered().len() == 1);
    // It gets the current state (A resolved), once.
    let a = &down.delivered()[0];
    assert_eq!(a.ends_at, Some(secs(10)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(down.delivered().len(), 1);
    assert_eq!(up.delivered().len(), 2);
    wait_for("the counts", || {
        n.metrics().sent_total(0) == 2 && n.metrics().sent_total(1) == 1
    });
    assert!(n.metrics().errors_total(1) >= 1);
    assert_eq!(
        n.endpoints(),
        [
            format!("{}/api/v2/alerts", up.url),
            format!("{}/api/v2/alerts", down.url)
        ]
    );
}

#[test]
fn an_unreachable_alertmanager_counts_errors_and_sync_does_not_block() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n = Notifier::new(config(&[&format!("http://127.0.0.1:{port}")])).unwrap();
    let start = Instant::now();
    for i in 0..20 {
        n.sync(secs(i * 60), vec![alert("A")]);
    }
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "sync waited on the network"
    );
    wait_for("errors", || n.metrics().errors_total(0) >= 2);
    assert!(n.metrics().queued(0) <= 1, "one label set is queued once");
    assert_eq!(n.metrics().sent_total(0), 0);
}

#[test]
fn dropping_the_notifier_delivers_what_is_queued() {
    let sink = Sink::start();
    let n = Notifier::new(config(&[&sink.url])).unwrap();
    n.sync(secs(0), ["A", "B"].map(alert).to_vec());
    drop(n);
    assert_eq!(names(&sink.delivered()), ["A", "B"]);
}

#[test]
fn credentials_are_sent() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut cfg = config(&[&sink.url, &format!("{}/basic", sink.url)]);
    cfg.alertmanagers[0].http.bearer_token_file = Some(token.clone());
    cfg.alertmanagers[1].http.basic_auth = Some(BasicAuth {
        username: "imd".into(),
        password: Some(crate::http::Secret("pw".into())),
        password_file: None,
    });
    let n = Notifier::new(cfg).unwrap();
    n.sync(secs(0), vec![alert("A")]);
    wait_for("both POSTs", || sink.got().len() == 2);
    let auth = |prefix: &str| {
        let r = sink
            .got()
            .into_iter()
            .find(|r| r.path.starts_with(prefix))
            .unwrap();
        r.headers["authorization"].to_str().unwrap().to_string()
    };
    assert_eq!(auth("/api"), "Bearer s3cret");
    // base64("imd:pw")
    assert_eq!(auth("/basic"), "Basic aW1kOnB3");
    // The token file is read at each send.
    std::fs::write(&token, "rotated").unwrap();
    n.sync(secs(60), vec![alert("A")]);
    wait_for("the resends", || sink.got().len() == 4);
    assert_eq!(
        sink.got()
            .iter()
            .filter(|r| r.path.starts_with("/api"))
            .nth(1)
            .unwrap()
            .headers["authorization"],
        "Bearer rotated"
    );
}

#[test]
fn bad_configuration_is_refused_with_the_key() {
    let err = |cfg: NotifierConfig| Notifier::new(cfg).unwrap_err().to_string();
    let mut c = config(&["http://127.0.0.1:1", "http://127.0.0.1:1/"]);
    assert_eq!(
        err(c.clone()),
        "alertmanagers[1].url: http://127.0.0.1:1/api/v2/alerts is already alertmanagers[0]"
    );
    c.alertmanagers.pop();
    c.resend_delay = Duration::ZERO;
    assert_eq!(err(c.clone()), "resend_delay: must be above zero");
    c.resend_delay = Duration::from_secs(1);
    c.queue_capacity = 0;
    assert_eq!(err(c.clone()), "queue_capacity: must be at least 1");
    c.queue_capacity = 1;
    c.external_labels.insert("a-b".into(), "x".into());
    assert_eq!(err(c), "external_labels.a-b: invalid label name");
}

#[test]
fn configuration_reads_from_yaml_with_prometheus_defaults() {
    let c: NotifierConfig = serde_yaml_ng::from_str(
        "alertmanagers:\n  - url: http://am:9093\n    timeout: 5s\neval_interval: 30s\nexternal_labels: {cluster: c1}\n",
    )
    .unwrap();
    assert_eq!(c.alertmanagers[0].http.timeout, Duration::from_secs(5));
    assert_eq!(c.resend_delay, Duration::from_secs(60));
    assert_eq!(c.effective_resolve_timeout(), Duration::from_secs(240));
    assert_eq!(c.resolved_retention, Duration::from_secs(900));
    assert_eq!(c.queue_capacity, 10_000);
    let c: NotifierConfig = serde_yaml_ng::from_str("resolve_timeout: 90s\n").unwrap();
    assert_eq!(c.effective_resolve_timeout(), Duration::from_secs(90));
    assert!(serde_yaml_ng::from_str::<NotifierConfig>("resend_dealy: 1m\n").is_err());
}

#[test]
fn jitter_stays_within_half_to_full() {
    let d = Duration::from_millis(1000);
    let waits: Vec<Duration> = (0..50).map(|_| jitter(d)).collect();
    assert!(waits.iter().all(|w| *w >= d / 2 && *w <= d));
    assert!(waits.iter().any(|w| *w != waits[0]), "jitter varies");
}

#[test]
fn the_notifier_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Notifier>();
    let n = std::sync::Arc::new(Notifier::new(NotifierConfig::default()).unwrap());
    let engine = {
        let n = n.clone();
        std::thread::spawn(move || n.sync(secs(0), vec![alert("A")]))
    };
    assert_eq!(engine.join().unwrap().queued, 1);
    assert!(
        n.endpoints().is_empty(),
        "no Alertmanager: state is kept, nothing sent"
    );
    assert_eq!(n.alerts().len(), 1);
}
