use std::fmt::{self, Write as _};

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
    let mut s = String::with_capacity(24);
    write_value(&mut s, v);
    s
}

/// [`format_value`] appended to `out`, without allocating: the encoder
/// calls it for every sample of every scrape.
///
/// Go's `strconv.FormatFloat(v, 'g', -1, 64)` takes the shortest digits
/// that read back as `v` and writes them in exponent form when the decimal
/// exponent is below -4 or at least 6 (the exponent with a sign and at
/// least two digits), else in plain decimal form. Rust's `{:e}` yields the
/// same shortest digits; they are laid out here in Go's way. Unlike Go's
/// client, `-0` keeps its sign, so that a textfile value passes through
/// unchanged.
pub fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Most values are whole numbers below a million (counts, states,
    // ticks): Go writes them as integers, and so can this, exactly.
    if v.fract() == 0.0 && v.abs() < 1e6 {
        write_integer(out, v as i64);
        return;
    }
    let mut buf = StackText::default();
    if write!(buf, "{v:e}").is_err() {
        // Cannot happen (an f64 needs at most 24 bytes); kept safe anyway.
        out.push_str(&format!("{v}"));
        return;
    }
    let sci = buf.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        out.push_str(mantissa);
        out.push_str(if exp < 0 { "e-" } else { "e+" });
        if exp.abs() < 10 {
            out.push('0');
        }
        write_integer(out, i64::from(exp.abs()));
        return;
    }
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    if negative {
        out.push('-');
    }
    // The significant digits without the point: "1.2345" -> "1", "2345".
    let (first, rest) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(first);
        out.push_str(rest);
    } else {
        // `exp` digits after the first belong before the point.
        let whole = exp as usize;
        out.push_str(first);
        if rest.len() <= whole {
            out.push_str(rest);
            for _ in rest.len()..whole {
                out.push('0');
            }
        } else {
            out.push_str(&rest[..whole]);
            out.push('.');
            out.push_str(&rest[whole..]);
        }
    }
}

/// Appends an integer's decimal digits (hand-written: `write!` goes through
/// the formatting machinery for each of a scrape's hundreds of values).
fn write_integer(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or(""));
}

/// A small text buffer on the stack for one formatted float.
#[derive(Default)]
struct StackText {
    bytes: [u8; 32],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        // Only `write_str` fills it, with whole `&str`s.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
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

    /// Values with what Go's `strconv.FormatFloat(v, 'g', -1, 64)` (and so
    /// node_exporter) writes for them.
    #[test]
    fn values_format_like_go_across_ranges() {
        let table: &[(f64, &str)] = &[
            (999_999.0, "999999"),
            (-999_999.0, "-999999"),
            (1_234_567.0, "1.234567e+06"),
            (300_000.0, "300000"),
            (123_456.7, "123456.7"),
            (100_000.25, "100000.25"),
            (-123_456.7, "-123456.7"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (0.001, "0.001"),
            (0.000123, "0.000123"),
            (-0.000123, "-0.000123"),
            (0.00001, "1e-05"),
            (-1.5e-10, "-1.5e-10"),
            (1e100, "1e+100"),
            (-2.5e-100, "-2.5e-100"),
            (5e-324, "5e-324"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN, "-1.7976931348623157e+308"),
            (u64::MAX as f64, "1.8446744073709552e+19"),
            (9_007_199_254_740_993.0, "9.007199254740992e+15"),
            (8_253_952_000.0, "8.253952e+09"),
            (1e21, "1e+21"),
            (-0.0, "-0"),
            (0.0, "0"),
        ];
        for &(v, want) in table {
            assert_eq!(format_value(v), want, "{v:e}");
        }
    }

    /// The layout as it was written before (two `format!` calls), kept as
    /// the reference the allocation-free version is checked against.
    fn reference_format(v: f64) -> String {
        if v.is_nan() || v.is_infinite() || v == 0.0 {
            return format_value(v);
        }
        let sci = format!("{v:e}");
        let (mantissa, exp) = sci.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        if !(-4..6).contains(&exp) {
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exp.abs())
        } else {
            format!("{v}")
        }
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips_and_matches_the_reference(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            let s = format_value(v);
            if v.is_finite() {
                let back: f64 = s.parse().unwrap();
                proptest::prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
            }
            proptest::prop_assert_eq!(s, reference_format(v));
        }

        #[test]
        fn decimal_range_values_match_the_reference(v in -2e6f64..2e6, scale in -6i32..0) {
            let v = v * 10f64.powi(scale);
            proptest::prop_assert_eq!(format_value(v), reference_format(v));
        }
    }

    #[test]
    fn write_value_appends() {
        let mut s = String::from("x ");
        write_value(&mut s, 42.0);
        s.push(' ');
        write_value(&mut s, -1e-7);
        assert_eq!(s, "x 42 -1e-07");
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
