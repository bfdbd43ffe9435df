//! A [`Source`] over the Prometheus HTTP API's `GET /api/v1/query_range`,
//! for back ends without remote read (VictoriaMetrics, some managed
//! services) or where it is turned off.
//!
//! The selector is sent as the query. The answer is a sampled view, not the
//! raw samples: one point per step, each the latest sample at most the
//! server's lookback delta (5 minutes by default) before the step. Start
//! times are aligned to multiples of the step, so consecutive reads see the
//! same step points. Ranges longer than the server's point limit (11 000 per
//! series in Prometheus) are split into several requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http::{self, HttpClient, HttpOptions, ReadStats};
use super::pushdown::{Batching, Pushdown, ShardedSource};
use super::{Labels, MatchOp, ReadError, Selector, SeriesData, Source};

/// Longest `or` of exact series selectors a sharded read sends as one
/// query (see [`super::pushdown`]), in characters: the query goes in the
/// URL, which servers and proxies cap at a few to tens of kilobytes once
/// URL-encoded.
pub const MAX_OR_QUERY_CHARS: usize = 4000;
use crate::model::Point;

/// Settings of a query_range source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromqlOptions {
    /// The server's base URL, e.g. `http://prometheus:9090` or
    /// `http://vmselect:8481/select/0/prometheus`; `/api/v1/query_range`
    /// is appended.
    pub url: String,
    /// Timeout, authentication, headers, TLS.
    pub http: HttpOptions,
    /// Distance between points; best equal to the scrape interval.
    pub step: Duration,
    /// Reads end this long before the time asked for, so that the newest
    /// points are final (VictoriaMetrics rewrites those within its
    /// `-search.latencyOffset` of now).
    pub query_offset: Duration,
    /// Most points per series in one request (Prometheus refuses more than
    /// 11 000).
    pub max_points_per_request: usize,
    /// Largest accepted answer body.
    pub max_response_bytes: usize,
}

impl PromqlOptions {
    /// Defaults for `url` and `step`: 11 000 points per request, 256 MiB
    /// answers, 30 s timeout.
    pub fn new(url: impl Into<String>, step: Duration) -> Self {
        PromqlOptions {
            url: url.into(),
            http: HttpOptions::default(),
            step,
            query_offset: Duration::ZERO,
            max_points_per_request: 11_000,
            max_response_bytes: 256 << 20,
        }
    }
}

/// Reads series through `query_range`.
#[derive(Debug)]
pub struct QueryRange {
    endpoint: reqwest::Url,
    http: HttpClient,
    step_ms: i64,
    offset_ms: i64,
    max_points: i64,
    max_response_bytes: usize,
    stats: Arc<ReadStats>,
    /// `/api/v1/series` under the base URL, for sharded reads.
    series_url: reqwest::Url,
    pushdown: Pushdown,
}

impl QueryRange {
    /// A source for `opts`; checks the URL and step and loads TLS/auth files.
    pub fn new(opts: &PromqlOptions) -> Result<QueryRange, ReadError> {
        let mut endpoint = super::remote::parse_url(&opts.url)?;
        if endpoint.query().is_some() || endpoint.fragment().is_some() {
            return Err(ReadError::Config(format!(
                "url {:?}: give the base URL without a query or fragment",
                opts.url
            )));
        }
        let series_url = super::listing::under_base(&endpoint);
        let path = format!(
            "{}/api/v1/query_range",
            endpoint.path().trim_end_matches('/')
        );
        endpoint.set_path(&path);
        let step_ms = i64::try_from(opts.step.as_millis()).unwrap_or(i64::MAX);
        if step_ms < 1 {
            return Err(ReadError::Config("step must be at least 1ms".into()));
        }
        if opts.max_points_per_request < 2 {
            return Err(ReadError::Config(
                "max_points_per_request must be at least 2".into(),
            ));
        }
        Ok(QueryRange {
            endpoint,
            http: HttpClient::new(&opts.http)?,
            step_ms,
            offset_ms: i64::try_from(opts.query_offset.as_millis()).unwrap_or(i64::MAX),
            max_points: i64::try_from(opts.max_points_per_request).unwrap_or(i64::MAX),
            max_response_bytes: opts.max_response_bytes,
            stats: Arc::new(ReadStats::default()),
            series_url,
            pushdown: Pushdown::default(),
        })
    }

    /// This source's read counters (shared; the engine publishes them).
    pub fn stats(&self) -> Arc<ReadStats> {
        self.stats.clone()
    }

    /// The answer's body for the step points in `[start_ms, end_ms]`.
    fn fetch_window(&self, query: &str, start_ms: i64, end_ms: i64) -> Result<Vec<u8>, ReadError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut()
            .append_pair("query", query)
            .append_pair("start", &seconds(start_ms))
            .append_pair("end", &seconds(end_ms))
            .append_pair("step", &seconds(self.step_ms));
        let resp = match self.http.send(self.http.get(url.clone())?, &self.endpoint) {
            Ok(r) => r,
            Err(ReadError::Status { url, status, body }) => {
                // The API's errors are JSON: keep just the message.
                let body = serde_json::from_str::<ApiAnswer>(&body)
                    .ok()
                    .and_then(|a| {
                        a.error
                            .map(|e| format!("{} ({})", e, a.error_type.unwrap_or_default()))
                    })
                    .unwrap_or(body);
                return Err(ReadError::Status { url, status, body });
            }
            Err(e) => return Err(e),
        };
        http::read_body(resp, &self.endpoint, self.max_response_bytes)
    }

    /// Merges one window's answer (`body`) into `out`.
    fn merge_window(
        &self,
        query: &str,
        body: &[u8],
        out: &mut BTreeMap<Labels, Vec<Point>>,
        tally: &mut (u64, u64),
    ) -> Result<(), ReadError> {
        tally.0 += body.len() as u64;
        let matrix = parse_matrix(body).map_err(|e| {
            ReadError::Decode(format!(
                "the query_range answer of {} to {query:?} {e}",
                http::redact(&self.endpoint)
            ))
        })?;
        for w in &matrix.warnings {
            tracing::warn!(query, warning = %w, "query_range warning");
        }
        for (labels, values) in matrix.series {
            tally.1 += values.len() as u64;
            let points = out.entry(labels).or_default();
            if points.is_empty() {
                *points = values;
            } else {
                points.extend_from_slice(&values);
            }
        }
        Ok(())
    }

    /// The requests (step-aligned `[start, end]` windows) that cover
    /// `[from_ms, to_ms]` within the server's point limit.
    fn windows(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
        let span = self.step_ms.saturating_mul(self.max_points - 1);
        let mut windows = Vec::new();
        let mut start = align_up(from_ms, self.step_ms);
        while start <= to_ms {
            let end = start.saturating_add(span).min(to_ms);
            windows.push((start, end));
            start = match end.checked_add(self.step_ms) {
                Some(s) => align_up(s, self.step_ms),
                None => break,
            };
        }
        windows
    }

    fn read_inner(
        &self,
        query: &str,
        from_ms: i64,
        to_ms: i64,
        tally: &mut (u64, u64),
    ) -> Result<Vec<SeriesData>, ReadError> {
        let mut out = BTreeMap::new();
        let windows = self.windows(from_ms, to_ms);
        if windows.len() == 1 {
            let (start, end) = windows[0];
            let body = self.fetch_window(query, start, end)?;
            self.merge_window(query, &body, &mut out, tally)?;
        } else if windows.len() > 1 {
            // A long range takes several requests: the next answer is
            // fetched while this one is parsed, so that the server's work
            // and the client's overlap (in turn, they added up to twice
            // what the server alone took). At most two answers are held.
            std::thread::scope(|s| {
                let (tx, rx) = std::sync::mpsc::sync_channel(0);
                let fetching = std::thread::Builder::new()
                    .name("query-range-fetch".to_string())
                    .spawn_scoped(s, move || {
                        for (start, end) in windows {
                            let body = self.fetch_window(query, start, end);
                            let failed = body.is_err();
                            // The reader gone (it failed) or this fetch
                            // failed: no more requests.
                            if tx.send(body).is_err() || failed {
                                return;
                            }
                        }
                    });
                if let Err(e) = fetching {
                    return Err(ReadError::Decode(format!(
                        "no thread to fetch query_range answers on: {e}"
                    )));
                }
                for body in rx {
                    self.merge_window(query, &body?, &mut out, tally)?;
                }
                Ok(())
            })?;
        }
        Ok(out
            .into_iter()
            .filter(|(_, points)| !points.is_empty())
            .map(|(labels, points)| SeriesData {
                labels,
                points: points.into(),
            })
            .collect())
    }
}

impl QueryRange {
    /// A sharded replica's read of `selector`: only the series `owner`
    /// keeps, each by an exact selector, several joined by `or` in one query.
    fn read_sharded(
        &self,
        owner: &crate::shard::Owner,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
        tally: &mut (u64, u64),
    ) -> Result<Vec<SeriesData>, ReadError> {
        let mut sharded = Sharded {
            source: self,
            selector,
            from_ms,
            to_ms,
            tally,
        };
        super::pushdown::read_owned(
            &self.pushdown,
            &self.stats,
            owner,
            selector,
            Batching::Or(MAX_OR_QUERY_CHARS),
            &mut sharded,
        )
        .map(|(series, _)| series)
    }

    /// Runs one read (`f`, given the running byte and point tally) with
    /// the backoff check, counters and logging every read has.
    fn counted(
        &self,
        what: &str,
        f: impl FnOnce(&mut (u64, u64)) -> Result<Vec<SeriesData>, ReadError>,
    ) -> Result<Vec<SeriesData>, ReadError> {
        self.stats.check_backoff()?;
        let started = Instant::now();
        let mut tally = (0u64, 0u64);
        let result = f(&mut tally);
        let series = result.as_ref().map(|s| s.len() as u64).unwrap_or(0);
        self.stats.record(
            started.elapsed(),
            tally.0,
            tally.1,
            series,
            result.as_ref().err(),
        );
        if let Err(e) = &result {
            tracing::debug!(url = %http::redact(&self.endpoint), query = %what, error = %e, "query_range read failed");
        }
        result
    }
}

/// One sharded read of `selector` (see [`super::pushdown`]).
struct Sharded<'a> {
    source: &'a QueryRange,
    selector: &'a Selector,
    from_ms: i64,
    to_ms: i64,
    tally: &'a mut (u64, u64),
}

impl ShardedSource for Sharded<'_> {
    fn list(&mut self) -> Option<Result<Vec<Labels>, ReadError>> {
        Some(super::listing::list(
            &self.source.http,
            &self.source.series_url,
            self.selector,
            self.from_ms,
            self.to_ms,
            self.source.max_response_bytes,
            &mut self.tally.0,
        ))
    }

    /// The selectors joined by `or`, as one query.
    fn read_batch(&mut self, selectors: &[Selector]) -> Result<Vec<SeriesData>, ReadError> {
        let query: Vec<String> = selectors.iter().map(promql_selector).collect();
        self.source
            .read_inner(&query.join(" or "), self.from_ms, self.to_ms, self.tally)
    }
}

impl Source for QueryRange {
    fn read(
        &self,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let Some(owner) = super::current_owner() else {
            return self.read_expr(&promql_selector(selector), from_ms, to_ms);
        };
        let to_ms = to_ms.saturating_sub(self.offset_ms);
        self.counted(&promql_selector(selector), |tally| {
            self.read_sharded(&owner, selector, from_ms, to_ms, tally)
        })
    }

    fn read_expr(
        &self,
        query: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let to_ms = to_ms.saturating_sub(self.offset_ms);
        self.counted(query, |tally| self.read_inner(query, from_ms, to_ms, tally))
    }
}

/// The smallest multiple of `step` at or after `t`.
fn align_up(t: i64, step: i64) -> i64 {
    let r = t.rem_euclid(step);
    if r == 0 {
        t
    } else {
        t.saturating_add(step - r)
    }
}

/// Milliseconds as the decimal seconds the API takes.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// A sample value as the API writes it.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// A selector in PromQL syntax with every matcher (the metric name too)
/// inside the braces, values quoted with Go's escapes.
pub fn promql_selector(selector: &Selector) -> String {
    let matchers: Vec<String> = selector
        .matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                MatchOp::Eq => "=",
                MatchOp::Neq => "!=",
                MatchOp::Re => "=~",
                MatchOp::Nre => "!~",
            };
            let mut v = String::with_capacity(m.value.len() + 2);
            for c in m.value.chars() {
                match c {
                    '\\' => v.push_str("\\\\"),
                    '"' => v.push_str("\\\""),
                    '\n' => v.push_str("\\n"),
                    '\r' => v.push_str("\\r"),
                    '\t' => v.push_str("\\t"),
                    c => v.push(c),
                }
            }
            format!("{}{op}\"{v}\"", m.name)
        })
        .collect();
    format!("{{{}}}", matchers.join(","))
}

/// One `query_range` answer as read.
#[derive(Debug)]
pub struct Matrix {
    /// Each series' labels (sorted) and points, in the answer's order.
    pub series: Vec<(Labels, Vec<Point>)>,
    /// The warnings the server sent along.
    pub warnings: Vec<String>,
}

/// Reads one `query_range` answer (`body`, the API's JSON). The error says
/// what is wrong with it, worded to follow "the answer".
pub fn parse_matrix(body: &[u8]) -> Result<Matrix, String> {
    let answer: ApiAnswer =
        serde_json::from_slice(body).map_err(|e| format!("is not query_range JSON: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "reports a failure: {} ({})",
            answer.error.unwrap_or_default(),
            answer.error_type.unwrap_or_default()
        ));
    }
    let data = answer.data.ok_or("has no data")?;
    if data.result_type != "matrix" {
        return Err(format!("is a {}, not a matrix", data.result_type));
    }
    let series = data
        .result
        .into_iter()
        .map(|s| {
            let mut labels: Labels = s.metric.into_iter().collect();
            labels.sort();
            (labels, s.values)
        })
        .collect();
    Ok(Matrix {
        series,
        warnings: answer.warnings.unwrap_or_default(),
    })
}

#[derive(serde::Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<MatrixData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct MatrixData {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<MatrixSeries>,
}

#[derive(serde::Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[seconds, "value"]` pairs; native histograms (`histograms`) are
    /// not float series and are ignored.
    #[serde(default, deserialize_with = "matrix_points")]
    values: Vec<Point>,
}

/// Reads a matrix series' `[seconds, "value"]` pairs straight into points.
/// serde_json has no way to parse a number held in a string, and reading
/// each value as a `String` first cost an allocation per sample: most of
/// the client's time on large answers. Here the text is parsed where it
/// lies in the body.
fn matrix_points<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Point>, D::Error> {
    struct Points;
    impl<'de> serde::de::Visitor<'de> for Points {
        type Value = Vec<Point>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of [seconds, \"value\"] pairs")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<Point>, A::Error> {
            let mut points = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(MatrixPoint(p)) = seq.next_element()? {
                points.push(p);
            }
            Ok(points)
        }
    }
    d.deserialize_seq(Points)
}

/// One `[seconds, "value"]` pair of a matrix answer.
struct MatrixPoint(Point);

impl<'de> serde::Deserialize<'de> for MatrixPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pair;
        impl<'de> serde::de::Visitor<'de> for Pair {
            type Value = MatrixPoint;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [seconds, \"value\"] pair")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<MatrixPoint, A::Error> {
                use serde::de::Error;
                let t: f64 = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let ValueText(v) = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(3, &self));
                }
                if !t.is_finite() {
                    return Err(A::Error::custom(format!("timestamp {t} is not finite")));
                }
                Ok(MatrixPoint(Point {
                    t: (t * 1000.0).round() as i64,
                    v,
                }))
            }
        }
        d.deserialize_seq(Pair)
    }
}

/// A sample value as the API writes it: a string holding a float, `NaN`
/// or `±Inf`.
struct ValueText(f64);

impl<'de> serde::Deserialize<'de> for ValueText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = ValueText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sample value in a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ValueText, E> {
                parse_value(s)
                    .map(ValueText)
                    .ok_or_else(|| E::custom(format!("sample value {s:?} is not a number")))
            }
        }
        d.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testserver::serve;
    use super::*;

    fn matrix(body: &str) -> (u16, &'static str, Vec<u8>) {
        (200, "application/json", body.as_bytes().to_vec())
    }

    fn query_of(raw: &[u8]) -> BTreeMap<String, String> {
        let head = String::from_utf8_lossy(raw);
        let target = head.split_whitespace().nth(1).unwrap().to_string();
        let u = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
        assert_eq!(u.path(), "/base/api/v1/query_range");
        u.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn selectors_render_as_promql() {
        let s = Selector::parse(r#"up{job=~"a|b", path!="C:\\x", q="say \"hi\""}"#).unwrap();
        assert_eq!(
            promql_selector(&s),
            r#"{__name__="up",job=~"a|b",path!="C:\\x",q="say \"hi\""}"#
        );
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds(-1500), "-1.500");
        assert_eq!(align_up(31_000, 15_000), 45_000);
        assert_eq!(align_up(30_000, 15_000), 30_000);
        assert_eq!(align_up(-1, 15_000), 0);
    }

    #[test]
    fn matrix_is_parsed_and_long_ranges_split() {
        let first = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"a"},"values":[[30,"1"],[45,"NaN"],[60,"+Inf"]]},
            {"metric":{"__name__":"up","job":"b"},"values":[[30.5,"-2.5e3"]]}]}}"#;
        let second = r#"{"status":"success","warnings":["w"],"data":{"resultType":"matrix","result":[
            {"metric":{"job":"a","__name__":"up"},"values":[[75,"2"]]}]}}"#;
        let (url, seen) = serve(vec![matrix(first), matrix(second)]);
        let mut o = PromqlOptions::new(format!("{url}/base/"), Duration::from_secs(15));
        o.max_points_per_request = 3;
        let s = QueryRange::new(&o).unwrap();
        let got = s
            .read(&Selector::parse("up").unwrap(), 20_000, 80_000)
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].labels,
            vec![("__name__".into(), "up".into()), ("job".into(), "a".into())]
        );
        let a: Vec<(i64, u64)> = got[0]
            .points
            .to_points()
            .iter()
            .map(|p| (p.t, p.v.to_bits()))
            .collect();
        assert_eq!(
            a,
            vec![
                (30_000, 1f64.to_bits()),
                (45_000, f64::NAN.to_bits()),
                (60_000, f64::INFINITY.to_bits()),
                (75_000, 2f64.to_bits())
            ]
        );
        assert_eq!(
            got[1].points,
            vec![Point {
                t: 30_500,
                v: -2500.0
            }]
        );
        let seen = seen.lock().unwrap();
        let q1 = query_of(&seen[0]);
        let q2 = query_of(&seen[1]);
        assert_eq!(q1["query"], r#"{__name__="up"}"#);
        assert_eq!(
            (
                q1["start"].as_str(),
                q1["end"].as_str(),
                q1["step"].as_str()
            ),
            ("30.000", "60.000", "15.000")
        );
        assert_eq!(
            (q2["start"].as_str(), q2["end"].as_str()),
            ("75.000", "80.000")
        );
        assert_eq!(s.stats().snapshot().samples_decoded, 5);
    }

    #[test]
    fn a_failed_window_ends_the_read_after_at_most_one_fetch_ahead() {
        let ok = |v: &str| {
            matrix(&format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"job":"a"}},"values":[[30,"{v}"]]}}]}}}}"#
            ))
        };
        for (second, kind) in [
            (matrix("<html>"), "decode"),
            ((503, "text/plain", b"overloaded".to_vec()), "http_status"),
        ] {
            let (url, seen) = serve(vec![ok("1"), second, ok("3"), ok("4"), ok("5")]);
            let mut o = PromqlOptions::new(url, Duration::from_secs(15));
            o.max_points_per_request = 2;
            let s = QueryRange::new(&o).unwrap();
            let e = s
                .read(&Selector::parse("up").unwrap(), 0, 150_000)
                .unwrap_err();
            assert_eq!(e.kind(), kind, "{e}");
            let asked = seen.lock().unwrap().len();
            assert!(
                (2..=3).contains(&asked),
                "{asked} requests after a failed second"
            );
        }
        // Escaped value text is read as well as plain text.
        let (url, _) = serve(vec![matrix(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1.5,"1\u00305"]]}]}}"#,
        )]);
        let got = QueryRange::new(&PromqlOptions::new(url, Duration::from_secs(15)))
            .unwrap()
            .read(&Selector::parse("up").unwrap(), 0, 10_000)
            .unwrap();
        assert_eq!(got[0].points, vec![Point { t: 1_500, v: 105.0 }]);
    }

    #[test]
    fn a_sharded_read_lists_then_asks_for_the_owned_series_by_or() {
        let jobs = ["a", "b", "c", "d", "e", "f"];
        let labels = |j: &str| -> Labels {
            vec![("__name__".into(), "up".into()), ("job".into(), j.into())]
        };
        let shard = crate::shard::Shard { index: 1, count: 2 };
        let owned: Vec<&str> = jobs
            .iter()
            .copied()
            .filter(|j| shard.owns(&labels(j)))
            .collect();
        assert!(!owned.is_empty() && owned.len() < jobs.len(), "{owned:?}");
        let listing = format!(
            r#"{{"status":"success","data":[{}]}}"#,
            jobs.iter()
                .map(|j| format!(r#"{{"__name__":"up","job":"{j}"}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let answer = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            owned
                .iter()
                .map(|j| format!(
                    r#"{{"metric":{{"__name__":"up","job":"{j}"}},"values":[[30,"1"]]}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (url, seen) = serve(vec![matrix(&listing), matrix(&answer)]);
        let s = QueryRange::new(&PromqlOptions::new(
            format!("{url}/base"),
            Duration::from_secs(15),
        ))
        .unwrap();
        let (got, _) = crate::read::in_sharded_query("q", Some(shard.into()), || {
            s.read(&Selector::parse("up").unwrap(), 20_000, 40_000)
        });
        let got: Vec<Labels> = got.unwrap().into_iter().map(|g| g.labels).collect();
        assert_eq!(got, owned.iter().map(|j| labels(j)).collect::<Vec<_>>());
        let seen = seen.lock().unwrap();
        let list = String::from_utf8_lossy(&seen[0]).to_string();
        assert!(list.starts_with("GET /base/api/v1/series?"), "{list}");
        let q = query_of(&seen[1]);
        let want: Vec<String> = owned
            .iter()
            .map(|j| format!(r#"{{__name__="up",job="{j}"}}"#))
            .collect();
        assert_eq!(q["query"], want.join(" or "));
        assert_eq!(
            s.stats().snapshot().shard_reads,
            vec![("listed", 1), ("filtered", 0)]
        );
    }

    #[test]
    fn api_errors_and_wrong_answers_are_typed() {
        let (url, _) = serve(vec![
            (
                400,
                "application/json",
                br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#
                    .to_vec(),
            ),
            matrix(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            matrix("<html>"),
            matrix(
                r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}"#,
            ),
        ]);
        let s = QueryRange::new(&PromqlOptions::new(url, Duration::from_secs(15))).unwrap();
        let sel = Selector::parse("up").unwrap();
        let e = s.read(&sel, 0, 60_000).unwrap_err();
        assert_eq!(e.kind(), "http_status");
        assert!(
            e.to_string().contains("parse error at char 3 (bad_data)"),
            "{e}"
        );
        for text in [
            "not a matrix",
            "query_range JSON",
            r#"sample value "x" is not a number"#,
        ] {
            let e = s.read(&sel, 0, 60_000).unwrap_err();
            assert_eq!(e.kind(), "decode");
            assert!(e.to_string().contains(text), "{e}");
        }
        // Nothing to ask for: no request.
        assert!(s.read(&sel, 16_000, 29_000).unwrap().is_empty());
        let mut o = PromqlOptions::new("http://x", Duration::from_secs(15));
        o.query_offset = Duration::from_secs(30);
        let s = QueryRange::new(&o).unwrap();
        assert!(
            s.read(&sel, 16_000, 59_000).unwrap().is_empty(),
            "ends at 29 s"
        );
        assert!(QueryRange::new(&PromqlOptions::new("http://x", Duration::ZERO)).is_err());
        assert!(
            QueryRange::new(&PromqlOptions::new("http://x?a=b", Duration::from_secs(1))).is_err()
        );
    }
}
