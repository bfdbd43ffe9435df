//! Per-second rates of counters, as PromQL's `rate` sees them: a drop in the
//! value is a counter reset, after which the counter counts from zero.

use crate::model::Point;

/// The per-second increase between consecutive points, stamped at the later
/// point. A decrease is taken as a reset (the new value is the increase).
pub fn per_second(points: &[Point]) -> Vec<Point> {
    points
        .windows(2)
        .filter_map(|w| {
            let dt = (w[1].t - w[0].t) as f64 / 1000.0;
            if dt <= 0.0 || !w[0].v.is_finite() || !w[1].v.is_finite() {
                return None;
            }
            let inc = if w[1].v >= w[0].v {
                w[1].v - w[0].v
            } else {
                w[1].v
            };
            Some(Point {
                t: w[1].t,
                v: inc / dt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_count_from_zero() {
        let p = |t: i64, v: f64| Point { t, v };
        let r = per_second(&[p(0, 10.0), p(1000, 20.0), p(2000, 5.0), p(4000, 9.0)]);
        assert_eq!(r, vec![p(1000, 10.0), p(2000, 5.0), p(4000, 2.0)]);
    }
}
