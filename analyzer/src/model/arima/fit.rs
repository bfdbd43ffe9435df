//! Estimation and automatic order selection of seasonal ARIMA models, in
//! the spirit of Hyndman and Khandakar's `auto.arima`:
//!
//! - the regular differences d (0–2) by repeated KPSS tests at 5 %, after
//!   the seasonal difference D (0–1) chosen by the strength of the
//!   seasonality (the `seas` rule: strength above 0.64 means difference);
//! - a stepwise search over p, q ≤ 5 and P, Q ≤ 2 from four starting models,
//!   moving to a neighbour while the AICc falls, with a constant (a mean, or
//!   a drift after one difference) tried when d + D ≤ 1;
//! - each candidate estimated by conditional sum of squares (CSS), with the
//!   AR and MA polynomials kept stationary and invertible by mapping
//!   unconstrained parameters through partial autocorrelations (tanh, then
//!   Durbin–Levinson), minimised by Nelder–Mead.
//!
//! Written here because no maintained Rust crate does this: augurs has no
//! ARIMA, and the `arima` crate (0.3) fits given non-seasonal orders only,
//! with no order selection. Nelder–Mead is a few dozen lines; an optimiser
//! crate (argmin) would add more build time than it saves. CSS rather than
//! the exact Kalman-filter likelihood: its cost does not grow with the
//! square of the seasonal state (a state of 170 for a weekly season of
//! hourly data), and for the series lengths imd fits (hundreds of points
//! and more) the two give nearly the same estimates.

use serde::{Deserialize, Serialize};

/// Orders of a seasonal ARIMA (p,d,q)(P,D,Q)m model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Spec {
    /// Non-seasonal AR order.
    pub p: usize,
    /// Non-seasonal differences.
    pub d: usize,
    /// Non-seasonal MA order.
    pub q: usize,
    /// Seasonal AR order.
    pub sp: usize,
    /// Seasonal differences.
    pub sd: usize,
    /// Seasonal MA order.
    pub sq: usize,
    /// Season length (1: none).
    pub m: usize,
    /// Whether the differenced series has a non-zero mean (a constant
    /// without differences, a drift after one).
    pub constant: bool,
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ARIMA({},{},{})", self.p, self.d, self.q)?;
        if self.m > 1 {
            write!(f, "({},{},{})[{}]", self.sp, self.sd, self.sq, self.m)?;
        }
        if self.constant {
            f.write_str(if self.d + self.sd == 0 {
                " with mean"
            } else {
                " with drift"
            })?;
        }
        Ok(())
    }
}

/// A fitted model: its orders, coefficients and fit statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    /// The orders.
    pub spec: Spec,
    /// AR coefficients φ (y_t = Σ φ_i y_{t-i} + …).
    pub phi: Vec<f64>,
    /// MA coefficients θ (… + e_t + Σ θ_j e_{t-j}).
    pub theta: Vec<f64>,
    /// Seasonal AR coefficients.
    pub sphi: Vec<f64>,
    /// Seasonal MA coefficients.
    pub stheta: Vec<f64>,
    /// Mean of the differenced series (0 without a constant).
    pub mu: f64,
    /// Innovation variance.
    pub sigma2: f64,
    /// Corrected Akaike information criterion of the fit.
    pub aicc: f64,
}

/// Largest orders searched.
const MAX_P: usize = 5;
const MAX_Q: usize = 5;
const MAX_SP: usize = 2;
const MAX_SQ: usize = 2;
/// Most models estimated by one search.
const MAX_MODELS: usize = 60;
/// KPSS critical value at 5 % (level stationarity).
const KPSS_CRITICAL: f64 = 0.463;
/// Seasonal strength above which a seasonal difference is taken.
const SEASONAL_STRENGTH: f64 = 0.64;

/// `y` differenced `sd` times at lag `m`, then `d` times at lag 1.
pub fn difference(y: &[f64], d: usize, sd: usize, m: usize) -> Vec<f64> {
    let mut w = y.to_vec();
    for lag in std::iter::repeat_n(m, sd).chain(std::iter::repeat_n(1, d)) {
        if w.len() <= lag {
            return Vec::new();
        }
        w = (lag..w.len()).map(|i| w[i] - w[i - lag]).collect();
    }
    w
}

/// The KPSS statistic for level stationarity (Bartlett long-run variance
/// with ⌊4 (n/100)^¼⌋ lags, as tseries' `kpss.test` with short lags).
pub fn kpss(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 3 {
        return 0.0;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let e: Vec<f64> = x.iter().map(|v| v - mean).collect();
    let mut s = 0.0;
    let mut eta = 0.0;
    for v in &e {
        s += v;
        eta += s * s;
    }
    let lags = (4.0 * (n as f64 / 100.0).powf(0.25)) as usize;
    let mut lrv = e.iter().map(|v| v * v).sum::<f64>() / n as f64;
    for l in 1..=lags.min(n - 1) {
        let c: f64 = e[l..].iter().zip(&e).map(|(a, b)| a * b).sum::<f64>() / n as f64;
        lrv += 2.0 * (1.0 - l as f64 / (lags as f64 + 1.0)) * c;
    }
    if lrv <= 0.0 {
        return 0.0;
    }
    eta / (n as f64 * n as f64) / lrv
}

/// Regular differences needed for stationarity by KPSS at 5 % (at most 2).
pub fn ndiffs(x: &[f64]) -> usize {
    let mut w = x.to_vec();
    for d in 0..2 {
        if w.len() < 10 || is_constant(&w) || kpss(&w) < KPSS_CRITICAL {
            return d;
        }
        w = difference(&w, 1, 0, 1);
    }
    2
}

/// Strength of seasonality in [0, 1]: 1 − var(remainder) / var(seasonal +
/// remainder) after removing a centred moving-average trend and per-phase
/// means (a classical decomposition standing in for STL's).
pub fn seasonal_strength(x: &[f64], m: usize) -> f64 {
    let n = x.len();
    if m < 2 || n < 2 * m + 1 {
        return 0.0;
    }
    // Centred moving average of length m (2×m for even m).
    let half = m / 2;
    let mut detrended = vec![f64::NAN; n];
    for (t, slot) in detrended.iter_mut().enumerate().take(n - half).skip(half) {
        let trend = if m % 2 == 1 {
            x[t - half..=t + half].iter().sum::<f64>() / m as f64
        } else {
            (0.5 * x[t - half] + x[t - half + 1..t + half].iter().sum::<f64>() + 0.5 * x[t + half])
                / m as f64
        };
        *slot = x[t] - trend;
    }
    // The seasonal component of each point: the mean of its phase over
    // the nearest seven cycles (as STL's seasonal window of 7 lets the
    // pattern evolve).
    let (mut sr, mut ssr, mut k) = (0.0, 0.0, 0usize);
    let (mut r_all, mut sr_all) = (Vec::new(), Vec::new());
    for (t, v) in detrended.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        let (mut sum, mut count) = (0.0, 0usize);
        for c in -3i64..=3 {
            let u = t as i64 + c * m as i64;
            if u >= 0
                && let Some(x) = detrended.get(u as usize)
                && x.is_finite()
            {
                sum += x;
                count += 1;
            }
        }
        let r = v - sum / count as f64;
        r_all.push(r);
        sr_all.push(*v);
        sr += r;
        ssr += v;
        k += 1;
    }
    if k < 2 {
        return 0.0;
    }
    let var = |v: &[f64], mean: f64| v.iter().map(|a| (a - mean).powi(2)).sum::<f64>();
    let vr = var(&r_all, sr / k as f64);
    let vsr = var(&sr_all, ssr / k as f64);
    if vsr <= 0.0 {
        return 0.0;
    }
    (1.0 - vr / vsr).clamp(0.0, 1.0)
}

/// Seasonal differences (0 or 1) by the strength of the seasonality.
pub fn nsdiffs(x: &[f64], m: usize) -> usize {
    usize::from(m > 1 && seasonal_strength(x, m) > SEASONAL_STRENGTH)
}

fn is_constant(x: &[f64]) -> bool {
    x.iter()
        .all(|v| (v - x[0]).abs() <= 1e-12 * x[0].abs().max(1.0))
}

/// Unconstrained parameters → coefficients of a stationary polynomial
/// 1 − Σ a_i B^i: partial autocorrelations tanh(u), then Durbin–Levinson.
fn to_stationary(u: &[f64]) -> Vec<f64> {
    let mut a: Vec<f64> = Vec::with_capacity(u.len());
    for (k, uk) in u.iter().enumerate() {
        let r = uk.tanh();
        let prev = a.clone();
        for j in 0..k {
            a[j] = prev[j] - r * prev[k - 1 - j];
        }
        a.push(r);
    }
    a
}

/// The product (1 − Σ a_i B^i)(1 − Σ s_j B^{mj}) as sparse lags and
/// coefficients c with y_t = Σ c_k y_{t−k} + …, for AR polynomials; for
/// MA polynomials (1 + …)(1 + …) pass `ma`.
fn expand(a: &[f64], s: &[f64], m: usize, ma: bool) -> Vec<(usize, f64)> {
    let mut dense = vec![0.0; a.len() + m * s.len() + 1];
    for (i, c) in a.iter().enumerate() {
        dense[i + 1] += c;
    }
    for (j, c) in s.iter().enumerate() {
        dense[m * (j + 1)] += c;
        for (i, ci) in a.iter().enumerate() {
            let prod = ci * c;
            dense[i + 1 + m * (j + 1)] += if ma { prod } else { -prod };
        }
    }
    dense
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, c)| **c != 0.0)
        .map(|(k, c)| (k, *c))
        .collect()
}

/// The ARMA filter of a differenced series: the one-step residuals with
/// pre-sample errors 0, from the first point whose AR lags all exist.
pub struct Filter {
    /// AR lags and coefficients (expanded with the seasonal part).
    pub ar: Vec<(usize, f64)>,
    /// MA lags and coefficients.
    pub ma: Vec<(usize, f64)>,
    /// Mean of the differenced series.
    pub mu: f64,
}

impl Filter {
    /// The filter of a fitted model.
    pub fn of(f: &Fitted) -> Filter {
        let m = f.spec.m.max(1);
        Filter {
            ar: expand(&f.phi, &f.sphi, m, false),
            ma: expand(&f.theta, &f.stheta, m, true),
            mu: f.mu,
        }
    }

    /// Points conditioned on (no residual).
    pub fn ncond(&self) -> usize {
        self.ar.iter().map(|a| a.0).max().unwrap_or(0)
    }

    /// Residuals of `w` (0 for the conditioned points).
    pub fn residuals(&self, w: &[f64]) -> Vec<f64> {
        let mut e = vec![0.0; w.len()];
        for t in self.ncond()..w.len() {
            e[t] = w[t] - self.predict_at(w, &e, t);
        }
        e
    }

    /// The one-step prediction of `w[t]` from the values and residuals
    /// before it (`w` and `e` may be longer; only indices below t are read).
    pub fn predict_at(&self, w: &[f64], e: &[f64], t: usize) -> f64 {
        let mut v = self.mu;
        for (k, c) in &self.ar {
            v += c * (w[t - k] - self.mu);
        }
        for (k, c) in &self.ma {
            if *k <= t {
                v += c * e[t - k];
            }
        }
        v
    }
}

/// Conditional sum of squares of the residuals from index `start` on (or
/// from the first with all its AR lags) and how many it sums.
fn css(w: &[f64], filter: &Filter, start: usize) -> (f64, usize) {
    let n0 = filter.ncond().max(start);
    if n0 >= w.len() {
        return (f64::INFINITY, 0);
    }
    let e = filter.residuals(w);
    let sse: f64 = e[n0..].iter().map(|v| v * v).sum();
    (sse, w.len() - n0)
}

/// Coefficients from unconstrained parameters (in the order p, q, P, Q,
/// then the mean in units of the series' spread around its average).
fn decode(spec: &Spec, x: &[f64], centre: f64, scale: f64) -> Fitted {
    let (p, q, sp, sq) = (spec.p, spec.q, spec.sp, spec.sq);
    let phi = to_stationary(&x[..p]);
    let theta: Vec<f64> = to_stationary(&x[p..p + q]).iter().map(|v| -v).collect();
    let sphi = to_stationary(&x[p + q..p + q + sp]);
    let stheta: Vec<f64> = to_stationary(&x[p + q + sp..p + q + sp + sq])
        .iter()
        .map(|v| -v)
        .collect();
    let mu = if spec.constant {
        centre + scale * x[p + q + sp + sq]
    } else {
        0.0
    };
    Fitted {
        spec: *spec,
        phi,
        theta,
        sphi,
        stheta,
        mu,
        sigma2: f64::NAN,
        aicc: f64::INFINITY,
    }
}

/// Estimates one model on the differenced series `w` by CSS, summing
/// squared residuals from index `start` on: models compared by AICc must
/// be scored on the same points (a likelihood over fewer points is
/// smaller), so a search passes the largest AR lag it may try. `None` when
/// the series is too short for the model.
pub fn estimate(w: &[f64], spec: &Spec, start: usize) -> Option<Fitted> {
    let k = n_params(spec);
    let ncond = (spec.p + spec.m * spec.sp).max(start);
    let n_eff = w.len().checked_sub(ncond)?;
    // Room for the parameters, the variance and the AICc correction.
    if n_eff < k + 4 || w.is_empty() {
        return None;
    }
    let centre = w.iter().sum::<f64>() / w.len() as f64;
    let scale = (w.iter().map(|v| (v - centre).powi(2)).sum::<f64>() / w.len() as f64)
        .sqrt()
        .max(1e-12);
    let objective = |x: &[f64]| {
        let f = decode(spec, x, centre, scale);
        let (sse, n) = css(w, &Filter::of(&f), start);
        if n == 0 || !sse.is_finite() {
            return f64::INFINITY;
        }
        // Half the CSS log-likelihood, up to constants.
        (sse / n as f64).max(1e-300).ln()
    };
    let x = nelder_mead(&objective, vec![0.0; k], 0.1, 200 + 100 * k);
    let mut f = decode(spec, &x, centre, scale);
    let (sse, n) = css(w, &Filter::of(&f), start);
    if n == 0 || !sse.is_finite() {
        return None;
    }
    let sigma2 = (sse / n as f64).max(1e-300);
    let nf = n as f64;
    let loglik = -0.5 * nf * ((std::f64::consts::TAU * sigma2).ln() + 1.0);
    let kk = (k + 1) as f64;
    f.sigma2 = sse / (nf - k as f64).max(1.0);
    f.aicc = -2.0 * loglik + 2.0 * kk + 2.0 * kk * (kk + 1.0) / (nf - kk - 1.0).max(1.0);
    f.aicc.is_finite().then_some(f)
}

/// Minimises `f` from `x0` by Nelder–Mead with initial steps `step`, at
/// most `max_evals` evaluations.
pub fn nelder_mead(
    f: &dyn Fn(&[f64]) -> f64,
    x0: Vec<f64>,
    step: f64,
    max_evals: usize,
) -> Vec<f64> {
    let n = x0.len();
    if n == 0 {
        return x0;
    }
    let mut simplex: Vec<(Vec<f64>, f64)> = Vec::with_capacity(n + 1);
    let f0 = f(&x0);
    simplex.push((x0.clone(), f0));
    for i in 0..n {
        let mut x = x0.clone();
        x[i] += step;
        let fx = f(&x);
        simplex.push((x, fx));
    }
    let mut evals = n + 1;
    while evals < max_evals {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0].1, simplex[n].1);
        if (worst - best).abs() <= 1e-10 * (best.abs() + 1e-10) {
            break;
        }
        let mut centroid = vec![0.0; n];
        for (x, _) in &simplex[..n] {
            for (c, v) in centroid.iter_mut().zip(x) {
                *c += v / n as f64;
            }
        }
        let towards = |t: f64| -> Vec<f64> {
            centroid
                .iter()
                .zip(&simplex[n].0)
                .map(|(c, w)| c + t * (w - c))
                .collect()
        };
        let xr = towards(-1.0);
        let fr = f(&xr);
        evals += 1;
        if fr < simplex[0].1 {
            let xe = towards(-2.0);
            let fe = f(&xe);
            evals += 1;
            simplex[n] = if fe < fr { (xe, fe) } else { (xr, fr) };
        } else if fr < simplex[n - 1].1 {
            simplex[n] = (xr, fr);
        } else {
            let (xc, fc) = if fr < simplex[n].1 {
                let x = towards(-0.5);
                let fx = f(&x);
                (x, fx)
            } else {
                let x = towards(0.5);
                let fx = f(&x);
                (x, fx)
            };
            evals += 1;
            if fc < simplex[n].1.min(fr) {
                simplex[n] = (xc, fc);
            } else {
                // Shrink towards the best point.
                let b = simplex[0].0.clone();
                for s in simplex.iter_mut().skip(1) {
                    for (v, bv) in s.0.iter_mut().zip(&b) {
                        *v = bv + 0.5 * (*v - bv);
                    }
                    s.1 = f(&s.0);
                }
                evals += n;
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex.swap_remove(0).0
}

/// Chooses d and D, then searches the orders stepwise by AICc (see the
/// module). `m` is the season (1 or less: none). `None` when no model
/// could be estimated (a series too short).
pub fn auto(y: &[f64], m: usize) -> Option<Fitted> {
    let n = y.len();
    // A seasonal model needs a few cycles to estimate anything seasonal.
    let m = if m > 1 && n >= 3 * m + 10 { m } else { 1 };
    let sd = if m > 1 { nsdiffs(y, m) } else { 0 };
    let ys = difference(y, 0, sd, m);
    let d = ndiffs(&ys);
    let w = difference(y, d, sd, m);
    if w.len() < 8 {
        return None;
    }
    let can_constant = d + sd <= 1;
    // Seasonal AR/MA terms need their lags inside the differenced data.
    let max_sp = if m > 1 {
        MAX_SP.min((w.len() / 3) / m)
    } else {
        0
    };
    let max_sq = if m > 1 {
        MAX_SQ.min((w.len() / 3) / m)
    } else {
        0
    };
    let start = MAX_P + m * max_sp;
    let spec = |p, q, sp, sq, constant| Spec {
        p,
        d,
        q,
        sp,
        sd,
        sq,
        m,
        constant: constant && can_constant,
    };
    let mut tried: std::collections::HashMap<Spec, Option<Fitted>> = Default::default();
    let try_fit = |s: Spec, tried: &mut std::collections::HashMap<Spec, Option<Fitted>>| {
        if s.p > MAX_P || s.q > MAX_Q || s.sp > max_sp || s.sq > max_sq {
            return None;
        }
        if tried.len() >= MAX_MODELS && !tried.contains_key(&s) {
            return None;
        }
        tried
            .entry(s)
            .or_insert_with(|| estimate(&w, &s, start))
            .clone()
    };
    let seasonal = usize::from(m > 1);
    let starts = [
        spec(2, 2, seasonal, seasonal, true),
        spec(0, 0, 0, 0, true),
        spec(1, 0, seasonal, 0, true),
        spec(0, 1, 0, seasonal, true),
        spec(0, 0, 0, 0, false),
    ];
    let mut best: Option<Fitted> = None;
    for s in starts {
        if let Some(f) = try_fit(s, &mut tried)
            && best.as_ref().is_none_or(|b| f.aicc < b.aicc)
        {
            best = Some(f);
        }
    }
    let mut best = best?;
    loop {
        let b = best.spec;
        let dec = |v: usize| v.checked_sub(1);
        let mut moves: Vec<Spec> = Vec::new();
        let mut add = |p: Option<usize>, q: Option<usize>, sp: Option<usize>, sq: Option<usize>| {
            if let (Some(p), Some(q), Some(sp), Some(sq)) = (p, q, sp, sq) {
                moves.push(Spec { p, q, sp, sq, ..b });
            }
        };
        let (p, q, sp, sq) = (b.p, b.q, b.sp, b.sq);
        add(dec(p), Some(q), Some(sp), Some(sq));
        add(Some(p + 1), Some(q), Some(sp), Some(sq));
        add(Some(p), dec(q), Some(sp), Some(sq));
        add(Some(p), Some(q + 1), Some(sp), Some(sq));
        add(dec(p), dec(q), Some(sp), Some(sq));
        add(Some(p + 1), Some(q + 1), Some(sp), Some(sq));
        add(dec(p), Some(q + 1), Some(sp), Some(sq));
        add(Some(p + 1), dec(q), Some(sp), Some(sq));
        if m > 1 {
            add(Some(p), Some(q), dec(sp), Some(sq));
            add(Some(p), Some(q), Some(sp + 1), Some(sq));
            add(Some(p), Some(q), Some(sp), dec(sq));
            add(Some(p), Some(q), Some(sp), Some(sq + 1));
            add(Some(p), Some(q), dec(sp), dec(sq));
            add(Some(p), Some(q), Some(sp + 1), Some(sq + 1));
        }
        if can_constant {
            moves.push(Spec {
                constant: !b.constant,
                ..b
            });
        }
        let mut improved = false;
        for s in moves {
            if let Some(f) = try_fit(s, &mut tried)
                && f.aicc < best.aicc - 1e-9
            {
                best = f;
                improved = true;
                break;
            }
        }
        if !improved {
            return Some(best);
        }
    }
}

/// The full AR polynomial on the undifferenced series, as c_1… with
/// y_t = Σ c_k y_{t−k} + …: φ(B) Φ(B^m) (1 − B)^d (1 − B^m)^D.
fn full_ar(f: &Fitted) -> Vec<f64> {
    let m = f.spec.m.max(1);
    // Polynomials as coefficients of B^0, B^1, … (P(0) = 1).
    let mut poly = vec![1.0];
    let mul = |a: &[f64], b: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; a.len() + b.len() - 1];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                out[i + j] += x * y;
            }
        }
        out
    };
    let mut phi = vec![1.0];
    phi.extend(f.phi.iter().map(|c| -c));
    poly = mul(&poly, &phi);
    let mut sphi = vec![0.0; m * f.sphi.len() + 1];
    sphi[0] = 1.0;
    for (j, c) in f.sphi.iter().enumerate() {
        sphi[m * (j + 1)] = -c;
    }
    poly = mul(&poly, &sphi);
    for _ in 0..f.spec.d {
        poly = mul(&poly, &[1.0, -1.0]);
    }
    let mut seasonal_diff = vec![0.0; m + 1];
    seasonal_diff[0] = 1.0;
    seasonal_diff[m] = -1.0;
    for _ in 0..f.spec.sd {
        poly = mul(&poly, &seasonal_diff);
    }
    poly.iter().skip(1).map(|c| -c).collect()
}

/// The first `h` psi weights (ψ_0 = 1) of the model on the undifferenced
/// series: the h-step forecast variance is σ² Σ_{j<h} ψ_j².
pub fn psi_weights(f: &Fitted, h: usize) -> Vec<f64> {
    let ar = full_ar(f);
    let m = f.spec.m.max(1);
    let ma = expand(&f.theta, &f.stheta, m, true);
    let mut dense_ma = vec![0.0; h];
    for (k, c) in ma {
        if k < h {
            dense_ma[k] = c;
        }
    }
    let mut psi = vec![0.0; h];
    for j in 0..h {
        let mut v = if j == 0 { 1.0 } else { dense_ma[j] };
        for (i, c) in ar.iter().enumerate().take(j) {
            v += c * psi[j - 1 - i];
        }
        psi[j] = v;
    }
    psi
}

/// Free parameters of a model's orders: the ARMA coefficients and the
/// mean (or drift).
pub fn n_params(spec: &Spec) -> usize {
    spec.p + spec.q + spec.sp + spec.sq + usize::from(spec.constant)
}

/// The variance of the estimated mean μ of the differenced series, in
/// units of the innovation variance, from `n` differenced points: the
/// long-run variance of an ARMA, (θ(1) Θ(1) / (φ(1) Φ(1)))², over n. It is
/// 0 for a model without a constant.
pub fn mean_variance(f: &Fitted, n: usize) -> f64 {
    if !f.spec.constant || n == 0 {
        return 0.0;
    }
    let at_one = |c: &[f64], sign: f64| 1.0 + sign * c.iter().sum::<f64>();
    let ratio = at_one(&f.theta, 1.0) * at_one(&f.stheta, 1.0)
        / (at_one(&f.phi, -1.0) * at_one(&f.sphi, -1.0));
    let v = ratio * ratio / n as f64;
    if v.is_finite() { v } else { 0.0 }
}

/// The two-sided Student-t quantile at `level` with `dof` degrees of
/// freedom, from the normal quantile `z` by the Cornish–Fisher expansion
/// (Abramowitz and Stegun 26.7.5): from 4 degrees of freedom on (as few
/// as an estimated model leaves, see [`estimate`]; fewer are treated as 4)
/// within 1e-3 of the exact value at 95 % and 1e-2 at 99 %.
pub fn t_quantile(z: f64, dof: f64) -> f64 {
    let v = dof.max(4.0);
    let (z2, z3) = (z * z, z * z * z);
    let (z5, z7, z9) = (z3 * z2, z3 * z2 * z2, z3 * z3 * z3);
    z + (z3 + z) / (4.0 * v)
        + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
        + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v * v * v)
        + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z)
            / (92160.0 * v * v * v * v)
}

/// Everything needed to forecast a series with a fitted model: the
/// differenced series at each stage and the residuals of the last.
pub struct State {
    /// y, y after the seasonal differences, …, w (the fully differenced).
    stages: Vec<Vec<f64>>,
    /// Lag of the difference that leads from stage i to stage i + 1.
    lags: Vec<usize>,
    /// Residuals of w.
    e: Vec<f64>,
    filter: Filter,
}

impl State {
    /// Runs the fitted model over `y`; `None` when `y` is too short.
    pub fn new(f: &Fitted, y: &[f64]) -> Option<State> {
        let m = f.spec.m.max(1);
        let lags: Vec<usize> = std::iter::repeat_n(m, f.spec.sd)
            .chain(std::iter::repeat_n(1, f.spec.d))
            .collect();
        let mut stages = vec![y.to_vec()];
        for lag in &lags {
            let next = difference(stages.last()?, 0, 1, *lag);
            if next.is_empty() {
                return None;
            }
            stages.push(next);
        }
        let filter = Filter::of(f);
        let w = stages.last()?;
        if w.len() <= filter.ncond() {
            return None;
        }
        let e = filter.residuals(w);
        Some(State {
            stages,
            lags,
            e,
            filter,
        })
    }

    /// One-step residuals of the series from the first one with all its
    /// lags (in the units of y: differencing does not change one-step
    /// errors).
    pub fn residuals(&self) -> &[f64] {
        &self.e[self.filter.ncond()..]
    }

    /// Points of the differenced series the model runs on.
    pub fn differenced_len(&self) -> usize {
        self.stages.last().map_or(0, Vec::len)
    }

    /// How far the forecasts 1..=h move per unit of the mean μ (the drift
    /// after a difference), residuals included: how many times each
    /// forecast carries the error of the estimated μ (about h times for a
    /// drift, about 1 far ahead for a mean).
    pub fn mean_weights(&self, h: usize) -> Vec<f64> {
        let Some(w) = self.stages.last() else {
            return vec![0.0; h];
        };
        let filter = Filter {
            ar: self.filter.ar.clone(),
            ma: self.filter.ma.clone(),
            mu: self.filter.mu + 1.0,
        };
        let moved = State {
            stages: self.stages.clone(),
            lags: self.lags.clone(),
            e: filter.residuals(w),
            filter,
        };
        moved
            .forecast(h)
            .iter()
            .zip(self.forecast(h))
            .map(|(a, b)| a - b)
            .collect()
    }

    /// Means 1..=h steps past the end of the series.
    pub fn forecast(&self, h: usize) -> Vec<f64> {
        let Some(w) = self.stages.last() else {
            return Vec::new();
        };
        let n = w.len();
        let mut w_ext = w.clone();
        let mut e_ext = self.e.clone();
        for t in n..n + h {
            let v = self.filter.predict_at(&w_ext, &e_ext, t);
            w_ext.push(v);
            e_ext.push(0.0);
        }
        let mut future: Vec<f64> = w_ext[n..].to_vec();
        // Undo the differences, last first.
        for (stage, lag) in self.stages.iter().rev().skip(1).zip(self.lags.iter().rev()) {
            let mut ext = stage.clone();
            let len = ext.len();
            for (i, v) in future.iter().enumerate() {
                let prev = ext[len + i - lag];
                ext.push(v + prev);
            }
            future = ext[len..].to_vec();
        }
        future
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard normal draws.
    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut u = || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            ((s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos())
            .collect()
    }

    #[test]
    fn stationary_map_and_polynomials() {
        // One parameter: φ = tanh(u).
        assert!((to_stationary(&[0.5])[0] - 0.5f64.tanh()).abs() < 1e-12);
        // Two: roots outside the unit circle whatever the input.
        for u in [[3.0, 3.0], [-3.0, 2.0], [0.1, -4.0]] {
            let a = to_stationary(&u);
            // Stationarity triangle of an AR(2).
            assert!(
                a[1].abs() < 1.0 && a[0] + a[1] < 1.0 && a[1] - a[0] < 1.0,
                "{a:?}"
            );
        }
        // (1 − 0.5B)(1 − 0.3B^4) = 1 − 0.5B − 0.3B^4 + 0.15B^5.
        assert_eq!(
            expand(&[0.5], &[0.3], 4, false),
            vec![(1, 0.5), (4, 0.3), (5, -0.15)]
        );
        assert_eq!(
            difference(&[1.0, 3.0, 6.0, 10.0], 1, 0, 1),
            vec![2.0, 3.0, 4.0]
        );
        assert_eq!(difference(&[1.0, 2.0, 5.0, 7.0], 0, 1, 2), vec![4.0, 5.0]);
    }

    #[test]
    fn unit_root_and_seasonal_tests() {
        let e = normals(400, 3);
        let walk: Vec<f64> = e
            .iter()
            .scan(0.0, |s, v| {
                *s += v;
                Some(*s)
            })
            .collect();
        assert_eq!(ndiffs(&e), 0);
        assert_eq!(ndiffs(&walk), 1);
        let seasonal: Vec<f64> = (0..240)
            .map(|i| 10.0 * (std::f64::consts::TAU * i as f64 / 12.0).sin() + e[i])
            .collect();
        assert_eq!(nsdiffs(&seasonal, 12), 1);
        assert_eq!(nsdiffs(&e, 12), 0);
    }

    #[test]
    fn recovers_an_ar2_and_forecasts_it() {
        let e = normals(600, 11);
        let mut y = vec![0.0; 600];
        for t in 2..600 {
            y[t] = 1.0 * y[t - 1] - 0.5 * y[t - 2] + e[t];
        }
        let f = auto(&y, 1).unwrap();
        assert_eq!(
            (f.spec.p, f.spec.d, f.spec.q, f.spec.sd),
            (2, 0, 0, 0),
            "{}",
            f.spec
        );
        let s = estimate(
            &y,
            &Spec {
                p: 2,
                d: 0,
                q: 0,
                sp: 0,
                sd: 0,
                sq: 0,
                m: 1,
                constant: false,
            },
            0,
        )
        .unwrap();
        assert!(
            (s.phi[0] - 1.0).abs() < 0.1 && (s.phi[1] + 0.5).abs() < 0.1,
            "{s:?}"
        );
        assert!((s.sigma2 - 1.0).abs() < 0.15, "{}", s.sigma2);
        // Forecasts decay to the mean; psi weights of an AR(2).
        let st = State::new(&s, &y).unwrap();
        let fc = st.forecast(50);
        assert!(fc[49].abs() < 0.05, "{}", fc[49]);
        let psi = psi_weights(&s, 3);
        assert!((psi[1] - s.phi[0]).abs() < 1e-12);
        assert!((psi[2] - (s.phi[0] * s.phi[0] + s.phi[1])).abs() < 1e-12);
    }

    #[test]
    fn seasonal_random_walk_forecast_repeats_the_season() {
        // y = pattern + trend, exact: ARIMA(0,1,0)(0,1,0)12 forecasts it.
        let y: Vec<f64> = (0..120)
            .map(|i| {
                [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0][i % 12]
                    + 0.5 * i as f64
            })
            .collect();
        let f = Fitted {
            spec: Spec {
                p: 0,
                d: 1,
                q: 0,
                sp: 0,
                sd: 1,
                sq: 0,
                m: 12,
                constant: false,
            },
            phi: vec![],
            theta: vec![],
            sphi: vec![],
            stheta: vec![],
            mu: 0.0,
            sigma2: 1.0,
            aicc: 0.0,
        };
        let fc = State::new(&f, &y).unwrap().forecast(24);
        for (h, v) in fc.iter().enumerate() {
            let i = 120 + h;
            let want = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0][i % 12]
                + 0.5 * i as f64;
            assert!((v - want).abs() < 1e-9, "step {h}: {v} vs {want}");
        }
        // ψ of (1−B)(1−B^12): 1 for the first 12, then 2.
        let psi = psi_weights(&f, 14);
        assert_eq!(psi[0], 1.0);
        assert_eq!(psi[11], 1.0);
        assert_eq!(psi[12], 2.0);
    }

    #[test]
    fn t_quantiles_and_mean_uncertainty() {
        // Tables: t(0.975) with 5, 10, 30 dof; the normal quantile 1.95996.
        let z = 1.959_964;
        for (dof, want) in [(5.0, 2.5706), (10.0, 2.2281), (30.0, 2.0423)] {
            let t = t_quantile(z, dof);
            assert!((t - want).abs() < 2e-3, "{dof}: {t}");
        }
        assert!((t_quantile(z, 1e9) - z).abs() < 1e-6);
        // A random walk with drift: the forecast carries the drift's
        // error h times; its variance is σ²/n.
        let mut f = Fitted {
            spec: Spec {
                p: 0,
                d: 1,
                q: 0,
                sp: 0,
                sd: 0,
                sq: 0,
                m: 1,
                constant: true,
            },
            phi: vec![],
            theta: vec![],
            sphi: vec![],
            stheta: vec![],
            mu: 0.5,
            sigma2: 1.0,
            aicc: 0.0,
        };
        let y: Vec<f64> = (0..101).map(|i| 0.5 * i as f64).collect();
        let st = State::new(&f, &y).unwrap();
        let c = st.mean_weights(3);
        for (h, v) in c.iter().enumerate() {
            assert!((v - (h + 1) as f64).abs() < 1e-9, "{c:?}");
        }
        assert!((mean_variance(&f, st.differenced_len()) - 0.01).abs() < 1e-12);
        f.spec.constant = false;
        assert_eq!(mean_variance(&f, 100), 0.0);
        assert_eq!(n_params(&f.spec), 0);
    }

    #[test]
    fn nelder_mead_finds_a_minimum() {
        let f = |x: &[f64]| (x[0] - 1.0).powi(2) + 10.0 * (x[1] + 2.0).powi(2);
        let x = nelder_mead(&f, vec![0.0, 0.0], 0.5, 2000);
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] + 2.0).abs() < 1e-3,
            "{x:?}"
        );
    }
}
