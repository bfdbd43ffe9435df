//! `mad`: distance from the rolling median in robust standard deviations
//! (1.4826 × the median absolute deviation), which a few outliers in the
//! window do not inflate. Forecasts the median with robust bounds.

use super::window::{Window, future_times, median_and_robust_sigma, spread_floor};
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z, z_for_level};

/// Rolling median and MAD over the last `window` points.
pub struct Mad {
    params: ModelParams,
    window: Window,
}

impl Mad {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Mad {
        let window = Window::new(params.window);
        Mad { params, window }
    }

    /// Median and robust sigma of the window.
    fn center_spread(&self) -> (f64, f64) {
        let mut v: Vec<f64> = self.window.values().collect();
        let (med, mut sigma) = median_and_robust_sigma(&mut v);
        if sigma == 0.0 {
            // More than half the window is one value: fall back to the mean
            // absolute deviation (scaled to sigma for normal data).
            sigma = 1.2533 * v.iter().map(|x| (x - med).abs()).sum::<f64>() / v.len().max(1) as f64;
        }
        (med, sigma.max(spread_floor(med)))
    }
}

impl Model for Mad {
    fn name(&self) -> &'static str {
        "mad"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.window.fill(history);
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if self.window.len() < self.params.min_points || !point.v.is_finite() {
            return 0.0;
        }
        let (med, sigma) = self.center_spread();
        score_from_z((point.v - med) / sigma)
    }

    fn update(&mut self, point: Point) {
        self.window.push(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        if self.window.len() < self.params.min_points {
            return None;
        }
        let step = self.window.step_ms()?;
        let last = self.window.last()?;
        let (med, sigma) = self.center_spread();
        let half = z_for_level(level) * sigma;
        Some(Forecast {
            t: future_times(last.t, step, steps),
            mean: vec![med; steps],
            lower: vec![med - half; steps],
            upper: vec![med + half; steps],
        })
    }

    fn save(&self) -> serde_json::Value {
        self.window.save()
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        self.window = Window::load("mad", state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testdata::noisy;

    #[test]
    fn outliers_in_the_window_do_not_hide_the_next_one() {
        let mut h = noisy(100, 5.0, 0.5);
        for p in h.iter_mut().step_by(10) {
            p.v = 50.0;
        }
        let mut m = Mad::new(ModelParams::default());
        m.fit(&h).unwrap();
        let next = Point {
            t: 100 * 15_000,
            v: 12.0,
        };
        assert!(m.score(next) > 0.99, "{}", m.score(next));
        let mut z = crate::model::zscore::ZScore::new(ModelParams::default());
        z.fit(&h).unwrap();
        assert!(
            z.score(next) < m.score(next),
            "the mean/std model is blinded by the outliers"
        );
    }
}
