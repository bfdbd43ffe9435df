//! What forecasters share about their errors: a robust scale for anomaly
//! scores (outliers in the history do not widen it) and an empirical
//! quantile for bounds (heavy tails widen them, so they keep their level).

use super::window::{median, spread_floor};
use super::{score_from_z, z_for_level};

/// Errors below this count give bounds from the normal quantile of their
/// standard deviation; at or above it, from their empirical quantile.
const EMPIRICAL_FROM: usize = 30;

/// Errors of a forecaster on its history (one step ahead, or one season
/// ahead for the seasonal naive), summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct Errors {
    /// Robust standard deviation: 1.4826 × median absolute error (centred).
    pub sigma: f64,
    /// Sorted absolute errors.
    abs: Vec<f64>,
    /// Root mean square error.
    rms: f64,
}

impl Errors {
    /// Summarises `errors`; `level` is the series' typical magnitude, for
    /// the spread floor.
    pub fn new(errors: &[f64], level: f64) -> Errors {
        let finite: Vec<f64> = errors.iter().copied().filter(|e| e.is_finite()).collect();
        let floor = spread_floor(level);
        if finite.is_empty() {
            return Errors {
                sigma: floor,
                abs: Vec::new(),
                rms: floor,
            };
        }
        let mut c = finite.clone();
        let center = median(&mut c);
        let mut dev: Vec<f64> = finite.iter().map(|e| (e - center).abs()).collect();
        let mut sigma = 1.4826 * median(&mut dev);
        let rms = (finite.iter().map(|e| e * e).sum::<f64>() / finite.len() as f64).sqrt();
        if sigma == 0.0 {
            sigma = rms;
        }
        let mut abs: Vec<f64> = finite.iter().map(|e| e.abs()).collect();
        abs.sort_by(f64::total_cmp);
        Errors {
            sigma: sigma.max(floor),
            abs,
            rms: rms.max(floor),
        }
    }

    /// Score of an error `e` whose scale is `growth` times the one-step scale.
    pub fn score(&self, e: f64, growth: f64) -> f64 {
        score_from_z(e / (self.sigma * growth.max(1.0)))
    }

    /// Half-width of a bound at `level` for one step.
    pub fn half_width(&self, level: f64) -> f64 {
        let n = self.abs.len();
        if n < EMPIRICAL_FROM {
            return z_for_level(level) * self.rms;
        }
        // The (n+1)·level-th smallest, as split-conformal intervals take it.
        let k = ((n as f64 + 1.0) * level).ceil() as usize;
        if k > n {
            // Beyond the data: extrapolate with the normal shape.
            return self.abs[n - 1].max(z_for_level(level) * self.rms);
        }
        self.abs[k.max(1) - 1].max(spread_floor(self.rms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_scale_and_empirical_quantile() {
        let mut e: Vec<f64> = (0..100).map(|i| (i as f64 - 49.5) / 10.0).collect();
        e[0] = 1000.0;
        let s = Errors::new(&e, 10.0);
        assert!(s.sigma < 5.0, "{}", s.sigma);
        let hw = s.half_width(0.9);
        assert!((4.0..5.1).contains(&hw), "{hw}");
        assert!(s.score(0.0, 1.0) < 1e-9);
        let few = Errors::new(&[1.0, -1.0], 0.0);
        assert!((few.half_width(0.95) - 1.96).abs() < 0.01);
        assert_eq!(Errors::new(&[], 0.0).abs.len(), 0);
    }
}
