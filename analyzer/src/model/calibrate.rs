//! Turning standardised deviations into scores that mean the same on every
//! series, and levels into bound widths.

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
}
