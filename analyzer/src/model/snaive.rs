//! `snaive`: the seasonal naive forecast — each point is expected to repeat
//! the value one season earlier (the last value when there is no season).
//! The baseline every other forecaster must beat. The season comes from
//! the `season` parameter or is detected on the history at fit time.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use super::resid::Errors;
use super::season::{detect_sampled, regular};
use super::window::{Window, future_times};
use super::{Forecast, Model, ModelError, ModelParams, Point, score_from_z};

/// Levels whose bound half-widths the cache keeps (the query's level and
/// the odd other one); a further level is computed afresh on each call.
const CACHED_LEVELS: usize = 4;

/// Seasonal naive over a window of at least four seasons.
pub struct SNaive {
    params: ModelParams,
    window: Window,
    season: usize,
    /// The fitted view of the current window, summarised. Scoring,
    /// forecasting at one or more horizons and checking readiness all ask
    /// for the view between two points; working it out (a grid, seasonal
    /// errors and their sorts, thousands of points) once per window
    /// instead of on every call is most of the model's cost online.
    cache: RefCell<Cache>,
}

/// What [`SNaive`] keeps of its view between calls.
#[derive(Default)]
struct Cache {
    /// The view of the current window (`Some(None)`: too short for one);
    /// `None` once the window has changed.
    view: Option<Option<Summary>>,
    /// Levels asked for (as bits), whose half-widths the summary holds.
    levels: Vec<u64>,
}

/// A [`View`] without what the calls no longer need: the last season of
/// the grid (all a forecast repeats), the robust scale and the bound
/// half-widths at the levels asked for, not the sorted errors.
struct Summary {
    /// The last season of the grid; `None` when it is the window's last
    /// season (evenly spaced points are their own grid).
    tail: Option<Vec<f64>>,
    step: i64,
    last_t: i64,
    sigma: f64,
    halves: Vec<(u64, f64)>,
}

impl Summary {
    fn of(v: View, s: usize, levels: &[u64], window: &Window) -> Summary {
        let n = v.y.len();
        Summary {
            tail: (!window.evenly_spaced()).then(|| v.y[n - s..].to_vec()),
            step: v.step,
            last_t: v.last_t,
            sigma: v.errors.sigma,
            halves: levels
                .iter()
                .map(|l| (*l, v.errors.half_width(f64::from_bits(*l))))
                .collect(),
        }
    }

    /// Mean and scale growth `h` steps after the last point (the value
    /// `k` seasons before, for the fewest `k` that reach the grid).
    fn at(&self, window: &Window, s: usize, h: usize) -> (f64, f64) {
        let k = h.div_ceil(s);
        let back = k * s - h;
        let v = match &self.tail {
            Some(tail) => tail[s - 1 - back],
            None => window.value_back(back).unwrap_or(f64::NAN),
        };
        (v, (k as f64).sqrt())
    }

    /// [`Errors::score`] with the kept scale.
    fn score(&self, e: f64, growth: f64) -> f64 {
        score_from_z(e / (self.sigma * growth.max(1.0)))
    }

    fn half(&self, level: f64) -> Option<f64> {
        let bits = level.to_bits();
        self.halves
            .iter()
            .find(|(l, _)| *l == bits)
            .map(|(_, h)| *h)
    }
}

/// The saved state: the season and the window.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    season: usize,
    window: Window,
}

/// The fitted view of the window: the grid, its step and last time, and
/// the seasonal errors.
struct View {
    y: Vec<f64>,
    step: i64,
    last_t: i64,
    errors: Errors,
}

impl SNaive {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> SNaive {
        let season = params.season.unwrap_or(1).max(1);
        let window = Window::new(capacity(&params, season));
        SNaive {
            params,
            window,
            season,
            cache: RefCell::default(),
        }
    }

    /// The forecast `steps` ahead from a summary, bounds `half` wide at
    /// one season ahead.
    fn forecast_with(&self, v: &Summary, half: f64, steps: usize) -> Forecast {
        let mut f = Forecast {
            t: future_times(v.last_t, v.step, steps),
            mean: Vec::with_capacity(steps),
            lower: Vec::with_capacity(steps),
            upper: Vec::with_capacity(steps),
        };
        for h in 1..=steps {
            let (mean, growth) = v.at(&self.window, self.season, h);
            f.mean.push(mean);
            f.lower.push(mean - half * growth);
            f.upper.push(mean + half * growth);
        }
        f
    }

    /// Forgets the view after the window or the season changed.
    fn changed(&mut self) {
        self.cache.get_mut().view = None;
    }

    /// The summarised view of the current window, with the half-width at
    /// `level` when one is given; `None` while the window is too short.
    fn summary<R>(&self, level: Option<f64>, f: impl FnOnce(&Summary, f64) -> R) -> Option<R> {
        let s = self.season;
        let mut cache = self.cache.borrow_mut();
        if let Some(l) = level.map(f64::to_bits)
            && !cache.levels.contains(&l)
        {
            if cache.levels.len() >= CACHED_LEVELS {
                drop(cache);
                let v = Summary::of(self.view()?, s, &[l], &self.window);
                return Some(f(&v, v.halves[0].1));
            }
            cache.levels.push(l);
            cache.view = None;
        }
        if cache.view.is_none() {
            let v = self
                .view()
                .map(|v| Summary::of(v, s, &cache.levels, &self.window));
            cache.view = Some(v);
        }
        let v = cache.view.as_ref()?.as_ref()?;
        let half = level.and_then(|l| v.half(l)).unwrap_or(f64::NAN);
        Some(f(v, half))
    }

    /// The season in use (1 when none).
    pub fn season(&self) -> usize {
        self.season
    }

    fn view(&self) -> Option<View> {
        let step = self.window.step_ms()?;
        let last_t = self.window.last()?.t;
        let points: Vec<Point> = self.window.points().collect();
        let y = regular(&points, step);
        let s = self.season;
        if y.len() < self.params.min_points.max(s + 2) {
            return None;
        }
        let e: Vec<f64> = (s..y.len()).map(|i| y[i] - y[i - s]).collect();
        let level = y[y.len() - 1];
        Some(View {
            errors: Errors::new(&e, level),
            y,
            step,
            last_t,
        })
    }
}

/// Window size: the configured one, or four seasons and a point if longer.
fn capacity(params: &ModelParams, season: usize) -> usize {
    params.window.max(4 * season + 1)
}

impl Model for SNaive {
    fn name(&self) -> &'static str {
        "snaive"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        if self.params.season.is_none() {
            let mut w = Window::new(history.len().max(1));
            w.fill(history);
            let points: Vec<Point> = w.points().collect();
            self.season = match w.step_ms() {
                Some(step) => detect_sampled(&points, step).first().copied().unwrap_or(1),
                None => 1,
            };
        }
        self.window = Window::new(capacity(&self.params, self.season));
        self.window.fill(history);
        self.changed();
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        if !point.v.is_finite() {
            return 0.0;
        }
        self.summary(None, |v, _| {
            let h = ((point.t - v.last_t) as f64 / v.step as f64)
                .round()
                .max(1.0) as usize;
            let (mean, growth) = v.at(&self.window, self.season, h);
            v.score(point.v - mean, growth)
        })
        .unwrap_or(0.0)
    }

    fn update(&mut self, point: Point) {
        if point.v.is_finite() {
            self.window.push(point);
            self.changed();
        }
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        self.summary(Some(level), |v, half| self.forecast_with(v, half, steps))
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            season: self.season,
            window: self.window.clone(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: "snaive",
            reason: e.to_string(),
        })?;
        if s.season == 0 {
            return Err(ModelError::BadState {
                model: "snaive",
                reason: "season 0".into(),
            });
        }
        self.season = s.season;
        self.window = s.window;
        self.changed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_season() {
        let h: Vec<Point> = (0..240)
            .map(|i| Point {
                t: i * 1000,
                v: [1.0, 5.0, 3.0, 9.0, 2.0, 7.0][i as usize % 6] + 0.01 * (i % 5) as f64,
            })
            .collect();
        let mut m = SNaive::new(ModelParams::default());
        m.fit(&h).unwrap();
        assert_eq!(m.season(), 6);
        let f = m.forecast(7, 0.95).unwrap();
        for (k, mean) in f.mean.iter().enumerate() {
            let want = h[240 - 6 + (k % 6)].v;
            // As the window holds it (see model::window: to f32 precision
            // of the distance from its block's first value).
            assert!((mean - want).abs() < 1e-7 * want, "step {}", k + 1);
        }
        assert!(f.upper[6] - f.lower[6] > f.upper[0] - f.lower[0]);
        let off = m.score(Point { t: 240_000, v: 9.0 });
        assert!(off > 0.99, "{off}");
    }

    #[test]
    fn the_kept_view_answers_as_a_fresh_one_would() {
        let mut h = crate::model::testdata::noisy(200, 10.0, 1.0);
        // A gap, so that the grid is not the window until it has passed.
        h.remove(120);
        let mut m = SNaive::new(ModelParams {
            season: Some(7),
            ..ModelParams::default()
        });
        m.fit(&h[..150]).unwrap();
        for p in &h[150..] {
            // Several levels, more than the cache keeps, asked twice.
            let kept: Vec<_> = [0.95, 0.5, 0.8, 0.9, 0.99, 0.95, 0.99]
                .iter()
                .map(|l| m.forecast(9, *l))
                .collect();
            let mut fresh = SNaive::new(m.params.clone());
            fresh.load(m.save()).unwrap();
            assert_eq!(fresh.score(*p), m.score(*p));
            for (l, k) in [0.95, 0.5, 0.8, 0.9, 0.99, 0.95, 0.99].iter().zip(&kept) {
                let mut once = SNaive::new(m.params.clone());
                once.load(m.save()).unwrap();
                assert_eq!(&once.forecast(9, *l), k, "level {l}");
            }
            m.update(*p);
        }
        assert!(m.forecast(3, 0.9).is_some());
    }
}
