//! The engine: per-series model state for every query, fitted when a series
//! is first seen and updated with each new point; series that disappear
//! from the source are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::model::{self, Forecast, Model, Point};
use crate::query::{Direction, Query};
use crate::read::rate::per_second;
use crate::read::{Labels, Source};

/// How many recent points of each series the engine keeps for display.
const RECENT: usize = 240;

/// What the engine knows about one series of one query.
pub struct Tracked {
    /// Index of the query in the engine.
    pub query: usize,
    /// The source series' labels (sorted, with `__name__`).
    pub labels: Labels,
    anomaly: Box<dyn Model>,
    forecaster: Box<dyn Model>,
    last_t: i64,
    /// Recent (time, value, score) triples, oldest first.
    pub recent: VecDeque<(i64, f64, f64)>,
    /// The latest forecast, covering the longest horizon.
    pub forecast: Option<Forecast>,
}

impl Tracked {
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
        self.forecaster.name()
    }

    /// Forecast mean and bounds at the point closest to `at_ms`.
    pub fn forecast_at(&self, at_ms: i64) -> Option<(f64, f64, f64)> {
        let f = self.forecast.as_ref()?;
        let i = f.t.iter().position(|t| *t >= at_ms).unwrap_or(f.t.len().checked_sub(1)?);
        Some((f.mean[i], f.lower[i], f.upper[i]))
    }

    /// Seconds from the last point until the forecast mean crosses the
    /// threshold: 0 when already across, +Inf when no crossing is forecast
    /// within the forecast's range.
    pub fn breach_seconds(&self, value: f64, direction: Direction) -> Option<f64> {
        let f = self.forecast.as_ref()?;
        let (last_t, last_v, _) = *self.recent.back()?;
        let crossed = |v: f64| match direction {
            Direction::Above => v >= value,
            Direction::Below => v <= value,
        };
        if crossed(last_v) {
            return Some(0.0);
        }
        // Interpolate between the last point before and the first point
        // across, so that the answer does not jump by whole steps.
        let mut prev = (last_t, last_v);
        for (t, v) in f.t.iter().zip(&f.mean) {
            if crossed(*v) {
                let frac = if *v == prev.1 { 1.0 } else { (value - prev.1) / (v - prev.1) };
                let at = prev.0 as f64 + frac.clamp(0.0, 1.0) * (*t - prev.0) as f64;
                return Some(((at - last_t as f64) / 1000.0).max(0.0));
            }
            prev = (*t, *v);
        }
        Some(f64::INFINITY)
    }
}

/// Counts of one cycle's work.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    /// Series read from the source.
    pub series: usize,
    /// New points taken in.
    pub points: usize,
    /// Series seen for the first time (and fitted).
    pub fitted: usize,
    /// Series dropped because the source no longer has them.
    pub dropped: usize,
    /// Queries whose read failed.
    pub read_errors: usize,
    /// Seconds spent reading.
    pub read_seconds: f64,
    /// Seconds spent in models.
    pub model_seconds: f64,
}

/// All queries and their tracked series.
pub struct Engine {
    queries: Vec<Query>,
    tracked: HashMap<(usize, Labels), Tracked>,
}

impl Engine {
    /// An engine over checked queries.
    pub fn new(queries: Vec<Query>) -> Engine {
        Engine {
            queries,
            tracked: HashMap::new(),
        }
    }

    /// The queries.
    pub fn queries(&self) -> &[Query] {
        &self.queries
    }

    /// Tracked series, sorted by query and labels.
    pub fn tracked(&self) -> Vec<&Tracked> {
        let mut v: Vec<&Tracked> = self.tracked.values().collect();
        v.sort_by(|a, b| (a.query, &a.labels).cmp(&(b.query, &b.labels)));
        v
    }

    /// Reads every query up to `now_ms`, fits new series, scores and takes
    /// in new points, refreshes forecasts and drops vanished series. A query
    /// whose read fails keeps its series as they were.
    pub fn cycle(&mut self, source: &dyn Source, now_ms: i64) -> CycleReport {
        let mut report = CycleReport::default();
        for qi in 0..self.queries.len() {
            let q = &self.queries[qi];
            let from = now_ms - q.config.history.as_millis() as i64;
            let started = Instant::now();
            let rows = match source.read(&q.selector, from, now_ms) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(query = %q.config.name, error = %e, "read failed");
                    report.read_errors += 1;
                    continue;
                }
            };
            report.read_seconds += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let mut seen = HashSet::new();
            for row in rows {
                let points = if q.config.rate { per_second(&row.points) } else { row.points };
                if points.is_empty() {
                    continue;
                }
                report.series += 1;
                let key = (qi, row.labels);
                seen.insert(key.1.clone());
                match self.tracked.get_mut(&key) {
                    Some(t) => {
                        let since = t.last_t;
                        for p in points.iter().filter(|p| p.t > since) {
                            let score = t.anomaly.score(*p);
                            t.anomaly.update(*p);
                            t.forecaster.update(*p);
                            t.last_t = p.t;
                            push_recent(&mut t.recent, (p.t, p.v, score));
                            report.points += 1;
                        }
                        refresh_forecast(t, q);
                    }
                    None => {
                        let Ok(t) = new_tracked(qi, q, key.1.clone(), &points) else {
                            continue;
                        };
                        report.fitted += 1;
                        report.points += points.len();
                        self.tracked.insert(key, t);
                    }
                }
            }
            let before = self.tracked.len();
            self.tracked.retain(|(q, labels), _| *q != qi || seen.contains(labels));
            report.dropped += before - self.tracked.len();
            report.model_seconds += started.elapsed().as_secs_f64();
        }
        report
    }
}

fn new_tracked(qi: usize, q: &Query, labels: Labels, history: &[Point]) -> Result<Tracked, model::ModelError> {
    let mut anomaly = model::build(&q.config.anomaly_model, &q.config.params)?;
    let mut forecaster = model::build(&q.config.forecast_model, &q.config.params)?;
    anomaly.fit(history)?;
    forecaster.fit(history)?;
    let mut t = Tracked {
        query: qi,
        labels,
        anomaly,
        forecaster,
        last_t: history.last().map(|p| p.t).unwrap_or(i64::MIN),
        recent: history.iter().map(|p| (p.t, p.v, 0.0)).collect(),
        forecast: None,
    };
    while t.recent.len() > RECENT {
        t.recent.pop_front();
    }
    refresh_forecast(&mut t, q);
    Ok(t)
}

fn push_recent(recent: &mut VecDeque<(i64, f64, f64)>, r: (i64, f64, f64)) {
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(r);
}

/// Forecasts far enough to cover the longest horizon (and, with a
/// threshold, a longer range for the breach time), in the model's steps.
fn refresh_forecast(t: &mut Tracked, q: &Query) {
    let Some(step) = step_ms(&t.recent) else {
        t.forecast = None;
        return;
    };
    let longest = q.config.horizons.iter().max().map(|h| h.as_millis() as i64).unwrap_or(0);
    // Breach times are looked for up to four times the history's length.
    let breach_range = if q.config.threshold.is_some() { 4 * q.config.history.as_millis() as i64 } else { 0 };
    let steps = (longest.max(breach_range) / step.max(1)).clamp(1, 10_000) as usize;
    t.forecast = t.forecaster.forecast(steps, q.config.level);
}

fn step_ms(recent: &VecDeque<(i64, f64, f64)>) -> Option<i64> {
    let mut d: Vec<i64> = recent.iter().zip(recent.iter().skip(1)).map(|(a, b)| b.0 - a.0).filter(|d| *d > 0).collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    Some(*d.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{QueryConfig, Threshold};
    use crate::read::store::Store;
    use imd_exporter::exposition::Family;
    use std::time::Duration;

    fn query(threshold: Option<Threshold>) -> Query {
        Query::new(QueryConfig {
            name: "load".into(),
            selector: "node_load1".into(),
            rate: false,
            anomaly_model: "mad".into(),
            forecast_model: "drift".into(),
            params: Default::default(),
            horizons: vec![Duration::from_secs(60)],
            level: 0.95,
            threshold,
            history: Duration::from_secs(3600),
        })
        .unwrap()
    }

    fn load(host: &str, v: f64) -> Family {
        let mut f = Family::gauge("node_load1", "load");
        f.push([("instance", host)], v);
        f
    }

    #[test]
    fn scores_a_spike_online_and_drops_vanished_series() {
        let store = Store::new(3_600_000, 10_000);
        let mut e = Engine::new(vec![query(None)]);
        for i in 0..60 {
            let v = 1.0 + 0.1 * ((i * 7) % 5) as f64;
            store.ingest(i * 1000, &[load("a", v), load("b", v)]);
            e.cycle(&store, i * 1000);
        }
        let t = e.tracked();
        assert_eq!(t.len(), 2);
        assert!(t.iter().all(|t| t.score() < 0.9), "quiet series are not anomalous");
        store.ingest(60_000, &[load("a", 9.0), load("b", 1.1)]);
        let r = e.cycle(&store, 60_000);
        assert_eq!(r.points, 2);
        let t = e.tracked();
        assert!(t[0].score() > 0.99, "the spike on a: {}", t[0].score());
        assert!(t[1].score() < 0.9);
        // b stops reporting: once it ages out of the store it is dropped.
        let store2 = Store::new(3_600_000, 10_000);
        store2.ingest(61_000, &[load("a", 1.0)]);
        let r = e.cycle(&store2, 61_000);
        assert_eq!(r.dropped, 1);
        assert_eq!(e.tracked().len(), 1);
    }

    #[test]
    fn breach_time_follows_the_trend() {
        let store = Store::new(3_600_000, 10_000);
        let th = Threshold {
            value: 200.0,
            direction: Direction::Above,
        };
        let mut e = Engine::new(vec![query(Some(th))]);
        for i in 0..50 {
            store.ingest(i * 10_000, &[load("a", 100.0 + i as f64)]);
        }
        e.cycle(&store, 490_000);
        let t = &e.tracked()[0];
        // 149 now, +1 per 10 s: 200 in 51 steps = 510 s.
        let s = t.breach_seconds(th.value, th.direction).unwrap();
        assert!((s - 510.0).abs() < 15.0, "{s}");
        assert_eq!(t.breach_seconds(100.0, Direction::Above), Some(0.0));
        assert_eq!(t.breach_seconds(0.0, Direction::Below), Some(f64::INFINITY));
    }
}
