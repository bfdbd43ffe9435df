//! A strict parser of Prometheus' classic text exposition format (version
//! 0.0.4), as node_exporter's textfile collector and `promtool check metrics`
//! read it.
//!
//! Written by hand rather than taken from a crate: `prometheus-parse` (the
//! most used one) matches lines with loose regular expressions, silently skips
//! lines it does not understand, does not handle escapes in label values and
//! checks neither names, TYPE rules nor duplicates; the other crates on
//! crates.io are either the same kind of best-effort reader or unmaintained.
//! A textfile validator must reject what Prometheus' own Go parser
//! (`expfmt.TextParser`) rejects, and say where.
//!
//! The rules follow that parser: blanks are spaces and tabs, `#` lines other
//! than `# HELP` / `# TYPE` are comments, a `# HELP` or `# TYPE` line without
//! text is ignored, the type keyword is case-insensitive, `_sum`, `_count` (and
//! `_bucket`) samples join a summary (histogram) declared before them, and the
//! last line must end with a newline. It is stricter in a few places where Go's
//! parser silently drops or misfiles data: duplicate series, histogram samples
//! without `le` or with an unexpected name, summary samples without `quantile`.

use std::collections::HashMap;
use std::hash::BuildHasher;

use super::model::{Family, MetricType, Sample};

/// Why a text exposition could not be parsed: the 1-based line and what is
/// wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, e.g. `invalid label name "9x"`.
    pub message: String,
}

/// Switches for [`parse_text_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Whether samples may carry a timestamp. Textfiles must not (node_exporter
    /// skips a file that has one), so the textfile collector turns this off.
    pub allow_timestamps: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            allow_timestamps: true,
        }
    }
}

/// Parses a classic text exposition into its metric families, in the order
/// they first appear. Families that end up without samples (a lone `# HELP`)
/// are left out; a family whose samples have no `# TYPE` line is `Untyped`.
pub fn parse_text(input: &str) -> Result<Vec<Family>, ParseError> {
    parse_text_with(input, ParseOptions::default())
}

/// [`parse_text`] with options.
pub fn parse_text_with(input: &str, options: ParseOptions) -> Result<Vec<Family>, ParseError> {
    let mut parser = Parser {
        options,
        families: Vec::new(),
        index: HashMap::new(),
        series: HashMap::new(),
        hasher: Default::default(),
    };
    let mut rest = input;
    let mut line = 0;
    loop {
        line += 1;
        match rest.find('\n') {
            Some(end) => {
                parser.line(&rest[..end], line)?;
                rest = &rest[end + 1..];
            }
            None => {
                if !rest.trim_matches(BLANKS).is_empty() {
                    parser.line(rest, line)?;
                    return Err(ParseError {
                        line,
                        message:
                            "unexpected end of input: the last line does not end with a newline"
                                .into(),
                    });
                }
                break;
            }
        }
    }
    Ok(parser.finish())
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const BLANKS: [char; 2] = [' ', '\t'];

/// A family while it is being read.
struct Building {
    name: String,
    help: Option<String>,
    kind: Option<MetricType>,
    /// Whether `kind` came from a `# TYPE` line (rather than from a sample
    /// that fixed it to untyped).
    declared: bool,
    samples: Vec<Sample>,
}

/// Where a series was first given.
struct SeriesAt {
    family: usize,
    sample: usize,
    line: usize,
}

struct Parser {
    options: ParseOptions,
    families: Vec<Building>,
    index: HashMap<String, usize>,
    /// Every series seen, by a hash of its name and label set; a hash match
    /// is confirmed against the stored sample, so nothing is cloned per
    /// sample for this check.
    series: HashMap<u64, Vec<SeriesAt>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Parser {
    fn line(&mut self, raw: &str, number: usize) -> Result<(), ParseError> {
        let line = raw.trim_start_matches(BLANKS);
        if line.is_empty() {
            return Ok(());
        }
        let result = match line.strip_prefix('#') {
            Some(comment) => self.comment(comment),
            None => self.sample(line, number),
        };
        result.map_err(|mut message| {
            if raw.ends_with('\r') {
                message.push_str(
                    " (the line ends with a carriage return: Windows line endings are not allowed)",
                );
            }
            ParseError {
                line: number,
                message,
            }
        })
    }

    fn finish(self) -> Vec<Family> {
        self.families
            .into_iter()
            .filter(|f| !f.samples.is_empty())
            .map(|f| Family {
                name: f.name,
                help: f.help.unwrap_or_default(),
                kind: f.kind.unwrap_or(MetricType::Untyped),
                samples: f.samples,
            })
            .collect()
    }

    /// The family a name belongs to: the family of that name, else the
    /// summary or histogram it is the `_sum`, `_count` or `_bucket` of, else a
    /// new family.
    fn resolve(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let parents: [(&str, &[MetricType]); 3] = [
            ("_count", &[MetricType::Summary, MetricType::Histogram]),
            ("_sum", &[MetricType::Summary, MetricType::Histogram]),
            ("_bucket", &[MetricType::Histogram]),
        ];
        for (suffix, kinds) in parents {
            if let Some(base) = name.strip_suffix(suffix)
                && !base.is_empty()
                && let Some(&i) = self.index.get(base)
                && self.families[i].kind.is_some_and(|k| kinds.contains(&k))
            {
                return i;
            }
        }
        self.families.push(Building {
            name: name.to_string(),
            help: None,
            kind: None,
            declared: false,
            samples: Vec::new(),
        });
        let i = self.families.len() - 1;
        self.index.insert(name.to_string(), i);
        i
    }

    /// A line that started with `#` (the `#` removed).
    fn comment(&mut self, body: &str) -> Result<(), String> {
        let mut c = Cursor::new(body);
        c.skip_blanks();
        let keyword = c.take_until_blank();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(()); // an ordinary comment
        }
        c.skip_blanks();
        if c.at_end() {
            return Ok(());
        }
        let name = c.take_until_blank();
        if !is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?} in {keyword} line"));
        }
        c.skip_blanks();
        if c.at_end() {
            return Ok(()); // no text: ignored, as Prometheus' parser does
        }
        let text = c.rest();
        let i = self.resolve(name);
        let family = &mut self.families[i];
        let of = describe_target(name, family);
        if keyword == "HELP" {
            if family.help.is_some() {
                return Err(format!("second HELP line for {of}"));
            }
            family.help = Some(unescape_help(text)?);
        } else {
            if family.kind.is_some() {
                return Err(if family.declared {
                    format!("second TYPE line for {of}")
                } else {
                    format!("TYPE line for {of} comes after its samples")
                });
            }
            let kind = MetricType::parse(&text.to_ascii_lowercase())
                .ok_or_else(|| format!("unknown metric type {text:?}"))?;
            // A family of its own named like one of this family's samples
            // (`x_count` before `# TYPE x summary`) would make later lines
            // ambiguous: `x_count` could belong to either.
            let suffixes: &[&str] = match kind {
                MetricType::Summary => &["_count", "_sum"],
                MetricType::Histogram => &["_count", "_sum", "_bucket"],
                _ => &[],
            };
            if let Some(clash) = suffixes
                .iter()
                .map(|suffix| format!("{}{suffix}", family.name))
                .find(|n| self.index.contains_key(n))
            {
                return Err(format!(
                    "TYPE line makes {of} a {kind}, but {clash:?} already appeared above as a metric family of its own"
                ));
            }
            family.kind = Some(kind);
            family.declared = true;
        }
        Ok(())
    }

    fn sample(&mut self, line: &str, number: usize) -> Result<(), String> {
        let mut c = Cursor::new(line);
        if c.peek() == Some(b'{') {
            return Err("the line starts with '{': the metric name is missing".into());
        }
        let name = c.take_while(|b| !matches!(b, b' ' | b'\t' | b'{'));
        if !is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        c.skip_blanks();
        let mut labels: Vec<(String, String)> = Vec::new();
        if c.peek() == Some(b'{') {
            c.bump();
            read_labels(&mut c, &mut labels)?;
            c.skip_blanks();
        }
        let value_text = c.take_until_blank();
        if value_text.is_empty() {
            return Err(format!("missing value for {name:?}"));
        }
        let value = parse_float(value_text)
            .map_err(|why| format!("invalid value {value_text:?}: {why}"))?;
        let mut timestamp_ms = None;
        if !c.at_end() {
            c.skip_blanks();
            let ts = c.take_until_blank();
            if ts.is_empty() {
                return Err(
                    "trailing whitespace after the value (only a timestamp may follow it)".into(),
                );
            }
            timestamp_ms = Some(ts.parse::<i64>().map_err(|_| {
                format!("invalid timestamp {ts:?}: expected an integer (milliseconds)")
            })?);
            if !c.at_end() {
                return Err(format!(
                    "unexpected text after the timestamp: {:?}",
                    c.rest()
                ));
            }
            if !self.options.allow_timestamps {
                return Err("the sample has a timestamp, which is not allowed here".into());
            }
        }

        let i = self.resolve(name);
        let family = &mut self.families[i];
        let kind = *family.kind.get_or_insert(MetricType::Untyped);
        check_special_labels(name, &family.name, kind, &labels)?;

        let hash = series_hash(&self.hasher, name, &labels);
        let earlier = self.series.entry(hash).or_default();
        if let Some(at) = earlier.iter().find(|at| {
            let s = &self.families[at.family].samples[at.sample];
            s.name == name && same_label_set(&s.labels, &labels)
        }) {
            return Err(format!(
                "duplicate series {}: already given on line {}",
                series_text(name, &labels),
                at.line
            ));
        }
        let family = &mut self.families[i];
        earlier.push(SeriesAt {
            family: i,
            sample: family.samples.len(),
            line: number,
        });
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
    }
}

/// How an error names the family a HELP/TYPE line refers to.
fn describe_target(written: &str, family: &Building) -> String {
    if written == family.name {
        format!("{written:?}")
    } else {
        let kind = family.kind.map(|k| k.as_str()).unwrap_or("family");
        format!("{written:?} (part of {kind} {:?})", family.name)
    }
}

/// The `le` and `quantile` rules of histograms and summaries.
fn check_special_labels(
    name: &str,
    family: &str,
    kind: MetricType,
    labels: &[(String, String)],
) -> Result<(), String> {
    let special = match kind {
        MetricType::Histogram => "le",
        MetricType::Summary => "quantile",
        _ => return Ok(()),
    };
    let found = labels.iter().find(|(k, _)| k == special);
    let needs_it = match kind {
        MetricType::Histogram => {
            if name == family {
                return Err(format!(
                    "sample {name:?} of histogram {family:?} must be named {family}_bucket, {family}_sum or {family}_count"
                ));
            }
            name.ends_with("_bucket")
        }
        _ => name == family,
    };
    match (needs_it, found) {
        (true, None) => Err(format!("{kind} sample {name:?} has no {special:?} label")),
        (false, Some(_)) => Err(format!(
            "{kind} sample {name:?} must not have a {special:?} label"
        )),
        (true, Some((_, v))) => parse_float(v)
            .map(|_| ())
            .map_err(|why| format!("invalid {special:?} label value {v:?}: {why}")),
        (false, None) => Ok(()),
    }
}

/// Reads a label set after its `{` up to and including the `}`.
fn read_labels(c: &mut Cursor<'_>, out: &mut Vec<(String, String)>) -> Result<(), String> {
    loop {
        c.skip_blanks();
        match c.peek() {
            None => return Err("unterminated label set: missing '}'".into()),
            Some(b'}') => {
                c.bump();
                return Ok(());
            }
            Some(_) => {}
        }
        let name = c.take_while(|b| !matches!(b, b'=' | b' ' | b'\t' | b',' | b'}' | b'"'));
        if name.is_empty() {
            return Err(format!("expected a label name, found {:?}", c.next_char()));
        }
        if !is_valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        if name == "__name__" {
            return Err("label name \"__name__\" is reserved".into());
        }
        if out.iter().any(|(k, _)| k == name) {
            return Err(format!("duplicate label name {name:?}"));
        }
        c.skip_blanks();
        if c.peek() != Some(b'=') {
            return Err(format!("expected '=' after label name {name:?}"));
        }
        c.bump();
        c.skip_blanks();
        if c.peek() != Some(b'"') {
            return Err(format!("expected '\"' to open the value of label {name:?}"));
        }
        c.bump();
        let value = read_quoted(c, name)?;
        out.push((name.to_string(), value));
        c.skip_blanks();
        match c.peek() {
            Some(b',') => c.bump(),
            Some(b'}') => {
                c.bump();
                return Ok(());
            }
            None => return Err("unterminated label set: missing '}'".into()),
            Some(_) => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {name:?}, found {:?}",
                    c.next_char()
                ));
            }
        }
    }
}

/// Reads a label value after its opening quote, up to and including the
/// closing quote, resolving `\\`, `\"` and `\n`.
fn read_quoted(c: &mut Cursor<'_>, label: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let run = c.take_while(|b| b != b'\\' && b != b'"');
        out.push_str(run);
        match c.peek() {
            None => {
                return Err(format!(
                    "unterminated value of label {label:?}: missing closing '\"'"
                ));
            }
            Some(b'"') => {
                c.bump();
                return Ok(out);
            }
            _ => {
                c.bump(); // the backslash
                match c.peek() {
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    None => {
                        return Err(format!(
                            "unterminated value of label {label:?}: the line ends in an escape"
                        ));
                    }
                    Some(_) => {
                        let ch = c.next_char().unwrap_or_default();
                        return Err(format!(
                            "invalid escape sequence \"\\{ch}\" in the value of label {label:?}"
                        ));
                    }
                }
                c.bump();
            }
        }
    }
}

/// Resolves the escapes a HELP text may hold: `\\`, `\n` (and `\"`, which
/// current Prometheus accepts too).
fn unescape_help(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some(other) => {
                return Err(format!(
                    "invalid escape sequence \"\\{other}\" in HELP text"
                ));
            }
            None => return Err("the HELP text ends in a lone backslash".into()),
        }
    }
    Ok(out)
}

/// Parses a sample value as Go's `strconv.ParseFloat` does for this format:
/// decimal notation, `NaN`, `Inf`/`Infinity` with an optional sign, any
/// case; no hexadecimal, no underscores, no overflow to infinity.
pub(crate) fn parse_float(s: &str) -> Result<f64, &'static str> {
    const EXPECTED: &str = "expected a number, NaN, +Inf or -Inf";
    if s.bytes()
        .any(|b| matches!(b, b'p' | b'P' | b'_' | b'x' | b'X'))
    {
        return Err(EXPECTED);
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("nan") {
        // Go accepts no sign before NaN.
        return if unsigned.len() == s.len() {
            Ok(f64::NAN)
        } else {
            Err(EXPECTED)
        };
    }
    let v: f64 = s.parse().map_err(|_| EXPECTED)?;
    if v.is_infinite()
        && !unsigned.eq_ignore_ascii_case("inf")
        && !unsigned.eq_ignore_ascii_case("infinity")
    {
        return Err("out of range for a 64-bit float");
    }
    Ok(v)
}

/// A hash of a series' identity that does not depend on label order.
fn series_hash(hasher: &impl BuildHasher, name: &str, labels: &[(String, String)]) -> u64 {
    let mut sum = hasher.hash_one(name);
    for pair in labels {
        // Adding the pairs' hashes makes the result order-independent.
        sum = sum.wrapping_add(hasher.hash_one(pair));
    }
    sum
}

/// Whether two label lists hold the same pairs (names are unique in each).
fn same_label_set(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len() && a.iter().all(|pair| b.contains(pair))
}

/// `name{a="1",b="2"}` for error messages.
fn series_text(name: &str, labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// A byte position in a line. Every delimiter of the format is ASCII, and
/// ASCII bytes never occur inside a multi-byte UTF-8 sequence, so splitting
/// at them always falls on character boundaries.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn next_char(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|r| r.chars().next())
    }

    fn bump(&mut self) {
        if self.pos < self.s.len() {
            self.pos += 1;
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn skip_blanks(&mut self) {
        self.take_while(|b| b == b' ' || b == b'\t');
    }

    fn take_until_blank(&mut self) -> &'a str {
        self.take_while(|b| b != b' ' && b != b'\t')
    }

    /// Takes bytes while `keep` holds; `keep` must be false for the ASCII
    /// byte the run should stop at (multi-byte characters are kept whole as
    /// long as `keep` accepts bytes >= 0x80).
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        while self.pos < bytes.len() && keep(bytes[self.pos]) {
            self.pos += 1;
        }
        // Stop positions are ASCII or the end, so this is a char boundary;
        // `get` keeps it panic-free regardless.
        self.s.get(start..self.pos).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{Format, encode};

    fn err(input: &str) -> String {
        parse_text(input).unwrap_err().to_string()
    }

    #[test]
    fn parses_typed_families_with_help_and_escapes() {
        let input = "# HELP http_requests_total Requests \\\\ served.\\nSecond line.\n\
                     # TYPE http_requests_total counter\n\
                     http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                     http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                     \n\
                     # A normal comment.\n\
                     msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                     metric_without_timestamp_and_labels 12.47\n\
                     something_weird{problem=\"division by zero\"} +Inf -3982045\n";
        let f = parse_text(input).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(f[0].name, "http_requests_total");
        assert_eq!(f[0].kind, MetricType::Counter);
        assert_eq!(f[0].help, "Requests \\ served.\nSecond line.");
        assert_eq!(f[0].samples.len(), 2);
        assert_eq!(f[0].samples[1].value, 3.0);
        assert_eq!(f[0].samples[1].timestamp_ms, Some(1395066363000));
        assert_eq!(f[0].samples[0].labels[1], ("code".into(), "200".into()));
        assert_eq!(f[1].kind, MetricType::Untyped);
        assert_eq!(f[1].help, "");
        assert_eq!(f[1].samples[0].labels[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(
            f[1].samples[0].labels[1].1,
            "Cannot find file:\n\"FILE.TXT\""
        );
        assert_eq!(f[1].samples[0].value, 1.458255915e9);
        assert_eq!(f[3].samples[0].value, f64::INFINITY);
        assert_eq!(f[3].samples[0].timestamp_ms, Some(-3982045));
    }

    #[test]
    fn histogram_and_summary_samples_join_their_family() {
        let input = "# TYPE h histogram\n\
                     h_bucket{le=\"0.05\"} 24054\n\
                     h_bucket{le=\"+Inf\"} 144320\n\
                     h_sum 53423\n\
                     h_count 144320\n\
                     # HELP s A summary.\n\
                     # TYPE s summary\n\
                     s{quantile=\"0.5\"} 4773\n\
                     s{quantile=\"0.99\"} NaN\n\
                     s_sum 1.7560473e+07\n\
                     s_count 2693\n\
                     g_sum 1\n";
        let f = parse_text(input).unwrap();
        let names: Vec<_> = f.iter().map(|f| (f.name.as_str(), f.kind)).collect();
        assert_eq!(
            names,
            [
                ("h", MetricType::Histogram),
                ("s", MetricType::Summary),
                ("g_sum", MetricType::Untyped)
            ]
        );
        assert_eq!(f[0].samples.len(), 4);
        assert_eq!(f[0].samples[3].name, "h_count");
        assert_eq!(f[1].samples.len(), 4);
        assert!(f[1].samples[1].value.is_nan());
        assert_eq!(f[1].help, "A summary.");
    }

    #[test]
    fn values_follow_go_float_syntax() {
        let v = |s: &str| parse_text(&format!("x {s}\n")).map(|f| f[0].samples[0].value);
        assert_eq!(v("-Inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(v("inf").unwrap(), f64::INFINITY);
        assert_eq!(v("+Infinity").unwrap(), f64::INFINITY);
        assert!(v("NaN").unwrap().is_nan());
        assert!(v("nan").unwrap().is_nan());
        assert_eq!(v(".5").unwrap(), 0.5);
        assert_eq!(v("1e-3").unwrap(), 0.001);
        assert_eq!(v("-0").unwrap(), 0.0);
        for bad in ["0x10", "1_000", "1e400", "+NaN", "one", "1,5", "0x1p3"] {
            let e = v(bad).unwrap_err();
            assert_eq!(e.line, 1, "{bad}");
            assert!(
                e.message.starts_with(&format!("invalid value {bad:?}")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn blanks_and_layout_match_prometheus() {
        let f = parse_text("  x { a = \"1\" , } 2\n\t\n#HELP y text\ny{} 3\n   ").unwrap();
        assert_eq!(
            f[0].samples[0].labels,
            vec![("a".to_string(), "1".to_string())]
        );
        assert_eq!(f[1].help, "text");
        assert!(f[1].samples[0].labels.is_empty());
        // HELP/TYPE without text are ignored, TYPE keywords are case-insensitive.
        let f = parse_text("# HELP x\n# TYPE x\n# TYPE x COUNTER\nx 1\n").unwrap();
        assert_eq!(f[0].kind, MetricType::Counter);
        assert_eq!(f[0].help, "");
        assert!(parse_text("").unwrap().is_empty());
        assert!(parse_text("# only a comment\n").unwrap().is_empty());
        // A lone HELP makes no family.
        assert!(parse_text("# HELP x text\n").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_the_problem() {
        assert_eq!(
            err("a 1\nb 2\n\nx{9x=\"1\"} 1\n"),
            "line 4: invalid label name \"9x\""
        );
        assert_eq!(err("9x 1\n"), "line 1: invalid metric name \"9x\"");
        assert_eq!(err("x-y 1\n"), "line 1: invalid metric name \"x-y\"");
        assert_eq!(
            err("# TYPE x gauge\n# TYPE x gauge\n"),
            "line 2: second TYPE line for \"x\""
        );
        assert_eq!(
            err("x 1\n# TYPE x gauge\n"),
            "line 2: TYPE line for \"x\" comes after its samples"
        );
        assert_eq!(
            err("# HELP x a\n# HELP x b\n"),
            "line 2: second HELP line for \"x\""
        );
        assert_eq!(
            err("x{a=\"1\",b=\"2\"} 1\nx{b=\"2\",a=\"1\"} 2\n"),
            "line 2: duplicate series x{b=\"2\",a=\"1\"}: already given on line 1"
        );
        assert_eq!(
            err("x 1"),
            "line 1: unexpected end of input: the last line does not end with a newline"
        );
        assert_eq!(
            err("x{a=\"\\t\"} 1\n"),
            "line 1: invalid escape sequence \"\\t\" in the value of label \"a\""
        );
        assert_eq!(
            err("# HELP x a\\tb\n"),
            "line 1: invalid escape sequence \"\\t\" in HELP text"
        );
        assert_eq!(
            err("# TYPE x counter \n"),
            "line 1: unknown metric type \"counter \""
        );
        assert_eq!(
            err("# TYPE x timer\n"),
            "line 1: unknown metric type \"timer\""
        );
        assert_eq!(
            err("x 1 \n"),
            "line 1: trailing whitespace after the value (only a timestamp may follow it)"
        );
        assert_eq!(
            err("x 1 1.5\n"),
            "line 1: invalid timestamp \"1.5\": expected an integer (milliseconds)"
        );
        assert_eq!(
            err("x 1 2 3\n"),
            "line 1: unexpected text after the timestamp: \" 3\""
        );
        assert_eq!(err("x\n"), "line 1: missing value for \"x\"");
        assert_eq!(
            err("x{a=\"1\"\n"),
            "line 1: unterminated label set: missing '}'"
        );
        assert_eq!(
            err("x{a=\"1} 1\n"),
            "line 1: unterminated value of label \"a\": missing closing '\"'"
        );
        assert_eq!(
            err("x{a=1} 1\n"),
            "line 1: expected '\"' to open the value of label \"a\""
        );
        assert_eq!(
            err("x{a} 1\n"),
            "line 1: expected '=' after label name \"a\""
        );
        assert_eq!(
            err("x{a=\"1\" b=\"2\"} 1\n"),
            "line 1: expected ',' or '}' after the value of label \"a\", found Some('b')"
        );
        assert_eq!(
            err("x{a=\"1\",a=\"2\"} 1\n"),
            "line 1: duplicate label name \"a\""
        );
        assert_eq!(
            err("x{__name__=\"y\"} 1\n"),
            "line 1: label name \"__name__\" is reserved"
        );
        assert_eq!(
            err("{a=\"1\"} 1\n"),
            "line 1: the line starts with '{': the metric name is missing"
        );
        assert_eq!(
            err("# TYPE 1x gauge\n"),
            "line 1: invalid metric name \"1x\" in TYPE line"
        );
        assert_eq!(
            err("x 1\r\n"),
            "line 1: invalid value \"1\\r\": expected a number, NaN, +Inf or -Inf \
             (the line ends with a carriage return: Windows line endings are not allowed)"
        );
    }

    #[test]
    fn histogram_and_summary_rules_are_checked() {
        let h = "# TYPE h histogram\n";
        assert_eq!(
            err(&format!("{h}h_bucket 1\n")),
            "line 2: histogram sample \"h_bucket\" has no \"le\" label"
        );
        assert_eq!(
            err(&format!("{h}h_sum{{le=\"1\"}} 1\n")),
            "line 2: histogram sample \"h_sum\" must not have a \"le\" label"
        );
        assert_eq!(
            err(&format!("{h}h{{le=\"1\"}} 1\n")),
            "line 2: sample \"h\" of histogram \"h\" must be named h_bucket, h_sum or h_count"
        );
        assert_eq!(
            err(&format!("{h}h_bucket{{le=\"x\"}} 1\n")),
            "line 2: invalid \"le\" label value \"x\": expected a number, NaN, +Inf or -Inf"
        );
        assert_eq!(
            err(&format!(
                "{h}h_bucket{{le=\"1\"}} 1\nh_bucket{{le=\"1\"}} 2\n"
            )),
            "line 3: duplicate series h_bucket{le=\"1\"}: already given on line 2"
        );
        let s = "# TYPE s summary\n";
        assert_eq!(
            err(&format!("{s}s 1\n")),
            "line 2: summary sample \"s\" has no \"quantile\" label"
        );
        assert_eq!(
            err(&format!("{s}s_count{{quantile=\"0.5\"}} 1\n")),
            "line 2: summary sample \"s_count\" must not have a \"quantile\" label"
        );
        assert_eq!(
            err(&format!("{s}# TYPE s_count counter\n")),
            "line 2: second TYPE line for \"s_count\" (part of summary \"s\")"
        );
        // On a counter, le and quantile are ordinary labels.
        assert!(parse_text("# TYPE c counter\nc{le=\"x\",quantile=\"y\"} 1\n").is_ok());
    }

    #[test]
    fn a_family_named_like_a_later_summarys_sample_is_refused() {
        // Found by fuzzing (text_format): `x_count` became an untyped family
        // before `x` was typed a summary, so the written text, where
        // `# TYPE x_count` follows `# TYPE x summary`, no longer parsed.
        assert_eq!(
            err("# HELP x h\nx_count 1\n# TYPE x summary\nx{quantile=\"0.5\"} 1\n"),
            "line 3: TYPE line makes \"x\" a summary, but \"x_count\" already appeared above as a metric family of its own"
        );
        assert_eq!(
            err("# TYPE y_bucket gauge\n# TYPE y histogram\n"),
            "line 2: TYPE line makes \"y\" a histogram, but \"y_bucket\" already appeared above as a metric family of its own"
        );
        // A family typed first keeps its samples, as before.
        let f = parse_text("# TYPE x summary\nx_count 1\nx_sum 2\n").unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].samples.len(), 2);
    }

    #[test]
    fn timestamps_can_be_refused() {
        let no = ParseOptions {
            allow_timestamps: false,
        };
        assert!(parse_text_with("x 1\n", no).is_ok());
        assert_eq!(
            parse_text_with("x 1\ny 2 1000\n", no)
                .unwrap_err()
                .to_string(),
            "line 2: the sample has a timestamp, which is not allowed here"
        );
    }

    #[test]
    fn unicode_is_kept_and_never_splits() {
        let f = parse_text("# HELP x Größe – ünïcödé \"q\"\nx{l=\"日本語\\\"\"} 1\n").unwrap();
        assert_eq!(f[0].help, "Größe – ünïcödé \"q\"");
        assert_eq!(f[0].samples[0].labels[0].1, "日本語\"");
        assert_eq!(err("é 1\n"), "line 1: invalid metric name \"é\"");
        assert_eq!(err("x{é=\"1\"} 1\n"), "line 1: invalid label name \"é\"");
        assert_eq!(
            err("x{a=\"1\"é} 1\n"),
            "line 1: expected ',' or '}' after the value of label \"a\", found Some('é')"
        );
        assert!(
            parse_text("x{a=\"\\é\"} 1\n")
                .unwrap_err()
                .message
                .contains("\"\\é\"")
        );
    }

    #[test]
    fn encoder_output_parses_back() {
        let mut c = Family::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        c.push([("cpu", "0"), ("mode", "idle")], 12.5);
        let mut h = Family::new(
            "lat_seconds",
            "Latency \\ with\nnewline.",
            MetricType::Histogram,
        );
        h.push_histogram(
            &[("path".into(), "/a\"b".into())],
            &[(0.1, 1), (1.0, 3)],
            2.5,
            4,
        );
        let fams = vec![c, h];
        assert_eq!(parse_text(&encode(&fams, Format::Text)).unwrap(), fams);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        fn family_name() -> impl Strategy<Value = String> {
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}"
                .prop_filter("suffix of a histogram or summary name", |n| {
                    !n.ends_with("_sum") && !n.ends_with("_count") && !n.ends_with("_bucket")
                })
        }

        fn label_set(reserved: &'static str) -> impl Strategy<Value = Vec<(String, String)>> {
            // Any label value: quotes, backslashes, newlines, CR, unicode.
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", "(?s).{0,12}", 0..4)
                .prop_map(move |m: BTreeMap<String, String>| {
                    m.into_iter().filter(|(k, _)| k != reserved).collect()
                })
        }

        fn value() -> impl Strategy<Value = f64> {
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                (-1000i32..1000).prop_map(f64::from),
            ]
        }

        /// Help text as the format can carry it: anything except leading blanks,
        /// which the parser skips after the name (as Prometheus' does).
        fn help() -> impl Strategy<Value = String> {
            "(?s).{0,20}".prop_filter("leading blank", |h| !h.starts_with([' ', '\t']))
        }

        fn family() -> impl Strategy<Value = Family> {
            let kind = prop_oneof![
                Just(MetricType::Counter),
                Just(MetricType::Gauge),
                Just(MetricType::Untyped),
                Just(MetricType::Histogram),
                Just(MetricType::Summary),
            ];
            (family_name(), help(), kind)
                .prop_flat_map(|(name, help, kind)| {
                    let reserved = match kind {
                        MetricType::Histogram => "le",
                        MetricType::Summary => "quantile",
                        _ => "",
                    };
                    let series = proptest::collection::vec(
                        (
                            label_set(reserved),
                            proptest::collection::vec((value(), value()), 1..4),
                            proptest::option::of(any::<i64>()),
                        ),
                        1..4,
                    );
                    (Just(name), Just(help), Just(kind), series)
                })
                .prop_map(|(name, help, kind, series)| {
                    let mut f = Family::new(name.clone(), help, kind);
                    let mut seen = std::collections::HashSet::new();
                    for (labels, points, ts) in series {
                        let mut key = labels.clone();
                        key.sort();
                        if !seen.insert(key) {
                            continue; // one series per label set
                        }
                        let first = f.samples.len();
                        match kind {
                            MetricType::Histogram => {
                                let mut les: Vec<f64> = points
                                    .iter()
                                    .map(|p| p.0)
                                    .filter(|v| v.is_finite())
                                    .collect();
                                les.sort_by(|a, b| a.total_cmp(b));
                                les.dedup_by(|a, b| {
                                    crate::exposition::format_value(*a)
                                        == crate::exposition::format_value(*b)
                                });
                                let buckets: Vec<(f64, u64)> = les
                                    .iter()
                                    .enumerate()
                                    .map(|(i, &le)| (le, i as u64))
                                    .collect();
                                f.push_histogram(
                                    &labels,
                                    &buckets,
                                    points[0].1,
                                    buckets.len() as u64,
                                );
                            }
                            MetricType::Summary => {
                                let mut qs: Vec<String> = points
                                    .iter()
                                    .map(|p| crate::exposition::format_value(p.0))
                                    .collect();
                                qs.sort();
                                qs.dedup();
                                for (q, (_, v)) in qs.iter().zip(&points) {
                                    let mut l = labels.clone();
                                    l.push(("quantile".into(), q.clone()));
                                    f.push_named(name.clone(), l, *v);
                                }
                                f.push_named(format!("{name}_sum"), labels.clone(), points[0].1);
                                f.push_named(format!("{name}_count"), labels.clone(), 3.0);
                            }
                            _ => {
                                f.push(labels.clone(), points[0].1);
                            }
                        }
                        for s in &mut f.samples[first..] {
                            s.timestamp_ms = ts;
                        }
                    }
                    f
                })
        }

        fn families() -> impl Strategy<Value = Vec<Family>> {
            proptest::collection::vec(family(), 0..5).prop_map(|fams| {
                let mut seen = std::collections::HashSet::new();
                fams.into_iter()
                    .filter(|f| seen.insert(f.name.clone()))
                    .collect()
            })
        }

        /// Family equality with NaN equal to NaN.
        fn same(a: &[Family], b: &[Family]) -> bool {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.name == y.name
                        && x.help == y.help
                        && x.kind == y.kind
                        && x.samples.len() == y.samples.len()
                        && x.samples.iter().zip(&y.samples).all(|(s, t)| {
                            let same_value = if s.value.is_nan() {
                                t.value.is_nan()
                            } else {
                                s.value == t.value
                                    && s.value.is_sign_negative() == t.value.is_sign_negative()
                            };
                            s.name == t.name
                                && s.labels == t.labels
                                && s.timestamp_ms == t.timestamp_ms
                                && same_value
                        })
                })
        }

        /// Lines built from the format's own pieces, to reach deep states.
        fn near_valid() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("# HELP ".to_string()),
                Just("# TYPE ".to_string()),
                Just("histogram".to_string()),
                Just("summary".to_string()),
                Just("x".to_string()),
                Just("x_bucket".to_string()),
                Just("x_sum".to_string()),
                Just("x_count".to_string()),
                Just("{".to_string()),
                Just("}".to_string()),
                Just("le=".to_string()),
                Just("quantile=".to_string()),
                Just("\"".to_string()),
                Just("\\".to_string()),
                Just(",".to_string()),
                Just(" ".to_string()),
                Just("\n".to_string()),
                Just("1".to_string()),
                Just("+Inf".to_string()),
                Just("é".to_string()),
                "(?s).{0,3}",
            ];
            proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn encode_then_parse_round_trips(fams in families()) {
                let text = encode(&fams, Format::Text);
                let back = parse_text(&text);
                prop_assert!(back.is_ok(), "{:?}\n{}", back, text);
                let back = back.unwrap();
                prop_assert!(same(&back, &fams), "{:#?}\n!=\n{:#?}\n{}", back, fams, text);
            }

            #[test]
            fn never_panics_on_any_string(s in "(?s).{0,200}") {
                let _ = parse_text(&s);
            }

            #[test]
            fn never_panics_on_near_valid_input(s in near_valid()) {
                match parse_text(&s) {
                    Err(e) => prop_assert!(e.line >= 1 && e.line <= s.split('\n').count()),
                    // What is accepted is written in a form accepted again.
                    Ok(fams) => {
                        let written = encode(&fams, Format::Text);
                        prop_assert!(parse_text(&written).is_ok(), "{:?} -> {:?}", s, written);
                    }
                }
            }

            #[test]
            fn never_panics_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_text(&String::from_utf8_lossy(&b));
            }
        }
    }
}
