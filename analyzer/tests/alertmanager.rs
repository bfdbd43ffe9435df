//! imd's notifier against a real Alertmanager (Debian's
//! `prometheus-alertmanager`), which routes to a webhook receiver played by
//! the test: firing and resolved alerts show up in Alertmanager's API and
//! reach the receiver; an Alertmanager started late still gets the alert.
//!
//! Every process listens on a loopback port picked at run time, writes
//! into a temp dir and is stopped by PID when its guard is dropped.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imd_analyzer::alert::{Alert, AlertmanagerConfig, Notifier, NotifierConfig};
use jiff::Timestamp;
use serde_json::Value;

use common::{Proc, free_port, spawn_alertmanager, wait_for};

/// A blocking HTTP helper for the test's own requests.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http::with(reqwest::Client::builder())
    }

    /// A client trusting only `pki`'s CA and showing its client certificate.
    fn tls(pki: &Path) -> Http {
        let ca = std::fs::read(pki.join("ca.crt")).unwrap();
        let mut id = std::fs::read(pki.join("client.crt")).unwrap();
        id.extend(std::fs::read(pki.join("client.key")).unwrap());
        Http::with(
            reqwest::Client::builder()
                .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
                .identity(reqwest::Identity::from_pem(&id).unwrap()),
        )
    }

    fn with(builder: reqwest::ClientBuilder) -> Http {
        // reqwest is built without a bundled crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: builder
                .timeout(Duration::from_secs(5))
                .build()
                .expect("test HTTP client"),
        }
    }

    fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.rt.block_on(async {
            let r = self
                .client
                .get(url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            Ok((status, r.text().await.map_err(|e| e.to_string())?))
        })
    }
}

/// The webhook receiver Alertmanager notifies: records each payload.
struct Webhook {
    url: String,
    got: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

impl Webhook {
    fn start() -> Webhook {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let v: Value = serde_json::from_slice(&body).expect("webhook payload is JSON");
                store.lock().unwrap().push(v);
                "ok"
            }),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move { axum::serve(listener, app).await });
        Webhook {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
            _rt: rt,
        }
    }

    /// `(status, alertname, endsAt)` of every alert of every notification.
    fn alerts(&self) -> Vec<(String, String, String)> {
        let got = self.got.lock().unwrap();
        got.iter()
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["status"].as_str().unwrap_or("").to_string(),
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["endsAt"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

/// Starts Alertmanager on `127.0.0.1:port` routing everything to
/// `webhook` with short waits, and waits until `/-/ready` answers.
fn start_alertmanager(dir: &Path, port: u16, webhook: &str, http: &Http) -> Proc {
    start_alertmanager_with(dir, port, webhook, http, None)
}

/// As [`start_alertmanager`], with a `--web.config.file` (TLS) when given;
/// the base URL is then `https`.
fn start_alertmanager_with(
    dir: &Path,
    port: u16,
    webhook: &str,
    http: &Http,
    web_config: Option<&Path>,
) -> Proc {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        format!(
            "route:\n  receiver: sink\n  group_by: [alertname]\n  group_wait: 100ms\n  \
             group_interval: 300ms\n  repeat_interval: 1h\n\
             receivers:\n  - name: sink\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let extra: Vec<String> = web_config
        .map(|w| format!("--web.config.file={}", w.display()))
        .into_iter()
        .collect();
    let scheme = if web_config.is_some() {
        "https"
    } else {
        "http"
    };
    // Plain HTTP is probed by the starter; TLS with the test's own client.
    let mut p = spawn_alertmanager("alertmanager", dir, &cfg, port, &extra);
    let start = Instant::now();
    loop {
        if let Some(status) = p.exited() {
            panic!("alertmanager exited with {status}\nstderr:\n{}", p.stderr());
        }
        if matches!(
            http.get(&format!("{scheme}://127.0.0.1:{port}/-/ready")),
            Ok((200, _))
        ) {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "alertmanager not ready on 127.0.0.1:{port}\nstderr:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Alertmanager's `GET /api/v2/alerts` (which lists unresolved alerts).
fn am_alerts(http: &Http, port: u16) -> Vec<Value> {
    am_alerts_at(http, &format!("http://127.0.0.1:{port}"))
}

/// `GET /api/v2/alerts` of the Alertmanager at `base`.
fn am_alerts_at(http: &Http, base: &str) -> Vec<Value> {
    let (status, body) = http
        .get(&format!("{base}/api/v2/alerts"))
        .unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}"));
    assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}: {body}"))
}

/// Now, to the second (Alertmanager answers with millisecond precision).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

fn notifier(am_port: u16) -> Notifier {
    notifier_for(AlertmanagerConfig::new(format!(
        "http://127.0.0.1:{am_port}"
    )))
}

fn notifier_for(am: AlertmanagerConfig) -> Notifier {
    Notifier::new(NotifierConfig {
        alertmanagers: vec![am],
        eval_interval: Duration::from_secs(1),
        retry_min_backoff: Duration::from_millis(100),
        retry_max_backoff: Duration::from_millis(500),
        ..NotifierConfig::default()
    })
    .expect("building the notifier")
}

fn anomaly(name: &str, starts_at: Timestamp) -> Alert {
    Alert::new([("alertname", name), ("instance", "host:9100")], starts_at)
        .with_annotation("summary", "anomaly score above 0.99")
        .with_generator_url("http://imd:9110/")
}

#[test]
fn firing_and_resolved_alerts_reach_alertmanager_and_its_receiver() {
    let dir = tempfile::Builder::new()
        .prefix("imd-am-")
        .tempdir()
        .unwrap();
    let http = Http::new();
    let hook = Webhook::start();
    let port = free_port();
    let _am = start_alertmanager(dir.path(), port, &hook.url, &http);
    let n = notifier(port);

    let started = now();
    n.sync(started, vec![anomaly("ImdAnomaly", started)]);
    wait_for("the alert in Alertmanager", 10, || {
        !am_alerts(&http, port).is_empty()
    });
    let listed = am_alerts(&http, port);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let a = &listed[0];
    assert_eq!(a["status"]["state"], "active");
    assert_eq!(a["labels"]["instance"], "host:9100");
    assert_eq!(a["annotations"]["summary"], "anomaly score above 0.99");
    assert_eq!(a["generatorURL"], "http://imd:9110/");
    let back: Alert = serde_json::from_value(a.clone()).expect("decoding Alertmanager's alert");
    assert_eq!(back.starts_at, started);
    // endsAt = now + 4 × max(resend_delay 1 m, eval_interval 1 s).
    assert_eq!(back.ends_at, Some(started + Duration::from_secs(240)));
    wait_for("the firing notification", 10, || {
        hook.alerts()
            .iter()
            .any(|(s, name, _)| s == "firing" && name == "ImdAnomaly")
    });

    // Resolved now: Alertmanager keeps an alert firing when a resolve
    // carries an endsAt in its future.
    std::thread::sleep(Duration::from_millis(200));
    let resolved = now();
    n.sync(resolved, vec![]);
    wait_for("the alert to leave Alertmanager's list", 10, || {
        am_alerts(&http, port).is_empty()
    });
    wait_for("the resolved notification", 10, || {
        hook.alerts().iter().any(|(s, _, _)| s == "resolved")
    });
    let (_, name, ends) = hook
        .alerts()
        .into_iter()
        .find(|(s, _, _)| s == "resolved")
        .unwrap();
    assert_eq!(name, "ImdAnomaly");
    assert_eq!(ends.parse::<Timestamp>().unwrap(), resolved);
    wait_for("both sends to be counted", 5, || {
        n.metrics().sent_total(0) == 2
    });
    assert_eq!(n.metrics().errors_total(0), 0);
}

#[test]
fn an_alertmanager_started_late_receives_the_alert() {
    let dir = tempfile::Builder::new()
        .prefix("imd-am-")
        .tempdir()
        .unwrap();
    let http = Http::new();
    let hook = Webhook::start();
    let port = free_port();
    let n = notifier(port);

    let started = now();
    n.sync(started, vec![anomaly("ImdLate", started)]);
    wait_for("failed attempts while Alertmanager is down", 10, || {
        n.metrics().errors_total(0) >= 2
    });
    assert_eq!(n.metrics().sent_total(0), 0);

    let _am = start_alertmanager(dir.path(), port, &hook.url, &http);
    wait_for("the alert in Alertmanager", 10, || {
        am_alerts(&http, port)
            .iter()
            .any(|a| a["labels"]["alertname"] == "ImdLate")
    });
    wait_for("the success to be counted", 5, || {
        n.metrics().sent_total(0) == 1
    });
    assert_eq!(n.metrics().queued(0), 0);
    wait_for("the firing notification", 10, || {
        hook.alerts()
            .iter()
            .any(|(s, name, _)| s == "firing" && name == "ImdLate")
    });
}

#[test]
fn tls_with_a_private_ca_and_client_certificates() {
    let dir = tempfile::Builder::new()
        .prefix("imd-am-tls-")
        .tempdir()
        .unwrap();
    let pki = dir.path();
    // `ca.crt`, a server certificate for 127.0.0.1 and a client certificate.
    common::pki::server_cert(pki);
    let web = pki.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {0}/ca.crt\n",
            pki.display()
        ),
    )
    .unwrap();
    let http = Http::tls(pki);
    let hook = Webhook::start();
    let port = free_port();
    let _am = start_alertmanager_with(pki, port, &hook.url, &http, Some(&web));
    let base = format!("https://127.0.0.1:{port}");

    let with_tls = |ca: bool, client_cert: bool, insecure: bool| {
        let mut c = AlertmanagerConfig::new(base.clone());
        if ca {
            c.http.tls.ca_file = Some(pki.join("ca.crt"));
        }
        if client_cert {
            c.http.tls.cert_file = Some(pki.join("client.crt"));
            c.http.tls.key_file = Some(pki.join("client.key"));
        }
        c.http.tls.insecure_skip_verify = insecure;
        notifier_for(c)
    };
    let trusted = with_tls(true, true, false);
    let no_client_cert = with_tls(true, false, false);
    let unknown_ca = with_tls(false, true, false);
    let insecure = with_tls(false, true, true);
    let t = now();
    for (n, name) in [
        (&trusted, "ImdTrusted"),
        (&no_client_cert, "ImdNoClientCert"),
        (&unknown_ca, "ImdUnknownCa"),
        (&insecure, "ImdInsecure"),
    ] {
        n.sync(t, vec![anomaly(name, t)]);
    }
    wait_for("the trusted and the insecure sends", 10, || {
        trusted.metrics().sent_total(0) == 1 && insecure.metrics().sent_total(0) == 1
    });
    wait_for("the refused handshakes", 10, || {
        no_client_cert.metrics().errors_total(0) >= 1 && unknown_ca.metrics().errors_total(0) >= 1
    });
    let mut names: Vec<String> = am_alerts_at(&http, &base)
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["ImdInsecure", "ImdTrusted"]);
    assert_eq!(no_client_cert.metrics().sent_total(0), 0);
    assert_eq!(unknown_ca.metrics().sent_total(0), 0);
}
