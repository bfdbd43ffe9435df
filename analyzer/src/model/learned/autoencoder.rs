//! `autoencoder`: a small dense autoencoder over sliding windows of the
//! series, as an anomaly detector.
//!
//! At fit time the history is put on a regular grid and standardised (mean
//! and standard deviation of the history), and cut into every window of
//! `length` points (twice the season, 16 to 64 points, or 32 without one).
//! An encoder (`length` → `hidden` → `bottleneck`, tanh) and a decoder
//! (back, mirrored) learn to reconstruct windows they saw, with Adam on at
//! most `max_windows` windows sampled from the history (the cost is bounded
//! whatever the history's length). The bottleneck keeps the network from
//! copying its input: it can only reproduce shapes that were common.
//!
//! A new point is judged as the newest point of the window that ends at it
//! (the points before it and the point itself): its raw output is the
//! reconstruction error of that newest point, in standard units. Raw outputs
//! are calibrated against the same errors of held-out windows (the newest
//! fifth of the history's windows, left out of training; with a short
//! history, the training windows themselves) (the
//! learned detectors' [`Calibration`]: the empirical rank, with a fitted
//! exponential tail), so an ordinary point scores like a draw from the
//! history and an error beyond any seen approaches 1. A detector: it does
//! not forecast.

use candle_core::{DType, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::check_range;
use super::nn::{self, Dense, SavedWeights, Scale, Training};
use super::{Calibration, Rng, detected_season};
use crate::model::season::regular;
use crate::model::window::Window;
use crate::model::{Forecast, Model, ModelError, ModelParams, Point};

const NAME: &str = "autoencoder";
/// Window length without a season.
const DEFAULT_LENGTH: usize = 32;
/// Shortest window (also the shortest a short history may shrink it to).
const MIN_LENGTH: usize = 8;
/// Fewest windows to train on.
const MIN_WINDOWS: usize = 24;
/// Most points of history used (the newest).
const MAX_POINTS: usize = 20_000;
/// Most training windows whose errors calibrate the score.
const CALIBRATION_WINDOWS: usize = 4_000;
/// Points after which a model that was never fitted fits itself.
const SELF_FIT_POINTS: usize = 4 * DEFAULT_LENGTH;

/// Options of the `autoencoder` model (`autoencoder:` in a query's model
/// parameters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderParams {
    /// Points per window; unset: twice the season (given or detected)
    /// within 16..=64, or 32 without a season. A history shorter than four
    /// windows shrinks it.
    pub length: Option<usize>,
    /// Units of each hidden layer.
    pub hidden: usize,
    /// Units of the bottleneck.
    pub bottleneck: usize,
    /// Most training epochs (training stops earlier once the loss stops
    /// falling).
    pub epochs: usize,
    /// Most windows trained on, sampled from the history.
    pub max_windows: usize,
}

impl Default for AutoencoderParams {
    fn default() -> Self {
        AutoencoderParams {
            length: None,
            hidden: 16,
            bottleneck: 4,
            epochs: 40,
            max_windows: 512,
        }
    }
}

impl AutoencoderParams {
    /// Checks the options (a configuration error names the bad one).
    pub fn check(&self) -> Result<(), ModelError> {
        if let Some(l) = self.length {
            check_range("autoencoder", "length", l, MIN_LENGTH..=1024)?;
        }
        check_range("autoencoder", "hidden", self.hidden, 2..=256)?;
        if self.bottleneck == 0 || self.bottleneck >= self.hidden {
            return Err(ModelError::Config(format!(
                "autoencoder.bottleneck must be at least 1 and below hidden ({}), is {}",
                self.hidden, self.bottleneck
            )));
        }
        check_range("autoencoder", "epochs", self.epochs, 1..=1000)?;
        check_range(
            "autoencoder",
            "max_windows",
            self.max_windows,
            MIN_WINDOWS..=100_000,
        )?;
        Ok(())
    }
}

/// The network: encoder and decoder, two dense layers each.
struct Net {
    vars: VarMap,
    layers: [Dense; 4],
}

impl Net {
    fn new(length: usize, hidden: usize, bottleneck: usize) -> candle_core::Result<Net> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &nn::device());
        let layers = [
            Dense::new(&vb, length, hidden, "enc1")?,
            Dense::new(&vb, hidden, bottleneck, "enc2")?,
            Dense::new(&vb, bottleneck, hidden, "dec1")?,
            Dense::new(&vb, hidden, length, "dec2")?,
        ];
        Ok(Net { vars, layers })
    }

    /// Reconstructions of a batch of windows (rows).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let [e1, e2, d1, d2] = &self.layers;
        let h = e1.forward(x)?.tanh()?;
        let code = e2.forward(&h)?;
        let h = d1.forward(&code)?.tanh()?;
        d2.forward(&h)
    }

    /// Reconstruction error of the newest point of each window (standard
    /// units).
    fn last_errors(&self, windows: &Tensor) -> candle_core::Result<Vec<f32>> {
        let length = windows.dim(1)?;
        let r = self.forward(windows)?;
        let e = (windows.narrow(1, length - 1, 1)? - r.narrow(1, length - 1, 1)?)?.abs()?;
        e.flatten_all()?.to_vec1::<f32>()
    }
}

/// What the model learned at its last fit.
struct Fitted {
    length: usize,
    hidden: usize,
    bottleneck: usize,
    /// Sampling interval of the grid (ms).
    step: i64,
    scale: Scale,
    net: Net,
    calibration: Calibration,
}

/// [`Fitted`] as saved.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFit {
    length: usize,
    hidden: usize,
    bottleneck: usize,
    step: i64,
    scale: Scale,
    weights: SavedWeights,
    calibration: Calibration,
}

/// Saved state: the recent points and what was learned.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    window: Window,
    fitted: Option<SavedFit>,
}

/// The autoencoder detector.
pub struct Autoencoder {
    params: ModelParams,
    window: Window,
    fitted: Option<Fitted>,
}

impl Autoencoder {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Autoencoder {
        let window = Window::new(params.window.max(SELF_FIT_POINTS));
        Autoencoder {
            params,
            window,
            fitted: None,
        }
    }

    /// The window length for a history of `n` grid points, or `None` when
    /// it is too short.
    fn length_for(&self, n: usize, season: Option<usize>) -> Option<usize> {
        let wanted = self.params.autoencoder.length.unwrap_or_else(|| {
            season
                .map(|s| (2 * s).clamp(16, 64))
                .unwrap_or(DEFAULT_LENGTH)
        });
        let length = wanted.min(n / 4);
        (length >= MIN_LENGTH && n + 1 >= length + MIN_WINDOWS && n >= self.params.min_points)
            .then_some(length)
    }

    fn train(&mut self, history: &[Point]) -> Result<(), ModelError> {
        let points: Vec<Point> = history
            .iter()
            .copied()
            .filter(|p| p.v.is_finite())
            .collect();
        let points = &points[points.len().saturating_sub(MAX_POINTS)..];
        self.fitted = None;
        let mut w = Window::new(points.len().max(1));
        w.fill(points);
        let Some(step) = w.step_ms() else {
            self.window.fill(points);
            return Ok(());
        };
        let y = regular(points, step);
        let season = self.params.season.or_else(|| detected_season(points));
        let Some(length) = self.length_for(y.len(), season) else {
            self.window.fill(points);
            return Ok(());
        };
        self.window = Window::new(self.params.window.max(length));
        self.window.fill(points);
        let scale = Scale::fit(&y);
        let z: Vec<f32> = y.iter().map(|v| scale.apply(*v)).collect();
        let count = z.len() - length + 1;
        let opts = &self.params.autoencoder;
        let mut rng = Rng::new(self.params.seed);
        let net = Net::new(length, opts.hidden, opts.bottleneck).map_err(err)?;
        nn::seed_vars(&net.vars, &mut rng).map_err(err)?;
        // The newest fifth of the windows is held out of training when
        // there are enough: their errors calibrate the score as errors on
        // new windows will be (errors on trained windows run smaller).
        let hold = if count / 5 >= MIN_WINDOWS && count - count / 5 >= MIN_WINDOWS {
            (count / 5).min(CALIBRATION_WINDOWS)
        } else {
            0
        };
        let trained = count - hold;
        let picked = rng.sample(trained, opts.max_windows);
        let rows: Vec<Vec<f32>> = picked.iter().map(|i| z[*i..*i + length].to_vec()).collect();
        let x = nn::matrix(&rows, length).map_err(err)?;
        let training = Training {
            epochs: opts.epochs,
            batch: 32,
            lr: 0.01,
        };
        nn::train(&net.vars, rows.len(), &training, &mut rng, |idx| {
            let b = x.index_select(idx, 0)?;
            (net.forward(&b)? - &b)?.sqr()?.mean_all()
        })
        .map_err(err)?;
        let rows: Vec<Vec<f32>> = if hold > 0 {
            (trained..count)
                .map(|i| z[i..i + length].to_vec())
                .collect()
        } else {
            let k = count.min(CALIBRATION_WINDOWS);
            (0..k)
                .map(|j| {
                    let i = j * count / k;
                    z[i..i + length].to_vec()
                })
                .collect()
        };
        let raw = net
            .last_errors(&nn::matrix(&rows, length).map_err(err)?)
            .map_err(err)?;
        let raw: Vec<f64> = raw.iter().map(|e| *e as f64).collect();
        self.fitted = Some(Fitted {
            length,
            hidden: opts.hidden,
            bottleneck: opts.bottleneck,
            step,
            scale,
            net,
            calibration: Calibration::new(&raw),
        });
        Ok(())
    }

    /// The raw output (reconstruction error of the newest point) of the
    /// window that ends at `point`.
    fn raw(&self, f: &Fitted, point: Point) -> Option<f64> {
        let last = self.window.last()?;
        if point.t <= last.t {
            return None;
        }
        let mut pts: Vec<Point> = self.window.points().collect();
        pts.push(point);
        let y = regular(&pts, f.step);
        let w = y.get(y.len().checked_sub(f.length)?..)?;
        let row: Vec<f32> = w.iter().map(|v| f.scale.apply(*v)).collect();
        let x = Tensor::from_vec(row, (1, f.length), &nn::device()).ok()?;
        let e = f.net.last_errors(&x).ok()?;
        e.first().map(|e| *e as f64)
    }
}

fn err(e: candle_core::Error) -> ModelError {
    nn::candle_error(NAME, e)
}

impl Model for Autoencoder {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.train(history)
    }

    fn score(&self, point: Point) -> f64 {
        let Some(f) = &self.fitted else {
            return 0.0;
        };
        if !point.v.is_finite() {
            return 0.0;
        }
        match self.raw(f, point) {
            Some(raw) if raw.is_finite() => f.calibration.score(raw),
            // Beyond what f32 holds: as unusual as it gets.
            Some(_) => 1.0,
            None => 0.0,
        }
    }

    fn update(&mut self, point: Point) {
        if self.window.last().is_some_and(|l| point.t <= l.t) {
            return;
        }
        self.window.push(point);
        if self.fitted.is_none() && self.window.len() >= SELF_FIT_POINTS {
            let points: Vec<Point> = self.window.points().collect();
            if let Err(e) = self.train(&points) {
                tracing::debug!(model = NAME, error = %e, "first fit failed");
            }
        }
    }

    fn forecast(&self, _steps: usize, _level: f64) -> Option<Forecast> {
        None
    }

    fn save(&self) -> serde_json::Value {
        let fitted = self.fitted.as_ref().and_then(|f| {
            Some(SavedFit {
                length: f.length,
                hidden: f.hidden,
                bottleneck: f.bottleneck,
                step: f.step,
                scale: f.scale,
                weights: nn::save_vars(&f.net.vars).ok()?,
                calibration: f.calibration.clone(),
            })
        });
        serde_json::to_value(Saved {
            window: self.window.clone(),
            fitted,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved =
            serde_json::from_value(state).map_err(|e| nn::bad_state(NAME, e.to_string()))?;
        let fitted = match s.fitted {
            None => None,
            Some(f) => {
                if f.length < 2 || f.step <= 0 || !f.scale.is_valid() {
                    return Err(nn::bad_state(
                        NAME,
                        format!("bad length {}, step {} or scale", f.length, f.step),
                    ));
                }
                if f.hidden == 0 || f.bottleneck == 0 || f.hidden > 4096 || f.length > 4096 {
                    return Err(nn::bad_state(
                        NAME,
                        format!("bad layer sizes {} {}", f.hidden, f.bottleneck),
                    ));
                }
                let net = Net::new(f.length, f.hidden, f.bottleneck).map_err(err)?;
                nn::load_vars(&net.vars, &f.weights).map_err(|e| nn::bad_state(NAME, e))?;
                Some(Fitted {
                    length: f.length,
                    hidden: f.hidden,
                    bottleneck: f.bottleneck,
                    step: f.step,
                    scale: f.scale,
                    net,
                    calibration: f.calibration,
                })
            }
        };
        self.window = s.window;
        self.fitted = fitted;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    /// A daily cycle sampled hourly with small noise.
    fn daily(n: usize, seed: u64) -> Vec<Point> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| Point {
                t: i as i64 * HOUR,
                v: 50.0
                    + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + (rng.uniform() - 0.5),
            })
            .collect()
    }

    fn fitted(points: &[Point]) -> Autoencoder {
        let mut m = Autoencoder::new(ModelParams::default());
        m.fit(points).unwrap();
        m
    }

    #[test]
    fn flags_a_spike_and_a_shape_change_and_keeps_ordinary_points_low() {
        let all = daily(24 * 40, 1);
        let (history, rest) = all.split_at(24 * 30);
        let mut m = fitted(history);
        assert_eq!(m.fitted.as_ref().unwrap().length, 48);
        let mut scores = Vec::new();
        for p in rest {
            scores.push(m.score(*p));
            m.update(*p);
        }
        let alarms = scores.iter().filter(|s| **s >= 0.99).count();
        assert!(
            alarms <= 3,
            "{alarms} ordinary points of 240 scored >= 0.99"
        );
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        assert!(mean < 0.7, "ordinary points score {mean} on average");
        let next = rest.last().unwrap().t + HOUR;
        // The cycle is at its mean (sin 0) at a multiple of 24 hours.
        let expected = 50.0;
        let spike = m.score(Point {
            t: next,
            v: expected + 8.0,
        });
        assert!(spike >= 0.99, "spike scored {spike}");
        // Shape change: the cycle turns upside down; found within a few
        // points (the first points of the new shape may still fit).
        let flipped: Vec<Point> = (0..12)
            .map(|k| {
                let i = 24 * 40 + k;
                Point {
                    t: i as i64 * HOUR,
                    v: 50.0 - 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin(),
                }
            })
            .collect();
        let mut found = None;
        for (k, p) in flipped.iter().enumerate() {
            if m.score(*p) >= 0.99 {
                found = Some(k);
                break;
            }
            m.update(*p);
        }
        assert!(
            found.is_some_and(|k| k < 8),
            "shape change found at {found:?}"
        );
    }

    #[test]
    fn same_seed_same_model_and_state_round_trips() {
        let h = daily(24 * 20, 2);
        let probe = Point {
            t: 24 * 20 * HOUR,
            v: 55.0,
        };
        let a = fitted(&h);
        let b = fitted(&h);
        assert_eq!(a.score(probe).to_bits(), b.score(probe).to_bits());
        assert_eq!(a.save(), b.save());
        let other = {
            let p = ModelParams {
                seed: 9,
                ..ModelParams::default()
            };
            let mut m = Autoencoder::new(p);
            m.fit(&h).unwrap();
            m
        };
        assert_ne!(a.save(), other.save());
        // Through text, as the engine saves it.
        let text = serde_json::to_string(&a.save()).unwrap();
        let mut c = Autoencoder::new(ModelParams::default());
        c.load(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(c.score(probe).to_bits(), a.score(probe).to_bits());
        assert_eq!(c.save(), a.save());
        let mut bad = a.save();
        bad["fitted"]["weights"]["enc1.weight"]["shape"] = serde_json::json!([3, 3]);
        let e = c.load(bad).unwrap_err().to_string();
        assert!(e.contains("enc1.weight"), "{e}");
    }

    #[test]
    fn too_little_history_scores_zero_then_fits_itself() {
        let h = daily(20, 3);
        let mut m = fitted(&h);
        assert!(m.fitted.is_none());
        assert_eq!(
            m.score(Point {
                t: 20 * HOUR,
                v: 1e6
            }),
            0.0
        );
        for p in daily(SELF_FIT_POINTS, 3).iter().skip(20) {
            m.update(*p);
        }
        assert!(m.fitted.is_some());
        assert!(
            AutoencoderParams {
                bottleneck: 16,
                ..AutoencoderParams::default()
            }
            .check()
            .unwrap_err()
            .to_string()
            .contains("autoencoder.bottleneck")
        );
    }
}
