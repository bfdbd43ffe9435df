//! imd's notifier against a real Alertmanager (Debian's
//! `prometheus-alertmanager`), which routes to a webhook receiver played by
//! the test: firing and resolved alerts show up in Alertmanager's API and
//! reach the receiver; an Alertmanager started late still gets the alert.
//!
//! Every process listens on a loopback port picked at run time, writes
//! into a temp dir and is stopped by PID when its guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imd_analyzer::alert::{Alert, AlertmanagerConfig, Notifier, NotifierConfig};
use jiff::Timestamp;
use serde_json::Value;

/// What to tell the developer when Alertmanager is missing.
const HINT: &str = "run `bash .ci/test`, which installs the Prometheus tools \
    (apt-get install -y prometheus-alertmanager)";

/// Finds `name` on `PATH`, or fails the test saying how to install it.
fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("required program `{name}` was not found on PATH; {HINT}"))
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A child process stopped by PID (SIGTERM, SIGKILL after 5 s) on drop,
/// its output kept in files for failure messages.
struct Proc {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Proc {
        let stderr = dir.join(format!("{name}.stderr"));
        let out = std::fs::File::create(dir.join(format!("{name}.stdout"))).expect("stdout log");
        let err = std::fs::File::create(&stderr).expect("stderr log");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            child: Some(child),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let from = s.len().saturating_sub(4096);
        let from = (from..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
        s[from..].to_string()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        // By PID: the child is not reaped yet, so the PID is still ours.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking HTTP helper for the test's own requests.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        // reqwest is built without a bundled crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Http {
            rt: tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("test HTTP client"),
        }
    }

    fn get(&self, url: &str) -> Result<(u16, String), String> {
        self.rt.block_on(async {
            let r = self.client.get(url).send().await.map_err(|e| e.to_string())?;
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
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
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
    let bin = require_tool("prometheus-alertmanager");
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
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.path={}", dir.join("am-data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_string(),
    ];
    let mut p = Proc::spawn("alertmanager", &bin, &args, dir);
    let start = Instant::now();
    loop {
        if let Some(Ok(Some(status))) = p.child.as_mut().map(|c| c.try_wait()) {
            panic!("alertmanager exited with {status}\nstderr:\n{}", p.stderr());
        }
        if matches!(http.get(&format!("http://127.0.0.1:{port}/-/ready")), Ok((200, _))) {
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
    let (status, body) = http
        .get(&format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}"));
    assert_eq!(status, 200, "GET /api/v2/alerts: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /api/v2/alerts: {e}: {body}"))
}

/// Polls `cond` until it holds, failing after `secs` with `what`.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Now, to the second (Alertmanager answers with millisecond precision).
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap()
}

fn notifier(am_port: u16) -> Notifier {
    Notifier::new(NotifierConfig {
        alertmanagers: vec![AlertmanagerConfig::new(format!("http://127.0.0.1:{am_port}"))],
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
    let dir = tempfile::Builder::new().prefix("imd-am-").tempdir().unwrap();
    let http = Http::new();
    let hook = Webhook::start();
    let port = free_port();
    let _am = start_alertmanager(dir.path(), port, &hook.url, &http);
    let n = notifier(port);

    let started = now();
    n.sync(started, vec![anomaly("ImdAnomaly", started)]);
    wait_for("the alert in Alertmanager", 10, || !am_alerts(&http, port).is_empty());
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
        hook.alerts().iter().any(|(s, name, _)| s == "firing" && name == "ImdAnomaly")
    });

    // Resolved now: Alertmanager keeps an alert firing when a resolve
    // carries an endsAt in its future.
    std::thread::sleep(Duration::from_millis(200));
    let resolved = now();
    n.sync(resolved, vec![]);
    wait_for("the alert to leave Alertmanager's list", 10, || am_alerts(&http, port).is_empty());
    wait_for("the resolved notification", 10, || {
        hook.alerts().iter().any(|(s, _, _)| s == "resolved")
    });
    let (_, name, ends) = hook.alerts().into_iter().find(|(s, _, _)| s == "resolved").unwrap();
    assert_eq!(name, "ImdAnomaly");
    assert_eq!(ends.parse::<Timestamp>().unwrap(), resolved);
    wait_for("both sends to be counted", 5, || n.metrics().sent_total(0) == 2);
    assert_eq!(n.metrics().errors_total(0), 0);
}

#[test]
fn an_alertmanager_started_late_receives_the_alert() {
    let dir = tempfile::Builder::new().prefix("imd-am-").tempdir().unwrap();
    let http = Http::new();
    let hook = Webhook::start();
    let port = free_port();
    let n = notifier(port);

    let started = now();
    n.sync(started, vec![anomaly("ImdLate", started)]);
    wait_for("failed attempts while Alertmanager is down", 10, || n.metrics().errors_total(0) >= 2);
    assert_eq!(n.metrics().sent_total(0), 0);

    let _am = start_alertmanager(dir.path(), port, &hook.url, &http);
    wait_for("the alert in Alertmanager", 10, || {
        am_alerts(&http, port).iter().any(|a| a["labels"]["alertname"] == "ImdLate")
    });
    wait_for("the success to be counted", 5, || n.metrics().sent_total(0) == 1);
    assert_eq!(n.metrics().queued(0), 0);
    wait_for("the firing notification", 10, || {
        hook.alerts().iter().any(|(s, name, _)| s == "firing" && name == "ImdLate")
    });
}
