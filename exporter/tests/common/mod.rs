//! Harness of the exporter's integration tests that start real processes:
//! imd-exporter itself, Debian's `prometheus` and `prometheus-node-exporter`.
//! What both crates' tests need (process guards, ports, HTTP, Prometheus,
//! TLS material) is in `imd-testkit`; this module adds what is the
//! exporter's own: starting its binary and node_exporter, and parsing the
//! text exposition format to compare their output.
// Each test binary includes this module and uses only part of it.
#![allow(dead_code, unused_imports)]

pub use imd_testkit::{
    Proc, free_port, http_get, http_post, pki, prom_query, require_tool, result_value, run,
    start_prometheus, tempdir,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Path of the imd-exporter binary Cargo built for this test run.
pub fn imd_exporter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imd-exporter"))
}

/// Starts imd-exporter on `127.0.0.1:port` with a state dir under `dir` and
/// the extra arguments, and waits until `/-/ready` answers.
pub fn start_imd(dir: &Path, port: u16, extra: &[String]) -> Proc {
    let mut args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.path={}", dir.join("imd-state").display()),
    ];
    args.extend(extra.iter().cloned());
    let mut p = Proc::spawn("imd-exporter", &imd_exporter_bin(), &args, dir);
    p.wait_http_ok(port, "/-/ready", Duration::from_secs(20));
    p
}

/// Starts Debian's node_exporter on `127.0.0.1:port` with the extra
/// arguments (systemd is always off: there is no systemd here) and waits
/// until `/metrics` answers.
pub fn start_node_exporter(dir: &Path, port: u16, extra: &[String]) -> Proc {
    let bin = require_tool("prometheus-node-exporter");
    let mut args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--no-collector.systemd".to_string(),
    ];
    args.extend(extra.iter().cloned());
    let mut p = Proc::spawn("node-exporter", &bin, &args, dir);
    p.wait_http_ok(port, "/metrics", Duration::from_secs(20));
    p
}

/// One sample line of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name (may carry `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Label pairs in written order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// Labels as a sorted map (order-independent comparison).
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }

    /// The value of one label.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One metric family of the text format.
#[derive(Debug, Clone, Default)]
pub struct Family {
    /// Family name.
    pub name: String,
    /// Help text (escapes undone).
    pub help: String,
    /// Declared type (`counter`, `gauge`, ..., `untyped` when none given).
    pub kind: String,
    /// Samples in written order.
    pub samples: Vec<Sample>,
}

/// Parses Prometheus' classic text exposition format into families keyed by
/// name. Strict enough for comparisons: malformed lines are errors naming
/// the line.
pub fn parse_text(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start();
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let name = parts
                .next()
                .ok_or(format!("line {n}: {keyword} without a name"))?;
            let arg = parts.next().unwrap_or("");
            let f = fams.entry(name.to_string()).or_insert_with(|| Family {
                name: name.to_string(),
                kind: "untyped".into(),
                ..Family::default()
            });
            if keyword == "HELP" {
                f.help = unescape(arg, false);
            } else {
                f.kind = arg.trim().to_string();
            }
            current = Some(name.to_string());
            continue;
        }
        let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: {line:?}"))?;
        let family = match &current {
            Some(c) if belongs_to(&sample.name, c, &fams[c].kind) => c.clone(),
            _ => {
                current = Some(sample.name.clone());
                sample.name.clone()
            }
        };
        fams.entry(family.clone())
            .or_insert_with(|| Family {
                name: family.clone(),
                kind: "untyped".into(),
                ..Family::default()
            })
            .samples
            .push(sample);
    }
    Ok(fams)
}

fn belongs_to(sample: &str, family: &str, kind: &str) -> bool {
    if sample == family {
        return true;
    }
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count"),
        "summary" => matches!(suffix, "_sum" | "_count"),
        _ => false,
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let (parsed, used) = parse_labels(r)?;
        labels = parsed;
        rest = &r[used..];
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("no value")?;
    let value = parse_value(value_text).ok_or(format!("bad value {value_text:?}"))?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` (after the opening brace); returns the pairs
/// and how many bytes of `r` the label set took, closing brace included.
fn parse_labels(r: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let mut labels = Vec::new();
    let mut i = 0;
    loop {
        i += r[i..].len() - r[i..].trim_start_matches([',', ' ', '\t']).len();
        match r[i..].chars().next() {
            None => return Err("unterminated label set".into()),
            Some('}') => return Ok((labels, i + 1)),
            Some(_) => {}
        }
        let eq = r[i..].find('=').ok_or("label without '='")? + i;
        let name = r[i..eq].trim().to_string();
        let after = r[eq + 1..].trim_start();
        i = r.len() - after.len();
        if !after.starts_with('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        i += 1;
        let mut value = String::new();
        let mut chars = r[i..].char_indices();
        let mut closed = None;
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some(other) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    closed = Some(i + j + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        i = closed.ok_or(format!("label {name} value is not closed"))?;
        labels.push((name, value));
    }
}

/// Parses a sample value as the text format writes it.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn unescape(s: &str, quote: bool) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') if quote => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Scrapes `/metrics` (optionally narrowed with `collect[]`) and parses it.
pub fn scrape(port: u16, collectors: &[&str]) -> BTreeMap<String, Family> {
    let query: Vec<String> = collectors
        .iter()
        .map(|c| format!("collect[]={c}"))
        .collect();
    let path = if query.is_empty() {
        "/metrics".to_string()
    } else {
        format!("/metrics?{}", query.join("&"))
    };
    let r =
        http_get(port, &path, &[]).unwrap_or_else(|e| panic!("GET 127.0.0.1:{port}{path}: {e}"));
    assert_eq!(r.status, 200, "GET 127.0.0.1:{port}{path}: {}", r.text());
    parse_text(&r.text()).unwrap_or_else(|e| panic!("parsing 127.0.0.1:{port}{path}: {e}"))
}

/// Names of the collectors imd-exporter has, as its `--help` lists them.
pub fn imd_collectors() -> Vec<String> {
    imd_exporter::collectors::ALL
        .iter()
        .map(|s| s.name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_reads_labels_escapes_and_histograms() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\\n\\\\\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n\
                    untyped_one 1e+06 1700000000000\n";
        let f = parse_text(text).unwrap();
        assert_eq!(f["a_total"].kind, "counter");
        assert_eq!(f["a_total"].samples[0].label("y"), Some("q\"\n\\"));
        assert_eq!(f["h"].samples.len(), 4);
        assert_eq!(f["untyped_one"].samples[0].value, 1e6);
        assert!(parse_text("x{a=\"1} 2\n").is_err());
        assert!(parse_text("x abc\n").is_err());
    }
}
