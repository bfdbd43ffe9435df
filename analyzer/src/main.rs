//! `imd-analyzer`: anomaly detection and forecasting for Prometheus series.

use std::time::Duration;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use imd_analyzer::demo::{self, DemoSettings};
use imd_analyzer::run::{self as analyzer, RunSettings};
use imd_exporter::cli::{LogArgs, WebArgs};
use imd_exporter::logging;

/// Finds anomalies in metrics and forecasts trouble before it happens.
///
/// imd-analyzer reads series, fits a model to each (robust median/MAD,
/// z-score, drift), scores every new point from 0 to 1, forecasts with
/// bounds, and publishes imd_anomaly_score, imd_forecast{,_lower,_upper}
/// and imd_forecast_breach_seconds for Prometheus and Grafana.
///
/// Start here:
///   imd-analyzer demo                            # embedded default: this host, no Prometheus needed
///   open http://localhost:9110/                  # the page; /metrics has the series
///
/// With your Prometheus (remote-read) and Alertmanager:
///   imd-analyzer --config.file=analyzer.yml      # see examples/single-host/imd-analyzer.yml
///   imd-analyzer --config.file=analyzer.yml --check-config
#[derive(Debug, Parser)]
#[command(
    name = "imd-analyzer",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    run: RunArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Flags of the analyzer proper (no subcommand).
#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    web: WebArgs,
    /// YAML configuration: sources, queries and models, alerting, output.
    #[arg(id = "config.file", long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Check the configuration (and web config), print a summary and exit.
    #[arg(id = "check-config", long = "check-config")]
    check_config: bool,
    /// Directory for model state kept across restarts.
    #[arg(
        id = "storage.path",
        long = "storage.path",
        value_name = "DIR",
        default_value = "data/analyzer"
    )]
    storage_path: PathBuf,
    /// URL under which users reach this analyzer, for links in alerts
    /// (default: http://<host name>:<port>).
    #[arg(id = "web.external-url", long = "web.external-url", value_name = "URL")]
    external_url: Option<String>,
    /// Anomaly score from which the page highlights a series.
    #[arg(
        id = "anomaly.threshold",
        long = "anomaly.threshold",
        default_value_t = 0.99
    )]
    threshold: f64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded default: scrape this host with the exporter's
    /// collectors into an in-process store, analyse it, serve a page and
    /// /metrics. No Prometheus needed.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    web: WebArgs,
    /// How often the host is scraped and analysed.
    #[arg(id = "scrape.interval", long = "scrape.interval", default_value = "2s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long the in-process store keeps samples.
    #[arg(id = "storage.retention", long = "storage.retention", default_value = "1h", value_parser = humantime::parse_duration)]
    retention: Duration,
    /// Anomaly score from which a series is shown as anomalous.
    #[arg(
        id = "anomaly.threshold",
        long = "anomaly.threshold",
        default_value_t = 0.99
    )]
    threshold: f64,
}

/// The analyzer's default listen address (the exporter's is :9100).
const DEFAULT_LISTEN: &str = ":9110";

fn command() -> clap::Command {
    Cli::command()
        .mut_arg("web.listen-address", |a| a.default_value(DEFAULT_LISTEN))
        .mut_subcommand("demo", |c| {
            c.mut_arg("web.listen-address", |a| a.default_value(DEFAULT_LISTEN))
        })
}

fn main() -> std::process::ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    logging::init(&cli.log);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli.command, cli.run)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Option<Command>, args: RunArgs) -> anyhow::Result<()> {
    match command {
        None => {
            let Some(config_file) = args.config_file else {
                anyhow::bail!(
                    "--config.file is required (see examples/single-host/imd-analyzer.yml); \
                     to try imd without Prometheus, run `imd-analyzer demo`"
                );
            };
            if !(0.0..=1.0).contains(&args.threshold) {
                anyhow::bail!(
                    "--anomaly.threshold must be between 0 and 1, is {}",
                    args.threshold
                );
            }
            let port = args
                .web
                .listen_address
                .first()
                .and_then(|a| a.rsplit(':').next())
                .unwrap_or("9110")
                .to_string();
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into());
            let settings = RunSettings {
                config_file,
                listen: args.web.listen_address,
                web_config: args.web.config_file,
                storage_path: args.storage_path,
                external_url: args
                    .external_url
                    .unwrap_or_else(|| format!("http://{host}:{port}")),
                page_threshold: args.threshold,
            };
            if args.check_config {
                println!("{}", analyzer::check(&settings)?);
                return Ok(());
            }
            analyzer::run(settings, imd_exporter::web::shutdown_signal()).await
        }
        Some(Command::Demo(a)) => {
            if !(0.0..=1.0).contains(&a.threshold) {
                anyhow::bail!(
                    "--anomaly.threshold must be between 0 and 1, is {}",
                    a.threshold
                );
            }
            if a.interval.is_zero() {
                anyhow::bail!("--scrape.interval must be positive");
            }
            demo::run(
                DemoSettings {
                    listen: a.web.listen_address,
                    web_config: a.web.config_file,
                    interval: a.interval,
                    retention: a.retention,
                    threshold: a.threshold,
                },
                imd_exporter::web::shutdown_signal(),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        command().debug_assert();
        let m = command()
            .try_get_matches_from(["imd-analyzer", "demo"])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Some(Command::Demo(d)) = cli.command else {
            panic!("demo not parsed")
        };
        assert_eq!(d.web.listen_address, vec![":9110".to_string()]);
        let m = command()
            .try_get_matches_from(["imd-analyzer", "--config.file=a.yml", "--check-config"])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        assert!(cli.command.is_none() && cli.run.check_config);
        assert_eq!(cli.run.web.listen_address, vec![":9110".to_string()]);
    }
}
