//! What forecasters share about their errors: a robust scale for anomaly
//! scores (outliers in the history do not widen it), checked against the
//! errors' own distribution so that a score keeps its meaning on
//! heavy-tailed series, and an empirical quantile for bounds (heavy tails
//! widen them, so they keep their level).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::calibrate::Calibration;
use super::compact::F32s;
use super::window::{median_and_robust_sigma, spread_floor};
use super::{score_from_z, z_for_level};

/// Online errors kept (the newest).
const ONLINE_ERRORS: usize = 240;

/// Online errors needed before they count.
const ONLINE_FROM: usize = 30;

/// Held-out errors from which bounds read them even while they are too
/// few to count for scores: the normal quantile of their root mean
/// square (see [`OnlineErrors::half_width`]). Ten are the errors of four
/// rolling origins of a short yearly series.
const FEW_FROM: usize = 10;

/// The newest errors whose spread, when it has clearly risen above the
/// kept errors' scale, becomes the scale scores are judged on: a noisier
/// regime is then judged against its own noise after a few dozen points,
/// not against the calmer past for the whole of [`ONLINE_ERRORS`]. A
/// median of 48 is not moved much by a few outliers among them.
const RECENT: usize = 48;

/// How far the newest errors' spread must rise above the scale before it
/// counts: two standard errors of a MAD-based estimate from [`RECENT`]
/// normal errors (its variance is about 1.36 σ²/n), so that chance
/// fluctuations of a steady series do not lower its scores.
fn clear_rise() -> f64 {
    1.0 + 2.0 * (1.36 / RECENT as f64).sqrt()
}

/// Errors below this count give bounds from the normal quantile of their
/// standard deviation; at or above it, from their empirical quantile.
const EMPIRICAL_FROM: usize = 30;

/// Errors from this count on also score by their own distribution: at a
/// hundred, the ten largest shape the tail.
const OWN_FROM: usize = 100;

/// How much wider a bound at `level` from `n` in-sample errors is made
/// when `k` parameters were fitted to them: by sqrt(n / (n − k)) (their
/// spread understates the noise by that much) and by the Student-t
/// quantile with n − k degrees of freedom over the normal one (the spread
/// is itself an estimate), as statsforecast's AutoETS does. Close to 1 once
/// n is in the hundreds; on a 20-point yearly series with five parameters
/// about 1.3.
pub fn small_sample_widening(n: usize, k: usize, level: f64) -> f64 {
    let n = n as f64;
    let dof = (n - k as f64).max(1.0);
    let inflation = (n / dof).sqrt().max(1.0);
    let z = z_for_level(level);
    let t_over_z = if z > 0.0 {
        (super::arima::fit::t_quantile(z, dof) / z).max(1.0)
    } else {
        1.0
    };
    inflation * t_over_z
}

/// Errors of a forecaster on its history (one step ahead, or one season
/// ahead for the seasonal naive), summarised. Saved with a fit that is
/// saved whole (see `refit`), as the summary itself: the errors it came
/// from are not kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedErrors", into = "SavedErrors")]
pub struct Errors {
    /// Robust standard deviation: 1.4826 × median absolute error (centred).
    pub sigma: f64,
    /// Sorted absolute errors, in single precision: bounds read one of
    /// them, and a model keeps thousands per series (the engine keeps a
    /// model per series), so half the memory matters more than digits
    /// beyond the seventh.
    abs: Vec<f32>,
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
        let mut finite: Vec<f64> = errors.iter().copied().filter(|e| e.is_finite()).collect();
        let floor = spread_floor(level);
        if finite.is_empty() {
            return Errors {
                sigma: floor,
                abs: Vec::new(),
                rms: floor,
                own: None,
            };
        }
        let rms = (finite.iter().map(|e| e * e).sum::<f64>() / finite.len() as f64).sqrt();
        // Sorts `finite`, which only the absolute errors (sorted again) use next.
        let mut sigma = median_and_robust_sigma(&mut finite).1;
        if sigma == 0.0 {
            sigma = rms;
        }
        let mut abs: Vec<f64> = finite.iter().map(|e| e.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let own = (abs.len() >= OWN_FROM).then(|| Calibration::from_sorted(&abs));
        Errors {
            sigma: sigma.max(floor),
            abs: abs.iter().map(|e| (*e as f32).min(f32::MAX)).collect(),
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

    /// Lets go of the sorted errors, which only bounds read: for a model
    /// kept only to score. Bounds then take the normal shape of the
    /// root mean square error, as with few errors.
    pub fn forget_sorted(&mut self) {
        self.abs = Vec::new();
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
            return f64::from(self.abs[n - 1]).max(z_for_level(level) * self.rms);
        }
        f64::from(self.abs[k.max(1) - 1]).max(spread_floor(self.rms))
    }
}

/// [`Errors`] as saved: the sorted errors as base64 bytes.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedErrors {
    sigma: f64,
    rms: f64,
    abs: F32s,
    own: Option<Calibration>,
}

impl From<Errors> for SavedErrors {
    fn from(e: Errors) -> SavedErrors {
        SavedErrors {
            sigma: e.sigma,
            rms: e.rms,
            abs: F32s(e.abs),
            own: e.own,
        }
    }
}

impl TryFrom<SavedErrors> for Errors {
    type Error = String;

    /// Refuses what [`Errors::new`] never makes: a scale that is not
    /// positive, errors that are negative, not finite or out of order.
    fn try_from(s: SavedErrors) -> Result<Errors, String> {
        if !(s.sigma > 0.0 && s.sigma.is_finite() && s.rms > 0.0 && s.rms.is_finite()) {
            return Err(format!("bad error scale: sigma {}, rms {}", s.sigma, s.rms));
        }
        let abs = s.abs.0;
        if abs.iter().any(|e| !(e.is_finite() && *e >= 0.0)) || !abs.is_sorted() {
            return Err("sorted errors are not finite, positive and in order".into());
        }
        Ok(Errors {
            sigma: s.sigma,
            abs,
            rms: s.rms,
            own: s.own,
        })
    }
}

/// A forecaster's errors on points it had not seen when they came (held
/// out at fit time, then every new point's), in units of its one-step
/// error, newest last: kept across refits, saved with the model, and
/// summarised for scores and bounds.
#[derive(Debug, Clone, Default)]
pub struct OnlineErrors {
    kept: VecDeque<f64>,
    summary: Option<Errors>,
    /// Robust spread of the newest [`RECENT`] errors.
    recent: Option<f64>,
}

impl OnlineErrors {
    /// Errors restored from saved state (non-finite ones dropped, the
    /// newest [`ONLINE_ERRORS`] kept); `level` as for [`Errors::new`].
    pub fn restored(errors: Vec<f64>, level: f64) -> OnlineErrors {
        let mut o = OnlineErrors::default();
        o.extend(errors, level);
        o
    }

    /// Whether too few errors are kept for them to count yet (a fit then
    /// seeds them with held-out ones).
    pub fn too_few(&self) -> bool {
        self.kept.len() < ONLINE_FROM
    }

    /// Whether bounds from `n` errors read the normal quantile of their
    /// spread (enough to read, too few for their empirical quantile): a
    /// caller that knows how many independent draws they came from widens
    /// them for that count (see `refit`'s seeding).
    pub fn read_as_normal(n: usize) -> bool {
        (FEW_FROM..ONLINE_FROM).contains(&n)
    }

    /// Adds one error.
    pub fn push(&mut self, e: f64, level: f64) {
        self.extend([e], level);
    }

    /// Adds errors, oldest first.
    pub fn extend(&mut self, errors: impl IntoIterator<Item = f64>, level: f64) {
        self.kept
            .extend(errors.into_iter().filter(|e| e.is_finite()));
        while self.kept.len() > ONLINE_ERRORS {
            self.kept.pop_front();
        }
        self.summarise(level);
    }

    /// Forgets every error.
    pub fn clear(&mut self) {
        *self = OnlineErrors::default();
    }

    /// The errors kept, oldest first, for saving.
    pub fn saved(&self) -> Vec<f64> {
        self.kept.iter().copied().collect()
    }

    /// Summarises the errors again, with `level` as the series' typical
    /// magnitude (the spread floor's reference; adding errors does this).
    pub fn summarise(&mut self, level: f64) {
        self.summary = (self.kept.len() >= ONLINE_FROM).then(|| {
            let e: Vec<f64> = self.kept.iter().copied().collect();
            Errors::new(&e, level)
        });
        self.recent = (self.kept.len() >= RECENT).then(|| {
            let mut e: Vec<f64> = self
                .kept
                .range(self.kept.len() - RECENT..)
                .copied()
                .collect();
            median_and_robust_sigma(&mut e).1
        });
    }

    /// The errors scores are judged on: the fit's, or these when wider.
    pub fn scale<'a>(&'a self, fit: &'a Errors) -> &'a Errors {
        match &self.summary {
            Some(o) if o.sigma > fit.sigma => o,
            _ => fit,
        }
    }

    /// Score of a new error `e` (see [`Errors::score`]) against
    /// [`OnlineErrors::scale`], or against the newest errors' spread
    /// where that has clearly risen above it.
    pub fn score(&self, fit: &Errors, e: f64, growth: f64) -> f64 {
        let errors = self.scale(fit);
        let risen = match self.recent {
            Some(r) if r > errors.sigma * clear_rise() => r / errors.sigma,
            _ => 1.0,
        };
        errors.score(e / risen, growth)
    }

    /// Half-width of a one-step bound at `level`: the fit's (`fit_half`),
    /// or these errors' when wider. From [`FEW_FROM`] errors on, before
    /// they count for scores, their normal quantile is used: a short
    /// history's few held-out errors say more about its forecasts than
    /// its in-sample ones (on the M3 and Tourism yearly series shorter
    /// than 15 points, 95 % coverage 0.84 and 0.72 with the in-sample
    /// errors alone; README, "Forecasting competitions").
    pub fn half_width(&self, fit_half: f64, level: f64) -> f64 {
        match &self.summary {
            Some(o) => o.half_width(level).max(fit_half),
            None if self.kept.len() >= FEW_FROM => {
                let e: Vec<f64> = self.kept.iter().copied().collect();
                Errors::new(&e, 0.0).half_width(level).max(fit_half)
            }
            None => fit_half,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_errors_load_as_they_were_and_impossible_ones_are_refused() {
        let e: Vec<f64> = (0..300).map(|i| ((i * 7919) % 101) as f64 - 50.0).collect();
        let errors = Errors::new(&e, 10.0);
        let saved = serde_json::to_value(&errors).unwrap();
        let back: Errors = serde_json::from_value(saved.clone()).unwrap();
        assert_eq!(back, errors);
        assert!(back.own.is_some() && back.abs.len() == 300);
        let mut bad = saved.clone();
        bad["sigma"] = serde_json::json!(0.0);
        assert!(serde_json::from_value::<Errors>(bad).is_err());
        // Out of order.
        let mut bad = saved;
        bad["abs"] = serde_json::json!(F32s::text(&[2.0, 1.0]));
        let err = serde_json::from_value::<Errors>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in order"), "{err}");
    }

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

    #[test]
    fn bounds_read_few_errors_as_a_normal_quantile() {
        let mut online = OnlineErrors::default();
        online.extend([2.0, -2.0, 2.0, -2.0, 2.0, -2.0, 2.0, -2.0, 2.0], 0.0);
        // Nine: too few to read, the fit's half-width stands.
        assert_eq!(online.half_width(1.0, 0.95), 1.0);
        online.push(-2.0, 0.0);
        // Ten: their normal quantile (root mean square 2), not yet
        // counted for scores.
        assert!(online.too_few());
        assert!((online.half_width(1.0, 0.95) - 2.0 * z_for_level(0.95)).abs() < 1e-9);
        assert!(OnlineErrors::read_as_normal(10) && !OnlineErrors::read_as_normal(30));
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
    fn a_noisier_regime_is_judged_against_its_own_noise() {
        let normal = |p: f64| crate::model::calibrate::z_from_score(p);
        // Normal errors in an order where every stretch is a fair sample.
        let sorted = quantiles(ONLINE_ERRORS, 0.5, normal);
        let calm: Vec<f64> = (0..ONLINE_ERRORS)
            .map(|i| sorted[(i * 97) % ONLINE_ERRORS])
            .collect();
        let fit = Errors::new(&calm, 10.0);
        let mut online = OnlineErrors::default();
        online.extend(calm.iter().copied(), 10.0);
        // A 5-sigma error is an alarm in the calm regime.
        assert!(online.score(&fit, 5.0, 1.0) > 0.999);
        // The noise quadruples: for the first of those errors 5 is still
        // rare; once RECENT of them are in, it is a 1.25-sigma error.
        let noisy: Vec<f64> = (0..RECENT).map(|i| 4.0 * calm[i * 5]).collect();
        online.extend(noisy[..RECENT / 4].iter().copied(), 10.0);
        assert!(online.score(&fit, 5.0, 1.0) > 0.99);
        online.extend(noisy[RECENT / 4..].iter().copied(), 10.0);
        let s = online.score(&fit, 5.0, 1.0);
        assert!(s < 0.9, "{s}");
        // The raised scale serves scores only: bounds keep the kept
        // errors' quantile, and a few outliers among the newest do not
        // raise it.
        assert_eq!(
            online.half_width(0.0, 0.95),
            online.scale(&fit).half_width(0.95)
        );
        let mut spiky = OnlineErrors::default();
        let mut e = calm.clone();
        for k in (0..RECENT).step_by(16) {
            e[ONLINE_ERRORS - 1 - k] = 50.0;
        }
        spiky.extend(e, 10.0);
        // Three spikes among the newest 48 do not raise the scale.
        assert_eq!(
            spiky.score(&fit, 5.0, 1.0),
            spiky.scale(&fit).score(5.0, 1.0)
        );
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
