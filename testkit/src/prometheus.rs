//! Debian's `prometheus` and `prometheus-alertmanager` on loopback ports,
//! and reading their HTTP APIs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::http::{http_get, http_get_text, url_encode};
use crate::ports::free_port;
use crate::process::{Proc, require_tool};

/// Starts Prometheus as `name` (its log files, and its config written as
/// `log_dir/<name>.yml` from the YAML text `config`), with its TSDB in
/// `tsdb`, on `127.0.0.1:port`, plus the `extra` flags, and waits until
/// `/-/ready` answers. With a web config (`--web.config.file=...`, which
/// may mean TLS) the readiness probe is skipped and the caller waits itself.
pub fn spawn_prometheus(
    name: &str,
    log_dir: &Path,
    config: &str,
    tsdb: &Path,
    port: u16,
    extra: &[String],
) -> Proc {
    let cfg = log_dir.join(format!("{name}.yml"));
    std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("writing {}: {e}", cfg.display()));
    spawn_prometheus_file(name, log_dir, &cfg, tsdb, port, extra)
}

/// [`spawn_prometheus`] with the config file `config` used where it is
/// (e.g. one of the repository's, whose relative `rule_files` resolve
/// next to it).
pub fn spawn_prometheus_file(
    name: &str,
    log_dir: &Path,
    config: &Path,
    tsdb: &Path,
    port: u16,
    extra: &[String],
) -> Proc {
    let storage = format!("--storage.tsdb.path={}", tsdb.display());
    spawn_ready("prometheus", name, log_dir, config, port, &[storage], extra)
}

/// Starts the program `tool` as `name`, logging into `log_dir`, with
/// `--config.file=config`, `--web.listen-address=127.0.0.1:port` (flags
/// Prometheus and Alertmanager share), its own flags `own`, then `extra`,
/// and waits until `/-/ready` answers; with a `--web.config.file` (TLS or
/// auth, which a plain-HTTP probe cannot pass) among `extra` the caller
/// waits itself.
fn spawn_ready(
    tool: &str,
    name: &str,
    log_dir: &Path,
    config: &Path,
    port: u16,
    own: &[String],
    extra: &[String],
) -> Proc {
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    args.extend(own.iter().chain(extra).cloned());
    let mut p = Proc::spawn(name, &require_tool(tool), &args, log_dir);
    if extra.iter().all(|a| !a.starts_with("--web.config.file")) {
        p.wait_http_ok(port, "/-/ready", Duration::from_secs(30));
    }
    p
}

/// Starts Prometheus with `config` (YAML text, written to `dir`), storage
/// in `dir/prometheus-data`, on `127.0.0.1:port`, and waits until
/// `/-/ready` answers: a Prometheus that scrapes what the test serves.
pub fn start_prometheus(dir: &Path, port: u16, config: &str) -> Proc {
    spawn_prometheus(
        "prometheus",
        dir,
        config,
        &dir.join("prometheus-data"),
        port,
        &[],
    )
}

/// Starts Prometheus on an existing TSDB dir with no scrape jobs (so that
/// nothing is written and old blocks are kept), on `127.0.0.1:port`, and
/// waits until `/-/ready` answers: a Prometheus that serves prepared data.
/// `extra` are more flags (e.g. `--web.config.file=...`); with a web
/// config the readiness probe is skipped and the caller waits itself.
pub fn start_prometheus_on(tsdb: &Path, log_dir: &Path, port: u16, extra: &[String]) -> Proc {
    let mut args = vec!["--storage.tsdb.retention.time=100y".to_string()];
    args.extend(extra.iter().cloned());
    spawn_prometheus(
        "prometheus",
        log_dir,
        "global:\n  scrape_interval: 15s\nscrape_configs: []\n",
        tsdb,
        port,
        &args,
    )
}

/// Runs an instant PromQL query against Prometheus on `port` and returns
/// `data.result` (an array of `{metric, value}` objects).
pub fn prom_query(port: u16, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let r = http_get(
        port,
        &format!("/api/v1/query?query={}", url_encode(expr)),
        &[],
    )
    .map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("HTTP {}: {e}: {}", r.status, r.text()))?;
    if v["status"] != "success" {
        return Err(format!("query {expr:?} failed: {v}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The numeric value of one instant-query result element.
pub fn result_value(r: &serde_json::Value) -> Option<f64> {
    r["value"][1].as_str().and_then(|s| s.parse().ok())
}

/// Starts Alertmanager as `name` (no gossip, groups sent at once to a
/// receiver that drops them) on `127.0.0.1:port`, which may have been down
/// before, with its config and data under `dir`; returns once `/-/ready`
/// answers.
pub fn start_alertmanager_on(dir: &Path, name: &str, port: u16) -> Proc {
    let cfg = dir.join(format!("{name}.yml"));
    std::fs::write(
        &cfg,
        "route:\n  receiver: none\n  group_wait: 100ms\n  group_interval: 500ms\nreceivers:\n  - name: none\n",
    )
    .expect("writing the Alertmanager config");
    spawn_alertmanager(name, dir, &cfg, port, &[])
}

/// Starts Alertmanager as `name` (no gossip) with the config file `config`,
/// its data in `dir/<name>` and its logs in `dir`, on `127.0.0.1:port`,
/// plus the `extra` flags, and waits until `/-/ready` answers. With a web
/// config (`--web.config.file=...`, which may mean TLS) the readiness
/// probe is skipped and the caller waits itself.
pub fn spawn_alertmanager(
    name: &str,
    dir: &Path,
    config: &Path,
    port: u16,
    extra: &[String],
) -> Proc {
    let own = [
        format!("--storage.path={}", dir.join(name).display()),
        "--cluster.listen-address=".to_string(),
    ];
    spawn_ready(
        "prometheus-alertmanager",
        name,
        dir,
        config,
        port,
        &own,
        extra,
    )
}

/// [`start_alertmanager_on`] a free loopback port; returns it and its port.
pub fn start_alertmanager(dir: &Path, name: &str) -> (Proc, u16) {
    let port = free_port();
    (start_alertmanager_on(dir, name, port), port)
}

/// Label sets (as sorted JSON maps) of the active alerts in Alertmanager
/// on `port`; empty when it does not answer.
pub fn am_active_alerts(port: u16) -> BTreeSet<String> {
    let Ok((200, body)) = http_get_text(port, "/api/v2/alerts?active=true") else {
        return Default::default();
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["status"]["state"] == "active")
                .map(|x| {
                    let labels: BTreeMap<String, String> =
                        serde_json::from_value(x["labels"].clone()).unwrap_or_default();
                    serde_json::to_string(&labels).unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}
