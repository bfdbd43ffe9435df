//! Feature windows shared by the learned models: what a point looks like
//! next to the points before it. Each point becomes a row of
//!
//! - its value and its difference from the previous value;
//! - for each span (6 and 24 points): its distance from the span's mean,
//!   from the span's maximum and from its minimum, and the span's standard
//!   deviation;
//! - with a season of `s` points (given or detected): its difference from
//!   the value `s` points before (the same time of the previous cycle);
//! - with at least two days of history: the time of day as sine and
//!   cosine; with at least two weeks: the day of the week likewise.
//!   (With less history a time never seen would look unusual merely for
//!   being new.)
//!
//! Only earlier points enter a row besides the point itself, so scores
//! never look ahead. Rows are standardised by a [`Scaler`] fitted on the
//! training history (median and robust spread per feature) and saved with
//! the model.

use serde::{Deserialize, Serialize};

use crate::model::Point;

/// Rolling spans in points.
pub const SPANS: [usize; 2] = [6, 24];
/// Seasons longer than this (points) give no seasonal difference: the
/// window that would hold them costs more than the feature is worth.
pub const MAX_SEASON_LAG: usize = 2_016;
const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Which features a model uses, fixed at fit time and saved with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Seasonal lag in points, if any.
    pub season: Option<usize>,
    /// Time of day as sine/cosine.
    pub time_of_day: bool,
    /// Day of the week as sine/cosine.
    pub day_of_week: bool,
}

impl FeatureSpec {
    /// Past points every spec needs (the longest span).
    pub const MIN_LOOKBACK: usize = SPANS[1];

    /// The features for a history: the season is kept only when the history
    /// still leaves `min_rows` rows after it; time features only with
    /// enough days of history.
    pub fn choose(history: &[Point], season: Option<usize>, min_rows: usize) -> FeatureSpec {
        let season = season.filter(|s| {
            *s >= 2
                && *s <= MAX_SEASON_LAG
                && history.len() >= s.max(&Self::MIN_LOOKBACK) + min_rows
        });
        let span = match (history.first(), history.last()) {
            (Some(a), Some(b)) => b.t - a.t,
            _ => 0,
        };
        FeatureSpec {
            season,
            time_of_day: span >= 2 * DAY_MS,
            day_of_week: span >= 2 * WEEK_MS,
        }
    }

    /// Past points a row needs.
    pub fn lookback(&self) -> usize {
        Self::MIN_LOOKBACK.max(self.season.unwrap_or(0))
    }

    /// Names of the features, in row order.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["value".to_string(), "diff".to_string()];
        for s in SPANS {
            for f in ["dev_mean", "dev_max", "dev_min", "std"] {
                n.push(format!("{f}_{s}"));
            }
        }
        if let Some(s) = self.season {
            n.push(format!("diff_season_{s}"));
        }
        if self.time_of_day {
            n.extend(["tod_sin".into(), "tod_cos".into()]);
        }
        if self.day_of_week {
            n.extend(["dow_sin".into(), "dow_cos".into()]);
        }
        n
    }

    /// The row of `p` given the values before it (`past`, oldest first; at
    /// least one).
    pub fn row(&self, past: &[f64], p: Point) -> Vec<f64> {
        let mut out = Vec::with_capacity(16);
        self.value_features(past, p.v, &mut out);
        self.time_features(p.t, &mut out);
        out
    }

    /// The value features only (no time features): what the multivariate
    /// model takes per input.
    pub fn value_features(&self, past: &[f64], v: f64, out: &mut Vec<f64>) {
        let last = past.last().copied().unwrap_or(v);
        out.push(v);
        out.push(v - last);
        for s in SPANS {
            let w = &past[past.len().saturating_sub(s)..];
            if w.is_empty() {
                out.extend([0.0; 4]);
                continue;
            }
            let n = w.len() as f64;
            let mean = w.iter().sum::<f64>() / n;
            let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            let (lo, hi) = w
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                });
            out.extend([v - mean, v - hi, v - lo, var.sqrt()]);
        }
        if let Some(s) = self.season {
            let back = past.len().checked_sub(s).map(|i| past[i]).unwrap_or(last);
            out.push(v - back);
        }
    }

    /// The time features of a timestamp.
    pub fn time_features(&self, t: i64, out: &mut Vec<f64>) {
        let tau = std::f64::consts::TAU;
        if self.time_of_day {
            let a = tau * t.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
            out.extend([a.sin(), a.cos()]);
        }
        if self.day_of_week {
            let a = tau * t.rem_euclid(WEEK_MS) as f64 / WEEK_MS as f64;
            out.extend([a.sin(), a.cos()]);
        }
    }

    /// Rows of every point of `points` that has a full lookback before it.
    pub fn rows(&self, points: &[Point]) -> Vec<Vec<f64>> {
        let k = self.lookback();
        let values: Vec<f64> = points.iter().map(|p| p.v).collect();
        (k..points.len())
            .map(|i| self.row(&values[i - k..i], points[i]))
            .collect()
    }
}

/// Per-feature standardisation fitted on training rows: centre at the
/// median, scale by 1.4826 × the median absolute deviation (a few
/// anomalies in the history do not stretch it), falling back to the
/// standard deviation and then to 1 for a constant feature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    center: Vec<f32>,
    scale: Vec<f32>,
}

impl Scaler {
    /// Fits on rows of equal length.
    pub fn fit<R: AsRef<[f64]>>(rows: &[R]) -> Scaler {
        let d = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
        let mut center = Vec::with_capacity(d);
        let mut scale = Vec::with_capacity(d);
        for j in 0..d {
            let mut col: Vec<f64> = rows
                .iter()
                .map(|r| r.as_ref()[j])
                .filter(|x| x.is_finite())
                .collect();
            // Non-finite only when the column has no finite value.
            let (med, mut s) = crate::model::window::median_and_robust_sigma(&mut col);
            let med = if med.is_finite() { med } else { 0.0 };
            if s.is_nan() || s <= 1e-12 {
                let n = col.len().max(1) as f64;
                let mean = col.iter().sum::<f64>() / n;
                s = (col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            }
            if s.is_nan() || s <= 1e-12 {
                s = 1.0;
            }
            center.push(med as f32);
            scale.push(s as f32);
        }
        Scaler { center, scale }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.center.len()
    }

    /// Whether it has no features.
    pub fn is_empty(&self) -> bool {
        self.center.is_empty()
    }

    /// A standardised copy of `row`.
    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(self.center.iter().zip(&self.scale))
            .map(|(x, (c, s))| (x - *c as f64) / *s as f64)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hourly(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t: i as i64 * 3_600_000,
                v: (i % 24) as f64,
            })
            .collect()
    }

    #[test]
    fn rows_use_only_the_past_and_match_the_names() {
        let h = hourly(24 * 20);
        let spec = FeatureSpec::choose(&h, Some(24), 24);
        assert_eq!(spec.season, Some(24));
        assert!(spec.time_of_day && spec.day_of_week);
        let rows = spec.rows(&h);
        assert_eq!(rows.len(), h.len() - 24);
        assert_eq!(rows[0].len(), spec.names().len());
        // Point 24 (value 0) after 0..23: diff -23, seasonal diff 0.
        assert_eq!(rows[0][0], 0.0);
        assert_eq!(rows[0][1], -23.0);
        assert_eq!(rows[0][10], 0.0);
        // Changing a later point does not change an earlier row.
        let mut h2 = h.clone();
        h2[100].v = 1e6;
        assert_eq!(spec.rows(&h2)[..76], rows[..76]);
        // Short history: no time features, no season that leaves too few rows.
        let short = FeatureSpec::choose(&h[..40], Some(24), 24);
        assert_eq!(short.season, None);
        assert!(!short.time_of_day);
    }

    #[test]
    fn scaler_is_robust_and_handles_constants() {
        let mut rows: Vec<Vec<f64>> = (0..100).map(|i| vec![i as f64, 5.0]).collect();
        rows[0][0] = 1e9;
        let s = Scaler::fit(&rows);
        let z = s.apply(&[50.0, 5.0]);
        assert!(z[0].abs() < 0.1 && z[1] == 0.0, "{z:?}");
        assert!(s.apply(&[1e9, 6.0])[0] > 1e6);
        assert_eq!(s.len(), 2);
    }
}
