//! Harness for the analyzer's integration tests that start real processes
//! (Debian's `prometheus`, `promtool`): loopback ports picked at run time,
//! temp dirs, and children killed by PID when their guard is dropped.
#![allow(dead_code)]

pub mod pki;
pub mod proxy;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What to tell the developer when a required tool is missing.
pub const INSTALL_HINT: &str =
    "run `bash .ci/test`, which installs the Prometheus tools the integration tests need";

/// Finds `name` on `PATH`, or fails the test saying how to install it.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!("required program `{name}` was not found on PATH; {INSTALL_HINT}")
        })
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A test's scratch dir (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imd-an-")
        .tempdir()
        .expect("creating temp dir")
}

/// Runs a command to completion, failing the test (with its output) if it
/// cannot start or exits non-zero.
pub fn run_ok(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed with {}:\n{}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process stopped by PID (SIGTERM, SIGKILL after 5 s) and reaped
/// when dropped; its output goes to files in its log dir.
pub struct Proc {
    name: String,
    child: Option<std::process::Child>,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, logging into `log_dir/<name>.stdout|stderr`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log_dir: &Path) -> Proc {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let child = Command::new(program)
            .args(args)
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("creating stdout log"))
            .stderr(std::fs::File::create(&stderr).expect("creating stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stderr,
        }
    }

    /// The last 4 KiB of what the child wrote to stderr.
    pub fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let start = s.len().saturating_sub(4096);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[start..].to_string()
    }

    /// Sends `signal` (a `kill` name such as `HUP`) to the child by PID.
    pub fn signal(&mut self, signal: &str) {
        let child = self.child.as_mut().expect("the child was stopped");
        assert!(
            child.try_wait().ok().flatten().is_none(),
            "{} has exited",
            self.name
        );
        // Not reaped yet, so the PID is still the child's.
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} failed", self.name);
    }

    /// The child's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The child's exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `http://127.0.0.1:port{path}` until it answers 200; fails the
    /// test with the child's stderr if it exits or `timeout` passes.
    pub fn wait_http_ok(&mut self, port: u16, path: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        while start.elapsed() < timeout {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} before it was ready\nstderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            match http_get_status(port, path) {
                Ok(200) => return,
                Ok(s) => last = format!("HTTP {s}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} was not ready on 127.0.0.1:{port}{path} within {timeout:?} (last: {last})\nstderr:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Kills the child at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// Stops the child now (SIGTERM by PID, SIGKILL after 5 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // The child is not reaped yet, so its PID cannot have been reused.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the test build's `imd-analyzer` with `config`, its state under
/// `dir/an` and its logs in `dir`, on a free loopback port, plus `extra`
/// flags; returns once `/-/ready` answers, with the process and its port.
pub fn start_analyzer(config: &Path, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("an").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut an = Proc::spawn(
        "imd-analyzer",
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &args,
        dir,
    );
    an.wait_http_ok(port, "/-/ready", Duration::from_secs(60));
    (an, port)
}

/// Status code of a plain `GET path` on `127.0.0.1:port`.
pub fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line in {head:?}"),
            )
        })
}

/// Starts Prometheus on an existing TSDB dir with no scrape jobs (so that
/// nothing is written and old blocks are kept), on `127.0.0.1:port`, and
/// waits until `/-/ready` answers. `extra` are more flags (e.g.
/// `--web.config.file=...`); with a TLS web config the readiness probe is
/// skipped and the caller waits itself.
pub fn start_prometheus_on(tsdb: &Path, log_dir: &Path, port: u16, extra: &[String]) -> Proc {
    let bin = require_tool("prometheus");
    let cfg = log_dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
    )
    .expect("writing prometheus.yml");
    let mut args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", tsdb.display()),
        "--storage.tsdb.retention.time=100y".to_string(),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().cloned());
    let mut p = Proc::spawn("prometheus", &bin, &args, log_dir);
    if extra.iter().all(|a| !a.starts_with("--web.config.file")) {
        p.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    }
    p
}

/// Status and body of a plain `GET path` on `127.0.0.1:port` (HTTP/1.0, so
/// the body is not chunked).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line in {head:?}"),
            )
        })?;
    Ok((status, body.to_string()))
}

/// Polls `cond` every 100 ms until it holds, failing after `secs` with `what`.
pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The repository's root (the workspace holding `analyzer/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("analyzer/ has a parent")
        .to_path_buf()
}

/// A program installed by `.ci/test` into its Python venv (`$IMD_TOOLS_VENV`,
/// default `target/ci-venv`), e.g. `kubernetes-validate`; fails the test
/// saying how to install it when missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("IMD_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/ci-venv"));
    let p = venv.join("bin").join(name);
    assert!(
        p.is_file(),
        "required program {} was not found; run `bash .ci/test`, which installs it into {}",
        p.display(),
        venv.display()
    );
    p
}

/// Runs a command to completion and returns (success, stdout + stderr).
pub fn run_capture(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Percent-encodes `s` for a URL query value (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Every `imd_*` series name the analyzer's source spells out as a string
/// literal (what `emit/`, the self-metrics and the notifier publish), to
/// check that rules and dashboards use real names.
pub fn analyzer_metric_names() -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("reading analyzer/src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("analyzer/src"), &mut files);
    let re = regex::Regex::new(r#""(imd_[a-z_]+)""#).expect("regex");
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("reading source");
        names.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
    }
    names
}

/// Builds a TSDB with `promtool tsdb create-blocks-from openmetrics` in
/// `dir/tsdb`: gauges `(metric, instance)` with `points` samples 15 s apart,
/// the last one 15 s before now (so that they are fresh for the analyzer),
/// sample `k` of series `i` being `value(i, k)`. Serve it with
/// [`start_prometheus_on`].
pub fn build_recent_tsdb(
    dir: &Path,
    series: &[(&str, &str)],
    points: i64,
    value: impl Fn(usize, i64) -> f64,
) -> PathBuf {
    const STEP_S: i64 = 15;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let last = now - now % STEP_S - STEP_S;
    let mut om = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut order: Vec<usize> = (0..series.len()).collect();
    // OpenMetrics wants each family's samples together.
    order.sort_by_key(|&i| series[i].0);
    for i in order {
        let (metric, instance) = series[i];
        if typed.insert(metric) {
            om.push_str(&format!("# TYPE {metric} gauge\n"));
        }
        for k in 0..points {
            let t = last - (points - 1 - k) * STEP_S;
            om.push_str(&format!(
                "{metric}{{instance=\"{instance}\"}} {} {t}\n",
                value(i, k)
            ));
        }
    }
    om.push_str("# EOF\n");
    let input = dir.join("input.om");
    std::fs::write(&input, om).expect("writing the OpenMetrics input");
    let tsdb = dir.join("tsdb");
    run_ok(
        &require_tool("promtool"),
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().expect("utf-8 path"),
            tsdb.to_str().expect("utf-8 path"),
        ],
    );
    tsdb
}

/// Starts Alertmanager (no gossip, groups sent at once to a receiver that
/// drops them) on a free loopback port under `dir/name`; returns it and
/// its port once `/-/ready` answers.
pub fn start_alertmanager(dir: &Path, name: &str) -> (Proc, u16) {
    let port = free_port();
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\n  group_wait: 100ms\n  group_interval: 500ms\nreceivers:\n  - name: none\n",
    )
    .expect("writing the Alertmanager config");
    let mut p = Proc::spawn(
        name,
        &require_tool("prometheus-alertmanager"),
        &[
            format!("--config.file={}", cfg.display()),
            format!("--storage.path={}", dir.join(name).display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=".to_string(),
        ],
        dir,
    );
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    (p, port)
}

/// Label sets (as sorted JSON maps) of the active alerts in Alertmanager.
pub fn am_active_alerts(port: u16) -> std::collections::BTreeSet<String> {
    let Ok((200, body)) = http_get(port, "/api/v2/alerts?active=true") else {
        return Default::default();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["status"]["state"] == "active")
                .map(|x| {
                    let labels: std::collections::BTreeMap<String, String> =
                        serde_json::from_value(x["labels"].clone()).unwrap_or_default();
                    serde_json::to_string(&labels).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `node_modules` folder `.ci/test` installs npm packages into
/// (`$IMD_TOOLS_NODE`, default `target/ci-node`); fails the test saying how
/// to install it when `package` is missing there.
pub fn node_modules(package: &str) -> PathBuf {
    let dir = std::env::var_os("IMD_TOOLS_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/ci-node"))
        .join("node_modules");
    assert!(
        dir.join(package).is_dir(),
        "npm package {package} was not found in {}; run `bash .ci/test`, which installs it",
        dir.display()
    );
    dir
}
