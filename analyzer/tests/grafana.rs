//! The Grafana dashboards (`grafana/dashboards/*.json`) and provisioning
//! (`grafana/provisioning/`).
//!
//! Every panel query, annotation query and variable query is run against a
//! real Prometheus holding imd's series: a TSDB is built with `promtool tsdb
//! create-blocks-from openmetrics` from series generated here (two hosts'
//! node metrics, the analyzer's published series for the queries of
//! `examples/single-host/imd-analyzer.yml` plus the demo's, the analyzer's
//! self-metrics; the two hours ending a minute ago), `rules/recording.yml` is
//! backfilled into it with `promtool tsdb create-blocks-from rules` (the
//! drill-down panels use `imd:source_value`), and each expression, with the
//! dashboard variables set to values the variable queries return, must
//! answer `/api/v1/query_range` without error and with data; every series
//! name it uses must exist (so `x or vector(0)` cannot hide a typo).
//!
//! The JSON is checked against Grafana's schema package (`@grafana/schema`
//! on npm, TypeScript types generated from Grafana's CUE schemas): each
//! dashboard, typed with the dashboard type and the option types of its
//! panel types (`grafana/schema.ts`), must pass `tsc`. A structural check
//! (`grafana/structure.rs`) adds what a schema cannot see: unique panel ids,
//! grid positions that do not overlap, the provisioned data source,
//! variables that resolve, links to existing dashboards.

mod common;
#[path = "grafana/fixture.rs"]
mod fixture;
#[path = "grafana/structure.rs"]
mod structure;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{
    Proc, analyzer_metric_names, free_port, http_get, repo_root, require_tool, run_capture,
    start_prometheus_on, tempdir, tsdb_from_openmetrics, unix_now_s, url_encode,
};
use fixture::{ANALYZER, STEP_S, fixture};
use imd_testkit::prom_query;
use serde_json::Value;
use structure::{DATASOURCE_UID, check_dashboard, dashboard_files, expressions, load};

fn uids() -> BTreeSet<String> {
    dashboard_files()
        .iter()
        .map(|f| load(f)["uid"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn dashboards_pass_the_structural_check() {
    let files = dashboard_files();
    assert_eq!(files.len(), 4, "{files:?}");
    let uids = uids();
    assert_eq!(
        uids.len(),
        files.len(),
        "dashboard uids are not unique: {uids:?}"
    );
    for f in &files {
        let errs = check_dashboard(&load(f), &uids);
        assert!(errs.is_empty(), "{}:\n{}", f.display(), errs.join("\n"));
    }
    let want: BTreeSet<String> = [
        "imd-host-overview",
        "imd-anomaly-explorer",
        "imd-forecasts",
        "imd-health",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(uids, want);
}

#[test]
fn the_structural_check_finds_what_is_wrong() {
    let f = repo_root().join("grafana/dashboards/imd-forecasts.json");
    let mut d = load(&f);
    let uids = uids();
    assert!(check_dashboard(&d, &uids).is_empty());
    let panels = d["panels"].as_array_mut().unwrap();
    // Duplicate id, overlapping grid position, unknown variable, foreign
    // data source, target without expr, link to a missing dashboard.
    let first_id = panels[1]["id"].clone();
    panels[2]["id"] = first_id;
    panels[3]["gridPos"] = panels[1]["gridPos"].clone();
    panels[4]["targets"][0]["expr"] = "up{instance=\"$nosuch\"}".into();
    panels[4]["datasource"]["uid"] = "someone-elses".into();
    panels[5]["targets"][0]["expr"] = "".into();
    panels[1]["description"] = "see /d/imd-missing".into();
    d["schemaVersion"] = 20.into();
    let errs = check_dashboard(&d, &uids).join("\n");
    for want in [
        "not unique",
        "overlaps",
        "$nosuch is not a variable",
        "someone-elses",
        "no expr",
        "unknown dashboard imd-missing",
        "schemaVersion",
    ] {
        assert!(errs.contains(want), "{want:?} not reported:\n{errs}");
    }
}

/// Writes each dashboard as TypeScript typed by `grafana/schema.ts` into
/// `dir`, plus `extra` files, and runs `tsc`; returns (success, output).
fn type_check(dir: &Path, extra: &[(&str, String)]) -> (bool, String) {
    let modules = common::node_modules("@grafana/schema");
    common::node_modules("typescript");
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    std::fs::copy(
        repo_root().join("analyzer/tests/grafana/schema.ts"),
        dir.join("schema.ts"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tsconfig.json"),
        r#"{"compilerOptions": {"strict": true, "noEmit": true, "module": "esnext",
            "moduleResolution": "bundler", "target": "es2020", "skipLibCheck": true},
            "include": ["*.ts"]}"#,
    )
    .unwrap();
    let typed = |json: &str| {
        format!(
            "import type {{ ImdDashboard }} from './schema';\nexport const d: ImdDashboard = {json};\n"
        )
    };
    for f in dashboard_files() {
        let name = f.file_stem().unwrap().to_string_lossy().replace('-', "_");
        std::fs::write(
            dir.join(format!("{name}.ts")),
            typed(&std::fs::read_to_string(&f).unwrap()),
        )
        .unwrap();
    }
    for (name, json) in extra {
        std::fs::write(dir.join(format!("{name}.ts")), typed(json)).unwrap();
    }
    let tsc = modules.join("typescript/bin/tsc");
    let out = std::process::Command::new(require_tool("node"))
        .arg(tsc)
        .arg("-p")
        .arg(dir)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn dashboards_match_grafanas_schema_package() {
    // The four dashboards, and a copy of one with three planted mistakes
    // that the schema must catch: a value outside an enum, an unknown key
    // in a panel's field config, a number given as a string.
    let text =
        std::fs::read_to_string(repo_root().join("grafana/dashboards/imd-health.json")).unwrap();
    assert!(text.contains("\"showPoints\": \"never\""));
    let broken = text
        .replacen("\"showPoints\": \"never\"", "\"showPoints\": \"nevr\"", 1)
        .replacen("\"fillOpacity\": 10,", "\"fillOpacty\": 10,", 1)
        .replacen("\"schemaVersion\": 39", "\"schemaVersion\": \"39\"", 1);
    let dir = tempdir();
    let (ok, out) = type_check(dir.path(), &[("planted_mistakes", broken)]);
    assert!(!ok, "tsc accepted the planted mistakes:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("error TS")).collect();
    let ours: Vec<&&str> = errors
        .iter()
        .filter(|l| !l.starts_with("planted_mistakes.ts"))
        .collect();
    assert!(
        ours.is_empty(),
        "the dashboards do not match Grafana's schema:\n{out}"
    );
    for want in [
        "\"nevr\"",
        "fillOpacty",
        "'string' is not assignable to type 'number'",
    ] {
        assert!(
            errors.iter().any(|l| l.contains(want)),
            "the schema check missed {want}:\n{out}"
        );
    }
}

#[test]
fn provisioning_points_at_the_dashboards_and_the_data_source_they_use() {
    let ds: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            repo_root().join("grafana/provisioning/datasources/prometheus.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ds["apiVersion"].as_u64(), Some(1));
    let list = ds["datasources"].as_sequence().unwrap();
    assert_eq!(list.len(), 1);
    let p = &list[0];
    assert_eq!(p["uid"].as_str(), Some(DATASOURCE_UID));
    assert_eq!(p["type"].as_str(), Some("prometheus"));
    assert_eq!(p["access"].as_str(), Some("proxy"));
    assert!(p["url"].as_str().unwrap().starts_with("http"));

    let dp: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("grafana/provisioning/dashboards/imd.yml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(dp["apiVersion"].as_u64(), Some(1));
    let prov = &dp["providers"].as_sequence().unwrap()[0];
    assert_eq!(prov["type"].as_str(), Some("file"));
    assert!(prov["options"]["path"].as_str().unwrap().starts_with('/'));
}

#[test]
fn dashboards_use_only_series_the_analyzer_publishes() {
    let known = analyzer_metric_names();
    let re = regex::Regex::new(r"(?:^|[^:\w])(imd_[a-z_]+)\b").unwrap();
    let mut used = BTreeSet::new();
    for f in dashboard_files() {
        for (_, e) in expressions(&load(&f)) {
            used.extend(re.captures_iter(&e).map(|c| c[1].to_string()));
        }
    }
    assert!(used.len() >= 20, "{used:?}");
    let unknown: Vec<_> = used.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "series the analyzer does not publish: {unknown:?}"
    );
}

/// Values given to the dashboards' variables (each must be among what the
/// variable's query returns) and to Grafana's built-ins.
fn variable_values() -> BTreeMap<&'static str, &'static str> {
    [
        ("job", "node"),
        ("instance", "host-a:9100"),
        ("query", "memory_available"),
        ("horizon", "1h"),
        ("analyzer_job", "imd-analyzer"),
        ("analyzer", ANALYZER),
        ("exporter_job", "node"),
        ("exporter", "host-a:9100"),
        ("datasource", DATASOURCE_UID),
        ("__rate_interval", "1m"),
        ("__interval", "1m"),
        ("__range", "2h"),
    ]
    .into()
}

fn substitute(text: &str, values: &BTreeMap<&str, &str>) -> String {
    let re = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]")
        .unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        let name = c.get(1).or(c.get(2)).or(c.get(3)).unwrap().as_str();
        values
            .get(name)
            .unwrap_or_else(|| panic!("no test value for ${name} in {text}"))
            .to_string()
    })
    .into_owned()
}

fn api(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let v: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"));
    assert!(
        status == 200 && v["status"] == "success",
        "GET {path}: HTTP {status}: {body}"
    );
    v
}

/// The first time, in seconds, to backfill recording rules from: `from`, or
/// the next 2-hour block boundary when `from` lies in the last evaluation
/// interval before one. promtool (2.42 at least) skips a rule group's whole
/// backfill, exiting 0, when the group's first evaluation falls past the end
/// of the first 2-hour block (prometheus/prometheus#19714). Where a group's
/// evaluations fall within the interval depends on a hash of the rules
/// file's path, so the same start failed in some clones and not in others.
fn backfill_start(from: i64, interval_s: i64) -> i64 {
    const BLOCK_S: i64 = 2 * 3600;
    let into = from.rem_euclid(BLOCK_S);
    if into > BLOCK_S - interval_s {
        from - into + BLOCK_S
    } else {
        from
    }
}

/// The series names recorded by the rules of `rules` that read only stored
/// series: promtool evaluates every rule against the Prometheus it queries,
/// so a rule over another rule's output has nothing to read there.
fn recorded_from_stored_series(rules: &Path) -> BTreeSet<String> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(rules).unwrap()).unwrap();
    let all: Vec<(String, String)> = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter_map(|r| Some((r["record"].as_str()?.into(), r["expr"].as_str()?.into())))
        .collect();
    let name = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let recorded: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    all.iter()
        .filter(|(_, expr)| !name.find_iter(expr).any(|m| recorded.contains(m.as_str())))
        .map(|(n, _)| n.clone())
        .collect()
}

/// Builds the TSDB of the two hours ending a minute before `now_s` with the
/// recording rules backfilled, checks that every rule over stored series
/// recorded some, and starts Prometheus on it; returns (Prometheus, port,
/// start_s, end_s).
fn prometheus_with_fixture(dir: &Path, now_s: i64) -> (Proc, u16, i64, i64) {
    let promtool = require_tool("promtool");
    let end_s = (now_s - 60) / STEP_S * STEP_S;
    let fx = fixture(end_s);
    let tsdb = tsdb_from_openmetrics(dir, &fx.text());
    let port = free_port();
    let mut prom = start_prometheus_on(&tsdb, dir, port, &[]);

    // Backfill rules/recording.yml over the fixture's window (its groups
    // evaluate every minute).
    let rules_out = dir.join("rules-blocks");
    let url = format!("--url=http://127.0.0.1:{port}");
    let (start, end) = (
        format!("--start={}", backfill_start(fx.start_s + 600, 60)),
        format!("--end={end_s}"),
    );
    let out = format!("--output-dir={}", rules_out.display());
    let rules = repo_root().join("rules/recording.yml");
    let (ok, said) = run_capture(
        &promtool,
        &[
            "tsdb",
            "create-blocks-from",
            "rules",
            &start,
            &end,
            &url,
            &out,
            "--eval-interval=60s",
            rules.to_str().unwrap(),
        ],
    );
    assert!(ok, "promtool failed:\n{said}");
    // promtool writes no block (and no dir) when every rule came back empty.
    let blocks = std::fs::read_dir(&rules_out).unwrap_or_else(|e| {
        let held = prom_query(port, "count({__name__=~\".+\"})");
        panic!(
            "promtool made no recording-rule blocks in {} ({e}); series in the Prometheus \
             it queried: {held:?}\npromtool said:\n{said}\nPrometheus said:\n{}",
            rules_out.display(),
            prom.stderr()
        )
    });
    prom.stop();
    for b in blocks {
        let b = b.unwrap();
        std::fs::rename(b.path(), tsdb.join(b.file_name())).unwrap();
    }
    let port = free_port();
    let prom = start_prometheus_on(&tsdb, dir, port, &[]);

    let names = api(
        port,
        &format!(
            "/api/v1/label/__name__/values?start={}&end={end_s}",
            fx.start_s
        ),
    );
    let held: BTreeSet<String> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    let missing: Vec<_> = recorded_from_stored_series(&rules)
        .difference(&held)
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "the backfill recorded nothing for {missing:?} (from {start} {end})\npromtool said:\n{said}"
    );
    (prom, port, fx.start_s, end_s)
}

#[test]
fn the_rule_backfill_fills_every_rule_when_it_starts_just_before_a_block_boundary() {
    // The backfill's first point 15 s before a 2-hour boundary, a day ago:
    // without `backfill_start`, promtool would skip each group whose
    // evaluations fall in the first 45 s of a minute (three in four).
    let boundary = unix_now_s() / 7200 * 7200 - 24 * 3600;
    let end_s = boundary - 15 + 6600;
    assert_eq!(fixture(end_s).start_s + 600, boundary - 15);
    let checked = recorded_from_stored_series(&repo_root().join("rules/recording.yml"));
    for name in [
        "imd:source_value",
        "imd:anomaly_score:avg5m",
        "instance:imd_anomalous_series:ratio",
    ] {
        assert!(checked.contains(name), "{checked:?}");
    }
    let dir = tempdir();
    prometheus_with_fixture(dir.path(), end_s + 60);
    assert_eq!(backfill_start(boundary - 15, 60), boundary);
    assert_eq!(backfill_start(boundary - 60, 60), boundary - 60);
    assert_eq!(backfill_start(boundary, 60), boundary);
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let dir = tempdir();
    let (_prom, port, start_s, end_s) = prometheus_with_fixture(dir.path(), unix_now_s());
    let values = variable_values();
    let window = format!("start={start_s}&end={end_s}");
    let name_re = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{").unwrap();
    let mut checked = 0;
    let label_values = regex::Regex::new(r"^label_values\((.*),\s*([a-zA-Z_]+)\)$").unwrap();
    let mut failures = Vec::new();
    for f in dashboard_files() {
        let d = load(&f);
        let file = f.file_name().unwrap().to_string_lossy().to_string();

        // Variable queries answer, and the values used below are among their answers.
        for v in d["templating"]["list"].as_array().unwrap() {
            let Some(q) = v["query"]["query"].as_str() else {
                continue;
            };
            let caps = label_values
                .captures(q)
                .unwrap_or_else(|| panic!("{file}: variable query {q}"));
            let sel = substitute(&caps[1], &values);
            let label = &caps[2];
            let r = api(
                port,
                &format!(
                    "/api/v1/label/{label}/values?match[]={}&{window}",
                    url_encode(&sel)
                ),
            );
            let got: Vec<&str> = r["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let name = v["name"].as_str().unwrap();
            if !got.contains(&values[name]) {
                failures.push(format!(
                    "{file}: variable {name} ({q}) returns {got:?}, not {}",
                    values[name]
                ));
            }
            checked += 1;
        }

        for (at, expr) in expressions(&d) {
            let e = substitute(&expr, &values);
            // Every series the expression names exists.
            for c in name_re.captures_iter(&e) {
                let m = &c[1];
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&m)
                {
                    continue;
                }
                let r = api(
                    port,
                    &format!("/api/v1/series?match[]={}&{window}", url_encode(m)),
                );
                if r["data"].as_array().is_none_or(Vec::is_empty) {
                    failures.push(format!("{file} {at}: no series {m}"));
                }
            }
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={end_s}&step=60",
                url_encode(&e),
                start_s
            );
            let (status, body) = http_get(port, &path).unwrap();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status != 200 || v["status"] != "success" {
                failures.push(format!("{file} {at}: {e}\n  HTTP {status}: {body}"));
                continue;
            }
            let points: usize = v["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum();
            if points == 0 {
                failures.push(format!("{file} {at}: no data for {e}"));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 80, "only {checked} queries checked");
    backfilled_recording_rules_hold_what_they_promise(port, end_s);
}

/// On realistic data, in Prometheus' own engine: source values line up with
/// imd_expected, and the anomaly ratio sees host-a's anomalies.
fn backfilled_recording_rules_hold_what_they_promise(port: u16, end_s: i64) {
    let q = |e: &str| {
        api(
            port,
            &format!("/api/v1/query?query={}&time={}", url_encode(e), end_s - 60),
        )["data"]["result"]
            .as_array()
            .unwrap()
            .clone()
    };
    let sv = q(r#"imd:source_value{instance="host-a:9100"}"#);
    let queries: BTreeSet<&str> = sv
        .iter()
        .filter_map(|s| s["metric"]["query"].as_str())
        .collect();
    assert_eq!(
        queries,
        ["cpu_idle", "filesystem_avail", "load1", "memory_available"].into(),
        "{sv:?}"
    );
    // Memory: the value lies inside the band imd expected (the generated
    // series follow the same curve), i.e. less than half a band width away.
    let err = q(concat!(
        r#"abs(imd_expected{query="memory_available"} - ignoring (model) group_left () imd:source_value)"#,
        r#" / (imd_expected_upper - imd_expected_lower)"#
    ));
    assert_eq!(err.len(), 2, "{err:?}");
    for s in &err {
        let v: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
        assert!(v < 0.5, "{s}");
    }
    // One of host-a's 8 analysed series (load1) is anomalous at the end;
    // memory_available too (0.995): 2 of 8.
    let ratio = q(r#"instance:imd_anomalous_series:ratio{instance="host-a:9100"}"#);
    assert_eq!(ratio.len(), 1, "{ratio:?}");
    let num = |r: &Value| r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
    assert!((num(&ratio[0]) - 0.25).abs() < 1e-9, "{ratio:?}");
    let ratio_b = q(r#"instance:imd_anomalous_series:ratio{instance="host-b:9100"}"#);
    assert_eq!(num(&ratio_b[0]), 0.0, "{ratio_b:?}");
}
