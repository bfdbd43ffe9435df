//! What forecasters share about their errors: a robust scale for anomaly
//! scores (outliers in the history do not widen it), checked against the
//! errors' own distribution so that a score keeps its meaning on
//! heavy-tailed series, and an empirical quantile for bounds (heavy tails
//! widen them, so they keep their level).

use super::calibrate::Calibration;
use super::window::{median, spread_floor};
use super::{score_from_z, z_for_level};

/// Errors below this count give bounds from the normal quantile of their
/// standard deviation; at or above it, from their empirical quantile.
const EMPIRICAL_FROM: usize = 30;

/// Errors from this count on also score by their own distribution: at a
/// hundred, the ten largest shape the tail.
const OWN_FROM: usize = 100;

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
    /// The distribution of the absolute errors (rank, then an
    /// exponential tail), when there are enough of them.
    own: Option<Calibration>,
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
                own: None,
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
        let own = (abs.len() >= OWN_FROM).then(|| Calibration::from_sorted(&abs));
        Errors {
            sigma: sigma.max(floor),
            abs,
            rms: rms.max(floor),
            own,
        }
    }

    /// Score of an error `e` whose scale is `growth` times the one-step
    /// scale: the normal probability of a smaller deviation, but never
    /// more than the errors' own distribution gives (their rank, then an
    /// exponential tail fitted to the largest tenth: peaks over threshold,
    /// as the learned detectors are calibrated), so that 0.999 stays about
    /// one error in a thousand on heavy-tailed noise, where the normal
    /// shape behind `sigma` would call several in a hundred that rare.
    /// Errors from a normal distribution keep about their normal score
    /// where alarms are raised.
    pub fn score(&self, e: f64, growth: f64) -> f64 {
        let growth = growth.max(1.0);
        let normal = score_from_z(e / (self.sigma * growth));
        match &self.own {
            Some(own) if e.is_finite() => normal.min(own.score(e.abs() / growth)),
            _ => normal,
        }
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

    /// `n` evenly spread quantiles of a distribution given by its inverse
    /// CDF, signs alternating (deterministic "samples").
    fn quantiles(n: usize, offset: f64, inv: impl Fn(f64) -> f64) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let p = (i as f64 + offset) / n as f64;
                if i % 2 == 0 { inv(p) } else { -inv(p) }
            })
            .collect()
    }

    #[test]
    fn scores_keep_their_rate_on_heavy_tailed_errors() {
        // Laplace errors (|e| exponential with mean 1): the normal shape
        // behind the robust sigma calls 7 % of them 1-in-100 events.
        let laplace = |p: f64| -(1.0 - p).ln();
        let fit = Errors::new(&quantiles(1000, 0.5, laplace), 10.0);
        let fresh = quantiles(5000, 0.3, laplace);
        let rate = |s: &Errors, level: f64| {
            fresh.iter().filter(|e| s.score(**e, 1.0) >= level).count() as f64 / 5000.0
        };
        let normal_only = fresh
            .iter()
            .filter(|e| score_from_z(**e / fit.sigma) >= 0.99)
            .count() as f64
            / 5000.0;
        assert!(normal_only > 0.05, "{normal_only}");
        let r99 = rate(&fit, 0.99);
        let r999 = rate(&fit, 0.999);
        assert!((0.005..0.02).contains(&r99), "{r99}");
        assert!((0.0003..0.003).contains(&r999), "{r999}");
        // Far beyond anything seen, an error still scores as such.
        assert!(fit.score(30.0, 1.0) > 0.999_99);
        // Growth widens the scale the tail is judged on.
        assert!(fit.score(8.0, 2.0) < fit.score(8.0, 1.0));
    }

    #[test]
    fn normal_errors_keep_normal_scores_where_alarms_are() {
        // Normal errors: the tail never raises a score above the normal
        // one, and lowers it only a little where alarms are raised.
        let normal = |p: f64| crate::model::calibrate::z_from_score(p);
        let fit = Errors::new(&quantiles(1000, 0.5, normal), 10.0);
        for z in [2.0, 3.0, 4.0, 5.0] {
            let s = fit.score(z * fit.sigma, 1.0);
            assert!(s <= score_from_z(z) + 1e-12);
            assert!(s >= score_from_z(z) - 0.01, "z {z}: {s}");
        }
        assert!(fit.score(4.0 * fit.sigma, 1.0) >= 0.999);
        // Too few errors for a tail: the normal score.
        let few = Errors::new(&quantiles(50, 0.5, normal), 10.0);
        assert_eq!(few.score(3.0, 1.0), score_from_z(3.0 / few.sigma));
    }
}
