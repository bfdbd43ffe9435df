//! `changepoint`: level and variance shifts, found by two-sided CUSUM
//! charts (Page's cumulative sums) of the robust z-score of each point
//! against the rolling median/MAD. A chart sums the excess of |z| over a
//! slack of half a standard deviation and signals at five, the textbook
//! design that finds a one-sigma shift in about ten points and signals
//! falsely about once in several hundred. Each point adds at most three
//! standard deviations to a chart, so a lone outlier does not read as a
//! change; it still gets the robust z-score's own score. When a chart
//! signals, the window restarts from the points since the chart left zero —
//! the new regime — so the model follows the shift instead of alarming on
//! it for half a window.
//!
//! The score is the larger of the point's robust z-score and the chart
//! value, scaled so that reaching the signal level scores 0.99.

use serde::{Deserialize, Serialize};

use super::window::{Window, future_times, median, spread_floor};
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z, z_for_level};

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

/// CUSUM charts over a rolling median/MAD reference.
pub struct Changepoint {
    params: ModelParams,
    window: Window,
    charts: Charts,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    window: Window,
    charts: Charts,
}

impl Changepoint {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Changepoint {
        let window = Window::new(params.window);
        Changepoint {
            params,
            window,
            charts: Charts::default(),
        }
    }

    fn reference(&self) -> Option<(f64, f64)> {
        if self.window.len() < self.params.min_points {
            return None;
        }
        let mut v: Vec<f64> = self.window.values().collect();
        let med = median(&mut v);
        let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
        let mut sigma = 1.4826 * median(&mut dev);
        if sigma == 0.0 {
            sigma = 1.2533 * dev.iter().sum::<f64>() / dev.len().max(1) as f64;
        }
        Some((med, sigma.max(spread_floor(med))))
    }
}

impl Model for Changepoint {
    fn name(&self) -> &'static str {
        "changepoint"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.window.fill(history);
        self.charts = Charts::default();
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        let Some((med, sigma)) = self.reference() else {
            return 0.0;
        };
        if !point.v.is_finite() {
            return 0.0;
        }
        let z = (point.v - med) / sigma;
        let chart = self.charts.next(z).max();
        score_from_z(z).max(score_from_z(Z_AT_SIGNAL * chart / SIGNAL))
    }

    fn update(&mut self, point: Point) {
        if !point.v.is_finite() {
            return;
        }
        if let Some((med, sigma)) = self.reference() {
            let next = self.charts.next((point.v - med) / sigma);
            if next.max() >= SIGNAL {
                // A change: keep only the new regime.
                let keep: Vec<Point> = self.window.points().collect();
                let from = keep.len().saturating_sub(next.run.saturating_sub(1));
                self.window.fill(&keep[from..]);
                self.charts = Charts::default();
            } else {
                self.charts = next;
            }
        }
        self.window.push(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let (med, sigma) = self.reference()?;
        let step = self.window.step_ms()?;
        let last = self.window.last()?;
        let half = z_for_level(level) * sigma;
        Some(Forecast {
            t: future_times(last.t, step, steps),
            mean: vec![med; steps],
            lower: vec![med - half; steps],
            upper: vec![med + half; steps],
        })
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            window: self.window.clone(),
            charts: self.charts,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: "changepoint",
            reason: e.to_string(),
        })?;
        self.window = s.window;
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
        m.update(Point {
            t: 260 * 15_000,
            v: 1e6,
        });
        assert!(m.charts.max() <= CLIP - SLACK + 1e-9 || m.charts.max() == 0.0);
    }
}
