use std::fmt;

/// The type of a metric family, as declared on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A value that only goes up (and resets to zero on restart).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Buckets, sum and count of observations.
    Histogram,
    /// Quantiles, sum and count of observations.
    Summary,
    /// No type given.
    Untyped,
}

impl MetricType {
    /// The keyword used on a classic text-format `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }

    /// Parses a classic text-format type keyword.
    pub fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample line: a full sample name (which may carry a suffix such as
/// `_bucket`), its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name, e.g. `node_cpu_seconds_total` or `x_bucket`.
    pub name: String,
    /// Label pairs in output order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// Optional timestamp in milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// A metric family: a name, its help text and type, and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name as on the `# TYPE` line.
    pub name: String,
    /// Help text, unescaped.
    pub help: String,
    /// Declared type.
    pub kind: MetricType,
    /// The samples of this family.
    pub samples: Vec<Sample>,
}

impl Family {
    /// A new family with no samples.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Family {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// A counter family.
    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Family {
        Family::new(name, help, MetricType::Counter)
    }

    /// A gauge family.
    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Family {
        Family::new(name, help, MetricType::Gauge)
    }

    /// Adds a sample named like the family, with the given labels.
    pub fn push<K: Into<String>, V: Into<String>>(
        &mut self,
        labels: impl IntoIterator<Item = (K, V)>,
        value: f64,
    ) -> &mut Family {
        let name = self.name.clone();
        self.push_named(name, labels, value)
    }

    /// Adds a sample with an explicit sample name (for `_bucket`, `_sum`, `_count`).
    pub fn push_named<K: Into<String>, V: Into<String>>(
        &mut self,
        name: impl Into<String>,
        labels: impl IntoIterator<Item = (K, V)>,
        value: f64,
    ) -> &mut Family {
        self.samples.push(Sample {
            name: name.into(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            value,
            timestamp_ms: None,
        });
        self
    }

    /// Adds a sample without labels.
    pub fn push_value(&mut self, value: f64) -> &mut Family {
        self.push(std::iter::empty::<(String, String)>(), value)
    }

    /// Adds the `_bucket`, `_sum` and `_count` samples of one histogram.
    /// `buckets` holds (upper bound, cumulative count) pairs; `+Inf` is added.
    pub fn push_histogram(
        &mut self,
        labels: &[(String, String)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) -> &mut Family {
        let base = self.name.clone();
        for &(le, c) in buckets.iter().filter(|(le, _)| le.is_finite()) {
            let mut l = labels.to_vec();
            l.push(("le".into(), format_value(le)));
            self.push_named(format!("{base}_bucket"), l, c as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le".into(), "+Inf".into()));
        self.push_named(format!("{base}_bucket"), l, count as f64);
        self.push_named(format!("{base}_sum"), labels.to_vec(), sum);
        self.push_named(format!("{base}_count"), labels.to_vec(), count as f64);
        self
    }
}

/// Formats a float as Prometheus' Go client does (`strconv` 'g' format with
/// shortest precision): `1e+06`, `0.25`, `1.5e-07`, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits, e.g. `1.2345675e6`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(2e22), "2e+22");
        assert_eq!(format_value(1e6), "1e+06");
        assert_eq!(format_value(123456.0), "123456");
        assert_eq!(format_value(1.6663123968e10), "1.6663123968e+10");
        assert_eq!(format_value(0.0001), "0.0001");
    }

    #[test]
    fn histogram_samples_are_cumulative_with_inf() {
        let mut f = Family::new("h", "x", MetricType::Histogram);
        f.push_histogram(&[], &[(0.1, 1), (1.0, 3)], 2.5, 4);
        let names: Vec<_> = f.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            ["h_bucket", "h_bucket", "h_bucket", "h_sum", "h_count"]
        );
        assert_eq!(
            f.samples[2].labels[0],
            ("le".to_string(), "+Inf".to_string())
        );
        assert_eq!(f.samples[2].value, 4.0);
    }
}
