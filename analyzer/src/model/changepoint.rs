//! `changepoint`: level and variance shifts, found by two-sided CUSUM
//! charts (Page's cumulative sums) of the standardised one-step errors of
//! the `auto` forecaster — so that a daily cycle or a trend is not taken
//! for a change — or, while that forecaster has too little history, of the
//! robust z-score against the rolling median/MAD. A chart sums the excess
//! of |z| over a slack of half a standard deviation and signals at five,
//! the textbook design that finds a one-sigma shift in about ten points and
//! signals falsely about once in several hundred. Each point adds at most
//! three standard deviations to a chart, so a lone outlier does not read as
//! a change; it still gets the forecaster's own score. When a chart
//! signals, it restarts from zero; the forecaster follows the new level at
//! its next refits.
//!
//! The score is the larger of the forecaster's score for the point and the
//! chart value, scaled so that reaching the signal level scores 0.99.

use serde::{Deserialize, Serialize};

use super::auto::Auto;
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z};

/// Slack: shifts smaller than this (in sigmas) are not accumulated.
const SLACK: f64 = 0.5;
/// Signal level of a chart.
const SIGNAL: f64 = 5.0;
/// Largest contribution of one point to a chart.
const CLIP: f64 = 3.0;
/// The z-score of a chart at the signal level.
const Z_AT_SIGNAL: f64 = 2.575_829;

/// The charts: upward level, downward level, variance increase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
struct Charts {
    up: f64,
    down: f64,
    var: f64,
    /// Points since all charts were last at zero.
    run: usize,
}

impl Charts {
    fn next(self, z: f64) -> Charts {
        let zc = z.clamp(-CLIP, CLIP);
        let up = (self.up + zc - SLACK).max(0.0);
        let down = (self.down - zc - SLACK).max(0.0);
        // z² has mean 1 and standard deviation √2 for normal data.
        let var = (self.var + (zc * zc - 1.0) / std::f64::consts::SQRT_2 - SLACK).max(0.0);
        let run = if up == 0.0 && down == 0.0 && var == 0.0 {
            0
        } else {
            self.run + 1
        };
        Charts { up, down, var, run }
    }

    fn max(&self) -> f64 {
        self.up.max(self.down).max(self.var)
    }
}

/// CUSUM charts over the errors of the `auto` forecaster.
pub struct Changepoint {
    inner: Auto,
    charts: Charts,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    inner: serde_json::Value,
    charts: Charts,
}

impl Changepoint {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Changepoint {
        Changepoint {
            inner: Auto::new(params),
            charts: Charts::default(),
        }
    }

    /// The point's error in standard deviations of the forecaster's
    /// one-step errors (its bound at the one-sigma level).
    fn z(&self, point: Point) -> Option<f64> {
        if !point.v.is_finite() {
            return None;
        }
        let f = self.inner.forecast(1, score_from_z(1.0))?;
        let sigma = (f.upper[0] - f.mean[0]).max(1e-12);
        Some((point.v - f.mean[0]) / sigma)
    }
}

impl Model for Changepoint {
    fn name(&self) -> &'static str {
        "changepoint"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.inner.fit(history)?;
        self.charts = Charts::default();
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        let Some(z) = self.z(point) else {
            return 0.0;
        };
        let chart = self.charts.next(z).max();
        self.inner
            .score(point)
            .max(score_from_z(Z_AT_SIGNAL * chart / SIGNAL))
    }

    fn update(&mut self, point: Point) {
        if let Some(z) = self.z(point) {
            let next = self.charts.next(z);
            self.charts = if next.max() >= SIGNAL {
                Charts::default()
            } else {
                next
            };
        }
        self.inner.update(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        self.inner.forecast(steps, level)
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            inner: self.inner.save(),
            charts: self.charts,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: "changepoint",
            reason: e.to_string(),
        })?;
        self.inner.load(s.inner)?;
        self.charts = s.charts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testdata::noisy;

    #[test]
    fn signals_a_level_shift_then_follows_it() {
        let mut m = Changepoint::new(ModelParams::default());
        m.fit(&noisy(200, 10.0, 1.0)).unwrap();
        let shifted = noisy(60, 11.5, 1.0);
        let mut first = None;
        for (i, p) in shifted.iter().enumerate() {
            let p = Point {
                t: (200 + i as i64) * 15_000,
                v: p.v,
            };
            if first.is_none() && m.score(p) >= 0.99 {
                first = Some(i);
            }
            m.update(p);
        }
        let first = first.expect("shift not found");
        assert!(first < 15, "found after {first} points");
        // After the restart the new level is normal.
        let f = m.forecast(1, 0.95).unwrap();
        assert!((f.mean[0] - 11.5).abs() < 0.5, "{}", f.mean[0]);
        // A single outlier moves the chart by at most CLIP - SLACK.
        m.charts = Charts::default();
        m.update(Point {
            t: 260 * 15_000,
            v: 1e6,
        });
        assert!(m.charts.max() <= CLIP - SLACK + 1e-9);
    }
}
