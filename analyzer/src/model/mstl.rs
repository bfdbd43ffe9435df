//! `mstl`: multiple seasonal-trend decomposition by Loess (augurs' MSTL),
//! with AutoETS forecasting the seasonally adjusted series and each
//! seasonal component repeated. The seasons come from the `season`
//! parameter or are detected (daily and weekly, say). With no seasonality
//! found it is ETS on the series itself.

use augurs::ets::AutoETS;
use augurs::mstl::{FittedMSTLModel, MSTLModel};
use augurs::{Fit, Predict};

use super::ModelParams;
use super::ets::in_sample_errors;
use super::refit::{Fitted, Fitter, Refitting, SE_LEVEL, se_from};

/// The augurs MSTL fitter.
pub struct MstlFitter;

/// MSTL run online (see `refit`).
pub type Mstl = Refitting<MstlFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Mstl {
    Refitting::new(params, MstlFitter)
}

struct MstlFitted {
    model: FittedMSTLModel,
    periods: Vec<usize>,
    /// The fitted data, until the residuals are taken.
    y: Vec<f64>,
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

    fn fit(&self, y: &[f64], seasons: &[usize]) -> Result<Box<dyn Fitted>, String> {
        let mut periods: Vec<usize> = seasons
            .iter()
            .copied()
            .filter(|p| 2 * p < y.len())
            .collect();
        periods.sort_unstable();
        periods.dedup();
        if periods.is_empty() {
            return super::ets::EtsFitter.fit(y, &[]);
        }
        let model = MSTLModel::new(periods.clone(), AutoETS::non_seasonal().into_trend_model())
            .fit(y)
            .map_err(|e| e.to_string())?;
        Ok(Box::new(MstlFitted {
            model,
            periods,
            y: y.to_vec(),
        }))
    }
}

impl Fitted for MstlFitted {
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let f = self.model.predict(h, SE_LEVEL).ok()?;
        if f.point.len() != h || f.point.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let se = se_from(&f, h, SE_LEVEL);
        Some((f.point, se))
    }

    /// The in-sample errors if each seasonal component had been taken
    /// from one cycle earlier, as forecasts take it: the decomposition fits
    /// each point's own seasonal value, so its plain in-sample errors are
    /// too small for scores and bounds.
    fn residuals(&mut self) -> Vec<f64> {
        let y = std::mem::take(&mut self.y);
        let mut e = in_sample_errors(self.model.predict_in_sample(None).ok(), &y);
        let seasonal = self.model.fit().seasonal();
        let longest = self.periods.iter().max().copied().unwrap_or(0);
        if e.len() != y.len() || seasonal.len() != self.periods.len() || longest >= e.len() {
            return e;
        }
        for (p, comp) in self.periods.iter().zip(seasonal) {
            if comp.len() != e.len() {
                return e;
            }
            for t in *p..e.len() {
                e[t] += f64::from(comp[t]) - f64::from(comp[t - p]);
            }
        }
        e.split_off(longest)
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
            MstlFitter.fit(&y, &[24]).unwrap(),
            super::super::ets::EtsFitter.fit(&y, &[]).unwrap(),
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
