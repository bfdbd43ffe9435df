//! Multivariate queries in the engine: every input is read, its series are
//! grouped by the query's `group_by` labels, the inputs of each group are
//! aligned by timestamp (on the first input's timestamps, each other input's
//! latest value within the lookback) and one multivariate detector per group
//! scores the aligned rows.
//!
//! Each group is published like a series — `imd_anomaly_score` with the
//! group's labels, `query` and `model` — through a [`Tracked`] entry whose
//! value is the first input's, and each input's share in the latest score as
//! `imd_anomaly_contribution{input=...}` ([`contribution_family`]). Groups
//! are fitted when first seen (on the older part of their history, the
//! newer part scored online, as single series are) and on `fit_every`. Their
//! detectors are saved with the single series' state ([`save`]: a
//! [`SavedSeries`] with the group's labels and a `group` part) and, after a
//! restart, a group picks its detector up when first seen instead of being
//! refitted; state that does not load (other inputs, damaged) is refitted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use imd_exporter::exposition::Family;

use super::persist::{ModelState, SavedGroup, SavedSeries};
use super::{CycleReport, Engine, EngineOptions, QueryState, Tracked};
use crate::model::learned::multivariate::{Multivariate, align};
use crate::model::{self, Forecast, Model, ModelError, Point};
use crate::query::{MultiTarget, Query, Target};
use crate::read::rate::per_second;
use crate::read::{Labels, Source};
use crate::shard::{Owner, Shard, group_key};

/// Recent points kept per group for display (as for single series).
const RECENT: usize = 240;

/// The detector of one group and its latest contributions.
pub struct Group {
    model: Multivariate,
    /// Contribution of each input to the latest score, in input order.
    pub contributions: Vec<f64>,
}

/// Groups of a query by their labels.
pub(super) type Groups = HashMap<Labels, Group>;

/// Stands in for the anomaly model of a group's [`Tracked`] entry, so that
/// it is published under the detector's name; the scoring is the group's.
struct Named(&'static str);

impl Model for Named {
    fn name(&self) -> &'static str {
        self.0
    }
    fn fit(&mut self, _history: &[Point]) -> Result<(), ModelError> {
        Ok(())
    }
    fn score(&self, _point: Point) -> f64 {
        0.0
    }
    fn update(&mut self, _point: Point) {}
    fn forecast(&self, _steps: usize, _level: f64) -> Option<Forecast> {
        None
    }
    fn save(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load(&mut self, _state: serde_json::Value) -> Result<(), ModelError> {
        Ok(())
    }
}

/// Reads every input over `[from, to]` into groups: per group, one series
/// per input (series of an input in one group summed at equal timestamps).
fn read_groups(
    mt: &MultiTarget,
    source: &dyn Source,
    from: i64,
    to: i64,
    owner: Option<&Owner>,
) -> Result<BTreeMap<Labels, Vec<Vec<Point>>>, crate::read::ReadError> {
    let k = mt.inputs.len();
    let mut sums: BTreeMap<Labels, Vec<BTreeMap<i64, f64>>> = BTreeMap::new();
    for (j, (_, selector, rate)) in mt.inputs.iter().enumerate() {
        for row in source.read(selector, from, to)? {
            let key = group_key(&row.labels, &mt.group_by);
            // Sources that cannot list series send every group's.
            if owner.is_some_and(|o| !o.shard.owns(&key)) {
                continue;
            }
            let points = row.points.into_points();
            let points = if *rate { per_second(&points) } else { points };
            let slot = &mut sums.entry(key).or_insert_with(|| vec![BTreeMap::new(); k])[j];
            for p in points.iter().filter(|p| p.v.is_finite()) {
                *slot.entry(p.t).or_insert(0.0) += p.v;
            }
        }
    }
    Ok(sums
        .into_iter()
        .filter(|(_, inputs)| inputs.iter().all(|s| !s.is_empty()))
        .map(|(key, inputs)| {
            let series = inputs
                .into_iter()
                .map(|s| s.into_iter().map(|(t, v)| Point { t, v }).collect())
                .collect();
            (key, series)
        })
        .collect())
}

/// Scores and takes in the rows newer than the group's last one.
fn take(group: &mut Group, tracked: &mut Tracked, rows: &[(i64, Vec<f64>)]) -> usize {
    let mut n = 0;
    let since = tracked.last_t;
    for (t, values) in rows.iter().filter(|r| r.0 > since) {
        let s = group.model.score(*t, values);
        group.model.update(*t, values);
        group.contributions = s.contributions;
        tracked.last_t = *t;
        if tracked.recent.len() == RECENT {
            tracked.recent.pop_front();
        }
        tracked.recent.push_back((*t, values[0], s.score));
        n += 1;
    }
    n
}

/// A new group: fitted on the older part of its rows, the newer part
/// (at most [`RECENT`]) scored online.
fn new_group(
    qi: usize,
    q: &Query,
    mt: &MultiTarget,
    labels: Labels,
    rows: &[(i64, Vec<f64>)],
) -> Result<(Group, Tracked), ModelError> {
    let names = mt.inputs.iter().map(|i| i.0.clone()).collect();
    let mut model = Multivariate::new(&q.config.anomaly_model, names, q.config.params.clone())?;
    let split = rows.len() - (rows.len() / 2).min(RECENT);
    let (older, newer) = rows.split_at(split);
    model.fit(older)?;
    let name = model.name();
    let k = mt.inputs.len();
    let mut group = Group {
        model,
        contributions: vec![1.0 / k as f64; k],
    };
    let mut tracked = Tracked {
        query: qi,
        labels,
        anomaly: Box::new(Named(name)),
        forecaster: Some(Box::new(Named("none"))),
        last_t: older.last().map(|r| r.0).unwrap_or(i64::MIN),
        recent: older
            .iter()
            .rev()
            .take(RECENT)
            .rev()
            .map(|r| (r.0, r.1[0], 0.0))
            .collect::<VecDeque<_>>(),
        forecast: None,
        expected: None,
        band: None,
    };
    take(&mut group, &mut tracked, newer);
    Ok((group, tracked))
}

/// A group's state for saving, under its query's name: its entry's, with
/// the detector's state as the anomaly model's.
pub(super) fn save(query: &str, group: &Group, tracked: &Tracked) -> SavedSeries {
    let mut s = tracked.save(query);
    s.anomaly = (
        group.model.name().to_string(),
        ModelState::new(&group.model.save()),
    );
    s.group = Some(SavedGroup {
        contributions: group.contributions.clone(),
    });
    s
}

/// Rebuilds a group from saved state and takes in the rows newer than it
/// (returned with how many were taken); an error when the state does not
/// load, and the group is then refitted.
fn resume(
    qi: usize,
    q: &Query,
    mt: &MultiTarget,
    saved: SavedSeries,
    rows: &[(i64, Vec<f64>)],
) -> Result<(Group, Tracked, usize), ModelError> {
    let names = mt.inputs.iter().map(|i| i.0.clone()).collect();
    let mut model = Multivariate::new(&q.config.anomaly_model, names, q.config.params.clone())?;
    model.load(saved.anomaly.1.value()?)?;
    let name = model.name();
    let k = mt.inputs.len();
    let contributions = saved
        .group
        .map(|g| g.contributions)
        .filter(|c| c.len() == k && c.iter().all(|v| v.is_finite()))
        .unwrap_or_else(|| vec![1.0 / k as f64; k]);
    let mut group = Group {
        model,
        contributions,
    };
    let skip = saved.recent.len().saturating_sub(RECENT);
    let mut tracked = Tracked {
        query: qi,
        labels: saved.labels,
        anomaly: Box::new(Named(name)),
        forecaster: Some(Box::new(Named("none"))),
        last_t: saved.last_t,
        recent: saved.recent.into_iter().skip(skip).collect(),
        forecast: None,
        expected: None,
        band: None,
    };
    let taken = take(&mut group, &mut tracked, rows);
    Ok((group, tracked, taken))
}

/// One cycle of a multivariate query (the counterpart of the per-series
/// cycle in the engine).
pub(super) fn cycle(
    st: &mut QueryState,
    source: &dyn Source,
    now_ms: i64,
    options: &EngineOptions,
) -> CycleReport {
    let mut report = CycleReport::default();
    let Target::Multivariate(mt) = &st.query.target else {
        return report;
    };
    let q = &st.query;
    let qi = st.index;
    let history_from = now_ms - q.config.history.as_millis() as i64;
    // Saved groups that have not come back within the history window are
    // forgotten.
    st.restored.retain(|_, s| s.last_t >= history_from);
    let lookback = options.lookback_ms;
    let refit = st.due_for_fit(now_ms, options);
    let from = match st.last_read_ms {
        Some(last) if !refit => (last - lookback).max(history_from),
        _ => history_from,
    };
    let started = Instant::now();
    // A replica reads the input series of its own groups only (see
    // `read::pushdown`), under the query's name for the sources' counts.
    let owner = options.shard.map(|(index, count)| Owner {
        shard: Shard { index, count },
        by: Some(mt.group_by.clone()),
    });
    let read = |from| {
        crate::read::in_sharded_query(&q.config.name, owner.clone(), || {
            read_groups(mt, source, from, now_ms, owner.as_ref())
        })
    };
    let (groups, partial) = read(from);
    let groups = match groups {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(query = %q.config.name, error = %e, "read failed");
            report.read_errors += 1;
            return report;
        }
    };
    // Groups first seen in an incremental read get their whole history.
    let mut full: Option<BTreeMap<Labels, Vec<Vec<Point>>>> = None;
    report.read_seconds += started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut seen = HashSet::new();
    for (labels, series) in groups {
        let rows = align(&series, lookback);
        if rows.last().is_none_or(|r| r.0 < now_ms - lookback) {
            continue;
        }
        report.series += 1;
        seen.insert(labels.clone());
        if let (Some(g), Some(t)) = (st.groups.get_mut(&labels), st.tracked.get_mut(&labels)) {
            report.points += take(g, t, &rows);
            if refit {
                let fit_started = Instant::now();
                if let Err(e) = g.model.fit(&rows) {
                    tracing::warn!(query = %q.config.name, error = %e, "refit failed");
                }
                report.fit_seconds += fit_started.elapsed().as_secs_f64();
                report.fitted += 1;
            }
            continue;
        }
        let rows = if from > history_from {
            if full.is_none() {
                full = read(history_from).0.ok();
            }
            full.as_ref()
                .and_then(|f| f.get(&labels))
                .map(|s| align(s, lookback))
                .unwrap_or(rows)
        } else {
            rows
        };
        if let Some(saved) = st.restored.remove(&labels) {
            match resume(qi, q, mt, saved, &rows) {
                Ok((g, t, taken)) => {
                    report.resumed += 1;
                    report.points += taken;
                    st.groups.insert(labels.clone(), g);
                    st.tracked.insert(labels, t);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(query = %q.config.name, group = ?labels, error = %e, "saved group state unusable; refitting");
                }
            }
        }
        let fit_started = Instant::now();
        let made = new_group(qi, q, mt, labels.clone(), &rows);
        report.fit_seconds += fit_started.elapsed().as_secs_f64();
        match made {
            Ok((g, t)) => {
                report.fitted += 1;
                report.points += rows.len();
                st.groups.insert(labels.clone(), g);
                st.tracked.insert(labels, t);
            }
            Err(e) => {
                tracing::warn!(query = %q.config.name, error = %e, "multivariate fit failed");
            }
        }
    }
    let before = st.tracked.len();
    // A partial answer says nothing about the groups it lacks: they keep
    // their state.
    if !partial {
        st.tracked.retain(|l, _| seen.contains(l));
        st.groups.retain(|l, _| seen.contains(l));
    }
    report.dropped += before - st.tracked.len();
    report.model_seconds += started.elapsed().as_secs_f64();
    let first = st.last_read_ms.replace(now_ms).is_none();
    if refit {
        st.fitted(now_ms, first);
    }
    report
}

/// `imd_anomaly_contribution`: each input's share in the latest score of
/// every group of every multivariate query.
pub fn contribution_family(engine: &Engine) -> Family {
    let mut f = Family::gauge(
        "imd_anomaly_contribution",
        "Share of each input in the latest multivariate anomaly score (0 to 1, summing to 1 per group).",
    );
    for st in &engine.states {
        let Target::Multivariate(mt) = &st.query.target else {
            continue;
        };
        let mut groups: Vec<(&Labels, &Group)> = st.groups.iter().collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        for (labels, g) in groups {
            if st.tracked.get(labels).is_none_or(|t| t.recent.is_empty()) {
                continue;
            }
            for ((name, _, _), c) in mt.inputs.iter().zip(&g.contributions) {
                let mut l: Vec<(String, String)> = labels
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "query" | "model" | "input" => (format!("exported_{k}"), v.clone()),
                        _ => (k.clone(), v.clone()),
                    })
                    .collect();
                l.push(("query".into(), st.query.config.name.clone()));
                l.push(("model".into(), g.model.name().into()));
                l.push(("input".into(), name.clone()));
                f.push(l, *c);
            }
        }
    }
    f
}

/// Checks that `model` can run a multivariate query (for callers outside
/// the configuration, e.g. the command line).
pub fn check_model(name: &str) -> Result<(), ModelError> {
    if model::learned::multivariate::MODELS.contains(&name) {
        Ok(())
    } else {
        Err(ModelError::Config(format!(
            "the multivariate detector runs {}, not {name:?}",
            model::learned::multivariate::MODELS.join(" or ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::store::Store;

    fn query(yaml: &str) -> Query {
        let entry: crate::config::QueryEntry = serde_yaml_ng::from_str(yaml).unwrap();
        entry.build().unwrap()
    }

    const JOINT: &str = "name: joint\nmultivariate:\n  inputs:\n    a: {selector: imd_a}\n    b: {selector: imd_b}\n  group_by: [instance]\nanomaly_model: iforest\nhistory: 10h\n";

    #[test]
    fn groups_score_a_broken_relationship_and_publish_contributions() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let (a, b) = crate::model::learned::multivariate::tests::correlated_pair(600, 590);
        let fam = |name: &str, host: &str, v: f64| {
            let mut f = Family::gauge(name, "x");
            f.push([("instance", host)], v);
            f
        };
        for (pa, pb) in a.iter().zip(&b) {
            // Host h2 keeps the relationship throughout.
            store.ingest(
                pa.t,
                &[
                    fam("imd_a", "h1", pa.v),
                    fam("imd_b", "h1", pb.v),
                    fam("imd_a", "h2", pa.v),
                    fam("imd_b", "h2", 2.0 * pa.v),
                ],
            );
        }
        let now = a.last().unwrap().t;
        let mut e = Engine::new(vec![query(JOINT)], EngineOptions::default());
        let r = e.cycle(&store, now);
        assert_eq!((r.series, r.fitted), (2, 2));
        let t = e.tracked();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0].labels,
            vec![("instance".to_string(), "h1".to_string())]
        );
        assert_eq!(t[0].anomaly_model(), "iforest");
        let fault_max = t[0]
            .recent
            .iter()
            .filter(|r| r.0 >= a[590].t)
            .map(|r| r.2)
            .fold(0.0, f64::max);
        assert!(fault_max >= 0.99, "h1 fault {fault_max}");
        assert!(t[1].score() < 0.99, "h2 {}", t[1].score());
        let f = contribution_family(&e);
        assert_eq!(f.samples.len(), 4);
        // An incremental cycle takes the next row only.
        let next = now + 300_000;
        store.ingest(
            next,
            &[
                fam("imd_a", "h1", 50.0),
                fam("imd_b", "h1", 100.0),
                fam("imd_a", "h2", 50.0),
                fam("imd_b", "h2", 100.0),
            ],
        );
        let r = e.cycle(&store, next);
        assert_eq!((r.points, r.fitted), (2, 0));
    }

    #[test]
    fn replicas_split_whole_groups_and_a_partial_answer_drops_none() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let (a, b) = crate::model::learned::multivariate::tests::correlated_pair(600, 10_000);
        let hosts: Vec<String> = (0..9).map(|i| format!("h{i}")).collect();
        for (pa, pb) in a.iter().zip(&b) {
            let fams: Vec<Family> = hosts
                .iter()
                .flat_map(|h| [fam("imd_a", h, pa.v), fam("imd_b", h, pb.v)])
                .collect();
            store.ingest(pa.t, &fams);
        }
        let now = a.last().unwrap().t;
        let mut seen: Vec<Labels> = Vec::new();
        for index in 0..3 {
            let options = EngineOptions {
                shard: Some((index, 3)),
                ..EngineOptions::default()
            };
            let mut e = Engine::new(vec![query(JOINT)], options);
            e.cycle(&store, now);
            seen.extend(e.tracked().iter().map(|t| t.labels.clone()));
            // Then an answer that lacks every series but says it is
            // partial (as a broken stream does): the groups stay.
            let before = e.tracked().len();
            let r = e.cycle(&Partial, now + 60_000);
            assert_eq!(r.dropped, 0);
            assert_eq!(e.tracked().len(), before);
        }
        seen.sort();
        let want: Vec<Labels> = hosts
            .iter()
            .map(|h| vec![("instance".to_string(), h.clone())])
            .collect();
        assert_eq!(seen, want, "every group analysed by exactly one replica");
    }

    /// A source whose answers are empty and marked partial.
    struct Partial;

    impl Source for Partial {
        fn read(
            &self,
            _: &crate::read::Selector,
            _: i64,
            _: i64,
        ) -> Result<Vec<crate::read::SeriesData>, crate::read::ReadError> {
            crate::read::mark_partial();
            Ok(Vec::new())
        }
    }

    fn fam(name: &str, host: &str, v: f64) -> Family {
        let mut f = Family::gauge(name, "x");
        f.push([("instance", host)], v);
        f
    }

    /// A store with rows `range` of an unbroken correlated pair on host h1,
    /// and the pair's times.
    fn pair_store(store: &Store, range: std::ops::Range<usize>) -> Vec<i64> {
        let (a, b) = crate::model::learned::multivariate::tests::correlated_pair(640, 10_000);
        for i in range {
            store.ingest(
                a[i].t,
                &[fam("imd_a", "h1", a[i].v), fam("imd_b", "h1", b[i].v)],
            );
        }
        a.iter().map(|p| p.t).collect()
    }

    #[test]
    fn a_restart_resumes_groups_from_saved_state_without_refitting() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let t = pair_store(&store, 0..600);
        let now = t[599];
        let mut e = Engine::new(vec![query(JOINT)], EngineOptions::default());
        assert_eq!(e.cycle(&store, now).fitted, 1);
        // Through the state file, as at a restart.
        let dir = tempfile::tempdir().unwrap();
        let file = super::super::persist::StateFile::in_dir(dir.path()).unwrap();
        file.save(e.snapshot()).unwrap();
        let saved = file.load();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].labels, vec![("instance".into(), "h1".into())]);
        assert_eq!(saved[0].anomaly.0, "iforest");
        assert_eq!(saved[0].group.as_ref().unwrap().contributions.len(), 2);
        let mut e2 = Engine::new(vec![query(JOINT)], EngineOptions::default());
        assert_eq!(e2.restore(saved.clone()), 1);
        assert_eq!(e2.snapshot(), saved, "kept as it was until seen");
        // Ten new rows: the original takes them online, the restarted
        // engine resumes from the file and takes the same rows.
        pair_store(&store, 600..610);
        let later = t[609];
        let r1 = e.cycle(&store, later);
        let r2 = e2.cycle(&store, later);
        assert_eq!((r1.fitted, r1.points), (0, 10));
        assert_eq!((r2.resumed, r2.fitted, r2.points), (1, 0, 10));
        let (o, n) = (e.tracked()[0], e2.tracked()[0]);
        assert_eq!(n.recent, o.recent, "same history and bit-identical scores");
        let new: Vec<f64> = n.recent.iter().filter(|r| r.0 > now).map(|r| r.2).collect();
        assert_eq!(new.len(), 10);
        assert!(
            new.iter().any(|s| *s > 0.0),
            "scored by a trained model: {new:?}"
        );
        assert_eq!(
            contribution_family(&e2).samples,
            contribution_family(&e).samples
        );
        // A refit at this point would have scored them otherwise.
        let mut fresh = Engine::new(vec![query(JOINT)], EngineOptions::default());
        assert_eq!(fresh.cycle(&store, later).fitted, 1);
        let refit: Vec<f64> = fresh.tracked()[0]
            .recent
            .iter()
            .filter(|r| r.0 > now)
            .map(|r| r.2)
            .collect();
        assert_ne!(refit, new);
        // Saved groups are forgotten once their last point leaves the
        // history window (10 h), kept until then.
        let empty = Store::new(100 * 3_600_000, 100_000);
        let mut e3 = Engine::new(vec![query(JOINT)], EngineOptions::default());
        e3.restore(saved.clone());
        e3.cycle(&empty, now + 9 * 3_600_000);
        assert_eq!(e3.snapshot().len(), 1);
        e3.cycle(&empty, now + 11 * 3_600_000);
        assert!(e3.snapshot().is_empty());
    }

    #[test]
    fn unusable_saved_groups_are_refitted() {
        let store = Store::new(100 * 3_600_000, 100_000);
        let t = pair_store(&store, 0..600);
        let now = t[599];
        let mut e = Engine::new(vec![query(JOINT)], EngineOptions::default());
        e.cycle(&store, now);
        let saved = e.snapshot();
        // Same query name and detector, other inputs: refitted.
        let other = query(&JOINT.replace("    b: {", "    c: {"));
        let mut e2 = Engine::new(vec![other.clone()], EngineOptions::default());
        assert_eq!(e2.restore(saved.clone()), 1);
        let r = e2.cycle(&store, now);
        assert_eq!((r.resumed, r.fitted, r.series), (0, 1, 1));
        assert_eq!(e2.tracked()[0].recent.len(), e.tracked()[0].recent.len());
        // The warning says why.
        let Target::Multivariate(mt) = &other.target else {
            panic!("not multivariate");
        };
        let err = resume(0, &other, mt, saved[0].clone(), &[]).err().unwrap();
        assert!(err.to_string().contains("saved for inputs"), "{err}");
        // Damaged detector state: refitted too.
        let mut damaged = saved.clone();
        damaged[0].anomaly.1 = ModelState::new(&serde_json::json!({"inputs": 3, "trees": []}));
        let mut e3 = Engine::new(vec![query(JOINT)], EngineOptions::default());
        assert_eq!(e3.restore(damaged), 1);
        let r = e3.cycle(&store, now);
        assert_eq!((r.resumed, r.fitted), (0, 1));
        // A group's state is not offered to a plain query of the same name
        // and model, nor a series' to a group.
        let plain = query("name: joint\nselector: imd_a\nanomaly_model: iforest\n");
        assert_eq!(
            Engine::new(vec![plain], EngineOptions::default()).restore(saved.clone()),
            0
        );
        let mut series = saved[0].clone();
        series.group = None;
        assert_eq!(
            Engine::new(vec![query(JOINT)], EngineOptions::default()).restore(vec![series]),
            0
        );
        // Nor one saved by the other detector.
        let svm = query(&JOINT.replace("iforest", "ocsvm"));
        assert_eq!(
            Engine::new(vec![svm], EngineOptions::default()).restore(saved),
            0
        );
    }

    #[test]
    fn bad_multivariate_queries_name_the_key() {
        let err = |yaml: &str| {
            let entry: crate::config::QueryEntry = serde_yaml_ng::from_str(yaml).unwrap();
            entry.build().unwrap_err().0
        };
        assert_eq!(
            err(&JOINT.replace("    b: {selector: imd_b}\n", "")),
            ".multivariate.inputs"
        );
        assert_eq!(
            err(&JOINT.replace("selector: imd_b", "selector: 'imd_b{'")),
            ".multivariate.inputs.b.selector"
        );
        assert_eq!(
            err(&JOINT.replace("[instance]", "[\"a-b\"]")),
            ".multivariate.group_by[0]"
        );
        assert_eq!(err(&JOINT.replace("iforest", "mad")), ".anomaly_model");
        assert_eq!(err(&format!("{JOINT}selector: up\n")), ".multivariate");
        assert!(check_model("ocsvm").is_ok() && check_model("auto").is_err());
    }
}
