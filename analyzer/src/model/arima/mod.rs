//! `arima`: seasonal ARIMA with automatic order selection by AICc (see
//! [`fit`] for the search and the estimation).
//!
//! Online use: the orders are chosen at each fit (first sight of a series
//! and every `fit_every`); the coefficients are re-estimated on the window
//! every season (at most every 48 points). Between re-estimations the model
//! follows the series point by point with fixed coefficients, so a new
//! point is always judged against its one-step forecast from all the points
//! before it: its score is that error in units of the robust scale of the
//! one-step errors. Forecast bounds widen with the horizon as the model's
//! psi weights say, plus the error of the estimated mean or drift, which
//! the forecast carries more times the further it looks (the part of
//! parameter uncertainty that grows with the horizon). Their one-step width
//! is the larger of two estimates: the empirical quantile of held-out and
//! online errors, like the other forecasters' (`resid`), so that 95 %
//! bounds hold on series that are not Gaussian; and that of the in-sample
//! residuals, corrected for the parameters fitted to them (scaled by
//! sqrt(n / (n − k)), and by the Student-t quantile with n − k degrees of
//! freedom over the normal one for the estimated scale), which matters on
//! short series.

use serde::{Deserialize, Serialize};

use super::refit::refit_phase;
use super::resid::{Errors, OnlineErrors, small_sample_widening};
use super::season::{detect_sampled, regular};
use super::window::{Window, future_times};
use super::{Forecast, Model, ModelError, ModelParams, Point};

pub mod fit;

use fit::{Fitted, Spec, State};

/// The longest gap between re-estimations, in points.
const MAX_REFIT_EVERY: usize = 48;
/// Held-out points that seed the online errors at fit time.
const SEED_POINTS: usize = 48;

/// Seasonal ARIMA run online.
pub struct Arima {
    params: ModelParams,
    window: Window,
    /// Season in points (1: none).
    season: usize,
    fitted: Option<Fitted>,
    view: Option<View>,
    since: usize,
    /// One-step errors (later: errors divided by the forecast's growth).
    online: OnlineErrors,
}

/// The fitted model run over the current window.
struct View {
    state: State,
    last_t: i64,
    step: i64,
    /// In-sample one-step errors.
    errors: Errors,
    /// In-sample errors (n) and the parameters fitted to them (k), for
    /// [`small_sample_widening`].
    n: usize,
    k: usize,
    /// The one-step forecast of the next point.
    next: f64,
}

/// Saved state: the season, the window, the online errors, the orders and
/// the points taken since they were estimated
/// (coefficients are re-estimated on load, deterministically).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    season: usize,
    window: Window,
    #[serde(with = "crate::model::compact::f64s_or_list")]
    online: Vec<f64>,
    spec: Option<Spec>,
    /// Points taken since the last estimate (absent in older state: a
    /// phase, as after a fit).
    #[serde(default)]
    since: Option<usize>,
}

impl Arima {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Arima {
        let season = params.season.unwrap_or(1).max(1);
        let window = Window::new(capacity(&params, season));
        Arima {
            params,
            window,
            season,
            fitted: None,
            view: None,
            since: 0,
            online: OnlineErrors::default(),
        }
    }

    /// The orders chosen at the last fit.
    pub fn spec(&self) -> Option<Spec> {
        self.fitted.as_ref().map(|f| f.spec)
    }

    fn refit_every(&self) -> usize {
        if self.season > 1 {
            self.season.clamp(6, MAX_REFIT_EVERY)
        } else {
            12
        }
    }

    /// The window on a regular grid, with its step and last time.
    fn grid(&self) -> Option<(Vec<f64>, i64, i64)> {
        let step = self.window.step_ms()?;
        let last = self.window.last()?;
        let points: Vec<Point> = self.window.points().collect();
        Some((regular(&points, step), step, last.t))
    }

    /// Runs the fitted model over the window.
    fn rebuild(&mut self) {
        self.view = None;
        let (Some(f), Some((y, step, last_t))) = (&self.fitted, self.grid()) else {
            return;
        };
        if y.len() < self.params.min_points {
            return;
        }
        let Some(state) = State::new(f, &y) else {
            return;
        };
        let next = state.forecast(1).first().copied().unwrap_or(f64::NAN);
        if !next.is_finite() {
            return;
        }
        let level = y.last().copied().unwrap_or(0.0);
        self.view = Some(View {
            errors: Errors::new(state.residuals(), level),
            n: state.residuals().len(),
            k: fit::n_params(&f.spec),
            state,
            last_t,
            step,
            next,
        });
    }

    /// Re-estimates the coefficients of `spec` on the window.
    fn reestimate(&mut self, spec: Spec) {
        self.since = 0;
        if let Some((y, _, _)) = self.grid()
            && let Some(f) = fit::estimate(&fit::difference(&y, spec.d, spec.sd, spec.m), &spec, 0)
        {
            self.fitted = Some(f);
        }
        self.rebuild();
    }

    /// Seeds the online errors with held-out ones: the chosen orders are
    /// estimated without the last points of the window, and their forecast
    /// for those points is compared with what came.
    fn seed_online(&mut self, y: &[f64], spec: &Spec) {
        let h = self.refit_every().max(SEED_POINTS);
        let Some(cut) = y.len().checked_sub(h).filter(|c| *c >= h.max(20)) else {
            return;
        };
        let train = &y[..cut];
        let Some(f) = fit::estimate(&fit::difference(train, spec.d, spec.sd, spec.m), spec, 0)
        else {
            return;
        };
        let Some(state) = State::new(&f, train) else {
            return;
        };
        let mean = state.forecast(h);
        let g = growths(&f, &state, h);
        let level = self.level();
        self.online
            .extend((0..h).map(|i| (y[cut + i] - mean[i]) / g[i]), level);
    }

    /// The series' latest value (the spread floor's reference).
    fn level(&self) -> f64 {
        self.window.last().map(|p| p.v).unwrap_or(0.0)
    }

    /// Steps from the window's last point to `t` (at least 1).
    fn steps_to(v: &View, t: i64) -> usize {
        ((t - v.last_t) as f64 / v.step as f64).round().max(1.0) as usize
    }

    /// The forecast of `t` and how much wider its error is than one step's.
    fn expect(&self, v: &View, t: i64) -> Option<(f64, f64)> {
        let h = Self::steps_to(v, t);
        if h == 1 {
            return Some((v.next, 1.0));
        }
        let f = self.fitted.as_ref()?;
        let mean = *v.state.forecast(h).last()?;
        Some((mean, *growths(f, &v.state, h).last()?))
    }

    /// Half-width of a one-step bound at `level` (see the module).
    fn one_step_half(&self, v: &View, level: f64) -> f64 {
        let in_sample = v.errors.half_width(level) * small_sample_widening(v.n, v.k, level);
        self.online.half_width(in_sample, level)
    }
}

/// The forecast's scale relative to one step's innovation, for h =
/// 1..=steps: sqrt(Σ_{j<h} ψ_j² + c_h² Var(μ̂)/σ²), the innovations to come
/// plus the error of the estimated mean (or drift) μ, which the forecast of
/// step h carries c_h times (`State::mean_weights`).
fn growths(f: &Fitted, state: &State, steps: usize) -> Vec<f64> {
    let v_mu = fit::mean_variance(f, state.differenced_len());
    let c = if v_mu > 0.0 {
        state.mean_weights(steps)
    } else {
        vec![0.0; steps]
    };
    let mut acc = 0.0;
    fit::psi_weights(f, steps)
        .iter()
        .zip(&c)
        .map(|(p, c)| {
            acc += p * p;
            let g = (acc + c * c * v_mu).sqrt();
            if g.is_finite() { g.max(1.0) } else { 1.0 }
        })
        .collect()
}

/// Window size: the configured one, or four seasons and a point if longer.
fn capacity(params: &ModelParams, season: usize) -> usize {
    params.window.max(4 * season + 1)
}

impl Model for Arima {
    fn name(&self) -> &'static str {
        "arima"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        if self.params.season.is_none() {
            let mut w = Window::new(history.len().max(1));
            w.fill(history);
            let points: Vec<Point> = w.points().collect();
            self.season = w
                .step_ms()
                .and_then(|step| detect_sampled(&points, step).first().copied())
                .unwrap_or(1);
        }
        self.window = Window::new(capacity(&self.params, self.season));
        self.window.fill(history);
        self.since = 0;
        self.fitted = None;
        self.view = None;
        let Some((y, _, _)) = self.grid() else {
            return Ok(());
        };
        if y.len() < self.params.min_points {
            return Ok(());
        }
        self.fitted = fit::auto(&y, self.season);
        if let Some(spec) = self.spec()
            && self.online.too_few()
        {
            self.seed_online(&y, &spec);
        }
        self.rebuild();
        self.since = refit_phase(self.window.points(), self.refit_every());
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        let Some(v) = &self.view else {
            return 0.0;
        };
        if !point.v.is_finite() {
            return 0.0;
        }
        let Some((mean, growth)) = self.expect(v, point.t) else {
            return 0.0;
        };
        self.online.score(&v.errors, point.v - mean, growth)
    }

    fn update(&mut self, point: Point) {
        if !point.v.is_finite() {
            return;
        }
        if let Some(v) = &self.view
            && let Some((mean, growth)) = self.expect(v, point.t)
        {
            let level = self.level();
            self.online.push((point.v - mean) / growth, level);
        }
        self.window.push(point);
        self.since += 1;
        match self.spec() {
            Some(spec) if self.since >= self.refit_every() => self.reestimate(spec),
            _ => self.rebuild(),
        }
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let v = self.view.as_ref()?;
        let f = self.fitted.as_ref()?;
        let mean = v.state.forecast(steps);
        if mean.len() != steps || mean.iter().any(|m| !m.is_finite()) {
            return None;
        }
        let half = self.one_step_half(v, level);
        let g = growths(f, &v.state, steps);
        Some(Forecast {
            t: future_times(v.last_t, v.step, steps),
            lower: mean.iter().zip(&g).map(|(m, g)| m - half * g).collect(),
            upper: mean.iter().zip(&g).map(|(m, g)| m + half * g).collect(),
            mean,
        })
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            season: self.season,
            window: self.window.clone(),
            online: self.online.saved(),
            spec: self.spec(),
            since: Some(self.since),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::BadState {
            model: "arima",
            reason,
        };
        let s: Saved = serde_json::from_value(state).map_err(|e| bad(e.to_string()))?;
        if s.season == 0 {
            return Err(bad("season 0".into()));
        }
        if let Some(spec) = &s.spec
            && (spec.d > 2
                || spec.sd > 1
                || spec.m == 0
                || spec.p + spec.q + spec.sp + spec.sq > 20)
        {
            return Err(bad(format!("bad orders {spec}")));
        }
        self.season = s.season;
        self.window = s.window;
        self.online = OnlineErrors::restored(s.online, self.level());
        self.fitted = None;
        self.view = None;
        if let Some(spec) = s.spec {
            self.reestimate(spec);
        }
        self.since = s
            .since
            .unwrap_or_else(|| refit_phase(self.window.points(), self.refit_every()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_seasonal_series_online() {
        let v =
            |i: i64| 20.0 + 5.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin() + 0.05 * i as f64;
        let noise = crate::model::testdata::noisy(400, 0.0, 0.5);
        let h: Vec<Point> = (0..400)
            .map(|i| Point {
                t: i * 3_600_000,
                v: v(i) + noise[i as usize].v,
            })
            .collect();
        let mut m = Arima::new(ModelParams::default());
        m.fit(&h[..300]).unwrap();
        let spec = m.spec().unwrap();
        assert_eq!(spec.m, 24, "{spec}");
        let mut high = 0;
        for p in &h[300..] {
            if m.score(*p) > 0.999 {
                high += 1;
            }
            m.update(*p);
        }
        assert!(high <= 2, "{high} false alarms");
        let f = m.forecast(24, 0.95).unwrap();
        assert_eq!(f.t[0], 400 * 3_600_000);
        for (k, mean) in f.mean.iter().enumerate() {
            assert!((mean - v(400 + k as i64)).abs() < 1.0, "step {k}: {mean}");
            assert!(f.lower[k] < *mean && *mean < f.upper[k]);
        }
        assert!(f.upper[23] - f.lower[23] >= f.upper[0] - f.lower[0]);
        // A point far off its one-step forecast scores high.
        assert!(
            m.score(Point {
                t: 400 * 3_600_000,
                v: f.mean[0] + 10.0
            }) > 0.999
        );
        // State round trip.
        let mut r = Arima::new(ModelParams::default());
        r.load(m.save()).unwrap();
        assert_eq!(r.spec(), m.spec());
        assert!(r.load(serde_json::json!({"season": 0})).is_err());
    }

    /// 95 % bounds cover 90–98 % of what follows on short series of a known
    /// process (AR(1) and a random walk with drift, Gaussian innovations),
    /// where the fitted parameters' uncertainty counts most.
    #[test]
    fn bounds_keep_their_level_on_short_series() {
        let mut s = 0x9E37_79B9_7F4A_7C15_u64;
        let mut normal = || {
            let mut u = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            (-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()
        };
        let (n, h) = (60, 6);
        let (mut covered, mut total) = (0, 0);
        for k in 0..80 {
            let mut y = vec![0.0; n + h];
            for t in 1..n + h {
                y[t] = if k % 2 == 0 {
                    0.5 * y[t - 1] + normal()
                } else {
                    y[t - 1] + 0.3 + normal()
                };
            }
            let pts: Vec<Point> = (0..n)
                .map(|i| Point {
                    t: i as i64 * 60_000,
                    v: 10.0 + y[i],
                })
                .collect();
            let mut m = Arima::new(ModelParams {
                window: n,
                min_points: 10,
                season: Some(1),
                ..ModelParams::default()
            });
            m.fit(&pts).unwrap();
            let Some(f) = m.forecast(h, 0.95) else {
                continue;
            };
            for i in 0..h {
                let v = 10.0 + y[n + i];
                total += 1;
                covered += usize::from(f.lower[i] <= v && v <= f.upper[i]);
            }
        }
        let coverage = covered as f64 / total as f64;
        assert!(total >= 400, "{total} forecasts");
        assert!((0.90..=0.98).contains(&coverage), "coverage {coverage}");
    }
}
