//! What the analyzer watches: named queries, the models that run on them,
//! forecast horizons and thresholds.

use std::time::Duration;

use serde::Deserialize;

use crate::model::Point;
use crate::model::{self, ModelParams};
use crate::read::{ReadError, Selector, SeriesData, Source};

/// One named query and what to do with the series it selects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Name, used as the `query` label of emitted series.
    pub name: String,
    /// A PromQL series selector, e.g. `node_load1` or `x{job="a"}`
    /// (give this or `expr`).
    #[serde(default)]
    pub selector: String,
    /// A PromQL expression, e.g. `sum by (job) (rate(http_requests_total[5m]))`,
    /// for sources of type `query_range` (give this or `selector`).
    #[serde(default)]
    pub expr: Option<String>,
    /// Analyse the per-second rate of a counter instead of its value.
    #[serde(default)]
    pub rate: bool,
    /// Anomaly model (see `model::NAMES`).
    #[serde(default = "default_anomaly_model")]
    pub anomaly_model: String,
    /// Forecasting model.
    #[serde(default = "default_forecast_model")]
    pub forecast_model: String,
    /// Window and warm-up of both models.
    #[serde(default)]
    pub params: ModelParams,
    /// How far ahead to forecast, e.g. `[5m, 1h]`.
    #[serde(default = "default_horizons", with = "humantime_list")]
    pub horizons: Vec<Duration>,
    /// Coverage of forecast bounds, e.g. 0.95.
    #[serde(default = "default_level")]
    pub level: f64,
    /// A level the series must not cross; the predicted time until the
    /// forecast crosses it is published as `imd_forecast_breach_seconds`.
    #[serde(default)]
    pub threshold: Option<Threshold>,
    /// How much history is read to fit a newly seen series.
    #[serde(default = "default_history", with = "humantime_serde")]
    pub history: Duration,
}

/// A threshold on a forecast: a fixed `value`, or a seasonal quantile
/// band `learned` from each series' history (see `model::threshold`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The fixed level (give this or `learned`).
    #[serde(default)]
    pub value: Option<f64>,
    /// Whether crossing means going `above` or `below` it.
    pub direction: Direction,
    /// A band learned from history, refreshed at each fit.
    #[serde(default)]
    pub learned: Option<model::threshold::Learned>,
}

impl Threshold {
    /// A fixed threshold.
    pub fn fixed(value: f64, direction: Direction) -> Threshold {
        Threshold {
            value: Some(value),
            direction,
            learned: None,
        }
    }

    /// The `threshold` label of the series that depend on it: the value,
    /// or `learned_q<quantile>`.
    pub fn label(&self) -> String {
        match (self.value, &self.learned) {
            (Some(v), _) => imd_exporter::exposition::format_value(v),
            (None, Some(l)) => format!("learned_q{}", l.quantile),
            (None, None) => String::new(),
        }
    }

    /// Checks the threshold; the error names the key below `threshold`.
    fn check(&self) -> Result<(), (String, String)> {
        match (self.value, &self.learned) {
            (Some(_), Some(_)) => {
                Err((".learned".into(), "give value or learned, not both".into()))
            }
            (None, None) => Err((".value".into(), "give value or learned".into())),
            (Some(v), None) if !v.is_finite() => {
                Err((".value".into(), "must be a finite number".into()))
            }
            (Some(_), None) => Ok(()),
            (None, Some(l)) => l.check().map_err(|(k, m)| (format!(".learned{k}"), m)),
        }
    }
}

/// Which side of a threshold is trouble.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Trouble when the value rises above the threshold.
    Above,
    /// Trouble when the value falls below the threshold.
    Below,
}

fn default_anomaly_model() -> String {
    "mad".into()
}
fn default_forecast_model() -> String {
    "drift".into()
}
fn default_horizons() -> Vec<Duration> {
    vec![Duration::from_secs(300)]
}
fn default_level() -> f64 {
    0.95
}
fn default_history() -> Duration {
    Duration::from_secs(3600)
}

mod humantime_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw: Vec<String> = Vec::deserialize(d)?;
        raw.iter()
            .map(|s| {
                humantime::parse_duration(s)
                    .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
            })
            .collect()
    }
}

/// A query checked and ready to run.
#[derive(Debug, Clone)]
pub struct Query {
    /// The configuration it came from.
    pub config: QueryConfig,
    /// What the query reads.
    pub target: Target,
}

/// What a query reads: a series selector (any source) or a PromQL
/// expression (sources that evaluate PromQL).
#[derive(Debug, Clone)]
pub enum Target {
    /// A parsed series selector.
    Selector(Selector),
    /// A PromQL expression, sent as it is.
    Expr(String),
    /// Several selectors analysed together per group (a multivariate query).
    Multivariate(MultiTarget),
}

/// A multivariate query: several series of one host or job analysed at
/// once by one learned detector (see `model::learned::multivariate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultivariateConfig {
    /// The inputs by name (the `input` label of the contributions; order
    /// is by name).
    pub inputs: std::collections::BTreeMap<String, InputConfig>,
    /// Labels whose values make a group (e.g. `[instance]`); series of one
    /// input that fall in one group are summed at equal timestamps.
    #[serde(default)]
    pub group_by: Vec<String>,
}

/// One input of a multivariate query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// A PromQL series selector.
    pub selector: String,
    /// Analyse the per-second rate of a counter instead of its value.
    #[serde(default)]
    pub rate: bool,
}

/// A checked multivariate query.
#[derive(Debug, Clone)]
pub struct MultiTarget {
    /// Name, selector and `rate` of each input, in name order.
    pub inputs: Vec<(String, Selector, bool)>,
    /// The grouping labels.
    pub group_by: Vec<String>,
}

impl Target {
    /// The points of every series the target yields in `[from_ms, to_ms]`.
    pub fn read(
        &self,
        source: &dyn Source,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SeriesData>, ReadError> {
        match self {
            Target::Selector(s) => source.read(s, from_ms, to_ms),
            Target::Expr(e) => source.read_expr(e, from_ms, to_ms),
            Target::Multivariate(m) => {
                let mut out = Vec::new();
                for (_, s, _) in &m.inputs {
                    out.extend(source.read(s, from_ms, to_ms)?);
                }
                Ok(out)
            }
        }
    }

    /// The points of the one series with these labels: an exact selector
    /// read, or for an expression its result filtered to that series.
    pub fn read_series(
        &self,
        source: &dyn Source,
        labels: &[(String, String)],
        from_ms: i64,
        to_ms: i64,
    ) -> Option<Vec<Point>> {
        let rows = match self {
            Target::Selector(_) => source.read(&Selector::exact(labels), from_ms, to_ms),
            Target::Expr(e) => source.read_expr(e, from_ms, to_ms),
            Target::Multivariate(_) => return None,
        };
        rows.ok()?
            .into_iter()
            .find(|r| r.labels == labels)
            .map(|r| r.points.into_points())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Selector(s) => write!(f, "{s}"),
            Target::Expr(e) => f.write_str(e),
            Target::Multivariate(m) => {
                let inputs: Vec<String> = m
                    .inputs
                    .iter()
                    .map(|(n, s, _)| format!("{n}: {s}"))
                    .collect();
                write!(f, "multivariate({})", inputs.join(", "))?;
                if !m.group_by.is_empty() {
                    write!(f, " by ({})", m.group_by.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl Query {
    /// Checks a multivariate query (`multivariate:` instead of `selector`
    /// or `expr`); errors name the key as [`Query::new`]'s do.
    pub fn multivariate(
        config: QueryConfig,
        mv: &MultivariateConfig,
    ) -> Result<Query, (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if config.name.is_empty() {
            return err(".name", "must not be empty".into());
        }
        if !config.selector.is_empty() || config.expr.is_some() {
            return err(
                ".multivariate",
                "a multivariate query takes its series from multivariate.inputs; give no selector or expr".into(),
            );
        }
        if config.threshold.is_some() {
            return err(
                ".threshold",
                "a multivariate query does not forecast".into(),
            );
        }
        let label_name = |s: &str| {
            let mut c = s.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        };
        if mv.inputs.len() < 2 {
            return err(
                ".multivariate.inputs",
                format!("give at least two inputs, has {}", mv.inputs.len()),
            );
        }
        let mut inputs = Vec::new();
        for (name, input) in &mv.inputs {
            if !label_name(name) {
                return err(
                    &format!(".multivariate.inputs.{name}"),
                    "an input name is letters, digits and _ (not first a digit)".into(),
                );
            }
            let sel = Selector::parse(&input.selector)
                .map_err(|e| (format!(".multivariate.inputs.{name}.selector"), e))?;
            inputs.push((name.clone(), sel, input.rate));
        }
        for (i, l) in mv.group_by.iter().enumerate() {
            if !label_name(l) || l == "__name__" {
                return err(
                    &format!(".multivariate.group_by[{i}]"),
                    format!("{l:?} is not a label name to group by"),
                );
            }
        }
        model::learned::multivariate::Multivariate::new(
            &config.anomaly_model,
            inputs.iter().map(|i| i.0.clone()).collect(),
            config.params.clone(),
        )
        .map_err(|e| (".anomaly_model".to_string(), e.to_string()))?;
        Ok(Query {
            target: Target::Multivariate(MultiTarget {
                inputs,
                group_by: mv.group_by.clone(),
            }),
            config,
        })
    }

    /// Checks a query's configuration; the error names the offending key
    /// (relative to the query, e.g. `.selector`).
    pub fn new(config: QueryConfig) -> Result<Query, (String, String)> {
        if config.name.is_empty() {
            return Err((".name".into(), "must not be empty".into()));
        }
        let target = match (&config.expr, config.selector.is_empty()) {
            (Some(_), false) => {
                return Err((".expr".into(), "give selector or expr, not both".into()));
            }
            (Some(e), true) if e.trim().is_empty() => {
                return Err((".expr".into(), "must not be empty".into()));
            }
            (Some(e), true) => Target::Expr(e.clone()),
            (None, true) => return Err((".selector".into(), "give selector or expr".into())),
            (None, false) => Target::Selector(
                Selector::parse(&config.selector).map_err(|e| (".selector".to_string(), e))?,
            ),
        };
        for (key, name) in [
            (".anomaly_model", &config.anomaly_model),
            (".forecast_model", &config.forecast_model),
        ] {
            model::build(name, &config.params).map_err(|e| (key.to_string(), e.to_string()))?;
        }
        if model::DETECTORS.contains(&config.forecast_model.as_str()) {
            return Err((
                ".forecast_model".into(),
                format!(
                    "{} detects anomalies only and does not forecast",
                    config.forecast_model
                ),
            ));
        }
        if !(0.5..1.0).contains(&config.level) {
            return Err((
                ".level".into(),
                format!("must be in [0.5, 1), is {}", config.level),
            ));
        }
        if config.horizons.iter().any(|h| h.is_zero()) {
            return Err((".horizons".into(), "horizons must be positive".into()));
        }
        if let Some(t) = &config.threshold {
            t.check().map_err(|(k, m)| (format!(".threshold{k}"), m))?;
        }
        Ok(Query { config, target })
    }
}

/// Formats a duration as Prometheus does in labels and flags (`5m`, `1h30m`).
pub fn prom_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(prom_duration(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn bad_queries_name_the_key() {
        let base = || QueryConfig {
            name: "q".into(),
            selector: "up".into(),
            expr: None,
            rate: false,
            anomaly_model: "mad".into(),
            forecast_model: "drift".into(),
            params: ModelParams::default(),
            horizons: vec![Duration::from_secs(60)],
            level: 0.95,
            threshold: None,
            history: Duration::from_secs(60),
        };
        assert!(Query::new(base()).is_ok());
        let mut c = base();
        c.selector = "up{".into();
        assert_eq!(Query::new(c).unwrap_err().0, ".selector");
        let mut c = base();
        c.anomaly_model = "nope".into();
        assert_eq!(Query::new(c).unwrap_err().0, ".anomaly_model");
        let mut c = base();
        c.level = 95.0;
        assert_eq!(Query::new(c).unwrap_err().0, ".level");
        let th = |y: &str| serde_yaml_ng::from_str::<Threshold>(y).unwrap();
        for (yaml, key) in [
            ("{direction: above}", ".threshold.value"),
            ("{value: .nan, direction: above}", ".threshold.value"),
            (
                "{value: 1, direction: above, learned: {quantile: 0.9}}",
                ".threshold.learned",
            ),
            (
                "{direction: above, learned: {quantile: 0}}",
                ".threshold.learned.quantile",
            ),
        ] {
            let mut c = base();
            c.threshold = Some(th(yaml));
            assert_eq!(Query::new(c).unwrap_err().0, key, "{yaml}");
        }
        let mut c = base();
        c.threshold = Some(th(
            "{direction: above, learned: {quantile: 0.99, season: 24}}",
        ));
        assert_eq!(c.threshold.unwrap().label(), "learned_q0.99");
        assert!(Query::new(c).is_ok());
        assert_eq!(Threshold::fixed(90.0, Direction::Above).label(), "90");
    }
}
