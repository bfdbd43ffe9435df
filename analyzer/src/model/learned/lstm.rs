//! `lstm`: a one-layer LSTM forecaster (candle's `LSTM` and a linear
//! head), also an anomaly detector through its one-step errors.
//!
//! At fit time the history is put on a regular grid and standardised. The
//! network reads the last `lags` values (with the time of day and the day
//! of the week as sine/cosine pairs when the history spans two days / two
//! weeks) and predicts the next value; it is trained with Adam on at most
//! `max_samples` targets sampled from the history except its last part.
//! That held-out part gives honest one-step errors, the scale of anomaly
//! scores and bounds (resid.rs: a robust sigma for scores, the empirical
//! quantile for bounds), and the growth of errors with the horizon
//! (recursive forecasts from origins in the held-out part, root mean square
//! error at each step over that at the first).
//!
//! Forecasts are recursive: each predicted value is fed back as the newest
//! input. A new point scores by its error against the forecast for its
//! time; the errors of the points taken in online widen the scale when they
//! run larger than the held-out ones (as `refit` does).

use candle_core::{DType, IndexOp, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::check_range;
use super::features::FeatureSpec;
use super::nn::{self, Dense, SavedWeights, Scale, Training, times_transposed};
use super::{Rng, detected_season};
use crate::model::compact::F32s;
use crate::model::resid::{Errors, OnlineErrors};
use crate::model::season::regular;
use crate::model::window::{Window, future_times};
use crate::model::{Forecast, Model, ModelError, ModelParams, Point};

const NAME: &str = "lstm";
/// Lags without a season.
const DEFAULT_LAGS: usize = 24;
/// Most lags taken from a season (longer seasons come in through the time
/// features, which keeps the cost of each prediction bounded).
const MAX_DEFAULT_LAGS: usize = 24;
/// Fewest lags.
const MIN_LAGS: usize = 4;
/// Fewest training targets.
const MIN_SAMPLES: usize = 24;
/// Most points of history used (the newest).
const MAX_POINTS: usize = 20_000;
/// Held-out points: a fifth of the history within these.
const HOLD_MIN: usize = 24;
const HOLD_MAX: usize = 720;
/// Horizon up to which the growth of errors is measured (beyond it, the
/// last growth is kept).
const GROWTH_STEPS: usize = 24;
/// Most origins of the recursive forecasts that measure the growth.
const GROWTH_ORIGINS: usize = 32;
/// Points after which a model that was never fitted fits itself.
const SELF_FIT_POINTS: usize = 128;

/// Options of the `lstm` model (`lstm:` in a query's model parameters).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LstmParams {
    /// Past values each prediction reads; unset: the season (given or
    /// detected) within 8..=24, or 24 without one.
    pub lags: Option<usize>,
    /// Units of the LSTM layer.
    pub hidden: usize,
    /// Most training epochs (training stops earlier once the loss stops
    /// falling).
    pub epochs: usize,
    /// Most training targets, sampled from the history.
    pub max_samples: usize,
    /// Time of day and day of week as inputs (when the history spans two
    /// days / two weeks).
    pub time_features: bool,
}

impl Default for LstmParams {
    fn default() -> Self {
        LstmParams {
            lags: None,
            hidden: 16,
            epochs: 20,
            max_samples: 384,
            time_features: true,
        }
    }
}

impl LstmParams {
    /// Checks the options (a configuration error names the bad one).
    pub fn check(&self) -> Result<(), ModelError> {
        if let Some(l) = self.lags {
            check_range("lstm", "lags", l, MIN_LAGS..=512)?;
        }
        check_range("lstm", "hidden", self.hidden, 1..=256)?;
        check_range("lstm", "epochs", self.epochs, 1..=1000)?;
        check_range(
            "lstm",
            "max_samples",
            self.max_samples,
            MIN_SAMPLES..=100_000,
        )?;
        Ok(())
    }
}

/// The network: an LSTM layer over the inputs and a linear head on its
/// last hidden state. The cell is the standard one (input, forget, output
/// gates, as candle-nn's `LSTM`), written with candle's operations so that
/// each step is one product of `[input, hidden]` with one weight matrix
/// (candle's `matmul` has a fixed cost per call, see [`times_transposed`]).
struct Net {
    vars: VarMap,
    hidden: usize,
    /// Weights (4·hidden, inputs + hidden), gates in the order input,
    /// forget, output, candidate.
    weight: Tensor,
    /// Gate biases (4·hidden).
    bias: Tensor,
    head: Dense,
}

impl Net {
    fn new(inputs: usize, hidden: usize) -> candle_core::Result<Net> {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &nn::device());
        let l = vb.pp("lstm");
        let zero = Init::Const(0.0);
        let weight = l.get_with_hints((4 * hidden, inputs + hidden), "weight", zero)?;
        let bias = l.get_with_hints(4 * hidden, "bias", zero)?;
        let head = Dense::new(&vb, hidden, 1, "head")?;
        Ok(Net {
            vars,
            hidden,
            weight,
            bias,
            head,
        })
    }

    /// Seeded initial weights, with the forget gates' bias at 1 (the usual
    /// choice: the cell remembers until it learns to forget).
    fn seed(&self, rng: &mut Rng) -> candle_core::Result<()> {
        nn::seed_vars(&self.vars, rng)?;
        let h = self.hidden;
        let b: Vec<f32> = (0..4 * h)
            .map(|i| if (h..2 * h).contains(&i) { 1.0 } else { 0.0 })
            .collect();
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        match data.get("lstm.bias") {
            Some(v) => v.set(&Tensor::from_vec(b, 4 * h, &nn::device())?),
            None => candle_core::bail!("lstm.bias missing"),
        }
    }

    /// Predictions (batch, 1) from input sequences (batch, lags, inputs).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let hs = self.hidden;
        let mut h = Tensor::zeros((b, hs), DType::F32, x.device())?;
        let mut c: Option<Tensor> = None;
        for t in 0..l {
            let z = Tensor::cat(&[&x.i((.., t, ..))?, &h], 1)?;
            let g = times_transposed(&z, &self.weight)?.broadcast_add(&self.bias)?;
            let s = candle_nn::ops::sigmoid(&g.narrow(1, 0, 3 * hs)?)?;
            let cand = g.narrow(1, 3 * hs, hs)?.tanh()?;
            let (i, f, o) = (
                s.narrow(1, 0, hs)?,
                s.narrow(1, hs, hs)?,
                s.narrow(1, 2 * hs, hs)?,
            );
            let next = match &c {
                Some(c) => ((f * c)? + (i * cand)?)?,
                None => (i * cand)?,
            };
            h = (o * next.tanh()?)?;
            c = Some(next);
        }
        if l == 0 {
            candle_core::bail!("empty input sequence");
        }
        self.head.forward(&h)
    }
}

/// What the model learned at its last fit.
struct Fitted {
    lags: usize,
    hidden: usize,
    spec: FeatureSpec,
    /// Sampling interval of the grid (ms).
    step: i64,
    scale: Scale,
    net: Net,
    /// Held-out one-step errors (series units), as saved.
    held_out: Vec<f32>,
    /// Their summary.
    errors: Errors,
    /// Error growth at horizons 1..=GROWTH_STEPS (the first is 1).
    growth: Vec<f32>,
}

impl Fitted {
    fn inputs(&self) -> usize {
        1 + 2 * (self.spec.time_of_day as usize + self.spec.day_of_week as usize)
    }

    fn growth(&self, h: usize) -> f64 {
        let i = h.max(1) - 1;
        self.growth
            .get(i)
            .or(self.growth.last())
            .map(|g| (*g as f64).max(1.0))
            .unwrap_or(1.0)
    }

    /// Input rows of a sequence of standardised values ending at time
    /// `last_t`: the value and the time features of each position.
    fn rows(&self, z: &[f32], last_t: i64, out: &mut Vec<f32>) {
        let mut tf = Vec::with_capacity(4);
        for (i, v) in z.iter().enumerate() {
            out.push(*v);
            tf.clear();
            let t = last_t - (z.len() - 1 - i) as i64 * self.step;
            self.spec.time_features(t, &mut tf);
            out.extend(tf.iter().map(|x| *x as f32));
        }
    }

    /// Recursive forecasts `steps` ahead from each origin: the last `lags`
    /// standardised values before it and the time of the last of them.
    /// Returns standardised predictions, one row per origin.
    fn paths(
        &self,
        origins: &[(Vec<f32>, i64)],
        steps: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let inputs = self.inputs();
        let mut bufs: Vec<Vec<f32>> = origins.iter().map(|o| o.0.clone()).collect();
        let mut out = vec![Vec::with_capacity(steps); origins.len()];
        let mut x = Vec::with_capacity(origins.len() * self.lags * inputs);
        for h in 0..steps {
            x.clear();
            for (b, (_, t)) in bufs.iter().zip(origins) {
                self.rows(&b[b.len() - self.lags..], t + h as i64 * self.step, &mut x);
            }
            let xt =
                Tensor::from_vec(x.clone(), (origins.len(), self.lags, inputs), &nn::device())?;
            let p = self.net.forward(&xt)?.i((.., 0))?.to_vec1::<f32>()?;
            for ((b, o), v) in bufs.iter_mut().zip(&mut out).zip(p) {
                b.push(v);
                o.push(v);
            }
        }
        Ok(out)
    }
}

/// [`Fitted`] as saved.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFit {
    lags: usize,
    hidden: usize,
    spec: FeatureSpec,
    step: i64,
    scale: Scale,
    weights: SavedWeights,
    held_out: F32s,
    growth: F32s,
    /// Level of the series for the errors' spread floor.
    level: f64,
}

/// Saved state.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    window: Window,
    online: Vec<f64>,
    fitted: Option<SavedFit>,
}

/// The LSTM forecaster.
pub struct Lstm {
    params: ModelParams,
    window: Window,
    fitted: Option<Fitted>,
    /// Level of the series at the last fit (the errors' spread floor).
    level: f64,
    /// One-step forecast for the point after the window's last (series
    /// units), kept up to date by `update`.
    next: Option<f64>,
    /// Online one-step errors in units of the held-out ones' growth.
    online: OnlineErrors,
}

fn err(e: candle_core::Error) -> ModelError {
    nn::candle_error(NAME, e)
}

impl Lstm {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Lstm {
        let window = Window::new(params.window.max(SELF_FIT_POINTS));
        Lstm {
            params,
            window,
            fitted: None,
            level: 0.0,
            next: None,
            online: OnlineErrors::default(),
        }
    }

    fn train(&mut self, history: &[Point]) -> Result<(), ModelError> {
        let points: Vec<Point> = history
            .iter()
            .copied()
            .filter(|p| p.v.is_finite())
            .collect();
        let points = &points[points.len().saturating_sub(MAX_POINTS)..];
        self.fitted = None;
        self.next = None;
        self.online.clear();
        let mut w = Window::new(points.len().max(1));
        w.fill(points);
        let (Some(step), Some(last)) = (w.step_ms(), w.last()) else {
            self.window.fill(points);
            return Ok(());
        };
        let y = regular(points, step);
        let n = y.len();
        let opts = &self.params.lstm;
        let season = self.params.season.or_else(|| detected_season(points));
        let wanted = opts.lags.unwrap_or_else(|| {
            season
                .map(|s| s.clamp(8, MAX_DEFAULT_LAGS))
                .unwrap_or(DEFAULT_LAGS)
        });
        let lags = wanted.min(n / 4);
        // Held-out targets: a fifth of the history, fewer when the rest
        // would not leave enough to train on (none at all: in-sample errors).
        let hold = (n / 5)
            .clamp(HOLD_MIN, HOLD_MAX)
            .min(n.saturating_sub(lags + MIN_SAMPLES));
        if lags < MIN_LAGS || n < lags + MIN_SAMPLES || n < self.params.min_points {
            self.window.fill(points);
            return Ok(());
        }
        let spec = if opts.time_features {
            FeatureSpec::choose(points, None, 0)
        } else {
            FeatureSpec {
                season: None,
                time_of_day: false,
                day_of_week: false,
            }
        };
        self.window = Window::new(self.params.window.max(lags + 1));
        self.window.fill(points);
        let scale = Scale::fit(&y);
        let z: Vec<f32> = y.iter().map(|v| scale.apply(*v)).collect();
        let first_t = last.t - (n as i64 - 1) * step;
        let mut rng = Rng::new(self.params.seed);
        let net = Net::new(
            1 + 2 * (spec.time_of_day as usize + spec.day_of_week as usize),
            opts.hidden,
        )
        .map_err(err)?;
        net.seed(&mut rng).map_err(err)?;
        let mut fitted = Fitted {
            lags,
            hidden: opts.hidden,
            spec,
            step,
            scale,
            net,
            held_out: Vec::new(),
            errors: Errors::new(&[], last.v),
            growth: vec![1.0],
        };
        let inputs = fitted.inputs();
        // Training targets: every grid index from `lags` up to the held-out
        // part, sampled.
        let train_end = n - hold;
        let targets: Vec<usize> = rng
            .sample(train_end - lags, opts.max_samples)
            .into_iter()
            .map(|i| i + lags)
            .collect();
        let sequences = |idx: &[usize]| -> candle_core::Result<(Tensor, Tensor)> {
            let mut x = Vec::with_capacity(idx.len() * lags * inputs);
            for &i in idx {
                let t = first_t + (i as i64 - 1) * step;
                fitted.rows(&z[i - lags..i], t, &mut x);
            }
            let y: Vec<f32> = idx.iter().map(|i| z[*i]).collect();
            Ok((
                Tensor::from_vec(x, (idx.len(), lags, inputs), &nn::device())?,
                Tensor::from_vec(y, (idx.len(), 1), &nn::device())?,
            ))
        };
        let (x, target) = sequences(&targets).map_err(err)?;
        // Batches of 64: each step pays candle's per-`matmul` overhead (see
        // `times_transposed`) about 3·lags times.
        let training = Training {
            epochs: opts.epochs,
            batch: 64,
            lr: 0.02,
        };
        nn::train(
            &fitted.net.vars,
            targets.len(),
            &training,
            &mut rng,
            |idx| {
                let p = fitted.net.forward(&x.index_select(idx, 0)?)?;
                (p - target.index_select(idx, 0)?)?.sqr()?.mean_all()
            },
        )
        .map_err(err)?;
        // One-step errors: on the held-out part, or in sample without one.
        let checked: Vec<usize> = if hold > 0 {
            (train_end..n).collect()
        } else {
            targets.clone()
        };
        let (cx, _) = sequences(&checked).map_err(err)?;
        let p = fitted
            .net
            .forward(&cx)
            .and_then(|p| p.i((.., 0))?.to_vec1::<f32>())
            .map_err(err)?;
        fitted.held_out = checked
            .iter()
            .zip(&p)
            .map(|(i, p)| (y[*i] - scale.invert(*p as f64)) as f32)
            .collect();
        let e: Vec<f64> = fitted.held_out.iter().map(|e| *e as f64).collect();
        fitted.errors = Errors::new(&e, last.v);
        if hold > 0 {
            fitted.growth = measure_growth(&fitted, &z, &y, train_end, first_t).map_err(err)?;
        }
        self.level = last.v;
        self.fitted = Some(fitted);
        self.next = self.predict(1).and_then(|p| p.first().copied());
        Ok(())
    }

    /// Recursive forecast `steps` past the window's last point (series
    /// units).
    fn predict(&self, steps: usize) -> Option<Vec<f64>> {
        let f = self.fitted.as_ref()?;
        let last = self.window.last()?;
        let pts: Vec<Point> = self.window.points().collect();
        let y = regular(&pts, f.step);
        let tail = y.get(y.len().checked_sub(f.lags)?..)?;
        let z: Vec<f32> = tail.iter().map(|v| f.scale.apply(*v)).collect();
        let p = f.paths(&[(z, last.t)], steps).ok()?;
        let out: Vec<f64> = p
            .first()?
            .iter()
            .map(|v| f.scale.invert(*v as f64))
            .collect();
        out.iter().all(|v| v.is_finite()).then_some(out)
    }

    /// Steps from the window's last point to `t` (at least 1).
    fn steps_to(&self, f: &Fitted, t: i64) -> Option<usize> {
        let last = self.window.last()?;
        let h = ((t - last.t) as f64 / f.step as f64).round();
        (1.0..=10_000.0).contains(&h).then_some(h as usize)
    }

    /// The forecast for `t` (at least one step ahead) and its growth.
    fn expected(&self, t: i64) -> Option<(f64, f64)> {
        let f = self.fitted.as_ref()?;
        let h = self.steps_to(f, t)?;
        let mean = if h == 1 {
            self.next?
        } else {
            *self.predict(h)?.last()?
        };
        Some((mean, f.growth(h)))
    }
}

/// Growth of errors with the horizon: recursive forecasts from origins
/// spread over the held-out part (grid indices `from..`), root mean square
/// error at each step over that of the first, made non-decreasing.
fn measure_growth(
    f: &Fitted,
    z: &[f32],
    y: &[f64],
    from: usize,
    first_t: i64,
) -> candle_core::Result<Vec<f32>> {
    let n = z.len();
    let span = n - from;
    let count = span.min(GROWTH_ORIGINS);
    let origins: Vec<usize> = (0..count).map(|k| from + k * span / count).collect();
    let inputs: Vec<(Vec<f32>, i64)> = origins
        .iter()
        .map(|o| {
            (
                z[o - f.lags..*o].to_vec(),
                first_t + (*o as i64 - 1) * f.step,
            )
        })
        .collect();
    let steps = GROWTH_STEPS.min(span);
    let paths = f.paths(&inputs, steps)?;
    let mut rms = Vec::with_capacity(steps);
    for h in 0..steps {
        let e: Vec<f64> = origins
            .iter()
            .zip(&paths)
            .filter(|(o, _)| *o + h < n)
            .map(|(o, p)| y[o + h] - f.scale.invert(p[h] as f64))
            .collect();
        if e.len() < 4 {
            break;
        }
        rms.push((e.iter().map(|e| e * e).sum::<f64>() / e.len() as f64).sqrt());
    }
    let base = rms.first().copied().unwrap_or(0.0);
    if base.is_nan() || base <= 0.0 {
        return Ok(vec![1.0]);
    }
    let mut g = 1.0_f64;
    Ok(rms
        .iter()
        .map(|r| {
            g = g.max(r / base);
            g as f32
        })
        .collect())
}

impl Model for Lstm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.train(history)
    }

    fn score(&self, point: Point) -> f64 {
        if !point.v.is_finite() {
            return 0.0;
        }
        match (self.expected(point.t), &self.fitted) {
            (Some((mean, growth)), Some(f)) => self.online.score(&f.errors, point.v - mean, growth),
            _ => 0.0,
        }
    }

    fn update(&mut self, point: Point) {
        if !point.v.is_finite() || self.window.last().is_some_and(|l| point.t <= l.t) {
            return;
        }
        if let Some((mean, growth)) = self.expected(point.t) {
            self.online
                .push((point.v - mean) / growth.max(1.0), self.level);
        }
        self.window.push(point);
        if self.fitted.is_none() {
            if self.window.len() >= SELF_FIT_POINTS {
                let points: Vec<Point> = self.window.points().collect();
                if let Err(e) = self.train(&points) {
                    tracing::debug!(model = NAME, error = %e, "first fit failed");
                }
            }
            return;
        }
        self.next = self.predict(1).and_then(|p| p.first().copied());
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let f = self.fitted.as_ref()?;
        let last = self.window.last()?;
        if steps == 0 {
            return None;
        }
        let mean = if steps == 1 {
            vec![self.next?]
        } else {
            self.predict(steps)?
        };
        let half = self.online.half_width(f.errors.half_width(level), level);
        let (lower, upper) = mean
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let w = half * f.growth(i + 1);
                (m - w, m + w)
            })
            .unzip();
        Some(Forecast {
            t: future_times(last.t, f.step, steps),
            mean,
            lower,
            upper,
        })
    }

    fn save(&self) -> serde_json::Value {
        let fitted = self.fitted.as_ref().and_then(|f| {
            Some(SavedFit {
                lags: f.lags,
                hidden: f.hidden,
                spec: f.spec.clone(),
                step: f.step,
                scale: f.scale,
                weights: nn::save_vars(&f.net.vars).ok()?,
                held_out: F32s(f.held_out.clone()),
                growth: F32s(f.growth.clone()),
                level: self.level,
            })
        });
        serde_json::to_value(Saved {
            window: self.window.clone(),
            online: self.online.saved(),
            fitted,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved =
            serde_json::from_value(state).map_err(|e| nn::bad_state(NAME, e.to_string()))?;
        let mut level = 0.0;
        let fitted = match s.fitted {
            None => None,
            Some(f) => {
                if f.lags < 1 || f.lags > 4096 || f.step <= 0 || !f.scale.is_valid() {
                    return Err(nn::bad_state(
                        NAME,
                        format!("bad lags {}, step {} or scale", f.lags, f.step),
                    ));
                }
                if f.hidden == 0 || f.hidden > 4096 || f.growth.0.is_empty() {
                    return Err(nn::bad_state(
                        NAME,
                        format!("bad hidden size {} or growth", f.hidden),
                    ));
                }
                let inputs = 1 + 2 * (f.spec.time_of_day as usize + f.spec.day_of_week as usize);
                let net = Net::new(inputs, f.hidden).map_err(err)?;
                nn::load_vars(&net.vars, &f.weights).map_err(|e| nn::bad_state(NAME, e))?;
                let e: Vec<f64> = f.held_out.0.iter().map(|e| *e as f64).collect();
                level = f.level;
                Some(Fitted {
                    lags: f.lags,
                    hidden: f.hidden,
                    spec: f.spec,
                    step: f.step,
                    scale: f.scale,
                    net,
                    errors: Errors::new(&e, f.level),
                    held_out: f.held_out.0,
                    growth: f.growth.0,
                })
            }
        };
        self.window = s.window;
        self.fitted = fitted;
        self.level = level;
        self.online = OnlineErrors::restored(s.online, level);
        self.next = self.predict(1).and_then(|p| p.first().copied());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// A noisy sine of period 30 sampled every minute.
    fn sine(n: usize, seed: u64, noise: f64) -> Vec<Point> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|i| Point {
                t: i as i64 * MIN,
                v: 20.0
                    + 5.0 * (std::f64::consts::TAU * i as f64 / 30.0).sin()
                    + noise * (rng.uniform() - 0.5) * 2.0,
            })
            .collect()
    }

    fn fitted(points: &[Point], params: ModelParams) -> Lstm {
        let mut m = Lstm::new(params);
        m.fit(points).unwrap();
        m
    }

    #[test]
    fn beats_the_naive_forecast_on_a_noisy_sine() {
        let all = sine(1200, 1, 1.0);
        let (history, rest) = all.split_at(1000);
        let mut m = fitted(history, ModelParams::default());
        // Lags follow the detected season (about 30).
        assert_eq!(m.fitted.as_ref().unwrap().lags, 24);
        // One step ahead over the next 200 points, online.
        let (mut model_ae, mut naive_ae) = (0.0, 0.0);
        let mut prev = history.last().unwrap().v;
        let mut alarms = 0;
        for p in rest {
            let f = m.forecast(1, 0.95).unwrap();
            assert_eq!(f.t[0], p.t);
            model_ae += (f.mean[0] - p.v).abs();
            naive_ae += (prev - p.v).abs();
            alarms += (m.score(*p) >= 0.99) as usize;
            prev = p.v;
            m.update(*p);
        }
        assert!(
            model_ae < 0.8 * naive_ae,
            "lstm {model_ae} vs naive {naive_ae}"
        );
        assert!(alarms <= 6, "{alarms} ordinary points of 200 alarmed");
        // 30 steps ahead: bounds widen and mostly hold.
        let f = m.forecast(30, 0.95).unwrap();
        let next = sine(1230, 1, 0.0);
        let covered = (0..30)
            .filter(|i| {
                let v = next[1200 + i].v;
                f.lower[*i] <= v && v <= f.upper[*i]
            })
            .count();
        assert!(
            covered >= 26,
            "{covered} of 30 noiseless values within 95% bounds"
        );
        assert!(f.upper[29] - f.lower[29] >= f.upper[0] - f.lower[0]);
        let spike = m.score(Point {
            t: f.t[0],
            v: f.mean[0] + 6.0,
        });
        assert!(spike > 0.99, "spike scored {spike}");
    }

    #[test]
    fn same_seed_same_forecasts_and_state_round_trips() {
        let h = sine(400, 2, 0.5);
        let a = fitted(&h, ModelParams::default());
        let b = fitted(&h, ModelParams::default());
        let fa = a.forecast(12, 0.9).unwrap();
        let fb = b.forecast(12, 0.9).unwrap();
        let bits = |f: &Forecast| -> Vec<u64> {
            f.mean
                .iter()
                .chain(&f.lower)
                .chain(&f.upper)
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&fa), bits(&fb));
        let probe = Point {
            t: fa.t[0],
            v: 23.0,
        };
        assert_eq!(a.score(probe).to_bits(), b.score(probe).to_bits());
        let p = ModelParams {
            seed: 5,
            ..ModelParams::default()
        };
        assert_ne!(bits(&fitted(&h, p).forecast(12, 0.9).unwrap()), bits(&fa));
        let text = serde_json::to_string(&a.save()).unwrap();
        let mut c = Lstm::new(ModelParams::default());
        c.load(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(bits(&c.forecast(12, 0.9).unwrap()), bits(&fa));
        assert_eq!(c.score(probe).to_bits(), a.score(probe).to_bits());
        assert!(c.load(serde_json::json!({"window": 1})).is_err());
    }

    #[test]
    fn short_history_and_gaps() {
        let h = sine(20, 3, 0.5);
        let m = fitted(&h, ModelParams::default());
        assert!(m.forecast(3, 0.9).is_none());
        assert_eq!(
            m.score(Point {
                t: 20 * MIN,
                v: 1e6
            }),
            0.0
        );
        // A gap of 5 steps before the scored point: judged against the
        // forecast 5 steps ahead.
        let h = sine(300, 4, 0.2);
        let m = fitted(&h, ModelParams::default());
        let f = m.forecast(5, 0.9).unwrap();
        let at = Point {
            t: f.t[4],
            v: f.mean[4],
        };
        assert!(m.score(at) < 0.05, "{}", m.score(at));
        assert!(
            LstmParams {
                hidden: 0,
                ..LstmParams::default()
            }
            .check()
            .unwrap_err()
            .to_string()
            .contains("lstm.hidden")
        );
    }
}
