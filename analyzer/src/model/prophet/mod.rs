//! `prophet`: Facebook's Prophet (a piecewise-linear trend with
//! changepoints plus Fourier seasonalities, fitted as a Bayesian MAP
//! estimate) from `augurs-prophet`, with imd's own optimiser in place of
//! Stan (see `optimizer`).
//!
//! Back end: augurs' only offline Stan back end, `prophet-wasmstan`, runs
//! Stan compiled to WASM inside wasmtime, which adds ≈11 min to a cold
//! debug build (≈25 min release) on this project's 2-core CI; cmdstan needs
//! an installed Stan toolchain. The pure-Rust optimiser maximises the same
//! posterior with L-BFGS (argmin) and builds in seconds.
//!
//! Online use: the model is fitted on the history the engine passes (its
//! last `window` points, at least four weeks of them when the history has
//! that, at most `MAX_POINTS`), with Prophet's default seasonalities (daily
//! once the history spans two days, weekly two weeks, yearly two years) and
//! the configured `season`, if any. It is refitted when the engine refits
//! and every `REFIT_EVERY` new points (the first time after a per-series
//! share of them, so that series fitted together do not refit together).
//! Until the next fit, a new point is
//! judged against the fit's prediction for its time: the score is the
//! error standardised by a robust scale of the model's errors. Those errors
//! are the fit's in-sample ones and, once there are enough, the errors of
//! the points seen since (out-of-sample); fitting without a history of
//! those first seeds them by fitting without the last `SEED_POINTS` points
//! and comparing its forecast with them. Forecast bounds are the empirical
//! quantile of the same errors: Prophet's own intervals come from random
//! simulation (not repeatable) and include only in-sample noise.
//!
//! Saved state is the fitted points, the optimised parameters and the
//! online errors; loading rebuilds the same model without optimising again
//! (the same up to rounding: augurs may order the seasonal features
//! differently, see `optimizer::Params::columns`).

pub mod optimizer;

use std::num::NonZeroU32;

use augurs::prophet::{
    PredictionData, Prophet, ProphetOptions, Seasonality, SeasonalityOption, TrainingData,
    optimizer::OptimizeOpts,
};
use serde::{Deserialize, Serialize};

use super::refit::refit_phase;
use super::resid::{Errors, OnlineErrors};
use super::window::{Window, future_times};
use super::{Forecast, Model, ModelError, ModelParams, Point};
use optimizer::{Lbfgs, Params};

/// History the model tries to keep, so that weekly seasonality is found.
const HISTORY_MS: i64 = 28 * DAY_MS;
/// Most points fitted (a week of minutes).
pub const MAX_POINTS: usize = 10_080;
/// Convergence tolerance on the relative change of the objective, in
/// units of machine epsilon: 2·10⁻⁹, looser than Stan's default (10⁴,
/// which the oracle test keeps); what it leaves is far below the noise of
/// any forecast, and refits stop sooner.
const TOL_REL_OBJ: f64 = 1e7;
/// Most L-BFGS iterations of a fit. Stan is given 10,000; from Prophet's
/// starting point the forecasts stop changing well before this, and the
/// cap bounds what a refit costs (see the README's model quality numbers).
const MAX_ITERS: u32 = 500;
/// Fewest points fitted.
const MIN_FIT: usize = 5;
/// Points taken in between two fits: the model refits itself this often
/// when the engine's `fit_every` is longer, as the other batch forecasters
/// do (see `refit`), so that the trend is not extrapolated far.
const REFIT_EVERY: usize = 96;
/// Held-out points that seed the online errors at fit time.
const SEED_POINTS: usize = 48;
const DAY_MS: i64 = 86_400_000;

/// The Prophet model.
pub struct ProphetModel {
    params: ModelParams,
    state: Option<State>,
    /// Time of the last point seen (fitted or taken in since).
    last_t: Option<i64>,
    /// Errors of the points seen since the fits.
    online: OnlineErrors,
    /// Points taken in since the last fit.
    recent: Vec<Point>,
    /// How many of them trigger the next refit: `REFIT_EVERY`, less a
    /// per-series phase after a fit by the engine (see `refit_phase`).
    refit_at: usize,
}

/// A fitted model.
struct State {
    prophet: Prophet<Lbfgs>,
    points: Vec<Point>,
    params: Params,
    step: i64,
    errors: Errors,
}

/// Saved state (see the module docs).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    points: Vec<Point>,
    params: Option<Params>,
    last_t: Option<i64>,
    #[serde(with = "crate::model::compact::f64s_or_list")]
    online: Vec<f64>,
    #[serde(default)]
    recent: Vec<Point>,
    #[serde(default = "refit_every")]
    refit_at: usize,
}

fn refit_every() -> usize {
    REFIT_EVERY
}

impl ProphetModel {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> ProphetModel {
        ProphetModel {
            params,
            state: None,
            last_t: None,
            online: OnlineErrors::default(),
            recent: Vec::new(),
            refit_at: REFIT_EVERY,
        }
    }

    /// The points a fit uses: finite, one per second (Prophet's time unit),
    /// the last `window` of them or more (see the module docs).
    fn prepare(&self, history: &[Point]) -> Vec<Point> {
        let mut points: Vec<Point> = Vec::with_capacity(history.len());
        for p in history.iter().filter(|p| p.v.is_finite()) {
            match points.last_mut() {
                Some(last) if last.t.div_euclid(1000) == p.t.div_euclid(1000) => *last = *p,
                _ => points.push(*p),
            }
        }
        let mut w = Window::new(points.len().max(1));
        w.fill(&points);
        let wanted = w
            .step_ms()
            .map(|s| (HISTORY_MS / s.max(1)) as usize)
            .unwrap_or(0)
            .min(MAX_POINTS);
        let keep = self.params.window.max(wanted).min(points.len());
        points.split_off(points.len() - keep)
    }

    /// Fits Prophet on `points` with `optimizer`; returns the model and its
    /// parameters.
    fn fit_points(
        &self,
        points: &[Point],
        optimizer: Lbfgs,
    ) -> Result<(Prophet<Lbfgs>, Params), String> {
        let step = step_ms(points).ok_or("fewer than two distinct times")?;
        let span =
            points.last().map(|p| p.t).unwrap_or(0) - points.first().map(|p| p.t).unwrap_or(0);
        let opts = ProphetOptions {
            uncertainty_samples: 0,
            ..ProphetOptions::default()
        };
        let mut prophet = Prophet::new(opts, optimizer.clone());
        if let Some(season) = self.params.season {
            let period = season as i64 * step;
            let near = |p: i64| (period - p).abs() * 50 < p;
            if span >= 2 * period {
                if near(DAY_MS) {
                    prophet.opts_mut().daily_seasonality = SeasonalityOption::Manual(true);
                } else if near(7 * DAY_MS) {
                    prophet.opts_mut().weekly_seasonality = SeasonalityOption::Manual(true);
                } else {
                    let order = NonZeroU32::new((season as u32 / 2).clamp(1, 5))
                        .ok_or("season too short")?;
                    let days = (period as f64 / DAY_MS as f64)
                        .try_into()
                        .map_err(|e| format!("season: {e}"))?;
                    prophet
                        .add_seasonality("configured".to_string(), Seasonality::new(days, order))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        let ds: Vec<i64> = points.iter().map(|p| p.t.div_euclid(1000)).collect();
        let y: Vec<f64> = points.iter().map(|p| p.v).collect();
        let data = TrainingData::new(ds, y).map_err(|e| e.to_string())?;
        prophet
            .fit(
                data,
                OptimizeOpts {
                    tol_rel_obj: Some(TOL_REL_OBJ),
                    iter: Some(MAX_ITERS),
                    ..OptimizeOpts::default()
                },
            )
            .map_err(|e| e.to_string())?;
        let params = optimizer.last().ok_or("the optimiser kept no parameters")?;
        Ok((prophet, params))
    }

    /// Builds the fitted state from a fitted model.
    fn state(
        &self,
        (prophet, params): (Prophet<Lbfgs>, Params),
        points: Vec<Point>,
    ) -> Option<State> {
        let step = step_ms(&points)?;
        let fitted = predict(&prophet, &points.iter().map(|p| p.t).collect::<Vec<_>>())?;
        let resid: Vec<f64> = points.iter().zip(&fitted).map(|(p, f)| p.v - f).collect();
        let errors = Errors::new(&resid, points.last()?.v);
        Some(State {
            prophet,
            points,
            params,
            step,
            errors,
        })
    }

    /// Seeds the online errors with held-out ones (see the module docs).
    fn seed_online(&mut self, points: &[Point]) {
        let Some(cut) = points
            .len()
            .checked_sub(SEED_POINTS)
            .filter(|c| *c >= self.need())
        else {
            return;
        };
        let Ok((prophet, _)) = self.fit_points(&points[..cut], Lbfgs::default()) else {
            return;
        };
        let times: Vec<i64> = points[cut..].iter().map(|p| p.t).collect();
        let Some(mean) = predict(&prophet, &times) else {
            return;
        };
        let level = self.level();
        self.online
            .extend(points[cut..].iter().zip(mean).map(|(p, m)| p.v - m), level);
    }

    fn need(&self) -> usize {
        self.params.min_points.max(MIN_FIT)
    }

    /// The last fitted value (the spread floor's reference).
    fn level(&self) -> f64 {
        self.state
            .as_ref()
            .and_then(|s| s.points.last())
            .map(|p| p.v)
            .unwrap_or(0.0)
    }

    /// The fit's prediction at time `t` (ms).
    fn predict_at(&self, t: i64) -> Option<f64> {
        predict(&self.state.as_ref()?.prophet, &[t])?
            .first()
            .copied()
    }
}

/// The median spacing of the points' times (ms).
fn step_ms(points: &[Point]) -> Option<i64> {
    let mut w = Window::new(points.len().max(1));
    w.fill(points);
    w.step_ms()
}

/// Predictions of a fitted model at times `t` (ms).
fn predict(prophet: &Prophet<Lbfgs>, t: &[i64]) -> Option<Vec<f64>> {
    let ds: Vec<i64> = t.iter().map(|t| t.div_euclid(1000)).collect();
    let p = prophet.predict(PredictionData::new(ds)).ok()?;
    let y = p.yhat.point;
    (y.len() == t.len() && y.iter().all(|v| v.is_finite())).then_some(y)
}

impl Model for ProphetModel {
    fn name(&self) -> &'static str {
        "prophet"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.recent.clear();
        let points = self.prepare(history);
        if let Some(last) = points.last() {
            self.last_t = Some(self.last_t.map_or(last.t, |t| t.max(last.t)));
        }
        self.state = None;
        if points.len() < self.need() {
            return Ok(());
        }
        if self.online.too_few() {
            self.seed_online(&points);
        }
        self.refit_at = REFIT_EVERY - refit_phase(points.iter().copied(), REFIT_EVERY);
        match self.fit_points(&points, Lbfgs::default()) {
            Ok(fitted) => self.state = self.state(fitted, points),
            Err(e) => tracing::debug!(model = "prophet", error = %e, "fit failed"),
        }
        let level = self.level();
        self.online.summarise(level);
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if !point.v.is_finite() {
            return 0.0;
        }
        let (Some(s), Some(mean)) = (&self.state, self.predict_at(point.t)) else {
            return 0.0;
        };
        self.online.score(&s.errors, point.v - mean, 1.0)
    }

    fn update(&mut self, point: Point) {
        if !point.v.is_finite() {
            return;
        }
        if let Some(mean) = self.predict_at(point.t) {
            let level = self.level();
            self.online.push(point.v - mean, level);
        }
        self.last_t = Some(self.last_t.map_or(point.t, |t| t.max(point.t)));
        if self.recent.len() == MAX_POINTS {
            self.recent.remove(0);
        }
        self.recent.push(point);
        if self.recent.len() >= self.refit_at
            && let Some(s) = &self.state
        {
            let mut all = s.points.clone();
            all.append(&mut self.recent);
            if let Err(e) = self.fit(&all) {
                tracing::debug!(model = "prophet", error = %e, "refit failed");
            }
            // Already out of phase with the others: a whole period.
            self.refit_at = REFIT_EVERY;
        }
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let s = self.state.as_ref()?;
        let last = self.last_t?;
        let t = future_times(last, s.step, steps);
        let mean = predict(&s.prophet, &t)?;
        let half = self.online.half_width(s.errors.half_width(level), level);
        Some(Forecast {
            lower: mean.iter().map(|m| m - half).collect(),
            upper: mean.iter().map(|m| m + half).collect(),
            mean,
            t,
        })
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            points: self
                .state
                .as_ref()
                .map(|s| s.points.clone())
                .unwrap_or_default(),
            params: self.state.as_ref().map(|s| s.params.clone()),
            last_t: self.last_t,
            online: self.online.saved(),
            recent: self.recent.clone(),
            refit_at: self.refit_at,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::BadState {
            model: "prophet",
            reason,
        };
        let s: Saved = serde_json::from_value(state).map_err(|e| bad(e.to_string()))?;
        if s.online.iter().any(|e| !e.is_finite()) {
            return Err(bad("non-finite online error".to_string()));
        }
        if !(1..=REFIT_EVERY).contains(&s.refit_at) {
            return Err(bad(format!(
                "refit_at {} outside 1..={REFIT_EVERY}",
                s.refit_at
            )));
        }
        self.state = match s.params {
            Some(params) => {
                let fitted = self
                    .fit_points(&s.points, Lbfgs::fixed(params))
                    .map_err(|e| bad(format!("saved fit does not rebuild: {e}")))?;
                Some(
                    self.state(fitted, s.points)
                        .ok_or_else(|| bad("saved fit predicts nothing".to_string()))?,
                )
            }
            None => None,
        };
        self.last_t = s.last_t;
        self.online = OnlineErrors::restored(s.online, self.level());
        self.recent = s.recent;
        self.refit_at = s.refit_at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An hourly series with a trend, daily and weekly cycles, and noise.
    fn series(n: usize) -> Vec<Point> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let x = i as f64;
                Point {
                    t: 1_700_000_000_000 + i as i64 * 3_600_000,
                    v: 50.0
                        + 0.01 * x
                        + 5.0 * (std::f64::consts::TAU * x / 24.0).sin()
                        + 2.0 * (std::f64::consts::TAU * x / 168.0).cos()
                        + u,
                }
            })
            .collect()
    }

    #[test]
    fn forecasts_daily_and_weekly_cycles_and_round_trips() {
        let all = series(800);
        let mut m = ProphetModel::new(ModelParams::default());
        m.fit(&all[..700]).unwrap();
        let f = m.forecast(48, 0.95).unwrap();
        assert_eq!(f.t[0], all[700].t);
        let mut inside = 0;
        for (k, mean) in f.mean.iter().enumerate() {
            let truth = all[700 + k].v;
            assert!((mean - truth).abs() < 1.5, "step {k}: {mean} vs {truth}");
            inside += usize::from(f.lower[k] <= truth && truth <= f.upper[k]);
        }
        assert!(inside >= 44, "{inside} of 48 inside the 95% bounds");
        // Scores: normal points low, a jump high.
        for p in &all[700..720] {
            assert!(m.score(*p) < 0.99, "{p:?} scored {}", m.score(*p));
            m.update(*p);
        }
        let jump = Point {
            t: all[720].t,
            v: all[720].v + 10.0,
        };
        assert!(m.score(jump) > 0.999);
        // Saved state rebuilds the same model without optimising.
        let saved = m.save();
        let mut r = ProphetModel::new(ModelParams::default());
        r.load(saved).unwrap();
        // The same up to rounding: augurs sums the features in the order of
        // a randomly seeded hash map.
        assert!((r.score(jump) - m.score(jump)).abs() < 1e-12);
        let (a, b) = (r.forecast(5, 0.9).unwrap(), m.forecast(5, 0.9).unwrap());
        assert_eq!(a.t, b.t);
        for (x, y) in a
            .mean
            .iter()
            .zip(&b.mean)
            .chain(a.upper.iter().zip(&b.upper))
        {
            assert!((x - y).abs() < 1e-9 * y.abs(), "{x} vs {y}");
        }
        assert!(r.load(serde_json::json!({"points": 1})).is_err());
        // The count to the next refit is kept, and a bad one refused by name.
        assert_eq!(r.refit_at, m.refit_at);
        assert!((1..=REFIT_EVERY).contains(&m.refit_at));
        let mut bad = m.save();
        bad["refit_at"] = serde_json::json!(0);
        let err = r.load(bad).unwrap_err().to_string();
        assert!(err.contains("refit_at"), "{err}");
    }

    #[test]
    fn configured_season_and_short_history() {
        // A 10-point cycle sampled every minute: not a calendar season.
        let h: Vec<Point> = (0..300)
            .map(|i| Point {
                t: i * 60_000,
                v: 10.0 + 3.0 * (std::f64::consts::TAU * i as f64 / 10.0).sin(),
            })
            .collect();
        let params = ModelParams {
            season: Some(10),
            ..ModelParams::default()
        };
        let mut m = ProphetModel::new(params);
        m.fit(&h).unwrap();
        let f = m.forecast(10, 0.95).unwrap();
        for (k, mean) in f.mean.iter().enumerate() {
            let truth = 10.0 + 3.0 * (std::f64::consts::TAU * (300 + k) as f64 / 10.0).sin();
            assert!((mean - truth).abs() < 0.3, "step {k}: {mean} vs {truth}");
        }
        let mut short = ProphetModel::new(ModelParams::default());
        short.fit(&h[..3]).unwrap();
        assert!(short.forecast(1, 0.95).is_none());
        assert_eq!(short.score(h[3]), 0.0);
    }
}
