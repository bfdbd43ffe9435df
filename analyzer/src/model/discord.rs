//! `discord`: how unlike everything seen before the newest stretch of the
//! series is. The stretch is the last `m` points (one season, found by
//! periodogram or given as `season`), centred on its mean; its distance to
//! the nearest earlier stretch of the kept history (the series' left matrix
//! profile) is large when the series takes a shape it has not taken before
//! — a malformed heartbeat, a cycle cut short — even when every value lies
//! within the usual range, which forecast residuals often miss on series
//! whose cycle jitters in phase. Distances are scored by their own recent
//! distribution (rank, then an exponential tail), so 0.99 reads "1 in 100".
//!
//! Written by hand: no maintained Rust crate computes an online left matrix
//! profile; the search is a plain nearest-neighbour scan with early
//! abandoning over at most [`MAX_KEEP`] points.

use std::cell::Cell;

use serde::{Deserialize, Serialize};

use super::calibrate::Recent;
use super::season::detect_sampled;
use super::window::Window;
use super::{Forecast, Model, ModelError, ModelParams, Point};

/// Longest stretch compared (points); longer seasons are compared by their
/// last [`MAX_LENGTH`] points.
pub const MAX_LENGTH: usize = 256;
/// Shortest stretch compared.
const MIN_LENGTH: usize = 4;
/// Stretch length when the series shows no season.
const DEFAULT_LENGTH: usize = 16;
/// Most points kept to search (a stretch is compared with those ending in
/// them).
const MAX_KEEP: usize = 4096;
/// Seasons of history kept, at least.
const CYCLES: usize = 16;
/// Points of a history whose distances are measured at fit: as many as
/// [`Recent`] keeps.
const MEASURED: usize = 1000;

/// Nearest-earlier-stretch distance of the newest `m` points.
pub struct Discord {
    params: ModelParams,
    /// Stretch length; 0 before the first fit.
    m: usize,
    /// Points of history searched.
    keep: usize,
    /// The newest values (up to twice `keep`, trimmed in blocks).
    values: Vec<f64>,
    /// The newest distances, which score the next.
    distances: Recent,
    /// The last point scored and its distance, which `update` reuses.
    last: Cell<Option<(i64, u64, f64)>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    m: usize,
    keep: usize,
    values: Vec<f64>,
    distances: Vec<f32>,
}

impl Discord {
    /// A model that has seen nothing yet; its stretch length is the season
    /// (given, or detected at fit).
    pub fn new(params: ModelParams) -> Discord {
        Discord {
            params,
            m: 0,
            keep: 0,
            values: Vec::new(),
            distances: Recent::default(),
            last: Cell::new(None),
        }
    }

    /// A model comparing stretches of `m` points whatever the history
    /// shows (`auto` passes the season it found).
    pub fn with_length(params: ModelParams, m: usize) -> Discord {
        let mut d = Discord::new(ModelParams {
            season: Some(m),
            ..params
        });
        d.set_length(m);
        d
    }

    /// True once it scores points.
    pub fn ready(&self) -> bool {
        self.distances.ready()
    }

    fn set_length(&mut self, m: usize) {
        self.m = m.clamp(MIN_LENGTH, MAX_LENGTH);
        self.keep = self.params.window.max(CYCLES * self.m).min(MAX_KEEP);
    }

    /// Stretches ending this close to the newest one overlap it too much to
    /// count as earlier occurrences (the matrix profile's exclusion zone).
    fn exclusion(&self) -> usize {
        (self.m / 2).max(1)
    }

    /// Distance (root mean square per point) from the stretch ending with
    /// `v` to its nearest earlier stretch; `None` while there are no
    /// earlier stretches.
    fn distance(&self, v: f64) -> Option<f64> {
        let m = self.m;
        let n = self.values.len();
        if m == 0 || n < m + self.exclusion() + m {
            return None;
        }
        let hist = &self.values[n.saturating_sub(self.keep)..];
        let len = hist.len();
        // The query: the newest m - 1 values and v, centred.
        let mut q: Vec<f64> = hist[len - (m - 1)..].to_vec();
        q.push(v);
        let mean = q.iter().sum::<f64>() / m as f64;
        q.iter_mut().for_each(|x| *x -= mean);
        // Candidate stretches start at s and end at s + m - 1, at least
        // `exclusion` before the query's last point (index len).
        let last_start = (len + 1).checked_sub(self.exclusion() + m)?;
        let mut sum: f64 = hist[..m].iter().sum();
        let mut best = f64::INFINITY;
        for s in 0..=last_start {
            if s > 0 {
                sum += hist[s + m - 1] - hist[s - 1];
            }
            let mu = sum / m as f64;
            let mut d = 0.0;
            for (a, b) in q.iter().zip(&hist[s..s + m]) {
                let e = a - (b - mu);
                d += e * e;
                if d >= best {
                    break;
                }
            }
            if d < best {
                best = d;
            }
        }
        best.is_finite().then(|| (best / m as f64).sqrt())
    }

    /// The distance of `point`, reusing the one `score` computed.
    fn distance_of(&self, point: Point) -> Option<f64> {
        if let Some((t, bits, d)) = self.last.get()
            && t == point.t
            && bits == point.v.to_bits()
        {
            return Some(d);
        }
        self.distance(point.v)
    }

    /// Takes a value in, recording its distance when `measure` is set.
    fn advance(&mut self, point: Point, measure: bool) {
        if !point.v.is_finite() || self.m == 0 {
            return;
        }
        if measure && let Some(d) = self.distance_of(point) {
            self.distances.push(d);
        }
        self.last.set(None);
        self.values.push(point.v);
        if self.values.len() >= 2 * self.keep {
            let extra = self.values.len() - self.keep;
            self.values.drain(..extra);
        }
    }
}

impl Model for Discord {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        let mut w = Window::new(history.len().max(1));
        w.fill(history);
        let points: Vec<Point> = w.points().filter(|p| p.v.is_finite()).collect();
        let m = match self.params.season {
            Some(s) => s,
            None => w
                .step_ms()
                .and_then(|step| detect_sampled(&points, step).first().copied())
                .unwrap_or(DEFAULT_LENGTH),
        };
        self.set_length(m);
        self.values.clear();
        self.distances = Recent::default();
        self.last.set(None);
        // Distances are measured for the newest points only: those are the
        // ones kept to score by. A history too short for a hundred of them
        // is kept, and the model scores once the series has grown enough.
        let measure_from = points.len().saturating_sub(MEASURED);
        for (i, p) in points.iter().enumerate() {
            self.advance(*p, i >= measure_from);
        }
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if !self.distances.ready() || !point.v.is_finite() {
            return 0.0;
        }
        match self.distance(point.v) {
            Some(d) => {
                self.last.set(Some((point.t, point.v.to_bits(), d)));
                self.distances.score(d).unwrap_or(0.0)
            }
            None => 0.0,
        }
    }

    fn update(&mut self, point: Point) {
        self.advance(point, true);
    }

    fn forecast(&self, _steps: usize, _level: f64) -> Option<Forecast> {
        None
    }

    fn save(&self) -> serde_json::Value {
        let from = self.values.len().saturating_sub(self.keep);
        serde_json::to_value(Saved {
            m: self.m,
            keep: self.keep,
            values: self.values[from..].to_vec(),
            distances: self.distances.values().to_vec(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::BadState {
            model: "discord",
            reason,
        };
        let s: Saved = serde_json::from_value(state).map_err(|e| bad(e.to_string()))?;
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&s.m) || s.keep < s.m || s.keep > MAX_KEEP {
            return Err(bad(format!("bad length {} or history {}", s.m, s.keep)));
        }
        if s.values.iter().any(|v| !v.is_finite()) {
            return Err(bad("values not finite".into()));
        }
        self.m = s.m;
        self.keep = s.keep;
        self.values = s.values;
        self.distances = Recent::restored(s.distances);
        self.last.set(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A beat every `period` points whose phase jitters by a point, with
    /// a little noise: a pulse of height 5 followed by a dip.
    fn beats(n: usize, period: usize) -> Vec<Point> {
        let mut state: u64 = 0x2545f4914f6cdd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut v = Vec::with_capacity(n);
        let mut beat_at = 3;
        for i in 0..n {
            let k = i as i64 - beat_at as i64;
            let x = match k {
                0 => 5.0,
                1 => -1.5,
                2 => 1.0,
                _ => 0.0,
            };
            if k == 2 {
                beat_at += period + if next() > 0.2 { 1 } else { 0 };
            }
            v.push(Point {
                t: i as i64 * 1000,
                v: x + 0.05 * next(),
            });
        }
        v
    }

    #[test]
    fn a_malformed_beat_scores_high_and_a_normal_one_low() {
        let h = beats(3000, 20);
        let mut d = Discord::new(ModelParams::default());
        d.fit(&h[..2000]).unwrap();
        assert!((19..=21).contains(&d.m), "stretch {}", d.m);
        let mut normal = Vec::new();
        for p in &h[2000..2600] {
            normal.push(d.score(*p));
            d.update(*p);
        }
        let alarms = normal.iter().filter(|s| **s > 0.99).count();
        assert!(alarms <= 12, "{alarms} of 600 normal points above 0.99");
        // A beat of the usual height but twice as wide: no value is out of
        // range, its shape is new.
        let mut rest: Vec<Point> = h[2600..].to_vec();
        let start = rest.iter().position(|p| p.v > 4.0).unwrap();
        rest[start + 1].v = 5.0;
        rest[start + 2].v = -1.5;
        let mut peak: f64 = 0.0;
        for p in &rest[..start + 6] {
            peak = peak.max(d.score(*p));
            d.update(*p);
        }
        assert!(peak > 0.99, "malformed beat scored {peak}");
    }

    #[test]
    fn state_round_trips_and_bad_state_is_refused() {
        let h = beats(800, 20);
        let mut d = Discord::new(ModelParams::default());
        d.fit(&h[..700]).unwrap();
        let mut e = Discord::new(ModelParams::default());
        e.load(d.save()).unwrap();
        for p in &h[700..] {
            assert_eq!(d.score(*p), e.score(*p));
            d.update(*p);
            e.update(*p);
        }
        let mut s = d.save();
        s["m"] = serde_json::json!(1);
        assert!(e.load(s).is_err());
        assert!(e.load(serde_json::json!({"m": 20})).is_err());
    }

    #[test]
    fn a_short_history_scores_nothing_until_the_series_grows() {
        let h = beats(400, 20);
        let mut d = Discord::new(ModelParams {
            season: Some(20),
            ..ModelParams::default()
        });
        d.fit(&h[..30]).unwrap();
        assert_eq!(d.score(h[30]), 0.0);
        let mut first = None;
        for (i, p) in h[30..].iter().enumerate() {
            if first.is_none() && d.ready() {
                first = Some(30 + i);
            }
            if !d.ready() {
                assert_eq!(d.score(*p), 0.0);
            }
            d.update(*p);
        }
        // Distances start once two stretches and the exclusion zone fit
        // (50 points); a hundred of them are needed to score.
        assert_eq!(first, Some(150));
    }
}
