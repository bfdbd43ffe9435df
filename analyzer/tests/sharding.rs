//! Sharding across replicas, with the real components: a TSDB of 30 series
//! built by `promtool`, a real Prometheus serving it, three imd-analyzer
//! replicas (`--shard.index` 0, 1 and 2 of 3, the last one finding its index
//! from a StatefulSet-style `HOSTNAME`) and one unsharded analyzer, each
//! pair of them sending alerts to a real Alertmanager. Every series must be
//! analysed by exactly one replica, the union must be the unsharded set with
//! the same scores, and the alerts the replicas raise together must be the
//! ones the unsharded analyzer raises.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::{
    Proc, am_active_alerts as am_alerts, build_recent_tsdb, free_port, http_get, require_tool,
    start_alertmanager, start_prometheus_on, tempdir, wait_for,
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

/// Starts one analyzer reading Prometheus and alerting to `am_port`;
/// `shard` are its sharding flags, `hostname` its `HOSTNAME`.
fn start_analyzer(
    dir: &Path,
    name: &str,
    prom_port: u16,
    am_port: u16,
    shard: &[&str],
    hostname: &str,
) -> (Proc, u16) {
    let port = free_port();
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 2s\n  lookback_delta: 10m\n\
             sources:\n  - name: prom\n    url: http://127.0.0.1:{prom_port}\n\
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
