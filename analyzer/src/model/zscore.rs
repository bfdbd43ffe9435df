//! `zscore`: distance from the rolling mean in rolling standard deviations.
//! Forecasts the rolling mean, with bounds from the rolling spread.

use super::window::{Window, future_times, spread_floor};
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z, z_for_level};

/// Rolling mean and standard deviation over the last `window` points.
pub struct ZScore {
    params: ModelParams,
    window: Window,
}

impl ZScore {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> ZScore {
        let window = Window::new(params.window);
        ZScore { params, window }
    }

    fn ready(&self) -> bool {
        self.window.len() >= self.params.min_points
    }
}

impl Model for ZScore {
    fn name(&self) -> &'static str {
        "zscore"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.window.fill(history);
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if !self.ready() || !point.v.is_finite() {
            return 0.0;
        }
        let (mean, std) = self.window.mean_std();
        score_from_z((point.v - mean) / std.max(spread_floor(mean)))
    }

    fn update(&mut self, point: Point) {
        self.window.push(point);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        if !self.ready() {
            return None;
        }
        let step = self.window.step_ms()?;
        let last = self.window.last()?;
        let (mean, std) = self.window.mean_std();
        let n = self.window.len() as f64;
        let half = z_for_level(level) * std.max(spread_floor(mean)) * (1.0 + 1.0 / n).sqrt();
        Some(Forecast {
            t: future_times(last.t, step, steps),
            mean: vec![mean; steps],
            lower: vec![mean - half; steps],
            upper: vec![mean + half; steps],
        })
    }

    fn save(&self) -> serde_json::Value {
        self.window.save()
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        self.window = Window::load("zscore", state)?;
        Ok(())
    }
}
