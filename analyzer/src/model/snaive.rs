//! `snaive`: the seasonal naive forecast — each point is expected to repeat
//! the value one season earlier (the last value when there is no season).
//! The baseline every other forecaster must beat. The season comes from
//! the `season` parameter or is detected on the history at fit time.

use serde::{Deserialize, Serialize};

use super::resid::Errors;
use super::season::{detect, regular};
use super::window::{Window, future_times};
use super::{Forecast, Model, ModelError, ModelParams, Point};

/// Seasonal naive over a window of at least four seasons.
pub struct SNaive {
    params: ModelParams,
    window: Window,
    season: usize,
}

/// The saved state: the season and the window.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    season: usize,
    window: Window,
}

/// The fitted view of the window: the grid, its step and last time, and
/// the seasonal errors.
struct View {
    y: Vec<f64>,
    step: i64,
    last_t: i64,
    errors: Errors,
}

impl SNaive {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> SNaive {
        let season = params.season.unwrap_or(1).max(1);
        let window = Window::new(capacity(&params, season));
        SNaive {
            params,
            window,
            season,
        }
    }

    /// The season in use (1 when none).
    pub fn season(&self) -> usize {
        self.season
    }

    fn view(&self) -> Option<View> {
        let step = self.window.step_ms()?;
        let last_t = self.window.last()?.t;
        let points: Vec<Point> = self.window.points().collect();
        let y = regular(&points, step);
        let s = self.season;
        if y.len() < self.params.min_points.max(s + 2) {
            return None;
        }
        let e: Vec<f64> = (s..y.len()).map(|i| y[i] - y[i - s]).collect();
        let level = y[y.len() - 1];
        Some(View {
            errors: Errors::new(&e, level),
            y,
            step,
            last_t,
        })
    }
}

/// Window size: the configured one, or four seasons and a point if longer.
fn capacity(params: &ModelParams, season: usize) -> usize {
    params.window.max(4 * season + 1)
}

impl View {
    /// Mean and scale growth `h` steps after the last point.
    fn at(&self, s: usize, h: usize) -> (f64, f64) {
        let n = self.y.len();
        let k = h.div_ceil(s);
        let i = (n - 1 + h) - k * s;
        (self.y[i], (k as f64).sqrt())
    }
}

impl Model for SNaive {
    fn name(&self) -> &'static str {
        "snaive"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        if self.params.season.is_none() {
            let mut w = Window::new(history.len().max(1));
            w.fill(history);
            let points: Vec<Point> = w.points().collect();
            self.season = match w.step_ms() {
                Some(step) => detect(&regular(&points, step))
                    .first()
                    .copied()
                    .unwrap_or(1),
                None => 1,
            };
        }
        self.window = Window::new(capacity(&self.params, self.season));
        self.window.fill(history);
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if !point.v.is_finite() {
            return 0.0;
        }
        let Some(v) = self.view() else {
            return 0.0;
        };
        let h = ((point.t - v.last_t) as f64 / v.step as f64)
            .round()
            .max(1.0) as usize;
        let (mean, growth) = v.at(self.season, h);
        v.errors.score(point.v - mean, growth)
    }

    fn update(&mut self, point: Point) {
        self.window.push(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let v = self.view()?;
        let half = v.errors.half_width(level);
        let mut f = Forecast {
            t: future_times(v.last_t, v.step, steps),
            mean: Vec::with_capacity(steps),
            lower: Vec::with_capacity(steps),
            upper: Vec::with_capacity(steps),
        };
        for h in 1..=steps {
            let (mean, growth) = v.at(self.season, h);
            f.mean.push(mean);
            f.lower.push(mean - half * growth);
            f.upper.push(mean + half * growth);
        }
        Some(f)
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            season: self.season,
            window: self.window.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: "snaive",
            reason: e.to_string(),
        })?;
        if s.season == 0 {
            return Err(ModelError::BadState {
                model: "snaive",
                reason: "season 0".into(),
            });
        }
        self.season = s.season;
        self.window = s.window;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_season() {
        let h: Vec<Point> = (0..240)
            .map(|i| Point {
                t: i * 1000,
                v: [1.0, 5.0, 3.0, 9.0, 2.0, 7.0][i as usize % 6] + 0.01 * (i % 5) as f64,
            })
            .collect();
        let mut m = SNaive::new(ModelParams::default());
        m.fit(&h).unwrap();
        assert_eq!(m.season(), 6);
        let f = m.forecast(7, 0.95).unwrap();
        for (k, mean) in f.mean.iter().enumerate() {
            let want = h[240 - 6 + (k % 6)].v;
            assert_eq!(*mean, want, "step {}", k + 1);
        }
        assert!(f.upper[6] - f.lower[6] > f.upper[0] - f.lower[0]);
        let off = m.score(Point { t: 240_000, v: 9.0 });
        assert!(off > 0.99, "{off}");
    }
}
