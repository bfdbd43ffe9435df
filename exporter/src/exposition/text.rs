use std::fmt::Write;

use super::model::{Family, MetricType, write_value};

/// A wire format for exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' classic text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format a scraper asked for in its `Accept` header, as
    /// Prometheus' own exposition library does: OpenMetrics only when named.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` header value of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Writes families in the given format. Families are written in the order
/// given; callers sort them by name.
pub fn encode(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(encoded_size_hint(families));
    for f in families {
        if f.samples.is_empty() {
            continue;
        }
        let (name, kind) = match format {
            Format::Text => (f.name.as_str(), f.kind.as_str()),
            Format::OpenMetrics => openmetrics_header(f),
        };
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_into(&mut out, &f.help, false);
        out.push_str("\n# TYPE ");
        out.push_str(name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
        for s in &f.samples {
            out.push_str(&s.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(k);
                    out.push_str("=\"");
                    escape_into(&mut out, v, true);
                    out.push('"');
                }
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, s.value);
            if let Some(ts) = s.timestamp_ms {
                out.push(' ');
                match format {
                    Format::Text => {
                        let _ = write!(out, "{ts}");
                    }
                    Format::OpenMetrics => write_value(&mut out, ts as f64 / 1000.0),
                }
            }
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// About the size of the encoded text, so that the output is allocated
/// once instead of doubling its way up through a 30 KB answer: the names,
/// help and labels as they are plus room for the syntax and the values.
fn encoded_size_hint(families: &[Family]) -> usize {
    let mut n = 16;
    for f in families {
        n += 2 * f.name.len() + f.help.len() + 32;
        for s in &f.samples {
            n += s.name.len() + 26;
            for (k, v) in &s.labels {
                n += k.len() + v.len() + 4;
            }
        }
    }
    n
}

/// OpenMetrics names a counter family without its `_total` suffix; a counter
/// whose samples lack the suffix (possible in textfiles) is declared `unknown`
/// so that the output stays valid.
fn openmetrics_header(f: &Family) -> (&str, &'static str) {
    match f.kind {
        MetricType::Counter => match f.name.strip_suffix("_total") {
            Some(base) if f.samples.iter().all(|s| s.name == f.name) => (base, "counter"),
            _ => (f.name.as_str(), "unknown"),
        },
        MetricType::Untyped => (f.name.as_str(), "unknown"),
        other => (f.name.as_str(), other.as_str()),
    }
}

fn escape_into(out: &mut String, s: &str, quote: bool) {
    // Nearly every help text and label value needs no escaping: copy it
    // whole rather than character by character.
    if !s
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_families() -> Vec<Family> {
        let mut c = Family::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        c.push([("cpu", "0"), ("mode", "idle")], 12.5);
        let mut g = Family::gauge("node_load1", "1m load average.");
        g.push_value(0.5);
        let mut odd = Family::gauge("x", "a \\ b\nc");
        odd.push([("path", "C:\\\"q\"\n")], 1.0);
        vec![c, g, odd]
    }

    #[test]
    fn text_format_matches_the_classic_layout() {
        let s = encode(&sample_families(), Format::Text);
        assert_eq!(
            s,
            "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
             # TYPE node_cpu_seconds_total counter\n\
             node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12.5\n\
             # HELP node_load1 1m load average.\n\
             # TYPE node_load1 gauge\n\
             node_load1 0.5\n\
             # HELP x a \\\\ b\\nc\n\
             # TYPE x gauge\n\
             x{path=\"C:\\\\\\\"q\\\"\\n\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_strips_total_and_ends_with_eof() {
        let s = encode(&sample_families(), Format::OpenMetrics);
        assert!(s.contains("# TYPE node_cpu_seconds counter\n"));
        assert!(s.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12.5\n"));
        assert!(s.ends_with("# EOF\n"));
    }

    #[test]
    fn negotiation_prefers_text_unless_openmetrics_is_named() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
    }
}
