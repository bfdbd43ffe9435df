//! Learned anomaly detectors: models trained on feature windows of a
//! series' history (see [`features`]) rather than on a statistical model of
//! the series itself.
//!
//! What they share lives here: a seeded random generator, the calibration
//! of raw detector outputs to the [0, 1] scores the statistical models give,
//! and [`Univariate`], which runs any [`Detector`] on one series behind the
//! [`Model`] trait. Learned parameters are kept as `f32` so that saved state
//! (JSON) restores them bit for bit.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use super::calibrate::Calibration;
use super::season::detect_sampled;
use super::window::Window;
use super::{Forecast, Model, ModelError, ModelParams, Point};

pub mod autoencoder;
pub mod features;
pub mod iforest;
pub mod lstm;
pub mod multivariate;
mod nn;
pub mod ocsvm;

use features::{FeatureSpec, Scaler};

/// Fewest feature rows a detector is trained on; with less history the
/// model scores 0.
pub const MIN_ROWS: usize = 24;
/// Most feature rows (the newest) a detector is trained on.
pub const MAX_ROWS: usize = 20_000;
/// Most training rows whose raw outputs calibrate the score.
const CALIBRATION_ROWS: usize = 4_000;

/// A small seeded generator (SplitMix64): the same seed gives the same
/// models on every platform and version, which a library generator does
/// not promise.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// `k` distinct indices of `0..n`, in random order (all of them, shuffled,
    /// when `k >= n`).
    pub fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let k = k.min(n);
        for i in 0..k {
            let j = i + self.below(n - i);
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }
}

/// A trainable detector on standardised feature rows: what `iforest` and
/// `ocsvm` provide, and what [`Univariate`] and
/// [`multivariate::Multivariate`] run.
pub trait Detector: Sized + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The model name.
    const NAME: &'static str;
    /// Trains on standardised rows (all of equal length).
    fn train(rows: &[Vec<f64>], params: &ModelParams) -> Result<Self, ModelError>;
    /// Raw output for one standardised row: higher is more unusual.
    fn raw(&self, row: &[f64]) -> f64;
}

/// Subsamples `rows` evenly to at most `k` (keeps order).
pub fn evenly(rows: &[Vec<f64>], k: usize) -> Vec<&[f64]> {
    if rows.len() <= k {
        return rows.iter().map(|r| r.as_slice()).collect();
    }
    (0..k)
        .map(|i| rows[i * rows.len() / k].as_slice())
        .collect()
}

/// What a [`Univariate`] model learned at its last fit.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: DeserializeOwned"))]
struct Fitted<D> {
    spec: FeatureSpec,
    scaler: Scaler,
    detector: D,
    calibration: Calibration,
}

/// Saved state of a [`Univariate`] model.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: DeserializeOwned"))]
struct Saved<D> {
    window: Window,
    fitted: Option<Fitted<D>>,
}

/// A detector run on one series: features of each point from the points
/// before it, standardised as at the last fit, scored and calibrated.
/// Training happens in [`Model::fit`] (the engine calls it when a series is
/// first seen and every `fit_every`); until the first fit with enough
/// history the model fits itself once its window holds enough points.
/// These models detect only: they do not forecast.
pub struct Univariate<D: Detector> {
    params: ModelParams,
    window: Window,
    fitted: Option<Fitted<D>>,
}

impl<D: Detector> Univariate<D> {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Univariate<D> {
        let window = Window::new(
            params
                .window
                .max(FeatureSpec::MIN_LOOKBACK + MIN_ROWS.max(params.min_points)),
        );
        Univariate {
            params,
            window,
            fitted: None,
        }
    }

    fn train(&mut self, history: &[Point]) -> Result<(), ModelError> {
        let points: Vec<Point> = history
            .iter()
            .copied()
            .filter(|p| p.v.is_finite())
            .collect();
        let season = self.params.season.or_else(|| detected_season(&points));
        let spec = FeatureSpec::choose(&points, season, MIN_ROWS.max(self.params.min_points));
        let capacity = self
            .params
            .window
            .max(spec.lookback() + MIN_ROWS.max(self.params.min_points));
        self.window = Window::new(capacity);
        self.window.fill(&points);
        let rows = spec.rows(&points);
        let rows = &rows[rows.len().saturating_sub(MAX_ROWS)..];
        if rows.len() < MIN_ROWS.max(self.params.min_points) {
            self.fitted = None;
            return Ok(());
        }
        let scaler = Scaler::fit(rows);
        let scaled: Vec<Vec<f64>> = rows.iter().map(|r| scaler.apply(r)).collect();
        let detector = D::train(&scaled, &self.params)?;
        let raw: Vec<f64> = evenly(&scaled, CALIBRATION_ROWS)
            .into_iter()
            .map(|r| detector.raw(r))
            .collect();
        self.fitted = Some(Fitted {
            spec,
            scaler,
            detector,
            calibration: Calibration::new(&raw),
        });
        Ok(())
    }
}

/// The shortest season found in `points` (regularised), if any.
pub fn detected_season(points: &[Point]) -> Option<usize> {
    let mut w = Window::new(points.len().max(1));
    w.fill(points);
    let step = w.step_ms()?;
    detect_sampled(points, step).first().copied()
}

impl<D: Detector> Model for Univariate<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.train(history)
    }

    fn score(&self, point: Point) -> f64 {
        let Some(f) = &self.fitted else {
            return 0.0;
        };
        if !point.v.is_finite() || self.window.len() < f.spec.lookback() {
            return 0.0;
        }
        let past: Vec<f64> = self.window.values().collect();
        let row = f.spec.row(&past, point);
        f.calibration.score(f.detector.raw(&f.scaler.apply(&row)))
    }

    fn update(&mut self, point: Point) {
        self.window.push(point);
        let enough = FeatureSpec::MIN_LOOKBACK + MIN_ROWS.max(self.params.min_points);
        if self.fitted.is_none() && self.window.len() >= enough {
            let points: Vec<Point> = self.window.points().collect();
            if let Err(e) = self.train(&points) {
                tracing::debug!(model = D::NAME, error = %e, "first fit failed");
            }
        }
    }

    fn forecast(&self, _steps: usize, _level: f64) -> Option<Forecast> {
        None
    }

    fn save(&self) -> serde_json::Value {
        let saved = SavedRef {
            window: &self.window,
            fitted: self.fitted.as_ref(),
        };
        serde_json::to_value(saved).unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved<D> = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: D::NAME,
            reason: e.to_string(),
        })?;
        self.window = s.window;
        self.fitted = s.fitted;
        Ok(())
    }
}

/// [`Saved`] by reference, for saving without cloning the detector.
#[derive(Serialize)]
struct SavedRef<'a, D: Serialize> {
    window: &'a Window,
    fitted: Option<&'a Fitted<D>>,
}

/// Checks that option `name` of `model` lies in `range`, with a
/// configuration error naming `model.name` otherwise.
pub fn check_range(
    model: &str,
    name: &str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), ModelError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ModelError::Config(format!(
        "{model}.{name} must be between {} and {}, is {value}",
        range.start(),
        range.end()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_samples_without_repeats() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(7);
        assert_eq!(a, (0..5).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut s = Rng::new(1).sample(100, 30);
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 30);
        assert!(s.iter().all(|i| *i < 100));
    }
}
