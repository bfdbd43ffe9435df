//! Sharding across replicas, with the real components: a TSDB of 30 series
//! built by `promtool`, a real Prometheus serving it, three imd-analyzer
//! replicas (`--shard.index` 0, 1 and 2 of 3, the last one finding its index
//! from a StatefulSet-style `HOSTNAME`) and one unsharded analyzer, each
//! pair of them sending alerts to a real Alertmanager. Every series must be
//! analysed by exactly one replica, the union must be the unsharded set with
//! the same scores, and the alerts the replicas raise together must be the
//! ones the unsharded analyzer raises. Each replica must also read only
//! about its own share of the samples: it lists the series through
//! `/api/v1/series` and reads only those it owns
//! (`imd_read_shard_reads_total{path="listed"}`), which
//! `imd_read_samples_total` per read shows against the unsharded reader.
//! A fourth replica, shard 0 again, reads through a loopback front that
//! refuses the series API: it must fall back to reading everything
//! (`path="filtered"`) and analyse exactly what replica 0 analyses.
//! A second test splits a multivariate query: replicas own whole groups
//! (by their `group_by` labels), list, and decode only their groups' inputs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::proxy::{Route, start_proxy};
use common::{
    Proc, am_active_alerts as am_alerts, build_recent_tsdb, free_port, http_get, require_tool,
    start_alertmanager, start_analyzer_as, start_prometheus_on, tempdir, wait_for,
};

const SERIES: usize = 30;
const POINTS: i64 = 240; // one hour

/// Series `i` is quiet noise; every seventh ends in a spike.
fn value(i: usize, k: i64) -> f64 {
    if i % 7 == 0 && k == POINTS - 1 {
        return 100.0;
    }
    10.0 + ((k * 7 + i as i64 * 3) % 11) as f64 * 0.1
}

/// Starts one analyzer reading Prometheus by remote read and alerting to
/// `am_port`; `shard` are its sharding flags, `hostname` its `HOSTNAME`.
fn start_analyzer(
    dir: &Path,
    name: &str,
    prom_port: u16,
    am_port: u16,
    shard: &[&str],
    hostname: &str,
) -> (Proc, u16) {
    start_analyzer_with(dir, name, prom_port, am_port, shard, hostname, "")
}

/// As [`start_analyzer`], with more settings of the source (YAML lines).
fn start_analyzer_with(
    dir: &Path,
    name: &str,
    prom_port: u16,
    am_port: u16,
    shard: &[&str],
    hostname: &str,
    source: &str,
) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 2s\n  lookback_delta: 10m\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n{source}\
             queries:\n  - name: q\n    selector: imd_shard_test\n    anomaly_model: mad\n    forecast_model: mad\n\
             \x20   params: {{window: 120, min_points: 8}}\n    history: 2h\n\
             alerting:\n  alertmanagers:\n    - url: http://127.0.0.1:{am_port}\n  resend_delay: 1s\n\
             \x20 rules:\n    - alert: ImdShardTest\n      score_above: 0.99\n      labels: {{severity: warning}}\n"
        ),
    )
    .expect("writing the analyzer config");
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join(name).display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(shard.iter().map(|s| s.to_string()));
    // Proc::spawn inherits the environment; HOSTNAME is set for this child
    // through a wrapper so that `--shard.index=auto` sees a pod name.
    let env = require_tool("env");
    let mut full = vec![
        format!("HOSTNAME={hostname}"),
        env!("CARGO_BIN_EXE_imd-analyzer").to_string(),
    ];
    full.extend(args);
    let mut p = Proc::spawn(name, &env, &full, dir);
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(60));
    (p, port)
}

/// `imd_anomaly_score` of query `q` by label set (as written), from /metrics.
fn scores(port: u16) -> BTreeMap<String, f64> {
    let Ok((200, body)) = http_get(port, "/metrics") else {
        return BTreeMap::new();
    };
    body.lines()
        .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains("query=\"q\""))
        .filter_map(|l| {
            let (labels, v) = l.rsplit_once(' ')?;
            Some((labels.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The value of the self-metric line starting with `series` (name and
/// labels as written), 0 when absent.
fn metric(port: u16, series: &str) -> f64 {
    let Ok((_, body)) = http_get(port, "/metrics") else {
        return 0.0;
    };
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Samples decoded from the source and reads made so far.
fn samples_and_reads(port: u16) -> (f64, f64) {
    (
        metric(port, "imd_read_samples_total{source=\"prom\"}"),
        metric(port, "imd_read_requests_total{source=\"prom\"}"),
    )
}

/// Samples decoded per read by each analyzer over its next three reads.
/// A first read decodes a series' whole history and the later ones only
/// its newest chunk, so only later reads are compared across processes
/// (every analyzer here has made its first read before this is called).
fn steady_samples_per_read(ports: &[u16]) -> Vec<f64> {
    let before: Vec<(f64, f64)> = ports.iter().map(|p| samples_and_reads(*p)).collect();
    let mut after = before.clone();
    wait_for("three more reads by every analyzer", 30, || {
        after = ports.iter().map(|p| samples_and_reads(*p)).collect();
        after.iter().zip(&before).all(|(a, b)| a.1 >= b.1 + 3.0)
    });
    after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.0 - b.0) / (a.1 - b.1))
        .collect()
}

fn shard_info(port: u16) -> Option<String> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find(|l| l.starts_with("imd_analyzer_shard_info{"))
        .map(String::from)
}

#[test]
fn three_replicas_cover_every_series_once_and_raise_the_same_alerts() {
    require_tool("prometheus");
    let dir = tempdir();
    let instances: Vec<String> = (0..SERIES).map(|i| format!("host-{i:02}")).collect();
    let series: Vec<(&str, &str)> = instances
        .iter()
        .map(|i| ("imd_shard_test", i.as_str()))
        .collect();
    let tsdb = build_recent_tsdb(dir.path(), &series, POINTS, value);
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let (_am_sharded, am_sharded) = start_alertmanager(dir.path(), "am-sharded");
    let (_am_single, am_single) = start_alertmanager(dir.path(), "am-single");

    let (_single, single) = start_analyzer(
        dir.path(),
        "single",
        prom_port,
        am_single,
        &[],
        "imd-analyzer-0",
    );
    let mut replicas = Vec::new();
    for i in 0..3 {
        let (index, host) = if i == 2 {
            // The StatefulSet way: the index comes from the pod's name.
            (
                "--shard.index=auto".to_string(),
                "imd-analyzer-2".to_string(),
            )
        } else {
            (format!("--shard.index={i}"), "not-a-pod".to_string())
        };
        replicas.push(start_analyzer(
            dir.path(),
            &format!("shard{i}"),
            prom_port,
            am_sharded,
            &[&index, "--shard.count=3"],
            &host,
        ));
    }

    // Shard 0 again, behind a front with no series API.
    let no_listing = start_proxy(move |req| {
        if req.path() == "/api/v1/series" {
            Route::Answer(404, "404 page not found".into())
        } else {
            Route::Forward(prom_port)
        }
    });
    let (_fallback, fallback) = start_analyzer(
        dir.path(),
        "fallback0",
        no_listing.port,
        am_sharded,
        &["--shard.index=0", "--shard.count=3"],
        "not-a-pod",
    );

    // Shard 1 through query_range: listed, then read by `or` of exact
    // selectors.
    let (_by_range, by_range) = start_analyzer_with(
        dir.path(),
        "range1",
        prom_port,
        am_sharded,
        &["--shard.index=1", "--shard.count=3"],
        "not-a-pod",
        "    type: query_range\n    step: 15s\n",
    );

    let all = {
        let mut s = BTreeMap::new();
        wait_for("the unsharded analyzer to score all 30 series", 60, || {
            s = scores(single);
            s.len() == SERIES
        });
        s
    };
    assert_eq!(
        shard_info(single).as_deref(),
        Some("imd_analyzer_shard_info{index=\"0\",count=\"1\"} 1")
    );

    let mut union: BTreeMap<String, f64> = BTreeMap::new();
    for (i, (_, port)) in replicas.iter().enumerate() {
        assert_eq!(
            shard_info(*port),
            Some(format!(
                "imd_analyzer_shard_info{{index=\"{i}\",count=\"3\"}} 1"
            ))
        );
        let part = scores(*port);
        assert!(
            !part.is_empty() && part.len() < SERIES,
            "replica {i} analyses {} of {SERIES} series",
            part.len()
        );
        for (labels, score) in part {
            assert!(
                union.insert(labels.clone(), score).is_none(),
                "{labels} analysed by two replicas"
            );
        }
    }
    assert_eq!(
        union.keys().collect::<Vec<_>>(),
        all.keys().collect::<Vec<_>>(),
        "the replicas together analyse exactly the unsharded set"
    );
    for (labels, score) in &all {
        let s = union[labels];
        assert!(
            (s - score).abs() < 1e-9,
            "{labels}: sharded {s}, unsharded {score}"
        );
    }
    // Without listing: the same series, read whole and filtered.
    let mut got = BTreeMap::new();
    wait_for(
        "the replica without listing to score its series",
        30,
        || {
            got = scores(fallback);
            got.len() == scores(replicas[0].1).len()
        },
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        scores(replicas[0].1).keys().collect::<Vec<_>>(),
        "with and without listing, shard 0 analyses the same series"
    );
    let path = |port: u16, p: &str| {
        metric(
            port,
            &format!("imd_read_shard_reads_total{{source=\"prom\",path=\"{p}\"}}"),
        )
    };
    assert!(path(fallback, "filtered") >= 1.0 && path(fallback, "listed") == 0.0);
    assert_eq!(
        path(single, "listed"),
        0.0,
        "an unsharded analyzer reads directly"
    );
    for (i, (_, port)) in replicas.iter().enumerate() {
        let (listed, filtered) = (path(*port, "listed"), path(*port, "filtered"));
        assert!(
            listed >= 1.0 && filtered == 0.0,
            "replica {i}: listed {listed}, filtered {filtered}"
        );
    }

    // The read cost: each replica decodes its share of the samples the
    // unsharded analyzer decodes per read (the same chunks of fewer
    // series); without listing, a replica decodes them all.
    let mut ports = vec![single, fallback];
    ports.extend(replicas.iter().map(|r| r.1));
    let per_read = steady_samples_per_read(&ports);
    let (single_per_read, fallback_per_read) = (per_read[0], per_read[1]);
    assert!(single_per_read > 0.0);
    eprintln!(
        "samples per read: unsharded {single_per_read:.0}, shard 0 without listing {fallback_per_read:.0}"
    );
    assert!(
        (fallback_per_read - single_per_read).abs() <= single_per_read * 0.1,
        "without listing a replica reads every series: {fallback_per_read:.0} per read, \
         one analyzer {single_per_read:.0}"
    );
    let mut replicas_per_read = 0.0;
    for (i, (_, port)) in replicas.iter().enumerate() {
        let owned = scores(*port).len() as f64;
        let got = per_read[2 + i];
        let share = single_per_read * owned / SERIES as f64;
        eprintln!(
            "replica {i}: {owned} of {SERIES} series, {got:.0} samples per read (its share: {share:.0})"
        );
        assert!(
            (got - share).abs() <= share * 0.1 + 1.0,
            "replica {i} reads {got:.0} samples per read for {owned} series; \
             the unsharded analyzer {single_per_read:.0} for {SERIES}"
        );
        replicas_per_read += got;
    }
    assert!(
        no_listing
            .requests()
            .iter()
            .any(|(h, r)| h.path() == "/api/v1/series" && matches!(r, Route::Answer(404, _))),
        "the replica tried to list first"
    );
    // query_range: the same series as replica 1 (sampled points, so the
    // scores may differ), listed.
    wait_for("the query_range replica to score its series", 30, || {
        scores(by_range).keys().collect::<Vec<_>>()
            == scores(replicas[1].1).keys().collect::<Vec<_>>()
    });
    assert!(
        metric(
            by_range,
            "imd_read_shard_reads_total{source=\"prom\",path=\"listed\"}"
        ) >= 1.0
    );
    assert!(
        replicas_per_read <= single_per_read * 1.1,
        "together the replicas read {replicas_per_read:.0} samples per read, one analyzer {single_per_read:.0}"
    );

    let spikes = all.values().filter(|s| **s >= 0.99).count();
    assert_eq!(spikes, SERIES.div_ceil(7), "the spiking series score high");

    // The alerts: the same label sets reach both Alertmanagers.
    let mut expected = BTreeSet::new();
    wait_for(
        "the unsharded analyzer's alerts in Alertmanager",
        30,
        || {
            expected = am_alerts(am_single);
            expected.len() == spikes
        },
    );
    let mut got = BTreeSet::new();
    wait_for("the replicas' alerts in Alertmanager", 30, || {
        got = am_alerts(am_sharded);
        got.len() == spikes
    });
    assert_eq!(got, expected);
}

/// Starts a replica (in its own folder under `dir`) whose one query is
/// multivariate: `imd_mv_a` and `imd_mv_b` grouped by instance.
fn start_multivariate(dir: &Path, name: &str, prom_port: u16, shard: &[&str]) -> (Proc, u16) {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).expect("creating the replica's folder");
    let config = home.join("imd.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 2s\n  lookback_delta: 10m\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
             queries:\n  - name: mv\n    multivariate:\n      inputs:\n\
             \x20       a: {{selector: imd_mv_a}}\n        b: {{selector: imd_mv_b}}\n\
             \x20     group_by: [instance]\n    anomaly_model: iforest\n    history: 2h\n"
        ),
    )
    .expect("writing the analyzer config");
    start_analyzer_as(name, &config, &home, shard, Duration::from_secs(60))
}

/// The instances whose group query `mv` scores, from /metrics.
fn scored_groups(port: u16) -> BTreeSet<String> {
    let Ok((200, body)) = http_get(port, "/metrics") else {
        return BTreeSet::new();
    };
    body.lines()
        .filter(|l| l.starts_with("imd_anomaly_score{") && l.contains("query=\"mv\""))
        .filter_map(|l| {
            let rest = &l[l.find("instance=\"")? + 10..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

#[test]
fn replicas_split_a_multivariate_query_by_group_and_read_only_their_groups() {
    require_tool("prometheus");
    let dir = tempdir();
    const GROUPS: usize = 12;
    let instances: Vec<String> = (0..GROUPS).map(|i| format!("host-{i:02}")).collect();
    let series: Vec<(&str, &str)> = instances
        .iter()
        .flat_map(|i| [("imd_mv_a", i.as_str()), ("imd_mv_b", i.as_str())])
        .collect();
    let tsdb = build_recent_tsdb(dir.path(), &series, POINTS, |i, k| {
        // b follows a on every host.
        let a = 10.0 + ((k * 7 + (i / 2) as i64 * 3) % 11) as f64;
        if i % 2 == 0 { a } else { 2.0 * a + 1.0 }
    });
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, dir.path(), prom_port, &[]);
    let (_single, single) = start_multivariate(dir.path(), "mv-single", prom_port, &[]);
    let replicas: Vec<(Proc, u16)> = (0..3)
        .map(|i| {
            start_multivariate(
                dir.path(),
                &format!("mv-shard{i}"),
                prom_port,
                &[&format!("--shard.index={i}"), "--shard.count=3"],
            )
        })
        .collect();
    let mut all = BTreeSet::new();
    wait_for("the unsharded analyzer to score every group", 60, || {
        all = scored_groups(single);
        all.len() == GROUPS
    });
    let mut union = BTreeSet::new();
    let mut total = 0;
    wait_for("the replicas to score every group between them", 60, || {
        let parts: Vec<BTreeSet<String>> = replicas.iter().map(|r| scored_groups(r.1)).collect();
        total = parts.iter().map(BTreeSet::len).sum();
        union = parts.into_iter().flatten().collect();
        union.len() == GROUPS
    });
    assert_eq!(union, all, "the replicas together score every group");
    assert_eq!(total, GROUPS, "each group is scored by exactly one replica");
    for (i, (_, port)) in replicas.iter().enumerate() {
        let listed = metric(
            *port,
            "imd_read_shard_reads_total{source=\"prom\",path=\"listed\"}",
        );
        let filtered = metric(
            *port,
            "imd_read_shard_reads_total{source=\"prom\",path=\"filtered\"}",
        );
        assert!(
            listed >= 2.0 && filtered == 0.0,
            "replica {i}: listed {listed}, filtered {filtered} (one listing per input)"
        );
    }
    // Each replica decodes only its groups' share of what the unsharded
    // analyzer decodes per read.
    let mut ports = vec![single];
    ports.extend(replicas.iter().map(|r| r.1));
    let per_read = steady_samples_per_read(&ports);
    for (i, (_, port)) in replicas.iter().enumerate() {
        let share = per_read[0] * scored_groups(*port).len() as f64 / GROUPS as f64;
        let got = per_read[1 + i];
        assert!(
            (got - share).abs() <= share * 0.1 + 1.0,
            "replica {i} decodes {got:.0} samples per read, its share {share:.0} (unsharded {:.0})",
            per_read[0]
        );
    }
}
