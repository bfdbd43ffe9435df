//! The `logs:` section of the exporter's configuration: which files are
//! tailed, how often, and the rules that turn their lines into metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::KeyError;

/// Log files tailed in the background and the rules that turn their lines
/// into metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// How often the files are read (default 1s).
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The files (or glob patterns) and their rules.
    #[serde(default)]
    pub files: Vec<LogFileConfig>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            poll_interval: default_poll_interval(),
            files: Vec::new(),
        }
    }
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// One tailed file, or every file a glob pattern matches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFileConfig {
    /// Absolute path of the file as the host sees it (re-rooted under
    /// `--path.rootfs`); `*`, `?` and `[...]` make it a glob pattern.
    pub path: String,
    /// Where reading starts the first time a file is seen at start-up.
    #[serde(default)]
    pub from: StartFrom,
    /// Rules applied to every line of the file.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// Where reading of a file starts when it is first seen at start-up (files
/// that appear later are always read from their beginning, and files with a
/// saved offset resume there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// Only lines written after the exporter started are read.
    #[default]
    End,
    /// The whole existing content is read.
    Beginning,
}

/// The kind of metric a rule produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Counts matching lines.
    #[default]
    Counter,
    /// Observes a number captured from each matching line.
    Histogram,
}

impl RuleKind {
    /// The keyword used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Counter => "counter",
            RuleKind::Histogram => "histogram",
        }
    }
}

/// A regular expression whose matching lines update a metric.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Metric name (a valid Prometheus metric name).
    pub name: String,
    /// Help text of the metric.
    #[serde(default)]
    pub help: Option<String>,
    /// Counter (default) or histogram.
    #[serde(default, rename = "type")]
    pub kind: RuleKind,
    /// Regular expression (Rust `regex` syntax) searched for in each line.
    pub regex: String,
    /// Named captures of `regex` whose text becomes a label of that name.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Labels with fixed values added to every series of this rule.
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// Named capture holding the observed number (histograms only, required there).
    #[serde(default)]
    pub value: Option<String>,
    /// Factor applied to the captured number, e.g. 0.001 for ms → s (default 1).
    #[serde(default)]
    pub scale: Option<f64>,
    /// Upper bounds of the histogram buckets (default Prometheus' defaults).
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
}

/// Prometheus client libraries' default histogram buckets.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl LogsConfig {
    /// Checks what the schema cannot: regexes compile, metric and label names
    /// are valid, listed labels are named captures, histograms have a value
    /// capture and increasing buckets, and rules sharing a metric name agree
    /// on its type, labels and buckets. The error's key is below `logs`, like
    /// `.files[0].rules[1].regex`.
    pub fn validate(&self) -> Result<(), KeyError> {
        super::rules::compile(self).map(|_| ())
    }
}

/// Whether `s` is a valid Prometheus metric name.
pub(crate) fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid Prometheus label name that a user may set.
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, parse_yaml};
    use std::path::Path;

    fn logs(yaml: &str) -> LogsConfig {
        let c: Config = parse_yaml(Path::new("x.yml"), yaml).unwrap();
        c.logs.unwrap()
    }

    fn err(yaml: &str) -> KeyError {
        logs(yaml).validate().unwrap_err()
    }

    #[test]
    fn the_documented_example_is_valid() {
        let c = logs(
            r#"
logs:
  poll_interval: 2s
  files:
    - path: /var/log/auth.log
      from: beginning
      rules:
        - name: imd_log_ssh_failed_logins_total
          help: Failed SSH logins.
          type: counter
          regex: 'Failed password for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+)'
          labels: [user]
          static_labels: {service: ssh}
        - name: app_request_duration_seconds
          type: histogram
          regex: 'took (?P<value>[0-9.]+)ms'
          value: value
          scale: 0.001
          buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]
"#,
        );
        c.validate().unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        assert_eq!(c.files[0].from, StartFrom::Beginning);
        assert_eq!(c.files[0].rules[1].kind, RuleKind::Histogram);
        assert_eq!(logs("logs: {}").poll_interval, Duration::from_secs(1));
        assert_eq!(
            logs("logs: {files: [{path: /x}]}").files[0].from,
            StartFrom::End
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_are_schema_errors() {
        let e = parse_yaml::<Config>(
            Path::new("x.yml"),
            "logs:\n  files:\n    - path: /x\n      form: end\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("line 4") && e.contains("unknown field `form`"),
            "{e}"
        );
        let e = parse_yaml::<Config>(
            Path::new("x.yml"),
            "logs:\n  files:\n    - path: /x\n      rules: [{name: a, regex: x, type: gauge}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("logs.files[0].rules[0].type"), "{e}");
        let e = parse_yaml::<Config>(Path::new("x.yml"), "logs:\n  poll_interval: often\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("logs.poll_interval"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key() {
        let base = "logs:\n  files:\n    - path: /var/log/x.log\n      rules:\n        - {name: ok_total, regex: ok}\n";
        let case = |rule: &str| err(&format!("{base}        - {rule}\n"));

        let e = case("{name: a_total, regex: '(unclosed'}");
        assert_eq!(e.key, ".files[0].rules[1].regex");
        assert!(e.message.contains("regular expression"), "{}", e.message);

        assert_eq!(
            case("{name: 'bad-name', regex: x}").key,
            ".files[0].rules[1].name"
        );
        assert_eq!(
            case("{name: a_total, regex: '(?P<u>x)', labels: [v]}").key,
            ".files[0].rules[1].labels[0]"
        );
        assert_eq!(
            case("{name: a_total, regex: '(?P<u>x)', labels: [u, u]}").key,
            ".files[0].rules[1].labels[1]"
        );
        assert_eq!(
            case("{name: a_total, regex: x, static_labels: {'1x': y}}").key,
            ".files[0].rules[1].static_labels.1x"
        );
        assert_eq!(
            case("{name: a_total, regex: '(?P<u>x)', labels: [u], static_labels: {u: y}}").key,
            ".files[0].rules[1].static_labels.u"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: x}").key,
            ".files[0].rules[1].value"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: '(?P<v>x)', value: w}").key,
            ".files[0].rules[1].value"
        );
        assert_eq!(
            case("{name: a_total, regex: '(?P<v>x)', value: v}").key,
            ".files[0].rules[1].value"
        );
        assert_eq!(
            case("{name: a_total, regex: x, buckets: [1]}").key,
            ".files[0].rules[1].buckets"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: '(?P<v>x)', value: v, buckets: [1, 1]}").key,
            ".files[0].rules[1].buckets[1]"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: '(?P<v>x)', value: v, buckets: []}").key,
            ".files[0].rules[1].buckets"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: '(?P<v>x)', value: v, scale: .nan}").key,
            ".files[0].rules[1].scale"
        );
        assert_eq!(
            case("{name: a, type: histogram, regex: '(?P<le>x)', value: le, labels: [le]}").key,
            ".files[0].rules[1].labels[0]"
        );
        // Same name as rule 0 but another type.
        let e = case("{name: ok_total, type: histogram, regex: '(?P<v>x)', value: v}");
        assert_eq!(e.key, ".files[0].rules[1].name");
        assert!(e.message.contains("files[0].rules[0]"), "{}", e.message);
        // Same name, other labels.
        assert_eq!(
            case("{name: ok_total, regex: x, static_labels: {a: b}}").key,
            ".files[0].rules[1].name"
        );
        // The exporter's own metrics are reserved.
        assert_eq!(
            case("{name: imd_log_lines_total, regex: x}").key,
            ".files[0].rules[1].name"
        );

        assert_eq!(
            err("logs:\n  files:\n    - path: var/log/x\n").key,
            ".files[0].path"
        );
        assert_eq!(
            err("logs:\n  files:\n    - path: '/var/log/[x'\n").key,
            ".files[0].path"
        );
        assert_eq!(err("logs:\n  poll_interval: 0s\n").key, ".poll_interval");
    }

    #[test]
    fn same_metric_in_two_files_with_same_shape_is_fine() {
        logs(
            "logs:\n  files:\n    - path: /a\n      rules: [{name: e_total, regex: '(?P<l>E)', labels: [l], static_labels: {f: a}}]\n    - path: /b\n      rules: [{name: e_total, regex: '(?P<l>X)', labels: [l], static_labels: {f: b}}]\n",
        )
        .validate()
        .unwrap();
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("a:b_c9"));
        assert!(!valid_metric_name("9a"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("_a9"));
        assert!(!valid_label_name("__a"));
        assert!(!valid_label_name("a:b"));
    }
}
