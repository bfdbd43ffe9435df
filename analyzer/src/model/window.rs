//! A bounded window of recent points that models share.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Point;

/// The last `capacity` points, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    capacity: usize,
    points: VecDeque<Point>,
}

impl Window {
    /// An empty window.
    pub fn new(capacity: usize) -> Window {
        Window {
            capacity: capacity.max(1),
            points: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    /// Replaces the contents with the tail of `history` (non-finite values skipped).
    pub fn fill(&mut self, history: &[Point]) {
        self.points.clear();
        for p in history {
            self.push(*p);
        }
    }

    /// Appends a point, dropping the oldest when full. Non-finite values
    /// (gaps, staleness) are not values and are skipped.
    pub fn push(&mut self, p: Point) {
        if !p.v.is_finite() {
            return;
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(p);
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// The values, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.points.iter().map(|p| p.v)
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = Point> + '_ {
        self.points.iter().copied()
    }

    /// The last point.
    pub fn last(&self) -> Option<Point> {
        self.points.back().copied()
    }

    /// The first point.
    pub fn first(&self) -> Option<Point> {
        self.points.front().copied()
    }

    /// The median spacing of timestamps (ms), the model's sampling interval.
    pub fn step_ms(&self) -> Option<i64> {
        let mut d: Vec<i64> = self
            .points
            .iter()
            .zip(self.points.iter().skip(1))
            .map(|(a, b)| b.t - a.t)
            .filter(|d| *d > 0)
            .collect();
        if d.is_empty() {
            return None;
        }
        let mid = d.len() / 2;
        Some(*d.select_nth_unstable(mid).1)
    }

    /// The window as saved state.
    pub fn save(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// A window from saved state; `model` names the owner in the error.
    pub fn load(
        model: &'static str,
        state: serde_json::Value,
    ) -> Result<Window, super::ModelError> {
        serde_json::from_value(state).map_err(|e| super::ModelError::BadState {
            model,
            reason: e.to_string(),
        })
    }

    /// Mean and population standard deviation of the values.
    pub fn mean_std(&self) -> (f64, f64) {
        let n = self.points.len() as f64;
        if n == 0.0 {
            return (f64::NAN, f64::NAN);
        }
        let mean = self.values().sum::<f64>() / n;
        let var = self.values().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt())
    }
}

/// The smallest spread a model assumes: a change of less than 0.1 % of the
/// series' level is not called an anomaly, however flat the series was, so
/// that a nearly constant gauge (free disk space, total memory) does not
/// alarm on every small write.
pub fn spread_floor(center: f64) -> f64 {
    1e-9_f64.max(1e-3 * center.abs())
}

/// Median of a slice (sorted copy).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// Builds evenly spaced forecast timestamps after `last`.
pub fn future_times(last: i64, step: i64, steps: usize) -> Vec<i64> {
    (1..=steps as i64).map(|h| last + h * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_drops_oldest_and_skips_nan() {
        let mut w = Window::new(3);
        for (i, v) in [1.0, 2.0, f64::NAN, 3.0, 4.0].iter().enumerate() {
            w.push(Point {
                t: i as i64 * 10,
                v: *v,
            });
        }
        assert_eq!(w.values().collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
        // Deltas are 20 ms (across the skipped NaN) and 10 ms; the upper median is taken.
        assert_eq!(w.step_ms(), Some(20));
        let (m, s) = w.mean_std();
        assert!((m - 3.0).abs() < 1e-12 && (s - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
