//! Remote-write (protocol 1.0) of imd's series to Prometheus or any
//! compatible receiver, so that they are stored without a scrape job.
//!
//! Each cycle's families become one `WriteRequest`, snappy block-compressed,
//! posted by a background thread: a slow or absent receiver never holds up
//! the analysis. Requests wait in a bounded queue (the oldest are dropped
//! when it is full, and counted); failures that may pass (no connection,
//! timeouts, 5xx, 429) are retried with backoff, others are dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use imd_exporter::exposition::Family;
use prost::Message;
use serde::Deserialize;

use crate::http::{ClientSettings, Credentials, HttpOptions};
use crate::read::remote::proto::{Label, Sample, TimeSeries, WriteRequest};

/// Where imd's series are written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Requests kept while the receiver is unreachable.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Timeout, authentication, headers and TLS.
    #[serde(flatten)]
    pub http: HttpOptions,
}

fn default_queue() -> usize {
    100
}

/// Counters of the writer's work.
#[derive(Debug, Default)]
pub struct WriteStats {
    samples: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
}

struct Queue {
    requests: Mutex<(VecDeque<Vec<u8>>, bool)>,
    ready: Condvar,
}

/// A running remote writer. Dropping it stops the thread after one last
/// attempt at what is queued.
pub struct RemoteWriter {
    queue: Arc<Queue>,
    stats: Arc<WriteStats>,
    capacity: usize,
    url: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoteWriter {
    /// Checks the configuration and starts the sending thread.
    pub fn start(config: &RemoteWriteConfig) -> Result<RemoteWriter, String> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("url: {:?} is not an http(s) URL", config.url));
        }
        if config.queue_capacity == 0 {
            return Err("queue_capacity: must be at least 1".into());
        }
        let settings = ClientSettings::new(&config.http).map_err(|e| e.to_string())?;
        let queue = Arc::new(Queue {
            requests: Mutex::new((VecDeque::new(), false)),
            ready: Condvar::new(),
        });
        let stats = Arc::new(WriteStats::default());
        let (q, st) = (queue.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("imd-remote-write".into())
            .spawn(move || send_loop(url, settings, q, st))
            .map_err(|e| format!("starting the remote-write thread: {e}"))?;
        Ok(RemoteWriter {
            queue,
            stats,
            capacity: config.queue_capacity,
            url: config.url.clone(),
            thread: Some(thread),
        })
    }

    /// Queues the families' samples, stamped `now_ms`, for sending.
    pub fn write(&self, families: &[Family], now_ms: i64) {
        let req = to_request(families, now_ms);
        let n: usize = req.timeseries.len();
        if n == 0 {
            return;
        }
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap_or_default();
        let mut q = self
            .queue
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if q.0.len() == self.capacity {
            q.0.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        q.0.push_back(body);
        self.stats.samples.fetch_add(n as u64, Ordering::Relaxed);
        self.queue.ready.notify_one();
    }

    /// The writer's counters as families.
    pub fn families(&self) -> Vec<Family> {
        let l = [("url", self.url.as_str())];
        let f = |name: &str, help: &str, v: &AtomicU64| {
            let mut fam = Family::counter(name, help);
            fam.push(l, v.load(Ordering::Relaxed) as f64);
            fam
        };
        vec![
            f(
                "imd_remote_write_samples_total",
                "Samples queued for remote-write.",
                &self.stats.samples,
            ),
            f(
                "imd_remote_write_requests_total",
                "Remote-write requests accepted by the receiver.",
                &self.stats.requests,
            ),
            f(
                "imd_remote_write_failures_total",
                "Remote-write attempts that failed.",
                &self.stats.failures,
            ),
            f(
                "imd_remote_write_dropped_total",
                "Remote-write requests dropped (queue full or refused).",
                &self.stats.dropped,
            ),
        ]
    }
}

impl std::fmt::Debug for RemoteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriter")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for RemoteWriter {
    fn drop(&mut self) {
        if let Ok(mut q) = self.queue.requests.lock() {
            q.1 = true;
        }
        self.queue.ready.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every sample of the families as one series each, labels sorted with
/// `__name__`, at `now_ms`. Non-finite values are sent as they are (a NaN
/// score is still a sample); +Inf breach times included.
fn to_request(families: &[Family], now_ms: i64) -> WriteRequest {
    let mut timeseries = Vec::new();
    for f in families {
        for s in &f.samples {
            let mut labels: Vec<Label> = s
                .labels
                .iter()
                .map(|(k, v)| Label {
                    name: k.clone(),
                    value: v.clone(),
                })
                .collect();
            labels.push(Label {
                name: "__name__".into(),
                value: s.name.clone(),
            });
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            timeseries.push(TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: now_ms,
                }],
            });
        }
    }
    WriteRequest { timeseries }
}

fn send_loop(
    url: reqwest::Url,
    settings: ClientSettings,
    queue: Arc<Queue>,
    stats: Arc<WriteStats>,
) {
    let client = match settings.blocking_builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "remote-write client could not be built; nothing will be written");
            return;
        }
    };
    let mut backoff = Duration::from_millis(500);
    loop {
        let body = {
            let mut q = queue.requests.lock().unwrap_or_else(|e| e.into_inner());
            while q.0.is_empty() && !q.1 {
                q = queue.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            match q.0.front() {
                Some(b) => b.clone(),
                None => return,
            }
        };
        let stopping = queue.requests.lock().map(|q| q.1).unwrap_or(true);
        match post(&client, &url, &settings, body) {
            Ok(()) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                pop(&queue);
            }
            Err((retry, msg)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %url, error = %msg, retry, "remote-write failed");
                if !retry || stopping {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    pop(&queue);
                } else {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn pop(queue: &Queue) {
    if let Ok(mut q) = queue.requests.lock() {
        q.0.pop_front();
    }
}

/// One POST; the error says whether trying again may help.
fn post(
    client: &reqwest::blocking::Client,
    url: &reqwest::Url,
    settings: &ClientSettings,
    body: Vec<u8>,
) -> Result<(), (bool, String)> {
    let mut req = client
        .post(url.clone())
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    match settings.credentials().map_err(|e| (false, e))? {
        Credentials::None => {}
        Credentials::Basic(u, p) => req = req.basic_auth(u, p),
        Credentials::Bearer(t) => req = req.bearer_auth(t),
    }
    let resp = req.send().map_err(|e| (true, e.to_string()))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text: String = resp.text().unwrap_or_default().chars().take(256).collect();
    let retry = status.is_server_error() || status.as_u16() == 429;
    Err((retry, format!("HTTP {status}: {}", text.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_become_sorted_series_with_one_sample() {
        let mut f = Family::gauge("imd_anomaly_score", "s");
        f.push([("query", "q"), ("instance", "a")], 0.5);
        let r = to_request(&[f], 1234);
        assert_eq!(r.timeseries.len(), 1);
        let names: Vec<_> = r.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "instance", "query"]);
        assert_eq!(
            r.timeseries[0].samples,
            vec![Sample {
                value: 0.5,
                timestamp: 1234
            }]
        );
        let bytes = r.encode_to_vec();
        assert_eq!(WriteRequest::decode(&bytes[..]).unwrap(), r);
    }

    #[test]
    fn bad_settings_are_refused() {
        let c = |url: &str| RemoteWriteConfig {
            url: url.into(),
            queue_capacity: 10,
            http: HttpOptions::default(),
        };
        assert!(
            RemoteWriter::start(&c("ftp://x"))
                .unwrap_err()
                .starts_with("url")
        );
        assert!(
            RemoteWriter::start(&c("not a url"))
                .unwrap_err()
                .starts_with("url")
        );
        let mut bad = c("http://127.0.0.1:1/api/v1/write");
        bad.queue_capacity = 0;
        assert!(
            RemoteWriter::start(&bad)
                .unwrap_err()
                .starts_with("queue_capacity")
        );
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        // Nothing listens on port 1: every request fails and is retried, so
        // the queue fills.
        let w = RemoteWriter::start(&RemoteWriteConfig {
            url: "http://127.0.0.1:1/api/v1/write".into(),
            queue_capacity: 2,
            http: HttpOptions::default(),
        })
        .unwrap();
        let mut f = Family::gauge("x", "x");
        f.push_value(1.0);
        for i in 0..5 {
            w.write(std::slice::from_ref(&f), i);
        }
        assert!(w.stats.dropped.load(Ordering::Relaxed) >= 2);
        assert_eq!(w.stats.samples.load(Ordering::Relaxed), 5);
    }
}
