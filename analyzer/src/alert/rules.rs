//! Alerting rules over the analysis: per series, "the anomaly score is at
//! least X" or "the forecast crosses the threshold within D", held for a
//! `for` duration as Prometheus' rules are, with labels and annotations.

use std::collections::{BTreeMap, HashMap};

use crate::config::AlertRuleConfig;
use crate::engine::{Engine, Tracked};
use crate::query::prom_duration;

/// An alert that is firing now, as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// Identity of the alert: `alertname`, the series' labels, `query`,
    /// the rule's labels and the external labels.
    pub labels: BTreeMap<String, String>,
    /// Filled-in annotations.
    pub annotations: BTreeMap<String, String>,
    /// When the condition started to hold (ms since the epoch).
    pub active_since_ms: i64,
}

/// The rules and which series are pending or firing.
pub struct Rules {
    rules: Vec<AlertRuleConfig>,
    external_labels: BTreeMap<String, String>,
    /// (rule, alert labels) → since when the condition holds.
    active: HashMap<(usize, BTreeMap<String, String>), i64>,
}

impl Rules {
    /// Rules from the configuration (already validated).
    pub fn new(rules: Vec<AlertRuleConfig>, external_labels: BTreeMap<String, String>) -> Rules {
        Rules {
            rules,
            external_labels,
            active: HashMap::new(),
        }
    }

    /// Evaluates every rule on every tracked series at `now_ms` and returns
    /// the alerts whose condition has held for the rule's `for` duration.
    pub fn evaluate(&mut self, engine: &Engine, now_ms: i64) -> Vec<Firing> {
        let queries = engine.queries();
        let mut holding: HashMap<(usize, BTreeMap<String, String>), i64> = HashMap::new();
        let mut out = Vec::new();
        for t in engine.tracked() {
            let q = &queries[t.query].config;
            for (ri, rule) in self.rules.iter().enumerate() {
                if !rule.queries.is_empty() && !rule.queries.iter().any(|n| n == &q.name) {
                    continue;
                }
                let by_score = rule.score_above.is_some_and(|s| t.score() >= s);
                let breach = q.threshold.and_then(|th| t.breach(&th));
                let by_breach = match (rule.breach_within, breach) {
                    (Some(within), Some(b)) => b <= within.as_secs_f64(),
                    _ => false,
                };
                if !(by_score || by_breach) {
                    continue;
                }
                let labels = self.alert_labels(rule, t, &q.name);
                let key = (ri, labels);
                let since = self.active.get(&key).copied().unwrap_or(now_ms);
                holding.insert(key.clone(), since);
                let held = rule
                    .for_
                    .map(|f| now_ms - since >= f.as_millis() as i64)
                    .unwrap_or(true);
                if held {
                    out.push(Firing {
                        annotations: annotations(rule, t, &key.1, breach),
                        labels: key.1,
                        active_since_ms: since,
                    });
                }
            }
        }
        self.active = holding;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    fn alert_labels(
        &self,
        rule: &AlertRuleConfig,
        t: &Tracked,
        query: &str,
    ) -> BTreeMap<String, String> {
        let mut l: BTreeMap<String, String> = self.external_labels.clone();
        for (k, v) in &t.labels {
            if k == "__name__" {
                l.insert("metric".into(), v.clone());
            } else {
                l.insert(k.clone(), v.clone());
            }
        }
        l.insert("query".into(), query.into());
        for (k, v) in &rule.labels {
            l.insert(k.clone(), v.clone());
        }
        l.insert("alertname".into(), rule.alert.clone());
        l
    }
}

/// The rule's annotations with placeholders filled in; a summary and a
/// description are provided when the rule gives none.
fn annotations(
    rule: &AlertRuleConfig,
    t: &Tracked,
    labels: &BTreeMap<String, String>,
    breach: Option<f64>,
) -> BTreeMap<String, String> {
    let num = |v: Option<f64>| {
        v.map(imd_exporter::exposition::format_value)
            .unwrap_or_else(|| "unknown".into())
    };
    let (exp, lo, hi) = match t.expected {
        Some((m, l, h)) => (Some(m), Some(l), Some(h)),
        None => (None, None, None),
    };
    let breach_text = match breach {
        Some(b) if b.is_finite() => prom_duration(std::time::Duration::from_secs_f64(b.max(0.0))),
        _ => "not foreseen".into(),
    };
    let fill = |template: &str| -> String {
        let mut s = template
            .replace("{{ $value }}", &num(t.value()))
            .replace("{{ $score }}", &format!("{:.3}", t.score()))
            .replace("{{ $expected }}", &num(exp))
            .replace("{{ $lower }}", &num(lo))
            .replace("{{ $upper }}", &num(hi))
            .replace("{{ $breach }}", &breach_text);
        for (k, v) in labels {
            s = s.replace(&format!("{{{{ $labels.{k} }}}}"), v);
        }
        s
    };
    let mut out: BTreeMap<String, String> = rule
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), fill(v)))
        .collect();
    let series = labels.get("metric").cloned().unwrap_or_default();
    out.entry("summary".into()).or_insert_with(|| {
        fill(&format!(
            "{} on {series} (query {{{{ $labels.query }}}})",
            rule.alert
        ))
    });
    out.entry("description".into()).or_insert_with(|| {
        fill("value {{ $value }}, expected {{ $expected }} [{{ $lower }} … {{ $upper }}], anomaly score {{ $score }}, threshold crossing in {{ $breach }}")
    });
    out.insert("value".into(), num(t.value()));
    out.insert("expected".into(), num(exp));
    out.insert("lower".into(), num(lo));
    out.insert("upper".into(), num(hi));
    out.insert("anomaly_score".into(), format!("{:.3}", t.score()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineOptions;
    use crate::query::{Query, QueryConfig};
    use crate::read::store::Store;
    use imd_exporter::exposition::Family;
    use std::time::Duration;

    fn engine() -> Engine {
        let q = Query::new(QueryConfig {
            name: "load".into(),
            selector: "node_load1".into(),
            expr: None,
            rate: false,
            anomaly_model: "mad".into(),
            forecast_model: "mad".into(),
            params: Default::default(),
            horizons: vec![Duration::from_secs(60)],
            level: 0.95,
            threshold: None,
            history: Duration::from_secs(3600),
        })
        .unwrap();
        Engine::new(vec![q], EngineOptions::default())
    }

    fn feed(e: &mut Engine, store: &Store, t: i64, v: f64) {
        let mut f = Family::gauge("node_load1", "load");
        f.push([("instance", "a")], v);
        store.ingest(t, &[f]);
        e.cycle(store, t);
    }

    fn rule(for_: Option<Duration>) -> AlertRuleConfig {
        AlertRuleConfig {
            alert: "LoadAnomaly".into(),
            queries: vec![],
            score_above: Some(0.99),
            breach_within: None,
            for_,
            labels: [("severity".to_string(), "warning".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "load on {{ $labels.instance }} is {{ $value }}".to_string(),
            )]
            .into(),
        }
    }

    #[test]
    fn fires_after_for_and_stops_when_the_condition_clears() {
        let store = Store::new(3_600_000, 100_000);
        let mut e = engine();
        let mut rules = Rules::new(
            vec![rule(Some(Duration::from_secs(20)))],
            [("cluster".to_string(), "c1".to_string())].into(),
        );
        for i in 0..60 {
            feed(
                &mut e,
                &store,
                i * 10_000,
                1.0 + 0.05 * ((i * 7) % 5) as f64,
            );
            assert!(rules.evaluate(&e, i * 10_000).is_empty());
        }
        // Anomalous from t=600 s: pending at 600 and 610, firing from 620.
        feed(&mut e, &store, 600_000, 9.0);
        assert!(rules.evaluate(&e, 600_000).is_empty());
        feed(&mut e, &store, 610_000, 9.5);
        assert!(rules.evaluate(&e, 610_000).is_empty());
        feed(&mut e, &store, 620_000, 10.0);
        let f = rules.evaluate(&e, 620_000);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].active_since_ms, 600_000);
        assert_eq!(f[0].labels["alertname"], "LoadAnomaly");
        assert_eq!(f[0].labels["instance"], "a");
        assert_eq!(f[0].labels["metric"], "node_load1");
        assert_eq!(f[0].labels["cluster"], "c1");
        assert_eq!(f[0].labels["severity"], "warning");
        assert_eq!(f[0].annotations["summary"], "load on a is 10");
        assert!(f[0].annotations["description"].contains("expected"));
        // Back to normal values long enough for the score to fall.
        let mut cleared = false;
        for i in 63..200 {
            feed(
                &mut e,
                &store,
                i * 10_000,
                1.0 + 0.05 * ((i * 7) % 5) as f64,
            );
            if rules.evaluate(&e, i * 10_000).is_empty() {
                cleared = true;
                break;
            }
        }
        assert!(cleared, "the alert never cleared");
    }
}
