//! Reports: `imd-analyzer report --from T --to T --format html|json`, and
//! the same written on a schedule by the running analyzer (`reports:` in
//! its configuration).
//!
//! Where the numbers come from:
//! - anomalies, events, expected bands and forecasts: imd's own published
//!   series (`imd_anomaly_score`, `imd_expected{,_lower,_upper}`,
//!   `imd_forecast{,_lower,_upper}`) as stored by the Prometheus that
//!   scrapes the analyzer, read over the range through remote-read or
//!   `query_range` (the `reports.source` of the configuration, its first
//!   source, or `--prometheus URL`);
//! - the analysed values themselves (the charts' line, forecast accuracy):
//!   each configured query read again through its source, rate applied as
//!   the engine applies it (needs `--config.file`);
//! - alerts: the records the analyzer keeps in its data directory
//!   (`alert-history.jsonl`, `escalation-state.json`).
//!
//! Modules: [`data`] gathers, [`compute`] summarises, [`svg`] draws the
//! charts, [`html`] renders the page, [`schedule`] writes reports on a
//! schedule.

pub mod compute;
pub mod data;
pub mod html;
pub mod schedule;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Config, SourceKind};
use crate::read::Source;

/// A report: the same content in JSON and (with charts drawn) in HTML.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// Start of the range covered.
    pub from: String,
    /// End of the range covered.
    pub to: String,
    /// Score from which a point counts as anomalous.
    pub threshold: f64,
    /// Totals.
    pub summary: Summary,
    /// Anomalies by host (the `instance` label).
    pub hosts: Vec<HostRow>,
    /// Anomalies by series, most events first.
    pub series: Vec<SeriesRow>,
    /// The events with the highest peak scores, with chart data.
    pub top_events: Vec<Event>,
    /// Forecast accuracy by query, horizon and model.
    pub accuracy: Vec<AccuracyRow>,
    /// Alert totals and times to acknowledge and to resolve.
    pub alert_summary: AlertSummary,
    /// Every alert that fired in the range.
    pub alerts: Vec<AlertRow>,
    /// What could not be included, and why.
    pub notes: Vec<String>,
}

/// Report totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Series with an anomaly score in the range.
    pub series: usize,
    /// Of those, series with at least one event.
    pub anomalous_series: usize,
    /// Points scoring at least the threshold.
    pub anomalous_points: usize,
    /// Runs of consecutive anomalous points.
    pub events: usize,
    /// Distinct hosts.
    pub hosts: usize,
}

/// Anomalies of one host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostRow {
    /// The `instance` label (empty for series without one).
    pub host: String,
    /// Its series.
    pub series: usize,
    /// Its series with at least one event.
    pub anomalous_series: usize,
    /// Its events.
    pub events: usize,
    /// Its anomalous points.
    pub anomalous_points: usize,
    /// Its highest score.
    pub max_score: Option<f64>,
}

/// Anomalies of one series.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// The query.
    pub query: String,
    /// The series' labels as imd publishes them (with `query`).
    pub labels: BTreeMap<String, String>,
    /// Its host.
    pub host: String,
    /// The anomaly model.
    pub model: String,
    /// Score points in the range.
    pub points: usize,
    /// Of those, anomalous.
    pub anomalous_points: usize,
    /// Events.
    pub events: usize,
    /// Highest score.
    pub max_score: Option<f64>,
    /// When it was reached.
    pub max_score_at: Option<String>,
}

/// One anomalous event: consecutive points of a series scoring at least
/// the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The query.
    pub query: String,
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// Its host.
    pub host: String,
    /// First anomalous point.
    pub start: String,
    /// Last anomalous point.
    pub end: String,
    /// `end - start`.
    pub duration_seconds: f64,
    /// Anomalous points.
    pub points: usize,
    /// Highest score.
    pub peak_score: f64,
    /// When.
    pub peak_at: String,
    /// The analysed value then (when known).
    pub value_at_peak: Option<f64>,
    /// The expected value then.
    pub expected_at_peak: Option<f64>,
    /// The expected band's lower bound then.
    pub lower_at_peak: Option<f64>,
    /// The expected band's upper bound then.
    pub upper_at_peak: Option<f64>,
    /// What the chart shows.
    pub chart: ChartData,
}

/// The data of an event's chart (times in ms since the epoch).
#[derive(Debug, Clone, Serialize)]
pub struct ChartData {
    /// Start of the chart.
    pub from_ms: i64,
    /// End of the chart.
    pub to_ms: i64,
    /// Start of the event (shaded).
    pub event_from_ms: i64,
    /// End of the event.
    pub event_to_ms: i64,
    /// The threshold line of the score panel.
    pub threshold: f64,
    /// `[t, value]` of the analysed series.
    pub values: Vec<[f64; 2]>,
    /// `[t, expected, lower, upper]`.
    pub expected: Vec<[f64; 4]>,
    /// `[t, score]`.
    pub score: Vec<[f64; 2]>,
}

/// Forecast accuracy of one query, horizon and model.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyRow {
    /// The query.
    pub query: String,
    /// The horizon label (`5m`, `1h`).
    pub horizon: String,
    /// The forecasting model.
    pub model: String,
    /// Series compared.
    pub series: usize,
    /// Forecasts compared with the value at their target time.
    pub pairs: usize,
    /// Mean absolute error.
    pub mae: f64,
    /// Symmetric mean absolute percentage error, 0 to 200.
    pub smape_percent: f64,
    /// Share of values inside the forecast's bounds.
    pub coverage_percent: Option<f64>,
}

/// Durations in seconds: how many, mean, median, longest.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Durations {
    /// How many.
    pub count: usize,
    /// Mean.
    pub mean_seconds: Option<f64>,
    /// Median (the mean of the middle two for an even count).
    pub median_seconds: Option<f64>,
    /// Longest.
    pub max_seconds: Option<f64>,
}

impl Durations {
    /// The statistics of `v`.
    pub fn of(v: impl Iterator<Item = f64>) -> Durations {
        let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Durations::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Durations {
            count: n,
            mean_seconds: Some(v.iter().sum::<f64>() / n as f64),
            median_seconds: Some(median),
            max_seconds: v.last().copied(),
        }
    }
}

/// Alert totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertSummary {
    /// Alerts that fired in the range.
    pub alerts: usize,
    /// Of those, acknowledged.
    pub acknowledged: usize,
    /// Resolved.
    pub resolved: usize,
    /// Escalated past level 0.
    pub escalated: usize,
    /// From firing to acknowledgement.
    pub time_to_acknowledge: Durations,
    /// From firing to resolution.
    pub time_to_resolve: Durations,
}

/// One alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    /// `alertname`.
    pub alertname: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// `firing`, `acknowledged` or `resolved`.
    pub state: String,
    /// The escalation policy.
    pub policy: Option<String>,
    /// The highest level reached.
    pub max_level: usize,
    /// When it first fired.
    pub fired_at: String,
    /// When it was acknowledged.
    pub acknowledged_at: Option<String>,
    /// By whom.
    pub acknowledged_by: Option<String>,
    /// `api` or `silence`.
    pub acknowledged_via: Option<String>,
    /// Seconds from firing to acknowledgement.
    pub time_to_acknowledge_seconds: Option<f64>,
    /// When it was resolved.
    pub resolved_at: Option<String>,
    /// By whom (`imd-analyzer` when the condition cleared).
    pub resolved_by: Option<String>,
    /// Whether a person resolved it.
    pub resolved_manually: Option<bool>,
    /// Seconds from firing to resolution.
    pub time_to_resolve_seconds: Option<f64>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One self-contained HTML file with SVG charts.
    Html,
    /// The same content as JSON.
    Json,
}

impl Format {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Json => "json",
        }
    }
}

/// Renders a report in a format.
pub fn render(report: &Report, format: Format) -> Vec<u8> {
    match format {
        Format::Html => html::render(report).into_bytes(),
        Format::Json => {
            let mut v = serde_json::to_vec_pretty(report).unwrap_or_default();
            v.push(b'\n');
            v
        }
    }
}

/// Parses a report time: RFC 3339 (`2026-01-01T00:00:00Z`), `now`, or
/// relative to `now_ms` (`-24h`, `now-90m`).
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        let d = humantime::parse_duration(rel)
            .map_err(|e| format!("{s:?}: not a duration after `-` ({e})"))?;
        return Ok(now_ms - d.as_millis() as i64);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("{s:?}: not RFC 3339 (2026-01-01T00:00:00Z), `now` or `-24h` ({e})"))
}

/// Where a report's data comes from.
pub struct Inputs {
    /// The analyzer's configuration (queries, sources), if known.
    pub config: Option<Config>,
    /// Where imd's own series are read (overrides the configuration's).
    pub imd_url: Option<String>,
    /// Source name in the configuration for imd's series (default: the
    /// first source).
    pub imd_source: Option<String>,
    /// The analyzer's data directory (alert records).
    pub storage_path: PathBuf,
}

/// What the report covers.
pub use compute::Params;

/// Gathers the data and builds the report. Blocking (reads sources).
pub fn generate(inputs: &Inputs, params: &Params) -> anyhow::Result<Report> {
    if params.to_ms <= params.from_ms {
        anyhow::bail!("the report's end must be after its start");
    }
    let mut notes = Vec::new();
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if let Some(c) = &inputs.config {
        for (i, s) in c.sources.iter().enumerate() {
            sources.push(build_source(s).map_err(|e| anyhow::anyhow!("key `sources[{i}]`: {e}"))?);
        }
    }
    let own: Box<dyn Source>;
    let imd: &dyn Source = match (&inputs.imd_url, &inputs.config) {
        (Some(url), _) => {
            own = remote_read(url)?;
            own.as_ref()
        }
        (None, Some(c)) => {
            let i = match &inputs.imd_source {
                Some(name) => c
                    .sources
                    .iter()
                    .position(|s| &s.name == name)
                    .ok_or_else(|| {
                        anyhow::anyhow!("key `reports.source`: no source named {name:?}")
                    })?,
                None => 0,
            };
            sources[i].as_ref()
        }
        (None, None) => anyhow::bail!("give --config.file or --prometheus URL"),
    };
    let queries: Vec<(usize, crate::query::Query)> = inputs
        .config
        .as_ref()
        .map(|c| c.queries())
        .unwrap_or_default();
    if inputs.config.is_none() {
        notes.push(
            "no configuration given: the analysed values (chart lines, forecast accuracy) need --config.file".into(),
        );
    }
    let qs: Vec<(&dyn Source, &crate::query::Query)> = queries
        .iter()
        .filter_map(|(i, q)| Some((sources.get(*i)?.as_ref(), q)))
        .collect();
    let series = data::read_series(imd, &qs, params.from_ms, params.to_ms, &mut notes)?;
    if series.is_empty() {
        notes.push("no imd_anomaly_score series in the range: is the analyzer scraped by the Prometheus read?".into());
    }
    let alerts = data::read_alerts(&inputs.storage_path, params.from_ms, params.to_ms)?;
    Ok(compute::build(params, &series, &alerts, notes))
}

fn build_source(s: &crate::config::SourceConfig) -> anyhow::Result<Box<dyn Source>> {
    let base = s.url.trim_end_matches('/');
    Ok(match s.kind {
        SourceKind::RemoteRead => {
            let mut o = crate::read::remote::RemoteReadOptions::new(format!("{base}/api/v1/read"));
            o.http = s.http.clone();
            Box::new(crate::read::remote::RemoteRead::new(&o)?)
        }
        SourceKind::QueryRange => {
            let mut o = crate::read::promql::PromqlOptions::new(base, s.step);
            o.http = s.http.clone();
            o.query_offset = s.query_offset;
            Box::new(crate::read::promql::QueryRange::new(&o)?)
        }
    })
}

fn remote_read(url: &str) -> anyhow::Result<Box<dyn Source>> {
    let o = crate::read::remote::RemoteReadOptions::new(format!(
        "{}/api/v1/read",
        url.trim_end_matches('/')
    ));
    Ok(Box::new(crate::read::remote::RemoteRead::new(&o)?))
}

/// `imd-analyzer report`: writes one report.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Start: RFC 3339, `now`, or relative (`-24h`).
    #[arg(long, default_value = "-24h", allow_hyphen_values = true)]
    pub from: String,
    /// End: RFC 3339, `now`, or relative.
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    pub to: String,
    /// `html` (one self-contained file with SVG charts) or `json`.
    #[arg(long, value_enum, default_value = "html")]
    pub format: Format,
    /// Output file (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The analyzer's configuration: its sources and queries.
    #[arg(id = "config.file", long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The analyzer's data directory (alert history).
    #[arg(
        id = "storage.path",
        long = "storage.path",
        value_name = "DIR",
        default_value = "data/analyzer"
    )]
    pub storage_path: PathBuf,
    /// Prometheus (remote-read) holding imd's own series (default: the
    /// configuration's `reports.source` or first source).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Score from which a point is anomalous.
    #[arg(
        id = "anomaly.threshold",
        long = "anomaly.threshold",
        default_value_t = 0.99
    )]
    pub threshold: f64,
    /// How many top events get a chart.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Runs `imd-analyzer report`.
pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    let now = crate::schedule::now_ms();
    let from = parse_time(&a.from, now).map_err(|e| anyhow::anyhow!("--from {e}"))?;
    let to = parse_time(&a.to, now).map_err(|e| anyhow::anyhow!("--to {e}"))?;
    if !(0.0..=1.0).contains(&a.threshold) {
        anyhow::bail!("--anomaly.threshold must be between 0 and 1");
    }
    let config = a.config_file.as_deref().map(Config::load).transpose()?;
    let imd_source = config
        .as_ref()
        .and_then(|c| c.reports.as_ref())
        .and_then(|r| r.source.clone());
    let report = generate(
        &Inputs {
            config,
            imd_url: a.prometheus.clone(),
            imd_source,
            storage_path: a.storage_path.clone(),
        },
        &Params {
            from_ms: from,
            to_ms: to,
            threshold: a.threshold,
            top: a.top,
        },
    )
    .map_err(|e| match &a.config_file {
        Some(f) => anyhow::anyhow!("{}: {e:#}", f.display()),
        None => e,
    })?;
    let body = render(&report, a.format);
    match &a.output {
        Some(p) => write(p, &body),
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&body)?;
            Ok(())
        }
    }
}

fn write(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    imd_exporter::fsutil::write_atomically(path, body)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// `reports:` in the analyzer's configuration: reports written on a
/// schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsConfig {
    /// How often a report is written (the first one `every` after start).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How far back each report looks (default: `every`).
    #[serde(default, with = "humantime_serde")]
    pub range: Option<Duration>,
    /// Where reports are written (created when missing).
    pub directory: PathBuf,
    /// Formats written (default: html and json).
    #[serde(default = "default_formats")]
    pub formats: Vec<Format>,
    /// Source holding imd's own series (default: the first source).
    #[serde(default)]
    pub source: Option<String>,
    /// Score from which a point is anomalous.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// How many top events get a chart.
    #[serde(default = "default_top")]
    pub top: usize,
}

fn default_formats() -> Vec<Format> {
    vec![Format::Html, Format::Json]
}
fn default_threshold() -> f64 {
    0.99
}
fn default_top() -> usize {
    10
}

impl ReportsConfig {
    /// Checks values the schema cannot; the key is relative to `reports`.
    pub fn check(&self, sources: &[&str]) -> Result<(), (String, String)> {
        if self.every < Duration::from_secs(1) {
            return Err((".every".into(), "must be at least 1s".into()));
        }
        if self.range.is_some_and(|r| r.is_zero()) {
            return Err((".range".into(), "must be positive".into()));
        }
        if self.formats.is_empty() {
            return Err((".formats".into(), "at least one format is needed".into()));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err((".threshold".into(), "must be between 0 and 1".into()));
        }
        if let Some(s) = &self.source
            && !sources.contains(&s.as_str())
        {
            return Err((".source".into(), format!("no source named {s:?}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_now_or_relative() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-24h", now), Ok(now - 86_400_000));
        assert_eq!(parse_time("now-90m", now), Ok(now - 5_400_000));
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z", now),
            Ok(1_767_225_600_000)
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert!(parse_time("-abc", now).unwrap_err().contains("duration"));
    }

    #[test]
    fn durations_have_mean_median_and_max() {
        let d = Durations::of([60.0, 120.0, 600.0, 30.0].into_iter());
        assert_eq!(d.count, 4);
        assert_eq!(d.median_seconds, Some(90.0));
        assert_eq!(d.mean_seconds, Some(202.5));
        assert_eq!(d.max_seconds, Some(600.0));
        assert_eq!(Durations::of(std::iter::empty()), Durations::default());
    }

    #[test]
    fn reports_config_is_checked() {
        let c: ReportsConfig = serde_yaml_ng::from_str("every: 24h\ndirectory: /tmp/r\n").unwrap();
        assert_eq!(c.formats, vec![Format::Html, Format::Json]);
        assert!(c.check(&["prom"]).is_ok());
        let c: ReportsConfig =
            serde_yaml_ng::from_str("every: 24h\ndirectory: /tmp/r\nsource: x\n").unwrap();
        assert_eq!(c.check(&["prom"]).unwrap_err().0, ".source");
        assert!(
            serde_yaml_ng::from_str::<ReportsConfig>("every: 1h\ndirectory: d\nformat: [html]\n")
                .is_err()
        );
        assert!(
            serde_yaml_ng::from_str::<ReportsConfig>("every: 1h\ndirectory: d\nformats: [pdf]\n")
                .is_err()
        );
    }
}
