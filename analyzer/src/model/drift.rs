//! `drift`: the random walk with drift. Forecasts the last value plus the
//! average change per step, with bounds that widen with the horizon; scores
//! a point by its distance from that one-step forecast. Suits trending
//! series such as disk usage, where a flat mean would be wrong.

use super::window::{Window, future_times, spread_floor};
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z, z_for_level};

/// Drift over the last `window` points.
pub struct Drift {
    params: ModelParams,
    window: Window,
}

struct Fit {
    last: Point,
    step: i64,
    slope: f64,
    sigma: f64,
    n: f64,
}

impl Drift {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Drift {
        let window = Window::new(params.window);
        Drift { params, window }
    }

    fn fitted(&self) -> Option<Fit> {
        let n = self.window.len();
        if n < self.params.min_points.max(3) {
            return None;
        }
        let first = self.window.first()?;
        let last = self.window.last()?;
        let step = self.window.step_ms()?;
        let slope = (last.v - first.v) / (n - 1) as f64;
        let values: Vec<f64> = self.window.values().collect();
        let sse: f64 = values
            .windows(2)
            .map(|w| (w[1] - w[0] - slope).powi(2))
            .sum();
        let sigma = (sse / (n - 2) as f64).sqrt();
        Some(Fit {
            last,
            step,
            slope,
            sigma: sigma.max(spread_floor(last.v)),
            n: n as f64,
        })
    }
}

impl Fit {
    /// Mean and standard error `h` steps after the last point.
    fn at(&self, h: f64) -> (f64, f64) {
        let mean = self.last.v + h * self.slope;
        let se = self.sigma * (h * (1.0 + h / (self.n - 1.0))).sqrt();
        (mean, se)
    }
}

impl Model for Drift {
    fn name(&self) -> &'static str {
        "drift"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.window.fill(history);
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        let Some(fit) = self.fitted() else {
            return 0.0;
        };
        if !point.v.is_finite() {
            return 0.0;
        }
        let h = ((point.t - fit.last.t) as f64 / fit.step as f64)
            .round()
            .max(1.0);
        let (mean, se) = fit.at(h);
        score_from_z((point.v - mean) / se)
    }

    fn update(&mut self, point: Point) {
        self.window.push(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let fit = self.fitted()?;
        let z = z_for_level(level);
        let mut f = Forecast {
            t: future_times(fit.last.t, fit.step, steps),
            mean: Vec::with_capacity(steps),
            lower: Vec::with_capacity(steps),
            upper: Vec::with_capacity(steps),
        };
        for h in 1..=steps {
            let (mean, se) = fit.at(h as f64);
            f.mean.push(mean);
            f.lower.push(mean - z * se);
            f.upper.push(mean + z * se);
        }
        Some(f)
    }

    fn save(&self) -> serde_json::Value {
        self.window.save()
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        self.window = Window::load("drift", state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_trend_and_widens_with_the_horizon() {
        let h: Vec<Point> = (0..50)
            .map(|i| Point {
                t: i * 60_000,
                v: 100.0 + 2.0 * i as f64 + if i % 2 == 0 { 0.5 } else { -0.5 },
            })
            .collect();
        let mut m = Drift::new(ModelParams::default());
        m.fit(&h).unwrap();
        let f = m.forecast(10, 0.95).unwrap();
        assert!((f.mean[9] - (h[49].v + 20.0)).abs() < 0.5, "{}", f.mean[9]);
        assert_eq!(f.t[0], 50 * 60_000);
        assert!(f.upper[9] - f.lower[9] > f.upper[0] - f.lower[0]);
    }
}
