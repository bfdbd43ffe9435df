//! `imd-exporter`: serves the host's metrics for Prometheus to scrape.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clap::{CommandFactory, FromArgMatches, Parser};
use imd_exporter::cli::{LogArgs, PathArgs, WebArgs, add_collector_flags, build_scraper};
use imd_exporter::config::Config;
use imd_exporter::scrape::Scraper;
use imd_exporter::{logging, web};
use tokio::sync::Semaphore;

/// Serves the host's metrics (CPU, memory, disks, file systems, network,
/// pressure, processes and process groups, textfiles and log-derived metrics)
/// for Prometheus, under node_exporter's metric names so that existing
/// dashboards work unchanged.
///
/// Examples:
///   imd-exporter                                  # node_exporter's defaults on :9100
///   imd-exporter --config.file=exporter.yml       # process groups, logs, intervals
///   imd-exporter --no-collector.filesystem --collector.processes
///   imd-exporter --path.rootfs=/host --path.procfs=/host/proc --path.sysfs=/host/sys
///   imd-exporter --check-config --config.file=exporter.yml
#[derive(Debug, Parser)]
#[command(name = "imd-exporter", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    web: WebArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    paths: PathArgs,
    /// YAML configuration: collector switches and polling intervals,
    /// process groups, textfile directory, log files and their rules.
    #[arg(id = "config.file", long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Check the configuration (and web config) files, print the result and exit.
    #[arg(id = "check-config", long = "check-config")]
    check_config: bool,
    /// Directory for state kept across restarts (log file offsets).
    #[arg(
        id = "storage.path",
        long = "storage.path",
        value_name = "DIR",
        default_value = "data/exporter"
    )]
    storage_path: PathBuf,
    /// Leave out the exporter's own process metrics (process_*).
    #[arg(
        id = "web.disable-exporter-metrics",
        long = "web.disable-exporter-metrics"
    )]
    disable_exporter_metrics: bool,
}

struct AppState {
    /// Replaced on reload; a scrape holds the read lock while it runs.
    scraper: RwLock<Scraper>,
    limit: Option<Semaphore>,
    exporter_metrics: bool,
}

/// What a reload needs to build the scraper again.
struct ReloadInputs {
    matches: clap::ArgMatches,
    config_file: Option<PathBuf>,
    paths: imd_exporter::paths::Paths,
    storage_path: PathBuf,
    /// The configuration in force, to rebuild from if a new one fails late.
    config: std::sync::Mutex<Config>,
}

/// Reads `--config.file` again and rebuilds the collectors from it. The new
/// configuration is first built and dropped unused (as `--check-config`
/// does; nothing is written); only if that works are the old collectors
/// stopped (the log reader saves its offsets as it ends, so the new one
/// resumes there and no line is counted twice) and the new ones built, with
/// scrapes waiting meanwhile. Counters of log rules start again from zero.
fn reload(state: &AppState, inputs: &ReloadInputs) -> anyhow::Result<()> {
    let Some(file) = &inputs.config_file else {
        return Ok(());
    };
    let config = Config::load(file)?;
    let build = |c: &Config| {
        build_scraper(
            &inputs.matches,
            c,
            &inputs.paths,
            Some(&inputs.storage_path),
        )
    };
    drop(build(&config)?);
    let mut scraper = state.scraper.write().unwrap_or_else(|e| e.into_inner());
    drop(std::mem::replace(&mut *scraper, Scraper::new(Vec::new())));
    let mut current = inputs.config.lock().unwrap_or_else(|e| e.into_inner());
    match build(&config) {
        Ok(s) => {
            *scraper = s;
            *current = config;
            tracing::info!(
                collectors = scraper.names().collect::<Vec<_>>().join(","),
                "collectors rebuilt"
            );
            Ok(())
        }
        Err(e) => {
            // Built a moment ago, failing now (a file removed meanwhile):
            // back to the configuration that was in force.
            match build(&current) {
                Ok(s) => *scraper = s,
                Err(e2) => tracing::error!(
                    error = format!("{e2:#}"),
                    "cannot rebuild the old collectors either"
                ),
            }
            Err(e)
        }
    }
}

fn main() -> std::process::ExitCode {
    let matches = add_collector_flags(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logging::init(&cli.log);
    match run(cli, matches) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: clap::ArgMatches) -> anyhow::Result<()> {
    let config = match &cli.config_file {
        Some(f) => Config::load(f)?,
        None => Config::default(),
    };
    let paths = cli.paths.paths();
    let scraper = build_scraper(&matches, &config, &paths, Some(&cli.storage_path))?;
    if let Some(f) = &cli.web.config_file {
        web::WebConfig::load(f)?;
    }
    if cli.check_config {
        println!(
            "configuration OK; collectors: {}",
            scraper.names().collect::<Vec<_>>().join(", ")
        );
        return Ok(());
    }
    tracing::info!(
        collectors = scraper.names().collect::<Vec<_>>().join(","),
        version = env!("CARGO_PKG_VERSION"),
        "starting imd-exporter"
    );

    let state = Arc::new(AppState {
        scraper: RwLock::new(scraper),
        limit: (cli.web.max_requests > 0).then(|| Semaphore::new(cli.web.max_requests)),
        exporter_metrics: !cli.disable_exporter_metrics,
    });
    let inputs = ReloadInputs {
        matches,
        config_file: cli.config_file.clone(),
        paths,
        storage_path: cli.storage_path.clone(),
        config: std::sync::Mutex::new(config),
    };
    let reloader = web::Reloader::new("imd_exporter", {
        let state = state.clone();
        move || reload(&state, &inputs)
    });
    let telemetry = cli.web.telemetry_path.clone();
    let app = Router::new()
        .route(&telemetry, get(metrics))
        .route(
            "/",
            get(move || async move { Html(landing_page(&telemetry)) }),
        )
        .with_state((state, reloader.clone()))
        .merge(reloader.route(cli.web.enable_lifecycle))
        .merge(web::health_routes(|| true));

    // One thread serves HTTP: a scrape's work runs on a blocking-pool
    // thread (spawn_blocking in `metrics`), so the runtime thread only
    // parses requests and writes answers. More worker threads bought
    // nothing here but resident memory and cross-thread wake-ups.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let _sighup = reloader.on_sighup()?;
        web::serve(
            app,
            &cli.web.listen_address,
            cli.web.config_file.as_deref(),
            web::shutdown_signal(),
        )
        .await
    })
}

async fn metrics(
    State((state, reloader)): State<(Arc<AppState>, Arc<web::Reloader>)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let _permit = match &state.limit {
        Some(sem) => match sem.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many concurrent scrapes\n",
                )
                    .into_response();
            }
        },
        None => None,
    };
    let only = collect_filter(query.as_deref());
    let st = state.clone();
    let families = tokio::task::spawn_blocking(move || {
        let mut fams = st
            .scraper
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .scrape(only.as_deref());
        if st.exporter_metrics {
            fams.extend(imd_exporter::collectors::process_self::families());
        }
        fams.extend(reloader.families());
        fams.sort_by(|a, b| a.name.cmp(&b.name));
        fams
    })
    .await;
    match families {
        Ok(f) => web::exposition_response(&headers, &f),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape failed: {e}\n"),
        )
            .into_response(),
    }
}

/// `collect[]=cpu&collect[]=meminfo` narrows a scrape, as in node_exporter.
fn collect_filter(query: Option<&str>) -> Option<Vec<String>> {
    let names: Vec<String> = query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "collect[]" || *k == "collect%5B%5D")
        .map(|(_, v)| v.to_string())
        .collect();
    (!names.is_empty()).then_some(names)
}

fn landing_page(telemetry: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>imd-exporter</title></head>\
         <body><h1>imd-exporter</h1><p>Version {}.</p><ul><li><a href=\"{telemetry}\">Metrics</a></li>\
         <li><a href=\"/-/healthy\">Health</a></li><li><a href=\"/-/ready\">Readiness</a></li></ul></body></html>",
        env!("CARGO_PKG_VERSION")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        add_collector_flags(Cli::command()).debug_assert();
    }

    #[test]
    fn node_exporter_command_lines_parse() {
        let m = add_collector_flags(Cli::command())
            .try_get_matches_from([
                "imd-exporter",
                "--web.listen-address=:9100",
                "--collector.disable-defaults",
                "--collector.cpu",
                "--no-collector.meminfo",
                "--collector.systemd",
                "--path.rootfs=/host",
            ])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert_eq!(cli.paths.rootfs, PathBuf::from("/host"));
        assert!(m.get_flag("collector.cpu"));
        assert!(m.get_flag("no-collector.meminfo"));
    }

    #[test]
    fn collect_filter_reads_repeated_params() {
        assert_eq!(
            collect_filter(Some("collect[]=cpu&collect%5B%5D=meminfo&x=1")),
            Some(vec!["cpu".to_string(), "meminfo".to_string()])
        );
        assert_eq!(collect_filter(Some("x=1")), None);
        assert_eq!(collect_filter(None), None);
    }
}
