//! `imd-analyzer`: anomaly detection and forecasting for Prometheus series.

use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use imd_analyzer::demo::{self, DemoSettings};
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
///   imd-analyzer demo                 # embedded default: this host, no Prometheus needed
///   open http://localhost:9110/       # the page; /metrics has the series
#[derive(Debug, Parser)]
#[command(name = "imd-analyzer", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
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
    #[arg(id = "anomaly.threshold", long = "anomaly.threshold", default_value_t = 0.99)]
    threshold: f64,
}

/// The analyzer's default listen address (the exporter's is :9100).
const DEFAULT_LISTEN: &str = ":9110";

fn command() -> clap::Command {
    Cli::command().mut_subcommand("demo", |c| c.mut_arg("web.listen-address", |a| a.default_value(DEFAULT_LISTEN)))
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
        .and_then(|rt| rt.block_on(run(cli.command)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(a) => {
            if !(0.0..=1.0).contains(&a.threshold) {
                anyhow::bail!("--anomaly.threshold must be between 0 and 1, is {}", a.threshold);
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
                shutdown_signal(),
            )
            .await
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        command().debug_assert();
        let m = command().try_get_matches_from(["imd-analyzer", "demo"]).unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        let Command::Demo(d) = cli.command;
        assert_eq!(d.web.listen_address, vec![":9110".to_string()]);
    }
}
