//! The engine: per-series model state for every query, fitted when a series
//! is first seen and updated with each new point; series that disappear
//! from the source are dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use crate::model::{self, Forecast, Model, Point};

pub mod persist;

use persist::SavedSeries;
use crate::query::{Direction, Query};
use crate::read::rate::per_second;
use crate::read::{Labels, Selector, Source};

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
    /// What the forecaster expected for the latest point before seeing it:
    /// (mean, lower, upper) at the query's level.
    pub expected: Option<(f64, f64, f64)>,
}

impl Tracked {
    /// Scores and takes in the points newer than the last one taken;
    /// returns how many were new.
    fn take(&mut self, points: &[Point], level: f64) -> usize {
        let since = self.last_t;
        let mut n = 0;
        for p in points.iter().filter(|p| p.t > since) {
            let score = self.anomaly.score(*p);
            self.expected = self
                .forecaster
                .forecast(1, level)
                .map(|f| (f.mean[0], f.lower[0], f.upper[0]));
            self.anomaly.update(*p);
            self.forecaster.update(*p);
            self.last_t = p.t;
            push_recent(&mut self.recent, (p.t, p.v, score));
            n += 1;
        }
        n
    }

    /// Refits both models on `history` (the scores already given stay).
    fn refit(&mut self, q: &Query, history: &[Point]) {
        for m in [&mut self.anomaly, &mut self.forecaster] {
            if let Err(e) = m.fit(history) {
                tracing::warn!(query = %q.config.name, model = m.name(), error = %e, "refit failed; keeping the model as it was");
            }
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
    /// Series resumed from saved state.
    pub resumed: usize,
    /// Series dropped because the source no longer has them.
    pub dropped: usize,
    /// Queries whose read failed.
    pub read_errors: usize,
    /// Seconds spent reading.
    pub read_seconds: f64,
    /// Seconds spent in models.
    pub model_seconds: f64,
}

/// How the engine reads and refits.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// A series with no point this recent is stale and dropped; also the
    /// overlap of incremental reads (PromQL's lookback delta, 5 min).
    pub lookback_ms: i64,
    /// Refit every series on its whole history this often (`None`: only
    /// when first seen; models still learn online).
    pub fit_every_ms: Option<i64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            fit_every_ms: None,
        }
    }
}

/// When a query was last read and refitted.
#[derive(Debug, Clone, Copy, Default)]
struct Schedule {
    last_read_ms: Option<i64>,
    last_fit_ms: i64,
}

/// All queries and their tracked series.
pub struct Engine {
    queries: Vec<Query>,
    options: EngineOptions,
    schedule: Vec<Schedule>,
    tracked: HashMap<(usize, Labels), Tracked>,
    /// Saved state not yet claimed by a series seen since the start.
    restored: HashMap<(usize, Labels), SavedSeries>,
}

impl Engine {
    /// An engine over checked queries.
    pub fn new(queries: Vec<Query>, options: EngineOptions) -> Engine {
        Engine {
            schedule: vec![Schedule::default(); queries.len()],
            queries,
            options,
            tracked: HashMap::new(),
            restored: HashMap::new(),
        }
    }

    /// Offers saved state: a series seen later whose query and model names
    /// still match resumes from it instead of being refitted. State of
    /// queries that no longer exist is ignored.
    pub fn restore(&mut self, saved: Vec<SavedSeries>) -> usize {
        let mut n = 0;
        for s in saved {
            let Some(qi) = self.queries.iter().position(|q| q.config.name == s.query) else {
                continue;
            };
            let c = &self.queries[qi].config;
            if c.anomaly_model != s.anomaly.0 || c.forecast_model != s.forecaster.0 {
                continue;
            }
            self.restored.insert((qi, s.labels.clone()), s);
            n += 1;
        }
        n
    }

    /// The state of every tracked series (and of restored series not seen
    /// again yet), to be saved.
    pub fn snapshot(&self) -> Vec<SavedSeries> {
        let mut out: Vec<SavedSeries> = self
            .tracked
            .values()
            .map(|t| SavedSeries {
                query: self.queries[t.query].config.name.clone(),
                labels: t.labels.clone(),
                anomaly: (t.anomaly.name().to_string(), t.anomaly.save()),
                forecaster: (t.forecaster.name().to_string(), t.forecaster.save()),
                last_t: t.last_t,
                recent: t.recent.iter().copied().collect(),
            })
            .collect();
        out.extend(self.restored.values().cloned());
        out
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
        // Saved state of series that have not come back within their
        // query's history window is forgotten.
        let queries = &self.queries;
        self.restored
            .retain(|(qi, _), s| s.last_t >= now_ms - queries[*qi].config.history.as_millis() as i64);
        let lookback = self.options.lookback_ms;
        for qi in 0..self.queries.len() {
            let q = &self.queries[qi];
            let history_from = now_ms - q.config.history.as_millis() as i64;
            let schedule = &self.schedule[qi];
            // The first read and every `fit_every` read the whole history and
            // refit; the others read only what is new (plus the lookback, so
            // that late samples and rates across the boundary are not lost).
            let refit = match schedule.last_read_ms {
                None => true,
                Some(_) => self.options.fit_every_ms.is_some_and(|f| now_ms - schedule.last_fit_ms >= f),
            };
            let from = match schedule.last_read_ms {
                Some(last) if !refit => (last - lookback).max(history_from),
                _ => history_from,
            };
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
                let points = transform(q, row.points);
                // A series with no point within the lookback is stale, as
                // PromQL would have it: it is no longer analysed.
                if points.last().is_none_or(|p| p.t < now_ms - lookback) {
                    continue;
                }
                report.series += 1;
                let key = (qi, row.labels);
                seen.insert(key.1.clone());
                if let Some(t) = self.tracked.get_mut(&key) {
                    report.points += t.take(&points, q.config.level);
                    if refit {
                        t.refit(q, &points);
                        report.fitted += 1;
                    }
                    refresh_forecast(t, q);
                    continue;
                }
                // A series first seen in an incremental read gets its own
                // history read, so that it is fitted on as much as the others.
                let history = if from > history_from {
                    let exact = Selector::exact(&key.1);
                    match source.read(&exact, history_from, now_ms) {
                        Ok(mut r) if !r.is_empty() => transform(q, r.swap_remove(0).points),
                        _ => points,
                    }
                } else {
                    points
                };
                let resumed = self.restored.remove(&key).and_then(|saved| resume(qi, q, saved, &history));
                let t = match resumed {
                    Some((t, taken)) => {
                        report.resumed += 1;
                        report.points += taken;
                        t
                    }
                    None => {
                        let Ok(t) = new_tracked(qi, q, key.1.clone(), &history) else {
                            continue;
                        };
                        report.fitted += 1;
                        report.points += history.len();
                        t
                    }
                };
                self.tracked.insert(key, t);
            }
            let before = self.tracked.len();
            self.tracked.retain(|(q, labels), _| *q != qi || seen.contains(labels));
            report.dropped += before - self.tracked.len();
            report.model_seconds += started.elapsed().as_secs_f64();
            let schedule = &mut self.schedule[qi];
            schedule.last_read_ms = Some(now_ms);
            if refit {
                schedule.last_fit_ms = now_ms;
            }
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
        expected: None,
    };
    while t.recent.len() > RECENT {
        t.recent.pop_front();
    }
    refresh_forecast(&mut t, q);
    Ok(t)
}

/// Rebuilds a series from saved state and takes in the points newer than
/// it; `None` when the state does not load (the series is then refitted).
fn resume(qi: usize, q: &Query, saved: SavedSeries, points: &[Point]) -> Option<(Tracked, usize)> {
    let mut anomaly = model::build(&q.config.anomaly_model, &q.config.params).ok()?;
    let mut forecaster = model::build(&q.config.forecast_model, &q.config.params).ok()?;
    if let Err(e) = anomaly.load(saved.anomaly.1).and_then(|_| forecaster.load(saved.forecaster.1)) {
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
    };
    let taken = t.take(points, q.config.level);
    refresh_forecast(&mut t, q);
    Some((t, taken))
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

/// The points a query analyses: the values, or their per-second rate.
fn transform(q: &Query, points: Vec<Point>) -> Vec<Point> {
    if q.config.rate { per_second(&points) } else { points }
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
        let mut e = Engine::new(vec![query(None)], EngineOptions::default());
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
    fn a_restart_resumes_from_saved_state_without_refitting() {
        let store = Store::new(3_600_000, 10_000);
        let mut e = Engine::new(vec![query(None)], EngineOptions::default());
        for i in 0..40 {
            store.ingest(i * 1000, &[load("a", 1.0 + 0.1 * ((i * 7) % 5) as f64)]);
            e.cycle(&store, i * 1000);
        }
        let saved = e.snapshot();
        let before = e.tracked()[0].recent.clone();
        let mut e2 = Engine::new(vec![query(None)], EngineOptions::default());
        assert_eq!(e2.restore(saved.clone()), 1);
        // Only the spike is new; it is judged by the restored model.
        store.ingest(40_000, &[load("a", 9.0)]);
        let r = e2.cycle(&store, 40_000);
        assert_eq!((r.resumed, r.fitted, r.points), (1, 0, 1));
        let t = e2.tracked();
        assert!(t[0].score() > 0.99, "{}", t[0].score());
        assert_eq!(t[0].recent.len(), before.len() + 1);
        // A query whose models changed does not take the old state.
        let mut other = query(None);
        other.config.anomaly_model = "zscore".into();
        let mut e3 = Engine::new(vec![other], EngineOptions::default());
        assert_eq!(e3.restore(saved), 0);
    }

    /// Records every read, to check what the engine asks for.
    struct Recording<'a>(&'a Store, std::sync::Mutex<Vec<(String, i64, i64)>>);
    impl Source for Recording<'_> {
        fn read(
            &self,
            selector: &Selector,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<crate::read::SeriesData>, crate::read::ReadError> {
            self.1.lock().unwrap().push((selector.to_string(), from_ms, to_ms));
            self.0.read(selector, from_ms, to_ms)
        }
    }

    #[test]
    fn reads_are_incremental_and_new_series_get_their_history() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let opts = EngineOptions {
            lookback_ms: 60_000,
            fit_every_ms: Some(2_400_000),
        };
        let mut e = Engine::new(vec![query(None)], opts);
        let hour = 3_600_000;
        for i in 0..400 {
            let t = hour + i * 15_000;
            let mut fams = vec![load("a", 1.0)];
            if i >= 300 {
                fams.push(load("b", 2.0));
            }
            store.ingest(t, &fams);
        }
        let src = Recording(&store, Default::default());
        let now = hour + 240 * 15_000;
        e.cycle(&src, now);
        let later = hour + 399 * 15_000;
        let r = e.cycle(&src, later);
        let reads = src.1.lock().unwrap().clone();
        // First read: the whole history window; second: from the last read
        // minus the lookback; then b's own history, read exactly.
        assert_eq!(reads[0].1, now - hour);
        assert_eq!(reads[1].1, now - 60_000);
        assert!(reads[2].0.contains("instance=\"b\""), "{reads:?}");
        assert_eq!(reads[2].1, later - hour);
        assert_eq!(r.fitted, 1, "b is fitted, a is not refitted yet");
        let b = e.tracked().into_iter().find(|t| t.labels.iter().any(|(_, v)| v == "b")).unwrap();
        assert_eq!(b.recent.len(), 100, "b was fitted on all of its history");
        // Once fit_every has passed, everything is refitted from a full read.
        let r = e.cycle(&src, later + 20_000);
        assert_eq!(src.1.lock().unwrap().last().unwrap().1, later + 20_000 - hour);
        assert_eq!(r.fitted, 2);
    }

    #[test]
    fn breach_time_follows_the_trend() {
        let store = Store::new(3_600_000, 10_000);
        let th = Threshold {
            value: 200.0,
            direction: Direction::Above,
        };
        let mut e = Engine::new(vec![query(Some(th))], EngineOptions::default());
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
