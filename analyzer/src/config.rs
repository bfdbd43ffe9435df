//! The analyzer's YAML configuration (`--config.file`): where series come
//! from, what is analysed with which models, where alerts go, and how the
//! results are named. Unknown keys are errors; every error names the file,
//! the line when known, and the key.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use imd_exporter::config::{ConfigError, load_yaml};
use serde::Deserialize;

use crate::alert::AlertmanagerConfig;
use crate::emit::remote_write::RemoteWriteConfig;
use crate::query::{Query, QueryConfig};
use crate::read::http::HttpOptions;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Schedule and defaults.
    #[serde(default)]
    pub global: Global,
    /// Where series are read from; the first is the default source.
    pub sources: Vec<SourceConfig>,
    /// What is analysed.
    pub queries: Vec<QueryEntry>,
    /// Where alerts go and when they fire.
    #[serde(default)]
    pub alerting: Option<AlertingConfig>,
    /// How the results are published.
    #[serde(default)]
    pub output: OutputConfig,
    /// Reports written on a schedule.
    #[serde(default)]
    pub reports: Option<crate::report::ReportsConfig>,
}

/// Schedule and defaults for every query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// How often new points are read, scored and forecast.
    #[serde(default = "default_infer_every", with = "humantime_serde")]
    pub infer_every: Duration,
    /// How often every series is refitted on its whole history.
    #[serde(default = "default_fit_every", with = "humantime_serde")]
    pub fit_every: Duration,
    /// A series with no point this recent is stale; also the overlap of
    /// incremental reads (PromQL's lookback delta).
    #[serde(default = "default_lookback", with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// Queries analysed at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// The most series one query analyses (per shard); new series beyond
    /// it are left out, logged and counted in
    /// `imd_analyzer_series_limited_total{query}`, so that a selector
    /// matching far more than meant cannot exhaust memory.
    #[serde(default = "default_max_series_per_query")]
    pub max_series_per_query: usize,
    /// The most samples one read decodes (remote-read sources); beyond it
    /// the rest of the answer is not read, the read counts in
    /// `imd_read_limited_total{reason="samples"}` and the series it lacks
    /// keep their state, so that memory stays bounded.
    #[serde(default = "default_max_samples_per_read")]
    pub max_samples_per_read: usize,
    /// The most series imd publishes (`/metrics`, remote write); the rest
    /// are left out and counted in `imd_analyzer_emitted_series_limited`.
    #[serde(default = "default_max_emitted_series")]
    pub max_emitted_series: usize,
}

fn default_infer_every() -> Duration {
    Duration::from_secs(60)
}
fn default_fit_every() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_lookback() -> Duration {
    Duration::from_secs(300)
}
fn default_concurrency() -> usize {
    2
}
fn default_max_series_per_query() -> usize {
    10_000
}
fn default_max_samples_per_read() -> usize {
    crate::read::remote::DEFAULT_MAX_SAMPLES
}
fn default_max_emitted_series() -> usize {
    1_000_000
}
fn default_resolved_retention() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_queue_capacity() -> usize {
    10_000
}

impl Default for Global {
    fn default() -> Self {
        Global {
            infer_every: default_infer_every(),
            fit_every: default_fit_every(),
            lookback_delta: default_lookback(),
            concurrency: default_concurrency(),
            max_series_per_query: default_max_series_per_query(),
            max_samples_per_read: default_max_samples_per_read(),
            max_emitted_series: default_max_emitted_series(),
        }
    }
}

/// How a source is read.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Prometheus' remote-read API (also Thanos, Mimir, Cortex).
    #[default]
    RemoteRead,
    /// The PromQL `query_range` API (e.g. VictoriaMetrics).
    QueryRange,
}

/// One place series are read from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name that queries refer to.
    pub name: String,
    /// Base URL, e.g. `http://localhost:9090`.
    pub url: String,
    /// `remote_read` (default) or `query_range`.
    #[serde(default, rename = "type")]
    pub kind: SourceKind,
    /// Remote-read only: ask for streamed XOR chunks first (default true)
    /// or for samples only.
    #[serde(default = "yes")]
    pub prefer_streamed: bool,
    /// query_range only: resolution of the query.
    #[serde(default = "default_step", with = "humantime_serde")]
    pub step: Duration,
    /// query_range only: read up to this long before now (default 0), for
    /// back ends whose newest points are provisional: VictoriaMetrics
    /// answers the points within its `-search.latencyOffset` (30s) of now
    /// with the value before them, and imd never reads a point twice.
    #[serde(default, with = "humantime_serde")]
    pub query_offset: Duration,
    /// Timeout, authentication, headers and TLS, as Prometheus names them.
    #[serde(flatten)]
    pub http: HttpOptions,
}

fn yes() -> bool {
    true
}
fn default_step() -> Duration {
    Duration::from_secs(60)
}

/// A query and the source it reads from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryEntry {
    /// Source name (default: the first source).
    #[serde(default)]
    pub source: Option<String>,
    /// Several series analysed together, instead of `selector` or `expr`.
    #[serde(default)]
    pub multivariate: Option<crate::query::MultivariateConfig>,
    /// The query itself.
    #[serde(flatten)]
    pub query: QueryConfig,
}

impl QueryEntry {
    /// The checked query (multivariate or not).
    pub fn build(&self) -> Result<Query, (String, String)> {
        match &self.multivariate {
            Some(m) => Query::multivariate(self.query.clone(), m),
            None => Query::new(self.query.clone()),
        }
    }
}

/// Where alerts go and when they fire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Alertmanagers; every alert goes to all of them.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// How often firing alerts are re-sent (Prometheus: 1m).
    #[serde(default = "default_infer_every", with = "humantime_serde")]
    pub resend_delay: Duration,
    /// How long a resolved alert is kept and re-sent (Prometheus: 15m).
    #[serde(default = "default_resolved_retention", with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// Most alerts waiting for one Alertmanager while it is unreachable.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Labels added to every alert (e.g. `cluster`).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// When alerts fire.
    pub rules: Vec<AlertRuleConfig>,
    /// Escalation policies, acknowledgement and resolution.
    #[serde(default)]
    pub escalation: crate::alert::escalation::EscalationConfig,
}

/// A condition on the analysis that fires an alert per series.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRuleConfig {
    /// The `alertname` label.
    pub alert: String,
    /// Queries the rule applies to (default: all).
    #[serde(default)]
    pub queries: Vec<String>,
    /// Fire when the anomaly score is at least this.
    #[serde(default)]
    pub score_above: Option<f64>,
    /// Fire when the forecast crosses the query's threshold within this.
    #[serde(default, with = "humantime_serde")]
    pub breach_within: Option<Duration>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// Labels added to the alert (e.g. `severity`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations; `{{ $labels.NAME }}`, `{{ $value }}`, `{{ $expected }}`,
    /// `{{ $lower }}` and `{{ $upper }}` are filled in.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// How results are named and where they also go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Also publish the series under vmanomaly's names (`anomaly_score`,
    /// `yhat`, `yhat_lower`, `yhat_upper`, with `model_alias`), for users
    /// migrating dashboards and rules.
    #[serde(default)]
    pub vmanomaly_names: bool,
    /// Base URL the page links to for charts (e.g. Grafana's explore).
    #[serde(default)]
    pub grafana_url: Option<String>,
    /// Receivers the series are also written to with remote-write 1.0
    /// (e.g. a Prometheus started with `--web.enable-remote-write-receiver`).
    #[serde(default)]
    pub remote_write: Vec<RemoteWriteConfig>,
}

impl Config {
    /// Loads and validates a configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let c: Config = load_yaml(file)?;
        c.validate(file)?;
        Ok(c)
    }

    /// Checks what the schema cannot; errors name the key.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |key: String, msg: String| ConfigError::at_key(file, &key, msg);
        if self.sources.is_empty() {
            return Err(err(
                "sources".into(),
                "at least one source is needed".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    format!("sources[{i}].name"),
                    format!("duplicate source name {:?}", s.name),
                ));
            }
            check_url(&s.url).map_err(|m| err(format!("sources[{i}].url"), m))?;
            if s.step.is_zero() {
                return Err(err(format!("sources[{i}].step"), "must be positive".into()));
            }
            if s.kind != SourceKind::QueryRange && !s.query_offset.is_zero() {
                return Err(err(
                    format!("sources[{i}].query_offset"),
                    "only a source of type query_range takes a query_offset".into(),
                ));
            }
        }
        if self.global.infer_every.is_zero() {
            return Err(err("global.infer_every".into(), "must be positive".into()));
        }
        if self.global.max_series_per_query == 0 {
            return Err(err(
                "global.max_series_per_query".into(),
                "must be at least 1".into(),
            ));
        }
        for (key, v) in [
            (
                "global.max_samples_per_read",
                self.global.max_samples_per_read,
            ),
            ("global.max_emitted_series", self.global.max_emitted_series),
        ] {
            if v == 0 {
                return Err(err(key.into(), "must be at least 1".into()));
            }
        }
        if self.global.concurrency == 0 {
            return Err(err(
                "global.concurrency".into(),
                "must be at least 1".into(),
            ));
        }
        let mut qnames = std::collections::HashSet::new();
        for (i, q) in self.queries.iter().enumerate() {
            if let Some(src) = &q.source
                && !names.contains(src.as_str())
            {
                return Err(err(
                    format!("queries[{i}].source"),
                    format!("no source named {src:?}"),
                ));
            }
            if !qnames.insert(q.query.name.as_str()) {
                return Err(err(
                    format!("queries[{i}].name"),
                    format!("duplicate query name {:?}", q.query.name),
                ));
            }
            q.build()
                .map_err(|(k, m)| err(format!("queries[{i}]{k}"), m))?;
            let source = match &q.source {
                Some(name) => self.sources.iter().find(|s| &s.name == name),
                None => self.sources.first(),
            };
            if q.query.expr.is_some() && source.is_some_and(|s| s.kind != SourceKind::QueryRange) {
                return Err(err(
                    format!("queries[{i}].expr"),
                    "a PromQL expression needs a source of type query_range; remote-read takes a selector".into(),
                ));
            }
        }
        if let Some(u) = &self.output.grafana_url {
            check_url(u).map_err(|m| err("output.grafana_url".into(), m))?;
        }
        if let Some(r) = &self.reports {
            let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
            r.check(&names)
                .map_err(|(k, m)| err(format!("reports{k}"), m))?;
        }
        if let Some(a) = &self.alerting {
            if a.alertmanagers.is_empty() {
                return Err(err(
                    "alerting.alertmanagers".into(),
                    "at least one Alertmanager is needed".into(),
                ));
            }
            for (i, am) in a.alertmanagers.iter().enumerate() {
                check_url(&am.url)
                    .map_err(|m| err(format!("alerting.alertmanagers[{i}].url"), m))?;
            }
            a.escalation
                .check()
                .map_err(|(k, m)| err(format!("alerting.escalation{k}"), m))?;
            for (i, r) in a.rules.iter().enumerate() {
                let key = |k: &str| format!("alerting.rules[{i}]{k}");
                if r.alert.is_empty() {
                    return Err(err(key(".alert"), "must not be empty".into()));
                }
                if r.score_above.is_none() && r.breach_within.is_none() {
                    return Err(err(key(""), "needs score_above or breach_within".into()));
                }
                if let Some(s) = r.score_above
                    && !(0.0..=1.0).contains(&s)
                {
                    return Err(err(
                        key(".score_above"),
                        format!("must be between 0 and 1, is {s}"),
                    ));
                }
                for (j, q) in r.queries.iter().enumerate() {
                    if !qnames.contains(q.as_str()) {
                        return Err(err(
                            key(&format!(".queries[{j}]")),
                            format!("no query named {q:?}"),
                        ));
                    }
                }
                for l in r.labels.keys() {
                    if !valid_label_name(l) {
                        return Err(err(
                            key(&format!(".labels.{l}")),
                            "invalid label name".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The checked queries with the index of their source.
    pub fn queries(&self) -> Vec<(usize, Query)> {
        self.queries
            .iter()
            .filter_map(|q| {
                let src = match &q.source {
                    Some(name) => self.sources.iter().position(|s| &s.name == name)?,
                    None => 0,
                };
                Some((src, q.build().ok()?))
            })
            .collect()
    }
}

fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    Ok(())
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use imd_exporter::config::parse_yaml;

    fn check(yaml: &str) -> Result<Config, String> {
        let f = Path::new("analyzer.yml");
        let c: Config = parse_yaml(f, yaml).map_err(|e| e.to_string())?;
        c.validate(f).map_err(|e| e.to_string())?;
        Ok(c)
    }

    const MINIMAL: &str = "sources:\n  - name: prom\n    url: http://localhost:9090\nqueries:\n  - name: load\n    selector: node_load1\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = check(MINIMAL).unwrap();
        assert_eq!(c.global.infer_every, Duration::from_secs(60));
        assert_eq!(c.queries()[0].0, 0);
        assert_eq!(c.queries()[0].1.config.anomaly_model, "mad");
    }

    #[test]
    fn query_offset_is_for_query_range_sources() {
        let y = "sources:\n  - name: vm\n    url: http://localhost:8428\n    type: TYPE\n    query_offset: 30s\nqueries: []\n";
        let c = check(&y.replace("TYPE", "query_range")).unwrap();
        assert_eq!(c.sources[0].query_offset, Duration::from_secs(30));
        let e = check(&y.replace("TYPE", "remote_read")).unwrap_err();
        assert!(e.contains("key `sources[0].query_offset`"), "{e}");
    }

    #[test]
    fn expressions_need_a_query_range_source() {
        let expr = "sources:\n  - name: prom\n    url: http://localhost:9090\n    type: TYPE\nqueries:\n  - name: rps\n    expr: sum by (job) (rate(x[5m]))\n";
        let e = check(&expr.replace("TYPE", "remote_read")).unwrap_err();
        assert!(e.contains("key `queries[0].expr`"), "{e}");
        let c = check(&expr.replace("TYPE", "query_range")).unwrap();
        assert!(matches!(
            c.queries()[0].1.target,
            crate::query::Target::Expr(_)
        ));
        let both = format!("{}    selector: x\n", expr.replace("TYPE", "query_range"));
        assert!(
            check(&both)
                .unwrap_err()
                .contains("give selector or expr, not both")
        );
        let neither = "sources:\n  - name: p\n    url: http://x:9090\nqueries:\n  - name: q\n";
        assert!(
            check(neither)
                .unwrap_err()
                .contains("key `queries[0].selector`: give selector or expr")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = check(&format!("{MINIMAL}    anomaly_model: nope\n")).unwrap_err();
        assert!(e.contains("key `queries[0].anomaly_model`"), "{e}");
        let e = check(&format!("{MINIMAL}    selectr: x\n")).unwrap_err();
        assert!(e.contains("unknown field `selectr`"), "{e}");
        let e = check(&MINIMAL.replace("http://localhost:9090", "localhost:9090")).unwrap_err();
        assert!(e.contains("key `sources[0].url`"), "{e}");
        let e = check(&format!("{MINIMAL}    source: other\n")).unwrap_err();
        assert!(e.contains("key `queries[0].source`"), "{e}");
        let e = check(&format!(
            "{MINIMAL}alerting:\n  alertmanagers: [{{url: 'http://x:9093'}}]\n  rules:\n    - alert: A\n      queries: [nope]\n      score_above: 0.9\n"
        ))
        .unwrap_err();
        assert!(e.contains("key `alerting.rules[0].queries[0]`"), "{e}");
        let e = check(&format!("{MINIMAL}global:\n  infer_every: 0s\n")).unwrap_err();
        assert!(e.contains("global.infer_every"), "{e}");
    }
}

#[cfg(test)]
mod flatten_tests {
    use super::*;
    use imd_exporter::config::parse_yaml;

    #[test]
    fn unknown_keys_in_flattened_sections_are_rejected() {
        let y = "sources:\n  - name: prom\n    url: http://localhost:9090\n    timout: 5s\nqueries: []\n";
        let e = parse_yaml::<Config>(Path::new("a.yml"), y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("timout"), "{e}");
        let y = "sources:\n  - name: prom\n    url: http://localhost:9090\n    timeout: 5s\n    headers: {X-Scope-OrgID: t1}\nqueries: []\n";
        let c = parse_yaml::<Config>(Path::new("a.yml"), y).unwrap();
        assert_eq!(c.sources[0].http.timeout, Duration::from_secs(5));
        let y = "sources:\n  - name: prom\n    url: http://localhost:9090\n    timeout: soon\nqueries: []\n";
        let e = parse_yaml::<Config>(Path::new("a.yml"), y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sources[0]"), "{e}");
    }
}
