//! Harness shared by the integration tests that start real processes:
//! imd-exporter itself, Debian's `prometheus` and `prometheus-node-exporter`.
//!
//! Everything listens on loopback ports picked at run time, writes into temp
//! dirs, and is killed by PID when its guard is dropped, so a failing test
//! leaves nothing behind. HTTP is spoken by hand over `std::net::TcpStream`
//! (plain HTTP/1.1 GET is all the tests need; TLS cases use the `curl` CLI).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What to tell the developer when a required tool is missing.
pub const INSTALL_HINT: &str = "run the README's test command, which installs the Prometheus tools \
     (apt-get install -y prometheus prometheus-node-exporter curl openssl)";

/// Path of the imd-exporter binary Cargo built for this test run.
pub fn imd_exporter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imd-exporter"))
}

/// Finds `name` on `PATH`, or fails the test saying how to install it.
/// A missing tool is a failure, never a silent pass.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("required program `{name}` was not found on PATH; {INSTALL_HINT}");
}

/// A loopback port that was free a moment ago (bound to port 0, read, dropped).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// A child process that is stopped by PID (SIGTERM, then SIGKILL after a
/// grace period) and reaped when the guard is dropped. Its stdout and stderr
/// go to files, so a chatty child never blocks on a full pipe and a failure
/// message can quote what it said.
pub struct Proc {
    name: String,
    child: Option<std::process::Child>,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`, logging into `log_dir/<name>.stdout|stderr`.
    pub fn spawn<I, S>(name: &str, program: &Path, args: I, log_dir: &Path) -> Proc
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let out = std::fs::File::create(&stdout).expect("creating stdout log");
        let err = std::fs::File::create(&stderr).expect("creating stderr log");
        let args: Vec<std::ffi::OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let child = Command::new(program)
            .args(&args)
            .current_dir(log_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", program.display()));
        Proc {
            name: name.to_string(),
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// What the child wrote to stderr so far (last 4 KiB).
    pub fn stderr(&self) -> String {
        let s = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail_start = s.len().saturating_sub(4096);
        let tail_start = (tail_start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        s[tail_start..].to_string()
    }

    /// What the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The exit status if the child has already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Polls `http://127.0.0.1:port{path}` until it answers 200, failing the
    /// test (with the child's stderr) if the child exits or `timeout` passes.
    pub fn wait_http_ok(&mut self, port: u16, path: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::from("no attempt");
        while start.elapsed() < timeout {
            if let Some(status) = self.exited() {
                panic!(
                    "{} exited with {status} before it was ready\nstderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            match http_get(port, path, &[]) {
                Ok(r) if r.status == 200 => return,
                Ok(r) => last = format!("HTTP {}", r.status),
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

    /// Stops the child now (SIGTERM, SIGKILL after 5 s) and returns its status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        // SIGTERM by PID through kill(1): the child is still ours (not yet
        // reaped), so the PID cannot have been reused.
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

/// Starts imd-exporter on `127.0.0.1:port` with a state dir under `dir` and
/// the extra arguments, and waits until `/-/ready` answers.
pub fn start_imd(dir: &Path, port: u16, extra: &[String]) -> Proc {
    let mut args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.path={}", dir.join("imd-state").display()),
    ];
    args.extend(extra.iter().cloned());
    let mut p = Proc::spawn("imd-exporter", &imd_exporter_bin(), &args, dir);
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(20));
    p
}

/// Starts Debian's node_exporter on `127.0.0.1:port` with the extra
/// arguments (systemd is always off: there is no systemd here) and waits
/// until `/metrics` answers.
pub fn start_node_exporter(dir: &Path, port: u16, extra: &[String]) -> Proc {
    let bin = require_tool("prometheus-node-exporter");
    let mut args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--no-collector.systemd".to_string(),
    ];
    args.extend(extra.iter().cloned());
    let mut p = Proc::spawn("node-exporter", &bin, &args, dir);
    p.wait_http_ok(port, "/metrics", Duration::from_secs(20));
    p
}

/// Starts Prometheus with `config` (YAML text, written to `dir`), storage in
/// `dir`, on `127.0.0.1:port`, and waits until `/-/ready` answers.
pub fn start_prometheus(dir: &Path, port: u16, config: &str) -> Proc {
    let bin = require_tool("prometheus");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, config).expect("writing prometheus.yml");
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let mut p = Proc::spawn("prometheus", &bin, &args, dir);
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    p
}

/// An HTTP response as read off the wire.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked but not decompressed.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on `127.0.0.1:port` with extra request headers, over a fresh
/// connection closed after the answer.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: imd-tests\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Splits a raw HTTP/1.1 response into status, headers and body, undoing
/// chunked transfer encoding.
fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head =
        std::str::from_utf8(&raw[..split]).map_err(|e| format!("headers are not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without end")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes a query-string value (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs an instant PromQL query against Prometheus on `port` and returns
/// `data.result` (an array of `{metric, value}` objects).
pub fn prom_query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = http_get(
        port,
        &format!("/api/v1/query?query={}", url_encode(expr)),
        &[],
    )
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("HTTP {}: {e}: {}", r.status, r.text()))?;
    if v["status"] != "success" {
        return Err(format!("query {expr:?} failed: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The numeric value of one instant-query result element.
pub fn result_value(r: &serde_json::Value) -> Option<f64> {
    r["value"][1].as_str().and_then(|s| s.parse().ok())
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name (may carry `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Label pairs in written order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// Labels as a sorted map (order-independent comparison).
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    /// The value of one label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One metric family of the text format.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// Family name.
    pub name: String,
    /// Help text (escapes undone).
    pub help: String,
    /// Declared type (`counter`, `gauge`, ..., `untyped` when none given).
    pub kind: String,
    /// Samples in written order.
    pub samples: Vec<Sample>,
}

/// Parses Prometheus' classic text exposition format into families keyed by
/// name. Strict enough for comparisons: malformed lines are errors naming
/// the line.
pub fn parse_text(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts
                .next()
                .ok_or(format!("line {n}: {keyword} without a name"))?;
            let arg = parts.next().unwrap_or("");
            let f = fams.entry(name.to_string()).or_insert_with(|| Family {
                name: name.to_string(),
                kind: "untyped".into(),
                ..Family::default()
            });
            if keyword == "HELP" {
                f.help = unescape(arg, false);
            } else {
                f.kind = arg.trim().to_string();
            }
            current = Some(name.to_string());
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {line:?}"))?;
        let family = match &current {
            Some(c) if belongs_to(&sample.name, c, &fams[c].kind) => c.clone(),
            _ => {
                current = Some(sample.name.clone());
                sample.name.clone()
            }
        };
        fams.entry(family.clone())
            .or_insert_with(|| Family {
                name: family.clone(),
                kind: "untyped".into(),
                ..Family::default()
            })
            .samples
            .push(sample);
    }
    Ok(fams)
}

fn belongs_to(sample: &str, family: &str, kind: &str) -> bool {
    if sample == family {
        return true;
    }
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
        "summary" => matches!(suffix, "_sum" | "_count"),
        _ => false,
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (parsed, used) = parse_labels(r)?;
        labels = parsed;
        rest = &r[used..];
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("no value")?;
    let value = parse_value(value_text).ok_or(format!("bad value {value_text:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` (after the opening brace); returns the pairs
/// and how many bytes of `r` the label set took, closing brace included.
fn parse_labels(r: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        i += r[i..].len() - r[i..].trim_start_matches([',', ' ', '\t']).len();
        match r[i..].chars().next() {
            None => return Err("unterminated label set".into()),
            Some('}') => return Ok((labels, i + 1)),
            Some(_) => {}
        }
        let eq = r[i..].find('=').ok_or("label without '='")? + i;
        let name = r[i..eq].trim().to_string();
        let after = r[eq + 1..].trim_start();
        i = r.len() - after.len();
        if !after.starts_with('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        i += 1;
        let mut value = String::new();
        let mut chars = r[i..].char_indices();
        let mut closed = None;
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some(other) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    closed = Some(i + j + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        i = closed.ok_or(format!("label {name} value is not closed"))?;
        labels.push((name, value));
    }
}

/// Parses a sample value as the text format writes it.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn unescape(s: &str, quote: bool) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') if quote => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Scrapes `/metrics` (optionally narrowed with `collect[]`) and parses it.
pub fn scrape(port: u16, collectors: &[&str]) -> BTreeMap<String, Family> {
    let query: Vec<String> = collectors
        .iter()
        .map(|c| format!("collect[]={c}"))
        .collect();
    let path = if query.is_empty() {
        "/metrics".to_string()
    } else {
        format!("/metrics?{}", query.join("&"))
    };
    let r =
        http_get(port, &path, &[]).unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}{path}: {e}"));
    assert_eq!(r.status, 200, "GET 127.0.0.1:{port}{path}: {}", r.text());
    parse_text(&r.text()).unwrap_or_else(|e| panic!("parsing 127.0.0.1:{port}{path}: {e}"))
}

/// Names of the collectors imd-exporter has, as its `--help` lists them.
pub fn imd_collectors() -> Vec<String> {
    imd_exporter::collectors::ALL
        .iter()
        .map(|s| s.name.to_string())
        .collect()
}

/// Runs a command to completion, failing the test if it cannot start.
pub fn run(program: &Path, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// A test's scratch dir (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("imd-it-")
        .tempdir()
        .expect("creating temp dir")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_reads_labels_escapes_and_histograms() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\n\\\\\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n\
                    untyped_one 1e+06 1700000000000\n";
        let f = parse_text(text).unwrap();
        assert_eq!(f["a_total"].kind, "counter");
        assert_eq!(f["a_total"].samples[0].label("y"), Some("q\"\n\\"));
        assert_eq!(f["h"].samples.len(), 4);
        assert_eq!(f["untyped_one"].samples[0].value, 1e6);
        assert!(parse_text("x{a=\"1} 2\n").is_err());
        assert!(parse_text("x abc\n").is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    }
}
