//! The remote-read and query_range sources against a real Prometheus.
//!
//! A deterministic TSDB is made with `promtool tsdb create-blocks-from
//! openmetrics` from series generated here (integers, floats, a counter
//! with a reset, a gap, NaN values, a series ending early), Prometheus is
//! started on it with no scrape jobs, and the same selectors and ranges are
//! read three ways: remote read answered with SAMPLES, remote read answered
//! with STREAMED_XOR_CHUNKS (decoded by our XOR decoder), and query_range.
//! The two remote reads must agree bit for bit and match the input sample
//! for sample; query_range must match at its step points under PromQL's
//! lookback rule.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use imd_analyzer::read::http::{HttpOptions, TlsOptions};
use imd_analyzer::read::promql::{PromqlOptions, QueryRange};
use imd_analyzer::read::remote::{RemoteRead, RemoteReadOptions, ResponseMode};
use imd_analyzer::read::{Labels, Selector, SeriesData, Source};

use common::{Proc, free_port, require_tool, start_prometheus_on, tempdir, tsdb_from_openmetrics};

/// First sample, in seconds: a multiple of the 2 h block range and of the step.
const BASE_S: i64 = 1_699_999_200;
const STEP_S: i64 = 15;
/// Six hours of samples.
const N: i64 = 6 * 3600 / STEP_S;
/// PromQL's default lookback delta.
const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// One generated series: sorted labels (with `__name__`) and (ms, value).
#[derive(Clone, Debug)]
struct Input {
    labels: Labels,
    points: Vec<(i64, f64)>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    l
}

/// The five series of the fixture.
fn generate() -> Vec<Input> {
    let ts = |i: i64| (BASE_S + i * STEP_S) * 1000;
    let mut out = Vec::new();
    // Integers, negative ones included.
    out.push(Input {
        labels: labels(&[
            ("__name__", "imd_test_gauge"),
            ("kind", "int"),
            ("instance", "a"),
        ]),
        points: (0..N)
            .map(|i| (ts(i), ((i * 37) % 101 - 50) as f64))
            .collect(),
    });
    // Floats with full mantissas, at timestamps jittered by up to 3 s (so
    // the chunks use the 14- and 17-bit timestamp buckets, not only 0).
    out.push(Input {
        labels: labels(&[
            ("__name__", "imd_test_gauge"),
            ("kind", "float"),
            ("instance", "b"),
        ]),
        points: (0..N)
            .map(|i| {
                (
                    ts(i) + (i * 7919) % 3001,
                    (i as f64 * 0.05).sin() * 1234.5678 + i as f64 / 7.0,
                )
            })
            .collect(),
    });
    // A counter that resets once.
    let mut total = 0.0;
    out.push(Input {
        labels: labels(&[("__name__", "imd_test_requests_total"), ("instance", "a")]),
        points: (0..N)
            .map(|i| {
                if i == 700 {
                    total = 0.0;
                }
                total += (i % 5) as f64 + 0.25;
                (ts(i), total)
            })
            .collect(),
    });
    // A 30-minute gap and NaN values.
    out.push(Input {
        labels: labels(&[
            ("__name__", "imd_test_gauge"),
            ("kind", "gappy"),
            ("instance", "c"),
        ]),
        points: (0..N)
            .filter(|i| !(400..520).contains(i))
            .map(|i| {
                (
                    ts(i),
                    if i % 97 == 0 {
                        f64::NAN
                    } else {
                        i as f64 * 0.5
                    },
                )
            })
            .collect(),
    });
    // Ends after 1000 samples (4 h 10 min).
    out.push(Input {
        labels: labels(&[
            ("__name__", "imd_test_gauge"),
            ("kind", "short"),
            ("instance", "d"),
        ]),
        points: (0..1000).map(|i| (ts(i), 1e6 + i as f64)).collect(),
    });
    out
}

/// The OpenMetrics text promtool reads: families contiguous, each series'
/// samples in time order, timestamps in seconds, `# EOF` at the end.
fn openmetrics(series: &[Input]) -> String {
    let mut text = String::new();
    for (family, kind, sample_name) in [
        ("imd_test_gauge", "gauge", "imd_test_gauge"),
        ("imd_test_requests", "counter", "imd_test_requests_total"),
    ] {
        text.push_str(&format!("# TYPE {family} {kind}\n"));
        for s in series.iter().filter(|s| s.labels[0].1 == sample_name) {
            let l: Vec<String> = s.labels[1..]
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            for (t, v) in &s.points {
                // Rust prints the shortest text that parses back to the
                // same f64, so promtool stores exactly these values.
                text.push_str(&format!(
                    "{sample_name}{{{}}} {v} {}.{:03}\n",
                    l.join(","),
                    t / 1000,
                    t % 1000
                ));
            }
        }
    }
    text.push_str("# EOF\n");
    text
}

/// A TSDB built from the fixture and a Prometheus serving it.
struct Fixture {
    _dir: tempfile::TempDir,
    prometheus: Proc,
    port: u16,
    input: Vec<Input>,
}

fn build_tsdb(dir: &Path, input: &[Input]) -> std::path::PathBuf {
    tsdb_from_openmetrics(dir, &openmetrics(input))
}

impl Fixture {
    fn start() -> Fixture {
        require_tool("prometheus");
        let dir = tempdir();
        let input = generate();
        let tsdb = build_tsdb(dir.path(), &input);
        let port = free_port();
        let prometheus = start_prometheus_on(&tsdb, dir.path(), port, &[]);
        Fixture {
            _dir: dir,
            prometheus,
            port,
            input,
        }
    }

    /// Stops Prometheus by PID and checks that it exited.
    fn stop(mut self) {
        let status = self.prometheus.stop().expect("prometheus was running");
        // Prometheus exits 0 on SIGTERM; anything else means it had died
        // or needed SIGKILL.
        assert!(
            status.success(),
            "prometheus ended with {status}\n{}",
            self.prometheus.stderr()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn remote(&self, mode: ResponseMode) -> RemoteRead {
        let mut o = RemoteReadOptions::new(format!("{}/api/v1/read", self.url()));
        o.mode = mode;
        o.http.timeout = Duration::from_secs(10);
        RemoteRead::new(&o).expect("remote-read source")
    }

    fn query_range(&self) -> QueryRange {
        let mut o = PromqlOptions::new(self.url(), Duration::from_secs(STEP_S as u64));
        // Small windows, so a six-hour read takes several requests.
        o.max_points_per_request = 500;
        QueryRange::new(&o).expect("query_range source")
    }
}

/// Series as (labels, [(t, value bits)]) for exact comparisons.
fn exact(series: &[SeriesData]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.points
                    .to_points()
                    .iter()
                    .map(|p| (p.t, p.v.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The input series `selector` matches, points cut to `[from, to]`, empty
/// ones left out, sorted by labels.
fn expected(input: &[Input], selector: &Selector, from: i64, to: i64) -> Vec<Input> {
    let mut out: Vec<Input> = input
        .iter()
        .filter(|s| selector.matches(&s.labels))
        .map(|s| Input {
            labels: s.labels.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|(t, _)| *t >= from && *t <= to)
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Number of input points in `[from, to]`.
fn b_points(input: &[Input], (from, to): (i64, i64)) -> usize {
    input
        .iter()
        .flat_map(|s| &s.points)
        .filter(|(t, _)| *t >= from && *t <= to)
        .count()
}

fn assert_matches_input(what: &str, got: &[SeriesData], want: &[Input]) {
    let got_labels: Vec<&Labels> = got.iter().map(|s| &s.labels).collect();
    let want_labels: Vec<&Labels> = want.iter().map(|s| &s.labels).collect();
    assert_eq!(got_labels, want_labels, "{what}: series");
    for (g, w) in got.iter().zip(want) {
        let points = g.points.to_points();
        assert_eq!(
            points.len(),
            w.points.len(),
            "{what}: number of points of {:?}",
            g.labels
        );
        assert!(
            g.points.len() >= points.len(),
            "{what}: {:?} announced fewer points than it has",
            g.labels
        );
        for (i, (p, (t, v))) in points.iter().zip(&w.points).enumerate() {
            assert!(
                p.t == *t && same_value(p.v, *v),
                "{what}: {:?} point {i}: got ({}, {}), want ({t}, {v})",
                g.labels,
                p.t,
                p.v
            );
        }
    }
}

/// Checks query_range points against the input under the lookback rule:
/// at each step point `t` the value is the latest sample in
/// `[t - 5m, t]`, samples before `from` included. Whether a sample exactly
/// 5 m old still counts has changed between Prometheus versions, so a point
/// resting only on such a sample may be present or absent.
fn assert_query_range_matches(
    got: &[SeriesData],
    input: &[Input],
    selector: &Selector,
    from: i64,
    to: i64,
) {
    let step = STEP_S * 1000;
    let got_by: BTreeMap<&Labels, &SeriesData> = got.iter().map(|s| (&s.labels, s)).collect();
    let candidates = expected(input, selector, i64::MIN, i64::MAX);
    for g in got {
        assert!(
            candidates.iter().any(|w| w.labels == g.labels),
            "query_range: unexpected series {:?}",
            g.labels
        );
    }
    for w in &candidates {
        let got_points: BTreeMap<i64, f64> = got_by
            .get(&w.labels)
            .map(|g| g.points.to_points().iter().map(|p| (p.t, p.v)).collect())
            .unwrap_or_default();
        if let Some(g) = got_by.get(&w.labels) {
            assert_eq!(
                g.points.len(),
                got_points.len(),
                "query_range {:?}: duplicate timestamps",
                w.labels
            );
        }
        let mut t = from.div_euclid(step) * step;
        if t < from {
            t += step;
        }
        let mut checked = 0;
        while t <= to {
            let latest = w
                .points
                .iter()
                .rev()
                .find(|(ts, _)| *ts <= t && *ts >= t - LOOKBACK_MS);
            match (latest, got_points.get(&t)) {
                (Some((_, v)), Some(gv)) => {
                    assert!(
                        same_value(*gv, *v),
                        "query_range {:?} at {t}: got {gv}, want {v}",
                        w.labels
                    );
                    checked += 1;
                }
                (Some((ts, v)), None) => {
                    assert_eq!(
                        *ts,
                        t - LOOKBACK_MS,
                        "query_range {:?}: no point at {t}, want {v}",
                        w.labels
                    );
                }
                (None, Some(gv)) => {
                    panic!("query_range {:?}: unexpected point {gv} at {t}", w.labels)
                }
                (None, None) => {}
            }
            t += step;
        }
        assert_eq!(
            checked,
            got_points.len(),
            "query_range {:?}: points off the step grid",
            w.labels
        );
    }
}

#[test]
fn remote_read_and_query_range_agree_with_the_tsdb() {
    let started = Instant::now();
    let fx = Fixture::start();
    let samples = fx.remote(ResponseMode::Samples);
    let streamed = fx.remote(ResponseMode::PreferStreamed);
    let qr = fx.query_range();
    let all = Selector::parse(r#"{__name__=~"imd_test_.*"}"#).unwrap();

    // Whole range, then a sub-range whose ends fall inside chunks (so the
    // streamed chunks carry points that must be trimmed).
    let whole = (BASE_S * 1000, (BASE_S + 6 * 3600) * 1000);
    let inner = (
        (BASE_S + 3600) * 1000 + 7_500,
        (BASE_S + 4 * 3600) * 1000 - 1,
    );
    for (from, to) in [whole, inner] {
        let a = samples.read(&all, from, to).expect("remote read, SAMPLES");
        let b = streamed
            .read(&all, from, to)
            .expect("remote read, STREAMED_XOR_CHUNKS");
        assert_eq!(
            exact(&a),
            exact(&b),
            "SAMPLES and STREAMED_XOR_CHUNKS differ for [{from}, {to}]"
        );
        let want = expected(&fx.input, &all, from, to);
        assert_eq!(want.len(), 5);
        assert_matches_input("remote read", &b, &want);
        let c = qr.read(&all, from, to).expect("query_range");
        assert_query_range_matches(&c, &fx.input, &all, from, to);
        assert_eq!(c.len(), 5);
    }

    // The answers really came both ways, and streamed chunks were trimmed.
    let st = streamed.stats().snapshot();
    assert_eq!(st.streamed_answers, 2, "{st:?}");
    let sa = samples.stats().snapshot();
    assert_eq!(sa.streamed_answers, 0, "{sa:?}");
    // Prometheus 2.42 re-encodes chunks cut by the range ends, so both
    // decode at least what they return (other servers send whole chunks).
    let returned: usize = b_points(&fx.input, whole) + b_points(&fx.input, inner);
    assert!(st.samples_decoded >= returned as u64, "{st:?}");
    assert!(sa.samples_decoded >= returned as u64, "{sa:?}");
    assert!(st.bytes_read > 0 && sa.bytes_read > 0);
    assert!(st.errors.iter().all(|(_, n)| *n == 0), "{st:?}");
    assert_eq!(qr.stats().snapshot().reads, 2);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    fx.stop();
}

#[test]
fn matchers_select_the_same_series_everywhere_and_empty_reads_are_empty() {
    let fx = Fixture::start();
    let sources: [(&str, Box<dyn Source>); 3] = [
        ("samples", Box::new(fx.remote(ResponseMode::Samples))),
        (
            "streamed",
            Box::new(fx.remote(ResponseMode::PreferStreamed)),
        ),
        ("query_range", Box::new(fx.query_range())),
    ];
    let (from, to) = (BASE_S * 1000, (BASE_S + 6 * 3600) * 1000);
    let cases = [
        (r#"imd_test_gauge{kind=~"int|fl.*"}"#, 2),
        // Regexes are anchored: "in" matches no kind.
        (r#"imd_test_gauge{kind=~"in"}"#, 0),
        (r#"imd_test_gauge{kind!="gappy",instance!="a"}"#, 2),
        (r#"{__name__=~"imd_test_.*",instance="a"}"#, 2),
        (r#"imd_test_gauge{kind!~"int|float|gappy"}"#, 1),
        (r#"imd_test_gauge{kind="nope"}"#, 0),
        (r#"imd_test_absent_metric"#, 0),
    ];
    for (sel, n) in cases {
        let selector = Selector::parse(sel).unwrap();
        let want: Vec<Labels> = expected(&fx.input, &selector, from, to)
            .into_iter()
            .map(|s| s.labels)
            .collect();
        assert_eq!(want.len(), n, "{sel}: fixture");
        for (name, src) in &sources {
            let got: Vec<Labels> = src
                .read(&selector, from, to)
                .unwrap_or_else(|e| panic!("{name} {sel}: {e}"))
                .into_iter()
                .map(|s| s.labels)
                .collect();
            assert_eq!(got, want, "{name} {sel}");
        }
    }
    // A range before the data, and the short series after it ended (beyond
    // the lookback): nothing.
    let gauge = Selector::parse(r#"imd_test_gauge{kind="short"}"#).unwrap();
    let after_end = (BASE_S + 1000 * STEP_S) * 1000 + LOOKBACK_MS + 1;
    for (from, to) in [
        ((BASE_S - 86_400) * 1000, (BASE_S - 3600) * 1000),
        (after_end, after_end + 3_600_000),
    ] {
        for (name, src) in &sources {
            let got = src
                .read(&gauge, from, to)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got.is_empty(), "{name} [{from}, {to}]: {got:?}");
        }
    }
    // A selector PromQL refuses (every matcher matches the empty string)
    // is an HTTP error with the server's message, not an empty answer.
    let refused = Selector::parse(r#"{job=~".*"}"#).unwrap();
    let err = sources[2]
        .1
        .read(&refused, from, to)
        .expect_err("query_range of an all-empty selector");
    assert_eq!(err.kind(), "http_status", "{err}");
    assert!(err.to_string().contains("bad_data"), "{err}");
    fx.stop();
}

#[test]
fn tls_with_a_private_ca_and_client_certificates() {
    require_tool("prometheus");
    let dir = tempdir();
    let d = dir.path();
    common::pki::server_cert(d);
    let input = generate();
    let tsdb = build_tsdb(d, &input);
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            d.join("server.crt").display(),
            d.join("server.key").display(),
            d.join("ca.crt").display()
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prometheus = start_prometheus_on(
        &tsdb,
        d,
        port,
        &[format!("--web.config.file={}", web.display())],
    );

    let tls = |ca: bool, client: bool, insecure: bool| TlsOptions {
        ca_file: ca.then(|| d.join("ca.crt")),
        cert_file: client.then(|| d.join("client.crt")),
        key_file: client.then(|| d.join("client.key")),
        insecure_skip_verify: insecure,
    };
    let remote = |tls: TlsOptions| {
        let mut o = RemoteReadOptions::new(format!("https://127.0.0.1:{port}/api/v1/read"));
        o.http = HttpOptions {
            timeout: Duration::from_secs(5),
            tls,
            ..HttpOptions::default()
        };
        RemoteRead::new(&o).unwrap()
    };
    let selector = Selector::parse(r#"imd_test_gauge{kind="int"}"#).unwrap();
    let (from, to) = (BASE_S * 1000, (BASE_S + 3600) * 1000);
    let want = expected(&input, &selector, from, to);

    // Wait for the TSDB to be open (HTTP 503 before that).
    let good = remote(tls(true, true, false));
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = loop {
        match good.read(&selector, from, to) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!(
                "remote read over mutual TLS never succeeded: {e}\n{}",
                prometheus.stderr()
            ),
        }
    };
    assert_matches_input("remote read over TLS", &got, &want);

    let mut qo = PromqlOptions::new(
        format!("https://127.0.0.1:{port}"),
        Duration::from_secs(STEP_S as u64),
    );
    qo.http.tls = tls(true, true, false);
    let got = QueryRange::new(&qo)
        .unwrap()
        .read(&selector, from, to)
        .expect("query_range over TLS");
    assert_query_range_matches(&got, &input, &selector, from, to);
    assert_eq!(got.len(), 1);

    // Skipping verification still presents the client certificate.
    remote(tls(false, true, true))
        .read(&selector, from, to)
        .expect("insecure_skip_verify with a client certificate");
    // No client certificate: the server refuses the handshake.
    let e = remote(tls(true, false, false))
        .read(&selector, from, to)
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    // The system roots do not know the private CA.
    let e = remote(tls(false, true, false))
        .read(&selector, from, to)
        .unwrap_err();
    assert_eq!(e.kind(), "unavailable", "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    let status = prometheus.stop().expect("prometheus was running");
    assert!(status.success(), "prometheus ended with {status}");
}
