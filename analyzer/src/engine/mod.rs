//! The engine: per-series model state for every query, fitted when a series
//! is first seen and updated with each new point; series that disappear
//! from their source are dropped. Queries are analysed in parallel, a
//! bounded number at a time.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;

pub mod group;
pub mod memory;
pub mod persist;
mod tracked;

use persist::SavedSeries;
pub use tracked::Tracked;
use tracked::{new_tracked, prepare, refresh_forecast, resume};

use crate::query::Query;
use crate::read::{Labels, Samples, Source};

/// A tracked series missing from this many complete, non-empty answers in a
/// row has vanished from its source and is dropped (until then it keeps its
/// state, unpublished once stale: a restarted source may take a scrape or
/// two to have it again); one whose last point left the history window is
/// dropped at once.
pub const ABSENT_READS_BEFORE_DROP: u32 = 3;

/// Counts of one cycle's work.
#[derive(Debug, Default, Clone)]
pub struct CycleReport {
    /// Series read from the sources.
    pub series: usize,
    /// New points taken in.
    pub points: usize,
    /// Series fitted on their history (first seen, or `fit_every`).
    pub fitted: usize,
    /// Series resumed from saved state.
    pub resumed: usize,
    /// Series dropped because their source no longer has them.
    pub dropped: usize,
    /// Queries whose read failed.
    pub read_errors: usize,
    /// New series left out because their query had `max_series` already.
    pub limited: usize,
    /// Seconds spent reading (summed over queries).
    pub read_seconds: f64,
    /// Seconds spent in models (summed over queries).
    pub model_seconds: f64,
    /// Of `model_seconds`, seconds spent fitting models on history (new
    /// series and `fit_every` refits); the rest is inference.
    pub fit_seconds: f64,
}

impl CycleReport {
    fn add(&mut self, o: &CycleReport) {
        self.series += o.series;
        self.points += o.points;
        self.fitted += o.fitted;
        self.resumed += o.resumed;
        self.dropped += o.dropped;
        self.read_errors += o.read_errors;
        self.limited += o.limited;
        self.read_seconds += o.read_seconds;
        self.model_seconds += o.model_seconds;
        self.fit_seconds += o.fit_seconds;
    }
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
    /// Queries analysed at once.
    pub concurrency: usize,
    /// `(index, count)`: analyse only the series whose label hash modulo
    /// `count` is `index` (see [`crate::shard`]); `None` analyses all.
    pub shard: Option<(u64, u64)>,
    /// The most series one query analyses; series already analysed keep
    /// their place and new ones beyond it are left out and counted
    /// (`None`: no limit).
    pub max_series: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            fit_every_ms: None,
            concurrency: 2,
            shard: None,
            max_series: None,
        }
    }
}

/// One query, the source it reads, and its series.
struct QueryState {
    index: usize,
    query: Query,
    source: usize,
    last_read_ms: Option<i64>,
    last_fit_ms: i64,
    /// How far this query's periodic refits are put ahead of the others'
    /// (see [`QueryState::fitted`]).
    fit_phase_ms: i64,
    /// Refit at the next cycle whatever `fit_every` says.
    fit_next: bool,
    tracked: HashMap<Labels, Tracked>,
    /// Saved state not yet claimed by a series seen since the start.
    restored: HashMap<Labels, SavedSeries>,
    /// New series left out by `max_series`, summed over cycles.
    limited_total: u64,
    /// How many were left out in the last cycle (to log changes only).
    limited_last: usize,
    /// Whether the last read failed: the next answer may lack samples lost
    /// in the outage (a restarted Prometheus), so it drops no series.
    failed_last: bool,
    /// Tracked series missing from the last complete answers, and in how
    /// many in a row ([`ABSENT_READS_BEFORE_DROP`]).
    absent: HashMap<Labels, u32>,
    /// The groups of a multivariate query (their entries in `tracked`
    /// publish the scores).
    groups: group::Groups,
}

/// All queries and their tracked series.
pub struct Engine {
    queries: Vec<Query>,
    states: Vec<QueryState>,
    options: EngineOptions,
    /// When the last cycle ran (for [`Engine::published`]).
    last_cycle_ms: Option<i64>,
}

impl Engine {
    /// An engine over checked queries that all read the first source.
    pub fn new(queries: Vec<Query>, options: EngineOptions) -> Engine {
        Engine::with_sources(queries.into_iter().map(|q| (0, q)).collect(), options)
    }

    /// An engine over checked queries, each with the index of the source
    /// (in the slice given to [`Engine::cycle_sources`]) it reads.
    pub fn with_sources(queries: Vec<(usize, Query)>, options: EngineOptions) -> Engine {
        let count = queries.len().max(1) as i64;
        let fit_every = options.fit_every_ms.unwrap_or(0);
        Engine {
            queries: queries.iter().map(|(_, q)| q.clone()).collect(),
            states: queries
                .into_iter()
                .enumerate()
                .map(|(index, (source, query))| QueryState {
                    index,
                    query,
                    source,
                    last_read_ms: None,
                    last_fit_ms: 0,
                    fit_phase_ms: fit_every / count * index as i64,
                    fit_next: false,
                    tracked: HashMap::new(),
                    restored: HashMap::new(),
                    limited_total: 0,
                    limited_last: 0,
                    failed_last: false,
                    absent: HashMap::new(),
                    groups: HashMap::new(),
                })
                .collect(),
            options,
            last_cycle_ms: None,
        }
    }

    /// Makes the next cycle read every query's whole history and refit
    /// its series, as `fit_every` does (used by `bench-engine` to measure
    /// a periodic refit).
    pub fn refit_next_cycle(&mut self) {
        for st in &mut self.states {
            st.fit_next = true;
        }
    }

    /// Offers saved state: a series (or a multivariate group) seen later
    /// whose query and model names still match resumes from it instead of
    /// being refitted. State of queries that no longer exist is ignored.
    /// Returns how many were taken.
    pub fn restore(&mut self, saved: Vec<SavedSeries>) -> usize {
        let mut n = 0;
        for s in saved {
            let Some(st) = self
                .states
                .iter_mut()
                .find(|st| st.query.config.name == s.query)
            else {
                continue;
            };
            let c = &st.query.config;
            // A group's state goes to a multivariate query with the same
            // detector, a series' to a plain query with the same models.
            let fits = match st.query.target {
                crate::query::Target::Multivariate(_) => {
                    s.group.is_some() && c.anomaly_model == s.anomaly.0
                }
                _ => {
                    s.group.is_none()
                        && c.anomaly_model == s.anomaly.0
                        && c.forecast_model == s.forecaster.0
                }
            };
            if !fits {
                continue;
            }
            st.restored.insert(s.labels.clone(), s);
            n += 1;
        }
        n
    }

    /// The state of every tracked series and group (and of restored ones
    /// not seen again yet), to be saved.
    pub fn snapshot(&self) -> Vec<SavedSeries> {
        self.saved().collect()
    }

    /// The state of every tracked series and group (and of restored ones
    /// not seen yet), each made when the iterator reaches it: for saving
    /// without a copy of every series' state at once.
    pub fn saved(&self) -> impl Iterator<Item = SavedSeries> + '_ {
        self.states.iter().flat_map(|st| {
            let name = &st.query.config.name;
            let tracked = st
                .tracked
                .iter()
                .map(move |(labels, t)| match st.groups.get(labels) {
                    Some(g) => group::save(name, g, t),
                    None => t.save(name),
                });
            tracked.chain(st.restored.values().cloned())
        })
    }

    /// Whether the engine already runs exactly these queries (each with
    /// the index of its source) with these options, so that a reloaded
    /// configuration can keep it as it is.
    pub fn same_setup(&self, queries: &[(usize, Query)], options: &EngineOptions) -> bool {
        // Queries are plain settings whose Debug output shows every field
        // (they do not derive PartialEq: model parameters hold floats), so
        // equal output means equal settings.
        let mine: Vec<(usize, &Query)> = self.states.iter().map(|s| (s.source, &s.query)).collect();
        let theirs: Vec<(usize, &Query)> = queries.iter().map(|(s, q)| (*s, q)).collect();
        format!("{:?}", (mine, self.options)) == format!("{:?}", (theirs, options))
    }

    /// Per query name, how many new series `max_series` has left out so
    /// far (counted again in each cycle they are still left out).
    pub fn series_limited(&self) -> Vec<(&str, u64)> {
        self.states
            .iter()
            .map(|st| (st.query.config.name.as_str(), st.limited_total))
            .collect()
    }

    /// The queries.
    pub fn queries(&self) -> &[Query] {
        &self.queries
    }

    /// Tracked series, sorted by query and labels.
    pub fn tracked(&self) -> Vec<&Tracked> {
        let mut v: Vec<&Tracked> = self
            .states
            .iter()
            .flat_map(|st| st.tracked.values())
            .collect();
        v.sort_by(|a, b| (a.query, &a.labels).cmp(&(b.query, &b.labels)));
        v
    }

    /// The tracked series whose latest point is within the lookback of the
    /// last cycle, the ones whose results are published. A series whose
    /// reads fail (source down, a corrupt chunk) keeps its model state but
    /// goes stale as Prometheus' own series do: its last score and
    /// forecast are not published as if they were current.
    pub fn published(&self) -> Vec<&Tracked> {
        let mut v = self.tracked();
        v.retain(|t| self.is_fresh(t));
        v
    }

    /// Whether `t`'s latest point is within the lookback of the last cycle
    /// (before the first cycle every series counts as fresh).
    pub fn is_fresh(&self, t: &Tracked) -> bool {
        match self.last_cycle_ms {
            Some(now) => {
                let oldest = now - self.options.lookback_ms;
                t.recent.back().is_some_and(|r| r.0 >= oldest)
            }
            None => true,
        }
    }

    /// One cycle over a single source (the in-process store, tests).
    pub fn cycle(&mut self, source: &dyn Source, now_ms: i64) -> CycleReport {
        self.cycle_sources(&[source], now_ms)
    }

    /// Reads every query up to `now_ms` from its source, fits new series,
    /// scores and takes in new points, refreshes forecasts and drops
    /// vanished series. A query whose read fails keeps its series as they
    /// were. At most `concurrency` queries run at once.
    pub fn cycle_sources(&mut self, sources: &[&dyn Source], now_ms: i64) -> CycleReport {
        let options = self.options;
        self.last_cycle_ms = Some(now_ms);
        let workers = options.concurrency.max(1).min(self.states.len().max(1));
        let chunk = self.states.len().div_ceil(workers).max(1);
        let whole_reads = std::sync::Mutex::new(());
        let whole_reads = &whole_reads;
        let reports: Vec<CycleReport> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .states
                .chunks_mut(chunk)
                .map(|states| {
                    scope.spawn(move || {
                        let mut r = CycleReport::default();
                        for st in states.iter_mut() {
                            let Some(src) = sources.get(st.source) else {
                                r.read_errors += 1;
                                continue;
                            };
                            let whole = st.due_for_fit(now_ms, &options);
                            r.add(&st.cycle(*src, now_ms, &options, whole_reads));
                            // The histories this cycle read are freed: give
                            // them back before the next query reads its own,
                            // not at the end of the engine's cycle (a first
                            // fit is one cycle over every query).
                            if whole {
                                memory::release_free();
                            }
                        }
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut total = CycleReport::default();
        for r in &reports {
            total.add(r);
        }
        memory::release_free();
        total
    }
}

/// How a series new to a query's engine started.
enum Started {
    /// From its saved state, having taken this many new points.
    Resumed(Tracked, usize),
    /// Fitted on a history of this many points.
    Fitted(Tracked, usize),
    /// Its models could not be fitted on the history it has (yet).
    Failed,
}

impl QueryState {
    /// Whether this cycle reads the whole history and refits.
    fn due_for_fit(&self, now_ms: i64, options: &EngineOptions) -> bool {
        self.last_read_ms.is_none()
            || self.fit_next
            || options
                .fit_every_ms
                .is_some_and(|f| now_ms - self.last_fit_ms >= f)
    }

    /// Records a full fit at `now_ms`. Every query is fitted at the first
    /// cycle; the first periodic refit of the query with index i of n then
    /// comes i/n of `fit_every` early, so that later ones are spread over
    /// the period instead of all falling on one long cycle.
    fn fitted(&mut self, now_ms: i64, first: bool) {
        self.fit_next = false;
        self.last_fit_ms = if first {
            now_ms - self.fit_phase_ms
        } else {
            now_ms
        };
    }

    /// One cycle of this query. `whole_reads` is held by a cycle that
    /// reads whole histories and fits on them (the first, and periodic
    /// refits), so that only one query's histories are in memory at a time:
    /// two at once were the peak of the engine's memory at a first start.
    /// The fits run on every core either way; what waits is the other
    /// query's read, short next to the fits.
    fn cycle(
        &mut self,
        source: &dyn Source,
        now_ms: i64,
        options: &EngineOptions,
        whole_reads: &std::sync::Mutex<()>,
    ) -> CycleReport {
        let _whole = self
            .due_for_fit(now_ms, options)
            .then(|| whole_reads.lock().unwrap_or_else(|e| e.into_inner()));
        if matches!(self.query.target, crate::query::Target::Multivariate(_)) {
            return group::cycle(self, source, now_ms, options);
        }
        let mut report = CycleReport::default();
        let q = &self.query;
        let qi = self.index;
        let history_from = now_ms - q.config.history.as_millis() as i64;
        let lookback = options.lookback_ms;
        // Saved state of series that have not come back within the history
        // window is forgotten.
        self.restored.retain(|_, s| s.last_t >= history_from);
        // The first read and every `fit_every` read the whole history and
        // refit; the others read only what is new (plus the lookback, so
        // that late samples and rates across the boundary are not lost).
        let refit = self.due_for_fit(now_ms, options);
        let from = match self.last_read_ms {
            Some(last) if !refit => (last - lookback).max(history_from),
            _ => history_from,
        };
        let started = Instant::now();
        // A replica's own series only: sources that can list series read
        // no others (see `read::pushdown`); the filter below stays for the
        // ones that cannot, and for expressions.
        let shard = options
            .shard
            .map(|(index, count)| crate::shard::Shard { index, count });
        let (rows, partial) =
            crate::read::in_sharded_query(&q.config.name, shard.map(Into::into), || {
                q.target.read(source, from, now_ms)
            });
        let rows = match rows {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(query = %q.config.name, error = %e, "read failed");
                report.read_errors += 1;
                self.failed_last = true;
                return report;
            }
        };
        report.read_seconds += started.elapsed().as_secs_f64();
        let started = Instant::now();
        // Series in the answer, fresh or not: the others have vanished.
        let mut present = HashSet::new();
        // The points stay as the source sent them (streamed chunks are
        // decoded by the series' own job below, so that a query's history
        // is not held decoded all at once); `prepare` makes them the
        // models' points.
        let mut rows: Vec<(Labels, Samples)> = rows
            .into_iter()
            // Another replica's series: not read further, not tracked.
            .filter(|row| match options.shard {
                Some((index, count)) => crate::shard::owner(&row.labels, count) == index,
                None => true,
            })
            .map(|row| (row.labels, row.points))
            // A series with no point within the lookback is stale, as
            // PromQL would have it: it is not analysed (nor published) until
            // fresh points come, but keeps its state while it is still in
            // the answers (e.g. the first read after an outage). The last
            // point `prepare` gives is the last finite one (a rate's needs
            // one before it).
            .filter(|(labels, points)| {
                present.insert(labels.clone());
                let nth = if q.config.rate { 2 } else { 1 };
                points
                    .last_finite_t(nth)
                    .is_some_and(|t| t >= now_ms - lookback)
            })
            .collect();
        if let Some(max) = options.max_series {
            let known = rows
                .iter()
                .filter(|(l, _)| self.tracked.contains_key(l))
                .count();
            let mut room = max.saturating_sub(known);
            let before = rows.len();
            rows.retain(|(l, _)| {
                if self.tracked.contains_key(l) {
                    true
                } else if room > 0 {
                    room -= 1;
                    true
                } else {
                    false
                }
            });
            let left_out = before - rows.len();
            if left_out != self.limited_last {
                tracing::warn!(
                    query = %q.config.name,
                    max_series_per_query = max,
                    left_out,
                    "series over the query's limit are not analysed"
                );
                self.limited_last = left_out;
            }
            report.limited += left_out;
            self.limited_total += left_out as u64;
        }
        report.series += rows.len();
        // Known series take in their new points (and refit when due) on
        // every core: with thousands of series in one query, the refits are
        // most of a cycle's work. The rows left over are new series.
        let mut rows: HashMap<Labels, Samples> = rows.into_iter().collect();
        let jobs: Vec<(&mut Tracked, Samples)> = self
            .tracked
            .iter_mut()
            .filter_map(|(labels, t)| rows.remove(labels).map(|points| (t, points)))
            .collect();
        let level = q.config.level;
        let block = Instant::now();
        let (taken, fitted, fit_work, all_work) = jobs
            .into_par_iter()
            .map(|(t, points)| {
                let started = Instant::now();
                let points = prepare(q, points);
                let taken = t.take(&points, level);
                let mut fit_work = 0.0;
                if refit {
                    let fit_started = Instant::now();
                    t.refit(q, &points);
                    fit_work = fit_started.elapsed().as_secs_f64();
                }
                refresh_forecast(t, q);
                let work = started.elapsed().as_secs_f64();
                (taken, usize::from(refit), fit_work, work)
            })
            .reduce(
                || (0, 0, 0.0, 0.0),
                |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3),
            );
        report.points += taken;
        report.fitted += fitted;
        // Fit time is wall time, as model time is (so that inference time,
        // their difference, never goes negative): the block's wall time in
        // the share its jobs spent fitting.
        if all_work > 0.0 {
            report.fit_seconds += block.elapsed().as_secs_f64() * (fit_work / all_work).min(1.0);
        }
        // New series: their history (read here when this read was
        // incremental, so that they are fitted on as much as the others)
        // and saved state are gathered first; each then resumes from its
        // state or is fitted, on every core (after a restart that is every
        // series).
        let mut to_start = Vec::new();
        for (labels, points) in rows {
            let history = if from > history_from {
                let (read, _) = crate::read::in_query(&q.config.name, || {
                    q.target.read_series(source, &labels, history_from, now_ms)
                });
                match read {
                    Some(p) if !p.is_empty() => p.into(),
                    _ => points,
                }
            } else {
                points
            };
            let saved = self.restored.remove(&labels);
            to_start.push((labels, history, saved));
        }
        let block = Instant::now();
        let started_series: Vec<_> = to_start
            .into_par_iter()
            .map(|(labels, history, saved)| {
                let began = Instant::now();
                let history = prepare(q, history);
                // A state that does not load is logged by `resume`; the
                // series is then fitted as a new one.
                if let Some((t, taken)) = saved.and_then(|s| resume(qi, q, s, &history)) {
                    return (labels, Started::Resumed(t, taken), 0.0, began.elapsed());
                }
                let fit_began = Instant::now();
                let fitted = new_tracked(qi, q, labels.clone(), &history);
                let fit_work = fit_began.elapsed().as_secs_f64();
                let started = match fitted {
                    Ok(t) => Started::Fitted(t, history.len()),
                    Err(_) => Started::Failed,
                };
                (labels, started, fit_work, began.elapsed())
            })
            .collect();
        let (fit_work, all_work) = started_series
            .iter()
            .fold((0.0, 0.0), |(f, a), (_, _, fit, all)| {
                (f + fit, a + all.as_secs_f64())
            });
        if all_work > 0.0 {
            report.fit_seconds += block.elapsed().as_secs_f64() * (fit_work / all_work).min(1.0);
        }
        for (labels, started, _, _) in started_series {
            match started {
                Started::Resumed(t, taken) => {
                    report.resumed += 1;
                    report.points += taken;
                    self.tracked.insert(labels, t);
                }
                Started::Fitted(t, points) => {
                    report.fitted += 1;
                    report.points += points;
                    self.tracked.insert(labels, t);
                }
                Started::Failed => {}
            }
        }
        let before = self.tracked.len();
        // A partial answer (a series lost to a corrupt chunk, a stream cut
        // short, a limit) says nothing about the series it lacks: they keep
        // their state and go stale if they stay missing; so does the first
        // answer after failed reads.
        self.absent.retain(|labels, _| !present.contains(labels));
        if !partial && !std::mem::take(&mut self.failed_last) {
            let absent = &mut self.absent;
            // An empty answer from a source that had series (a restarted
            // Prometheus before its first scrape) is not evidence that they
            // vanished; series older than the history window go anyway.
            let answered = !present.is_empty();
            self.tracked.retain(|labels, t| {
                if present.contains(labels) {
                    return true;
                }
                if t.last_t < history_from {
                    absent.remove(labels);
                    return false;
                }
                if !answered {
                    return true;
                }
                let n = absent.entry(labels.clone()).or_default();
                *n += 1;
                if *n < ABSENT_READS_BEFORE_DROP {
                    return true;
                }
                absent.remove(labels);
                false
            });
        }
        report.dropped += before - self.tracked.len();
        if before > self.tracked.len() {
            tracing::info!(
                query = %q.config.name,
                dropped = before - self.tracked.len(),
                "series no longer in the source's answers are dropped"
            );
        }
        report.model_seconds += started.elapsed().as_secs_f64();
        let first = self.last_read_ms.replace(now_ms).is_none();
        if refit {
            self.fitted(now_ms, first);
        }
        report
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::query::{Direction, QueryConfig, Threshold};
    use crate::read::store::Store;
    use crate::read::{Selector, Source};
    use imd_exporter::exposition::Family;
    use std::time::Duration;

    /// A `node_load1` query scored by `mad`, forecast by `drift` (shared
    /// with other modules' tests).
    pub(crate) fn query(threshold: Option<Threshold>) -> Query {
        Query::new(QueryConfig {
            name: "load".into(),
            selector: "node_load1".into(),
            expr: None,
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

    /// A tracked series' `instance` label.
    fn instance(t: &Tracked) -> String {
        let label = t.labels.iter().find(|l| l.0 == "instance");
        label.unwrap().1.clone()
    }

    /// One `node_load1` sample of `host`.
    pub(crate) fn load(host: &str, v: f64) -> Family {
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
        assert!(
            t.iter().all(|t| t.score() < 0.9),
            "quiet series are not anomalous"
        );
        store.ingest(60_000, &[load("a", 9.0), load("b", 1.1)]);
        let r = e.cycle(&store, 60_000);
        assert_eq!(r.points, 2);
        let t = e.tracked();
        assert!(t[0].score() > 0.99, "the spike on a: {}", t[0].score());
        assert!(t[1].score() < 0.9);
        // b stops reporting: once it ages out of the store and is missing
        // from ABSENT_READS_BEFORE_DROP answers in a row, it is dropped.
        let store2 = Store::new(3_600_000, 10_000);
        for i in 0..ABSENT_READS_BEFORE_DROP as i64 {
            store2.ingest(61_000 + i, &[load("a", 1.0)]);
            let r = e.cycle(&store2, 61_000 + i);
            let last = i + 1 == ABSENT_READS_BEFORE_DROP as i64;
            assert_eq!(r.dropped, usize::from(last), "read {i}");
        }
        assert_eq!(e.tracked().len(), 1);
    }

    #[test]
    fn shards_cover_every_series_exactly_once_with_the_same_scores() {
        let store = Store::new(3_600_000, 10_000);
        let hosts: Vec<String> = (0..30).map(|i| format!("h{i}")).collect();
        for i in 0..60 {
            let fams: Vec<Family> = hosts
                .iter()
                .enumerate()
                .map(|(k, h)| load(h, 1.0 + 0.1 * ((i * 7 + k as i64) % 5) as f64))
                .collect();
            store.ingest(i * 1000, &fams);
        }
        let engine = |shard| {
            let mut e = Engine::new(
                vec![query(None)],
                EngineOptions {
                    shard,
                    ..EngineOptions::default()
                },
            );
            let first = e.cycle(&store, 59_000);
            // The fits ran on every core, but fit time is counted as wall
            // time within the model time, as inference is.
            assert!(first.fit_seconds <= first.model_seconds);
            e.refit_next_cycle();
            let refit = e.cycle(&store, 59_500);
            assert!(refit.fit_seconds <= refit.model_seconds);
            e.tracked()
                .iter()
                .map(|t| (t.labels.clone(), t.score()))
                .collect::<Vec<_>>()
        };
        let all = engine(None);
        assert_eq!(all.len(), 30);
        let mut union = Vec::new();
        for index in 0..3 {
            let part = engine(Some((index, 3)));
            assert!(!part.is_empty() && part.len() < 30, "{}", part.len());
            union.extend(part);
        }
        union.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(union, all, "each series in exactly one shard, same score");
    }

    #[test]
    fn max_series_keeps_known_series_and_counts_the_new_ones_left_out() {
        let store = Store::new(3_600_000, 10_000);
        let mut e = Engine::new(
            vec![query(None)],
            EngineOptions {
                max_series: Some(2),
                ..EngineOptions::default()
            },
        );
        let hosts =
            |n: usize| -> Vec<Family> { (0..n).map(|i| load(&format!("h{i}"), 1.0)).collect() };
        for i in 0..20 {
            store.ingest(i * 1000, &hosts(1));
        }
        let r = e.cycle(&store, 19_000);
        assert_eq!((r.series, r.limited), (1, 0));
        // Four more appear: one fits under the limit, three are left out,
        // and h0 keeps its place whatever order the rows come in.
        for i in 20..40 {
            store.ingest(i * 1000, &hosts(5));
        }
        let r = e.cycle(&store, 39_000);
        assert_eq!((r.series, r.limited), (2, 3));
        let names: Vec<String> = e.tracked().into_iter().map(instance).collect();
        assert!(names.contains(&"h0".to_string()), "{names:?}");
        assert_eq!(names.len(), 2);
        // Left out again next cycle, and counted again.
        store.ingest(40_000, &hosts(5));
        let r = e.cycle(&store, 40_000);
        assert_eq!(r.limited, 3);
        assert_eq!(e.series_limited(), vec![("load", 6)]);
        // Without a limit all five are analysed.
        let mut all = Engine::new(vec![query(None)], EngineOptions::default());
        assert_eq!(all.cycle(&store, 40_000).series, 5);
        assert_eq!(all.series_limited(), vec![("load", 0)]);
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

    #[test]
    fn restored_series_resume_on_several_threads_as_on_one_and_broken_states_are_refitted() {
        let store = Store::new(3_600_000, 10_000);
        let hosts = |i: i64, spike: bool| -> Vec<Family> {
            (0..30)
                .map(|h| {
                    let v = 1.0 + 0.1 * ((i * 7 + h) % 5) as f64;
                    load(&format!("h{h}"), if spike && h == 4 { 9.0 } else { v })
                })
                .collect()
        };
        let mut e = Engine::new(vec![query(None)], EngineOptions::default());
        for i in 0..40 {
            store.ingest(i * 1000, &hosts(i, false));
            e.cycle(&store, i * 1000);
        }
        let mut saved = e.snapshot();
        assert_eq!(saved.len(), 30);
        // Three states a model refuses: those series are fitted afresh.
        let broken = persist::ModelState::new(&serde_json::json!({"no": "window"}));
        for s in saved.iter_mut().filter(|s| {
            let host = &s.labels.iter().find(|l| l.0 == "instance").unwrap().1;
            ["h1", "h2", "h3"].contains(&host.as_str())
        }) {
            s.anomaly.1 = broken.clone();
        }
        store.ingest(40_000, &hosts(40, true));
        e.cycle(&store, 40_000);
        let published = |e: &Engine| format!("{:?}", crate::emit::families(e, Default::default()));
        let restart_on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut e2 = Engine::new(vec![query(None)], EngineOptions::default());
            assert_eq!(e2.restore(saved.clone()), 30);
            let r = pool.install(|| e2.cycle(&store, 40_000));
            assert_eq!(
                (r.resumed, r.fitted, r.series),
                (27, 3, 30),
                "{threads} threads"
            );
            e2
        };
        let one = restart_on(1);
        let four = restart_on(4);
        assert_eq!(published(&one), published(&four));
        // A resumed series goes on as the one that never stopped; the spike
        // on h4 is judged by its restored model.
        let by_host = |e: &Engine| -> HashMap<String, (f64, usize)> {
            e.tracked()
                .into_iter()
                .map(|t| (instance(t), (t.score(), t.recent.len())))
                .collect()
        };
        let (ran, back) = (by_host(&e), by_host(&four));
        assert!(back["h4"].0 > 0.99, "{:?}", back["h4"]);
        for h in (0..30).filter(|h| ![1, 2, 3].contains(h)) {
            let host = format!("h{h}");
            assert_eq!(ran[&host], back[&host], "{host}");
        }
    }

    #[test]
    fn a_model_shared_by_both_roles_is_saved_once_and_shared_again() {
        let store = Store::new(3_600_000, 10_000);
        let mut shared = query(None);
        shared.config.forecast_model = "mad".into();
        let mut e = Engine::new(vec![shared.clone()], EngineOptions::default());
        for i in 0..40 {
            store.ingest(i * 1000, &[load("a", 1.0 + 0.1 * ((i * 7) % 5) as f64)]);
            e.cycle(&store, i * 1000);
        }
        let saved = e.snapshot();
        let null = persist::ModelState::new(&serde_json::Value::Null);
        assert_eq!(saved[0].forecaster, ("mad".to_string(), null.clone()));
        assert_ne!(saved[0].anomaly.1, null);
        let mut e2 = Engine::new(vec![shared], EngineOptions::default());
        assert_eq!(e2.restore(saved), 1);
        store.ingest(40_000, &[load("a", 9.0)]);
        e.cycle(&store, 40_000);
        let r = e2.cycle(&store, 40_000);
        assert_eq!((r.resumed, r.fitted), (1, 0));
        // The restored series scores and forecasts as the one that ran on.
        let published = |e: &Engine| format!("{:?}", crate::emit::families(e, Default::default()));
        assert!(published(&e2).contains("imd_forecast"));
        assert_eq!(published(&e), published(&e2));
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
            self.1
                .lock()
                .unwrap()
                .push((selector.to_string(), from_ms, to_ms));
            self.0.read(selector, from_ms, to_ms)
        }
    }

    /// Counts reads in progress at once (each lasts `hold`).
    struct Overlapping<'a> {
        store: &'a Store,
        hold: Duration,
        active: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
    }
    impl Source for Overlapping<'_> {
        fn read(
            &self,
            selector: &Selector,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<crate::read::SeriesData>, crate::read::ReadError> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.active.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            std::thread::sleep(self.hold);
            let rows = self.store.read(selector, from_ms, to_ms);
            self.active.fetch_sub(1, SeqCst);
            rows
        }
    }

    #[test]
    fn whole_history_reads_of_two_queries_do_not_overlap_but_incremental_ones_do() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Store::new(3_600_000, 10_000);
        for i in 0..30 {
            store.ingest(i * 1000, &[load("a", 1.0 + (i % 3) as f64)]);
        }
        let source = Overlapping {
            store: &store,
            hold: Duration::from_millis(300),
            active: Default::default(),
            most: Default::default(),
        };
        let mut e = Engine::new(
            vec![query(None), query(None)],
            EngineOptions {
                concurrency: 2,
                ..EngineOptions::default()
            },
        );
        let first = e.cycle(&source, 29_000);
        assert_eq!(first.fitted, 2);
        assert_eq!(
            source.most.load(SeqCst),
            1,
            "first fits: one query at a time"
        );
        store.ingest(30_000, &[load("a", 2.0)]);
        let next = e.cycle(&source, 30_000);
        assert_eq!((next.fitted, next.points), (0, 2));
        assert_eq!(
            source.most.load(SeqCst),
            2,
            "incremental reads run side by side"
        );
    }

    #[test]
    fn reads_are_incremental_and_new_series_get_their_history() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let opts = EngineOptions {
            lookback_ms: 60_000,
            fit_every_ms: Some(2_400_000),
            concurrency: 1,
            shard: None,
            max_series: None,
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
        let b = e
            .tracked()
            .into_iter()
            .find(|t| t.labels.iter().any(|(_, v)| v == "b"))
            .unwrap();
        assert_eq!(b.recent.len(), 100, "b was fitted on all of its history");
        // Once fit_every has passed, everything is refitted from a full read.
        let r = e.cycle(&src, later + 20_000);
        assert_eq!(
            src.1.lock().unwrap().last().unwrap().1,
            later + 20_000 - hour
        );
        assert_eq!(r.fitted, 2);
    }

    #[test]
    fn periodic_refits_of_the_queries_are_spread_over_fit_every() {
        let store = Store::new(10 * 3_600_000, 100_000);
        let minute = 60_000;
        for i in 0..300 {
            store.ingest(i * minute, &[load("a", 1.0 + 0.1 * (i % 7) as f64)]);
        }
        let mut other = query(None);
        other.config.name = "load_again".into();
        let opts = EngineOptions {
            fit_every_ms: Some(60 * minute),
            concurrency: 1,
            ..EngineOptions::default()
        };
        let mut e = Engine::new(vec![query(None), other], opts);
        let start = 120 * minute;
        assert_eq!(e.cycle(&store, start).fitted, 2, "both fitted at first");
        // Query 1 of 2 is refitted half a period early, then every period;
        // query 0 every period from the start.
        let fitted: Vec<usize> = [20, 31, 45, 61, 91, 121]
            .iter()
            .map(|m| e.cycle(&store, start + m * minute).fitted)
            .collect();
        assert_eq!(fitted, [0, 1, 0, 1, 1, 1]);
        e.refit_next_cycle();
        assert_eq!(e.cycle(&store, start + 122 * minute).fitted, 2);
        assert_eq!(e.cycle(&store, start + 123 * minute).fitted, 0);
    }

    #[test]
    fn a_new_series_gets_online_scores_for_its_recent_history() {
        let store = Store::new(3_600_000, 10_000);
        for i in 0..100 {
            let v = if i == 80 {
                9.0
            } else {
                1.0 + 0.1 * ((i * 7) % 5) as f64
            };
            store.ingest(i * 1000, &[load("a", v)]);
        }
        let mut e = Engine::new(vec![query(None)], EngineOptions::default());
        e.cycle(&store, 99_000);
        let t = &e.tracked()[0];
        let scores: Vec<(i64, f64)> = t.recent.iter().map(|r| (r.0, r.2)).collect();
        let spike = scores.iter().find(|s| s.0 == 80_000).unwrap().1;
        assert!(spike > 0.99, "{spike}");
        let others = scores
            .iter()
            .filter(|s| s.0 >= 50_000 && s.0 != 80_000)
            .map(|s| s.1)
            .fold(0.0, f64::max);
        assert!(others < 0.99, "{others}");
    }

    /// A source over a store that can fail, or answer with only the
    /// first series and say the answer is partial.
    struct Flaky<'a>(&'a Store, std::sync::Mutex<&'static str>);
    impl Source for Flaky<'_> {
        fn read(
            &self,
            selector: &Selector,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<crate::read::SeriesData>, crate::read::ReadError> {
            match *self.1.lock().unwrap() {
                "down" => Err(crate::read::ReadError::Unavailable("down".into())),
                "partial" => {
                    crate::read::mark_partial();
                    let mut rows = self.0.read(selector, from_ms, to_ms)?;
                    rows.truncate(1);
                    Ok(rows)
                }
                _ => self.0.read(selector, from_ms, to_ms),
            }
        }
    }

    #[test]
    fn failed_and_partial_reads_keep_state_and_stale_series_are_not_published() {
        let store = Store::new(3_600_000, 10_000);
        let src = Flaky(&store, std::sync::Mutex::new("ok"));
        let opts = EngineOptions {
            lookback_ms: 10_000,
            ..EngineOptions::default()
        };
        let mut e = Engine::new(vec![query(None)], opts);
        for i in 0..40 {
            // NaN on b now and then: a missing point, not a model input.
            let b = if i % 7 == 3 { f64::NAN } else { 2.0 };
            store.ingest(
                i * 1000,
                &[load("a", 1.0 + 0.1 * (i % 3) as f64), load("b", b)],
            );
        }
        e.cycle(&src, 39_000);
        assert_eq!(e.published().len(), 2);
        let b = e.tracked()[1];
        assert!(b.recent.iter().all(|r| r.1.is_finite() && r.2.is_finite()));
        // A partial answer lacks b: b keeps its state, a takes new points.
        for i in 40..45 {
            store.ingest(i * 1000, &[load("a", 1.0), load("b", 2.0)]);
        }
        *src.1.lock().unwrap() = "partial";
        let r = e.cycle(&src, 44_000);
        assert_eq!((r.dropped, e.tracked().len()), (0, 2));
        // The source goes down: nothing dropped, and once no fresh point
        // came within the lookback the series are no longer published.
        *src.1.lock().unwrap() = "down";
        let r = e.cycle(&src, 50_000);
        assert_eq!(r.read_errors, 1);
        assert_eq!(e.published().len(), 1, "b's last point is 11 s old");
        e.cycle(&src, 60_000);
        assert_eq!((e.tracked().len(), e.published().len()), (2, 0));
        let fams = crate::emit::families(&e, Default::default());
        assert!(
            fams.iter().all(|f| f.samples.is_empty()),
            "nothing stale is published"
        );
        // Back up, but with nothing fresh yet (as after a restart): the
        // stale series are in the answer, so they are kept, not dropped.
        *src.1.lock().unwrap() = "ok";
        let r = e.cycle(&src, 60_000);
        assert_eq!(
            (r.dropped, e.tracked().len(), e.published().len()),
            (0, 2, 0)
        );
        // Fresh points: published again, scored by the models they kept.
        for i in 45..62 {
            store.ingest(i * 1000, &[load("a", 1.0), load("b", 2.0)]);
        }
        let r = e.cycle(&src, 61_000);
        assert_eq!((r.fitted, e.published().len()), (0, 2));
    }

    /// A store whose answers come as checked XOR chunks, as a streamed
    /// remote read delivers them.
    struct Chunked<'a>(&'a Store);
    impl Source for Chunked<'_> {
        fn read(
            &self,
            selector: &Selector,
            from_ms: i64,
            to_ms: i64,
        ) -> Result<Vec<crate::read::SeriesData>, crate::read::ReadError> {
            let rows = self.0.read(selector, from_ms, to_ms)?;
            Ok(rows
                .into_iter()
                .map(|mut row| {
                    let points = row.points.into_points();
                    let e = crate::read::remote::encoded::encode_points(&points, 7, from_ms, to_ms);
                    row.points = Samples::Chunks(e);
                    row
                })
                .collect())
        }
    }

    #[test]
    fn series_read_as_chunks_are_analysed_as_decoded_ones() {
        let store = Store::new(3_600_000, 10_000);
        let mut rate = query(None).config.clone();
        rate.name = "load_rate".into();
        rate.rate = true;
        let queries = || vec![query(None), Query::new(rate.clone()).unwrap()];
        let opts = EngineOptions {
            lookback_ms: 10_000,
            ..EngineOptions::default()
        };
        let mut decoded = Engine::new(queries(), opts);
        let mut chunked = Engine::new(queries(), opts);
        let mut total = 0.0;
        for i in 0..60i64 {
            total += 1.0 + ((i * 5) % 3) as f64;
            // A counter with a reset, NaN now and then on b, c gone
            // after 20 s, and d with one point only (fresh as a value,
            // not as a rate, which needs two).
            let mut fams = vec![
                load("a", if i == 30 { 2.0 } else { total }),
                load(
                    "b",
                    if i % 9 == 4 {
                        f64::NAN
                    } else {
                        5.0 + (i % 4) as f64
                    },
                ),
            ];
            if i < 20 {
                fams.push(load("c", i as f64));
            }
            if i == 55 {
                fams.push(load("d", 3.0));
            }
            store.ingest(i * 1000, &fams);
            let r1 = decoded.cycle(&store, i * 1000);
            let r2 = chunked.cycle(&Chunked(&store), i * 1000);
            let counts = |r: &CycleReport| (r.series, r.points, r.fitted, r.dropped);
            assert_eq!(counts(&r1), counts(&r2), "cycle {i}");
            let seen = |e: &Engine| {
                let t: Vec<String> = e
                    .tracked()
                    .iter()
                    .map(|t| format!("{} {:?} {:?}", t.query, t.labels, t.recent))
                    .collect();
                let f = format!("{:?}", crate::emit::families(e, Default::default()));
                (t, f)
            };
            assert_eq!(seen(&decoded), seen(&chunked), "cycle {i}");
        }
        let published = |q: usize| {
            let mut hosts: Vec<String> = chunked
                .published()
                .iter()
                .filter(|t| t.query == q)
                .map(|t| instance(t))
                .collect();
            hosts.sort();
            hosts
        };
        assert_eq!(published(0), ["a", "b", "d"]);
        assert_eq!(published(1), ["a", "b"]);
    }

    #[test]
    fn breach_time_follows_the_trend() {
        let store = Store::new(3_600_000, 10_000);
        let th = Threshold::fixed(200.0, Direction::Above);
        let mut e = Engine::new(vec![query(Some(th))], EngineOptions::default());
        for i in 0..50 {
            store.ingest(i * 10_000, &[load("a", 100.0 + i as f64)]);
        }
        e.cycle(&store, 490_000);
        let t = &e.tracked()[0];
        // 149 now, +1 per 10 s: 200 in 51 steps = 510 s.
        let s = t.breach(&th).unwrap();
        assert!((s - 510.0).abs() < 15.0, "{s}");
        assert_eq!(t.breach_seconds(100.0, Direction::Above), Some(0.0));
        assert_eq!(t.breach_seconds(0.0, Direction::Below), Some(f64::INFINITY));
    }
}
