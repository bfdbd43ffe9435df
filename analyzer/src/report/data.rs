//! Gathering what a report covers: imd's own published series over the
//! range (read from a [`Source`]: `imd_anomaly_score`,
//! `imd_expected{,_lower,_upper}`, `imd_forecast{,_lower,_upper}`), the
//! analysed series themselves (each configured query read again through its
//! source, as the engine reads it), and the alert records the analyzer
//! keeps in its data directory (`alert-history.jsonl` for closed alerts,
//! `escalation-state.json` for open and recently resolved ones).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use crate::alert::escalation::Record;
use crate::model::Point;
use crate::query::Query;
use crate::read::{Selector, Source};

/// A series' identity in imd's published series: the source labels
/// (without `__name__`) plus `query`, without `model`, `horizon` and
/// `threshold`.
pub type SeriesKey = BTreeMap<String, String>;

/// Labels imd adds to its published series besides `query`; they are not
/// part of a series' identity.
const IMD_LABELS: &[&str] = &["__name__", "model", "horizon", "threshold"];

/// Labels imd renames to `exported_*` when a source series has them.
const OWN_LABELS: &[&str] = &["query", "model", "horizon", "threshold"];

/// A forecast series (one horizon) over the range.
#[derive(Debug, Clone, Default)]
pub struct ForecastHistory {
    /// The forecasting model.
    pub model: String,
    /// Forecast mean, stamped when it was published.
    pub mean: Vec<Point>,
    /// Lower bound.
    pub lower: Vec<Point>,
    /// Upper bound.
    pub upper: Vec<Point>,
}

/// Everything known about one analysed series over the range.
#[derive(Debug, Clone, Default)]
pub struct SeriesHistory {
    /// The series' identity (see [`SeriesKey`]).
    pub key: SeriesKey,
    /// The anomaly model (the `model` label of `imd_anomaly_score`).
    pub model: String,
    /// The analysed values (rate applied when the query asks for it);
    /// empty when the queries are not known.
    pub values: Vec<Point>,
    /// `imd_anomaly_score`.
    pub score: Vec<Point>,
    /// `imd_expected`.
    pub expected: Vec<Point>,
    /// `imd_expected_lower`.
    pub lower: Vec<Point>,
    /// `imd_expected_upper`.
    pub upper: Vec<Point>,
    /// `imd_forecast*` by horizon label (`5m`, `1h`, ...).
    pub forecasts: BTreeMap<String, ForecastHistory>,
}

impl SeriesHistory {
    /// The `query` label.
    pub fn query(&self) -> &str {
        self.key.get("query").map(String::as_str).unwrap_or("")
    }

    /// The host: the `instance` label (or `host`, `node`, `hostname`).
    pub fn host(&self) -> &str {
        ["instance", "host", "node", "hostname"]
            .iter()
            .find_map(|k| self.key.get(*k))
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Reads every imd series in `[from_ms, to_ms]` from `imd_source` and,
/// for each `(source, query)` given, the analysed series from its source.
/// Read errors of imd's own series fail the report; a query whose series
/// cannot be read is noted in `notes` and left without values.
pub fn read_series(
    imd_source: &dyn Source,
    queries: &[(&dyn Source, &Query)],
    from_ms: i64,
    to_ms: i64,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<SeriesHistory>> {
    let mut by_key: BTreeMap<SeriesKey, SeriesHistory> = BTreeMap::new();
    for name in [
        "imd_anomaly_score",
        "imd_expected",
        "imd_expected_lower",
        "imd_expected_upper",
        "imd_forecast",
        "imd_forecast_lower",
        "imd_forecast_upper",
    ] {
        let sel = Selector::parse(name).map_err(|e| anyhow::anyhow!("selector {name}: {e}"))?;
        let rows = imd_source
            .read(&sel, from_ms, to_ms)
            .map_err(|e| anyhow::anyhow!("reading {name}: {e}"))?;
        for row in rows {
            let labels: BTreeMap<String, String> = row.labels.into_iter().collect();
            let key: SeriesKey = labels
                .iter()
                .filter(|(k, _)| !IMD_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let model = labels.get("model").cloned().unwrap_or_default();
            let h = by_key.entry(key.clone()).or_insert_with(|| SeriesHistory {
                key,
                ..SeriesHistory::default()
            });
            let mut points = row.points.into_points();
            points.retain(|p| p.v.is_finite());
            match name {
                "imd_anomaly_score" => {
                    h.model = model;
                    h.score.extend(points);
                }
                "imd_expected" => h.expected.extend(points),
                "imd_expected_lower" => h.lower.extend(points),
                "imd_expected_upper" => h.upper.extend(points),
                _ => {
                    let horizon = labels.get("horizon").cloned().unwrap_or_default();
                    let f = h.forecasts.entry(horizon).or_default();
                    f.model = model;
                    match name {
                        "imd_forecast" => f.mean.extend(points),
                        "imd_forecast_lower" => f.lower.extend(points),
                        _ => f.upper.extend(points),
                    }
                }
            }
        }
    }
    for (source, q) in queries {
        let rows = match q.target.read(*source, from_ms, to_ms) {
            Ok(r) => r,
            Err(e) => {
                notes.push(format!(
                    "query {:?}: cannot read its series ({e}); charts show imd's series only",
                    q.config.name
                ));
                continue;
            }
        };
        for row in rows {
            let key = identity(&row.labels, &q.config.name);
            let points = row.points.into_points();
            let values = if q.config.rate {
                crate::read::rate::per_second(&points)
            } else {
                points
            };
            if let Some(h) = by_key.get_mut(&key) {
                h.values = values.into_iter().filter(|p| p.v.is_finite()).collect();
            }
        }
    }
    let mut out: Vec<SeriesHistory> = by_key.into_values().collect();
    for h in &mut out {
        for v in [
            &mut h.values,
            &mut h.score,
            &mut h.expected,
            &mut h.lower,
            &mut h.upper,
        ] {
            sort_dedup(v);
        }
        for f in h.forecasts.values_mut() {
            for v in [&mut f.mean, &mut f.lower, &mut f.upper] {
                sort_dedup(v);
            }
        }
    }
    Ok(out)
}

/// The identity imd publishes a source series under (as `emit` names it).
pub fn identity(labels: &[(String, String)], query: &str) -> SeriesKey {
    let mut out: SeriesKey = labels
        .iter()
        .filter(|(k, _)| k != "__name__")
        .map(|(k, v)| {
            if OWN_LABELS.contains(&k.as_str()) {
                (format!("exported_{k}"), v.clone())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    out.insert("query".into(), query.into());
    out
}

fn sort_dedup(v: &mut Vec<Point>) {
    v.sort_by_key(|p| p.t);
    v.dedup_by_key(|p| p.t);
}

/// The alert records of the data directory `dir` whose alert first fired
/// in `[from_ms, to_ms]`: closed ones from `alert-history.jsonl`, open and
/// recently resolved ones from `escalation-state.json` (a record in both
/// counts once). Missing files are empty; a line or file that does not
/// parse is an error naming the file and line.
pub fn read_alerts(dir: &Path, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<Record>> {
    let mut all: Vec<Record> = Vec::new();
    let history = dir.join("alert-history.jsonl");
    match std::fs::File::open(&history) {
        Ok(f) => {
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line =
                    line.map_err(|e| anyhow::anyhow!("{}:{}: {e}", history.display(), i + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                let r: Record = serde_json::from_str(&line)
                    .map_err(|e| anyhow::anyhow!("{}:{}: {e}", history.display(), i + 1))?;
                all.push(r);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", history.display()),
    }
    let state = dir.join("escalation-state.json");
    match std::fs::read(&state) {
        Ok(bytes) => {
            #[derive(serde::Deserialize)]
            struct StateFile {
                alerts: Vec<Record>,
            }
            let s: StateFile = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", state.display(), e.line()))?;
            all.extend(s.alerts);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", state.display()),
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    // The state file is read last and holds the newer copy of a record
    // that is also in the history: keep the last one of each.
    for r in all.into_iter().rev() {
        let t = r.first_fired().as_millisecond();
        if t < from_ms || t > to_ms {
            continue;
        }
        if seen.insert((r.labels.clone(), r.starts_at.as_millisecond())) {
            out.push(r);
        }
    }
    out.sort_by_key(|r| r.first_fired());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::{ReadError, SeriesData};

    /// A source holding fixed series.
    pub(crate) struct Fixed(pub Vec<SeriesData>);

    impl Source for Fixed {
        fn read(&self, sel: &Selector, from: i64, to: i64) -> Result<Vec<SeriesData>, ReadError> {
            Ok(self
                .0
                .iter()
                .filter(|s| sel.matches(&s.labels))
                .map(|s| SeriesData {
                    labels: s.labels.clone(),
                    points: s
                        .points
                        .to_points()
                        .iter()
                        .copied()
                        .filter(|p| p.t >= from && p.t <= to)
                        .collect(),
                })
                .collect())
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    fn series(pairs: &[(&str, &str)], v: impl Fn(i64) -> f64) -> SeriesData {
        SeriesData {
            labels: labels(pairs),
            points: (0..10i64)
                .map(|t| Point {
                    t: 1_000_000 + t * 15_000,
                    v: v(t),
                })
                .collect(),
        }
    }

    #[test]
    fn imd_series_and_source_values_join_on_their_identity() {
        let store = Fixed(vec![
            series(&[("__name__", "node_load1"), ("instance", "a")], |t| {
                t as f64
            }),
            series(
                &[
                    ("__name__", "imd_anomaly_score"),
                    ("instance", "a"),
                    ("query", "load"),
                    ("model", "mad"),
                ],
                |_| 0.5,
            ),
            series(
                &[
                    ("__name__", "imd_forecast"),
                    ("instance", "a"),
                    ("query", "load"),
                    ("model", "ets"),
                    ("horizon", "5m"),
                ],
                |_| 2.0,
            ),
        ]);
        let q = Query::new(crate::query::QueryConfig {
            name: "load".into(),
            selector: "node_load1".into(),
            ..serde_yaml_ng::from_str("{name: x, selector: x}").unwrap()
        })
        .unwrap();
        let mut notes = Vec::new();
        let s = read_series(&store, &[(&store, &q)], 0, 2_000_000, &mut notes).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(s.len(), 1);
        let h = &s[0];
        assert_eq!(h.query(), "load");
        assert_eq!(h.host(), "a");
        assert_eq!(h.model, "mad");
        assert_eq!(h.values.len(), 10);
        assert_eq!(h.score.len(), 10);
        assert_eq!(h.forecasts["5m"].mean.len(), 10);
        assert_eq!(h.forecasts["5m"].model, "ets");
    }

    #[test]
    fn alert_files_are_read_and_bad_lines_named() {
        let dir = tempfile::tempdir().unwrap();
        let rec = |start: &str, acked: bool| {
            serde_json::json!({
                "labels": {"alertname": "A", "instance": start},
                "startsAt": start,
                "levels": [{"at": start}],
                "acknowledged": if acked { serde_json::json!({"by": "bob", "at": "2026-01-01T00:10:00Z", "via": "api"}) } else { serde_json::Value::Null },
            })
        };
        let lines = format!(
            "{}\n{}\n",
            rec("2026-01-01T00:00:00Z", true),
            rec("2025-01-01T00:00:00Z", false)
        );
        std::fs::write(dir.path().join("alert-history.jsonl"), lines).unwrap();
        std::fs::write(
            dir.path().join("escalation-state.json"),
            serde_json::json!({"version": 1, "alerts": [rec("2026-01-01T01:00:00Z", false)]})
                .to_string(),
        )
        .unwrap();
        let from = "2026-01-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let r = read_alerts(dir.path(), from, from + 86_400_000).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].acknowledged.as_ref().unwrap().by, "bob");
        std::fs::write(dir.path().join("alert-history.jsonl"), "{}\nnot json\n").unwrap();
        let e = read_alerts(dir.path(), from, from + 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("alert-history.jsonl:1:"), "{e}");
        // Nothing there: no alerts.
        let empty = tempfile::tempdir().unwrap();
        assert!(read_alerts(empty.path(), 0, i64::MAX).unwrap().is_empty());
    }
}
