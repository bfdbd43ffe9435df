//! A bounded window of recent points that models share.
//!
//! Points are kept compactly, since the models keep windows of thousands
//! of points per series (four seasons of a daily cycle at one minute is
//! 5,761) and the engine keeps a model per series:
//! - times as runs of equal spacing (a regularly sampled series is its
//!   first time, one spacing and a count);
//! - values in blocks of [`BLOCK`] pushed in a row: the block's first value
//!   as it came (f64), the others as their distance from it in f32. A
//!   value keeps about seven significant digits of that distance, not of
//!   itself, so a counter near 10^12 that moves by thousands keeps its
//!   moves; a value within 2^24 integer steps (or exact small binary
//!   fractions) of the block's first comes back exactly. This halves the
//!   largest part of a model's memory at a rounding far below any
//!   series' noise. Values whose distance an f32 cannot hold are kept
//!   whole.
//!
//! The saved form is this representation itself (the runs of spacings,
//! the blocks' first values, each value's f32 distance), so a window loaded
//! from it is the same window and scores the same. The distances are saved
//! as their bytes in base64 (5.3 bytes of JSON a point, and exact, where a
//! number in text takes 10 to 14); the form saved until 2026-12-06, the
//! list of points with the blocks' first values (about 46 bytes a point),
//! still loads.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Point;
use super::compact::{self, F32s};

/// Values per block sharing one f64 base.
pub const BLOCK: u64 = 64;

/// The last `capacity` points, oldest first.
#[derive(Debug, Clone)]
pub struct Window {
    capacity: usize,
    /// Each value's distance from its block's base, oldest first; NaN
    /// for one kept whole in `wide`.
    offsets: VecDeque<f32>,
    /// The base of every block that still has a value, oldest first.
    bases: VecDeque<f64>,
    /// Values kept whole, by sequence number, oldest first.
    wide: VecDeque<(u64, f64)>,
    /// Sequence number of the oldest value: the block of value `s` is
    /// `s / BLOCK`.
    seq: u64,
    /// Time of the oldest point (meaningless when empty).
    first_t: i64,
    /// Time of the newest point (meaningless when empty).
    last_t: i64,
    /// The spacings between consecutive points, oldest first, as
    /// `(spacing, how many in a row)`; adjacent runs differ in spacing.
    runs: VecDeque<compact::Run>,
}

/// The saved form: `compact` since 2026-12-06; before, the points, and
/// (since values became blocks) where the oldest stands in its block and
/// the blocks' bases. Points without the latter load as if they had been
/// pushed.
#[derive(Serialize, Deserialize)]
struct Saved {
    capacity: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    points: Option<Vec<Point>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blocks: Option<SavedBlocks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compact: Option<Compact>,
}

/// The window's own representation, as saved.
#[derive(Serialize, Deserialize)]
struct Compact {
    /// Time of the oldest point.
    first_t: i64,
    /// Spacings between consecutive points as `[spacing, count]` runs.
    runs: Vec<compact::Run>,
    /// Position of the oldest value in its block.
    phase: u64,
    bases: Vec<f64>,
    /// Each value's distance from its block's base (saved as f32 bytes in
    /// base64); NaN for a value kept whole.
    offsets: F32s,
    /// The values kept whole, as `[position, value]`.
    wide: Vec<(usize, f64)>,
}

#[derive(Serialize, Deserialize)]
struct SavedBlocks {
    /// Position of the oldest value in its block.
    phase: u64,
    bases: Vec<f64>,
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Saved {
            capacity: self.capacity,
            points: None,
            blocks: None,
            compact: Some(Compact {
                first_t: self.first_t,
                runs: self.runs.iter().copied().collect(),
                phase: self.seq % BLOCK,
                bases: self.bases.iter().copied().collect(),
                offsets: F32s(self.offsets.iter().copied().collect()),
                wide: self
                    .wide
                    .iter()
                    .map(|&(seq, v)| ((seq - self.seq) as usize, v))
                    .collect(),
            }),
        }
        .serialize(s)
    }
}

impl Compact {
    /// The window this describes, or why it cannot be one.
    fn window(self, capacity: usize) -> Result<Window, String> {
        let offsets = self.offsets.0;
        let n = offsets.len();
        if self.phase >= BLOCK {
            return Err(format!("window phase {} is not below {BLOCK}", self.phase));
        }
        let want = if n == 0 {
            0
        } else {
            (self.phase + n as u64).div_ceil(BLOCK)
        };
        if self.bases.len() as u64 != want || self.bases.iter().any(|b| !b.is_finite()) {
            return Err(format!(
                "window of {n} points from phase {} needs {want} finite bases, has {}",
                self.phase,
                self.bases.len()
            ));
        }
        compact::check_runs(&self.runs, n).map_err(|e| format!("window times: {e}"))?;
        let whole = offsets.iter().filter(|o| o.is_nan()).count();
        let wide_ok = self.wide.len() == whole
            && self.wide.windows(2).all(|w| w[0].0 < w[1].0)
            && self
                .wide
                .iter()
                .all(|&(i, v)| i < n && offsets[i].is_nan() && v.is_finite());
        if !wide_ok {
            return Err(format!(
                "window has {whole} values kept whole, and {} given",
                self.wide.len()
            ));
        }
        if offsets.iter().any(|o| o.is_infinite()) {
            return Err("window has a value that is not finite".into());
        }
        let mut w = Window::empty(capacity, n);
        w.seq = self.phase;
        w.bases = self.bases.into();
        w.offsets = offsets.into();
        w.wide = self
            .wide
            .into_iter()
            .map(|(i, v)| (self.phase + i as u64, v))
            .collect();
        w.first_t = self.first_t;
        w.last_t = self.runs.iter().fold(self.first_t, |t, &(d, k)| {
            t.wrapping_add(d.wrapping_mul(i64::from(k)))
        });
        w.runs = self.runs.into();
        Ok(w)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Window, D::Error> {
        use serde::de::Error;
        let s = Saved::deserialize(d)?;
        if let Some(c) = s.compact {
            return c.window(s.capacity).map_err(D::Error::custom);
        }
        let points = s
            .points
            .ok_or_else(|| D::Error::custom("a window needs its points"))?;
        let mut w = Window::empty(s.capacity, points.len());
        // Saved points are taken as they were saved (as the plain list
        // was), not filtered or cut to the capacity again.
        let Some(blocks) = s.blocks else {
            for p in points {
                w.append(p);
            }
            return Ok(w);
        };
        if blocks.phase >= BLOCK {
            return Err(D::Error::custom(format!(
                "window phase {} is not below {BLOCK}",
                blocks.phase
            )));
        }
        let want = (blocks.phase + points.len() as u64).div_ceil(BLOCK);
        if blocks.bases.len() as u64 != want || blocks.bases.iter().any(|b| !b.is_finite()) {
            return Err(D::Error::custom(format!(
                "window of {} points from phase {} needs {want} finite bases, has {}",
                points.len(),
                blocks.phase,
                blocks.bases.len()
            )));
        }
        w.seq = blocks.phase;
        w.bases = blocks.bases.into();
        for (i, p) in points.into_iter().enumerate() {
            let seq = w.seq + i as u64;
            w.store(seq, w.base_of(seq), p.v);
            w.append_time(p.t);
        }
        Ok(w)
    }
}

impl PartialEq for Window {
    fn eq(&self, other: &Window) -> bool {
        self.capacity == other.capacity
            && self.offsets.len() == other.offsets.len()
            && self.points().eq(other.points())
    }
}

/// The values of a window, oldest first.
pub struct Values<'a> {
    window: &'a Window,
    /// Position of the next value, and one past the last.
    next: usize,
    end: usize,
}

impl Iterator for Values<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if self.next >= self.end {
            return None;
        }
        let v = self.window.value_at(self.next);
        self.next += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Values<'_> {}

/// The points of a window, oldest first.
pub struct Points<'a> {
    values: Values<'a>,
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
        let v = self.values.next()?;
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

/// `v`'s distance from `base` as an f32 that comes back to itself when
/// the value it gives (`base + offset`) is stored again, so that a saved
/// and loaded window holds the same values; None when an f32 cannot hold
/// the distance to its precision (too large, or too small: subnormal).
fn offset_of(base: f64, v: f64) -> Option<f32> {
    let distance = v - base;
    let mut o = distance as f32;
    for _ in 0..4 {
        if !o.is_finite() {
            return None;
        }
        let given = base + f64::from(o);
        let again = (given - base) as f32;
        if again == o {
            let close = (given - v).abs() <= distance.abs() * f64::from(f32::EPSILON);
            return close.then_some(o);
        }
        o = again;
    }
    None
}

impl Window {
    /// An empty window.
    pub fn new(capacity: usize) -> Window {
        Window::empty(capacity, capacity)
    }

    fn empty(capacity: usize, reserve: usize) -> Window {
        let capacity = capacity.max(1);
        let reserve = reserve.min(capacity);
        Window {
            capacity,
            offsets: VecDeque::with_capacity(reserve),
            bases: VecDeque::with_capacity((reserve as u64).div_ceil(BLOCK) as usize + 1),
            wide: VecDeque::new(),
            seq: 0,
            first_t: 0,
            last_t: 0,
            runs: VecDeque::new(),
        }
    }

    /// Replaces the contents with the tail of `history` (non-finite values skipped).
    pub fn fill(&mut self, history: &[Point]) {
        self.offsets.clear();
        self.bases.clear();
        self.wide.clear();
        self.seq = 0;
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
        if self.offsets.len() == self.capacity {
            self.pop_front();
        }
        self.append(p);
    }

    /// Appends a point as it is (the first of a block is its base).
    fn append(&mut self, p: Point) {
        let seq = self.seq + self.offsets.len() as u64;
        if seq % BLOCK == 0 || self.bases.is_empty() {
            self.bases.push_back(p.v);
        }
        let base = *self.bases.back().unwrap_or(&p.v);
        self.store(seq, base, p.v);
        self.append_time(p.t);
    }

    /// Stores value number `seq` against `base`.
    fn store(&mut self, seq: u64, base: f64, v: f64) {
        match offset_of(base, v) {
            Some(o) => self.offsets.push_back(o),
            None => {
                self.offsets.push_back(f32::NAN);
                self.wide.push_back((seq, v));
            }
        }
    }

    /// Appends the time of the point just stored.
    fn append_time(&mut self, t: i64) {
        if self.offsets.len() == 1 {
            self.first_t = t;
        } else {
            let d = t.wrapping_sub(self.last_t);
            let new = compact::add_spacing(self.runs.back_mut(), d);
            self.runs.extend(new);
        }
        self.last_t = t;
    }

    /// Drops the oldest point.
    fn pop_front(&mut self) {
        if self.offsets.pop_front().is_none() {
            return;
        }
        if self.wide.front().is_some_and(|w| w.0 == self.seq) {
            self.wide.pop_front();
        }
        self.seq += 1;
        if self.offsets.is_empty() {
            self.bases.clear();
            self.seq = 0;
        } else if self.seq % BLOCK == 0 {
            self.bases.pop_front();
        }
        if let Some((spacing, n)) = self.runs.front_mut() {
            self.first_t = self.first_t.wrapping_add(*spacing);
            *n -= 1;
            if *n == 0 {
                self.runs.pop_front();
            }
        }
    }

    /// The value at position `i` (0: the oldest); `i` is below the length.
    fn value_at(&self, i: usize) -> f64 {
        let o = self.offsets[i];
        let seq = self.seq + i as u64;
        if o.is_nan() {
            let k = self.wide.partition_point(|w| w.0 < seq);
            return self.wide[k].1;
        }
        self.base_of(seq) + f64::from(o)
    }

    /// The base of value number `seq`'s block (a block still held).
    fn base_of(&self, seq: u64) -> f64 {
        self.bases[(seq / BLOCK - self.seq / BLOCK) as usize]
    }

    /// Most points held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether no point is held.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The values, oldest first.
    pub fn values(&self) -> Values<'_> {
        Values {
            window: self,
            next: 0,
            end: self.offsets.len(),
        }
    }

    /// The points, oldest first.
    pub fn points(&self) -> Points<'_> {
        Points {
            values: self.values(),
            runs: self.runs.iter(),
            t: self.first_t,
            run: (0, 0),
        }
    }

    /// The last point.
    pub fn last(&self) -> Option<Point> {
        let n = self.offsets.len();
        (n > 0).then(|| Point {
            t: self.last_t,
            v: self.value_at(n - 1),
        })
    }

    /// The first point.
    pub fn first(&self) -> Option<Point> {
        (!self.offsets.is_empty()).then(|| Point {
            t: self.first_t,
            v: self.value_at(0),
        })
    }

    /// Whether every two consecutive points are the same time apart.
    pub fn evenly_spaced(&self) -> bool {
        self.runs.len() <= 1
    }

    /// The value `k` points before the newest (0: the newest).
    pub fn value_back(&self, k: usize) -> Option<f64> {
        let i = self.offsets.len().checked_sub(k + 1)?;
        Some(self.value_at(i))
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
        let n = self.offsets.len() as f64;
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
    fn compact_times_give_back_every_point_and_save_as_runs() {
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
            let offsets: F32s =
                serde_json::from_value(saved["compact"]["offsets"].clone()).unwrap();
            assert!(saved["compact"]["offsets"].is_string());
            assert_eq!(offsets.0.len(), plain.len());
            assert_eq!(saved["compact"]["first_t"], plain[0].t);
            let back = Window::load("test", saved).unwrap();
            assert_eq!(back, w);
            assert_eq!(back.points().collect::<Vec<_>>(), Vec::from(plain));
        }
    }

    #[test]
    fn blocks_keep_distances_to_seven_digits_and_load_to_the_same_window() {
        // A counter near 10^12 moving by about a thousand per point, a
        // gauge with decimals, small integers, and values no f32 distance
        // holds (kept whole), across many blocks and a sliding capacity.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut counter = 1.0e12;
        let values: Vec<f64> = (0..1000)
            .map(|i| match i % 7 {
                0 | 1 => {
                    counter += 1000.0 * noise();
                    counter
                }
                2 => 100.0 + 10.0 * noise(),
                3 => (i % 13) as f64,
                4 => 1.0e300 * noise(),
                5 => -3.0e-300,
                _ => f64::MAX * noise() - f64::MAX / 2.0,
            })
            .collect();
        for cap in [1, 5, 63, 64, 65, 200, 2000] {
            let mut w = Window::new(cap);
            for (i, v) in values.iter().enumerate() {
                w.push(Point { t: i as i64, v: *v });
                let from = (i + 1).saturating_sub(cap);
                let got: Vec<f64> = w.values().collect();
                assert_eq!(got.len(), i + 1 - from);
                for (k, (a, b)) in got.iter().zip(&values[from..=i]).enumerate() {
                    // Rounded to an f32 of the distance from the block's
                    // first value, at most the larger of the two apart.
                    let base = values[from + k - (from + k) % BLOCK as usize];
                    let room = (b - base).abs() * f64::from(f32::EPSILON);
                    assert!((a - b).abs() <= room, "cap {cap}: {a} vs {b}");
                    let d = b - base;
                    if d + base == *b && d.fract() == 0.0 && d.abs() < 1.6e7 {
                        assert_eq!(a, b, "cap {cap}: integer distance");
                    }
                }
                assert_eq!(w.value_back(0), got.last().copied());
                assert_eq!(w.first().map(|p| p.v), got.first().copied());
            }
            let back = Window::load("test", w.save()).unwrap();
            assert_eq!(back, w, "cap {cap}");
            let (mut a, mut b) = (w.clone(), back);
            for (i, v) in values.iter().take(300).enumerate() {
                let p = Point {
                    t: 2000 + i as i64,
                    v: *v,
                };
                a.push(p);
                b.push(p);
            }
            assert_eq!(a, b, "cap {cap} after more points");
        }
    }

    #[test]
    fn the_saved_form_is_a_fraction_of_the_points_and_the_form_before_loads() {
        let mut w = Window::new(4000);
        for i in 0..5000 {
            let v = 50.0 + 10.0 * (i as f64 / 300.0).sin() + (i % 7) as f64 * 0.013;
            w.push(Point {
                t: 1_800_000_000_000 + i * 60_000,
                v,
            });
        }
        let compact = serde_json::to_string(&w.save()).unwrap();
        let points: Vec<Point> = w.points().collect();
        let listed = serde_json::to_string(&serde_json::json!({
            "capacity": 4000,
            "points": points,
            "blocks": {"phase": w.seq % BLOCK, "bases": w.bases},
        }))
        .unwrap();
        assert!(
            compact.len() * 6 < listed.len(),
            "{} bytes against {}",
            compact.len(),
            listed.len()
        );
        // The list of points with the blocks' first values, as saved until
        // 2026-12-06, loads to the same window.
        let before = Window::load("test", serde_json::from_str(&listed).unwrap()).unwrap();
        assert_eq!(before, w);
        assert_eq!(Window::load("test", w.save()).unwrap(), w);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Any window (times going back or repeating, values an f32
        /// distance holds or not, any capacity) saves and loads to itself,
        /// and goes on the same way.
        #[test]
        fn any_window_saves_and_loads_to_itself(
            capacity in 1usize..200,
            points in proptest::collection::vec(
                (-5i64..100, proptest::prelude::any::<f64>()),
                0..400,
            ),
        ) {
            let mut w = Window::new(capacity);
            let mut t = 1_700_000_000_000i64;
            for &(dt, v) in &points {
                t += dt;
                w.push(Point { t, v });
            }
            let back = Window::load("test", w.save()).unwrap();
            proptest::prop_assert_eq!(&back, &w);
            let (mut a, mut b) = (w, back);
            for (i, &(_, v)) in points.iter().take(70).enumerate() {
                let p = Point { t: t + 1 + i as i64, v };
                a.push(p);
                b.push(p);
            }
            proptest::prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn bad_compact_windows_are_refused() {
        let offsets = |o: &[f32]| serde_json::to_value(F32s(o.to_vec())).unwrap();
        let good = serde_json::json!({"capacity": 5, "compact": {"first_t": 0,
            "runs": [[10, 2]], "phase": 1, "bases": [1.0],
            "offsets": offsets(&[0.5, f32::NAN, 1.0]), "wide": [[1, 1e300]]}});
        let w = Window::load("test", good.clone()).unwrap();
        assert_eq!(
            w.points().collect::<Vec<_>>(),
            vec![
                Point { t: 0, v: 1.5 },
                Point { t: 10, v: 1e300 },
                Point { t: 20, v: 2.0 }
            ]
        );
        for (key, bad) in [
            ("phase", serde_json::json!(64)),
            ("bases", serde_json::json!([1.0, 2.0])),
            ("bases", serde_json::json!([])),
            ("runs", serde_json::json!([[10, 1]])),
            ("runs", serde_json::json!([[10, 2], [5, 0]])),
            ("wide", serde_json::json!([])),
            ("wide", serde_json::json!([[0, 1.0]])),
            ("wide", serde_json::json!([[1, 1.0], [1, 2.0]])),
            ("offsets", offsets(&[0.5, f32::NAN, f32::NAN])),
            ("offsets", offsets(&[0.5, f32::NAN, f32::INFINITY])),
            ("offsets", serde_json::json!("AAAA!")),
            ("offsets", serde_json::json!("AAAAAAA=")),
        ] {
            let mut state = good.clone();
            state["compact"][key] = bad.clone();
            assert!(Window::load("test", state).is_err(), "{key}: {bad}");
        }
        let none = serde_json::json!({"capacity": 5});
        assert!(Window::load("test", none).is_err());
    }

    #[test]
    fn state_saved_before_blocks_loads_and_bad_blocks_are_refused() {
        let old = serde_json::json!({"capacity": 3, "points": [
            {"t": 0, "v": 1.5}, {"t": 10, "v": 2.25}]});
        let w = Window::load("test", old).unwrap();
        assert_eq!(w.values().collect::<Vec<_>>(), vec![1.5, 2.25]);
        for (phase, bases) in [
            (64, vec![1.5]),
            (0, vec![]),
            (0, vec![1.5, 2.0]),
            (3, vec![f64::NAN]),
        ] {
            let bad = serde_json::json!({"capacity": 3, "points": [
                {"t": 0, "v": 1.5}, {"t": 10, "v": 2.25}],
                "blocks": {"phase": phase, "bases": bases}});
            assert!(Window::load("test", bad).is_err(), "{phase} {bases:?}");
        }
    }
}
