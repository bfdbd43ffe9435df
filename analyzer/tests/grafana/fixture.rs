//! Realistic series for the dashboards' queries: two hosts' node metrics,
//! what imd-analyzer publishes for them, and its self-metrics, as
//! OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const STEP_S: i64 = 15;
pub const HOSTS: &[&str] = &["host-a:9100", "host-b:9100"];
pub const ANALYZER: &str = "analyzer:9110";

/// Series generated for the TSDB, grouped by name (OpenMetrics wants a
/// family's samples together).
pub struct Fixture {
    /// Time of the first point, in seconds.
    pub start_s: i64,
    n: i64,
    families: BTreeMap<String, String>,
}

impl Fixture {
    fn new(start_s: i64, n: i64) -> Fixture {
        Fixture {
            start_s,
            n,
            families: BTreeMap::new(),
        }
    }

    /// One series: `v(i)` is the value of point `i` (0..n), None = no sample.
    fn series(&mut self, name: &str, labels: &[(&str, &str)], v: impl Fn(i64) -> Option<f64>) {
        let mut l = String::new();
        for (i, (k, val)) in labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(l, "{sep}{k}=\"{val}\"").unwrap();
        }
        let out = self.families.entry(name.to_string()).or_default();
        for i in 0..self.n {
            if let Some(x) = v(i) {
                let x = if x.is_infinite() {
                    if x > 0.0 {
                        "+Inf".to_string()
                    } else {
                        "-Inf".to_string()
                    }
                } else {
                    format!("{x}")
                };
                writeln!(out, "{name}{{{l}}} {x} {}", self.start_s + i * STEP_S).unwrap();
            }
        }
    }

    /// The OpenMetrics text.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for body in self.families.values() {
            s.push_str(body);
        }
        s.push_str("# EOF\n");
        s
    }
}

/// Deterministic noise in -1..1.
fn noise(seed: u64, i: i64) -> f64 {
    let mut x =
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 2001) as f64 / 1000.0 - 1.0
}

/// One analysed series: what the analyzer publishes for it.
struct Analysed<'a> {
    query: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    anomaly_model: &'a str,
    forecast_model: &'a str,
    horizons: &'a [&'a str],
    /// The expected value of point i and the half width of its band.
    expected: Box<dyn Fn(i64) -> (f64, f64) + 'a>,
    score: Box<dyn Fn(i64) -> f64 + 'a>,
    /// Seconds until the threshold (0) is crossed, for thresholded queries.
    breach: Option<Box<dyn Fn(i64) -> f64 + 'a>>,
}

fn borrow(l: &[(String, String)]) -> Vec<(&str, &str)> {
    l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn publish(fx: &mut Fixture, a: &Analysed) {
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        let mut l: Vec<(String, String)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.push(("query".into(), a.query.into()));
        l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        l
    };
    let sl = with(&[("model", a.anomaly_model)]);
    fx.series("imd_anomaly_score", &borrow(&sl), |i| Some((a.score)(i)));
    let fl = with(&[("model", a.forecast_model)]);
    fx.series("imd_expected", &borrow(&fl), |i| Some((a.expected)(i).0));
    fx.series("imd_expected_lower", &borrow(&fl), |i| {
        let (m, w) = (a.expected)(i);
        Some(m - w)
    });
    fx.series("imd_expected_upper", &borrow(&fl), |i| {
        let (m, w) = (a.expected)(i);
        Some(m + w)
    });
    for (hi, h) in a.horizons.iter().enumerate() {
        let hl = with(&[("model", a.forecast_model), ("horizon", h)]);
        let widen = 1.0 + hi as f64;
        fx.series("imd_forecast", &borrow(&hl), |i| Some((a.expected)(i).0));
        fx.series("imd_forecast_lower", &borrow(&hl), |i| {
            let (m, w) = (a.expected)(i);
            Some(m - 2.0 * widen * w)
        });
        fx.series("imd_forecast_upper", &borrow(&hl), |i| {
            let (m, w) = (a.expected)(i);
            Some(m + 2.0 * widen * w)
        });
    }
    if let Some(b) = &a.breach {
        let bl = with(&[("model", a.forecast_model), ("threshold", "0")]);
        fx.series("imd_forecast_breach_seconds", &borrow(&bl), |i| Some(b(i)));
    }
}

/// Two hours of two hosts and one analyzer, ending at `end_s`.
pub fn fixture(end_s: i64) -> Fixture {
    let n = 2 * 3600 / STEP_S + 1;
    let mut fx = Fixture::new(end_s - (n - 1) * STEP_S, n);
    let last_30m = move |i: i64| i >= n - 30 * 60 / STEP_S;
    for (k, inst) in HOSTS.iter().enumerate() {
        let k = k as u64;
        let a = k == 0; // host-a has the trouble
        let node = |extra: &[(&'static str, &'static str)]| {
            let mut l = vec![("job", "node"), ("instance", *inst)];
            l.extend_from_slice(extra);
            l
        };
        let nodename = inst.split(':').next().unwrap();
        fx.series(
            "node_uname_info",
            &node(&[
                ("nodename", "x"),
                ("sysname", "Linux"),
                ("release", "6.1.0-13-amd64"),
                ("machine", "x86_64"),
            ])
            .into_iter()
            .map(|(k, v)| {
                if k == "nodename" {
                    (k, nodename)
                } else {
                    (k, v)
                }
            })
            .collect::<Vec<_>>(),
            |_| Some(1.0),
        );
        fx.series("up", &node(&[]), |_| Some(1.0));
        for cpu in ["0", "1"] {
            for (mode, share) in [
                ("idle", 0.7),
                ("user", 0.2),
                ("system", 0.07),
                ("iowait", 0.03),
            ] {
                fx.series(
                    "node_cpu_seconds_total",
                    &node(&[("cpu", cpu), ("mode", mode)]),
                    move |i| Some(1e5 + i as f64 * STEP_S as f64 * share),
                );
            }
        }
        let load = move |i: i64| {
            if a && last_30m(i) {
                4.0 + 0.2 * noise(1, i)
            } else {
                0.6 + 0.1 * (i as f64 / 40.0).sin() + 0.05 * noise(2 + k, i)
            }
        };
        fx.series("node_load1", &node(&[]), move |i| Some(load(i)));
        let mem = move |i: i64| 4e9 - if a { i as f64 * 2e5 } else { 0.0 } + 1e7 * noise(3 + k, i);
        fx.series("node_memory_MemAvailable_bytes", &node(&[]), move |i| {
            Some(mem(i))
        });
        let root = move |i: i64| 8e9 - if a { i as f64 * 5e5 } else { i as f64 * 1e3 };
        let data = move |i: i64| 5e11 + 1e6 * noise(5 + k, i);
        for (device, fstype, mp, f) in [
            ("/dev/sda1", "ext4", "/", &root as &dyn Fn(i64) -> f64),
            ("/dev/sdb1", "xfs", "/data", &data),
            ("tmpfs", "tmpfs", "/run", &|_| 4e8),
        ] {
            fx.series(
                "node_filesystem_avail_bytes",
                &node(&[("device", device), ("fstype", fstype), ("mountpoint", mp)]),
                |i| Some(f(i)),
            );
        }
        for (device, rate) in [("eth0", 2e5), ("lo", 1e4)] {
            fx.series(
                "node_network_receive_bytes_total",
                &node(&[("device", device)]),
                move |i| Some(i as f64 * STEP_S as f64 * rate),
            );
        }
        fx.series(
            "node_disk_io_time_seconds_total",
            &node(&[("device", "sda")]),
            |i| Some(i as f64 * STEP_S as f64 * 0.05),
        );
        for (c, d) in [
            ("cpu", 0.001),
            ("meminfo", 0.0005),
            ("filesystem", 0.004),
            ("diskstats", 0.0008),
        ] {
            fx.series(
                "node_scrape_collector_success",
                &node(&[("collector", c)]),
                |_| Some(1.0),
            );
            fx.series(
                "node_scrape_collector_duration_seconds",
                &node(&[("collector", c)]),
                move |i| Some(d * (1.0 + 0.2 * noise(7, i))),
            );
        }

        // What the analyzer publishes for this host (honor_labels keeps the
        // source's job and instance).
        let low = move |seed: u64| move |i: i64| 0.3 + 0.25 * noise(seed, i);
        let mut analysed = Vec::new();
        for cpu in ["0", "1"] {
            analysed.push(Analysed {
                query: "cpu_idle",
                labels: node(&[("cpu", cpu), ("mode", "idle")]),
                anomaly_model: "mad",
                forecast_model: "mad",
                horizons: &["5m"],
                expected: Box::new(|_| (0.7, 0.05)),
                score: Box::new(low(10 + k)),
                breach: None,
            });
        }
        analysed.push(Analysed {
            query: "load1",
            labels: node(&[]),
            anomaly_model: "mad",
            forecast_model: "mad",
            horizons: &["1h"],
            expected: Box::new(|_| (0.6, 0.2)),
            score: Box::new(move |i| {
                if a && last_30m(i) {
                    0.9995
                } else {
                    low(20 + k)(i)
                }
            }),
            breach: None,
        });
        analysed.push(Analysed {
            query: "memory_available",
            labels: node(&[]),
            anomaly_model: "mad",
            forecast_model: "drift",
            horizons: &["1h", "6h"],
            expected: Box::new(move |i| (mem(i), 3e7)),
            score: Box::new(move |i| {
                if a && last_30m(i) {
                    0.995
                } else {
                    low(30 + k)(i)
                }
            }),
            // host-a loses 2e5 bytes per 15 s: runs out in (available / rate).
            breach: Some(Box::new(move |i| {
                if a {
                    mem(i) / (2e5 / STEP_S as f64)
                } else {
                    f64::INFINITY
                }
            })),
        });
        for (device, fstype, mp) in [("/dev/sda1", "ext4", "/"), ("/dev/sdb1", "xfs", "/data")] {
            let f: Box<dyn Fn(i64) -> f64> = if mp == "/" {
                Box::new(root)
            } else {
                Box::new(data)
            };
            let falling = a && mp == "/";
            analysed.push(Analysed {
                query: "filesystem_avail",
                labels: node(&[("device", device), ("fstype", fstype), ("mountpoint", mp)]),
                anomaly_model: "mad",
                forecast_model: "drift",
                horizons: &["4h", "24h"],
                expected: Box::new(move |i| (f(i), 1e8)),
                score: Box::new(low(40 + k)),
                // / on host-a loses 5e5 bytes per 15 s: full in (avail / rate).
                breach: Some(Box::new(move |i| {
                    if falling {
                        root(i) / (5e5 / STEP_S as f64)
                    } else {
                        f64::INFINITY
                    }
                })),
            });
        }
        analysed.push(Analysed {
            query: "network_receive",
            labels: node(&[("device", "eth0")]),
            anomaly_model: "mad",
            forecast_model: "mad",
            horizons: &["5m"],
            expected: Box::new(|_| (2e5, 3e4)),
            score: Box::new(low(50 + k)),
            breach: None,
        });
        analysed.push(Analysed {
            query: "disk_io_time",
            labels: node(&[("device", "sda")]),
            anomaly_model: "mad",
            forecast_model: "mad",
            horizons: &["5m"],
            expected: Box::new(|_| (0.05, 0.02)),
            score: Box::new(low(60 + k)),
            breach: None,
        });
        for a in &analysed {
            publish(&mut fx, a);
        }
    }

    // The analyzer's own series, as Prometheus scrapes them.
    let an = |extra: &[(&'static str, &'static str)]| {
        let mut l = vec![("job", "imd-analyzer"), ("instance", ANALYZER)];
        l.extend_from_slice(extra);
        l
    };
    let start_s = fx.start_s;
    fx.series("up", &an(&[]), |_| Some(1.0));
    let counter = |per_step: f64| move |i: i64| Some(i as f64 * per_step);
    fx.series("imd_analyzer_cycles_total", &an(&[]), counter(0.25));
    fx.series("imd_analyzer_points_total", &an(&[]), counter(0.25 * 30.0));
    fx.series("imd_analyzer_fits_total", &an(&[]), |i| {
        Some(30.0 + (i / 240) as f64 * 30.0)
    });
    fx.series("imd_analyzer_series_dropped_total", &an(&[]), |i| {
        Some((i / 200) as f64)
    });
    fx.series("imd_analyzer_read_errors_total", &an(&[]), |i| {
        Some((i / 300) as f64)
    });
    fx.series(
        "imd_analyzer_read_seconds_total",
        &an(&[]),
        counter(0.25 * 0.08),
    );
    fx.series(
        "imd_analyzer_model_seconds_total",
        &an(&[]),
        counter(0.25 * 0.02),
    );
    fx.series("imd_analyzer_last_cycle_duration_seconds", &an(&[]), |i| {
        Some(0.1 + 0.02 * noise(70, i))
    });
    fx.series(
        "imd_analyzer_last_success_timestamp_seconds",
        &an(&[]),
        move |i| Some((start_s + i * STEP_S - (i * STEP_S) % 60) as f64),
    );
    fx.series("imd_analyzer_series", &an(&[]), |_| Some(30.0));
    let src = [("source", "prometheus")];
    fx.series("imd_read_requests_total", &an(&src), counter(0.25 * 6.0));
    fx.series(
        "imd_read_bytes_total",
        &an(&src),
        counter(0.25 * 6.0 * 4000.0),
    );
    fx.series(
        "imd_read_samples_total",
        &an(&src),
        counter(0.25 * 6.0 * 50.0),
    );
    fx.series("imd_read_series_total", &an(&src), counter(0.25 * 30.0));
    fx.series(
        "imd_read_duration_seconds_total",
        &an(&src),
        counter(0.25 * 6.0 * 0.012),
    );
    fx.series(
        "imd_read_errors_total",
        &an(&[("source", "prometheus"), ("kind", "http")]),
        |i| Some((i / 300) as f64),
    );
    let am = [("alertmanager", "http://alertmanager:9093/api/v2/alerts")];
    fx.series("imd_notifications_sent_total", &an(&am), |i| {
        Some((i / 4) as f64)
    });
    fx.series("imd_notifications_errors_total", &an(&am), |i| {
        Some((i / 400) as f64)
    });
    fx.series("imd_notifications_latency_seconds_sum", &an(&am), |i| {
        Some((i / 4) as f64 * 0.003)
    });
    fx.series("imd_notifications_latency_seconds_count", &an(&am), |i| {
        Some((i / 4) as f64)
    });
    fx.series("imd_notifications_queue_length", &an(&am), |i| {
        Some((i % 3) as f64)
    });
    fx.series("imd_notifications_queue_capacity", &an(&am), |_| {
        Some(10000.0)
    });
    fx.series("imd_notifications_dropped_total", &an(&[]), |_| Some(0.0));
    fx.series("imd_notifications_alertmanagers", &an(&[]), |_| Some(1.0));
    fx.series("imd_alerts_active", &an(&[]), |i| {
        Some(if last_30m(i) { 2.0 } else { 0.0 })
    });
    fx.series("process_resident_memory_bytes", &an(&[]), |i| {
        Some(6e7 + 1e6 * noise(80, i))
    });
    fx.series("process_cpu_seconds_total", &an(&[]), counter(0.3));
    fx
}
