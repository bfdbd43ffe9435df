//! Compiled rules and the in-memory metrics they update: the checks behind
//! [`LogsConfig::validate`], line matching, and the snapshot served on scrape.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use regex::{Regex, RegexSet};

use super::config::{
    DEFAULT_BUCKETS, LogsConfig, RuleConfig, RuleKind, StartFrom, valid_label_name,
    valid_metric_name,
};
use crate::config::KeyError;
use crate::exposition::{Family, MetricType};

/// New label combinations past this many series of one metric are dropped
/// (and counted), so that a capture such as a client address cannot grow
/// memory without bound.
pub(crate) const MAX_SERIES_PER_METRIC: usize = 10_000;
/// Captured label values are cut to this many bytes.
pub(crate) const MAX_LABEL_VALUE: usize = 1024;

/// The exporter's own metric families, reserved against rule names.
pub(crate) const SELF_METRICS: &[(&str, &str)] = &[
    ("imd_log_lines_total", "Lines read from the log file."),
    ("imd_log_bytes_read_total", "Bytes read from the log file."),
    (
        "imd_log_file_up",
        "Whether the log file exists and could be opened (1) or not (0).",
    ),
    (
        "imd_log_rotations_total",
        "Rotations (a new file at the path) and truncations of the log file seen.",
    ),
    (
        "imd_log_truncated_lines_total",
        "Lines longer than the line limit, matched on their beginning only.",
    ),
    (
        "imd_log_read_errors_total",
        "Errors opening or reading the log file.",
    ),
    (
        "imd_log_series_dropped_total",
        "Matches not counted because the metric reached its limit of label combinations.",
    ),
    (
        "imd_log_value_errors_total",
        "Matching lines whose value capture was not a finite number.",
    ),
];

/// The configuration, checked and compiled.
pub(crate) struct Compiled {
    /// How often the files are read.
    pub poll_interval: Duration,
    /// One per configured file entry, in order.
    pub entries: Vec<Entry>,
    /// The metrics, with the label-less series already at zero.
    pub store: Store,
}

/// A configured file (or glob) and its rules.
pub(crate) struct Entry {
    /// The path or pattern as configured (host view).
    pub path: String,
    /// Whether `path` is a glob pattern.
    pub is_glob: bool,
    /// Where reading starts when the file is first seen at start-up.
    pub from: StartFrom,
    /// The rules applied to its lines.
    pub matcher: Matcher,
}

/// The rules of one file entry.
pub(crate) struct Matcher {
    /// Finds the matching rules in one pass when there are several.
    set: Option<RegexSet>,
    rules: Vec<Rule>,
}

struct Rule {
    family: usize,
    regex: Regex,
    /// Where each label of the family (in the family's order) comes from.
    sources: Vec<Source>,
    /// Capture group index of the observed number (histograms).
    value: Option<usize>,
    scale: f64,
    needs_captures: bool,
}

enum Source {
    Capture(usize),
    Static(String),
}

/// Counters and histograms of the rules, and per-file reading statistics.
#[derive(Clone)]
pub(crate) struct Store {
    families: Vec<RuleFamily>,
    /// Reading statistics by file path (host view).
    pub files: BTreeMap<String, FileStats>,
}

/// What the tailer counts about one file.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct FileStats {
    pub lines: u64,
    pub bytes: u64,
    pub up: bool,
    pub rotations: u64,
    pub truncated_lines: u64,
    pub read_errors: u64,
}

#[derive(Clone)]
struct RuleFamily {
    name: String,
    help: String,
    kind: RuleKind,
    label_names: Vec<String>,
    buckets: Vec<f64>,
    series: BTreeMap<Vec<String>, Series>,
    dropped: u64,
    value_errors: u64,
}

#[derive(Clone)]
enum Series {
    Counter(u64),
    /// Per-bucket (not cumulative) counts, sum and count.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

impl RuleFamily {
    fn empty_series(&self) -> Series {
        match self.kind {
            RuleKind::Counter => Series::Counter(0),
            RuleKind::Histogram => Series::Histogram {
                counts: vec![0; self.buckets.len()],
                sum: 0.0,
                count: 0,
            },
        }
    }

    fn record(&mut self, key: Vec<String>, value: f64) {
        if !self.series.contains_key(&key) {
            if self.series.len() >= MAX_SERIES_PER_METRIC {
                self.dropped += 1;
                return;
            }
            let s = self.empty_series();
            self.series.insert(key.clone(), s);
        }
        let Some(series) = self.series.get_mut(&key) else {
            return;
        };
        match series {
            Series::Counter(n) => *n += 1,
            Series::Histogram { counts, sum, count } => {
                if let Some(i) = self.buckets.iter().position(|&b| value <= b) {
                    counts[i] += 1;
                }
                *sum += value;
                *count += 1;
            }
        }
    }

    fn family(&self) -> Family {
        let kind = match self.kind {
            RuleKind::Counter => MetricType::Counter,
            RuleKind::Histogram => MetricType::Histogram,
        };
        let mut f = Family::new(&self.name, &self.help, kind);
        for (values, series) in &self.series {
            let labels: Vec<(String, String)> = self
                .label_names
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect();
            match series {
                Series::Counter(n) => {
                    f.push(labels, *n as f64);
                }
                Series::Histogram { counts, sum, count } => {
                    let mut cumulative = 0;
                    let buckets: Vec<(f64, u64)> = self
                        .buckets
                        .iter()
                        .zip(counts)
                        .map(|(&le, &c)| {
                            cumulative += c;
                            (le, cumulative)
                        })
                        .collect();
                    f.push_histogram(&labels, &buckets, *sum, *count);
                }
            }
        }
        f
    }
}

impl Matcher {
    /// Applies the rules to one line.
    pub fn apply(&self, line: &str, store: &mut Store) {
        match &self.set {
            None => {
                for rule in &self.rules {
                    rule.apply(line, store);
                }
            }
            Some(set) => {
                for i in set.matches(line).iter() {
                    self.rules[i].apply(line, store);
                }
            }
        }
    }
}

impl Rule {
    fn apply(&self, line: &str, store: &mut Store) {
        let family = &mut store.families[self.family];
        if !self.needs_captures {
            if self.regex.is_match(line) {
                let key = self.sources.iter().map(|s| s.value(None)).collect();
                family.record(key, 0.0);
            }
            return;
        }
        let Some(caps) = self.regex.captures(line) else {
            return;
        };
        let value = match self.value {
            None => 0.0,
            Some(i) => {
                let text = caps.get(i).map_or("", |m| m.as_str()).trim();
                match text.parse::<f64>().map(|v| v * self.scale) {
                    Ok(v) if v.is_finite() => v,
                    _ => {
                        family.value_errors += 1;
                        return;
                    }
                }
            }
        };
        let key = self.sources.iter().map(|s| s.value(Some(&caps))).collect();
        family.record(key, value);
    }
}

impl Source {
    fn value(&self, caps: Option<&regex::Captures>) -> String {
        match self {
            Source::Static(v) => v.clone(),
            Source::Capture(i) => {
                let text = caps.and_then(|c| c.get(*i)).map_or("", |m| m.as_str());
                let mut end = text.len().min(MAX_LABEL_VALUE);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_string()
            }
        }
    }
}

impl Store {
    /// The metric families as they are now: the rules' metrics in
    /// configuration order, then the reading statistics.
    pub fn snapshot(&self) -> Vec<Family> {
        let mut out: Vec<Family> = self.families.iter().map(RuleFamily::family).collect();
        let stat = |i: usize, kind: MetricType, get: &dyn Fn(&FileStats) -> f64| {
            let (name, help) = SELF_METRICS[i];
            let mut f = Family::new(name, help, kind);
            for (path, s) in &self.files {
                f.push([("path", path.as_str())], get(s));
            }
            f
        };
        if !self.files.is_empty() {
            out.push(stat(0, MetricType::Counter, &|s| s.lines as f64));
            out.push(stat(1, MetricType::Counter, &|s| s.bytes as f64));
            out.push(stat(2, MetricType::Gauge, &|s| {
                if s.up { 1.0 } else { 0.0 }
            }));
            out.push(stat(3, MetricType::Counter, &|s| s.rotations as f64));
            out.push(stat(4, MetricType::Counter, &|s| s.truncated_lines as f64));
            out.push(stat(5, MetricType::Counter, &|s| s.read_errors as f64));
        }
        let per_metric = |i: usize, get: &dyn Fn(&RuleFamily) -> u64| {
            let (name, help) = SELF_METRICS[i];
            let mut f = Family::counter(name, help);
            for rf in self.families.iter().filter(|rf| get(rf) > 0) {
                f.push([("metric", rf.name.as_str())], get(rf) as f64);
            }
            f
        };
        out.push(per_metric(6, &|rf| rf.dropped));
        out.push(per_metric(7, &|rf| rf.value_errors));
        out.retain(|f| !f.samples.is_empty());
        out
    }

    /// The statistics of a file, created on first use.
    pub fn file(&mut self, path: &str) -> &mut FileStats {
        self.files.entry(path.to_string()).or_default()
    }
}

/// Checks and compiles the configuration; errors name the key below `logs`.
pub(crate) fn compile(config: &LogsConfig) -> Result<Compiled, KeyError> {
    if config.poll_interval.is_zero() {
        return Err(KeyError::new(".poll_interval", "must be greater than zero"));
    }
    let mut families: Vec<RuleFamily> = Vec::new();
    // Metric name → (family index, key of the rule that defined it).
    let mut by_name: HashMap<String, (usize, String)> = HashMap::new();
    let mut entries = Vec::new();
    for (fi, file) in config.files.iter().enumerate() {
        let key = format!(".files[{fi}]");
        if !file.path.starts_with('/') {
            return Err(KeyError::new(
                format!("{key}.path"),
                "must be an absolute path (it is re-rooted under --path.rootfs)",
            ));
        }
        let is_glob = file.path.contains(['*', '?', '[']);
        if is_glob {
            glob::Pattern::new(&file.path).map_err(|e| {
                KeyError::new(format!("{key}.path"), format!("invalid glob pattern: {e}"))
            })?;
        }
        let mut rules = Vec::new();
        for (ri, rule) in file.rules.iter().enumerate() {
            let rkey = format!("{key}.rules[{ri}]");
            rules.push(compile_rule(rule, &rkey, &mut families, &mut by_name)?);
        }
        let set = if rules.len() > 1 {
            let set = RegexSet::new(file.rules.iter().map(|r| &r.regex)).map_err(|e| {
                KeyError::new(format!("{key}.rules"), format!("regular expressions: {e}"))
            })?;
            Some(set)
        } else {
            None
        };
        entries.push(Entry {
            path: file.path.clone(),
            is_glob,
            from: file.from,
            matcher: Matcher { set, rules },
        });
    }
    Ok(Compiled {
        poll_interval: config.poll_interval,
        entries,
        store: Store {
            families,
            files: BTreeMap::new(),
        },
    })
}

fn compile_rule(
    rule: &RuleConfig,
    key: &str,
    families: &mut Vec<RuleFamily>,
    by_name: &mut HashMap<String, (usize, String)>,
) -> Result<Rule, KeyError> {
    let at = |field: &str| format!("{key}.{field}");
    if !valid_metric_name(&rule.name) {
        return Err(KeyError::new(
            at("name"),
            format!("{:?} is not a valid metric name", rule.name),
        ));
    }
    if SELF_METRICS.iter().any(|(n, _)| *n == rule.name) {
        return Err(KeyError::new(
            at("name"),
            format!("{} is one of the exporter's own metrics", rule.name),
        ));
    }
    let regex = Regex::new(&rule.regex)
        .map_err(|e| KeyError::new(at("regex"), format!("invalid regular expression: {e}")))?;
    let capture = |name: &str| regex.capture_names().position(|n| n == Some(name));
    let histogram = rule.kind == RuleKind::Histogram;

    let mut label_names = Vec::new();
    let mut captures = Vec::new();
    for (i, label) in rule.labels.iter().enumerate() {
        let lkey = format!("{key}.labels[{i}]");
        if !valid_label_name(label) {
            return Err(KeyError::new(
                lkey,
                format!("{label:?} is not a valid label name"),
            ));
        }
        if histogram && label == "le" {
            return Err(KeyError::new(
                lkey,
                "`le` is reserved for histogram buckets",
            ));
        }
        if label_names.contains(label) {
            return Err(KeyError::new(
                lkey,
                format!("label {label} is listed twice"),
            ));
        }
        let Some(idx) = capture(label) else {
            return Err(KeyError::new(
                lkey,
                format!("the regular expression has no named capture (?P<{label}>...)"),
            ));
        };
        label_names.push(label.clone());
        captures.push(Source::Capture(idx));
    }
    for (name, value) in &rule.static_labels {
        let lkey = format!("{key}.static_labels.{name}");
        if !valid_label_name(name) {
            return Err(KeyError::new(
                lkey,
                format!("{name:?} is not a valid label name"),
            ));
        }
        if histogram && name == "le" {
            return Err(KeyError::new(
                lkey,
                "`le` is reserved for histogram buckets",
            ));
        }
        if label_names.contains(name) {
            return Err(KeyError::new(
                lkey,
                format!("label {name} is also a capture label"),
            ));
        }
        label_names.push(name.clone());
        captures.push(Source::Static(value.clone()));
    }

    let (value, scale, buckets) = if histogram {
        let Some(v) = &rule.value else {
            return Err(KeyError::new(
                at("value"),
                "a histogram needs `value`: the named capture holding the observed number",
            ));
        };
        let Some(idx) = capture(v) else {
            return Err(KeyError::new(
                at("value"),
                format!("the regular expression has no named capture (?P<{v}>...)"),
            ));
        };
        let scale = rule.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            return Err(KeyError::new(
                at("scale"),
                "must be a finite, non-zero number",
            ));
        }
        let buckets = rule
            .buckets
            .clone()
            .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
        if buckets.is_empty() {
            return Err(KeyError::new(at("buckets"), "needs at least one bucket"));
        }
        for (i, b) in buckets.iter().enumerate() {
            if !b.is_finite() {
                return Err(KeyError::new(
                    format!("{key}.buckets[{i}]"),
                    "must be a finite number (+Inf is always added)",
                ));
            }
            if i > 0 && *b <= buckets[i - 1] {
                return Err(KeyError::new(
                    format!("{key}.buckets[{i}]"),
                    "buckets must be strictly increasing",
                ));
            }
        }
        (Some(idx), scale, buckets)
    } else {
        for (field, given) in [
            ("value", rule.value.is_some()),
            ("scale", rule.scale.is_some()),
            ("buckets", rule.buckets.is_some()),
        ] {
            if given {
                return Err(KeyError::new(
                    at(field),
                    format!("only histograms take `{field}`; a counter counts matching lines"),
                ));
            }
        }
        (None, 1.0, Vec::new())
    };

    let family = match by_name.get(&rule.name) {
        Some((fidx, origin)) => {
            let f = &families[*fidx];
            let mut mine = label_names.clone();
            mine.sort();
            let mut theirs = f.label_names.clone();
            theirs.sort();
            if f.kind != rule.kind || mine != theirs || f.buckets != buckets {
                return Err(KeyError::new(
                    at("name"),
                    format!(
                        "metric {} is also produced by {} with another type, labels or buckets \
                         ({} with labels [{}] there)",
                        rule.name,
                        origin.trim_start_matches('.'),
                        f.kind.as_str(),
                        f.label_names.join(", ")
                    ),
                ));
            }
            *fidx
        }
        None => {
            families.push(RuleFamily {
                name: rule.name.clone(),
                help: rule
                    .help
                    .clone()
                    .unwrap_or_else(|| format!("Log lines matching {:?}.", rule.regex)),
                kind: rule.kind,
                label_names: label_names.clone(),
                buckets: buckets.clone(),
                series: BTreeMap::new(),
                dropped: 0,
                value_errors: 0,
            });
            by_name.insert(rule.name.clone(), (families.len() - 1, key.to_string()));
            families.len() - 1
        }
    };
    // Order this rule's label sources as the family orders its labels.
    let family_labels = families[family].label_names.clone();
    let mut sources = Vec::with_capacity(family_labels.len());
    for name in &family_labels {
        let i = label_names
            .iter()
            .position(|n| n == name)
            .unwrap_or_default();
        sources.push(std::mem::replace(
            &mut captures[i],
            Source::Static(String::new()),
        ));
    }
    // Series without capture labels exist from the start, at zero.
    if sources.iter().all(|s| matches!(s, Source::Static(_))) {
        let f = &mut families[family];
        let key: Vec<String> = sources.iter().map(|s| s.value(None)).collect();
        if !f.series.contains_key(&key) {
            let s = f.empty_series();
            f.series.insert(key, s);
        }
    }
    let needs_captures = value.is_some() || sources.iter().any(|s| matches!(s, Source::Capture(_)));
    Ok(Rule {
        family,
        regex,
        sources,
        value,
        scale,
        needs_captures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, parse_yaml};
    use std::path::Path;

    pub(crate) fn compiled(yaml: &str) -> Compiled {
        let c: Config = parse_yaml(Path::new("x.yml"), yaml).unwrap();
        compile(&c.logs.unwrap()).unwrap()
    }

    type Labels = Vec<(String, String)>;

    fn samples(store: &Store, name: &str) -> Vec<(String, Labels, f64)> {
        store
            .snapshot()
            .into_iter()
            .filter(|f| f.name == name)
            .flat_map(|f| f.samples)
            .map(|s| (s.name, s.labels, s.value))
            .collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counts_with_labels() {
        let mut c = compiled(
            r#"
logs:
  files:
    - path: /var/log/auth.log
      rules:
        - name: ssh_failed_total
          regex: 'Failed password for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+)'
          labels: [user]
          static_labels: {service: ssh}
        - name: ssh_lines_total
          regex: 'sshd'
"#,
        );
        // The label-less counter exists before any match; the labelled one does not.
        assert_eq!(
            samples(&c.store, "ssh_lines_total"),
            [("ssh_lines_total".into(), l(&[]), 0.0)]
        );
        assert!(samples(&c.store, "ssh_failed_total").is_empty());
        let m = &c.entries[0].matcher;
        for line in [
            "sshd[1]: Failed password for root from 10.0.0.1 port 22",
            "sshd[1]: Failed password for invalid user bob from 10.0.0.2 port 22",
            "sshd[1]: Failed password for root from 10.0.0.3 port 22",
            "sshd[1]: Accepted password for alice from 10.0.0.4",
            "cron[2]: nothing",
        ] {
            m.apply(line, &mut c.store);
        }
        assert_eq!(
            samples(&c.store, "ssh_failed_total"),
            [
                (
                    "ssh_failed_total".into(),
                    l(&[("user", "bob"), ("service", "ssh")]),
                    1.0
                ),
                (
                    "ssh_failed_total".into(),
                    l(&[("user", "root"), ("service", "ssh")]),
                    2.0
                ),
            ]
        );
        assert_eq!(samples(&c.store, "ssh_lines_total")[0].2, 4.0);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_scaled() {
        let mut c = compiled(
            r#"
logs:
  files:
    - path: /app.log
      rules:
        - name: app_request_duration_seconds
          help: Request durations.
          type: histogram
          regex: 'took (?P<value>[0-9.]+)ms'
          value: value
          scale: 0.001
          buckets: [0.005, 0.01, 0.05, 0.1]
"#,
        );
        let m = &c.entries[0].matcher;
        for line in [
            "took 3ms",
            "took 10ms",
            "took 20ms",
            "took 2000ms",
            "nothing",
            "took .ms",
        ] {
            m.apply(line, &mut c.store);
        }
        let s = samples(&c.store, "app_request_duration_seconds");
        let values: Vec<(String, f64)> = s
            .iter()
            .map(|(n, labels, v)| {
                let le = labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                (format!("{n}{le}"), *v)
            })
            .collect();
        let expect = [
            ("app_request_duration_seconds_bucket0.005", 1.0),
            ("app_request_duration_seconds_bucket0.01", 2.0),
            ("app_request_duration_seconds_bucket0.05", 3.0),
            ("app_request_duration_seconds_bucket0.1", 3.0),
            ("app_request_duration_seconds_bucket+Inf", 4.0),
            ("app_request_duration_seconds_count", 4.0),
        ];
        for (name, v) in expect {
            assert!(
                values.iter().any(|(n, x)| n == name && *x == v),
                "{name} {v} in {values:?}"
            );
        }
        let sum = values
            .iter()
            .find(|(n, _)| n == "app_request_duration_seconds_sum")
            .unwrap()
            .1;
        assert!((sum - 2.033).abs() < 1e-9, "{sum}");
        // "took .ms" matched but its value is not a number.
        assert_eq!(
            samples(&c.store, "imd_log_value_errors_total"),
            [(
                "imd_log_value_errors_total".into(),
                l(&[("metric", "app_request_duration_seconds")]),
                1.0
            )]
        );
    }

    #[test]
    fn rules_sharing_a_metric_use_one_label_order() {
        let mut c = compiled(
            r#"
logs:
  files:
    - path: /a
      rules: [{name: e_total, regex: '(?P<x>E\d)', labels: [x], static_labels: {f: a}}]
    - path: /b
      rules: [{name: e_total, regex: 'X', static_labels: {x: none, f: b}}]
"#,
        );
        c.entries[0].matcher.apply("E1", &mut c.store);
        c.entries[1].matcher.apply("X", &mut c.store);
        assert_eq!(
            samples(&c.store, "e_total"),
            [
                ("e_total".into(), l(&[("x", "E1"), ("f", "a")]), 1.0),
                ("e_total".into(), l(&[("x", "none"), ("f", "b")]), 1.0),
            ]
        );
    }

    #[test]
    fn series_are_limited() {
        let mut c = compiled(
            "logs:\n  files:\n    - path: /a\n      rules: [{name: n_total, regex: '(?P<n>\\d+)', labels: [n]}]\n",
        );
        for i in 0..MAX_SERIES_PER_METRIC + 5 {
            c.entries[0].matcher.apply(&i.to_string(), &mut c.store);
        }
        assert_eq!(samples(&c.store, "n_total").len(), MAX_SERIES_PER_METRIC);
        assert_eq!(samples(&c.store, "imd_log_series_dropped_total")[0].2, 5.0);
        let long = "7".repeat(MAX_LABEL_VALUE * 2);
        c.entries[0].matcher.apply(&long, &mut c.store);
        assert_eq!(samples(&c.store, "imd_log_series_dropped_total")[0].2, 6.0);
    }
}
