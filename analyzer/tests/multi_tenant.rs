//! What a Thanos, Mimir or Cortex back end asks of a remote-read client,
//! with real components (no such server is packaged in Debian): two real
//! Prometheus servers holding different tenants' data behind a loopback
//! gateway that, as Mimir's and Cortex's do, requires `X-Scope-OrgID` and a
//! bearer token and routes each tenant to its own store (401 otherwise),
//! and a third real Prometheus serving TLS through its own
//! `--web.config.file`, with a private CA. imd-analyzer is configured with
//! one source per tenant (tenant header and bearer token, inline or from a
//! file) and one with `tls_config.ca_file`; each query must see its
//! tenant's series and only those, and a source with another tenant's
//! token must get nothing. Two more analyzers with the same configuration,
//! shards 0 and 1 of 2, list the tenants' series through the gateway
//! (`/api/v1/series` with the same header and token) and together analyse
//! exactly what the unsharded one does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::proxy::{Route, start_proxy};
use common::{
    build_recent_tsdb, free_port, http_get, pki, start_analyzer, start_prometheus_on, tempdir,
    wait_for,
};

const POINTS: i64 = 240; // one hour
const METRIC: &str = "imd_tenant_test";

/// (tenant, token, instances) of the two tenants behind the gateway.
const TENANTS: [(&str, &str, [&str; 3]); 2] = [
    ("team-a", "tok-a-4Rz8", ["a-0", "a-1", "a-2"]),
    ("team-b", "tok-b-9Qw2", ["b-0", "b-1", "b-2"]),
];
const TLS_INSTANCES: [&str; 2] = ["c-0", "c-1"];

fn value(i: usize, k: i64) -> f64 {
    10.0 + i as f64 + ((k * 5 + i as i64) % 7) as f64 * 0.1
}

/// A TSDB of `instances` under `dir/name`, served by a Prometheus on a free
/// port with `extra` flags; returns it and its port.
fn start_store(
    dir: &Path,
    name: &str,
    instances: &[&str],
    extra: &[String],
) -> (common::Proc, u16) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("creating the store dir");
    let series: Vec<(&str, &str)> = instances.iter().map(|i| (METRIC, *i)).collect();
    let tsdb = build_recent_tsdb(&d, &series, POINTS, value);
    let port = free_port();
    (start_prometheus_on(&tsdb, &d, port, extra), port)
}

/// The `instance` labels of the series query `q` scores, from /metrics.
fn scored(port: u16) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let Ok((200, body)) = http_get(port, "/metrics") else {
        return out;
    };
    for line in body.lines().filter(|l| l.starts_with("imd_anomaly_score{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let len = line[start..].find('"')?;
            Some(line[start..start + len].to_string())
        };
        if let (Some(q), Some(i)) = (label("query"), label("instance")) {
            out.entry(q).or_default().insert(i);
        }
    }
    out
}

fn metric(port: u16, series: &str) -> Option<f64> {
    let (_, body) = http_get(port, "/metrics").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn tenants_behind_a_gateway_and_tls_each_read_their_own_series() {
    common::require_tool("prometheus");
    let dir = tempdir();
    let d = dir.path();
    let (_prom_a, port_a) = start_store(d, "a", &TENANTS[0].2, &[]);
    let (_prom_b, port_b) = start_store(d, "b", &TENANTS[1].2, &[]);

    // The gateway: tenant header and that tenant's token, or 401.
    let upstream = [port_a, port_b];
    let gateway = start_proxy(move |req| {
        let Some(org) = req.header("x-scope-orgid") else {
            return Route::Answer(401, "no org id".into());
        };
        let Some(i) = TENANTS.iter().position(|t| t.0 == org) else {
            return Route::Answer(401, format!("unknown tenant {org}"));
        };
        if req.header("authorization") != Some(&format!("Bearer {}", TENANTS[i].1)) {
            return Route::Answer(401, "bad token".into());
        }
        Route::Forward(upstream[i])
    });

    // The TLS store, with its own web config.
    let pki_dir = d.join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = pki::server_cert(&pki_dir);
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.cert.display(),
            pki.key.display()
        ),
    )
    .unwrap();
    let (prom_c, port_c) = start_store(
        d,
        "c",
        &TLS_INSTANCES,
        &[format!("--web.config.file={}", web.display())],
    );

    let token_file = d.join("token-b");
    std::fs::write(&token_file, format!("{}\n", TENANTS[1].1)).unwrap();
    let gw = gateway.port;
    let config = d.join("analyzer.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  infer_every: 2s\n  lookback_delta: 10m\n\
             sources:\n\
             \x20 - name: team-a\n    url: http://127.0.0.1:{gw}\n    headers: {{X-Scope-OrgID: team-a}}\n    bearer_token: {tok_a}\n\
             \x20 - name: team-b\n    url: http://127.0.0.1:{gw}\n    headers: {{X-Scope-OrgID: team-b}}\n    bearer_token_file: {tok_b}\n\
             \x20 - name: wrong\n    url: http://127.0.0.1:{gw}\n    headers: {{X-Scope-OrgID: team-a}}\n    bearer_token: {tok_wrong}\n\
             \x20 - name: tls\n    url: https://127.0.0.1:{port_c}\n    tls_config: {{ca_file: {ca}}}\n\
             queries:\n{queries}",
            tok_a = TENANTS[0].1,
            tok_b = token_file.display(),
            tok_wrong = TENANTS[1].1,
            ca = pki.ca.display(),
            queries = ["team-a", "team-b", "wrong", "tls"]
                .iter()
                .map(|s| format!(
                    "  - name: q-{s}\n    source: {s}\n    selector: {METRIC}\n    anomaly_model: mad\n    forecast_model: mad\n\
                     \x20   params: {{window: 120, min_points: 8}}\n    history: 2h\n"
                ))
                .collect::<String>(),
        ),
    )
    .unwrap();
    let (_an, port) = start_analyzer(&config, d, &[]);
    let mut shards = Vec::new();
    for i in 0..2 {
        let sd = d.join(format!("shard{i}"));
        std::fs::create_dir_all(&sd).unwrap();
        let index = format!("--shard.index={i}");
        shards.push(start_analyzer(&config, &sd, &[&index, "--shard.count=2"]));
    }

    let want: BTreeMap<String, BTreeSet<String>> = [
        ("q-team-a", &TENANTS[0].2[..]),
        ("q-team-b", &TENANTS[1].2[..]),
        ("q-tls", &TLS_INSTANCES[..]),
    ]
    .iter()
    .map(|(q, i)| (q.to_string(), i.iter().map(|s| s.to_string()).collect()))
    .collect();
    let mut got = BTreeMap::new();
    wait_for("every tenant's series to be scored", 60, || {
        got = scored(port);
        got == want
    });
    assert_eq!(
        got,
        want,
        "each source reads its tenant's series and only those; TLS store log:\n{}",
        prom_c.stderr()
    );

    // The shards: disjoint, together the same series, having listed them
    // through the gateway as their tenant.
    let mut union: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    wait_for("the two shards to cover every tenant's series", 60, || {
        union.clear();
        for (_, p) in &shards {
            for (q, instances) in scored(*p) {
                union.entry(q).or_default().extend(instances);
            }
        }
        union == want
    });
    let (a, b) = (scored(shards[0].1), scored(shards[1].1));
    for (q, instances) in &a {
        let other = b.get(q).cloned().unwrap_or_default();
        assert!(
            instances.is_disjoint(&other),
            "{q}: both shards analyse {:?}",
            instances.intersection(&other).collect::<Vec<_>>()
        );
    }
    for (p, source) in [
        (shards[0].1, "team-a"),
        (shards[1].1, "team-b"),
        (shards[0].1, "tls"),
    ] {
        let listed = metric(
            p,
            &format!("imd_read_shard_reads_total{{source=\"{source}\",path=\"listed\"}}"),
        );
        assert!(
            listed.is_some_and(|n| n >= 1.0),
            "{source}: listed {listed:?}"
        );
    }

    // The wrong token was refused by the gateway, and counted as such.
    wait_for("the wrong token's refusals to be counted", 30, || {
        metric(
            port,
            "imd_read_errors_total{source=\"wrong\",kind=\"http_status\"}",
        )
        .is_some_and(|n| n >= 1.0)
    });
    let requests = gateway.requests();
    for (tenant, token, _) in TENANTS {
        let forwarded = requests
            .iter()
            .filter(|(h, r)| {
                h.header("x-scope-orgid") == Some(tenant)
                    && h.header("authorization") == Some(&format!("Bearer {token}"))
                    && h.method == "POST"
                    && h.path() == "/api/v1/read"
                    && matches!(r, Route::Forward(_))
            })
            .count();
        assert!(forwarded > 0, "{tenant}: no remote read forwarded");
        assert!(
            requests
                .iter()
                .any(|(h, r)| h.header("x-scope-orgid") == Some(tenant)
                    && h.method == "GET"
                    && h.path() == "/api/v1/series"
                    && matches!(r, Route::Forward(_))),
            "{tenant}: no series listing forwarded"
        );
    }
    assert!(
        requests.iter().any(|(h, r)| h.header("authorization")
            == Some(&format!("Bearer {}", TENANTS[1].1))
            && h.header("x-scope-orgid") == Some("team-a")
            && matches!(r, Route::Answer(401, _))),
        "the wrong source's reads reached the gateway and were refused"
    );
    assert_eq!(
        common::http_get_status(gw, "/api/v1/read").ok(),
        Some(401),
        "no tenant, no answer"
    );
}
