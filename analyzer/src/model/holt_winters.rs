//! Seasonal exponential smoothing (Holt-Winters) in the ETS state-space
//! form: additive errors with an additive season, ETS(A,N,A), (A,A,A) and
//! (A,Ad,A), and multiplicative errors with a multiplicative season,
//! ETS(M,N,M), (M,A,M) and (M,Ad,M), for positive series whose swing
//! grows with their level. Estimated by maximum likelihood; `ets` weighs
//! these against augurs' non-seasonal forms by AICc.
//!
//! Written here because augurs' ETS stops at the non-seasonal forms (0.10
//! has `unimplemented!` where the seasonal states would be initialised),
//! and no maintained Rust crate estimates seasonal ETS by likelihood. The
//! optimiser is argmin's Nelder-Mead.
//!
//! The recursions are those of Hyndman, Koehler, Ord and Snyder,
//! "Forecasting with Exponential Smoothing" (2008), table 2.3; the variance
//! of forecasts h steps ahead is their class 1 closed form (table 6.1),
//! applied to relative errors and scaled by the mean for the
//! multiplicative forms (an approximation: the bounds are calibrated on
//! held-out errors anyway, see `refit`); the heuristic start (classical
//! decomposition of the first three cycles, a line through the first
//! seasonally adjusted points) is their section 2.6.1. As in R's
//! `forecast::ets`, the smoothing weights keep to 0 < β < α < 1,
//! 0 < γ < 1 − α and 0.8 ≤ φ ≤ 0.98, the weights, initial level and slope
//! are estimated together, and additive errors are not paired with a
//! multiplicative season (their variance can be infinite). Unlike R, the
//! seasonal states stay the decomposition's: estimating them as well cost
//! five times the CPU and was no more accurate (mean MASE 1.489 against
//! 1.471 on the oracle test's 16 series, 0.888 against 0.900 on every
//! twentieth M3 monthly series; README, "Models").

use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;

use serde::{Deserialize, Serialize};

use super::compact::F64s;
use super::season::classical_indices;
use super::theta::ols_slope;

/// Cycles of the season a fit needs (the decomposition uses three).
pub(super) const CYCLES_NEEDED: usize = 3;
/// Most Nelder-Mead iterations per fit, per coordinate.
const ITERATIONS_PER_COORDINATE: u64 = 200;
/// The optimiser stops when the simplex's values of the criterion differ
/// by less than this share of the points.
const TOLERANCE: f64 = 1e-6;
/// Bounds of the smoothing weights.
const ALPHA: (f64, f64) = (1e-4, 0.9999);
/// Bounds of the damping factor.
const PHI: (f64, f64) = (0.8, 0.98);

/// The trend of a seasonal form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trend {
    /// Level and season only.
    None,
    /// A linear trend (Holt-Winters).
    Additive,
    /// A damped trend.
    Damped,
}

/// A seasonal form: its trend, and whether error and season are
/// multiplicative (else both additive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Form {
    pub(super) trend: Trend,
    pub(super) multiplicative: bool,
}

impl Form {
    /// Every form, additive ones first.
    pub(super) const ALL: [Form; 6] = [
        Form::new(Trend::None, false),
        Form::new(Trend::Additive, false),
        Form::new(Trend::Damped, false),
        Form::new(Trend::None, true),
        Form::new(Trend::Additive, true),
        Form::new(Trend::Damped, true),
    ];

    const fn new(trend: Trend, multiplicative: bool) -> Form {
        Form {
            trend,
            multiplicative,
        }
    }

    /// The form in ETS notation (`"AAdA"`, `"MNM"`).
    pub(super) fn name(self) -> &'static str {
        match (self.multiplicative, self.trend) {
            (false, Trend::None) => "ANA",
            (false, Trend::Additive) => "AAA",
            (false, Trend::Damped) => "AAdA",
            (true, Trend::None) => "MNM",
            (true, Trend::Additive) => "MAM",
            (true, Trend::Damped) => "MAdM",
        }
    }

    /// The seasonal form of this name (None: not one of these).
    pub(super) fn of_name(name: &str) -> Option<Form> {
        Form::ALL.into_iter().find(|f| f.name() == name)
    }

    fn trended(self) -> bool {
        self.trend != Trend::None
    }

    fn damped(self) -> bool {
        self.trend == Trend::Damped
    }

    /// Weights estimated: α and γ, β with a trend, φ when damped.
    fn weights(self) -> usize {
        2 + usize::from(self.trended()) + usize::from(self.damped())
    }
}

/// A fitted seasonal ETS model, following the points after its fit.
#[derive(Clone, Debug)]
pub(super) struct HoltWinters {
    form: Form,
    /// The weights, and the states after the newest point.
    s: Smoothing,
    /// Position in the cycle of the point after the newest.
    next: usize,
    /// One-step error variance (of relative errors, when multiplicative).
    sigma2: f64,
    /// AICc as augurs reckons it for its non-seasonal forms.
    aicc: f64,
    /// Parameters estimated (see [`HoltWinters::parameters`]).
    parameters: usize,
    /// In-sample one-step errors, until taken.
    residuals: Vec<f64>,
}

/// Whether a fit on `n` points can use a season of `m`.
pub(super) fn fits(n: usize, m: usize) -> bool {
    m >= 2 && n >= CYCLES_NEEDED * m && n >= 10
}

/// Smoothing weights, damping (1 unless damped) and states: the initial
/// ones of a fit, or those after a point.
#[derive(Clone, Debug, PartialEq)]
struct Smoothing {
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
    level: f64,
    /// Slope (0 without a trend).
    slope: f64,
    /// One state per position in the cycle (summing to zero, or averaging
    /// one when multiplicative, at the start).
    season: Vec<f64>,
}

impl Smoothing {
    /// The one-step forecast of the point at cycle position `pos`.
    fn forecast(&self, pos: usize, multiplicative: bool) -> f64 {
        let base = self.level + self.phi * self.slope;
        if multiplicative {
            base * self.season[pos]
        } else {
            base + self.season[pos]
        }
    }

    /// Forecasts the point at cycle position `pos`, then takes `v`:
    /// the forecast, or None (nothing taken) when a multiplicative form's
    /// forecast is not positive.
    fn step(&mut self, pos: usize, v: f64, multiplicative: bool) -> Option<f64> {
        let mu = self.forecast(pos, multiplicative);
        if multiplicative && !positive(mu) {
            return None;
        }
        self.take(pos, v, mu, multiplicative);
        Some(mu)
    }

    /// Takes `v`, the point at cycle position `pos` forecast as `mu`; its
    /// error (relative, when multiplicative) moves every state.
    fn take(&mut self, pos: usize, v: f64, mu: f64, multiplicative: bool) {
        let base = self.level + self.phi * self.slope;
        if multiplicative {
            let e = (v - mu) / mu;
            self.level = base * (1.0 + self.alpha * e);
            self.slope = self.phi * self.slope + self.beta * base * e;
            self.season[pos] *= 1.0 + self.gamma * e;
        } else {
            let e = v - mu;
            self.level = base + self.alpha * e;
            self.slope = self.phi * self.slope + self.beta * e;
            self.season[pos] += self.gamma * e;
        }
    }
}

/// What a pass of the recursions over a series gives.
struct Pass {
    /// Sum of squared one-step errors (relative, when multiplicative).
    sse: f64,
    /// Sum of the logarithms of the one-step forecasts (multiplicative
    /// forms' likelihood has it; 0 for additive ones).
    log_mean: f64,
    /// The states after the last point.
    end: Smoothing,
}

impl Pass {
    /// −2 log-likelihood up to a constant, as augurs reckons it:
    /// n·ln(SSE) + 2·Σ ln|μ|.
    fn criterion(&self, n: usize) -> f64 {
        n as f64 * self.sse.max(f64::MIN_POSITIVE).ln() + 2.0 * self.log_mean
    }
}

/// Runs `form` from `start` over `y`, keeping the one-step errors (in the
/// series' units) when asked; None when a multiplicative form's forecast
/// leaves the positive numbers.
fn run(y: &[f64], form: Form, start: Smoothing, errors: Option<&mut Vec<f64>>) -> Option<Pass> {
    let m = start.season.len();
    let mut s = start;
    let (mut sse, mut log_mean) = (0.0, 0.0);
    let mut out = errors;
    for (t, v) in y.iter().enumerate() {
        let mu = s.step(t % m, *v, form.multiplicative)?;
        let e = if form.multiplicative {
            log_mean += mu.ln();
            (v - mu) / mu
        } else {
            v - mu
        };
        sse += e * e;
        if let Some(out) = out.as_deref_mut() {
            out.push(v - mu);
        }
    }
    sse.is_finite().then_some(Pass {
        sse,
        log_mean,
        end: s,
    })
}

/// Whether `v` is a finite positive number (what a multiplicative form's
/// forecasts and seasonal indices must be).
fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// The logistic function, which maps the optimiser's free coordinates
/// into the weights' bounds.
fn logistic(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-9, 1.0 - 1e-9);
    (p / (1.0 - p)).ln()
}

/// The optimisation problem: the coordinates are the weights in free form
/// (α, then γ as a share of 1 − α, β as a share of α, φ within its
/// bounds), then the initial level and slope.
#[derive(Clone, Copy)]
struct Problem<'a> {
    y: &'a [f64],
    form: Form,
    /// The heuristic start, whose seasonal states are kept.
    start: &'a Smoothing,
}

impl Problem<'_> {
    /// The free coordinates of `s`.
    fn encode(&self, s: &Smoothing) -> Vec<f64> {
        let a = (s.alpha - ALPHA.0) / (ALPHA.1 - ALPHA.0);
        let mut x = vec![logit(a), logit(s.gamma / (1.0 - s.alpha))];
        if self.form.trended() {
            x.push(logit(s.beta / s.alpha));
        }
        if self.form.damped() {
            x.push(logit((s.phi - PHI.0) / (PHI.1 - PHI.0)));
        }
        x.push(s.level);
        if self.form.trended() {
            x.push(s.slope);
        }
        x
    }

    /// The model at free coordinates `x`.
    fn decode(&self, x: &[f64]) -> Smoothing {
        let alpha = ALPHA.0 + (ALPHA.1 - ALPHA.0) * logistic(x[0]);
        let gamma = (1.0 - alpha) * logistic(x[1]);
        let mut i = 2;
        let mut beta = 0.0;
        if self.form.trended() {
            beta = alpha * logistic(x[i]);
            i += 1;
        }
        let mut phi = 1.0;
        if self.form.damped() {
            phi = PHI.0 + (PHI.1 - PHI.0) * logistic(x[i]);
            i += 1;
        }
        let level = x[i];
        let slope = if self.form.trended() { x[i + 1] } else { 0.0 };
        Smoothing {
            alpha,
            beta,
            gamma,
            phi,
            level,
            slope,
            season: self.start.season.clone(),
        }
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    /// −2 log-likelihood up to a constant (see [`Pass::criterion`]).
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let value = run(self.y, self.form, self.decode(x), None)
            .map(|p| p.criterion(self.y.len()))
            .filter(|c| c.is_finite());
        Ok(value.unwrap_or(f64::MAX))
    }
}

/// The heuristic start of Hyndman et al. (2008, section 2.6.1): seasonal
/// states from a classical decomposition (additive or multiplicative) of
/// the first three cycles, level and slope from a line through the first
/// `max(10, 2m)` seasonally adjusted points (the level alone: their mean,
/// without a trend); weights as R's `ets` starts them. None when a
/// multiplicative decomposition finds no positive indices.
fn heuristic(y: &[f64], m: usize, form: Form) -> Option<Smoothing> {
    let first = &y[..(CYCLES_NEEDED * m).min(y.len())];
    let season = classical_indices(first, m, form.multiplicative);
    if form.multiplicative && !season.iter().all(|s| positive(*s)) {
        return None;
    }
    let k = (2 * m).max(10).min(y.len());
    let adjusted: Vec<f64> = y[..k]
        .iter()
        .enumerate()
        .map(|(t, v)| {
            if form.multiplicative {
                v / season[t % m]
            } else {
                v - season[t % m]
            }
        })
        .collect();
    let ym = adjusted.iter().sum::<f64>() / k as f64;
    let (level, slope) = if form.trended() {
        let b = ols_slope(&adjusted);
        // The line's value one step before the first point (its mean
        // lies at the middle, (k − 1) / 2 steps after the first).
        (ym - b * (k as f64 + 1.0) / 2.0, b)
    } else {
        (ym, 0.0)
    };
    let alpha = ALPHA.0 + 0.2 * (ALPHA.1 - ALPHA.0) / m as f64;
    Some(Smoothing {
        alpha,
        beta: 0.1 * alpha,
        gamma: 0.05 * (1.0 - alpha),
        phi: if form.damped() { 0.97 } else { 1.0 },
        level,
        slope,
        season,
    })
}

/// Fits `form` with a season of `m` to `y`, or None when `y` is too short
/// for the season, not positive for a multiplicative form, or the fit
/// diverges.
pub(super) fn fit(y: &[f64], m: usize, form: Form) -> Option<HoltWinters> {
    if !fits(y.len(), m) || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if form.multiplicative && y.iter().any(|v| *v <= 0.0) {
        return None;
    }
    // The optimiser works on the series standardised (additive forms) or
    // divided by its mean (multiplicative ones, which must stay
    // positive), so that one simplex suits series of any scale; the
    // weights do not depend on it.
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let (centre, spread) = if form.multiplicative {
        (0.0, mean)
    } else {
        let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        (mean, if sd > 0.0 { sd } else { 1.0 })
    };
    let z: Vec<f64> = y.iter().map(|v| (v - centre) / spread).collect();
    let start = heuristic(&z, m, form)?;
    let problem = Problem {
        y: &z,
        form,
        start: &start,
    };
    let x0 = problem.encode(&start);
    let dims = x0.len();
    // The first vertex is the start; each other one moves one coordinate
    // by a step that changes the fit noticeably at this scale (a tenth of
    // the spread, or a weight's logit by 1).
    let mut simplex = vec![x0.clone()];
    for i in 0..dims {
        let mut v = x0.clone();
        v[i] += if i < form.weights() { 1.0 } else { 0.1 };
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(TOLERANCE * z.len() as f64)
        .ok()?;
    // The executor takes a copy (the problem only borrows the data).
    let result = Executor::new(problem, solver)
        .configure(|s| s.max_iters(ITERATIONS_PER_COORDINATE * dims as u64))
        .run()
        .ok()?;
    let best = result.state.best_param.as_ref()?;
    let mut fitted = problem.decode(best);
    // Back to the series' own scale.
    fitted.level = centre + spread * fitted.level;
    fitted.slope *= spread;
    if !form.multiplicative {
        fitted.season.iter_mut().for_each(|s| *s *= spread);
    }
    let mut residuals = Vec::with_capacity(y.len());
    let pass = run(y, form, fitted, Some(&mut residuals))?;
    if residuals.iter().any(|e| !e.is_finite()) {
        return None;
    }
    // The weights, the initial level (and slope) and m − 1 seasonal
    // states. The decomposition's states count as estimated, though not
    // by the optimiser: they are read off the data.
    let parameters = form.weights() + 1 + usize::from(form.trended()) + (m - 1);
    let dof = y.len().saturating_sub(parameters + 1).max(1);
    Some(HoltWinters {
        form,
        aicc: aicc(pass.criterion(y.len()), y.len(), parameters),
        s: pass.end,
        next: y.len() % m,
        sigma2: pass.sse / dof as f64,
        parameters,
        residuals,
    })
}

/// AICc from −2 log-likelihood (up to augurs' constant) over `n` points
/// with `k` parameters, reckoned as augurs reckons its own (`+ 2k`, then
/// the small-sample correction for k + 1, the variance counted), so the
/// two can be compared.
fn aicc(criterion: f64, n: usize, k: usize) -> f64 {
    let aic = criterion + 2.0 * k as f64;
    let k1 = (k + 1) as f64;
    let denom = n as f64 - k1 - 1.0;
    if denom > 0.0 {
        aic + 2.0 * k1 * (k1 + 1.0) / denom
    } else {
        f64::INFINITY
    }
}

/// The best of the seasonal forms by AICc on `y` with a season of `m`
/// (the multiplicative ones only on positive series).
pub(super) fn search(y: &[f64], m: usize) -> Option<HoltWinters> {
    Form::ALL
        .into_iter()
        .filter_map(|f| fit(y, m, f))
        .min_by(|a, b| a.aicc.total_cmp(&b.aicc))
}

/// A [`HoltWinters`] fit as saved (its residuals are taken by then).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Saved {
    form: String,
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
    level: f64,
    slope: f64,
    season: F64s,
    next: usize,
    sigma2: f64,
    aicc: f64,
    parameters: usize,
}

impl HoltWinters {
    /// The fit as saved state.
    pub(super) fn saved(&self) -> Saved {
        let s = &self.s;
        Saved {
            form: self.form.name().to_string(),
            alpha: s.alpha,
            beta: s.beta,
            gamma: s.gamma,
            phi: s.phi,
            level: s.level,
            slope: s.slope,
            season: F64s(s.season.clone()),
            next: self.next,
            sigma2: self.sigma2,
            aicc: self.aicc,
            parameters: self.parameters,
        }
    }

    /// A fit saved by [`HoltWinters::saved`], refused unless its form is
    /// one of these, its weights are within 0 and 1, and its states and
    /// variance are finite, with `next` a position in the cycle.
    pub(super) fn restored(v: Saved) -> Result<HoltWinters, String> {
        let form = Form::of_name(&v.form)
            .ok_or_else(|| format!("ets fit: {:?} is not a seasonal form", v.form))?;
        let unit = 0.0..=1.0;
        let weights = [v.alpha, v.beta, v.gamma, v.phi]
            .iter()
            .all(|w| unit.contains(w));
        let finite = [v.level, v.slope, v.sigma2]
            .iter()
            .chain(&v.season.0)
            .all(|x| x.is_finite());
        let m = v.season.0.len();
        if !weights || !finite || v.sigma2 < 0.0 || m < 2 || v.next >= m {
            return Err(format!(
                "ets fit: {} weights {:?}, {m} seasonal states, next {}",
                v.form,
                [v.alpha, v.beta, v.gamma, v.phi],
                v.next
            ));
        }
        Ok(HoltWinters {
            form,
            s: Smoothing {
                alpha: v.alpha,
                beta: v.beta,
                gamma: v.gamma,
                phi: v.phi,
                level: v.level,
                slope: v.slope,
                season: v.season.0,
            },
            next: v.next,
            sigma2: v.sigma2,
            aicc: v.aicc,
            parameters: v.parameters,
            residuals: Vec::new(),
        })
    }

    /// The form in ETS notation (`"AAdA"`).
    pub(super) fn form(&self) -> &'static str {
        self.form.name()
    }

    /// The fit's AICc (comparable with augurs' `aicc`).
    pub(super) fn aicc(&self) -> f64 {
        self.aicc
    }

    /// Parameters estimated: weights, initial level and slope, and the
    /// seasonal states but one.
    pub(super) fn parameters(&self) -> usize {
        self.parameters
    }

    /// The in-sample one-step errors (once; empty after).
    pub(super) fn take_residuals(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.residuals)
    }

    /// Takes the next point into the level, slope and season; false when
    /// it cannot (not finite, or a multiplicative form's forecast is no
    /// longer positive).
    pub(super) fn update(&mut self, v: f64) -> bool {
        if !v.is_finite()
            || self
                .s
                .step(self.next, v, self.form.multiplicative)
                .is_none()
        {
            return false;
        }
        self.next = (self.next + 1) % self.s.season.len();
        true
    }

    /// Means and standard errors 1..=h steps after the newest point. The
    /// variance h steps ahead is σ²·(1 + Σ_{j<h} c_j²) with
    /// c_j = α + β·(φ + … + φ^j) + γ·[j a multiple of m], times the
    /// squared mean for the multiplicative forms, whose σ² is that of
    /// relative errors.
    pub(super) fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let s = &self.s;
        let m = s.season.len();
        let (mut damp, mut power) = (0.0, 1.0);
        let (mut mean, mut se) = (Vec::with_capacity(h), Vec::with_capacity(h));
        let mut spread = 1.0;
        for k in 1..=h {
            power *= s.phi;
            damp += power;
            let base = s.level + damp * s.slope;
            let pos = (self.next + k - 1) % m;
            let (mu, scale) = if self.form.multiplicative {
                let mu = base * s.season[pos];
                (mu, mu.abs())
            } else {
                (base + s.season[pos], 1.0)
            };
            mean.push(mu);
            se.push(scale * (self.sigma2 * spread).sqrt());
            // c_k, for the step after this one.
            let c = s.alpha + s.beta * damp + if k % m == 0 { s.gamma } else { 0.0 };
            spread += c * c;
        }
        mean.iter()
            .chain(&se)
            .all(|v| v.is_finite())
            .then_some((mean, se))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seasonal series with a trend and deterministic pseudo-noise.
    fn series(n: usize, m: usize, slope: f64, noise: f64) -> Vec<f64> {
        let mut state = 12_345_u64;
        (0..n)
            .map(|t| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let phase = 2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64;
                100.0 + slope * t as f64 + 10.0 * phase.sin() + noise * u
            })
            .collect()
    }

    #[test]
    fn recovers_a_seasonal_pattern_and_forecasts_it() {
        let y = series(120, 12, 0.5, 2.0);
        let (train, test) = y.split_at(96);
        let hw = search(train, 12).unwrap();
        assert!(
            hw.form().starts_with("AA"),
            "a trend is found: {}",
            hw.form()
        );
        let (mean, se) = hw.predict(24).unwrap();
        let mae: f64 = mean
            .iter()
            .zip(test)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / 24.0;
        // The noise alone has a mean absolute value of 0.5; the season's
        // swing is 20.
        assert!(mae < 1.5, "mean absolute error {mae}");
        assert!(se.windows(2).all(|w| w[1] >= w[0]), "{se:?}");
        // The seasonal naive forecast carries a year of trend (6) less.
        let snaive: f64 = (0..24)
            .map(|k| (train[96 - 12 + k % 12] - test[k]).abs())
            .sum::<f64>()
            / 24.0;
        assert!(mae < snaive / 2.0, "{mae} vs seasonal naive {snaive}");
    }

    #[test]
    fn following_points_matches_a_fit_that_saw_them() {
        // The state after taking points one by one is the recursion's
        // state over the whole series with the same weights.
        let y = series(150, 7, 0.1, 3.0);
        let mut hw = fit(&y[..100], 7, Form::new(Trend::Damped, false)).unwrap();
        for v in &y[100..] {
            assert!(hw.update(*v));
        }
        let mut start = Smoothing {
            alpha: hw.s.alpha,
            beta: hw.s.beta,
            gamma: hw.s.gamma,
            phi: hw.s.phi,
            level: 0.0,
            slope: 0.0,
            season: vec![],
        };
        let again = fit(&y[..100], 7, Form::new(Trend::Damped, false)).unwrap();
        // Rewind: run the same weights from the 100-point fit's end state.
        start.level = again.s.level;
        start.slope = again.s.slope;
        start.season = (0..7)
            .map(|p| again.s.season[(again.next + p) % 7])
            .collect();
        let end = run(&y[100..], hw.form, start, None).unwrap().end;
        assert!((end.level - hw.s.level).abs() < 1e-9);
        let mine = hw.predict(3).unwrap().0;
        let phi = hw.s.phi;
        let want: Vec<f64> = (1..=3)
            .map(|k| {
                let damp: f64 = (1..=k).map(|j| phi.powi(j)).sum();
                end.level + damp * end.slope + end.season[(50 + k as usize - 1) % 7]
            })
            .collect();
        for (a, b) in mine.iter().zip(&want) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        assert!(!hw.update(f64::NAN));
    }

    #[test]
    fn weights_stay_within_their_bounds() {
        for (m, form) in [(4, 0), (12, 1), (30, 2), (4, 3), (12, 4), (30, 5)] {
            let form = Form::ALL[form];
            let y = series(200, m, -0.2, 8.0);
            let hw = fit(&y, m, form).unwrap();
            assert!(hw.s.alpha > 0.0 && hw.s.alpha < 1.0, "{hw:?}");
            assert!(hw.s.beta >= 0.0 && hw.s.beta <= hw.s.alpha, "{hw:?}");
            assert!(
                hw.s.gamma >= 0.0 && hw.s.gamma <= 1.0 - hw.s.alpha,
                "{hw:?}"
            );
            assert!((0.8..=1.0).contains(&hw.s.phi), "{hw:?}");
            assert_eq!(Form::of_name(hw.form()), Some(form));
            let s: f64 = hw.s.season.iter().sum();
            assert!(s.is_finite());
        }
    }

    #[test]
    fn short_or_broken_input_is_refused() {
        assert!(fit(&series(35, 12, 0.0, 1.0), 12, Form::new(Trend::None, false)).is_none());
        assert!(fit(&series(36, 12, 0.0, 1.0), 12, Form::new(Trend::None, false)).is_some());
        let mut y = series(60, 4, 0.0, 1.0);
        y[30] = f64::NAN;
        assert!(fit(&y, 4, Form::new(Trend::None, false)).is_none());
        assert!(fit(&series(60, 1, 0.0, 1.0), 1, Form::new(Trend::None, false)).is_none());
        // A constant series fits (zero errors) without dividing by zero.
        let flat = vec![5.0; 48];
        for form in Form::ALL {
            let hw = fit(&flat, 12, form).unwrap();
            let (mean, _) = hw.predict(12).unwrap();
            assert!(mean.iter().all(|v| (v - 5.0).abs() < 1e-6), "{form:?}");
        }
        // Multiplicative forms need positive data.
        let mut dips = series(60, 4, 0.0, 1.0);
        dips[7] = 0.0;
        assert!(fit(&dips, 4, Form::new(Trend::None, true)).is_none());
        assert!(search(&dips, 4).is_some_and(|hw| !hw.form.multiplicative));
    }

    #[test]
    fn variance_grows_by_the_class_one_formula() {
        // ETS(A,N,A): c_j = α + γ·[j = m], so the variance two seasons
        // out has γ's extra term once per season passed.
        let y = series(96, 4, 0.0, 4.0);
        let hw = fit(&y, 4, Form::new(Trend::None, false)).unwrap();
        let (_, se) = hw.predict(6).unwrap();
        let (a, g) = (hw.s.alpha, hw.s.gamma);
        let v5 = 1.0 + 3.0 * a * a + (a + g).powi(2);
        assert!((se[4] / se[0] - v5.sqrt()).abs() < 1e-9, "{se:?}");
    }

    #[test]
    fn a_season_that_grows_with_the_level_is_found_multiplicative() {
        // The swing is a fifth of the level, which triples over the data.
        let mut state = 99_u64;
        let y: Vec<f64> = (0..144)
            .map(|t| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let level = 100.0 + 2.0 * t as f64;
                let phase = std::f64::consts::TAU * (t % 12) as f64 / 12.0;
                level * (1.0 + 0.2 * phase.sin()) * (1.0 + 0.01 * u)
            })
            .collect();
        let (train, test) = y.split_at(120);
        let hw = search(train, 12).unwrap();
        assert!(hw.form.multiplicative, "{}", hw.form());
        let mape = |forecast: &[f64]| {
            forecast
                .iter()
                .zip(test)
                .map(|(a, b)| (a - b).abs() / b)
                .sum::<f64>()
                / 24.0
        };
        let (mean, se) = hw.predict(24).unwrap();
        let ours = mape(&mean);
        assert!(ours < 0.02, "mean absolute percentage error {ours}");
        // The additive form's best does worse on the same data.
        let additive = fit(train, 12, Form::new(Trend::Additive, false)).unwrap();
        assert!(hw.aicc() < additive.aicc());
        let theirs = mape(&additive.predict(24).unwrap().0);
        assert!(ours < theirs, "{ours} vs additive {theirs}");
        // Bounds are wider at the peaks of the cycle than at its troughs.
        let peak = (0..12)
            .max_by(|a, b| mean[*a].total_cmp(&mean[*b]))
            .unwrap();
        let trough = (0..12)
            .min_by(|a, b| mean[*a].total_cmp(&mean[*b]))
            .unwrap();
        assert!(se[peak] > se[trough], "{se:?}");
        // Taking points keeps the forecasts positive and moving.
        let mut online = hw.clone();
        for v in test {
            assert!(online.update(*v));
        }
        assert!(online.predict(12).unwrap().0.iter().all(|v| *v > 0.0));
    }
}
