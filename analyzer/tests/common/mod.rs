//! Harness for the analyzer's integration tests that start real processes
//! (Debian's `prometheus`, `promtool`, `prometheus-alertmanager`). What both
//! crates' tests need (process guards, ports, HTTP, Prometheus and
//! Alertmanager, TLS material) is in `imd-testkit`; this module adds what is
//! the analyzer's own: starting its binary, building TSDBs for it, the
//! loopback gateway, and the tools `.ci/test` installs.
// Each test binary includes this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub mod proxy;
pub mod ranking;

/// Status and body of a plain `GET path` on `127.0.0.1:port` (the
/// analyzer's tests read text: `/metrics` and JSON APIs).
pub use imd_testkit::http_get_text as http_get;
pub use imd_testkit::{
    Proc, am_active_alerts, free_port, http_get_status, http_post, pki, require_tool, run_capture,
    run_ok, spawn_alertmanager, spawn_prometheus, spawn_prometheus_file, start_alertmanager,
    start_alertmanager_on, start_prometheus_on, tempdir, unix_now_ms, unix_now_s, url_encode,
    wait_for,
};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Starts the test build's `imd-analyzer` with `config`, its state under
/// `dir/an` and its logs in `dir`, on a free loopback port, plus `extra`
/// flags; returns once `/-/ready` answers, with the process and its port.
pub fn start_analyzer(config: &Path, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    start_analyzer_as("imd-analyzer", config, dir, extra, Duration::from_secs(60))
}

/// [`start_analyzer`] with the process (and log file) name `name` and the
/// time it may take to get ready, for tests that start several analyzers
/// in one dir or whose analyzer has much to load.
pub fn start_analyzer_as(
    name: &str,
    config: &Path,
    dir: &Path,
    extra: &[&str],
    ready_within: Duration,
) -> (Proc, u16) {
    let port = free_port();
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.join("an").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut an = Proc::spawn(
        name,
        Path::new(env!("CARGO_BIN_EXE_imd-analyzer")),
        &args,
        dir,
    );
    an.wait_http_ok(port, "/-/ready", ready_within);
    (an, port)
}

/// The text of the analyzer's `/metrics` on `port` (empty when it does
/// not answer), to read its self-metrics with [`sample_value`].
pub fn metrics_body(port: u16) -> String {
    http_get(port, "/metrics").map(|r| r.1).unwrap_or_default()
}

/// The value of the first sample whose line starts with `prefix` (a name,
/// or a name with its labels) in the text exposition `body`.
pub fn sample_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The repository's root (the workspace holding `analyzer/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("analyzer/ has a parent")
        .to_path_buf()
}

/// A program installed by `.ci/test` into its Python venv (`$IMD_TOOLS_VENV`,
/// default `target/ci-venv`), e.g. `kubernetes-validate`; fails the test
/// saying how to install it when missing.
pub fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("IMD_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/ci-venv"));
    let p = venv.join("bin").join(name);
    assert!(
        p.is_file(),
        "required program {} was not found; run `bash .ci/test`, which installs it into {}",
        p.display(),
        venv.display()
    );
    p
}

/// Every `imd_*` series name the analyzer's source spells out as a string
/// literal (what `emit/`, the self-metrics and the notifier publish), to
/// check that rules and dashboards use real names.
pub fn analyzer_metric_names() -> std::collections::BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("reading analyzer/src") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("analyzer/src"), &mut files);
    let re = regex::Regex::new(r#""(imd_[a-z_]+)""#).expect("regex");
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("reading source");
        names.extend(re.captures_iter(&text).map(|c| c[1].to_string()));
    }
    names
}

/// Builds a TSDB with `promtool tsdb create-blocks-from openmetrics` in
/// `dir/tsdb`: gauges `(metric, instance)` with `points` samples 15 s apart,
/// the last one 15 s before now (so that they are fresh for the analyzer),
/// sample `k` of series `i` being `value(i, k)`. Serve it with
/// [`start_prometheus_on`].
pub fn build_recent_tsdb(
    dir: &Path,
    series: &[(&str, &str)],
    points: i64,
    value: impl Fn(usize, i64) -> f64,
) -> PathBuf {
    const STEP_S: i64 = 15;
    let now = unix_now_s();
    let last = now - now % STEP_S - STEP_S;
    let mut om = String::new();
    let mut typed = std::collections::BTreeSet::new();
    let mut order: Vec<usize> = (0..series.len()).collect();
    // OpenMetrics wants each family's samples together.
    order.sort_by_key(|&i| series[i].0);
    for i in order {
        let (metric, instance) = series[i];
        if typed.insert(metric) {
            om.push_str(&format!("# TYPE {metric} gauge\n"));
        }
        for k in 0..points {
            let t = last - (points - 1 - k) * STEP_S;
            om.push_str(&format!(
                "{metric}{{instance=\"{instance}\"}} {} {t}\n",
                value(i, k)
            ));
        }
    }
    om.push_str("# EOF\n");
    tsdb_from_openmetrics(dir, &om)
}

/// Builds a TSDB in `dir/tsdb` from the OpenMetrics text `om` (each
/// family's samples together, ending in `# EOF`; written to
/// `dir/input.om`) with `promtool tsdb create-blocks-from openmetrics`,
/// and returns its path.
pub fn tsdb_from_openmetrics(dir: &Path, om: &str) -> PathBuf {
    let input = dir.join("input.om");
    std::fs::write(&input, om).expect("writing the OpenMetrics input");
    let tsdb = dir.join("tsdb");
    run_ok(
        &require_tool("promtool"),
        &[
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            input.to_str().expect("utf-8 path"),
            tsdb.to_str().expect("utf-8 path"),
        ],
    );
    tsdb
}

/// The `node_modules` folder `.ci/test` installs npm packages into
/// (`$IMD_TOOLS_NODE`, default `target/ci-node`); fails the test saying how
/// to install it when `package` is missing there.
pub fn node_modules(package: &str) -> PathBuf {
    let dir = std::env::var_os("IMD_TOOLS_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/ci-node"))
        .join("node_modules");
    assert!(
        dir.join(package).is_dir(),
        "npm package {package} was not found in {}; run `bash .ci/test`, which installs it",
        dir.display()
    );
    dir
}

/// Rows of a CSV file an export script wrote (a bad file fails the test,
/// naming it).
pub fn csv_records(path: &std::path::Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.records()
        .map(|x| x.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// A number in an export script's output (anything else fails the test).
pub fn export_num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| panic!("not a number in the export: {s:?}"))
}
