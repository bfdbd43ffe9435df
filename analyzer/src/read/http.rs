//! HTTP settings shared by the sources that read a Prometheus-compatible
//! server (remote read, query_range): timeout, authentication, extra
//! headers, TLS; and the counters those sources keep about their reads.
//!
//! The option names follow Prometheus' own `http_config` (`basic_auth`,
//! `bearer_token_file`, `tls_config.ca_file`, ...) so a remote-read block
//! copied from a Prometheus configuration reads the same here.
//!
//! TLS is rustls with the `ring` provider, the one the exporter's server
//! already uses; reqwest is built without a provider of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::ReadError;

/// A secret given inline; printed as `<secret>`.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password given inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password (read at each request, trailing newline
    /// removed), for secrets that rotate.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// TLS settings for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// How to reach a server: everything but the URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOptions {
    /// Limit for a whole request, answer body included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token given inline.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token (read at each request).
    pub bearer_token_file: Option<PathBuf>,
    /// Extra request headers, e.g. `X-Scope-OrgID` for a multi-tenant
    /// Cortex/Mimir/Thanos.
    pub headers: BTreeMap<String, String>,
    /// TLS settings.
    #[serde(rename = "tls_config")]
    pub tls: TlsOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
            tls: TlsOptions::default(),
        }
    }
}

/// Headers the protocols set themselves; configuring them is an error.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "accept-encoding",
    "user-agent",
    "connection",
    "transfer-encoding",
    "x-prometheus-remote-read-version",
];

#[derive(Debug, Clone)]
enum SecretSource {
    Inline(String),
    File(PathBuf),
}

impl SecretSource {
    fn get(&self) -> Result<String, ReadError> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| ReadError::Config(format!("reading {}: {e}", p.display()))),
        }
    }
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<SecretSource>,
    },
    Bearer(SecretSource),
}

/// A configured HTTP client: options checked and TLS material loaded when
/// it is made; the connection pool itself is started on first use, on the
/// reading thread (reqwest's blocking client must not be started or used
/// on an async task).
pub struct HttpClient {
    timeout: Duration,
    auth: Auth,
    headers: HeaderMap,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    insecure: bool,
    client: Mutex<Option<Client>>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .field(
                "auth",
                &if matches!(self.auth, Auth::None) {
                    "none"
                } else {
                    "set"
                },
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path)
        .map_err(|e| ReadError::Config(format!("reading {what} {}: {e}", path.display())))
}

/// Makes rustls' `ring` provider the process default (once), so reqwest,
/// built without a provider of its own, uses it.
fn install_ring_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when a default is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl HttpClient {
    /// Checks `opts` and loads their TLS files and header values; errors
    /// name the option and file at fault.
    pub fn new(opts: &HttpOptions) -> Result<HttpClient, ReadError> {
        let inline_or_file =
            |inline: &Option<Secret>, file: &Option<PathBuf>, what: &str| match (inline, file) {
                (Some(_), Some(_)) => Err(ReadError::Config(format!(
                    "{what} and {what}_file are mutually exclusive"
                ))),
                (Some(s), None) => Ok(Some(SecretSource::Inline(s.0.clone()))),
                (None, Some(p)) => {
                    // Read once now so a wrong path is reported at start-up.
                    let src = SecretSource::File(p.clone());
                    src.get()?;
                    Ok(Some(src))
                }
                (None, None) => Ok(None),
            };
        let bearer = inline_or_file(&opts.bearer_token, &opts.bearer_token_file, "bearer_token")?;
        let auth = match (&opts.basic_auth, bearer) {
            (Some(_), Some(_)) => {
                return Err(ReadError::Config(
                    "basic_auth and bearer_token(_file) are mutually exclusive".into(),
                ));
            }
            (Some(b), None) => {
                if b.username.is_empty() {
                    return Err(ReadError::Config("basic_auth.username is empty".into()));
                }
                Auth::Basic {
                    username: b.username.clone(),
                    password: inline_or_file(&b.password, &b.password_file, "basic_auth.password")?,
                }
            }
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => Auth::None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &opts.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                ReadError::Config(format!("headers: invalid header name {k:?}: {e}"))
            })?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ReadError::Config(format!(
                    "headers: {k:?} is set by imd itself and cannot be configured"
                )));
            }
            let value = HeaderValue::from_str(v).map_err(|e| {
                ReadError::Config(format!("headers.{k}: invalid header value: {e}"))
            })?;
            headers.insert(name, value);
        }
        let tls = &opts.tls;
        let roots = match &tls.ca_file {
            Some(p) => {
                let certs =
                    reqwest::Certificate::from_pem_bundle(&read_file("tls_config.ca_file", p)?)
                        .map_err(|e| {
                            ReadError::Config(format!("tls_config.ca_file {}: {e}", p.display()))
                        })?;
                if certs.is_empty() {
                    return Err(ReadError::Config(format!(
                        "tls_config.ca_file {} holds no certificate",
                        p.display()
                    )));
                }
                certs
            }
            None => Vec::new(),
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(c), Some(k)) => {
                let mut pem = read_file("tls_config.cert_file", c)?;
                pem.push(b'\n');
                pem.extend(read_file("tls_config.key_file", k)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ReadError::Config(format!(
                        "tls_config.cert_file {} / key_file {}: {e}",
                        c.display(),
                        k.display()
                    ))
                })?)
            }
            (None, None) => None,
            _ => {
                return Err(ReadError::Config(
                    "tls_config.cert_file and tls_config.key_file must be given together".into(),
                ));
            }
        };
        if opts.timeout.is_zero() {
            return Err(ReadError::Config("timeout must be above zero".into()));
        }
        Ok(HttpClient {
            timeout: opts.timeout,
            auth,
            headers,
            roots,
            identity,
            insecure: tls.insecure_skip_verify,
            client: Mutex::new(None),
        })
    }

    fn client(&self) -> Result<Client, ReadError> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        install_ring_provider();
        let mut b = Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("imd-analyzer/", env!("CARGO_PKG_VERSION")))
            .default_headers(self.headers.clone());
        if !self.roots.is_empty() {
            b = b.tls_certs_only(self.roots.clone());
        }
        if let Some(id) = &self.identity {
            b = b.identity(id.clone());
        }
        if self.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let c = b.build().map_err(|e| {
            ReadError::Config(format!("building the HTTP client: {}", error_chain(&e)))
        })?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn authorize(&self, rb: RequestBuilder) -> Result<RequestBuilder, ReadError> {
        Ok(match &self.auth {
            Auth::None => rb,
            Auth::Basic { username, password } => {
                let password = password.as_ref().map(SecretSource::get).transpose()?;
                rb.basic_auth(username, password)
            }
            Auth::Bearer(token) => rb.bearer_auth(token.get()?),
        })
    }

    /// A GET of `url` with the configured headers and authentication.
    pub fn get(&self, url: reqwest::Url) -> Result<RequestBuilder, ReadError> {
        self.authorize(self.client()?.get(url))
    }

    /// A POST to `url` with the configured headers and authentication.
    pub fn post(&self, url: reqwest::Url) -> Result<RequestBuilder, ReadError> {
        self.authorize(self.client()?.post(url))
    }

    /// Sends the request; an answer outside 2xx becomes
    /// [`ReadError::Status`] with the start of its body.
    pub fn send(&self, rb: RequestBuilder, url: &reqwest::Url) -> Result<Response, ReadError> {
        let resp = rb.send().map_err(|e| transport_error(url, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let mut body = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(resp, 2048), &mut body);
        Err(ReadError::Status {
            url: redact(url),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).trim().to_string(),
        })
    }
}

/// The URL without user info, for messages.
pub(crate) fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    u.to_string()
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

/// Maps a failed send to `Timeout` or `Unavailable`.
pub(crate) fn transport_error(url: &reqwest::Url, e: &reqwest::Error) -> ReadError {
    let msg = format!("{}: {}", redact(url), error_chain(e));
    if e.is_timeout() {
        ReadError::Timeout(msg)
    } else {
        ReadError::Unavailable(msg)
    }
}

/// Maps an error while reading an answer body to `Timeout` or `Unavailable`.
pub(crate) fn body_error(url: &reqwest::Url, e: &std::io::Error) -> ReadError {
    let msg = format!("reading the answer of {}: {}", redact(url), error_chain(e));
    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        ReadError::Timeout(msg)
    } else {
        ReadError::Unavailable(msg)
    }
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) fn read_body(
    resp: Response,
    url: &reqwest::Url,
    limit: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(resp, limit as u64 + 1), &mut body)
        .map_err(|e| body_error(url, &e))?;
    if body.len() > limit {
        return Err(ReadError::TooLarge(format!(
            "the answer of {} exceeds {limit} bytes",
            redact(url)
        )));
    }
    Ok(body)
}

/// A reader that counts the bytes it passes on.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Kinds of read errors counted by [`ReadStats`], in the order of
/// [`ReadStatsSnapshot::errors`].
pub const ERROR_KINDS: [&str; 8] = [
    "unavailable",
    "timeout",
    "http_status",
    "config",
    "decode",
    "frame",
    "chunk",
    "too_large",
];

/// Running totals of one source's reads, for the engine to publish as
/// self-metrics. Cheap to update from several threads.
#[derive(Debug, Default)]
pub struct ReadStats {
    reads: AtomicU64,
    bytes: AtomicU64,
    samples: AtomicU64,
    series: AtomicU64,
    nanos: AtomicU64,
    streamed: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
}

/// A copy of [`ReadStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadStatsSnapshot {
    /// Reads attempted.
    pub reads: u64,
    /// Answer bytes received (as sent, i.e. compressed).
    pub bytes_read: u64,
    /// Samples decoded (before trimming to the range and dropping
    /// staleness markers).
    pub samples_decoded: u64,
    /// Series returned.
    pub series_returned: u64,
    /// Total time spent in reads, in seconds.
    pub read_seconds: f64,
    /// Remote reads answered as STREAMED_XOR_CHUNKS (the rest of the
    /// successful remote reads fell back to SAMPLES).
    pub streamed_answers: u64,
    /// Failed reads by kind (see [`ERROR_KINDS`]).
    pub errors: Vec<(&'static str, u64)>,
}

impl ReadStats {
    /// Records one read that took `elapsed`, received `bytes`, decoded
    /// `samples` and returned `series`, or failed with `error`.
    pub fn record(
        &self,
        elapsed: Duration,
        bytes: u64,
        samples: u64,
        series: u64,
        error: Option<&ReadError>,
    ) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.samples.fetch_add(samples, Ordering::Relaxed);
        self.series.fetch_add(series, Ordering::Relaxed);
        self.nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Some(e) = error {
            let i = ERROR_KINDS.iter().position(|k| *k == e.kind()).unwrap_or(0);
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records that a remote read was answered with streamed chunks.
    pub fn record_streamed(&self) {
        self.streamed.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub fn snapshot(&self) -> ReadStatsSnapshot {
        ReadStatsSnapshot {
            reads: self.reads.load(Ordering::Relaxed),
            bytes_read: self.bytes.load(Ordering::Relaxed),
            samples_decoded: self.samples.load(Ordering::Relaxed),
            series_returned: self.series.load(Ordering::Relaxed),
            read_seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            streamed_answers: self.streamed.load(Ordering::Relaxed),
            errors: ERROR_KINDS
                .iter()
                .zip(&self.errors)
                .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// A one-connection-at-a-time HTTP/1.1 server on a loopback port for unit
/// tests: each connection gets the next canned answer, and the raw requests
/// are kept for inspection.
#[cfg(test)]
pub(crate) mod testserver {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A canned answer: status, content type, body.
    pub(crate) type Answer = (u16, &'static str, Vec<u8>);

    /// Serves `answers` in order; returns the base URL and the requests.
    pub(crate) fn serve(answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for (status, ctype, body) in answers {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as many body bytes as announced.
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                seen2.lock().unwrap().push(req);
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        (url, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_like_prometheus_http_config() {
        let yaml = "timeout: 5s\nbasic_auth: {username: u, password: p}\nheaders: {X-Scope-OrgID: team-a}\n\
                    tls_config: {insecure_skip_verify: true}\n";
        let o: HttpOptions = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(
            o.basic_auth.as_ref().unwrap().password,
            Some(Secret("p".into()))
        );
        assert_eq!(o.headers["X-Scope-OrgID"], "team-a");
        assert!(o.tls.insecure_skip_verify);
        assert!(
            !format!("{o:?}").contains("\"p\""),
            "secrets are not printed"
        );
        assert!(serde_yaml_ng::from_str::<HttpOptions>("tls_config: {ca: x}").is_err());
    }

    #[test]
    fn bad_options_are_named() {
        let err = |o: HttpOptions| HttpClient::new(&o).unwrap_err().to_string();
        let mut o = HttpOptions {
            bearer_token: Some(Secret("t".into())),
            bearer_token_file: Some("/x".into()),
            ..HttpOptions::default()
        };
        assert!(err(o.clone()).contains("mutually exclusive"));
        o.bearer_token = None;
        o.bearer_token_file = Some("/nonexistent/token".into());
        assert!(err(o.clone()).contains("/nonexistent/token"));
        o.bearer_token_file = None;
        o.headers.insert("Content-Type".into(), "x".into());
        assert!(err(o.clone()).contains("set by imd itself"));
        o.headers.clear();
        o.headers.insert("X-Ok".into(), "bad\nvalue".into());
        assert!(err(o.clone()).contains("headers.X-Ok"));
        o.headers.clear();
        o.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(o.clone()).contains("tls_config.ca_file /nonexistent/ca.pem"));
        o.tls.ca_file = None;
        o.tls.cert_file = Some("/c".into());
        assert!(err(o.clone()).contains("given together"));
    }

    #[test]
    fn auth_and_headers_are_sent() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok-1\n").unwrap();
        let (url, seen) = testserver::serve(vec![
            (200, "text/plain", b"ok".to_vec()),
            (200, "text/plain", b"ok".to_vec()),
            (503, "text/plain", b"overloaded, try later".to_vec()),
        ]);
        let mut opts = HttpOptions {
            bearer_token_file: Some(token.clone()),
            ..HttpOptions::default()
        };
        opts.headers
            .insert("X-Scope-OrgID".into(), "tenant-7".into());
        let c = HttpClient::new(&opts).unwrap();
        let u: reqwest::Url = url.parse().unwrap();
        c.send(c.get(u.clone()).unwrap(), &u).unwrap();
        // The token file is read again at each request.
        std::fs::write(&token, "tok-2\n").unwrap();
        c.send(c.get(u.clone()).unwrap(), &u).unwrap();
        let err = c.send(c.get(u.clone()).unwrap(), &u).unwrap_err();
        assert_eq!(err.kind(), "http_status");
        assert!(
            err.to_string().contains("503") && err.to_string().contains("overloaded"),
            "{err}"
        );
        let seen = seen.lock().unwrap();
        let first = String::from_utf8_lossy(&seen[0]).to_ascii_lowercase();
        let second = String::from_utf8_lossy(&seen[1]).to_ascii_lowercase();
        assert!(first.contains("authorization: bearer tok-1"), "{first}");
        assert!(first.contains("x-scope-orgid: tenant-7"), "{first}");
        assert!(second.contains("authorization: bearer tok-2"), "{second}");

        let basic = HttpOptions {
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password: Some(Secret("p".into())),
                password_file: None,
            }),
            ..HttpOptions::default()
        };
        let (url, seen) = testserver::serve(vec![(200, "text/plain", vec![])]);
        let u: reqwest::Url = url.parse().unwrap();
        let c = HttpClient::new(&basic).unwrap();
        c.send(c.get(u.clone()).unwrap(), &u).unwrap();
        let req = String::from_utf8_lossy(&seen.lock().unwrap()[0]).to_ascii_lowercase();
        assert!(req.contains("authorization: basic dtpw"), "{req}"); // base64("u:p")
    }

    #[test]
    fn unreachable_and_slow_servers_are_typed() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = HttpClient::new(&HttpOptions::default()).unwrap();
        let u: reqwest::Url = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let err = c.send(c.get(u.clone()).unwrap(), &u).unwrap_err();
        assert_eq!(err.kind(), "unavailable", "{err}");

        // A server that accepts and never answers.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let u: reqwest::Url = format!("http://{}/", l.local_addr().unwrap())
            .parse()
            .unwrap();
        let c = HttpClient::new(&HttpOptions {
            timeout: Duration::from_millis(300),
            ..HttpOptions::default()
        })
        .unwrap();
        let err = c.send(c.get(u.clone()).unwrap(), &u).unwrap_err();
        assert_eq!(err.kind(), "timeout", "{err}");
        drop(l);
    }

    #[test]
    fn stats_count_by_kind() {
        let s = ReadStats::default();
        s.record(Duration::from_millis(500), 10, 20, 2, None);
        s.record(
            Duration::from_millis(250),
            1,
            0,
            0,
            Some(&ReadError::Timeout("x".into())),
        );
        let snap = s.snapshot();
        assert_eq!(
            (
                snap.reads,
                snap.bytes_read,
                snap.samples_decoded,
                snap.series_returned
            ),
            (2, 11, 20, 2)
        );
        assert!((snap.read_seconds - 0.75).abs() < 1e-9);
        assert!(snap.errors.contains(&("timeout", 1)));
        assert!(snap.errors.contains(&("unavailable", 0)));
    }
}
