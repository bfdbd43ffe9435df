//! `ets`: exponential smoothing (error, trend, damping chosen by AICc among
//! additive and multiplicative forms) from augurs' `AutoETS`. augurs does
//! not implement seasonal ETS, so this model is non-seasonal: for seasonal
//! series use `mstl` (ETS on the seasonally adjusted series) or `auto`.

use augurs::ets::{AutoETS, FittedAutoETS};
use augurs::{Fit, Predict};

use super::ModelParams;
use super::refit::{Fitted, Fitter, Refitting, SE_LEVEL, se_from};

/// The augurs AutoETS fitter.
pub struct EtsFitter;

/// ETS run online (see `refit`).
pub type Ets = Refitting<EtsFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Ets {
    Refitting::new(params, EtsFitter)
}

struct EtsFitted {
    model: FittedAutoETS,
    /// The fitted data, until the residuals are taken.
    y: Vec<f64>,
}

impl Fitter for EtsFitter {
    fn name(&self) -> &'static str {
        "ets"
    }

    fn seasonal(&self) -> bool {
        false
    }

    fn min_len(&self, _seasons: &[usize]) -> usize {
        // AutoETS needs more points than parameters (up to 5) plus 4.
        10
    }

    fn fit(&self, y: &[f64], _seasons: &[usize]) -> Result<Box<dyn Fitted>, String> {
        let model = AutoETS::non_seasonal().fit(y).map_err(|e| e.to_string())?;
        Ok(Box::new(EtsFitted {
            model,
            y: y.to_vec(),
        }))
    }
}

impl Fitted for EtsFitted {
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let f = self.model.predict(h, SE_LEVEL).ok()?;
        if f.point.len() != h || f.point.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let se = se_from(&f, h, SE_LEVEL);
        Some((f.point, se))
    }

    fn residuals(&mut self) -> Vec<f64> {
        let y = std::mem::take(&mut self.y);
        in_sample_errors(self.model.predict_in_sample(None).ok(), &y)
    }
}

/// `y` minus in-sample predictions (empty when there are none).
pub(super) fn in_sample_errors(f: Option<augurs::Forecast>, y: &[f64]) -> Vec<f64> {
    match f {
        Some(f) if f.point.len() == y.len() => y.iter().zip(&f.point).map(|(a, b)| a - b).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Point};

    #[test]
    fn follows_a_damped_trend_and_refits_online() {
        let h: Vec<Point> = (0..150)
            .map(|i| Point {
                t: i * 60_000,
                v: 100.0 + 0.5 * i as f64 + if i % 2 == 0 { 0.3 } else { -0.3 },
            })
            .collect();
        let mut m = new(ModelParams::default());
        m.fit(&h[..100]).unwrap();
        for p in &h[100..] {
            assert!(m.score(*p) < 0.99, "{p:?} scored {}", m.score(*p));
            m.update(*p);
        }
        let f = m.forecast(5, 0.95).unwrap();
        assert!((f.mean[0] - 175.0).abs() < 2.0, "{:?}", f.mean);
        assert_eq!(f.t[0], 150 * 60_000);
        assert!(
            m.score(Point {
                t: 150 * 60_000,
                v: 120.0
            }) > 0.999
        );
    }
}
