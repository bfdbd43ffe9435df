//! A [`Source`] over Prometheus' remote-read API (`POST /api/v1/read`), as
//! served by Prometheus itself and by Thanos, Cortex and Mimir.
//!
//! The request is a snappy-compressed `ReadRequest`. The preferred answer is
//! STREAMED_XOR_CHUNKS (framed `ChunkedReadResponse`s carrying the TSDB's own
//! XOR chunks), with SAMPLES (one snappy-compressed
//! `ReadResponse`) as the fallback the server may choose; the answer's
//! content type says which one came. Staleness markers end a series and are
//! dropped; points outside the asked range (whole chunks carry them) are
//! trimmed. A streamed answer is received and framed on one thread while
//! the reading thread checks its series (chunk headers, and the last chunks
//! for the latest points); each series is then handed on in its chunks,
//! views into the frames they came in, and decoded by the engine's job that
//! uses it (see [`encoded`]).
//!
//! Bad input costs as little as the framing allows: a series with an
//! unusable chunk found by the read is left out of this read, a broken
//! stream keeps the series received whole before the break, and a read
//! stops at the samples limit; each case is counted by reason in the
//! source's [`ReadStats`] and reported to [`super::in_query`] as a partial
//! answer, so that the engine keeps the state of the series missing from
//! it. Points going back in time are dropped, and a corrupt chunk found
//! only when a series is decoded keeps the points before it; both are
//! counted under the query that read the series.

pub mod encoded;
pub mod frames;
pub mod proto;
pub mod xor;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prost::Message;

use super::http::{self, Counting, HttpClient, HttpOptions, ReadStats};
use super::pushdown::{Batching, Pushdown, ShardedSource};
use super::{Labels, MatchOp, ReadError, Samples, Selector, SeriesData, Source};
use crate::model::Point;
use encoded::{Checked, Encoded};
use frames::{FrameError, SeriesStream};
use proto::{ChunkEncoding, MatcherType, ReadHints, ReadRequest, ReadResponse, ResponseType};

/// The bits of Prometheus' staleness marker, a NaN that means "this series
/// ended here" rather than a value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether a value is a staleness marker (compared bit for bit: other NaNs
/// are values).
pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Default of [`RemoteReadOptions::max_samples`]: 20 million samples, about
/// 320 MB of points.
pub const DEFAULT_MAX_SAMPLES: usize = 20_000_000;

/// Exact series selectors sent in one request by a sharded read (see
/// [`super::pushdown`]): few enough that a request stays small (about
/// 100 bytes a query) and one answer does not hold a whole shard.
pub const SERIES_PER_REQUEST: usize = 200;

/// Which answer to ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// STREAMED_XOR_CHUNKS, with SAMPLES accepted as the fallback.
    #[default]
    PreferStreamed,
    /// SAMPLES only (for servers whose streaming is broken).
    Samples,
}

/// Settings of a remote-read source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReadOptions {
    /// The full endpoint, e.g. `http://prometheus:9090/api/v1/read` or
    /// Mimir's `http://mimir/prometheus/api/v1/read`.
    pub url: String,
    /// Timeout, authentication, headers, TLS.
    pub http: HttpOptions,
    /// Which answer to ask for.
    pub mode: ResponseMode,
    /// Largest accepted frame of a streamed answer.
    pub max_frame_bytes: usize,
    /// Largest accepted SAMPLES answer, compressed and decompressed.
    pub max_response_bytes: usize,
    /// The most samples one read decodes; the series decoded whole before
    /// the limit are kept, the rest of the answer is not read.
    pub max_samples: usize,
}

impl RemoteReadOptions {
    /// Defaults for `url`: streamed answers, 30 s timeout, 50 MB frames,
    /// 512 MiB SAMPLES answers.
    pub fn new(url: impl Into<String>) -> Self {
        RemoteReadOptions {
            url: url.into(),
            http: HttpOptions::default(),
            mode: ResponseMode::PreferStreamed,
            max_frame_bytes: frames::DEFAULT_MAX_FRAME_BYTES,
            max_response_bytes: 512 << 20,
            max_samples: DEFAULT_MAX_SAMPLES,
        }
    }
}

/// Reads series through a remote-read endpoint.
#[derive(Debug)]
pub struct RemoteRead {
    url: reqwest::Url,
    http: HttpClient,
    mode: ResponseMode,
    max_frame_bytes: usize,
    max_response_bytes: usize,
    max_samples: usize,
    stats: Arc<ReadStats>,
    /// The series API next to the endpoint, for sharded reads.
    series_url: Option<reqwest::Url>,
    pushdown: Pushdown,
}

/// Checks a source URL: absolute http(s).
pub(crate) fn parse_url(url: &str) -> Result<reqwest::Url, ReadError> {
    let u = reqwest::Url::parse(url).map_err(|e| ReadError::Config(format!("url {url:?}: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(ReadError::Config(format!(
            "url {url:?}: the scheme must be http or https"
        )));
    }
    Ok(u)
}

/// What one read received, for the counters.
#[derive(Default)]
struct Tally {
    bytes: u64,
    samples: u64,
}

/// The remote-read query for `selector` over `[from_ms, to_ms]`, with the
/// same range as hints (the client's requests and the read benchmark's).
pub fn query(selector: &Selector, from_ms: i64, to_ms: i64) -> proto::Query {
    proto::Query {
        start_timestamp_ms: from_ms,
        end_timestamp_ms: to_ms,
        matchers: selector
            .matchers
            .iter()
            .map(|m| proto::LabelMatcher {
                r#type: match m.op {
                    MatchOp::Eq => MatcherType::Eq,
                    MatchOp::Neq => MatcherType::Neq,
                    MatchOp::Re => MatcherType::Re,
                    MatchOp::Nre => MatcherType::Nre,
                } as i32,
                name: m.name.clone(),
                value: m.value.clone(),
            })
            .collect(),
        hints: Some(ReadHints {
            start_ms: from_ms,
            end_ms: to_ms,
            ..ReadHints::default()
        }),
    }
}

impl RemoteRead {
    /// A source for `opts`; checks the URL and loads TLS/auth files.
    pub fn new(opts: &RemoteReadOptions) -> Result<RemoteRead, ReadError> {
        if opts.max_frame_bytes == 0 || opts.max_response_bytes == 0 || opts.max_samples == 0 {
            return Err(ReadError::Config(
                "max_frame_bytes, max_response_bytes and max_samples must be above zero".into(),
            ));
        }
        let url = parse_url(&opts.url)?;
        Ok(RemoteRead {
            series_url: super::listing::next_to_remote_read(&url),
            url,
            http: HttpClient::new(&opts.http)?,
            mode: opts.mode,
            max_frame_bytes: opts.max_frame_bytes,
            max_response_bytes: opts.max_response_bytes,
            max_samples: opts.max_samples,
            stats: Arc::new(ReadStats::default()),
            pushdown: Pushdown::default(),
        })
    }

    /// This source's read counters (shared; the engine publishes them).
    pub fn stats(&self) -> Arc<ReadStats> {
        self.stats.clone()
    }

    /// One request with a query per selector.
    fn request(&self, selectors: &[Selector], from_ms: i64, to_ms: i64) -> ReadRequest {
        let accepted = match self.mode {
            ResponseMode::PreferStreamed => vec![
                ResponseType::StreamedXorChunks as i32,
                ResponseType::Samples as i32,
            ],
            ResponseMode::Samples => vec![ResponseType::Samples as i32],
        };
        ReadRequest {
            queries: selectors.iter().map(|s| query(s, from_ms, to_ms)).collect(),
            accepted_response_types: accepted,
        }
    }

    /// The series of all `selectors` (one query each, in one request).
    fn read_inner(
        &self,
        selectors: &[Selector],
        from_ms: i64,
        to_ms: i64,
        tally: &mut Tally,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let body = snap::raw::Encoder::new()
            .compress_vec(&self.request(selectors, from_ms, to_ms).encode_to_vec())
            .map_err(|e| ReadError::Decode(format!("compressing the request: {e}")))?;
        let rb = self
            .http
            .post(self.url.clone())?
            .header("Content-Encoding", "snappy")
            .header("Accept-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .body(body);
        let resp = self.http.send(rb, &self.url)?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let mut out = match media.as_str() {
            "application/x-streamed-protobuf" => {
                let proto_param = content_type
                    .split(';')
                    .skip(1)
                    .filter_map(|p| p.trim().strip_prefix("proto="))
                    .next();
                if proto_param
                    .is_some_and(|p| p.trim_matches('"') != "prometheus.ChunkedReadResponse")
                {
                    return Err(ReadError::Decode(format!(
                        "{} answered a stream of {content_type:?}, not prometheus.ChunkedReadResponse",
                        http::redact(&self.url)
                    )));
                }
                self.stats.record_streamed();
                self.decode_streamed(resp, selectors.len(), from_ms, to_ms, tally)?
            }
            "application/x-protobuf" => {
                self.decode_samples(resp, selectors.len(), from_ms, to_ms, tally)?
            }
            _ => {
                return Err(ReadError::Decode(format!(
                    "{} answered with content type {content_type:?}, not a remote-read answer (is the URL a remote-read endpoint?)",
                    http::redact(&self.url)
                )));
            }
        };
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    fn decode_samples(
        &self,
        resp: reqwest::blocking::Response,
        queries: usize,
        from_ms: i64,
        to_ms: i64,
        tally: &mut Tally,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let compressed = http::read_body(resp, &self.url, self.max_response_bytes)?;
        tally.bytes += compressed.len() as u64;
        let size = snap::raw::decompress_len(&compressed).map_err(|e| {
            ReadError::Decode(format!("SAMPLES answer is not snappy block data: {e}"))
        })?;
        if size > self.max_response_bytes {
            return Err(ReadError::TooLarge(format!(
                "SAMPLES answer decompresses to {size} bytes, over the limit of {}",
                self.max_response_bytes
            )));
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&compressed)
            .map_err(|e| {
                ReadError::Decode(format!("SAMPLES answer is not snappy block data: {e}"))
            })?;
        let msg = ReadResponse::decode(&raw[..])
            .map_err(|e| ReadError::Decode(format!("SAMPLES answer is not a ReadResponse: {e}")))?;
        if msg.results.len() > queries {
            return Err(ReadError::Decode(format!(
                "SAMPLES answer has {} results for {queries} queries",
                msg.results.len()
            )));
        }
        let mut out = Vec::new();
        for ts in msg.results.into_iter().flat_map(|r| r.timeseries) {
            tally.samples += ts.samples.len() as u64;
            if tally.samples > self.max_samples as u64 {
                self.samples_limit_hit(&ts.labels);
                break;
            }
            let mut checks = PointChecks::new(from_ms, to_ms);
            // A sample and a point have the same size and alignment, so
            // this collect reuses the samples' memory (no second copy of a
            // large answer's points).
            let points: Vec<Point> = ts
                .samples
                .into_iter()
                .filter_map(|s| {
                    checks.admit(Point {
                        t: s.timestamp,
                        v: s.value,
                    })
                })
                .collect();
            checks.count(&self.stats);
            if let Some(s) = finish(ts.labels, points, checks.sorted) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Records that a read stopped at the samples limit, in `series`.
    fn samples_limit_hit(&self, series: &[proto::Label]) {
        self.stats.limited("samples");
        self.stats.problem("samples_limit", 1);
        super::mark_partial();
        tracing::warn!(
            url = %http::redact(&self.url),
            query = %super::current_query(),
            limit = self.max_samples,
            at_series = %label_text(series),
            "the answer has more samples than global.max_samples_per_read; the rest is not read"
        );
    }

    fn decode_streamed(
        &self,
        resp: reqwest::blocking::Response,
        queries: usize,
        from_ms: i64,
        to_ms: i64,
        tally: &mut Tally,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let (series_rx, bytes) = receive_series(resp, self.max_frame_bytes, queries);
        // Series are admitted and checked here, in the order they came (the
        // samples limit counts them in that order), while the receiving
        // thread frames the next ones. The check decodes little (see
        // [`encoded`]); the jobs that use the series decode the rest.
        let origin = Arc::new(encoded::Origin {
            stats: Arc::clone(&self.stats),
            query: super::current_query(),
            url: http::redact(&self.url),
        });
        let mut out = Vec::new();
        let stream_end = loop {
            let series = match series_rx.recv() {
                Ok(Ok(Some(series))) => series,
                Ok(Ok(None)) => break Ok(()),
                // The receiving thread cannot end without a last word;
                // were it gone, the stream ended in an unknown state.
                Err(_) => {
                    break Err(ReadError::Decode(
                        "the thread receiving the stream stopped".to_string(),
                    ));
                }
                Ok(Err(e)) => break Err(ReadError::Frame(e)),
            };
            let samples = match self.admit_series(&series, from_ms, to_ms, tally) {
                Ok(Some(samples)) => samples,
                // The samples limit: stop reading.
                Ok(None) => break Ok(()),
                Err(e) => {
                    self.series_left_out(&e);
                    continue;
                }
            };
            let points = match Encoded::check(&series, from_ms, to_ms, samples, Some(&origin)) {
                Ok(Checked::Chunks(c)) => Samples::Chunks(c),
                Ok(Checked::Points(p, checks)) => {
                    checks.count(&self.stats);
                    Samples::Points(p)
                }
                Err(e) => {
                    self.series_left_out(&chunk_error(&series, e));
                    continue;
                }
            };
            if !points.is_empty() {
                out.push(SeriesData {
                    labels: sorted_labels(series.labels),
                    points,
                });
            }
        };
        drop(series_rx);
        tally.bytes += bytes.load(Ordering::Relaxed);
        match stream_end {
            Ok(()) => Ok(out),
            Err(ReadError::Frame(FrameError::Io { source, .. })) => {
                Err(http::body_error(&self.url, &source))
            }
            // Nothing usable arrived: the read failed.
            Err(e @ ReadError::Frame(_)) if out.is_empty() => Err(e),
            Err(e @ ReadError::Frame(_)) => {
                // The series handed out so far arrived whole (a series is
                // complete once the next one starts); the one in progress
                // and the rest are lost for this read.
                self.stats.problem(http::problem_reason(&e), 1);
                super::mark_partial();
                tracing::warn!(
                    url = %http::redact(&self.url),
                    query = %super::current_query(),
                    kept_series = out.len(),
                    error = %e,
                    "remote-read stream broken; keeping the series received before the break"
                );
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts and logs a series that cannot be used in this read.
    fn series_left_out(&self, e: &ReadError) {
        self.stats.problem(http::problem_reason(e), 1);
        super::mark_partial();
        tracing::warn!(
            url = %http::redact(&self.url),
            query = %super::current_query(),
            error = %e,
            "series left out of this read"
        );
    }
}

/// How many whole series the receiving thread may hold ahead of decoding.
const SERIES_AHEAD: usize = 32;

/// Receives a streamed answer on a thread of its own: the series (joined
/// from their frames, checksums checked) come through the returned channel,
/// ending with `Ok(None)` or the error that ended the stream, and the bytes
/// read so far are counted in the returned counter. Receiving and framing
/// then overlap with checking the chunks (see [`encoded`]); a reader that
/// stops early drops the channel, and the thread stops (dropping the
/// connection) at its next series.
fn receive_series(
    resp: reqwest::blocking::Response,
    max_frame_bytes: usize,
    queries: usize,
) -> (
    std::sync::mpsc::Receiver<Result<Option<proto::ChunkedSeries>, FrameError>>,
    Arc<AtomicU64>,
) {
    let (tx, rx) = std::sync::mpsc::sync_channel(SERIES_AHEAD);
    let bytes = Arc::new(AtomicU64::new(0));
    let body = Counting {
        inner: resp,
        count: Arc::clone(&bytes),
    };
    let spawned = std::thread::Builder::new()
        .name("remote-read-receive".to_string())
        .spawn({
            let tx = tx.clone();
            move || {
                let mut stream = SeriesStream::with_queries(body, max_frame_bytes, queries);
                loop {
                    let next = stream.next_series();
                    let last = !matches!(next, Ok(Some(_)));
                    if tx.send(next).is_err() || last {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // No thread to receive on: say so as the stream's first word.
        let _ = tx.send(Err(FrameError::Io {
            frame: 1,
            source: e,
        }));
    }
    (rx, bytes)
}

impl RemoteRead {
    /// How many samples a streamed series' chunks hold, when it may be
    /// decoded: `Ok(None)` when they would pass the samples limit (counted;
    /// the read stops), `Err` when a chunk it needs is not an XOR chunk
    /// (the series is lost for this read). The count (from the chunks'
    /// headers) is added to the tally.
    fn admit_series(
        &self,
        series: &proto::ChunkedSeries,
        from_ms: i64,
        to_ms: i64,
        tally: &mut Tally,
    ) -> Result<Option<usize>, ReadError> {
        let total = header_samples(series, from_ms, to_ms)?;
        if tally.samples + total as u64 > self.max_samples as u64 {
            self.samples_limit_hit(&series.labels);
            return Ok(None);
        }
        tally.samples += total as u64;
        Ok(Some(total))
    }
}

/// The samples the chunks of `series` reaching into `[from_ms, to_ms]`
/// hold by their headers, or why one cannot be decoded (not an XOR chunk,
/// no header).
fn header_samples(
    series: &proto::ChunkedSeries,
    from_ms: i64,
    to_ms: i64,
) -> Result<usize, ReadError> {
    let mut total = 0;
    for chunk in in_range(series, from_ms, to_ms) {
        total += decoder_for(series, chunk)?.num_samples();
    }
    Ok(total)
}

/// The chunks of `series` that reach into `[from_ms, to_ms]`.
fn in_range(
    series: &proto::ChunkedSeries,
    from_ms: i64,
    to_ms: i64,
) -> impl Iterator<Item = &proto::Chunk> {
    series
        .chunks
        .iter()
        .filter(move |c| c.max_time_ms >= from_ms && c.min_time_ms <= to_ms)
}

/// A decoder over `chunk` of `series`, or why it cannot have one (not an
/// XOR chunk, no header).
fn decoder_for<'a>(
    series: &proto::ChunkedSeries,
    chunk: &'a proto::Chunk,
) -> Result<xor::XorDecoder<'a>, ReadError> {
    match ChunkEncoding::try_from(chunk.r#type) {
        Ok(ChunkEncoding::Xor) => {}
        other => {
            return Err(chunk_error(
                series,
                xor::ChunkError::UnknownEncoding {
                    encoding: chunk.r#type,
                    name: match other {
                        Ok(ChunkEncoding::Histogram) => "native histogram",
                        Ok(ChunkEncoding::FloatHistogram) => "native float histogram",
                        Ok(_) => "unset",
                        Err(_) => "not known to this version",
                    },
                },
            ));
        }
    }
    xor::XorDecoder::new(&chunk.data).map_err(|e| chunk_error(series, e))
}

/// A chunk's problem as the read error naming its series.
fn chunk_error(series: &proto::ChunkedSeries, source: xor::ChunkError) -> ReadError {
    ReadError::Chunk {
        series: label_text(&series.labels),
        source,
    }
}

/// Per-series checks of decoded points, applied as they are decoded: a
/// point not after the previous one (of the same chunk, or sample list) is
/// dropped and counted; points outside the asked range and staleness
/// markers are left out; infinite values are passed on (a value that
/// overflowed is still a value) but counted. NaN values pass as they are:
/// the engine treats every non-finite value as a missing point.
struct PointChecks {
    from_ms: i64,
    to_ms: i64,
    last_t: Option<i64>,
    /// Time of the last point kept.
    last_kept_t: Option<i64>,
    /// Whether every kept point is after the kept point before it (false
    /// when chunks overlap).
    sorted: bool,
    non_monotonic: u64,
    infinite: u64,
}

impl PointChecks {
    fn new(from_ms: i64, to_ms: i64) -> Self {
        PointChecks {
            from_ms,
            to_ms,
            last_t: None,
            last_kept_t: None,
            sorted: true,
            non_monotonic: 0,
            infinite: 0,
        }
    }

    /// `p` when it is to be kept, counted and checked against the points
    /// kept before it.
    #[inline]
    fn admit(&mut self, p: Point) -> Option<Point> {
        if self.last_t.is_some_and(|last| p.t <= last) {
            self.non_monotonic += 1;
            return None;
        }
        self.last_t = Some(p.t);
        if p.t < self.from_ms || p.t > self.to_ms || is_stale_marker(p.v) {
            return None;
        }
        if p.v.is_infinite() {
            self.infinite += 1;
        }
        if self.last_kept_t.is_some_and(|last| last >= p.t) {
            self.sorted = false;
        }
        self.last_kept_t = Some(p.t);
        Some(p)
    }

    /// Counts the findings for the query being read.
    fn count(&self, stats: &ReadStats) {
        self.count_in(stats, &super::current_query());
    }

    /// Counts the findings for `query`.
    fn count_in(&self, stats: &ReadStats, query: &str) {
        stats.problem_in(query, "non_monotonic", self.non_monotonic);
        stats.problem_in(query, "infinite", self.infinite);
    }
}

/// Labels as `{a="b", ...}` for messages.
fn label_text(labels: &[proto::Label]) -> String {
    use std::fmt::Write;
    // One allocation: every streamed series' text is made at read time.
    let room: usize = labels
        .iter()
        .map(|l| l.name.len() + l.value.len() + 5)
        .sum();
    let mut text = String::with_capacity(room + 2);
    text.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}={:?}", l.name, l.value);
    }
    text.push('}');
    text
}

/// A series out of its labels and checked points: labels sorted, points
/// that did not come in time order (overlapping chunks) sorted and freed of
/// duplicate timestamps; `None` when no point is left.
fn finish(labels: Vec<proto::Label>, mut points: Vec<Point>, sorted: bool) -> Option<SeriesData> {
    if points.is_empty() {
        return None;
    }
    if !sorted {
        points.sort_by_key(|p| p.t);
        points.dedup_by_key(|p| p.t);
    }
    Some(SeriesData {
        labels: sorted_labels(labels),
        points: points.into(),
    })
}

/// A series' labels as the engine keeps them: sorted by name.
fn sorted_labels(labels: Vec<proto::Label>) -> Labels {
    let mut labels: Labels = labels.into_iter().map(|l| (l.name, l.value)).collect();
    labels.sort();
    labels
}

/// One sharded read of `selector` (see [`super::pushdown`]).
struct Sharded<'a> {
    source: &'a RemoteRead,
    selector: &'a Selector,
    from_ms: i64,
    to_ms: i64,
    tally: &'a mut Tally,
}

impl ShardedSource for Sharded<'_> {
    fn list(&mut self) -> Option<Result<Vec<Labels>, ReadError>> {
        // No series API is known next to an endpoint not ending in /read:
        // such a source reads and filters.
        let url = self.source.series_url.as_ref()?;
        Some(super::listing::list(
            &self.source.http,
            url,
            self.selector,
            self.from_ms,
            self.to_ms,
            self.source.max_response_bytes,
            &mut self.tally.bytes,
        ))
    }

    fn read_batch(&mut self, selectors: &[Selector]) -> Result<Vec<SeriesData>, ReadError> {
        self.source
            .read_inner(selectors, self.from_ms, self.to_ms, self.tally)
    }
}

impl Source for RemoteRead {
    fn read(
        &self,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        self.stats.check_backoff()?;
        let start = Instant::now();
        let mut tally = Tally::default();
        let result = match super::current_owner() {
            Some(owner) => {
                let mut sharded = Sharded {
                    source: self,
                    selector,
                    from_ms,
                    to_ms,
                    tally: &mut tally,
                };
                super::pushdown::read_owned(
                    &self.pushdown,
                    &self.stats,
                    &owner,
                    selector,
                    Batching::Queries(SERIES_PER_REQUEST),
                    &mut sharded,
                )
            }
            None => self
                .read_inner(std::slice::from_ref(selector), from_ms, to_ms, &mut tally)
                .map(|s| {
                    let any = !s.is_empty();
                    (s, any)
                }),
        };
        if result.as_ref().is_ok_and(|(_, any)| !any) {
            self.stats.problem("empty", 1);
        }
        let result = result.map(|(s, _)| s);
        let series = result.as_ref().map(|s| s.len() as u64).unwrap_or(0);
        self.stats.record(
            start.elapsed(),
            tally.bytes,
            tally.samples,
            series,
            result.as_ref().err(),
        );
        if let Err(e) = &result {
            tracing::debug!(url = %http::redact(&self.url), selector = %selector, error = %e, "remote read failed");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::frames::frame;
    use super::http::testserver::serve;
    use super::proto::*;
    use super::*;

    const STREAMED: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn xor_chunk(samples: &[(i64, f64)]) -> Chunk {
        let bits: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        Chunk {
            min_time_ms: samples.first().map_or(0, |s| s.0),
            max_time_ms: samples.last().map_or(0, |s| s.0),
            r#type: ChunkEncoding::Xor as i32,
            data: xor::encoder::encode(&bits).into(),
        }
    }

    fn streamed(series: Vec<ChunkedSeries>) -> Vec<u8> {
        let mut out = Vec::new();
        for s in series {
            out.extend(frame(
                &ChunkedReadResponse {
                    chunked_series: vec![s],
                    query_index: 0,
                }
                .encode_to_vec(),
            ));
        }
        out
    }

    fn source(url: &str, mode: ResponseMode) -> RemoteRead {
        let mut o = RemoteReadOptions::new(format!("{url}/api/v1/read"));
        o.mode = mode;
        RemoteRead::new(&o).unwrap()
    }

    fn sel() -> Selector {
        Selector::parse(r#"up{job=~"a|b"}"#).unwrap()
    }

    #[test]
    fn request_is_snappy_protobuf_with_the_protocol_headers() {
        let (url, seen) = serve(vec![
            (200, STREAMED, vec![]),
            (
                200,
                "application/x-protobuf",
                snap::raw::Encoder::new().compress_vec(&[]).unwrap(),
            ),
        ]);
        let s = source(&url, ResponseMode::PreferStreamed);
        assert!(s.read(&sel(), 1000, 2000).unwrap().is_empty());
        let s2 = source(&url, ResponseMode::Samples);
        assert!(s2.read(&sel(), 1000, 2000).unwrap().is_empty());
        let seen = seen.lock().unwrap();
        for (i, raw) in seen.iter().enumerate() {
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            assert!(head.starts_with("post /api/v1/read "), "{head}");
            for h in [
                "content-encoding: snappy",
                "accept-encoding: snappy",
                "content-type: application/x-protobuf",
                "x-prometheus-remote-read-version: 0.1.0",
            ] {
                assert!(head.contains(h), "missing {h} in {head}");
            }
            let body = snap::raw::Decoder::new()
                .decompress_vec(&raw[split + 4..])
                .unwrap();
            let req = ReadRequest::decode(&body[..]).unwrap();
            let q = &req.queries[0];
            assert_eq!((q.start_timestamp_ms, q.end_timestamp_ms), (1000, 2000));
            assert_eq!(q.matchers[0].name, "__name__");
            assert_eq!(q.matchers[1].r#type, MatcherType::Re as i32);
            assert_eq!(q.matchers[1].value, "a|b");
            let expected = if i == 0 { vec![1, 0] } else { vec![0] };
            assert_eq!(req.accepted_response_types, expected);
        }
    }

    #[test]
    fn streamed_answers_are_trimmed_merged_and_stale_markers_dropped() {
        let a = ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", "a")],
            chunks: vec![
                xor_chunk(&[(900, 1.0), (1000, 2.0), (1100, f64::NAN)]),
                xor_chunk(&[(1200, f64::from_bits(STALE_NAN_BITS)), (1300, 4.0)]),
            ],
        };
        // b comes in two frames, with a chunk outside the range in between.
        let b1 = ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", "b")],
            chunks: vec![xor_chunk(&[(1000, 5.0)]), xor_chunk(&[(1, 0.0), (2, 0.0)])],
        };
        let b2 = ChunkedSeries {
            labels: b1.labels.clone(),
            chunks: vec![xor_chunk(&[(2000, 6.0), (2100, 7.0)])],
        };
        // c has points only outside the range: left out.
        let c = ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", "c")],
            chunks: vec![xor_chunk(&[(100, 1.0), (2500, 1.0)])],
        };
        let body = streamed(vec![a, b1, b2, c]);
        let (url, _) = serve(vec![(200, STREAMED, body.clone())]);
        let s = source(&url, ResponseMode::PreferStreamed);
        let got = s.read(&sel(), 1000, 2000).unwrap();
        assert_eq!(got.len(), 2);
        let pts = |i: usize| {
            got[i]
                .points
                .to_points()
                .iter()
                .map(|p| (p.t, p.v.to_bits()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pts(0),
            vec![
                (1000, 2f64.to_bits()),
                (1100, f64::NAN.to_bits()),
                (1300, 4f64.to_bits())
            ]
        );
        assert_eq!(pts(1), vec![(1000, 5f64.to_bits()), (2000, 6f64.to_bits())]);
        assert_eq!(got[1].labels[1], ("job".to_string(), "b".to_string()));
        // Series in time order come in their chunks, to be decoded by whoever
        // uses them; the checks already know their freshness.
        assert!(matches!(got[0].points, Samples::Chunks(_)));
        assert_eq!(
            (got[0].points.len(), got[0].points.last_finite_t(1)),
            (3, Some(1300))
        );
        assert_eq!(got[0].points.last_finite_t(2), Some(1000));
        let st = s.stats().snapshot();
        assert_eq!(st.bytes_read, body.len() as u64);
        assert_eq!(
            st.samples_decoded, 10,
            "chunks wholly outside the range are not decoded"
        );
        assert_eq!(st.series_returned, 2);
    }

    #[test]
    fn samples_answers_are_decoded() {
        let resp = ReadResponse {
            results: vec![QueryResult {
                timeseries: vec![TimeSeries {
                    labels: vec![label("job", "a"), label("__name__", "up")],
                    samples: vec![
                        Sample {
                            value: 1.5,
                            timestamp: 1000,
                        },
                        Sample {
                            value: f64::from_bits(STALE_NAN_BITS),
                            timestamp: 1500,
                        },
                        Sample {
                            value: -2.0,
                            timestamp: 2000,
                        },
                    ],
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&resp.encode_to_vec())
            .unwrap();
        let (url, _) = serve(vec![(200, "application/x-protobuf", body)]);
        let got = source(&url, ResponseMode::Samples)
            .read(&sel(), 1000, 2000)
            .unwrap();
        assert_eq!(
            got[0].labels,
            vec![("__name__".into(), "up".into()), ("job".into(), "a".into())]
        );
        assert_eq!(
            got[0].points,
            vec![Point { t: 1000, v: 1.5 }, Point { t: 2000, v: -2.0 }]
        );
    }

    #[test]
    fn broken_answers_are_typed_errors() {
        let good = streamed(vec![ChunkedSeries {
            labels: vec![label("__name__", "up")],
            chunks: vec![xor_chunk(&[(1000, 1.0), (1010, 2.0)])],
        }]);
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        let histogram = streamed(vec![ChunkedSeries {
            labels: vec![label("__name__", "h")],
            chunks: vec![Chunk {
                r#type: ChunkEncoding::Histogram as i32,
                max_time_ms: 1000,
                ..xor_chunk(&[(1000, 1.0)])
            }],
        }]);
        let mut cut_chunk = ChunkedSeries {
            labels: vec![label("__name__", "up")],
            chunks: vec![xor_chunk(&[(1000, 1.0), (1010, 2.0), (1020, 3.5)])],
        };
        cut_chunk.chunks[0].data.truncate(12);
        let cut_chunk = streamed(vec![cut_chunk]);
        // (answer, kind of the failed read or None when the read succeeds
        // without the bad series, the problem reason counted, text).
        type Case = (
            super::http::testserver::Answer,
            Option<&'static str>,
            &'static str,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                (200, STREAMED, good[..good.len() - 3].to_vec()),
                Some("frame"),
                "truncated",
                "truncated",
            ),
            (
                (200, STREAMED, bad_crc),
                Some("frame"),
                "checksum",
                "checksum",
            ),
            (
                (200, STREAMED, vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
                Some("frame"),
                "frame_too_large",
                "over the limit",
            ),
            (
                (200, STREAMED, frame(&[0xff, 0xff])),
                Some("frame"),
                "bad_frame",
                "ChunkedReadResponse",
            ),
            ((200, STREAMED, histogram), None, "unknown_encoding", ""),
            ((200, STREAMED, cut_chunk), None, "corrupt_chunk", ""),
            ((200, STREAMED, vec![]), None, "empty", ""),
            (
                (200, "application/x-protobuf", b"not snappy".to_vec()),
                Some("decode"),
                "not_protobuf",
                "snappy",
            ),
            (
                (200, "text/html", b"<html>".to_vec()),
                Some("decode"),
                "not_protobuf",
                "not a remote-read answer",
            ),
            (
                (
                    200,
                    "application/x-streamed-protobuf; proto=other.Msg",
                    vec![],
                ),
                Some("decode"),
                "not_protobuf",
                "other.Msg",
            ),
            (
                (400, "text/plain", b"bad matcher".to_vec()),
                Some("http_status"),
                "http_status",
                "bad matcher",
            ),
        ];
        let (url, _) = serve(cases.iter().map(|c| c.0.clone()).collect());
        let s = source(&url, ResponseMode::PreferStreamed);
        let count = |reason: &str| problems_of(&s, reason);
        for (i, (_, kind, reason, text)) in cases.iter().enumerate() {
            let before = count(reason);
            let (got, partial) = crate::read::in_query("q", || s.read(&sel(), 0, 5000));
            match kind {
                Some(kind) => {
                    let err = got.unwrap_err();
                    assert_eq!(err.kind(), *kind, "case {i}: {err}");
                    assert!(err.to_string().contains(text), "case {i}: {err}");
                }
                None => {
                    assert!(got.unwrap().is_empty(), "case {i}");
                    assert_eq!(partial, *reason != "empty", "case {i}");
                }
            }
            assert_eq!(count(reason), before + 1, "case {i}: {reason}");
        }
        let st = s.stats().snapshot();
        assert_eq!(st.reads, cases.len() as u64);
        assert!(
            st.errors.contains(&("frame", 4)) && st.errors.contains(&("chunk", 0)),
            "{st:?}"
        );
        assert_eq!(st.consecutive_failures, 0, "no outage among these");
    }

    fn good_series(name: &str, t0: i64, n: i64) -> ChunkedSeries {
        ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", name)],
            chunks: vec![xor_chunk(
                &(0..n).map(|i| (t0 + i * 10, i as f64)).collect::<Vec<_>>(),
            )],
        }
    }

    /// Problems of `reason` `s` counted for the query "q".
    fn problems_of(s: &RemoteRead, reason: &str) -> u64 {
        s.stats()
            .snapshot()
            .problems
            .iter()
            .find(|p| p.0 == "q" && p.1 == reason)
            .map_or(0, |p| p.2)
    }

    #[test]
    fn labels_read_as_in_promql_with_values_quoted() {
        let text = label_text(&[label("__name__", "up"), label("job", "a\"b")]);
        assert_eq!(text, r#"{__name__="up", job="a\"b"}"#);
        assert_eq!(label_text(&[]), "{}");
    }

    fn jobs(got: &[SeriesData]) -> Vec<String> {
        got.iter()
            .map(|s| s.labels.iter().find(|l| l.0 == "job").unwrap().1.clone())
            .collect()
    }

    #[test]
    fn a_bad_series_is_lost_alone_and_counted() {
        let mut corrupt = good_series("corrupt", 1000, 5);
        corrupt.chunks[0].data.truncate(12);
        let mut histogram = good_series("histogram", 1000, 3);
        histogram.chunks[0].r#type = ChunkEncoding::Histogram as i32;
        let mut unknown = good_series("unknown", 1000, 3);
        unknown.chunks[0].r#type = 42;
        // 1000, 1010, 990 (backwards), 1020, 1020 (repeated): two dropped.
        let backwards = ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", "backwards")],
            chunks: vec![xor_chunk(&[
                (1000, 1.0),
                (1010, 2.0),
                (990, 3.0),
                (1020, 4.0),
                (1020, 5.0),
            ])],
        };
        let special = ChunkedSeries {
            labels: vec![label("__name__", "up"), label("job", "special")],
            chunks: vec![xor_chunk(&[
                (1000, f64::INFINITY),
                (1010, f64::NAN),
                (1020, f64::NEG_INFINITY),
                (1030, f64::from_bits(STALE_NAN_BITS)),
                (1040, 1.0),
            ])],
        };
        let body = streamed(vec![
            good_series("a", 1000, 5),
            corrupt,
            histogram,
            backwards,
            unknown,
            special,
            good_series("z", 1000, 5),
        ]);
        let (url, _) = serve(vec![(200, STREAMED, body)]);
        let s = source(&url, ResponseMode::PreferStreamed);
        let (got, partial) = crate::read::in_query("q", || s.read(&sel(), 0, 5000));
        let got = got.unwrap();
        assert!(partial, "series were lost: the answer is partial");
        assert_eq!(jobs(&got), vec!["a", "backwards", "special", "z"]);
        // What the points' checks find is counted when the series are
        // decoded (by the engine's jobs), under the query that read them.
        for row in got.clone() {
            row.points.into_points();
        }
        let t = |i: usize| {
            got[i]
                .points
                .to_points()
                .iter()
                .map(|p| p.t)
                .collect::<Vec<_>>()
        };
        assert_eq!(t(1), vec![1000, 1010, 1020], "backwards points dropped");
        // Infinite values and NaN pass (the engine skips non-finite
        // values); the staleness marker ends nothing here but is dropped.
        assert_eq!(t(2), vec![1000, 1010, 1020, 1040]);
        assert!(got[2].points.to_points()[1].v.is_nan());
        let problems = s.stats().snapshot().problems;
        for (reason, n) in [
            ("corrupt_chunk", 1),
            ("unknown_encoding", 2),
            ("non_monotonic", 2),
            ("infinite", 2),
        ] {
            assert!(
                problems.contains(&("q".to_string(), reason, n)),
                "{reason}: {problems:?}"
            );
        }
        let st = s.stats().snapshot();
        assert_eq!(st.errors.iter().map(|e| e.1).sum::<u64>(), 0, "{st:?}");
    }

    #[test]
    fn corrupt_chunks_cost_their_series_what_follows_them_when_the_jobs_decode() {
        // Two chunks a series, in an order the labels do not sort into: a
        // corrupt last chunk is found by the read (the series is left out);
        // a corrupt first chunk only when the series is decoded, on any
        // thread (its points from there on are lost, and counted under the
        // query that read it); overlapping chunks are decoded by the read.
        let series: Vec<ChunkedSeries> = (0..60)
            .map(|i| {
                let mut s = good_series(&format!("s{:02}", (i * 37) % 60), 1000 + i, 50);
                s.chunks.push(xor_chunk(
                    &(0..50)
                        .map(|k| (3000 + i + k * 10, 1.0))
                        .collect::<Vec<_>>(),
                ));
                match i % 7 {
                    3 => s.chunks[0].data.truncate(9),
                    5 => s
                        .chunks
                        .push(xor_chunk(&[(1005 + i, 1.5), (1015 + i, 2.5)])),
                    6 => s.chunks[1].data.truncate(9),
                    _ => {}
                }
                s
            })
            .collect();
        let (url, _) = serve(vec![(200, STREAMED, streamed(series.clone()))]);
        let s = source(&url, ResponseMode::PreferStreamed);
        let (got, partial) = crate::read::in_query("q", || s.read(&sel(), 0, 5000));
        let got = got.unwrap();
        let corrupt = |k| (0..60).filter(|i| i % 7 == k).count() as u64;
        assert_eq!(got.len(), 60 - corrupt(6) as usize);
        assert!(partial, "series were lost: the answer is partial");
        let counted = |reason| problems_of(&s, reason);
        assert_eq!(counted("corrupt_chunk"), corrupt(6));
        let expected: std::collections::BTreeMap<String, usize> = (0..60)
            .filter(|i| i % 7 != 6)
            .map(|i| {
                let n = match i % 7 {
                    3 => 0,
                    5 => 102,
                    _ => 100,
                };
                (format!("s{:02}", (i * 37) % 60), n)
            })
            .collect();
        let decoded: std::collections::BTreeMap<String, usize> = {
            use rayon::prelude::*;
            let names = jobs(&got);
            got.into_par_iter()
                .zip(names)
                .map(|(r, name)| (name, r.points.into_points().len()))
                .collect()
        };
        // A corrupt first chunk keeps at most its first point.
        assert_eq!(decoded.len(), expected.len());
        for ((name, d), e) in decoded.iter().zip(expected.values()) {
            if *e == 0 {
                assert!(*d <= 1, "{name}: {d} points");
            } else {
                assert_eq!(d, e, "{name}");
            }
        }
        assert_eq!(counted("corrupt_chunk"), corrupt(6) + corrupt(3));
    }

    #[test]
    fn a_broken_stream_keeps_the_series_received_whole_before_the_break() {
        // One frame per series; a series is known to be whole once the next
        // one starts, so the one before a broken frame is lost with it (it
        // might have continued there).
        let frames: Vec<Vec<u8>> = ["a", "b", "c", "d"]
            .iter()
            .map(|j| streamed(vec![good_series(j, 1000, 5)]))
            .collect();
        let upto = |n: usize| frames[..n].concat();
        // Cut inside d's frame: a and b arrived whole, c maybe not.
        let mut cut = upto(3);
        cut.extend_from_slice(&frames[3][..7]);
        // c's frame corrupt: only a.
        let mut bad = upto(4);
        bad[frames[0].len() + frames[1].len() + 8] ^= 0x40;
        // d's frame announces more than the limit: a and b.
        let mut big = upto(3);
        big.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let (url, _) = serve(vec![
            (200, STREAMED, cut),
            (200, STREAMED, bad),
            (200, STREAMED, big),
        ]);
        let s = source(&url, ResponseMode::PreferStreamed);
        let read = || crate::read::in_query("q", || s.read(&sel(), 0, 5000));
        for want in [vec!["a", "b"], vec!["a"], vec!["a", "b"]] {
            let (got, partial) = read();
            assert_eq!(jobs(&got.unwrap()), want);
            assert!(partial);
        }
        let problems = s.stats().snapshot().problems;
        for reason in ["truncated", "checksum", "frame_too_large"] {
            assert!(
                problems.contains(&("q".to_string(), reason, 1)),
                "{reason}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_samples_limit_stops_the_read_and_keeps_what_came_before() {
        let body = streamed(
            ["a", "b", "c", "d"]
                .iter()
                .map(|j| good_series(j, 1000, 10))
                .collect(),
        );
        let samples = |series: &[&str]| {
            let resp = ReadResponse {
                results: vec![QueryResult {
                    timeseries: series
                        .iter()
                        .map(|j| TimeSeries {
                            labels: vec![label("__name__", "up"), label("job", j)],
                            samples: (0..10)
                                .map(|i| Sample {
                                    value: 1.0,
                                    timestamp: 1000 + i * 10,
                                })
                                .collect(),
                        })
                        .collect(),
                }],
            };
            snap::raw::Encoder::new()
                .compress_vec(&resp.encode_to_vec())
                .unwrap()
        };
        let (url, _) = serve(vec![
            (200, STREAMED, body.clone()),
            (200, "application/x-protobuf", samples(&["a", "b", "c"])),
            (200, STREAMED, body),
        ]);
        let mut o = RemoteReadOptions::new(format!("{url}/api/v1/read"));
        o.max_samples = 25;
        let s = RemoteRead::new(&o).unwrap();
        for _ in 0..2 {
            let (got, partial) = crate::read::in_query("q", || s.read(&sel(), 0, 5000));
            assert_eq!(jobs(&got.unwrap()), vec!["a", "b"]);
            assert!(partial);
        }
        let st = s.stats().snapshot();
        assert_eq!(st.limited, vec![("q".to_string(), "samples", 2)]);
        assert!(
            st.samples_decoded <= 2 * 25,
            "decoding stops at the limit: {}",
            st.samples_decoded
        );
        // With room for everything, nothing is limited.
        let mut o = RemoteReadOptions::new(format!("{url}/api/v1/read"));
        o.max_samples = 40;
        let s = RemoteRead::new(&o).unwrap();
        let (got, partial) = crate::read::in_query("q", || s.read(&sel(), 0, 5000));
        assert_eq!(jobs(&got.unwrap()).len(), 4);
        assert!(!partial);
        assert!(s.stats().snapshot().limited.is_empty());
    }

    #[test]
    fn outages_back_off_with_jitter_and_a_success_resets() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = source(
            &format!("http://127.0.0.1:{port}"),
            ResponseMode::PreferStreamed,
        );
        let err = s.read(&sel(), 0, 5000).unwrap_err();
        assert_eq!(err.kind(), "unavailable", "{err}");
        // Within the backoff the source is not asked.
        let err = s.read(&sel(), 0, 5000).unwrap_err();
        assert_eq!(err.kind(), "backoff", "{err}");
        let st = s.stats().snapshot();
        assert_eq!(st.consecutive_failures, 1);
        assert!(
            st.backoff_seconds > 0.4 && st.backoff_seconds <= 1.0,
            "{}",
            st.backoff_seconds
        );
        assert_eq!(st.reads, 1, "a refused read is not sent");
        assert!(st.errors.contains(&("backoff", 1)));
        std::thread::sleep(std::time::Duration::from_millis(1050));
        // Second outage in a row: about twice as long.
        s.read(&sel(), 0, 5000).unwrap_err();
        let st = s.stats().snapshot();
        assert_eq!(st.consecutive_failures, 2);
        assert!(
            st.backoff_seconds > 0.9 && st.backoff_seconds <= 2.0,
            "{}",
            st.backoff_seconds
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_success() {
        let st = ReadStats::default();
        let down = ReadError::Unavailable("x".into());
        let mut waits = Vec::new();
        for _ in 0..12 {
            st.record(std::time::Duration::ZERO, 0, 0, 0, Some(&down));
            waits.push(st.snapshot().backoff_seconds);
        }
        let max = super::http::BACKOFF_MAX.as_secs_f64();
        for (i, w) in waits.iter().enumerate() {
            let full = (2f64.powi(i as i32)).min(max);
            assert!(*w > full * 0.5 - 0.01 && *w <= full, "{i}: {w}");
        }
        // Jitter: the waits are not all exactly the doubled value.
        assert!(
            waits
                .iter()
                .enumerate()
                .any(|(i, w)| (w - 2f64.powi(i as i32).min(max)).abs() > 0.01)
        );
        // A bad answer is not an outage; a success resets.
        st.record(
            std::time::Duration::ZERO,
            0,
            0,
            0,
            Some(&ReadError::Decode("x".into())),
        );
        assert_eq!(st.snapshot().consecutive_failures, 12);
        st.record(std::time::Duration::ZERO, 0, 0, 0, None);
        let snap = st.snapshot();
        assert_eq!((snap.consecutive_failures, snap.backoff_seconds), (0, 0.0));
        assert!(st.check_backoff().is_ok());
        // HTTP 503 and 429 are outages, 400 is not.
        for (status, outage) in [(503, true), (429, true), (400, false)] {
            let e = ReadError::Status {
                url: String::new(),
                status,
                body: String::new(),
            };
            assert_eq!(e.is_outage(), outage, "{status}");
        }
    }

    #[test]
    fn a_sharded_read_lists_then_asks_for_the_owned_series_only() {
        let all: Vec<Labels> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|j| {
                vec![
                    ("__name__".into(), "up".into()),
                    ("job".into(), j.to_string()),
                ]
            })
            .collect();
        let shard = crate::shard::Shard { index: 0, count: 2 };
        let owned: Vec<&Labels> = all.iter().filter(|l| shard.owns(l)).collect();
        assert!(!owned.is_empty() && owned.len() < all.len(), "{owned:?}");
        let listing = serde_json::json!({
            "status": "success",
            "data": all.iter().map(|l| l.iter().cloned().collect::<std::collections::BTreeMap<_, _>>()).collect::<Vec<_>>(),
        });
        let to_proto = |l: &Labels| l.iter().map(|(k, v)| label(k, v)).collect::<Vec<_>>();
        // Each query answered with its series and a foreign one, as a
        // server that ignored the exact matchers would: only the owned
        // series come out, once each.
        let foreign = all.iter().find(|l| !shard.owns(l)).unwrap();
        let ts = |l: &Labels| TimeSeries {
            labels: to_proto(l),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1000,
            }],
        };
        let answer = ReadResponse {
            results: owned
                .iter()
                .map(|l| QueryResult {
                    timeseries: vec![ts(l), ts(foreign)],
                })
                .collect(),
        };
        let (url, seen) = serve(vec![
            (200, "application/json", listing.to_string().into_bytes()),
            (
                200,
                "application/x-protobuf",
                snap::raw::Encoder::new()
                    .compress_vec(&answer.encode_to_vec())
                    .unwrap(),
            ),
        ]);
        let s = source(&url, ResponseMode::Samples);
        let (got, partial) =
            crate::read::in_sharded_query("q", Some(shard.into()), || s.read(&sel(), 0, 5000));
        let got = got.unwrap();
        assert!(!partial);
        let got: Vec<&Labels> = got.iter().map(|g| &g.labels).collect();
        assert_eq!(got, owned);
        let seen = seen.lock().unwrap();
        let head = |i: usize| String::from_utf8_lossy(&seen[i]).to_string();
        assert!(head(0).starts_with("GET /api/v1/series?"), "{}", head(0));
        assert!(head(1).starts_with("POST /api/v1/read "), "{}", head(1));
        let raw = &seen[1];
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let body = snap::raw::Decoder::new()
            .decompress_vec(&raw[split + 4..])
            .unwrap();
        let req = ReadRequest::decode(&body[..]).unwrap();
        assert_eq!(req.queries.len(), owned.len(), "one query per owned series");
        for (q, l) in req.queries.iter().zip(&owned) {
            let job = q.matchers.iter().find(|m| m.name == "job").unwrap();
            assert_eq!(job.r#type, MatcherType::Eq as i32);
            assert_eq!(job.value, l[1].1);
        }
        assert_eq!(
            s.stats().snapshot().shard_reads,
            vec![("listed", 1), ("filtered", 0)]
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for u in ["", "ftp://x/api/v1/read", "not a url"] {
            let e = RemoteRead::new(&RemoteReadOptions::new(u)).unwrap_err();
            assert_eq!(e.kind(), "config", "{u}: {e}");
        }
    }
}
