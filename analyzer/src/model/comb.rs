//! `comb`: the mean of the Theta method's and MSTL's forecasts (MSTL is
//! ETS alone on a series without a season). Averaging two sound but
//! different methods is a forecast combination, the lesson of the M3 and M4
//! competitions: it is rarely the best method on one series and rarely
//! far from it, where picking one method by a short backtest is often
//! wrong. On M3 its mean sMAPE is below both members' on the yearly and
//! quarterly series, equal to Theta's on the monthly ones and between the
//! two on the others (README, "Forecasting competitions").
//! `auto` uses it where the history is too short for its backtest and
//! lets the backtest choose it otherwise.
//!
//! Run online by `refit`. Both members follow every point between
//! refits; an MSTL whose trend model's weights could not be read back
//! (see `ets::Follower`) stays anchored at the refit, and its forecasts
//! are read that many steps further out.

use serde::{Deserialize, Serialize};

use super::ModelParams;
use super::mstl::MstlFitter;
use super::refit::{Fitted, Fitter, PREDICTED, Refitting};
use super::theta::ThetaFitter;

/// The combination's fitter: fits both members on the same data.
pub struct CombFitter;

/// The combination run online (see `refit`).
pub type Comb = Refitting<CombFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Comb {
    Refitting::new(params, CombFitter)
}

struct CombFitted {
    theta: Box<dyn Fitted>,
    /// None when the series is too short for MSTL (or ETS): Theta alone.
    mstl: Option<Box<dyn Fitted>>,
    /// MSTL's means and standard errors from the fit, worked out once
    /// when it does not follow the points: Theta's following asks for a
    /// forecast after every point.
    mstl_ahead: Option<(Vec<f64>, Vec<f64>)>,
    /// Points Theta has taken since the fit, which MSTL has not.
    mstl_behind: usize,
}

impl Fitter for CombFitter {
    fn name(&self) -> &'static str {
        "comb"
    }

    fn seasonal(&self) -> bool {
        true
    }

    fn min_len(&self, seasons: &[usize]) -> usize {
        ThetaFitter.min_len(seasons)
    }

    /// `form` is MSTL's (Theta has none). A series too short for MSTL
    /// gets Theta alone.
    fn fit(
        &self,
        y: &[f64],
        seasons: &[usize],
        form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String> {
        let mstl = if y.len() >= MstlFitter.min_len(seasons) {
            MstlFitter.fit(y, seasons, form).ok()
        } else {
            None
        };
        Ok(CombFitted::of(ThetaFitter.fit(y, seasons, None)?, mstl, 0))
    }

    fn restore(&self, saved: serde_json::Value) -> Result<Box<dyn Fitted>, String> {
        let s: SavedComb = serde_json::from_value(saved).map_err(|e| format!("comb fit: {e}"))?;
        if s.mstl_behind > super::refit::MAX_SAVED_COUNT {
            return Err(format!("comb fit: MSTL {} points behind", s.mstl_behind));
        }
        let mstl = s.mstl.map(|m| MstlFitter.restore(m)).transpose()?;
        Ok(CombFitted::of(
            ThetaFitter.restore(s.theta)?,
            mstl,
            s.mstl_behind,
        ))
    }
}

/// A [`CombFitted`] as saved: its members' saved fits.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedComb {
    theta: serde_json::Value,
    #[serde(default)]
    mstl: Option<serde_json::Value>,
    #[serde(default)]
    mstl_behind: usize,
}

impl CombFitted {
    /// The combination of the members, MSTL `mstl_behind` points behind
    /// Theta.
    fn of(
        theta: Box<dyn Fitted>,
        mstl: Option<Box<dyn Fitted>>,
        mstl_behind: usize,
    ) -> Box<dyn Fitted> {
        Box::new(CombFitted {
            theta,
            mstl_ahead: mstl
                .as_ref()
                .filter(|m| !m.stays_current())
                .and_then(|m| m.predict(2 * PREDICTED)),
            mstl,
            mstl_behind,
        })
    }
}

impl Fitted for CombFitted {
    /// Means averaged; standard errors too (the members' errors are
    /// strongly correlated, so the mean of their spreads is close to the
    /// spread of the mean and never narrower than it).
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let (tm, ts) = self.theta.predict(h)?;
        let Some(mstl) = &self.mstl else {
            return Some((tm, ts));
        };
        let skip = self.mstl_behind;
        let asked;
        let (mm, ms): (&[f64], &[f64]) = match &self.mstl_ahead {
            Some((m, s)) if skip + h <= m.len() => (m, s),
            _ => {
                asked = mstl.predict(skip + h)?;
                (&asked.0, &asked.1)
            }
        };
        let mean = tm.iter().zip(&mm[skip..]).map(|(a, b)| 0.5 * (a + b));
        let se = ts.iter().zip(&ms[skip..]).map(|(a, b)| 0.5 * (a + b));
        Some((mean.collect(), se.collect()))
    }

    /// The mean forecast's one-step error is the mean of the members'
    /// errors; they are aligned at the newest point (a member may leave
    /// out the first few).
    fn residuals(&mut self) -> Vec<f64> {
        let t = self.theta.residuals();
        let Some(mstl) = &mut self.mstl else {
            return t;
        };
        let m = mstl.residuals();
        let n = t.len().min(m.len());
        t[t.len() - n..]
            .iter()
            .zip(&m[m.len() - n..])
            .map(|(a, b)| 0.5 * (a + b))
            .collect()
    }

    fn form(&self) -> Option<String> {
        self.mstl.as_ref().and_then(|m| m.form())
    }

    /// The larger member's count (their errors are averaged, not their
    /// parameters added).
    fn parameters(&self) -> usize {
        let m = self.mstl.as_ref().map_or(0, |m| m.parameters());
        self.theta.parameters().max(m)
    }

    fn update(&mut self, v: f64) -> bool {
        if !self.theta.update(v) {
            return false;
        }
        if let Some(m) = &mut self.mstl {
            if m.update(v) {
                // Worked out from the fit; MSTL now forecasts from `v`.
                self.mstl_ahead = None;
            } else {
                self.mstl_behind += 1;
            }
        }
        true
    }

    /// When MSTL does: Theta's level follows every point, and its drift
    /// and seasonal indices (which wait for a refit) carry half the weight.
    /// (Not measured apart on labelled data: the quality suite's hourly
    /// seasons of 24 points refit every season at either pace.)
    fn stays_current(&self) -> bool {
        self.mstl.as_ref().is_some_and(|m| m.stays_current())
    }

    /// When both members can be saved.
    fn saved(&self) -> Option<serde_json::Value> {
        let mstl = match &self.mstl {
            Some(m) => Some(m.saved()?),
            None => None,
        };
        serde_json::to_value(SavedComb {
            theta: self.theta.saved()?,
            mstl,
            mstl_behind: self.mstl_behind,
        })
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Point};

    fn seasonal(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t: i as i64 * 3_600_000,
                v: 100.0
                    + 0.05 * i as f64
                    + 8.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + ((i * 7919) % 11) as f64 / 11.0,
            })
            .collect()
    }

    #[test]
    fn forecasts_the_mean_of_theta_and_mstl() {
        let h = seasonal(300);
        let mut comb = new(ModelParams::default());
        let mut theta = crate::model::theta::new(ModelParams::default());
        let mut mstl = crate::model::mstl::new(ModelParams::default());
        for m in [&mut comb as &mut dyn Model, &mut theta, &mut mstl] {
            m.fit(&h).unwrap();
        }
        let (c, t, m) = (
            comb.forecast(24, 0.95).unwrap(),
            theta.forecast(24, 0.95).unwrap(),
            mstl.forecast(24, 0.95).unwrap(),
        );
        for k in 0..24 {
            assert!((c.mean[k] - 0.5 * (t.mean[k] + m.mean[k])).abs() < 1e-9);
            assert!(c.lower[k] < c.mean[k] && c.mean[k] < c.upper[k]);
        }
    }

    #[test]
    fn both_members_follow_between_refits() {
        let h = seasonal(330);
        let mut comb = new(ModelParams::default());
        let mut mstl = crate::model::mstl::new(ModelParams::default());
        comb.fit(&h[..300]).unwrap();
        mstl.fit(&h[..300]).unwrap();
        // Fewer points than a refit period: both members take them.
        for p in &h[300..310] {
            comb.update(*p);
            mstl.update(*p);
        }
        let (c, m) = (
            comb.forecast(12, 0.95).unwrap(),
            mstl.forecast(12, 0.95).unwrap(),
        );
        let mut theta = crate::model::theta::new(ModelParams::default());
        theta.fit(&h[..300]).unwrap();
        for p in &h[300..310] {
            theta.update(*p);
        }
        let t = theta.forecast(12, 0.95).unwrap();
        for k in 0..12 {
            assert!((c.mean[k] - 0.5 * (t.mean[k] + m.mean[k])).abs() < 1e-9);
        }
    }
}
