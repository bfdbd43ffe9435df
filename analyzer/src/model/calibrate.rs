//! Turning standardised deviations, and raw outputs by their own
//! distribution, into scores that mean the same on every series, and
//! levels into bound widths.

use serde::{Deserialize, Serialize};

/// Anomaly score in [0, 1] of a deviation of `z` standard deviations: the
/// probability mass of a normal distribution within ±|z|. A score of 0.99
/// means "as unusual as a 1-in-100 two-sided normal event" on any series.
pub fn score_from_z(z: f64) -> f64 {
    if z.is_nan() {
        return 0.0;
    }
    libm::erf(z.abs() / std::f64::consts::SQRT_2).clamp(0.0, 1.0)
}

/// The two-sided normal quantile for a coverage level (0.95 → 1.96),
/// found by bisection on [`score_from_z`] (exact enough for bounds).
pub fn z_for_level(level: f64) -> f64 {
    z_from_score(level.clamp(0.5, 0.999_999))
}

/// The deviation (in standard deviations) that scores `score`: the inverse
/// of [`score_from_z`], capped at 10.
pub fn z_from_score(level: f64) -> f64 {
    let level = level.clamp(0.0, 1.0);
    let (mut lo, mut hi) = (0.0_f64, 10.0_f64);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if score_from_z(mid) < level {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Maps a raw output (a learned detector's, or a forecaster's absolute
/// error; higher = more unusual) to a score in [0, 1] that reads like
/// [`score_from_z`]: on the training history the score is the empirical rank (uniform, as `score_from_z` of a
/// normal deviation is), and above the 90th percentile the tail is an
/// exponential fitted to the excesses (peaks over threshold), so outputs
/// beyond anything seen approach 1 smoothly instead of stopping at the
/// largest training rank. A score of 0.99 is then a 1-in-100 output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Quantiles of the training outputs at ranks 0, 1/(n-1), …, 1 (up to
    /// 101 of them).
    quantiles: Vec<f32>,
    /// Where the fitted tail starts (the 90th percentile).
    tail_from: f32,
    /// Mean excess over `tail_from` of the training outputs above it.
    tail_scale: f32,
}

/// Share of the training outputs in the fitted tail.
const TAIL_MASS: f64 = 0.1;

impl Calibration {
    /// Calibration from the raw outputs on training rows.
    pub fn new(raw: &[f64]) -> Calibration {
        let mut s: Vec<f64> = raw.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            s.push(0.0);
        }
        Calibration::from_sorted(&s)
    }

    /// As [`Calibration::new`], from outputs already finite and sorted
    /// ascending (not empty), as a forecaster's absolute errors are kept:
    /// no copy, no second sort (it runs on every point's online errors).
    pub fn from_sorted(s: &[f64]) -> Calibration {
        let q = |p: f64| -> f64 {
            let x = p * (s.len() - 1) as f64;
            let (i, f) = (x.floor() as usize, x - x.floor());
            let j = (i + 1).min(s.len() - 1);
            s[i] + f * (s[j] - s[i])
        };
        let k = s.len().min(101);
        let quantiles: Vec<f32> = (0..k)
            .map(|i| q(i as f64 / (k.max(2) - 1) as f64) as f32)
            .collect();
        let tail_from = q(1.0 - TAIL_MASS);
        // The outputs above the threshold: a suffix of the sorted ones.
        let above = &s[s.partition_point(|x| *x <= tail_from)..];
        let spread = (q(0.75) - q(0.25)).abs();
        let mean_excess =
            above.iter().map(|x| x - tail_from).sum::<f64>() / above.len().max(1) as f64;
        // A floor keeps a flat training distribution from turning every
        // tiny excess into an alarm.
        let floor = (0.05 * spread).max(1e-6 * tail_from.abs()).max(1e-9);
        Calibration {
            quantiles,
            tail_from: tail_from as f32,
            tail_scale: mean_excess.max(floor) as f32,
        }
    }

    /// The calibrated score of a raw output.
    pub fn score(&self, raw: f64) -> f64 {
        if !raw.is_finite() {
            return if raw == f64::INFINITY { 1.0 } else { 0.0 };
        }
        let tail_from = self.tail_from as f64;
        if raw > tail_from {
            let excess = (raw - tail_from) / self.tail_scale as f64;
            return (1.0 - TAIL_MASS * (-excess).exp()).clamp(0.0, 1.0);
        }
        let q = &self.quantiles;
        let n = q.len();
        if n < 2 {
            return 0.0;
        }
        // Rank by interpolation between the stored quantiles.
        let pos = q.partition_point(|x| (*x as f64) < raw);
        let rank = if pos == 0 {
            0.0
        } else if pos >= n {
            1.0
        } else {
            let (a, b) = (q[pos - 1] as f64, q[pos] as f64);
            let f = if b > a { (raw - a) / (b - a) } else { 1.0 };
            (pos - 1) as f64 + f.clamp(0.0, 1.0)
        };
        (rank / (n - 1) as f64).clamp(0.0, 1.0 - TAIL_MASS)
    }
}

/// Newest raw outputs kept to calibrate by.
const RECENT_KEEP: usize = 1000;
/// Outputs needed before [`Recent`] scores.
const RECENT_FROM: usize = 100;

/// A [`Calibration`] of a running detector's newest raw outputs (up to a
/// thousand), kept current as outputs arrive: what the output of a new
/// point means is judged by the outputs of the points just before it.
/// It recalibrates on every output (sorting a thousand numbers), so that
/// state restored from [`Recent::values`] scores exactly as before.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// The newest outputs, oldest first.
    values: Vec<f32>,
    calibration: Option<Calibration>,
}

impl Recent {
    /// Restores outputs saved by [`Recent::values`] (the newest are kept
    /// if there are too many; outputs that are not finite are dropped).
    pub fn restored(values: Vec<f32>) -> Recent {
        let mut r = Recent::default();
        let from = values.len().saturating_sub(RECENT_KEEP);
        r.values = values[from..]
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        r.recalibrate();
        r
    }

    /// The kept outputs, oldest first.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Takes a new output in.
    pub fn push(&mut self, raw: f64) {
        if !raw.is_finite() {
            return;
        }
        self.values.push(raw as f32);
        if self.values.len() > RECENT_KEEP {
            let extra = self.values.len() - RECENT_KEEP;
            self.values.drain(..extra);
        }
        self.recalibrate();
    }

    /// The calibrated score of `raw`; `None` while too few outputs are kept.
    pub fn score(&self, raw: f64) -> Option<f64> {
        self.calibration.as_ref().map(|c| c.score(raw))
    }

    /// True once it scores.
    pub fn ready(&self) -> bool {
        self.calibration.is_some()
    }

    fn recalibrate(&mut self) {
        self.calibration = (self.values.len() >= RECENT_FROM).then(|| {
            let v: Vec<f64> = self.values.iter().map(|x| *x as f64).collect();
            Calibration::new(&v)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_quantiles() {
        assert!((z_for_level(0.95) - 1.959964).abs() < 1e-5);
        assert!((z_for_level(0.99) - 2.575829).abs() < 1e-5);
        assert!((score_from_z(1.959964) - 0.95).abs() < 1e-6);
        assert_eq!(score_from_z(0.0), 0.0);
        assert_eq!(score_from_z(f64::NAN), 0.0);
        assert!(score_from_z(-40.0) <= 1.0);
        assert!((z_from_score(score_from_z(3.0)) - 3.0).abs() < 1e-6);
        assert!(z_from_score(0.0) < 1e-12);
    }

    #[test]
    fn calibration_is_a_rank_with_a_smooth_tail() {
        let raw: Vec<f64> = (0..1000).map(|i| i as f64 / 1000.0).collect();
        let c = Calibration::new(&raw);
        assert!((c.score(0.5) - 0.5).abs() < 0.02, "{}", c.score(0.5));
        assert!(c.score(-1.0) == 0.0);
        let at_max = c.score(0.999);
        assert!((0.97..0.995).contains(&at_max), "{at_max}");
        assert!(c.score(1.3) > 0.999);
        assert!(c.score(1.3) < 1.0 || c.score(5.0) == 1.0);
        // Monotone.
        let mut prev = 0.0;
        for i in 0..300 {
            let s = c.score(i as f64 / 200.0);
            assert!(s >= prev, "not monotone at {i}");
            prev = s;
        }
    }

    #[test]
    fn recent_outputs_calibrate_the_next_one() {
        let mut r = Recent::default();
        for i in 0..99 {
            r.push(i as f64);
        }
        assert!(r.score(50.0).is_none(), "scored on 99 outputs");
        r.push(99.0);
        let mid = r.score(50.0).unwrap();
        assert!((mid - 0.5).abs() < 0.02, "{mid}");
        assert!(r.score(1e6).unwrap() > 0.999);
        // Only the newest thousand count: after 2,000 outputs around 1,000
        // the old ones no longer make 500 look large.
        for i in 0..2000 {
            r.push(1000.0 + (i % 10) as f64);
        }
        assert_eq!(r.values().len(), 1000);
        assert!(r.score(500.0).unwrap() < 0.01);
        let back = Recent::restored(r.values().to_vec());
        assert_eq!(back.score(1005.0), r.score(1005.0));
        assert!(Recent::restored(vec![f32::NAN; 10]).values().is_empty());
    }
}
