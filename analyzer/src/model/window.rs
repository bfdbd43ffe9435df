//! A bounded window of recent points that models share.
//!
//! Points are kept compactly: the values, and the times as runs of equal
//! spacing (a regularly sampled series is its first time, one spacing and
//! a count), since the models keep windows of thousands of points per
//! series (four seasons of a daily cycle at one minute is 5,761) and the
//! engine keeps a model per series. The saved form is the plain list of
//! points.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Point;

/// The last `capacity` points, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    values: VecDeque<f64>,
    /// Time of the oldest point (meaningless when empty).
    first_t: i64,
    /// Time of the newest point (meaningless when empty).
    last_t: i64,
    /// The spacings between consecutive points, oldest first, as
    /// `(spacing, how many in a row)`; adjacent runs differ in spacing.
    runs: VecDeque<(i64, u32)>,
}

/// The saved form (and the form before the compact one): the points.
#[derive(Serialize, Deserialize)]
struct Saved {
    capacity: usize,
    points: Vec<Point>,
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Saved {
            capacity: self.capacity,
            points: self.points().collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        let s = Saved::deserialize(d)?;
        let mut w = Window {
            capacity: s.capacity,
            values: VecDeque::with_capacity(s.capacity.max(s.points.len())),
            first_t: 0,
            last_t: 0,
            runs: VecDeque::new(),
        };
        // Saved points are taken as they were saved (as the plain list
        // was), not filtered or cut to the capacity again.
        for p in s.points {
            w.append(p);
        }
        Ok(w)
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.capacity == other.capacity
            && self.values.len() == other.values.len()
            && self.points().eq(other.points())
    }
}

/// The points of a window, oldest first.
pub struct Points<'a> {
    values: std::collections::vec_deque::Iter<'a, f64>,
    runs: std::collections::vec_deque::Iter<'a, (i64, u32)>,
    /// Time of the next point.
    t: i64,
    /// The spacing after the next point and how many more of it are left
    /// in the current run.
    run: (i64, u32),
}

impl Iterator for Points<'_> {
    type Item = Point;

    fn next(&mut self) -> Option<Point> {
        let v = *self.values.next()?;
        let p = Point { t: self.t, v };
        if self.run.1 == 0 {
            self.run = self.runs.next().copied().unwrap_or((0, 0));
        }
        if self.run.1 > 0 {
            self.t += self.run.0;
            self.run.1 -= 1;
        }
        Some(p)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

impl ExactSizeIterator for Points<'_> {}

impl Window {
    /// An empty window.
    pub fn new(capacity: usize) -> Window {
        Window {
            capacity: capacity.max(1),
            values: VecDeque::with_capacity(capacity.max(1)),
            first_t: 0,
            last_t: 0,
            runs: VecDeque::new(),
        }
    }

    /// Replaces the contents with the tail of `history` (non-finite values skipped).
    pub fn fill(&mut self, history: &[Point]) {
        self.values.clear();
        self.runs.clear();
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
        if self.values.len() == self.capacity {
            self.pop_front();
        }
        self.append(p);
    }

    /// Appends a point as it is.
    fn append(&mut self, p: Point) {
        if self.values.is_empty() {
            self.first_t = p.t;
        } else {
            let d = p.t.wrapping_sub(self.last_t);
            match self.runs.back_mut() {
                Some((spacing, n)) if *spacing == d && *n < u32::MAX => *n += 1,
                _ => self.runs.push_back((d, 1)),
            }
        }
        self.last_t = p.t;
        self.values.push_back(p.v);
    }

    /// Drops the oldest point.
    fn pop_front(&mut self) {
        if self.values.pop_front().is_none() {
            return;
        }
        if let Some((spacing, n)) = self.runs.front_mut() {
            self.first_t = self.first_t.wrapping_add(*spacing);
            *n -= 1;
            if *n == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// Most points held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no point is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values, oldest first.
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    /// The points, oldest first.
    pub fn points(&self) -> Points<'_> {
        Points {
            values: self.values.iter(),
            runs: self.runs.iter(),
            t: self.first_t,
            run: (0, 0),
        }
    }

    /// The last point.
    pub fn last(&self) -> Option<Point> {
        self.values.back().map(|v| Point {
            t: self.last_t,
            v: *v,
        })
    }

    /// The first point.
    pub fn first(&self) -> Option<Point> {
        self.values.front().map(|v| Point {
            t: self.first_t,
            v: *v,
        })
    }

    /// Whether every two consecutive points are the same time apart.
    pub fn evenly_spaced(&self) -> bool {
        self.runs.len() <= 1
    }

    /// The value `k` points before the newest (0: the newest).
    pub fn value_back(&self, k: usize) -> Option<f64> {
        let n = self.values.len();
        self.values.get(n.checked_sub(k + 1)?).copied()
    }

    /// The median spacing of timestamps (ms), the model's sampling interval
    /// (of the positive spacings, the upper median).
    pub fn step_ms(&self) -> Option<i64> {
        let mut d: Vec<(i64, u32)> = self.runs.iter().copied().filter(|r| r.0 > 0).collect();
        let total: u64 = d.iter().map(|r| u64::from(r.1)).sum();
        if total == 0 {
            return None;
        }
        d.sort_unstable_by_key(|r| r.0);
        let mid = total / 2;
        let mut seen = 0;
        for (spacing, n) in d {
            seen += u64::from(n);
            if seen > mid {
                return Some(spacing);
            }
        }
        None
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
        let n = self.values.len() as f64;
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

/// Median of `values` and 1.4826 × their median absolute deviation from
/// it: the standard deviation for normal data, which outliers do not
/// inflate. Sorts `values`; NaN for none.
pub fn median_and_robust_sigma(values: &mut [f64]) -> (f64, f64) {
    let center = median(values);
    let mut dev: Vec<f64> = values.iter().map(|x| (x - center).abs()).collect();
    (center, 1.4826 * median(&mut dev))
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

    #[test]
    fn compact_times_give_back_every_point_and_save_as_a_list() {
        // Regular stretches, a gap, a repeated and a backwards timestamp.
        let ts = [0, 10, 20, 30, 70, 80, 80, 90, 85, 95, 105, 115];
        let pts: Vec<Point> = ts
            .iter()
            .enumerate()
            .map(|(i, t)| Point { t: *t, v: i as f64 })
            .collect();
        for cap in [1, 3, 5, ts.len(), 100] {
            let mut w = Window::new(cap);
            let mut plain: VecDeque<Point> = VecDeque::new();
            for p in &pts {
                w.push(*p);
                if plain.len() == cap {
                    plain.pop_front();
                }
                plain.push_back(*p);
                assert_eq!(w.points().collect::<Vec<_>>(), Vec::from(plain.clone()));
                assert_eq!(w.points().len(), plain.len());
                assert_eq!(w.first(), plain.front().copied());
                assert_eq!(w.last(), plain.back().copied());
                let mut d: Vec<i64> = plain
                    .iter()
                    .zip(plain.iter().skip(1))
                    .map(|(a, b)| b.t - a.t)
                    .filter(|d| *d > 0)
                    .collect();
                let step = (!d.is_empty()).then(|| {
                    let mid = d.len() / 2;
                    *d.select_nth_unstable(mid).1
                });
                assert_eq!(w.step_ms(), step, "cap {cap} at {p:?}");
            }
            let saved = w.save();
            assert_eq!(
                saved["points"].as_array().map(|a| a.len()),
                Some(plain.len())
            );
            assert_eq!(saved["points"][0]["t"], plain[0].t);
            let back = Window::load("test", saved).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.points().collect::<Vec<_>>(), Vec::from(plain));
        }
    }
}
