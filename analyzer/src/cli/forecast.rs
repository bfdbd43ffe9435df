//! `forecast`: H steps past the end of every series of a file, with
//! bounds, series processed in parallel; with `--threshold`, also the steps
//! until each forecast crosses it.

use anyhow::Context;
use rayon::prelude::*;

use super::{ForecastArgs, ThresholdDirection};
use crate::model::{self, Forecast, Point};
use crate::query::Direction;

/// Fewest points a series needs to be forecast.
pub const MIN_POINTS: usize = 3;

/// Forecasts `horizon` steps past the end of `points` with model `name`,
/// fitted on all of them.
pub fn forecast_series(
    points: &[Point],
    name: &str,
    horizon: usize,
    level: f64,
    season: Option<usize>,
) -> Result<Forecast, String> {
    if points.len() < MIN_POINTS {
        return Err(format!(
            "too short: {} points, a forecast needs at least {MIN_POINTS}",
            points.len()
        ));
    }
    if model::DETECTORS.contains(&name) {
        return Err(format!(
            "model {name} detects anomalies only and does not forecast; try --model auto"
        ));
    }
    let params = super::whole_history_params(points.len(), season);
    let mut m = model::build(name, &params).map_err(|e| e.to_string())?;
    m.fit(points).map_err(|e| e.to_string())?;
    m.forecast(horizon, level).ok_or_else(|| {
        format!(
            "model {name} cannot forecast from {} points (too short for it; try --model auto or drift)",
            points.len()
        )
    })
}

/// Runs `forecast`.
pub fn run(a: &ForecastArgs) -> anyhow::Result<()> {
    super::check_model(&a.model)?;
    super::check_season(a.season)?;
    let level = super::level_fraction(a.level)?;
    if a.horizon == 0 {
        anyhow::bail!("--horizon must be at least 1");
    }
    if a.threshold.is_some_and(|v| !v.is_finite()) {
        anyhow::bail!("--threshold must be a finite number");
    }
    let series = super::csv::read(&a.input, true)?;
    let results: Vec<_> = series
        .par_iter()
        .map(|s| forecast_series(&s.points(), &a.model, a.horizon, level, a.season))
        .collect();
    let file = std::fs::File::create(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let direction = match a.threshold_direction {
        ThresholdDirection::Above => Direction::Above,
        ThresholdDirection::Below => Direction::Below,
    };
    let mut header = vec!["series_id", "step", "yhat", "yhat_lower", "yhat_upper"];
    if a.threshold.is_some() {
        header.push("breach_steps");
    }
    w.write_record(&header)?;
    for (s, r) in series.iter().zip(results) {
        let f = r.map_err(|e| {
            anyhow::anyhow!(
                "{}:{}: series {:?}: {e}",
                a.input.display(),
                s.first_line(),
                s.id
            )
        })?;
        let breach = a
            .threshold
            .map(|v| breach_steps(&s.points(), &f, v, direction));
        for h in 0..a.horizon {
            let mut row = vec![
                s.id.clone(),
                (h + 1).to_string(),
                f.mean[h].to_string(),
                f.lower[h].to_string(),
                f.upper[h].to_string(),
            ];
            if let Some(b) = breach {
                row.push(b.map(|b| b.to_string()).unwrap_or_default());
            }
            w.write_record(&row)?;
        }
    }
    // Flushes the CSV buffer and the file buffer under it.
    w.flush()
        .with_context(|| format!("writing {}", a.output.display()))?;
    Ok(())
}

/// Steps from the last of `points` until forecast `f`'s mean crosses
/// `value` (the engine's breach time, in steps: 0 when the last point is
/// already across), `None` when it does not within the forecast.
pub fn breach_steps(
    points: &[Point],
    f: &Forecast,
    value: f64,
    direction: Direction,
) -> Option<f64> {
    let last = *points.last()?;
    let step = (*f.t.first()? - last.t) as f64;
    let at = model::threshold::crossing(last, f, |_| value, direction)?;
    Some(if step > 0.0 {
        ((at - last.t as f64) / step).max(0.0)
    } else {
        0.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_forecasts_or_says_why() {
        let pts: Vec<Point> = (0..100)
            .map(|i| Point {
                t: i * 1000,
                v: 5.0 + (i % 7) as f64,
            })
            .collect();
        for name in model::NAMES {
            if model::DETECTORS.contains(name) {
                let e = forecast_series(&pts, name, 10, 0.9, None).unwrap_err();
                assert!(e.contains("does not forecast"), "{e}");
                continue;
            }
            let f = forecast_series(&pts, name, 10, 0.9, None).unwrap();
            assert_eq!(f.mean.len(), 10, "{name}");
            assert!(f.lower.iter().zip(&f.upper).all(|(l, u)| l <= u));
        }
        let f = forecast_series(&pts, "snaive", 7, 0.9, Some(7)).unwrap();
        assert_eq!(
            f.mean,
            (0..7)
                .map(|i| 5.0 + ((100 + i) % 7) as f64)
                .collect::<Vec<_>>()
        );
        assert!(
            forecast_series(&pts[..2], "auto", 3, 0.9, None)
                .unwrap_err()
                .contains("too short")
        );
        assert!(forecast_series(&pts[..5], "mstl", 3, 0.9, Some(24)).is_err());
    }

    #[test]
    fn breach_steps_interpolate_like_the_engine() {
        let pts: Vec<Point> = (0..10)
            .map(|i| Point {
                t: i * 1000,
                v: i as f64,
            })
            .collect();
        let f = forecast_series(&pts, "drift", 5, 0.9, None).unwrap();
        // Drift forecasts 10, 11, 12, …: 11.5 is crossed half-way from step 2
        // to step 3.
        let b = breach_steps(&pts, &f, 11.5, Direction::Above).unwrap();
        assert!((b - 2.5).abs() < 1e-9, "{b}");
        assert_eq!(breach_steps(&pts, &f, 5.0, Direction::Above), Some(0.0));
        assert_eq!(breach_steps(&pts, &f, 100.0, Direction::Above), None);
        assert_eq!(breach_steps(&pts, &f, 5.0, Direction::Below), None);
    }
}
