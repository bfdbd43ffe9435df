//! Publishing: the engine's state as synthetic series for Prometheus to
//! scrape (`imd_anomaly_score`, `imd_forecast*`), keeping each source
//! series' labels and adding `query` and `model`.

use imd_exporter::exposition::Family;

use crate::engine::Engine;
use crate::query::prom_duration;

/// Labels imd adds; a source label of the same name is kept as
/// `exported_<name>`, as Prometheus does on a clash.
pub mod remote_write;
pub mod selfmetrics;

const OWN_LABELS: &[&str] = &["query", "model", "horizon", "threshold", "direction"];

/// How the synthetic series are named.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naming {
    /// Also publish vmanomaly's names (`anomaly_score`, `yhat`,
    /// `yhat_lower`, `yhat_upper`, labels `for` and `model_alias`).
    pub vmanomaly: bool,
}

/// The synthetic series of every tracked series.
pub fn families(engine: &Engine, naming: Naming) -> Vec<Family> {
    let mut out = imd_families(engine);
    out.push(crate::engine::group::contribution_family(engine));
    if naming.vmanomaly {
        out.extend(vmanomaly_families(engine));
    }
    out
}

/// vmanomaly's output shape: `anomaly_score` above 1 means outside the
/// model's bounds (imd's calibrated score divided by the score of the
/// bound), `yhat*` the value expected for the latest point, input labels
/// kept, plus `for` (the query) and `model_alias`.
fn vmanomaly_families(engine: &Engine) -> Vec<Family> {
    let mut score = Family::gauge(
        "anomaly_score",
        "vmanomaly-compatible anomaly score: above 1 is outside the expected bounds.",
    );
    let mut yhat = Family::gauge(
        "yhat",
        "vmanomaly-compatible expected value of the latest point.",
    );
    let mut lower = Family::gauge(
        "yhat_lower",
        "vmanomaly-compatible lower bound for the latest point.",
    );
    let mut upper = Family::gauge(
        "yhat_upper",
        "vmanomaly-compatible upper bound for the latest point.",
    );
    let queries = engine.queries();
    for t in engine.published() {
        let q = &queries[t.query].config;
        let mut labels: Vec<(String, String)> = t
            .labels
            .iter()
            .filter(|(k, _)| k != "__name__" && k != "for" && k != "model_alias")
            .cloned()
            .collect();
        labels.push(("for".into(), q.name.clone()));
        if !t.recent.is_empty() {
            let mut l = labels.clone();
            l.push(("model_alias".into(), t.anomaly_model().into()));
            let z = crate::model::z_from_score(t.score());
            score.push(l, z / crate::model::z_for_level(q.level));
        }
        if let Some((m, lo, hi)) = t.expected {
            let mut l = labels.clone();
            l.push(("model_alias".into(), t.forecast_model().into()));
            yhat.push(l.clone(), m);
            lower.push(l.clone(), lo);
            upper.push(l, hi);
        }
    }
    vec![score, yhat, lower, upper]
}

fn imd_families(engine: &Engine) -> Vec<Family> {
    let mut score = Family::gauge(
        "imd_anomaly_score",
        "How unusual the latest point of the source series is, from 0 (expected) to 1; above 0.99 is a 1-in-100 event.",
    );
    let mut mean = Family::gauge(
        "imd_forecast",
        "Forecast of the source series at the horizon.",
    );
    let mut lower = Family::gauge(
        "imd_forecast_lower",
        "Lower bound of the forecast at the horizon.",
    );
    let mut upper = Family::gauge(
        "imd_forecast_upper",
        "Upper bound of the forecast at the horizon.",
    );
    let mut breach = Family::gauge(
        "imd_forecast_breach_seconds",
        "Seconds until the forecast crosses the query's threshold (0 = already across, +Inf = not foreseen).",
    );
    let mut threshold = Family::gauge(
        "imd_threshold",
        "The query's threshold at the latest point: its fixed value, or the level of the band learned from history.",
    );
    let queries = engine.queries();
    for t in engine.published() {
        let q = &queries[t.query].config;
        let base = source_labels(&t.labels, &q.name);
        if !t.recent.is_empty() {
            let mut l = base.clone();
            l.push(("model".into(), t.anomaly_model().into()));
            score.push(l, t.score());
        }
        let Some((last_t, _, _)) = t.recent.back().copied() else {
            continue;
        };
        for h in &q.horizons {
            if let Some((m, lo, hi)) = t.forecast_at(last_t + h.as_millis() as i64) {
                let mut l = base.clone();
                l.push(("model".into(), t.forecast_model().into()));
                l.push(("horizon".into(), prom_duration(*h)));
                mean.push(l.clone(), m);
                lower.push(l.clone(), lo);
                upper.push(l, hi);
            }
        }
        if let Some(th) = q.threshold
            && let Some(s) = t.breach(&th)
        {
            let mut l = base.clone();
            l.push(("model".into(), t.forecast_model().into()));
            l.push(("threshold".into(), th.label()));
            breach.push(l, s);
        }
        if let Some(th) = q.threshold
            && let Some(v) = t.threshold_now(&th)
        {
            let mut l = base.clone();
            l.push((
                "direction".into(),
                match th.direction {
                    crate::query::Direction::Above => "above",
                    crate::query::Direction::Below => "below",
                }
                .into(),
            ));
            threshold.push(l, v);
        }
    }
    let mut expected = Family::gauge(
        "imd_expected",
        "Value the forecaster expected for the latest point.",
    );
    let mut expected_lower = Family::gauge(
        "imd_expected_lower",
        "Lower bound expected for the latest point.",
    );
    let mut expected_upper = Family::gauge(
        "imd_expected_upper",
        "Upper bound expected for the latest point.",
    );
    for t in engine.published() {
        if let Some((m, lo, hi)) = t.expected {
            let mut l = source_labels(&t.labels, &queries[t.query].config.name);
            l.push(("model".into(), t.forecast_model().into()));
            expected.push(l.clone(), m);
            expected_lower.push(l.clone(), lo);
            expected_upper.push(l, hi);
        }
    }
    vec![
        score,
        mean,
        lower,
        upper,
        breach,
        threshold,
        expected,
        expected_lower,
        expected_upper,
    ]
}

/// Keeps at most `max` samples (series) over `fams`, in order (so scores
/// come before forecasts, and series in query and label order); returns
/// how many were left out. Guards Prometheus and remote-write receivers
/// against a cardinality explosion of the analysed series.
pub fn limit_series(fams: &mut [Family], max: usize) -> usize {
    let mut room = max;
    let mut left_out = 0;
    for f in fams.iter_mut() {
        let keep = f.samples.len().min(room);
        left_out += f.samples.len() - keep;
        f.samples.truncate(keep);
        room -= keep;
    }
    left_out
}

/// The source labels without `__name__` (dropped, as PromQL functions drop
/// it) plus `query`.
fn source_labels(labels: &[(String, String)], query: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = labels
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
    out.push(("query".into(), query.into()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_series_keeps_the_first_ones_in_order() {
        use imd_exporter::exposition::Family;
        let fam = |name: &str, n: usize| {
            let mut f = Family::gauge(name, "x");
            for i in 0..n {
                f.push([("i", i.to_string().as_str())], i as f64);
            }
            f
        };
        let mut fams = vec![fam("a", 3), fam("b", 4), fam("c", 2)];
        assert_eq!(limit_series(&mut fams, 5), 4);
        let kept: Vec<usize> = fams.iter().map(|f| f.samples.len()).collect();
        assert_eq!(kept, vec![3, 2, 0]);
        assert_eq!(limit_series(&mut fams, 100), 0);
    }

    #[test]
    fn vmanomaly_names_keep_input_labels_and_scale_to_the_bounds() {
        use crate::engine::EngineOptions;
        use crate::query::{Query, QueryConfig};
        use crate::read::store::Store;
        use imd_exporter::exposition::Family;
        let q = Query::new(QueryConfig {
            name: "load".into(),
            selector: "node_load1".into(),
            expr: None,
            rate: false,
            anomaly_model: "zscore".into(),
            forecast_model: "zscore".into(),
            params: Default::default(),
            horizons: vec![std::time::Duration::from_secs(60)],
            level: 0.95,
            threshold: None,
            history: std::time::Duration::from_secs(3600),
        })
        .unwrap();
        let mut e = Engine::new(vec![q], EngineOptions::default());
        let store = Store::new(3_600_000, 10_000);
        for i in 0..50 {
            let mut f = Family::gauge("node_load1", "l");
            f.push(
                [("instance", "h1")],
                if i == 49 {
                    50.0
                } else {
                    1.0 + 0.1 * ((i * 7) % 5) as f64
                },
            );
            store.ingest(i * 1000, &[f]);
        }
        e.cycle(&store, 49_000);
        let plain = families(&e, Naming::default());
        assert!(plain.iter().all(|f| f.name != "anomaly_score"));
        let fams = families(&e, Naming { vmanomaly: true });
        let get = |n: &str| fams.iter().find(|f| f.name == n).unwrap();
        let s = &get("anomaly_score").samples[0];
        assert_eq!(
            s.labels,
            vec![
                ("instance".to_string(), "h1".to_string()),
                ("for".to_string(), "load".to_string()),
                ("model_alias".to_string(), "zscore".to_string())
            ]
        );
        assert!(s.value > 1.0, "a spike is outside the bounds: {}", s.value);
        let (y, lo, hi) = (
            get("yhat").samples[0].value,
            get("yhat_lower").samples[0].value,
            get("yhat_upper").samples[0].value,
        );
        assert!(lo < y && y < hi && hi < 50.0, "{lo} {y} {hi}");
    }

    #[test]
    fn clashing_labels_are_kept_as_exported() {
        let l = vec![
            ("__name__".to_string(), "x".to_string()),
            ("instance".to_string(), "a".to_string()),
            ("query".to_string(), "theirs".to_string()),
        ];
        let out = source_labels(&l, "mine");
        assert_eq!(
            out,
            vec![
                ("instance".to_string(), "a".to_string()),
                ("exported_query".to_string(), "theirs".to_string()),
                ("query".to_string(), "mine".to_string()),
            ]
        );
    }
}
