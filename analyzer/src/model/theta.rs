//! `theta`: the Theta method of Assimakopoulos and Nikolopoulos (2000), in
//! the form Hyndman and Billah (2003) showed it to be: simple exponential
//! smoothing with a drift of half the slope of a least-squares line through
//! the data. Strong on short yearly, quarterly and non-seasonal series (it
//! won the M3 competition). When the series has a season (given, or
//! detected) that passes the M3/M4 benchmark's autocorrelation test, it is
//! seasonally adjusted by classical decomposition (multiplicative when all
//! values are positive, else additive) before the fit, and the forecast is
//! reseasonalised.
//!
//! Run online by `refit` (window, periodic refits, calibrated bounds from
//! the fit's one-step errors and the online errors); between refits the
//! level follows every point, so each is judged against a one-step
//! forecast.

use serde::{Deserialize, Serialize};

use super::ModelParams;
use super::compact::F32s;
use super::refit::{Fitted, Fitter, Refitting};
use super::season::{classical_indices, lagged_products};

/// The Theta fitter.
pub struct ThetaFitter;

/// Theta run online (see `refit`).
pub type Theta = Refitting<ThetaFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Theta {
    Refitting::new(params, ThetaFitter)
}

/// Bounds of the smoothing parameter searched.
const ALPHA_RANGE: (f64, f64) = (0.01, 0.99);
/// The one-sided 90 % normal quantile of the seasonality test.
const SEASONAL_Z: f64 = 1.645;
/// Cycles of data a season needs before it is tested and removed.
pub(super) const SEASONAL_CYCLES: usize = 3;
/// Smallest multiplicative index accepted; below it the decomposition is
/// redone additively (a near-zero index would blow the forecast up).
const MIN_INDEX: f64 = 0.01;

/// Seasonal indices, one per position in the cycle, aligned so that the
/// fitted data's point `t` has index `idx[t % idx.len()]`. Single
/// precision: a daily cycle at one minute has 1,440 of them, kept in every
/// series (twice under `auto`), and digits past the seventh move no
/// forecast.
#[derive(Debug, Clone, PartialEq)]
struct Seasonal {
    idx: Vec<f32>,
    multiplicative: bool,
}

impl Seasonal {
    fn at(&self, t: usize) -> f64 {
        f64::from(self.idx[t % self.idx.len()])
    }

    fn remove(&self, t: usize, v: f64) -> f64 {
        if self.multiplicative {
            v / self.at(t)
        } else {
            v - self.at(t)
        }
    }

    fn restore(&self, t: usize, v: f64) -> f64 {
        if self.multiplicative {
            v * self.at(t)
        } else {
            v + self.at(t)
        }
    }
}

/// A fitted Theta model.
#[derive(Debug, Clone, PartialEq)]
struct ThetaFitted {
    /// Smoothing parameter.
    alpha: f64,
    /// SES level after the last point (seasonally adjusted scale).
    level: f64,
    /// Slope of the least-squares line through the adjusted data.
    slope: f64,
    /// Points fitted.
    n: usize,
    seasonal: Option<Seasonal>,
    /// In-sample one-step errors on the original scale, until taken.
    errors: Vec<f64>,
}

impl Fitter for ThetaFitter {
    fn name(&self) -> &'static str {
        "theta"
    }

    fn seasonal(&self) -> bool {
        true
    }

    fn min_len(&self, _seasons: &[usize]) -> usize {
        // A line and a smoothed level need a few points; seasons are only
        // used when there are enough cycles for them.
        4
    }

    fn fit(
        &self,
        y: &[f64],
        seasons: &[usize],
        _form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String> {
        Ok(Box::new(fit(y, seasons)?))
    }

    fn restore(&self, saved: serde_json::Value) -> Result<Box<dyn Fitted>, String> {
        Ok(Box::new(ThetaFitted::restored(saved)?))
    }
}

/// A [`ThetaFitted`] as saved (its errors are taken by then).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedTheta {
    alpha: f64,
    level: f64,
    slope: f64,
    n: usize,
    /// Seasonal indices, when the fit has them.
    #[serde(default)]
    indices: Option<F32s>,
    #[serde(default)]
    multiplicative: bool,
}

impl ThetaFitted {
    /// As [`Fitted::saved`] gives it.
    fn saved(&self) -> SavedTheta {
        SavedTheta {
            alpha: self.alpha,
            level: self.level,
            slope: self.slope,
            n: self.n,
            indices: self.seasonal.as_ref().map(|s| F32s(s.idx.clone())),
            multiplicative: self.seasonal.as_ref().is_some_and(|s| s.multiplicative),
        }
    }

    /// A fit saved by [`Fitted::saved`], refused unless it is one a fit
    /// makes: α within its range, finite states, indices finite (and
    /// positive when they multiply).
    fn restored(saved: serde_json::Value) -> Result<ThetaFitted, String> {
        let s: SavedTheta = serde_json::from_value(saved).map_err(|e| format!("theta fit: {e}"))?;
        let sound = (ALPHA_RANGE.0..=ALPHA_RANGE.1).contains(&s.alpha)
            && s.level.is_finite()
            && s.slope.is_finite()
            && (1..=super::refit::MAX_SAVED_COUNT).contains(&s.n);
        if !sound {
            return Err(format!(
                "theta fit: alpha {}, level {}, slope {}, n {}",
                s.alpha, s.level, s.slope, s.n
            ));
        }
        let seasonal = match s.indices {
            Some(F32s(idx)) => {
                let bad = |i: &f32| !i.is_finite() || (s.multiplicative && *i <= 0.0);
                if idx.len() < 2 || idx.iter().any(bad) {
                    return Err("theta fit: bad seasonal indices".into());
                }
                Some(Seasonal {
                    idx,
                    multiplicative: s.multiplicative,
                })
            }
            None => None,
        };
        Ok(ThetaFitted {
            alpha: s.alpha,
            level: s.level,
            slope: s.slope,
            n: s.n,
            seasonal,
            errors: Vec::new(),
        })
    }
}

/// Fits the Theta method to `y` with the first of `seasons` if the series
/// is seasonal at it.
fn fit(y: &[f64], seasons: &[usize]) -> Result<ThetaFitted, String> {
    let n = y.len();
    if n < 4 {
        return Err(format!("theta needs at least 4 points, has {n}"));
    }
    if y.iter().any(|v| !v.is_finite()) {
        return Err("theta: non-finite value".into());
    }
    let seasonal = seasons
        .first()
        .copied()
        .filter(|m| is_seasonal(y, *m))
        .map(|m| decompose(y, m));
    let adj: Vec<f64> = match &seasonal {
        Some(s) => y.iter().enumerate().map(|(t, v)| s.remove(t, *v)).collect(),
        None => y.to_vec(),
    };
    let slope = ols_slope(&adj);
    let alpha = best_alpha(&adj);
    let (l0, _) = ses_sse(&adj, alpha);
    // Run SES from its best initial level, keeping one-step errors of the
    // whole Theta forecast (level plus drift) on the original scale.
    let mut level = l0;
    let mut errors = Vec::with_capacity(n);
    // (1 − α)^t
    let mut decay = 1.0;
    for (t, v) in adj.iter().enumerate() {
        let pred = level + 0.5 * slope * (1.0 - decay) / alpha;
        decay *= 1.0 - alpha;
        let pred = seasonal.as_ref().map_or(pred, |s| s.restore(t, pred));
        if t > 0 {
            errors.push(y[t] - pred);
        }
        level = alpha * v + (1.0 - alpha) * level;
    }
    if !level.is_finite() || !slope.is_finite() {
        return Err("theta: the fit diverged".into());
    }
    Ok(ThetaFitted {
        alpha,
        level,
        slope,
        n,
        seasonal,
        errors,
    })
}

impl ThetaFitted {
    /// Means 1..=`h` steps after the fitted data, as Hyndman and Billah
    /// (and R's `forecast::thetaf`) give it: the SES forecast plus half the
    /// slope times `h − 1 + (1 − (1 − α)ⁿ) / α`.
    fn means(&self, h: usize) -> Vec<f64> {
        let a = self.alpha;
        let start = (1.0 - (1.0 - a).powi(self.n as i32)) / a;
        (1..=h)
            .map(|k| {
                let m = self.level + 0.5 * self.slope * (k as f64 - 1.0 + start);
                match &self.seasonal {
                    Some(s) => s.restore(self.n + k - 1, m),
                    None => m,
                }
            })
            .collect()
    }

    /// The mean `h` (≥ 1) steps after the fitted data.
    #[cfg(test)]
    fn mean(&self, h: usize) -> f64 {
        self.means(h)[h - 1]
    }
}

impl Fitted for ThetaFitted {
    /// Standard errors are relative (only their growth with the horizon is
    /// used): SES's `√(1 + (h − 1)α²)`.
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let mean = self.means(h);
        if mean.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let a2 = self.alpha * self.alpha;
        let se = (1..=h)
            .map(|k| (1.0 + (k as f64 - 1.0) * a2).sqrt())
            .collect();
        Some((mean, se))
    }

    fn residuals(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.errors)
    }

    /// α, the initial level and the slope, plus the seasonal indices
    /// (one fewer than the season: they are normalised).
    fn parameters(&self) -> usize {
        3 + self.seasonal.as_ref().map_or(0, |s| s.idx.len() - 1)
    }

    /// The SES level follows each new point (seasonally adjusted at its
    /// position in the cycle); α, the slope and the indices wait for the
    /// next refit, so Theta refits at the pace of a model that stays
    /// anchored (`auto`'s Theta judge refitted every 250 points instead of
    /// 48 fell from 0.325 to 0.046 average precision on UCR series 135).
    fn update(&mut self, v: f64) -> bool {
        let adj = match &self.seasonal {
            Some(s) => s.remove(self.n, v),
            None => v,
        };
        if !adj.is_finite() {
            return false;
        }
        self.level = self.alpha * adj + (1.0 - self.alpha) * self.level;
        self.n += 1;
        true
    }

    fn saved(&self) -> Option<serde_json::Value> {
        serde_json::to_value(ThetaFitted::saved(self)).ok()
    }
}

/// The M3/M4 Theta benchmark's seasonality test: the autocorrelation at
/// lag `m` exceeds the one-sided 90 % bound of its Bartlett standard error.
/// Needs `SEASONAL_CYCLES` cycles of data.
fn is_seasonal(y: &[f64], m: usize) -> bool {
    let n = y.len();
    if m < 2 || n < SEASONAL_CYCLES * m {
        return false;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let c: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let var: f64 = c.iter().map(|v| v * v).sum();
    if var <= 0.0 {
        return false;
    }
    let products = lagged_products(&c, m);
    let r = |k: usize| products[k] / var;
    let sum_sq: f64 = (1..m).map(|k| r(k).powi(2)).sum();
    let se = ((1.0 + 2.0 * sum_sq) / n as f64).sqrt();
    r(m).abs() / se > SEASONAL_Z
}

/// Classical decomposition's seasonal indices at period `m`: the centred
/// moving average (2×m when `m` is even) as trend, the ratios (or
/// differences) to it averaged by position in the cycle and normalised.
/// Multiplicative when all values are positive and no index is tiny.
fn decompose(y: &[f64], m: usize) -> Seasonal {
    let positive = y.iter().all(|v| *v > 0.0);
    if positive {
        let s = indices(y, m, true);
        if s.idx.iter().all(|i| f64::from(*i) >= MIN_INDEX) {
            return s;
        }
    }
    indices(y, m, false)
}

fn indices(y: &[f64], m: usize, multiplicative: bool) -> Seasonal {
    Seasonal {
        idx: classical_indices(y, m, multiplicative)
            .iter()
            .map(|i| *i as f32)
            .collect(),
        multiplicative,
    }
}

/// Slope of the least-squares line through `y` against 0, 1, 2, ….
pub(super) fn ols_slope(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let mx = (n - 1.0) / 2.0;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mx;
        sxy += dx * (v - my);
        sxx += dx * dx;
    }
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

/// SES with smoothing `alpha` and its best initial level: returns that
/// level and the sum of squared one-step errors. Every level is linear in
/// the initial one (`level_t = a_t + (1 − α)^(t+1)·ℓ₀`), so the ℓ₀ that
/// minimises the squared errors for a given α has a closed form; the
/// search over α is then one-dimensional.
fn ses_sse(y: &[f64], alpha: f64) -> (f64, f64) {
    // Forecast of y_t is a + w·ℓ₀, with a the level from ℓ₀ = 0 and
    // w = (1 − α)^t.
    let (mut a, mut w) = (0.0, 1.0);
    let (mut srr, mut srw, mut sww) = (0.0, 0.0, 0.0);
    for v in y {
        let r = v - a;
        srr += r * r;
        srw += r * w;
        sww += w * w;
        a = alpha * v + (1.0 - alpha) * a;
        w *= 1.0 - alpha;
    }
    let l0 = if sww > 0.0 { srw / sww } else { y[0] };
    (l0, (srr - srw * l0).max(0.0))
}

/// The α in `ALPHA_RANGE` with the least in-sample squared one-step error:
/// a coarse grid (the error need not be unimodal in α), then golden-section
/// search around the best grid point. Written here rather than taken from
/// an optimisation crate: a bounded search in one variable is a dozen
/// lines, and none of the workspace's dependencies offers one.
fn best_alpha(y: &[f64]) -> f64 {
    let (lo, hi) = ALPHA_RANGE;
    const GRID: usize = 20;
    let step = (hi - lo) / GRID as f64;
    let sse = |a: f64| ses_sse(y, a).1;
    let best = (0..=GRID)
        .map(|i| lo + step * i as f64)
        .map(|a| (a, sse(a)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0.5, |(a, _)| a);
    let (mut a, mut b) = ((best - step).max(lo), (best + step).min(hi));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (sse(c), sse(d));
    for _ in 0..40 {
        if fc <= fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = sse(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = sse(d);
        }
    }
    let mid = 0.5 * (a + b);
    if sse(mid) <= sse(best) { mid } else { best }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Point};

    fn pts(v: &[f64], step: i64) -> Vec<Point> {
        v.iter()
            .enumerate()
            .map(|(i, v)| Point {
                t: i as i64 * step,
                v: *v,
            })
            .collect()
    }

    #[test]
    fn the_level_follows_each_point_between_refits() {
        // A random walk: α near 1, so the level tracks the last value.
        let mut v = 100.0;
        let y: Vec<f64> = (0..120)
            .map(|i| {
                v += ((i * 7919) % 11) as f64 - 5.0;
                v
            })
            .collect();
        let fitted = fit(&y[..100], &[]).unwrap();
        let mut followed = fitted.clone();
        let mut level = fitted.level;
        for x in &y[100..106] {
            assert!(followed.update(*x));
            level = fitted.alpha * x + (1.0 - fitted.alpha) * level;
        }
        assert!((followed.level - level).abs() < 1e-9);
        assert_eq!(followed.n, 106);
        // The one-step forecast from the followed level is nearer the last
        // point than the fit's 7-step forecast.
        let near = |m: f64| (m - y[105]).abs();
        let one = followed.predict(1).unwrap().0[0];
        let seven = fitted.predict(7).unwrap().0[6];
        assert!(near(one) < near(seven), "{one} vs {seven}, last {}", y[105]);
        // Online, the model's forecast starts from the newest point.
        let mut m = new(ModelParams::default());
        let h = pts(&y, 60_000);
        m.fit(&h[..100]).unwrap();
        for p in &h[100..106] {
            m.update(*p);
        }
        let f = m.forecast(1, 0.95).unwrap();
        assert_eq!(f.t[0], 106 * 60_000);
        assert!(near(f.mean[0]) < near(seven), "{}", f.mean[0]);
    }

    #[test]
    fn ses_initial_level_and_alpha_minimise_the_error() {
        let y: Vec<f64> = (0..60)
            .map(|i| 10.0 + ((i * 7919) % 13) as f64 / 13.0)
            .collect();
        let a = best_alpha(&y);
        let (l0, e) = ses_sse(&y, a);
        for da in [-0.02, 0.02] {
            let b = (a + da).clamp(ALPHA_RANGE.0, ALPHA_RANGE.1);
            assert!(ses_sse(&y, b).1 >= e - 1e-9, "alpha {a} beaten by {b}");
        }
        // Brute force over the initial level agrees with the closed form.
        let sse_from = |l: f64| {
            let mut lev = l;
            y.iter().fold(0.0, |s, v| {
                let e = v - lev;
                lev = a * v + (1.0 - a) * lev;
                s + e * e
            })
        };
        assert!((sse_from(l0) - e).abs() < 1e-6 * e.max(1.0));
        assert!(sse_from(l0 + 0.1) > e && sse_from(l0 - 0.1) > e);
    }

    #[test]
    fn forecast_is_ses_plus_half_the_slope() {
        // A noiseless line: the fit is exact in the limit, the forecast
        // keeps the formula's drift.
        let y: Vec<f64> = (0..40).map(|i| 5.0 + 2.0 * i as f64).collect();
        let f = fit(&y, &[]).unwrap();
        assert!((f.slope - 2.0).abs() < 1e-9);
        let d = |h: usize| f.mean(h + 1) - f.mean(h);
        assert!((d(3) - 1.0).abs() < 1e-9, "drift per step {}", d(3));
        let a = f.alpha;
        let expect = f.level + 1.0 * (1.0 - (1.0 - a).powi(40)) / a;
        assert!((f.mean(1) - expect).abs() < 1e-9);
    }

    #[test]
    fn seasonal_series_are_deseasonalised_multiplicatively() {
        let v = |i: usize| {
            (100.0 + i as f64) * (1.0 + 0.3 * (std::f64::consts::TAU * i as f64 / 12.0).sin())
        };
        let y: Vec<f64> = (0..120).map(v).collect();
        assert!(is_seasonal(&y, 12));
        let f = fit(&y, &[12]).unwrap();
        let s = f.seasonal.as_ref().expect("seasonal");
        assert!(s.multiplicative);
        for h in 1..=12 {
            let want = v(120 + h - 1);
            assert!(
                (f.mean(h) - want).abs() / want < 0.05,
                "h {h}: {} vs {want}",
                f.mean(h)
            );
        }
        // Negative values: additive. White noise: not seasonal.
        let neg: Vec<f64> = y.iter().map(|x| x - 300.0).collect();
        assert!(!fit(&neg, &[12]).unwrap().seasonal.unwrap().multiplicative);
        let noise: Vec<f64> = (0..120).map(|i| ((i * 7919) % 101) as f64).collect();
        assert!(fit(&noise, &[12]).unwrap().seasonal.is_none());
    }

    #[test]
    fn online_model_forecasts_with_bounds_and_round_trips() {
        let y: Vec<f64> = (0..80)
            .map(|i| 50.0 + 0.5 * i as f64 + if i % 3 == 0 { 1.0 } else { -0.5 })
            .collect();
        let h = pts(&y, 60_000);
        let mut m = new(ModelParams::default());
        m.fit(&h[..70]).unwrap();
        for p in &h[70..] {
            assert!(m.score(*p) < 0.99, "{p:?} scored {}", m.score(*p));
            m.update(*p);
        }
        let f = m.forecast(6, 0.95).unwrap();
        assert_eq!(f.t[0], 80 * 60_000);
        for k in 0..6 {
            assert!(f.lower[k] < f.mean[k] && f.mean[k] < f.upper[k]);
            // Theta drifts at half the line's slope, so it falls behind a
            // steady trend by design; it still rises with it.
            let want = 50.0 + 0.5 * (80 + k) as f64;
            assert!((f.mean[k] - want).abs() < 5.0, "step {k}: {}", f.mean[k]);
        }
        // (Same phase of the 3-point pattern, which is detected as a season.)
        let per_step = (f.mean[5] - f.mean[2]) / 3.0;
        assert!((0.2..0.6).contains(&per_step), "{per_step}");
        assert!(f.upper[5] - f.lower[5] >= f.upper[0] - f.lower[0]);
        let spike = Point {
            t: 80 * 60_000,
            v: 200.0,
        };
        assert!(m.score(spike) > 0.999);
        // Loading refits the saved window, so compare at a fit.
        let mut m = new(ModelParams::default());
        m.fit(&h).unwrap();
        let mut restored = new(ModelParams::default());
        restored.load(m.save()).unwrap();
        assert_eq!(restored.forecast(6, 0.95), m.forecast(6, 0.95));
        assert_eq!(restored.score(spike), m.score(spike));
        assert!(restored.load(serde_json::json!({"nonsense": 1})).is_err());
    }
}
