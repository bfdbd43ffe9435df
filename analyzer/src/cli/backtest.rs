//! `backtest`: rolling-origin evaluation. For each series, the last
//! `origins` blocks of H points are each forecast from the points before
//! them, by every model; the errors are summarised per model as
//!
//! - sMAPE: mean of 200·|y − ŷ| / (|y| + |ŷ|), in percent;
//! - MASE: mean absolute error over the in-sample mean absolute error of the
//!   seasonal naive forecast on the training part (seasonal scaling; the
//!   season is `--season` or detected, 1 when there is none);
//! - coverage: share of outcomes inside the bounds at the level asked;
//! - MSIS: mean scaled interval score (width plus 2/α times the misses,
//!   over the same scale as MASE), which rewards narrow bounds that hold;
//!
//! each averaged over all forecast windows, and MASE also relative to the
//! seasonal naive forecast (below 1 is better than the baseline).

use rayon::prelude::*;
use std::fmt::Write as _;

use super::BacktestArgs;
use crate::model::{Point, season};

/// What one model scored over all windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The model.
    pub model: String,
    /// Forecast windows evaluated.
    pub windows: usize,
    /// Windows where the model gave no forecast (left out of the means).
    pub failed: usize,
    /// Mean sMAPE (%).
    pub smape: f64,
    /// Mean MASE.
    pub mase: f64,
    /// Share of outcomes inside the bounds.
    pub coverage: f64,
    /// Mean MSIS.
    pub msis: f64,
}

/// Errors of one forecast window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowScore {
    /// sMAPE (%).
    pub smape: f64,
    /// MASE.
    pub mase: f64,
    /// Outcomes inside the bounds.
    pub covered: usize,
    /// Outcomes.
    pub n: usize,
    /// MSIS.
    pub msis: f64,
}

/// The MASE scale: mean absolute seasonal difference of `train` (lag
/// `season`, or 1 when the series is shorter than a season and one point).
pub fn mase_scale(train: &[f64], season: usize) -> f64 {
    let m = if train.len() > season { season } else { 1 };
    let d: Vec<f64> = train.windows(m + 1).map(|w| (w[m] - w[0]).abs()).collect();
    if d.is_empty() {
        return f64::NAN;
    }
    d.iter().sum::<f64>() / d.len() as f64
}

/// Scores a forecast (`mean`, `lower`, `upper`) against `actual`;
/// `alpha` is 1 − level, `scale` from [`mase_scale`].
pub fn score_window(
    actual: &[f64],
    mean: &[f64],
    lower: &[f64],
    upper: &[f64],
    alpha: f64,
    scale: f64,
) -> WindowScore {
    let n = actual.len();
    let (mut smape, mut ae, mut covered, mut is) = (0.0, 0.0, 0, 0.0);
    for i in 0..n {
        let (y, f, l, u) = (actual[i], mean[i], lower[i], upper[i]);
        let den = y.abs() + f.abs();
        if den > 0.0 {
            smape += 200.0 * (y - f).abs() / den;
        }
        ae += (y - f).abs();
        if l <= y && y <= u {
            covered += 1;
        }
        is += (u - l) + 2.0 / alpha * ((l - y).max(0.0) + (y - u).max(0.0));
    }
    let nf = n.max(1) as f64;
    WindowScore {
        smape: smape / nf,
        mase: ae / nf / scale,
        covered,
        n,
        msis: is / nf / scale,
    }
}

/// Evaluates `models` on every series by rolling origin (see the module).
pub fn evaluate(
    series: &[Vec<Point>],
    models: &[String],
    horizon: usize,
    level: f64,
    origins: usize,
    season: Option<usize>,
) -> Vec<Summary> {
    let per_series: Vec<_> = series
        .par_iter()
        .map(|points| {
            let n = points.len();
            let mut out: Vec<Vec<Option<WindowScore>>> = vec![Vec::new(); models.len()];
            for o in (1..=origins).rev() {
                let Some(cut) = n.checked_sub(o * horizon) else {
                    continue;
                };
                if cut < super::forecast::MIN_POINTS {
                    continue;
                }
                let train: Vec<f64> = points[..cut].iter().map(|p| p.v).collect();
                let m = season
                    .or_else(|| season::detect(&train).first().copied())
                    .unwrap_or(1);
                let scale = mase_scale(&train, m);
                if !(scale.is_finite() && scale > 0.0) {
                    continue;
                }
                let actual: Vec<f64> = points[cut..cut + horizon].iter().map(|p| p.v).collect();
                for (mi, name) in models.iter().enumerate() {
                    let w = super::forecast::forecast_series(
                        &points[..cut],
                        name,
                        horizon,
                        level,
                        season,
                    )
                    .ok()
                    .map(|f| {
                        score_window(&actual, &f.mean, &f.lower, &f.upper, 1.0 - level, scale)
                    });
                    out[mi].push(w);
                }
            }
            out
        })
        .collect();
    models
        .iter()
        .enumerate()
        .map(|(mi, name)| {
            let all: Vec<Option<WindowScore>> = per_series
                .iter()
                .flat_map(|s| s[mi].iter().copied())
                .collect();
            let ok: Vec<WindowScore> = all.iter().flatten().copied().collect();
            let k = ok.len().max(1) as f64;
            let outcomes: usize = ok.iter().map(|w| w.n).sum();
            Summary {
                model: name.clone(),
                windows: all.len(),
                failed: all.len() - ok.len(),
                smape: ok.iter().map(|w| w.smape).sum::<f64>() / k,
                mase: ok.iter().map(|w| w.mase).sum::<f64>() / k,
                coverage: ok.iter().map(|w| w.covered).sum::<usize>() as f64
                    / outcomes.max(1) as f64,
                msis: ok.iter().map(|w| w.msis).sum::<f64>() / k,
            }
        })
        .collect()
}

/// The summaries as a table, with MASE relative to `snaive` when present.
pub fn table(summaries: &[Summary], level: f64) -> String {
    let base = summaries
        .iter()
        .find(|s| s.model == "snaive")
        .map(|s| s.mase);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>7} {:>6} {:>8} {:>7} {:>9} {:>9} {:>8}",
        "model",
        "windows",
        "failed",
        "sMAPE%",
        "MASE",
        "MASE/sn",
        format!("cover@{:.0}", level * 100.0),
        "MSIS"
    );
    for s in summaries {
        let rel = base
            .filter(|b| *b > 0.0)
            .map(|b| format!("{:.3}", s.mase / b))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>6} {:>8.2} {:>7.3} {:>9} {:>9.3} {:>8.2}",
            s.model, s.windows, s.failed, s.smape, s.mase, rel, s.coverage, s.msis
        );
    }
    out
}

/// Runs `backtest`, printing the table.
pub fn run(a: &BacktestArgs) -> anyhow::Result<()> {
    super::check_season(a.season)?;
    let level = super::level_fraction(a.level)?;
    if a.horizon == 0 || a.origins == 0 {
        anyhow::bail!("--horizon and --origins must be at least 1");
    }
    let mut models: Vec<String> = vec!["snaive".into()];
    for m in &a.models {
        super::check_model(m)?;
        if !models.contains(m) {
            models.push(m.clone());
        }
    }
    let series = super::csv::read(&a.input, true)?;
    let need = a.horizon + super::forecast::MIN_POINTS;
    if let Some(s) = series.iter().find(|s| s.rows.len() < need) {
        anyhow::bail!(
            "{}:{}: series {:?} has {} points; a backtest with horizon {} needs at least {need}",
            a.input.display(),
            s.first_line(),
            s.id,
            s.rows.len(),
            a.horizon
        );
    }
    let points: Vec<Vec<Point>> = series.iter().map(|s| s.points()).collect();
    let summaries = evaluate(&points, &models, a.horizon, level, a.origins, a.season);
    print!("{}", table(&summaries, level));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let w = score_window(
            &[10.0, 20.0],
            &[12.0, 20.0],
            &[11.0, 15.0],
            &[13.0, 25.0],
            0.05,
            2.0,
        );
        assert!((w.smape - (200.0 * 2.0 / 22.0) / 2.0).abs() < 1e-9);
        assert!((w.mase - 0.5).abs() < 1e-9);
        assert_eq!((w.covered, w.n), (1, 2));
        // Widths 2 and 10, one miss of 1 below: (2 + 40 + 10) / 2 / 2.
        assert!((w.msis - 13.0).abs() < 1e-9, "{}", w.msis);
        assert!((mase_scale(&[1.0, 2.0, 4.0, 3.0], 2) - 2.0).abs() < 1e-12);
        assert!((mase_scale(&[1.0, 2.0], 5) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn snaive_is_its_own_reference() {
        let s: Vec<Point> = (0..200)
            .map(|i| Point {
                t: i * 1000,
                v: 10.0 + ((i * 7919) % 13) as f64 + 5.0 * ((i % 12) as f64),
            })
            .collect();
        let models = vec!["snaive".to_string(), "drift".to_string()];
        let r = evaluate(&[s], &models, 12, 0.95, 3, Some(12));
        assert_eq!(r[0].windows, 3);
        assert_eq!(r[0].failed, 0);
        assert!(r[0].mase > 0.0 && r[1].mase > r[0].mase, "{r:?}");
        let t = table(&r, 0.95);
        assert!(t.contains("1.000"), "{t}");
    }
}
