//! The blocking HTTP client of the sources that read a Prometheus-compatible
//! server (remote read, query_range), built from the shared settings in
//! [`crate::http`], and the counters those sources keep about their reads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};

use super::ReadError;

pub use crate::http::{BasicAuth, HttpOptions, Secret, TlsOptions};
use crate::http::{ClientSettings, Credentials, error_chain};

/// A configured HTTP client: options checked and TLS material loaded when
/// it is made; the connection pool itself is started on first use, on the
/// reading thread (reqwest's blocking client must not be started or used
/// on an async task).
#[derive(Debug)]
pub struct HttpClient {
    settings: ClientSettings,
    client: Mutex<Option<Client>>,
}

impl HttpClient {
    /// Checks `opts` and loads their TLS files and header values; errors
    /// name the option and file at fault.
    pub fn new(opts: &HttpOptions) -> Result<HttpClient, ReadError> {
        Ok(HttpClient {
            settings: ClientSettings::new(opts).map_err(|e| ReadError::Config(e.to_string()))?,
            client: Mutex::new(None),
        })
    }

    fn client(&self) -> Result<Client, ReadError> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self.settings.blocking_builder().build().map_err(|e| {
            ReadError::Config(format!("building the HTTP client: {}", error_chain(&e)))
        })?;
        *slot = Some(c.clone());
        Ok(c)
    }

    fn authorize(&self, rb: RequestBuilder) -> Result<RequestBuilder, ReadError> {
        Ok(
            match self.settings.credentials().map_err(ReadError::Config)? {
                Credentials::None => rb,
                Credentials::Basic(user, password) => rb.basic_auth(user, password),
                Credentials::Bearer(token) => rb.bearer_auth(token),
            },
        )
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

/// A reader that adds the bytes it passes on to a counter, which another
/// thread may read while it works.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Kinds of read errors counted by [`ReadStats`], in the order of
/// [`ReadStatsSnapshot::errors`].
pub const ERROR_KINDS: [&str; 9] = [
    "unavailable",
    "timeout",
    "http_status",
    "config",
    "decode",
    "frame",
    "chunk",
    "too_large",
    "backoff",
];

/// Reasons of `imd_read_problems_total{source, query, reason}`: what was
/// wrong with an answer, or why there was none. A failed read counts one;
/// a stream cut short or broken (`truncated`, `checksum`,
/// `frame_too_large`, `bad_frame`) counts one and keeps the series
/// received whole before the break; a series lost to its chunks
/// (`unknown_encoding`, `corrupt_chunk`) counts one per series; dropped
/// points (`non_monotonic`) and infinite values passed on (`infinite`)
/// count one per point; `empty` counts answers with no series.
pub const PROBLEM_REASONS: [&str; 17] = [
    "truncated",
    "checksum",
    "frame_too_large",
    "bad_frame",
    "unknown_encoding",
    "corrupt_chunk",
    "non_monotonic",
    "infinite",
    "empty",
    "http_status",
    "not_protobuf",
    "unavailable",
    "timeout",
    "too_large",
    "config",
    "backoff",
    "samples_limit",
];

/// The first wait after a source failed (doubled at each further failure).
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest wait between attempts on a failing source.
pub const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Consecutive outages of a source and when it may be asked again.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
}

/// `d` shortened by a random part of up to half of it ("equal jitter"), so
/// that replicas and sources that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A randomly keyed hasher is a random number source good enough here
    // (no cryptographic use), without a dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(d.as_nanos());
    let frac = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(1.0 - 0.5 * frac)
}

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
    /// Sharded reads by [`super::pushdown::ShardPath`].
    shard_paths: [AtomicU64; 2],
    /// Problems by (query, reason).
    problems: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Reads stopped by a limit, by (query, limit).
    limited: Mutex<BTreeMap<(String, &'static str), u64>>,
    backoff: Mutex<Backoff>,
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
    /// Sharded reads by how they went: `listed` (only the shard's series
    /// read) or `filtered` (everything read, the rest left out); see
    /// [`super::pushdown`].
    pub shard_reads: Vec<(&'static str, u64)>,
    /// Problems by query and reason (see [`PROBLEM_REASONS`]).
    pub problems: Vec<(String, &'static str, u64)>,
    /// Reads stopped by a limit, by query and limit (`samples`).
    pub limited: Vec<(String, &'static str, u64)>,
    /// Outages in a row (0 after a successful read).
    pub consecutive_failures: u32,
    /// Seconds before the source is asked again (0: not backing off).
    pub backoff_seconds: f64,
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
            self.problem(problem_reason(e), 1);
        }
        let mut b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        match error {
            None => *b = Backoff::default(),
            Some(e) if e.is_outage() => {
                b.failures = b.failures.saturating_add(1);
                let doubled = BACKOFF_BASE.saturating_mul(1 << (b.failures - 1).min(20));
                b.until = Some(Instant::now() + jitter(doubled.min(BACKOFF_MAX)));
            }
            // The source answered (badly): no reason to wait.
            Some(_) => {}
        }
    }

    /// `Err(Backoff)` while the source is backing off after outages (the
    /// refusal is counted); sources call it before sending a request.
    pub fn check_backoff(&self) -> Result<(), ReadError> {
        let b = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let Some(until) = b.until else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        let e = ReadError::Backoff {
            seconds: (until - now).as_secs_f64(),
            failures: b.failures,
        };
        drop(b);
        self.errors[ERROR_KINDS.len() - 1].fetch_add(1, Ordering::Relaxed);
        self.problem("backoff", 1);
        Err(e)
    }

    /// Counts `n` problems of `reason` (one of [`PROBLEM_REASONS`]) for the
    /// query being read (see [`super::in_query`]).
    pub fn problem(&self, reason: &'static str, n: u64) {
        self.problem_in(&super::current_query(), reason, n);
    }

    /// Counts `n` problems of `reason` for `query`: for what is found
    /// after the read, outside [`super::in_query`].
    pub fn problem_in(&self, query: &str, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        debug_assert!(PROBLEM_REASONS.contains(&reason), "{reason}");
        let mut m = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((query.to_string(), reason)).or_default() += n;
    }

    /// Counts a read stopped by `limit` (`samples`) for the query being read.
    pub fn limited(&self, limit: &'static str) {
        let mut m = self.limited.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((super::current_query(), limit)).or_default() += 1;
    }

    /// Records how a sharded read went.
    pub fn record_shard_path(&self, path: super::pushdown::ShardPath) {
        let i = super::pushdown::ShardPath::ALL
            .iter()
            .position(|p| *p == path)
            .unwrap_or(0);
        self.shard_paths[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Records that a remote read was answered with streamed chunks.
    pub fn record_streamed(&self) {
        self.streamed.fetch_add(1, Ordering::Relaxed);
    }

    /// The totals now.
    pub fn snapshot(&self) -> ReadStatsSnapshot {
        let backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
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
            shard_reads: super::pushdown::ShardPath::ALL
                .iter()
                .zip(&self.shard_paths)
                .map(|(p, n)| (p.name(), n.load(Ordering::Relaxed)))
                .collect(),
            problems: flatten(&self.problems),
            limited: flatten(&self.limited),
            consecutive_failures: backoff.failures,
            backoff_seconds: backoff
                .until
                .map(|u| u.saturating_duration_since(Instant::now()).as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

fn flatten(m: &Mutex<BTreeMap<(String, &'static str), u64>>) -> Vec<(String, &'static str, u64)> {
    m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|((q, r), n)| (q.clone(), *r, *n))
        .collect()
}

/// The [`PROBLEM_REASONS`] entry of a failed read.
pub(crate) fn problem_reason(e: &ReadError) -> &'static str {
    use super::remote::frames::FrameError;
    use super::remote::xor::ChunkError;
    match e {
        ReadError::Unavailable(_) => "unavailable",
        ReadError::Timeout(_) => "timeout",
        ReadError::Status { .. } => "http_status",
        ReadError::Config(_) => "config",
        ReadError::Decode(_) => "not_protobuf",
        ReadError::Frame(f) => match f {
            FrameError::Truncated { .. } => "truncated",
            FrameError::Checksum { .. } => "checksum",
            FrameError::TooLarge { .. } => "frame_too_large",
            FrameError::Io { .. } => "unavailable",
            FrameError::BadLength { .. }
            | FrameError::Message { .. }
            | FrameError::QueryIndex { .. } => "bad_frame",
        },
        ReadError::Chunk { source, .. } => match source {
            ChunkError::UnknownEncoding { .. } => "unknown_encoding",
            ChunkError::Corrupt(_) => "corrupt_chunk",
        },
        ReadError::TooLarge(_) => "too_large",
        ReadError::Backoff { .. } => "backoff",
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
        // The checks themselves are crate::http's; here: they surface as a
        // configuration error that names the key.
        let o = HttpOptions {
            tls: TlsOptions {
                ca_file: Some("/nonexistent/ca.pem".into()),
                ..TlsOptions::default()
            },
            ..HttpOptions::default()
        };
        let e = HttpClient::new(&o).unwrap_err();
        assert_eq!(e.kind(), "config");
        assert!(
            e.to_string()
                .contains("tls_config.ca_file: reading /nonexistent/ca.pem"),
            "{e}"
        );
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
