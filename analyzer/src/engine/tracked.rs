//! One series of one query: its models, its recent points and scores, and
//! its latest forecast.

use std::collections::VecDeque;

use super::persist::{ModelState, SavedSeries};
use crate::model::threshold::Band;
use crate::model::{self, Forecast, Model, Point};
use crate::query::{Direction, Query, Threshold};
use crate::read::Labels;
use crate::read::rate::per_second;

/// How many recent points of each series the engine keeps for display.
const RECENT: usize = 240;

/// What the engine knows about one series of one query.
pub struct Tracked {
    /// Index of the query in the engine.
    pub query: usize,
    /// The source series' labels (sorted, with `__name__`).
    pub labels: Labels,
    pub(super) anomaly: Box<dyn Model>,
    /// The forecasting model; `None` when it is the anomaly model itself
    /// (same name and parameters, hence the same fit and the same state:
    /// one copy is kept and updated, not two).
    pub(super) forecaster: Option<Box<dyn Model>>,
    pub(super) last_t: i64,
    /// Recent (time, value, score) triples, oldest first.
    pub recent: VecDeque<(i64, f64, f64)>,
    /// The latest forecast, covering the longest horizon.
    pub forecast: Option<Forecast>,
    /// What the forecaster expected for the latest point before seeing it:
    /// (mean, lower, upper) at the query's level.
    pub expected: Option<(f64, f64, f64)>,
    /// The query's learned threshold band, learned at the last fit.
    pub band: Option<Band>,
}

impl Tracked {
    /// The model that forecasts (the anomaly model when they are one).
    fn forecaster(&self) -> &dyn Model {
        self.forecaster.as_deref().unwrap_or(&*self.anomaly)
    }

    /// Scores and takes in the points newer than the last one taken;
    /// returns how many were new.
    pub(super) fn take(&mut self, points: &[Point], level: f64) -> usize {
        let since = self.last_t;
        let mut n = 0;
        for p in points.iter().filter(|p| p.t > since) {
            let score = self.anomaly.score(*p);
            self.expected = self
                .forecaster()
                .forecast(1, level)
                .map(|f| (f.mean[0], f.lower[0], f.upper[0]));
            self.anomaly.update(*p);
            if let Some(f) = &mut self.forecaster {
                f.update(*p);
            }
            self.last_t = p.t;
            push_recent(&mut self.recent, (p.t, p.v, score));
            n += 1;
        }
        n
    }

    /// Refits both models on `history` (the scores already given stay).
    pub(super) fn refit(&mut self, q: &Query, history: &[Point]) {
        self.band = learn_band(q, history);
        for m in std::iter::once(&mut self.anomaly).chain(self.forecaster.as_mut()) {
            if let Err(e) = m.fit(history) {
                tracing::warn!(query = %q.config.name, model = m.name(), error = %e, "refit failed; keeping the model as it was");
            }
        }
    }

    /// The series' state for saving, under its query's name.
    pub fn save(&self, query: &str) -> SavedSeries {
        SavedSeries {
            query: query.to_string(),
            labels: self.labels.clone(),
            anomaly: (
                self.anomaly.name().to_string(),
                ModelState::new(&self.anomaly.save()),
            ),
            // A shared model (the same name for both, see
            // `separate_forecaster`) is saved once: its forecaster's state
            // is null, and a query that restores it shares it again, since
            // state is restored only under the same model names.
            forecaster: (
                self.forecaster().name().to_string(),
                ModelState::new(&match &self.forecaster {
                    Some(f) => f.save(),
                    None => serde_json::Value::Null,
                }),
            ),
            last_t: self.last_t,
            recent: self.recent.iter().copied().collect(),
            group: None,
        }
    }

    /// The latest anomaly score (0 before the first scored point).
    pub fn score(&self) -> f64 {
        self.recent.back().map(|r| r.2).unwrap_or(0.0)
    }

    /// The latest value.
    pub fn value(&self) -> Option<f64> {
        self.recent.back().map(|r| r.1)
    }

    /// Name of the anomaly model.
    pub fn anomaly_model(&self) -> &'static str {
        self.anomaly.name()
    }

    /// Name of the forecasting model.
    pub fn forecast_model(&self) -> &'static str {
        self.forecaster().name()
    }

    /// Forecast mean and bounds at the point closest to `at_ms`.
    pub fn forecast_at(&self, at_ms: i64) -> Option<(f64, f64, f64)> {
        let f = self.forecast.as_ref()?;
        let i =
            f.t.iter()
                .position(|t| *t >= at_ms)
                .unwrap_or(f.t.len().checked_sub(1)?);
        Some((f.mean[i], f.lower[i], f.upper[i]))
    }

    /// Seconds from the last point until the forecast mean crosses the
    /// threshold: 0 when already across, +Inf when no crossing is forecast
    /// within the forecast's range.
    pub fn breach_seconds(&self, value: f64, direction: Direction) -> Option<f64> {
        self.breach_with(|_| value, direction)
    }

    /// [`Tracked::breach_seconds`] for a query's threshold: a fixed value,
    /// or the learned band's level at each forecast time (`None` while the
    /// band is not learned yet).
    pub fn breach(&self, th: &Threshold) -> Option<f64> {
        match (th.value, &self.band) {
            (Some(v), _) => self.breach_seconds(v, th.direction),
            (None, Some(b)) => self.breach_with(|t| b.at(t), th.direction),
            (None, None) => None,
        }
    }

    /// The threshold's level at the latest point.
    pub fn threshold_now(&self, th: &Threshold) -> Option<f64> {
        match (th.value, &self.band) {
            (Some(v), _) => Some(v),
            (None, Some(b)) => Some(b.at(self.recent.back()?.0)),
            (None, None) => None,
        }
    }

    fn breach_with(&self, level: impl Fn(i64) -> f64, direction: Direction) -> Option<f64> {
        let f = self.forecast.as_ref()?;
        let (last_t, last_v, _) = *self.recent.back()?;
        let last = Point {
            t: last_t,
            v: last_v,
        };
        let at = model::threshold::crossing(last, f, level, direction);
        Some(at.map_or(f64::INFINITY, |at| ((at - last_t as f64) / 1000.0).max(0.0)))
    }
}

/// A new series: models fitted on the older part of its history, and the
/// newer part (at most the points kept for display) taken in online, so that
/// recent points get real scores, each judged only on what came before it.
pub(super) fn new_tracked(
    qi: usize,
    q: &Query,
    labels: Labels,
    history: &[Point],
) -> Result<Tracked, model::ModelError> {
    let mut anomaly = model::build(&q.config.anomaly_model, &q.config.params)?;
    let mut forecaster = separate_forecaster(q)?;
    let split = history.len() - (history.len() / 2).min(RECENT);
    let (older, newer) = history.split_at(split);
    anomaly.fit(older)?;
    if let Some(f) = &mut forecaster {
        f.fit(older)?;
    }
    let mut t = Tracked {
        query: qi,
        labels,
        anomaly,
        forecaster,
        last_t: older.last().map(|p| p.t).unwrap_or(i64::MIN),
        recent: older
            .iter()
            .rev()
            .take(RECENT)
            .rev()
            .map(|p| (p.t, p.v, 0.0))
            .collect(),
        forecast: None,
        expected: None,
        band: learn_band(q, history),
    };
    t.take(newer, q.config.level);
    refresh_forecast(&mut t, q);
    Ok(t)
}

/// Rebuilds a series from saved state and takes in the points newer than
/// it; `None` when the state does not load (the series is then refitted).
pub(super) fn resume(
    qi: usize,
    q: &Query,
    saved: SavedSeries,
    points: &[Point],
) -> Option<(Tracked, usize)> {
    let mut anomaly = model::build(&q.config.anomaly_model, &q.config.params).ok()?;
    let mut forecaster = separate_forecaster(q).ok()?;
    let loaded = saved
        .anomaly
        .1
        .value()
        .and_then(|v| anomaly.load(v))
        .and_then(|_| match &mut forecaster {
            Some(f) => saved.forecaster.1.value().and_then(|v| f.load(v)),
            None => Ok(()),
        });
    if let Err(e) = loaded {
        tracing::warn!(query = %q.config.name, error = %e, "saved state unusable; refitting");
        return None;
    }
    let mut t = Tracked {
        query: qi,
        labels: saved.labels,
        anomaly,
        forecaster,
        last_t: saved.last_t,
        recent: saved.recent.into_iter().collect(),
        forecast: None,
        expected: None,
        band: learn_band(q, points),
    };
    let taken = t.take(points, q.config.level);
    refresh_forecast(&mut t, q);
    Some((t, taken))
}

/// The query's forecasting model when it is not its anomaly model (`None`:
/// the same name with the same parameters, so one model serves both).
fn separate_forecaster(q: &Query) -> Result<Option<Box<dyn Model>>, model::ModelError> {
    if q.config.forecast_model == q.config.anomaly_model {
        return Ok(None);
    }
    model::build(&q.config.forecast_model, &q.config.params).map(Some)
}

/// The query's learned threshold band on `history` (`None` without one).
fn learn_band(q: &Query, history: &[Point]) -> Option<Band> {
    q.config.threshold.as_ref()?.learned.as_ref()?.band(history)
}

fn push_recent(recent: &mut VecDeque<(i64, f64, f64)>, r: (i64, f64, f64)) {
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(r);
}

/// Forecasts far enough to cover the longest horizon (and, with a
/// threshold, a longer range for the breach time), in the model's steps.
pub(super) fn refresh_forecast(t: &mut Tracked, q: &Query) {
    let Some(step) = step_ms(&t.recent) else {
        t.forecast = None;
        return;
    };
    let longest = q
        .config
        .horizons
        .iter()
        .max()
        .map(|h| h.as_millis() as i64)
        .unwrap_or(0);
    // Breach times are looked for up to four times the history's length.
    let breach_range = if q.config.threshold.is_some() {
        4 * q.config.history.as_millis() as i64
    } else {
        0
    };
    let steps = (longest.max(breach_range) / step.max(1)).clamp(1, 10_000) as usize;
    t.forecast = t.forecaster().forecast(steps, q.config.level);
}

/// The points a query analyses: the values, or their per-second rate.
/// A series' points as the models take them: decoded, the non-finite
/// values (NaN, ±Inf: missing points to models) left out, and [`transform`]ed.
pub(super) fn prepare(q: &Query, samples: crate::read::Samples) -> Vec<Point> {
    let mut points = samples.into_points();
    points.retain(|p| p.v.is_finite());
    transform(q, points)
}

pub(super) fn transform(q: &Query, points: Vec<Point>) -> Vec<Point> {
    if q.config.rate {
        per_second(&points)
    } else {
        points
    }
}

fn step_ms(recent: &VecDeque<(i64, f64, f64)>) -> Option<i64> {
    let mut d: Vec<i64> = recent
        .iter()
        .zip(recent.iter().skip(1))
        .map(|(a, b)| b.0 - a.0)
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    Some(*d.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::QueryConfig;

    fn query(anomaly: &str, forecast: &str) -> Query {
        let yaml = format!(
            "name: q\nselector: 'm'\nanomaly_model: {anomaly}\nforecast_model: {forecast}\n"
        );
        let config: QueryConfig = serde_yaml_ng::from_str(&yaml).unwrap();
        Query::new(config)
            .map_err(|(k, e)| format!("{k}: {e}"))
            .unwrap()
    }

    #[test]
    fn one_model_serves_both_roles_when_they_are_the_same() {
        let h = crate::model::testdata::noisy(400, 10.0, 1.0);
        let labels: Labels = vec![("__name__".into(), "m".into())];
        let q = query("snaive", "snaive");
        let mut same = new_tracked(0, &q, labels.clone(), &h[..300]).unwrap();
        assert!(same.forecaster.is_none());
        // A separate forecaster of the same kind forecasts alike.
        let other = query("mad", "snaive");
        let mut two = new_tracked(0, &other, labels.clone(), &h[..300]).unwrap();
        assert!(two.forecaster.is_some());
        same.take(&h[300..350], 0.95);
        two.take(&h[300..350], 0.95);
        refresh_forecast(&mut same, &q);
        refresh_forecast(&mut two, &other);
        assert!(same.forecast.is_some());
        assert_eq!(same.forecast, two.forecast);
        assert_eq!(same.expected, two.expected);
        // Saved under both roles; resumed as one model again.
        let saved = same.save("q");
        // Saved once: the forecaster's state is null, its name kept.
        assert_eq!(saved.forecaster.0, "snaive");
        assert_eq!(saved.forecaster.1.value().unwrap(), serde_json::Value::Null);
        assert_ne!(saved.anomaly.1.value().unwrap(), serde_json::Value::Null);
        let (mut back, _) = resume(0, &q, saved, &h[350..]).unwrap();
        assert!(back.forecaster.is_none());
        same.take(&h[350..], 0.95);
        refresh_forecast(&mut same, &q);
        assert_eq!(back.forecast, same.forecast);
        assert_eq!(back.score(), same.score());
        back.take(&h[350..], 0.95);
    }
}
