//! The in-process store of the embedded default: keeps recent samples of
//! locally scraped families in memory, so that the analyzer can run with no
//! Prometheus at all.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use imd_exporter::exposition::Family;

use super::{Labels, ReadError, Selector, SeriesData, Source};
use crate::model::Point;

/// Recent samples of every series seen, bounded in time and per series.
pub struct Store {
    retention_ms: i64,
    max_points: usize,
    series: RwLock<HashMap<Labels, VecDeque<Point>>>,
}

impl Store {
    /// A store keeping `retention_ms` of history, at most `max_points` per series.
    pub fn new(retention_ms: i64, max_points: usize) -> Store {
        Store {
            retention_ms,
            max_points: max_points.max(2),
            series: RwLock::new(HashMap::new()),
        }
    }

    /// Appends one scrape's samples at time `t_ms` and forgets samples (and
    /// series) older than the retention.
    pub fn ingest(&self, t_ms: i64, families: &[Family]) {
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        for f in families {
            for s in &f.samples {
                let mut labels: Labels = Vec::with_capacity(s.labels.len() + 1);
                labels.push(("__name__".to_string(), s.name.clone()));
                labels.extend(s.labels.iter().cloned());
                labels.sort();
                let points = series.entry(labels).or_default();
                if points.back().is_some_and(|p| p.t >= t_ms) {
                    continue;
                }
                if points.len() == self.max_points {
                    points.pop_front();
                }
                points.push_back(Point {
                    t: t_ms,
                    v: s.value,
                });
            }
        }
        let cutoff = t_ms - self.retention_ms;
        series.retain(|_, points| {
            while points.front().is_some_and(|p| p.t < cutoff) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// Number of series and samples held.
    pub fn size(&self) -> (usize, usize) {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        (series.len(), series.values().map(|p| p.len()).sum())
    }
}

impl Source for Store {
    fn read(
        &self,
        selector: &Selector,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        let series = self.series.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<SeriesData> = series
            .iter()
            .filter(|(labels, _)| selector.matches(labels))
            .map(|(labels, points)| SeriesData {
                labels: labels.clone(),
                points: points
                    .iter()
                    .filter(|p| p.t >= from_ms && p.t <= to_ms)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fam(v: f64) -> Vec<Family> {
        let mut f = Family::gauge("node_load1", "load");
        f.push_value(v);
        let mut c = Family::counter("node_cpu_seconds_total", "cpu");
        c.push([("cpu", "0"), ("mode", "idle")], v * 10.0);
        vec![f, c]
    }

    #[test]
    fn keeps_recent_points_and_selects() {
        let s = Store::new(10_000, 100);
        for i in 0..20 {
            s.ingest(i * 1000, &fam(i as f64));
        }
        let sel = Selector::parse(r#"node_cpu_seconds_total{mode="idle"}"#).unwrap();
        let r = s.read(&sel, 0, i64::MAX).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].points.len(), 11, "retention keeps 10 s");
        assert_eq!(r[0].points.to_points().last().unwrap().v, 190.0);
        assert!(r[0].labels.contains(&("cpu".into(), "0".into())));
        assert_eq!(s.size(), (2, 22));
        // A series that stops being scraped ages out.
        for i in 20..40 {
            s.ingest(i * 1000, &fam(i as f64)[..1]);
        }
        assert_eq!(s.read(&sel, 0, i64::MAX).unwrap().len(), 0);
    }
}
