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
    /// This replica's shard, 0 to --shard.count - 1, or `auto`: the ordinal
    /// ending the host name (`$HOSTNAME`), as a StatefulSet names its pods
    /// (imd-analyzer-2 is shard 2).
    #[arg(id = "shard.index", long = "shard.index", value_name = "N|auto")]
    shard_index: Option<String>,
    /// Replicas sharing the series: each analyses those whose label hash
    /// modulo this count is its --shard.index.
    #[arg(id = "shard.count", long = "shard.count", default_value_t = 1)]
    shard_count: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the embedded default: scrape this host with the exporter's
    /// collectors into an in-process store, analyse it, serve a page and
    /// /metrics. No Prometheus needed.
    Demo(DemoArgs),
    /// Score every row of a CSV series for anomalies (online: each score
    /// uses only the rows before it).
    Score(imd_analyzer::cli::ScoreArgs),
    /// Forecast every series of a CSV file, with bounds.
    Forecast(imd_analyzer::cli::ForecastArgs),
    /// Rolling-origin evaluation of models on a CSV file: sMAPE, MASE,
    /// coverage and MSIS, against seasonal naive.
    Backtest(imd_analyzer::cli::BacktestArgs),
    /// A report of a time range (anomalies by host and series, top events
    /// with charts, forecast accuracy, alert history with times to
    /// acknowledge and resolve) as one HTML file or JSON.
    Report(imd_analyzer::report::ReportArgs),
    /// An Alertmanager webhook receiver that sends notifications as SMS
    /// through a Twilio-style HTTP gateway (POST /webhook/<recipients>).
    SmsBridge(SmsBridgeArgs),
    /// Benchmark: read a range through one read path (bench/remote_read.py).
    #[command(hide = true)]
    BenchRead(imd_analyzer::cli::bench_read::BenchReadArgs),
    /// Benchmark: the engine at scale on generated series (bench/engine.py).
    #[command(hide = true)]
    BenchEngine(imd_analyzer::cli::bench_engine::BenchEngineArgs),
}

#[derive(Debug, Args)]
struct SmsBridgeArgs {
    #[command(flatten)]
    web: WebArgs,
    /// YAML configuration: gateway, recipient lists, retries, rate limits.
    #[arg(id = "config.file", long = "config.file", value_name = "FILE")]
    config_file: PathBuf,
    /// Check the configuration (the auth token file read, and the web
    /// config), print a summary and exit.
    #[arg(id = "check-config", long = "check-config")]
    check_config: bool,
}

/// The SMS bridge's default listen address.
const SMS_BRIDGE_LISTEN: &str = ":9111";

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
        .mut_subcommand("sms-bridge", |c| {
            c.mut_arg("web.listen-address", |a| a.default_value(SMS_BRIDGE_LISTEN))
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
            // A pod's HOSTNAME is its name; elsewhere the kernel's host name.
            let pod = std::env::var("HOSTNAME").unwrap_or_else(|_| host.clone());
            let shard = imd_analyzer::shard::Shard::from_flags(
                args.shard_index.as_deref(),
                args.shard_count,
                &pod,
            )?;
            let settings = RunSettings {
                config_file,
                listen: args.web.listen_address,
                web_config: args.web.config_file,
                storage_path: args.storage_path,
                external_url: args
                    .external_url
                    .unwrap_or_else(|| format!("http://{host}:{port}")),
                page_threshold: args.threshold,
                shard,
                lifecycle: args.web.enable_lifecycle,
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
        Some(Command::Score(a)) => imd_analyzer::cli::score::run(&a),
        Some(Command::Forecast(a)) => imd_analyzer::cli::forecast::run(&a),
        Some(Command::Backtest(a)) => imd_analyzer::cli::backtest::run(&a),
        Some(Command::BenchRead(a)) => imd_analyzer::cli::bench_read::run(&a),
        Some(Command::BenchEngine(a)) => imd_analyzer::cli::bench_engine::run(&a),
        Some(Command::Report(a)) => {
            tokio::task::spawn_blocking(move || imd_analyzer::report::run(&a)).await?
        }
        Some(Command::SmsBridge(a)) if a.check_config => {
            let summary =
                imd_analyzer::alert::sms::check(&a.config_file, a.web.config_file.as_deref())?;
            println!("{summary}");
            Ok(())
        }
        Some(Command::SmsBridge(a)) => {
            imd_analyzer::alert::sms::run(
                &a.config_file,
                &a.web.listen_address,
                a.web.config_file.as_deref(),
                &a.web.telemetry_path,
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
        let m = command()
            .try_get_matches_from([
                "imd-analyzer",
                "forecast",
                "--input",
                "in.csv",
                "--horizon",
                "48",
                "--season",
                "24",
                "--level",
                "90",
                "--output",
                "out.csv",
            ])
            .unwrap();
        let Some(Command::Forecast(f)) = Cli::from_arg_matches(&m).unwrap().command else {
            panic!("forecast not parsed")
        };
        assert_eq!(
            (f.horizon, f.season, f.level, f.model.as_str()),
            (48, Some(24), 90.0, "auto")
        );
        let m = command()
            .try_get_matches_from(["imd-analyzer", "score", "--input", "a", "--output", "b"])
            .unwrap();
        assert!(matches!(
            Cli::from_arg_matches(&m).unwrap().command,
            Some(Command::Score(_))
        ));
    }
}
