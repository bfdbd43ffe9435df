//! The offline commands: `score`, `forecast` and `backtest` run the models
//! on CSV files, without Prometheus.
//!
//! ```text
//! imd-analyzer score --input IN.csv --output OUT.csv [--model auto]
//! imd-analyzer forecast --input IN.csv --horizon H [--season S] [--level 95] --output OUT.csv [--model auto] [--threshold V [--threshold-direction above|below]]
//! imd-analyzer backtest --input IN.csv --horizon H [--season S] [--level 95] [--origins 3] [--models snaive,drift,ets,mstl,auto]
//! ```

use std::path::PathBuf;

use clap::Args;

use crate::model::{self, ModelParams};

pub mod backtest;
pub mod bench_engine;
pub mod bench_read;
pub mod csv;
pub mod forecast;
pub mod score;

/// Flags of `score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Input CSV with the header `timestamp,value`; timestamps RFC 3339,
    /// `YYYY-MM-DD HH:MM:SS` (UTC) or unix seconds, increasing.
    #[arg(long, value_name = "IN.csv")]
    pub input: PathBuf,
    /// Output CSV: `timestamp,value,anomaly_score`, one row per input row.
    #[arg(long, value_name = "OUT.csv")]
    pub output: PathBuf,
    /// Model: zscore, mad, drift, snaive, ets, mstl, theta, comb, arima,
    /// prophet, changepoint, auto, or a learned detector (README "Models").
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Seasonal period in points (default: detected).
    #[arg(long, value_name = "S")]
    pub season: Option<usize>,
    /// Points of history the model looks at (seasonal models take at least
    /// four seasons).
    #[arg(long, value_name = "N", default_value_t = 120)]
    pub window: usize,
}

/// Flags of `forecast`.
#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Input CSV with the header `series_id,timestamp,value` (or
    /// `timestamp,value` for one series); a timestamp may also be a plain
    /// integer step.
    #[arg(long, value_name = "IN.csv")]
    pub input: PathBuf,
    /// Steps to forecast past the end of each series.
    #[arg(long, value_name = "H")]
    pub horizon: usize,
    /// Seasonal period in points (default: detected per series).
    #[arg(long, value_name = "S")]
    pub season: Option<usize>,
    /// Level of the bounds, in percent.
    #[arg(long, default_value_t = 95.0)]
    pub level: f64,
    /// Output CSV: `series_id,step,yhat,yhat_lower,yhat_upper`.
    #[arg(long, value_name = "OUT.csv")]
    pub output: PathBuf,
    /// Model: snaive, drift, ets, mstl, theta, comb, arima, prophet, auto (or
    /// zscore, mad, changepoint, lstm).
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// A threshold: adds the column `breach_steps`, the steps from each
    /// series' last point until its forecast crosses the threshold
    /// (interpolated, as `imd_forecast_breach_seconds`; 0: already across;
    /// empty: not within the horizon).
    #[arg(long, value_name = "V")]
    pub threshold: Option<f64>,
    /// Which side of `--threshold` is trouble.
    #[arg(long, value_enum, default_value_t = ThresholdDirection::Above, requires = "threshold")]
    pub threshold_direction: ThresholdDirection,
}

/// `--threshold-direction`: the crossing that counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ThresholdDirection {
    /// The forecast rises to the threshold or above.
    Above,
    /// The forecast falls to the threshold or below.
    Below,
}

/// Flags of `backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Input CSV, as for `forecast`.
    #[arg(long, value_name = "IN.csv")]
    pub input: PathBuf,
    /// Steps forecast from each origin.
    #[arg(long, value_name = "H")]
    pub horizon: usize,
    /// Seasonal period in points, for the models and the MASE scale
    /// (default: detected per series).
    #[arg(long, value_name = "S")]
    pub season: Option<usize>,
    /// Level of the bounds, in percent.
    #[arg(long, default_value_t = 95.0)]
    pub level: f64,
    /// Forecast origins per series: the last `origins` blocks of H points
    /// are forecast, each from the data before it.
    #[arg(long, default_value_t = 3)]
    pub origins: usize,
    /// Models to compare (seasonal naive is always included as reference).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "snaive,drift,ets,mstl,auto"
    )]
    pub models: Vec<String>,
}

/// Checks a model name.
pub fn check_model(name: &str) -> anyhow::Result<()> {
    if !model::NAMES.contains(&name) {
        anyhow::bail!("unknown model {name:?}; known: {}", model::NAMES.join(", "));
    }
    Ok(())
}

/// Turns `--level` (percent) into a fraction.
pub fn level_fraction(level: f64) -> anyhow::Result<f64> {
    if !(level > 0.0 && level < 100.0) {
        anyhow::bail!("--level must be a percentage between 0 and 100, is {level}");
    }
    Ok(level / 100.0)
}

/// Checks `--season`.
pub fn check_season(season: Option<usize>) -> anyhow::Result<()> {
    if season.is_some_and(|s| s < 2) {
        anyhow::bail!("--season must be at least 2");
    }
    Ok(())
}

/// Model parameters for forecasting a series of `n` points from all of it.
pub fn whole_history_params(n: usize, season: Option<usize>) -> ModelParams {
    let window = n.max(3);
    ModelParams {
        window,
        min_points: ModelParams::default().min_points.clamp(2, window),
        season,
        ..ModelParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_checked() {
        assert!(level_fraction(95.0).is_ok() && level_fraction(0.0).is_err());
        assert!(check_model("auto").is_ok() && check_model("prophetx").is_err());
        assert!(check_season(Some(1)).is_err() && check_season(None).is_ok());
    }
}
