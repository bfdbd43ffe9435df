//! Seasonal exponential smoothing (Holt-Winters) in the ETS state-space
//! form: ETS(A,N,A), ETS(A,A,A) and ETS(A,Ad,A), additive errors with an
//! additive season, estimated by maximum likelihood. `ets` weighs these
//! against augurs' non-seasonal forms by AICc.
//!
//! Written here because augurs' ETS stops at the non-seasonal forms (0.10
//! has `unimplemented!` where the seasonal states would be initialised),
//! and no maintained Rust crate estimates seasonal ETS by likelihood. The
//! optimiser is argmin's Nelder-Mead.
//!
//! The recursions and the variance of forecasts h steps ahead are those of
//! Hyndman, Koehler, Ord and Snyder, "Forecasting with Exponential
//! Smoothing" (2008), tables 2.3 and 6.1 (class 1); the heuristic start
//! (classical decomposition of the first three cycles, a line through the
//! first seasonally adjusted points) is their section 2.6.1. As in R's
//! `forecast::ets`, the smoothing weights keep to 0 < β < α < 1,
//! 0 < γ < 1 − α and 0.8 ≤ φ ≤ 0.98, and the weights, initial level and
//! slope are estimated together; unlike it, the seasonal states stay the
//! decomposition's. Estimating them as well cost five times the CPU and
//! was no more accurate (mean MASE 1.489 against 1.471 on the oracle
//! test's 16 series, 0.888 against 0.900 on every twentieth M3 monthly
//! series; README, "Models").

use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;

/// Cycles of the season a fit needs (the decomposition uses three).
pub(super) const CYCLES_NEEDED: usize = 3;
/// Most Nelder-Mead iterations per fit, per coordinate.
const ITERATIONS_PER_COORDINATE: u64 = 200;
/// The optimiser stops when the simplex's sums of squared standardised
/// errors differ by less than this share of the points (a millionth of
/// the series' variance per point).
const TOLERANCE: f64 = 1e-6;
/// Bounds of the smoothing weights.
const ALPHA: (f64, f64) = (1e-4, 0.9999);
/// Bounds of the damping factor.
const PHI: (f64, f64) = (0.8, 0.98);

/// The trend of a seasonal form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trend {
    /// Level and season only: ETS(A,N,A).
    None,
    /// A linear trend: ETS(A,A,A), additive Holt-Winters.
    Additive,
    /// A damped trend: ETS(A,Ad,A).
    Damped,
}

impl Trend {
    /// Every trend a search tries.
    pub(super) const ALL: [Trend; 3] = [Trend::None, Trend::Additive, Trend::Damped];

    /// The form in ETS notation.
    pub(super) fn form(self) -> &'static str {
        match self {
            Trend::None => "ANA",
            Trend::Additive => "AAA",
            Trend::Damped => "AAdA",
        }
    }

    /// The trend of a seasonal form's name (None: not one of these).
    pub(super) fn of_form(form: &str) -> Option<Trend> {
        Trend::ALL.into_iter().find(|t| t.form() == form)
    }

    fn trended(self) -> bool {
        self != Trend::None
    }
}

/// A fitted seasonal ETS model, following the points after its fit.
#[derive(Clone, Debug)]
pub(super) struct HoltWinters {
    trend: Trend,
    /// The weights, and the states after the newest point.
    s: Smoothing,
    /// Position in the cycle of the point after the newest.
    next: usize,
    /// One-step error variance.
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
    /// One state per position in the cycle (summing to zero at the start).
    season: Vec<f64>,
}

/// The likelihood's sum of squared one-step errors of `start` on `y`,
/// and the errors when asked for.
fn run(y: &[f64], trend: Trend, s: &Smoothing, errors: Option<&mut Vec<f64>>) -> (f64, Smoothing) {
    let m = s.season.len();
    let phi = if trend == Trend::Damped { s.phi } else { 1.0 };
    let (mut level, mut slope, mut season) = (s.level, s.slope, s.season.clone());
    let mut sse = 0.0;
    let mut out = errors;
    for (t, v) in y.iter().enumerate() {
        let pos = t % m;
        let e = v - (level + phi * slope + season[pos]);
        sse += e * e;
        if let Some(out) = out.as_deref_mut() {
            out.push(e);
        }
        level += phi * slope + s.alpha * e;
        slope = phi * slope + s.beta * e;
        season[pos] += s.gamma * e;
    }
    let end = Smoothing {
        level,
        slope,
        season,
        ..*s
    };
    (sse, end)
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
/// (α, then β as a share of α, γ as a share of 1 − α, φ within its
/// bounds), then the initial level and slope.
struct Problem<'a> {
    y: &'a [f64],
    trend: Trend,
    /// The heuristic start, whose seasonal states are kept.
    start: &'a Smoothing,
}

impl Problem<'_> {
    fn weights(&self) -> usize {
        match self.trend {
            Trend::None => 2,
            Trend::Additive => 3,
            Trend::Damped => 4,
        }
    }

    /// The free coordinates of `s`.
    fn encode(&self, s: &Smoothing) -> Vec<f64> {
        let a = (s.alpha - ALPHA.0) / (ALPHA.1 - ALPHA.0);
        let mut x = vec![logit(a), logit(s.gamma / (1.0 - s.alpha))];
        if self.trend.trended() {
            x.push(logit(s.beta / s.alpha));
        }
        if self.trend == Trend::Damped {
            x.push(logit((s.phi - PHI.0) / (PHI.1 - PHI.0)));
        }
        x.push(s.level);
        if self.trend.trended() {
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
        if self.trend.trended() {
            beta = alpha * logistic(x[i]);
            i += 1;
        }
        let mut phi = 1.0;
        if self.trend == Trend::Damped {
            phi = PHI.0 + (PHI.1 - PHI.0) * logistic(x[i]);
            i += 1;
        }
        let level = x[i];
        i += 1;
        let mut slope = 0.0;
        if self.trend.trended() {
            slope = x[i];
        }
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

    /// The sum of squared one-step errors (the likelihood of an
    /// additive-error model is monotone in it).
    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let (sse, _) = run(self.y, self.trend, &self.decode(x), None);
        Ok(if sse.is_finite() { sse } else { f64::MAX })
    }
}

/// The heuristic start of Hyndman et al. (2008, section 2.6.1): seasonal
/// states from a classical additive decomposition of the first three
/// cycles, level and slope from a line through the first `max(10, 2m)`
/// seasonally adjusted points (the level alone: their mean, without a
/// trend); weights as R's `ets` starts them.
fn heuristic(y: &[f64], m: usize, trend: Trend) -> Smoothing {
    let first = &y[..(CYCLES_NEEDED * m).min(y.len())];
    // Centred moving average over one cycle (2×m when m is even).
    let half = m / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    for t in half..first.len().saturating_sub(half) {
        let ma = if m % 2 == 1 {
            first[t - half..=t + half].iter().sum::<f64>() / m as f64
        } else {
            let inner: f64 = first[t + 1 - half..t + half].iter().sum();
            (inner + 0.5 * (first[t - half] + first[t + half])) / m as f64
        };
        sums[t % m] += first[t] - ma;
        counts[t % m] += 1;
    }
    let mut season: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / *c as f64 } else { 0.0 })
        .collect();
    let mean = season.iter().sum::<f64>() / m as f64;
    season.iter_mut().for_each(|s| *s -= mean);
    let k = (2 * m).max(10).min(y.len());
    let adjusted: Vec<f64> = y[..k]
        .iter()
        .enumerate()
        .map(|(t, v)| v - season[t % m])
        .collect();
    let (level, slope) = if trend.trended() {
        let tm = (k as f64 + 1.0) / 2.0;
        let ym = adjusted.iter().sum::<f64>() / k as f64;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (t, v) in adjusted.iter().enumerate() {
            let dt = (t + 1) as f64 - tm;
            sxy += dt * (v - ym);
            sxx += dt * dt;
        }
        let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        // The line's value one step before the first point.
        (ym - b * tm, b)
    } else {
        (adjusted.iter().sum::<f64>() / k as f64, 0.0)
    };
    let alpha = ALPHA.0 + 0.2 * (ALPHA.1 - ALPHA.0) / m as f64;
    Smoothing {
        alpha,
        beta: 0.1 * alpha,
        gamma: 0.05 * (1.0 - alpha),
        phi: 0.97,
        level,
        slope,
        season,
    }
}

/// Fits the seasonal form with `trend` and a season of `m` to `y`, or
/// None when `y` is too short for the season or the fit diverges.
pub(super) fn fit(y: &[f64], m: usize, trend: Trend) -> Option<HoltWinters> {
    if !fits(y.len(), m) || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // The optimiser works on the standardised series, so that one simplex
    // suits series of any scale; the weights do not depend on it.
    let n = y.len() as f64;
    let centre = y.iter().sum::<f64>() / n;
    let spread = (y.iter().map(|v| (v - centre).powi(2)).sum::<f64>() / n).sqrt();
    let spread = if spread > 0.0 { spread } else { 1.0 };
    let z: Vec<f64> = y.iter().map(|v| (v - centre) / spread).collect();
    let start = heuristic(&z, m, trend);
    let problem = Problem {
        y: &z,
        trend,
        start: &start,
    };
    let x0 = problem.encode(&start);
    let dims = x0.len();
    // The first vertex is the start; each other one moves one coordinate
    // by a step that changes the fit noticeably at the standardised
    // scale (a tenth of a standard deviation, or a weight's logit by 1).
    let mut simplex = vec![x0.clone()];
    for i in 0..dims {
        let mut v = x0.clone();
        v[i] += if i < problem.weights() { 1.0 } else { 0.1 };
        simplex.push(v);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(TOLERANCE * z.len() as f64)
        .ok()?;
    let result = Executor::new(problem, solver)
        .configure(|s| s.max_iters(ITERATIONS_PER_COORDINATE * dims as u64))
        .run()
        .ok()?;
    let best = result.state.best_param.as_ref()?;
    let problem = Problem {
        y: &z,
        trend,
        start: &start,
    };
    let mut fitted = problem.decode(best);
    // Back to the series' own scale.
    fitted.level = centre + spread * fitted.level;
    fitted.slope *= spread;
    fitted.season.iter_mut().for_each(|s| *s *= spread);
    let mut residuals = Vec::with_capacity(y.len());
    let (sse, end) = run(y, trend, &fitted, Some(&mut residuals));
    if !sse.is_finite() || residuals.iter().any(|e| !e.is_finite()) {
        return None;
    }
    // α, γ, the initial level and m − 1 seasonal states; β and the slope
    // with a trend, φ when damped. The decomposition's states count as
    // estimated, though not by the optimiser: they are read off the data.
    let parameters =
        2 + 1 + (m - 1) + 2 * usize::from(trend.trended()) + usize::from(trend == Trend::Damped);
    let aicc = aicc(sse, y.len(), parameters);
    let dof = y.len().saturating_sub(parameters + 1).max(1);
    Some(HoltWinters {
        trend,
        s: end,
        next: y.len() % m,
        sigma2: sse / dof as f64,
        aicc,
        parameters,
        residuals,
    })
}

/// AICc of an additive-error fit with squared errors summing to `sse`
/// over `n` points and `k` parameters, reckoned as augurs reckons its
/// own (`n·ln(SSE) + 2k`, then the small-sample correction for k + 1,
/// the variance counted), so the two can be compared.
fn aicc(sse: f64, n: usize, k: usize) -> f64 {
    let lik = n as f64
        * if sse > 0.0 {
            sse.ln()
        } else {
            (sse + 1e-8).ln()
        };
    let aic = lik + 2.0 * k as f64;
    let k1 = (k + 1) as f64;
    let denom = n as f64 - k1 - 1.0;
    if denom > 0.0 {
        aic + 2.0 * k1 * (k1 + 1.0) / denom
    } else {
        f64::INFINITY
    }
}

/// The best of the seasonal forms by AICc on `y` with a season of `m`.
pub(super) fn search(y: &[f64], m: usize) -> Option<HoltWinters> {
    Trend::ALL
        .into_iter()
        .filter_map(|t| fit(y, m, t))
        .min_by(|a, b| a.aicc.total_cmp(&b.aicc))
}

impl HoltWinters {
    /// The form in ETS notation (`"AAdA"`).
    pub(super) fn form(&self) -> &'static str {
        self.trend.form()
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

    /// Takes the next point into the level, slope and season.
    pub(super) fn update(&mut self, v: f64) -> bool {
        if !v.is_finite() {
            return false;
        }
        let s = &mut self.s;
        let m = s.season.len();
        let e = v - (s.level + s.phi * s.slope + s.season[self.next]);
        s.level += s.phi * s.slope + s.alpha * e;
        s.slope = s.phi * s.slope + s.beta * e;
        s.season[self.next] += s.gamma * e;
        self.next = (self.next + 1) % m;
        true
    }

    /// Means and standard errors 1..=h steps after the newest point. The
    /// variance h steps ahead is σ²·(1 + Σ_{j<h} c_j²) with
    /// c_j = α + β·(φ + … + φ^j) + γ·[j a multiple of m].
    pub(super) fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let s = &self.s;
        let m = s.season.len();
        let (mut damp, mut power) = (0.0, 1.0);
        let (mut mean, mut se) = (Vec::with_capacity(h), Vec::with_capacity(h));
        let mut spread = 1.0;
        for k in 1..=h {
            power *= s.phi;
            damp += power;
            mean.push(s.level + damp * s.slope + s.season[(self.next + k - 1) % m]);
            se.push((self.sigma2 * spread).sqrt());
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
        let mut hw = fit(&y[..100], 7, Trend::Damped).unwrap();
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
        let again = fit(&y[..100], 7, Trend::Damped).unwrap();
        // Rewind: run the same weights from the 100-point fit's end state.
        start.level = again.s.level;
        start.slope = again.s.slope;
        start.season = (0..7)
            .map(|p| again.s.season[(again.next + p) % 7])
            .collect();
        let (_, end) = run(&y[100..], Trend::Damped, &start, None);
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
        for (m, trend) in [(4, Trend::None), (12, Trend::Additive), (30, Trend::Damped)] {
            let y = series(200, m, -0.2, 8.0);
            let hw = fit(&y, m, trend).unwrap();
            assert!(hw.s.alpha > 0.0 && hw.s.alpha < 1.0, "{hw:?}");
            assert!(hw.s.beta >= 0.0 && hw.s.beta <= hw.s.alpha, "{hw:?}");
            assert!(
                hw.s.gamma >= 0.0 && hw.s.gamma <= 1.0 - hw.s.alpha,
                "{hw:?}"
            );
            assert!((0.8..=1.0).contains(&hw.s.phi), "{hw:?}");
            assert_eq!(hw.form(), trend.form());
            assert_eq!(Trend::of_form(hw.form()), Some(trend));
            let s: f64 = hw.s.season.iter().sum();
            assert!(s.is_finite());
        }
    }

    #[test]
    fn short_or_broken_input_is_refused() {
        assert!(fit(&series(35, 12, 0.0, 1.0), 12, Trend::None).is_none());
        assert!(fit(&series(36, 12, 0.0, 1.0), 12, Trend::None).is_some());
        let mut y = series(60, 4, 0.0, 1.0);
        y[30] = f64::NAN;
        assert!(fit(&y, 4, Trend::None).is_none());
        assert!(fit(&series(60, 1, 0.0, 1.0), 1, Trend::None).is_none());
        // A constant series fits (zero errors) without dividing by zero.
        let flat = vec![5.0; 48];
        let hw = fit(&flat, 12, Trend::None).unwrap();
        assert!(
            hw.predict(12)
                .unwrap()
                .0
                .iter()
                .all(|v| (v - 5.0).abs() < 1e-6)
        );
    }

    #[test]
    fn variance_grows_by_the_class_one_formula() {
        // ETS(A,N,A): c_j = α + γ·[j = m], so the variance two seasons
        // out has γ's extra term once per season passed.
        let y = series(96, 4, 0.0, 4.0);
        let hw = fit(&y, 4, Trend::None).unwrap();
        let (_, se) = hw.predict(6).unwrap();
        let (a, g) = (hw.s.alpha, hw.s.gamma);
        let v5 = 1.0 + 3.0 * a * a + (a + g).powi(2);
        assert!((se[4] / se[0] - v5.sqrt()).abs() < 1e-9, "{se:?}");
    }
}
