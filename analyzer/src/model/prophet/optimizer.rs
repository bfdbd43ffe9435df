//! Prophet's MAP fit in pure Rust: the log posterior of Prophet's Stan
//! model (`prophet.stan`), its analytic gradient, and L-BFGS from `argmin`
//! to maximise it. This is what the Stan back ends of `augurs-prophet`
//! (cmdstan, or Stan compiled to WASM and run by wasmtime) do; it builds in
//! seconds instead of minutes and needs no external program.
//!
//! The model, on Prophet's scaled data (t in [0, 1], y divided by its
//! largest magnitude):
//!
//! ```text
//! k, m      ~ Normal(0, 5)
//! delta_j   ~ Laplace(0, tau)                     (changepoint rate changes)
//! sigma_obs ~ Normal(0, 0.5), sigma_obs > 0
//! beta_k    ~ Normal(0, sigmas_k)                 (seasonality coefficients)
//! y_i       ~ Normal(trend_i * (1 + X_i (beta .* s_m)) + X_i (beta .* s_a), sigma_obs)
//! ```
//!
//! with a linear trend `(k + A delta) t + (m - A (t_change .* delta))`, a
//! logistic one `cap * inv_logit((k + A delta) (t - (m + A gamma)))` (gamma
//! keeping the segments continuous) or a flat one `m`; `A[i][j]` is 1 when
//! `t_i >= t_change_j`.
//!
//! The optimiser minimises the negative log density, dropping constants as
//! Stan does, over `(k, m, ln sigma_obs, delta, beta)`: the logarithm keeps
//! `sigma_obs` positive without bounds. Like Stan's `optimize` with
//! `jacobian=false` (what Prophet's MAP fit uses), the density is that of the
//! constrained parameters; `jacobian: true` adds the log-Jacobian `ln sigma_obs`.
//!
//! The Laplace prior's `|delta|` has no derivative at 0, which gradient
//! methods cannot handle soundly. It is replaced by the smooth
//! `sqrt(delta² + EPS²) - EPS`, which differs from `|delta|` by less than
//! `EPS` everywhere, so the objective moves by less than `S·EPS/tau`
//! (25·1e-4/0.05 = 0.05 nats with Prophet's defaults, against a
//! log-likelihood of thousands) and rate changes that the exact prior
//! would set to zero come out within about `EPS` of it.

use std::cell::RefCell;
use std::hash::Hasher;
use std::sync::{Arc, Mutex};

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use augurs::prophet::optimizer::{
    Data, Error, InitialParams, OptimizeOpts, OptimizedParams, Optimizer, TrendIndicator,
};
use serde::{Deserialize, Serialize};

/// Smoothing of `|delta|` in the Laplace prior (see the module docs).
pub const EPS: f64 = 1e-4;

/// Most L-BFGS iterations (Prophet asks Stan for 10,000).
const MAX_ITERS: u64 = 10_000;

/// Bound on |ln sigma_obs| in the objective (see [`Objective::eval`]).
const LN_SIGMA_BOUND: f64 = 30.0;

/// Most L-BFGS runs (see [`minimise`]).
const RESTARTS: usize = 10;

/// Index of the first rate change in the parameter vector
/// `(k, m, ln sigma_obs, delta, beta)`.
const DELTA0: usize = 3;

/// Prophet's MAP fit by L-BFGS, as an `augurs-prophet` optimiser. It
/// remembers the parameters of its last fit, so that a fitted model can be
/// saved, and can instead hand back given parameters, so that a saved model
/// is rebuilt without optimising again.
/// Clones share the record of the last fit.
#[derive(Debug, Default, Clone)]
pub struct Lbfgs {
    fixed: Option<Params>,
    last: Arc<Mutex<Option<Params>>>,
}

/// Prophet's parameters, on its scaled data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Base growth rate.
    pub k: f64,
    /// Offset.
    pub m: f64,
    /// Observation noise.
    pub sigma_obs: f64,
    /// Rate changes at the changepoints.
    pub delta: Vec<f64>,
    /// Feature (seasonality) coefficients.
    pub beta: Vec<f64>,
    /// A fingerprint of each coefficient's feature column. `augurs-prophet`
    /// keeps seasonalities in a `HashMap`, so two models built from the
    /// same data may order their features differently; the fingerprints
    /// put saved coefficients back on the right columns.
    #[serde(default)]
    pub columns: Vec<u64>,
}

impl Lbfgs {
    /// An optimiser that hands back `params` instead of optimising (they
    /// must fit the data's changepoints and features).
    pub fn fixed(params: Params) -> Lbfgs {
        Lbfgs {
            fixed: Some(params),
            last: Arc::default(),
        }
    }

    /// The parameters of the last fit.
    pub fn last(&self) -> Option<Params> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// The negative log posterior of one data set (see the module docs).
#[derive(Debug)]
pub struct Objective<'a> {
    data: &'a Data,
    /// Number of rate changes (S) and of features (K).
    s: usize,
    k: usize,
    /// For each changepoint, the first index whose time reaches it.
    start: Vec<usize>,
    /// Changepoint indices ordered by `start`.
    order: Vec<usize>,
    /// Feature masks as numbers.
    s_a: Vec<f64>,
    s_m: Vec<f64>,
    /// Prior precisions of the features (1 / sigma²).
    beta_prec: Vec<f64>,
    jacobian: bool,
    /// The likelihood as a quadratic form, when it is one.
    quad: Option<Quadratic>,
}

/// The sum of squared errors as a quadratic form: with a linear or flat
/// trend and additive features only (Prophet's default), the mean is linear
/// in `theta = (k, m, delta, beta)`, `mu = Z theta`, so
/// `sse = y'y - 2 theta' Z'y + theta' Z'Z theta`. `Z'Z` and `Z'y` are
/// computed once; an evaluation then costs O(P²) for P parameters instead
/// of O(n P) for n observations.
#[derive(Debug)]
struct Quadratic {
    /// Z'Z, P×P row-major, P = parameters without ln sigma_obs.
    zz: Vec<f64>,
    zy: Vec<f64>,
    yy: f64,
}

/// Position in the parameter vector of `theta`'s index `a` (skipping
/// ln sigma_obs).
fn theta_index(a: usize) -> usize {
    if a < 2 { a } else { a + 1 }
}

impl Quadratic {
    fn new(o: &Objective<'_>) -> Quadratic {
        let d = o.data;
        let flat = d.trend_indicator == TrendIndicator::Flat;
        let p = o.dim() - 1;
        let mut zz = vec![0.0; p * p];
        let mut zy = vec![0.0; p];
        let mut z = vec![0.0; p];
        for (i, (t, y)) in d.t.iter().zip(&d.y).enumerate() {
            z[0] = if flat { 0.0 } else { *t };
            z[1] = 1.0;
            for j in 0..o.s {
                z[2 + j] = if !flat && i >= o.start[j] {
                    t - d.t_change[j]
                } else {
                    0.0
                };
            }
            if o.k > 0 {
                z[2 + o.s..].copy_from_slice(&d.X[i * o.k..(i + 1) * o.k]);
            }
            for a in 0..p {
                let za = z[a];
                if za == 0.0 {
                    continue;
                }
                zy[a] += za * y;
                let row = &mut zz[a * p..(a + 1) * p];
                for (cell, zb) in row[a..].iter_mut().zip(&z[a..]) {
                    *cell += za * zb;
                }
            }
        }
        for a in 0..p {
            for b in 0..a {
                zz[a * p + b] = zz[b * p + a];
            }
        }
        Quadratic {
            zz,
            zy,
            yy: d.y.iter().map(|y| y * y).sum(),
        }
    }

    fn sse(&self, params: &[f64], var: f64, grad: Option<&mut [f64]>) -> f64 {
        let p = self.zy.len();
        let theta: Vec<f64> = (0..p).map(|a| params[theta_index(a)]).collect();
        let mut quad = 0.0;
        let mut lin = 0.0;
        let mut gz = vec![0.0; p];
        for a in 0..p {
            let row = &self.zz[a * p..(a + 1) * p];
            let za: f64 = row.iter().zip(&theta).map(|(g, t)| g * t).sum();
            quad += theta[a] * za;
            lin += theta[a] * self.zy[a];
            gz[a] = za - self.zy[a];
        }
        if let Some(g) = grad {
            for (a, v) in gz.iter().enumerate() {
                g[theta_index(a)] += v / var;
            }
        }
        (self.yy - 2.0 * lin + quad).max(0.0)
    }
}

impl<'a> Objective<'a> {
    /// Checks `data` and prepares the changepoint layout. Times must be
    /// sorted (Prophet sorts its history).
    pub fn new(data: &'a Data, jacobian: bool) -> Result<Objective<'a>, Error> {
        let n = data.y.len();
        let s = data.t_change.len();
        let k = data.sigmas.len();
        if n == 0 {
            return Err(Error::static_str("no data"));
        }
        if data.t.len() != n || data.cap.len() != n {
            return Err(Error::string(format!(
                "t has {} values and cap {}, y has {n}",
                data.t.len(),
                data.cap.len()
            )));
        }
        if data.X.len() != n * k || data.s_a.len() != k || data.s_m.len() != k {
            return Err(Error::string(format!(
                "X has {} values, s_a {}, s_m {}; expected {n}×{k}, {k}, {k}",
                data.X.len(),
                data.s_a.len(),
                data.s_m.len()
            )));
        }
        if data.t.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::static_str("times are not sorted"));
        }
        let mut values = data.y.iter().chain(&data.t).chain(&data.X);
        if values.any(|v| !v.is_finite()) || data.t_change.iter().any(|v| !v.is_finite()) {
            return Err(Error::static_str("non-finite value in the data"));
        }
        let start: Vec<usize> = data
            .t_change
            .iter()
            .map(|tc| data.t.partition_point(|t| t < tc))
            .collect();
        let mut order: Vec<usize> = (0..s).collect();
        order.sort_by_key(|j| start[*j]);
        let mut o = Objective {
            data,
            s,
            k,
            start,
            order,
            s_a: data.s_a.iter().map(|v| f64::from(*v)).collect(),
            s_m: data.s_m.iter().map(|v| f64::from(*v)).collect(),
            beta_prec: data.sigmas.iter().map(|v| 1.0 / (**v * **v)).collect(),
            jacobian,
            quad: None,
        };
        if data.trend_indicator != TrendIndicator::Logistic && data.s_m.iter().all(|v| *v == 0) {
            o.quad = Some(Quadratic::new(&o));
        }
        Ok(o)
    }

    /// Number of parameters: `(k, m, ln sigma_obs, delta, beta)`.
    pub fn dim(&self) -> usize {
        DELTA0 + self.s + self.k
    }

    /// Packs Prophet's parameters into the optimiser's vector.
    pub fn pack(&self, k: f64, m: f64, sigma_obs: f64, delta: &[f64], beta: &[f64]) -> Vec<f64> {
        let mut p = Vec::with_capacity(self.dim());
        p.extend([k, m, sigma_obs.ln()]);
        p.extend(delta.iter().take(self.s));
        p.resize(DELTA0 + self.s, 0.0);
        p.extend(beta.iter().take(self.k));
        p.resize(self.dim(), 0.0);
        p
    }

    /// The negative log posterior at `p` (constants dropped).
    pub fn value(&self, p: &[f64]) -> f64 {
        self.eval(p, None)
    }

    /// The negative log posterior at `p` and its gradient.
    pub fn value_grad(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let mut g = vec![0.0; self.dim()];
        let v = self.eval(p, Some(&mut g));
        (v, g)
    }

    /// The trend at the data's times for parameters `p`.
    pub fn trend(&self, p: &[f64]) -> Vec<f64> {
        let delta = &p[DELTA0..DELTA0 + self.s];
        let logistic = self.logistic_offsets(p[0], p[1], delta);
        self.trend_values(p[0], p[1], delta, logistic.as_ref())
    }

    fn eval(&self, p: &[f64], mut grad: Option<&mut [f64]>) -> f64 {
        let n = self.data.y.len();
        let (k, m) = (p[0], p[1]);
        // Far outside any sensible noise level, ln sigma_obs is held at a
        // bound (the objective is flat beyond it), so that a long first step
        // of the line search meets a huge but finite value, not an overflow.
        let ln_sigma = p[2].clamp(-LN_SIGMA_BOUND, LN_SIGMA_BOUND);
        let inside = if p[2].abs() < LN_SIGMA_BOUND {
            1.0
        } else {
            0.0
        };
        let delta = &p[DELTA0..DELTA0 + self.s];
        let beta = &p[DELTA0 + self.s..];
        let var = (2.0 * ln_sigma).exp();
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        // Likelihood (its gradient added to `grad`).
        let sse = match &self.quad {
            Some(q) => q.sse(p, var, grad.as_deref_mut()),
            None => self.general_sse(p, var, grad.as_deref_mut()),
        };
        let mut value = 0.5 * sse / var + n as f64 * ln_sigma;
        // Priors.
        value += (k * k + m * m) / 50.0;
        let tau = *self.data.tau;
        value += delta
            .iter()
            .map(|x| ((x * x + EPS * EPS).sqrt() - EPS) / tau)
            .sum::<f64>();
        value += 2.0 * var;
        value += 0.5
            * beta
                .iter()
                .zip(&self.beta_prec)
                .map(|(b, q)| b * b * q)
                .sum::<f64>();
        if self.jacobian {
            value -= ln_sigma;
        }
        if let Some(g) = grad {
            g[0] += k / 25.0;
            g[1] += m / 25.0;
            g[2] = inside
                * (-sse / var + n as f64 + 4.0 * var - if self.jacobian { 1.0 } else { 0.0 });
            for (j, x) in delta.iter().enumerate() {
                g[DELTA0 + j] += x / (x * x + EPS * EPS).sqrt() / tau;
            }
            let gb = &mut g[DELTA0 + self.s..];
            for ((gk, b), q) in gb.iter_mut().zip(beta).zip(&self.beta_prec) {
                *gk += b * q;
            }
        }
        value
    }

    /// The sum of squared errors at `p`, computed from the data; adds the
    /// gradient of `sse / (2 var)` to `grad`.
    fn general_sse(&self, p: &[f64], var: f64, grad: Option<&mut [f64]>) -> f64 {
        let d = self.data;
        let n = d.y.len();
        let (k, m) = (p[0], p[1]);
        let delta = &p[DELTA0..DELTA0 + self.s];
        let beta = &p[DELTA0 + self.s..];
        let beta_a: Vec<f64> = beta.iter().zip(&self.s_a).map(|(b, s)| b * s).collect();
        let beta_m: Vec<f64> = beta.iter().zip(&self.s_m).map(|(b, s)| b * s).collect();
        let logistic = self.logistic_offsets(k, m, delta);
        let trend = self.trend_values(k, m, delta, logistic.as_ref());
        let mut sse = 0.0;
        let mut g_mu = vec![0.0; n];
        let mut xm = vec![0.0; n];
        for i in 0..n {
            let (mut a, mut mm) = (0.0, 0.0);
            if self.k > 0 {
                let row = &d.X[i * self.k..(i + 1) * self.k];
                for ((x, ba), bm) in row.iter().zip(&beta_a).zip(&beta_m) {
                    a += x * ba;
                    mm += x * bm;
                }
            }
            let r = d.y[i] - (trend[i] * (1.0 + mm) + a);
            sse += r * r;
            g_mu[i] = -r / var;
            xm[i] = mm;
        }
        if let Some(g) = grad {
            // d/d beta: X_ik (s_a_k + s_m_k trend_i) g_mu_i.
            let gb = &mut g[DELTA0 + self.s..];
            if self.k > 0 {
                for (i, row) in d.X.chunks_exact(self.k).enumerate().take(n) {
                    let (ga, gm) = (g_mu[i], g_mu[i] * trend[i]);
                    for (((gk, x), sa), sm) in gb.iter_mut().zip(row).zip(&self.s_a).zip(&self.s_m)
                    {
                        *gk += x * (ga * sa + gm * sm);
                    }
                }
            }
            // d/d trend_i = g_mu_i (1 + xm_i).
            let w: Vec<f64> = g_mu.iter().zip(&xm).map(|(g, x)| g * (1.0 + x)).collect();
            self.trend_grad(k, delta, &w, &trend, logistic.as_ref(), g);
        }
        sse
    }

    /// Offsets `gamma` and the segments' rates and offsets of the logistic
    /// trend (`None` for the others).
    fn logistic_offsets(&self, k: f64, m: f64, delta: &[f64]) -> Option<Logistic> {
        if self.data.trend_indicator != TrendIndicator::Logistic {
            return None;
        }
        let s = self.s;
        // rates[j] = k + delta_1 + ... + delta_j; offsets[j] likewise with gamma.
        let mut rates = Vec::with_capacity(s + 1);
        let mut offsets = Vec::with_capacity(s + 1);
        let mut gamma = Vec::with_capacity(s);
        rates.push(k);
        offsets.push(m);
        for j in 0..s {
            let next = rates[j] + delta[j];
            let gj = (self.data.t_change[j] - offsets[j]) * (1.0 - rates[j] / next);
            rates.push(next);
            offsets.push(offsets[j] + gj);
            gamma.push(gj);
        }
        Some(Logistic {
            rates,
            offsets,
            gamma,
        })
    }

    /// The trend at every time, sweeping the changepoints in time order.
    fn trend_values(&self, k: f64, m: f64, delta: &[f64], logistic: Option<&Logistic>) -> Vec<f64> {
        let d = self.data;
        let n = d.y.len();
        let mut out = Vec::with_capacity(n);
        let (mut rate, mut offset) = (k, m);
        let mut next = 0;
        for i in 0..n {
            while next < self.s && self.start[self.order[next]] <= i {
                let j = self.order[next];
                rate += delta[j];
                offset += match logistic {
                    Some(l) => l.gamma[j],
                    None => -d.t_change[j] * delta[j],
                };
                next += 1;
            }
            out.push(match (d.trend_indicator, logistic) {
                (TrendIndicator::Flat, _) => m,
                (_, Some(_)) => d.cap[i] * inv_logit(rate * (d.t[i] - offset)),
                _ => rate * d.t[i] + offset,
            });
        }
        out
    }

    /// Adds the trend's share of the gradient, given `w = d value / d trend`.
    fn trend_grad(
        &self,
        k: f64,
        delta: &[f64],
        w: &[f64],
        trend: &[f64],
        logistic: Option<&Logistic>,
        g: &mut [f64],
    ) {
        let d = self.data;
        let n = w.len();
        match (d.trend_indicator, logistic) {
            (TrendIndicator::Flat, _) => {
                g[1] += w.iter().sum::<f64>();
            }
            (_, None) => {
                // trend_i = k t_i + m + sum_{j active} delta_j (t_i - tc_j):
                // suffix sums of w and w t give each delta_j's share.
                let (sw, swt) = suffix_sums(w, |i| d.t[i]);
                g[0] += swt[0];
                g[1] += sw[0];
                for j in 0..self.s {
                    let i0 = self.start[j];
                    g[DELTA0 + j] += swt[i0] - d.t_change[j] * sw[i0];
                }
            }
            (_, Some(l)) => {
                // trend_i = cap_i inv_logit(r_i (t_i - o_i)), r_i = k + A delta,
                // o_i = m + A gamma. First the rates' and offsets' adjoints.
                let mut a = vec![0.0; n];
                let mut rate_i = vec![0.0; n];
                let mut off_i = vec![0.0; n];
                let (mut rate, mut offset) = (k, l.offsets[0]);
                let mut next = 0;
                for i in 0..n {
                    while next < self.s && self.start[self.order[next]] <= i {
                        let j = self.order[next];
                        rate += delta[j];
                        offset += l.gamma[j];
                        next += 1;
                    }
                    rate_i[i] = rate;
                    off_i[i] = offset;
                    // d trend / d z = cap s (1 - s) = trend (1 - trend / cap).
                    let slope = if d.cap[i] != 0.0 {
                        trend[i] * (1.0 - trend[i] / d.cap[i])
                    } else {
                        0.0
                    };
                    a[i] = w[i] * slope;
                }
                // dz/dr = t - o, dz/do = -r.
                let dr: Vec<f64> = (0..n).map(|i| a[i] * (d.t[i] - off_i[i])).collect();
                let doff: Vec<f64> = (0..n).map(|i| -a[i] * rate_i[i]).collect();
                let (sdr, _) = suffix_sums(&dr, |_| 0.0);
                let (sdo, _) = suffix_sums(&doff, |_| 0.0);
                g[0] += sdr[0];
                let mut mbar = vec![0.0; self.s + 1];
                let mut kbar = vec![0.0; self.s + 1];
                for j in 0..self.s {
                    g[DELTA0 + j] += sdr[self.start[j]];
                }
                // Back through gamma_j = (tc_j - M_{j-1}) (1 - K_{j-1} / K_j),
                // M_j = M_{j-1} + gamma_j, K_j = K_{j-1} + delta_j.
                for j in (1..=self.s).rev() {
                    let gb = sdo[self.start[j - 1]] + mbar[j];
                    let (kp, kj) = (l.rates[j - 1], l.rates[j]);
                    let lead = d.t_change[j - 1] - l.offsets[j - 1];
                    mbar[j - 1] += mbar[j] - gb * (1.0 - kp / kj);
                    kbar[j - 1] += -gb * lead / kj;
                    kbar[j] += gb * lead * kp / (kj * kj);
                    g[DELTA0 + j - 1] += kbar[j];
                    kbar[j - 1] += kbar[j];
                }
                g[0] += kbar[0];
                g[1] += mbar[0] + sdo[0];
            }
        }
    }
}

/// The logistic trend's segments (see [`Objective::logistic_offsets`]).
struct Logistic {
    rates: Vec<f64>,
    offsets: Vec<f64>,
    gamma: Vec<f64>,
}

/// Suffix sums of `w` and of `w · f(i)`, each of length n + 1.
fn suffix_sums(w: &[f64], f: impl Fn(usize) -> f64) -> (Vec<f64>, Vec<f64>) {
    let n = w.len();
    let mut a = vec![0.0; n + 1];
    let mut b = vec![0.0; n + 1];
    for i in (0..n).rev() {
        a[i] = a[i + 1] + w[i];
        b[i] = b[i + 1] + w[i] * f(i);
    }
    (a, b)
}

fn inv_logit(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The objective as argmin sees it: divided by the number of
/// observations, so that the first step along the raw gradient (argmin's
/// L-BFGS starts with step 1, where Stan's starts with 0.001) stays in a
/// sane range; remembering the last gradient, so that a cost and a
/// gradient at the same point cost one evaluation.
struct Problem<'a> {
    objective: &'a Objective<'a>,
    scale: f64,
    last: RefCell<Option<Evaluated>>,
}

/// A point, the objective there and its gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

impl Problem<'_> {
    fn at(&self, z: &[f64]) -> (f64, Vec<f64>) {
        if let Some((q, v, g)) = self.last.borrow().as_ref()
            && q.as_slice() == z
        {
            return (*v, g.clone());
        }
        let (mut v, mut g) = self.objective.value_grad(z);
        v *= self.scale;
        g.iter_mut().for_each(|x| *x *= self.scale);
        *self.last.borrow_mut() = Some((z.to_vec(), v, g.clone()));
        (v, g)
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(self.at(p).0)
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.at(p).1)
    }
}

/// Minimises `objective` from `start` by L-BFGS; returns the best point
/// found and the number of iterations.
pub fn minimise(
    objective: &Objective<'_>,
    start: Vec<f64>,
    opts: &OptimizeOpts,
) -> Result<(Vec<f64>, u64), Error> {
    let scale = 1.0 / objective.data.y.len() as f64;
    let mut best = start;
    let mut best_f = objective.value(&best) * scale;
    if !best_f.is_finite() {
        return Err(Error::static_str(
            "the starting point has no finite density",
        ));
    }
    // Stan's defaults: relative objective change 1e4·machine epsilon,
    // gradient norm 1e-8.
    let tol_rel = opts.tol_rel_obj.unwrap_or(1e4) * f64::EPSILON;
    let tol_grad = opts.tol_grad.unwrap_or(1e-8) * scale;
    let history = opts.history_size.map(|h| h as usize).unwrap_or(10).max(3);
    let iters = opts.iter.map(u64::from).unwrap_or(MAX_ITERS);
    let mut used = 0;
    // A line search that fails (a step into overflow, or no progress
    // along a poor direction) ends argmin's run; a fresh run from the best
    // point, with the curvature memory cleared, usually gets on.
    for _ in 0..RESTARTS {
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), history)
            .with_tolerance_grad(tol_grad)
            .and_then(|s| s.with_tolerance_cost(tol_rel * best_f.abs().max(scale)))
            .map_err(|e| Error::string(e.to_string()))?;
        let problem = Problem {
            objective,
            scale,
            last: RefCell::new(None),
        };
        let result = Executor::new(problem, solver)
            .configure(|s| s.param(best.clone()).max_iters(iters.saturating_sub(used)))
            .run()
            .map_err(|e| Error::string(e.to_string()))?;
        let state = result.state();
        used += state.get_iter().max(1);
        // argmin also stops when one step gains almost nothing, which on a
        // stalled line search is not convergence: runs go on from the best
        // point until one gains no more than the tolerance.
        let gain = best_f - state.get_best_cost();
        if gain > 0.0
            && let Some(p) = state.get_best_param()
        {
            best = p.clone();
            best_f = state.get_best_cost();
        }
        let tol = 10.0 * tol_rel * best_f.abs().max(scale);
        if gain <= tol || used >= iters {
            break;
        }
    }
    Ok((best, used))
}

/// Fingerprints of the feature columns of `data` (FNV-1a of their bits).
fn column_keys(data: &Data) -> Vec<u64> {
    let k = data.sigmas.len();
    (0..k)
        .map(|c| {
            let mut h = fnv::FnvHasher::default();
            for row in data.X.chunks_exact(k) {
                h.write_u64(row[c].to_bits());
            }
            h.finish()
        })
        .collect()
}

/// The saved coefficients in the order of the columns fingerprinted `now`.
fn reorder(saved: &Params, now: &[u64]) -> Result<Vec<f64>, Error> {
    if saved.columns.is_empty() {
        return Ok(saved.beta.clone());
    }
    let mut used = vec![false; saved.columns.len()];
    now.iter()
        .map(|key| {
            let i = (0..saved.columns.len())
                .find(|i| !used[*i] && saved.columns[*i] == *key)
                .ok_or_else(|| Error::static_str("saved parameters are for other features"))?;
            used[i] = true;
            saved.beta.get(i).copied().ok_or_else(|| {
                Error::static_str("saved parameters have fewer coefficients than columns")
            })
        })
        .collect()
}

impl Optimizer for Lbfgs {
    fn optimize(
        &self,
        init: &InitialParams,
        data: &Data,
        opts: &OptimizeOpts,
    ) -> Result<OptimizedParams, Error> {
        let objective = Objective::new(data, opts.jacobian.unwrap_or(false))?;
        let s = objective.s;
        let columns = column_keys(data);
        let p = match &self.fixed {
            Some(f) => {
                if f.delta.len() != s || f.beta.len() != objective.k || f.sigma_obs <= 0.0 {
                    return Err(Error::string(format!(
                        "saved parameters have {} rate changes and {} coefficients, the data {s} and {}",
                        f.delta.len(),
                        f.beta.len(),
                        objective.k
                    )));
                }
                let beta = reorder(f, &columns)?;
                objective.pack(f.k, f.m, f.sigma_obs, &f.delta, &beta)
            }
            None => {
                let start =
                    objective.pack(init.k, init.m, *init.sigma_obs, &init.delta, &init.beta);
                minimise(&objective, start, opts)?.0
            }
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Params {
                k: p[0],
                m: p[1],
                sigma_obs: p[2].exp(),
                delta: p[DELTA0..DELTA0 + s].to_vec(),
                beta: p[DELTA0 + s..].to_vec(),
                columns,
            });
        }
        let sigma_obs = p[2]
            .exp()
            .max(f64::MIN_POSITIVE)
            .try_into()
            .map_err(|_| Error::static_str("sigma_obs is not positive"))?;
        Ok(OptimizedParams {
            k: p[0],
            m: p[1],
            sigma_obs,
            delta: p[DELTA0..DELTA0 + s].to_vec(),
            beta: p[DELTA0 + s..].to_vec(),
            trend: objective.trend(&p),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small Prophet-shaped data set: a trend that bends at 0.5, one
    /// additive and one multiplicative feature, noise.
    fn data(trend: TrendIndicator) -> Data {
        let n = 200;
        let t: Vec<f64> = (0..n).map(|i| i as f64 / (n - 1) as f64).collect();
        let mut x = Vec::with_capacity(2 * n);
        let mut y = Vec::with_capacity(n);
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for ti in &t {
            let (s, c) = (ti * 40.0).sin_cos();
            x.extend([s, c]);
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let tr = 0.3 + 0.2 * ti + if *ti > 0.5 { 0.4 * (ti - 0.5) } else { 0.0 };
            y.push(tr * (1.0 + 0.1 * c) + 0.05 * s + 0.02 * u);
        }
        Data {
            T: n as i32,
            y,
            t,
            cap: vec![1.0; n],
            S: 5,
            t_change: vec![0.15, 0.3, 0.45, 0.6, 0.75],
            trend_indicator: trend,
            K: 2,
            s_a: vec![1, 0],
            s_m: vec![0, 1],
            X: x,
            sigmas: vec![10.0.try_into().unwrap(), 10.0.try_into().unwrap()],
            tau: 0.05.try_into().unwrap(),
        }
    }

    /// The analytic gradient matches central finite differences, for every
    /// trend kind, at a point away from the optimum.
    #[test]
    fn gradient_matches_finite_differences() {
        for (kind, jacobian) in [
            (TrendIndicator::Linear, false),
            (TrendIndicator::Logistic, false),
            (TrendIndicator::Flat, false),
            (TrendIndicator::Linear, true),
        ] {
            let mut d = data(kind);
            if jacobian {
                // Also the quadratic form (additive features only).
                d.s_a = vec![1, 1];
                d.s_m = vec![0, 0];
            }
            let o = Objective::new(&d, jacobian).unwrap();
            assert_eq!(o.quad.is_some(), jacobian);
            let p = o.pack(0.7, 0.1, 0.3, &[0.05, -0.2, 0.01, 0.3, -0.1], &[0.2, -0.3]);
            let (_, g) = o.value_grad(&p);
            for i in 0..p.len() {
                let h = 1e-6 * p[i].abs().max(1.0);
                let mut hi = p.clone();
                let mut lo = p.clone();
                hi[i] += h;
                lo[i] -= h;
                let fd = (o.value(&hi) - o.value(&lo)) / (2.0 * h);
                let tol = 1e-5 * fd.abs().max(1.0);
                assert!(
                    (fd - g[i]).abs() < tol,
                    "{kind:?} jacobian={jacobian} parameter {i}: analytic {} vs numeric {fd}",
                    g[i]
                );
            }
        }
    }

    /// From two different starting points L-BFGS reaches the same optimum,
    /// where the gradient vanishes; the fitted values follow the data.
    #[test]
    fn reaches_the_same_optimum_from_two_starts() {
        for kind in [TrendIndicator::Linear, TrendIndicator::Logistic] {
            let d = data(kind);
            let o = Objective::new(&d, false).unwrap();
            let a = o.pack(0.1, 0.3, 1.0, &[0.0; 5], &[0.0, 0.0]);
            let b = o.pack(-1.0, 1.5, 0.05, &[0.3, -0.3, 0.3, -0.3, 0.3], &[1.0, -1.0]);
            let (pa, _) = minimise(&o, a, &OptimizeOpts::default()).unwrap();
            let (pb, _) = minimise(&o, b, &OptimizeOpts::default()).unwrap();
            let (fa, fb) = (o.value(&pa), o.value(&pb));
            assert!(
                (fa - fb).abs() < 1e-4 * fa.abs().max(1.0),
                "{kind:?}: {fa} vs {fb}"
            );
            // Same fitted curve (parameters may trade off along flat directions
            // only within the smoothing of |delta|).
            let (ta, tb) = (o.trend(&pa), o.trend(&pb));
            let worst = ta
                .iter()
                .zip(&tb)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-3, "{kind:?}: trends differ by {worst}");
            // The noise level found is the generated one (uniform ±0.01: sd 0.0058).
            let sigma = pa[2].exp();
            assert!((0.004..0.008).contains(&sigma), "{kind:?}: sigma {sigma}");
        }
    }

    /// With additive features and a linear or flat trend the quadratic
    /// form gives the same value and gradient as the sum over the data.
    #[test]
    fn quadratic_form_matches_the_data() {
        for kind in [TrendIndicator::Linear, TrendIndicator::Flat] {
            let mut d = data(kind);
            d.s_a = vec![1, 1];
            d.s_m = vec![0, 0];
            let fast = Objective::new(&d, false).unwrap();
            assert!(fast.quad.is_some());
            let mut slow = Objective::new(&d, false).unwrap();
            slow.quad = None;
            let p = fast.pack(0.4, 0.2, 0.1, &[0.05, -0.2, 0.0, 0.3, -0.1], &[0.2, -0.3]);
            let (vf, gf) = fast.value_grad(&p);
            let (vs, gs) = slow.value_grad(&p);
            assert!(
                (vf - vs).abs() < 1e-9 * vs.abs().max(1.0),
                "{kind:?}: {vf} vs {vs}"
            );
            for (a, b) in gf.iter().zip(&gs) {
                assert!(
                    (a - b).abs() < 1e-7 * b.abs().max(1.0),
                    "{kind:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn bad_data_is_an_error() {
        let mut d = data(TrendIndicator::Linear);
        d.t.swap(3, 4);
        assert!(Objective::new(&d, false).is_err());
        let mut d = data(TrendIndicator::Linear);
        d.X.pop();
        assert!(Objective::new(&d, false).is_err());
        let mut d = data(TrendIndicator::Linear);
        d.y[7] = f64::NAN;
        assert!(Objective::new(&d, false).is_err());
    }
}
