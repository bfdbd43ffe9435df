//! `mstl`: multiple seasonal-trend decomposition by Loess, with AutoETS
//! forecasting the seasonally adjusted series and each seasonal component
//! repeated. The seasons come from the `season` parameter or are detected
//! (daily and weekly, say). With no seasonality found it is ETS on the
//! series itself.
//!
//! The decomposition is the `stlrs` crate's MSTL, as augurs' `MSTLModel`
//! runs it; the combination is done here rather than by `MSTLModel`
//! because that keeps the whole decomposition and the trend model's
//! per-point state for as long as the fit is used (≈ 180 KiB for four days
//! of one-minute samples), where forecasts need only the last cycle of each
//! seasonal component and the trend model fitted on the newest points
//! ([`ets::FIT_TAIL`]).

use augurs::mstl::stlrs::MstlParams;
use serde::{Deserialize, Serialize};

use super::ModelParams;
use super::compact::F32s;
use super::ets::{self, Following, SavedFollowing, fit_auto_ets, in_sample_errors};
use super::refit::{Fitted, Fitter, Refitting};

/// The MSTL fitter.
pub struct MstlFitter;

/// MSTL run online (see `refit`).
pub type Mstl = Refitting<MstlFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Mstl {
    Refitting::new(params, MstlFitter)
}

struct MstlFitted {
    /// ETS on the newest part of the seasonally adjusted series.
    trend: Following,
    /// The last cycle of each seasonal component, in time order.
    cycles: Vec<Vec<f32>>,
    /// Points taken since the fit (where in each cycle the next one is).
    taken: usize,
    /// One-step errors, until taken.
    residuals: Vec<f64>,
}

impl Fitter for MstlFitter {
    fn name(&self) -> &'static str {
        "mstl"
    }

    fn seasonal(&self) -> bool {
        true
    }

    fn min_len(&self, seasons: &[usize]) -> usize {
        // Two full cycles of the longest season (STL needs them), or what
        // ETS needs.
        (2 * seasons.iter().max().copied().unwrap_or(0) + 1).max(10)
    }

    fn fit(
        &self,
        y: &[f64],
        seasons: &[usize],
        form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String> {
        let mut periods: Vec<usize> = seasons
            .iter()
            .copied()
            .filter(|p| 2 * p < y.len())
            .collect();
        periods.sort_unstable();
        periods.dedup();
        if periods.is_empty() {
            return ets::EtsFitter.fit(y, &[], form);
        }
        // Single precision, as augurs' MSTLModel decomposes.
        let y32: Vec<f32> = y.iter().map(|v| *v as f32).collect();
        let fit = MstlParams::new()
            .fit(&y32, &periods)
            .map_err(|e| e.to_string())?;
        let adjusted: Vec<f64> = fit
            .trend()
            .iter()
            .zip(fit.remainder())
            .map(|(t, r)| f64::from(t + r))
            .collect();
        let from = adjusted.len() - ets::tail(&adjusted).len();
        let trend = fit_auto_ets(&adjusted[from..], form)?;
        let seasonal = fit.seasonal();
        if seasonal.len() != periods.len() || seasonal.iter().any(|c| c.len() != y.len()) {
            return Err("decomposition has the wrong shape".into());
        }
        let fitted = ets::in_sample(&trend, &adjusted[from..]);
        let residuals = residuals(fitted.as_deref(), &adjusted, from, &periods, seasonal);
        let cycles = periods
            .iter()
            .zip(seasonal)
            .map(|(p, c)| c[c.len() - p..].to_vec())
            .collect();
        Ok(Box::new(MstlFitted {
            trend: Following::new(trend, &adjusted[from..], fitted.as_deref()),
            cycles,
            taken: 0,
            residuals,
        }))
    }

    /// An MSTL fit, or the ETS fit of a series without seasons.
    fn restore(&self, saved: serde_json::Value) -> Result<Box<dyn Fitted>, String> {
        // A series without seasons was fitted by ETS alone, and saved so.
        if saved.get("cycles").is_none() {
            return ets::EtsFitter
                .restore(saved)
                .map_err(|ets| format!("mstl fit without seasons: {ets}"));
        }
        let s: SavedMstl = serde_json::from_value(saved).map_err(|e| format!("mstl fit: {e}"))?;
        if s.cycles.is_empty() || s.cycles.iter().any(|c| c.0.len() < 2) {
            return Err("mstl fit: a seasonal cycle shorter than two points".into());
        }
        if s.cycles.iter().flat_map(|c| &c.0).any(|v| !v.is_finite()) {
            return Err("mstl fit: a seasonal value is not finite".into());
        }
        if s.taken > super::refit::MAX_SAVED_COUNT {
            return Err(format!("mstl fit: {} points taken", s.taken));
        }
        Ok(Box::new(MstlFitted {
            trend: Following::restored(s.trend)?,
            cycles: s.cycles.into_iter().map(|c| c.0).collect(),
            taken: s.taken,
            residuals: Vec::new(),
        }))
    }
}

/// An [`MstlFitted`] as saved, when its trend model needs no augurs fit.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedMstl {
    trend: SavedFollowing,
    cycles: Vec<F32s>,
    taken: usize,
}

/// The in-sample errors from `from` on if each seasonal component had been
/// taken from one cycle earlier, as forecasts take it: the decomposition
/// fits each point's own seasonal value, so its plain in-sample errors are
/// too small for scores and bounds. Points within the first cycle of the
/// longest season have no earlier cycle and are left out.
fn residuals(
    trend_fitted: Option<&[f64]>,
    adjusted: &[f64],
    from: usize,
    periods: &[usize],
    seasonal: &[Vec<f32>],
) -> Vec<f64> {
    let mut e = in_sample_errors(trend_fitted, &adjusted[from..]);
    if e.is_empty() {
        return e;
    }
    for (p, comp) in periods.iter().zip(seasonal) {
        for (k, err) in e.iter_mut().enumerate() {
            let t = from + k;
            *err = match t.checked_sub(*p) {
                Some(earlier) => *err + f64::from(comp[t]) - f64::from(comp[earlier]),
                None => f64::NAN,
            };
        }
    }
    e.retain(|v| v.is_finite());
    e
}

impl Fitted for MstlFitted {
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        // Adding the seasonal values moves both bounds alike: the standard
        // errors are the trend model's.
        let (mut mean, se) = self.trend.predict(h)?;
        for cycle in &self.cycles {
            let next = cycle.iter().cycle().skip(self.taken % cycle.len());
            for (m, c) in mean.iter_mut().zip(next) {
                *m += f64::from(*c);
            }
        }
        Some((mean, se))
    }

    /// The point less its seasonal values goes to the trend model, when
    /// that can follow.
    fn update(&mut self, v: f64) -> bool {
        let adjusted = self
            .cycles
            .iter()
            .fold(v, |a, c| a - f64::from(c[self.taken % c.len()]));
        if !self.trend.update(adjusted) {
            return false;
        }
        self.taken += 1;
        true
    }

    fn stays_current(&self) -> bool {
        self.trend.follows()
    }

    fn residuals(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.residuals)
    }

    fn form(&self) -> Option<String> {
        Some(self.trend.form().to_string())
    }

    /// The trend model's (the decomposition is a smoother, not a fit).
    fn parameters(&self) -> usize {
        self.trend.parameters()
    }

    fn saved(&self) -> Option<serde_json::Value> {
        serde_json::to_value(SavedMstl {
            trend: self.trend.saved()?,
            cycles: self.cycles.iter().map(|c| F32s(c.clone())).collect(),
            taken: self.taken,
        })
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Point};

    #[test]
    fn forecasts_the_seasonal_shape() {
        let v = |i: i64| 20.0 + 5.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin();
        let h: Vec<Point> = (0..240)
            .map(|i| Point {
                t: i * 3_600_000,
                v: v(i) + if i % 3 == 0 { 0.2 } else { -0.1 },
            })
            .collect();
        let mut m = new(ModelParams::default());
        m.fit(&h).unwrap();
        assert_eq!(m.seasons(), &[24]);
        let f = m.forecast(24, 0.95).unwrap();
        for (k, mean) in f.mean.iter().enumerate() {
            assert!((mean - v(240 + k as i64)).abs() < 1.0, "step {k}: {mean}");
            assert!(f.lower[k] < *mean && *mean < f.upper[k]);
        }
    }

    #[test]
    fn follows_a_wandering_level_between_refits() {
        // A daily shape on random walks: forecasts from the newest point
        // miss the next ten by less than the fit's own, read ten steps
        // further out (summed over 20 walks; a random walk's error grows
        // with the steps ahead).
        let mut state = 12_345_u64;
        let (mut following, mut anchored) = (0.0, 0.0);
        for _ in 0..20 {
            let mut walk = 50.0;
            let y: Vec<f64> = (0..320)
                .map(|i| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    walk += ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0;
                    walk + 6.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                })
                .collect();
            let mut fitted = MstlFitter.fit(&y[..300], &[24], None).unwrap();
            assert!(fitted.stays_current());
            let from_fit = fitted.predict(20).unwrap().0;
            for v in &y[300..310] {
                assert!(fitted.update(*v));
            }
            let from_newest = fitted.predict(10).unwrap().0;
            let miss =
                |f: &[f64]| -> f64 { f.iter().zip(&y[310..]).map(|(a, b)| (a - b).powi(2)).sum() };
            following += miss(&from_newest);
            anchored += miss(&from_fit[10..]);
        }
        assert!(following < 0.8 * anchored, "{following} vs {anchored}");
    }

    #[test]
    fn first_steps_do_not_depend_on_the_horizon() {
        // What lets `refit` keep one prediction and slice it.
        let y: Vec<f64> = (0..300)
            .map(|i| {
                30.0 + 0.05 * i as f64
                    + 4.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + if i % 7 < 3 { 0.4 } else { -0.3 }
            })
            .collect();
        let fits = [
            MstlFitter.fit(&y, &[24], None).unwrap(),
            super::super::ets::EtsFitter.fit(&y, &[], None).unwrap(),
        ];
        for f in fits {
            let (mean, se) = f.predict(super::super::refit::PREDICTED).unwrap();
            for h in [1, 2, 17, 48, 100] {
                let (m, s) = f.predict(h).unwrap();
                assert_eq!(m[..], mean[..h]);
                assert_eq!(s[..], se[..h]);
            }
        }
    }
}
