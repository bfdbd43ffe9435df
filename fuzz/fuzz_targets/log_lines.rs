//! Log files (any bytes: binary, invalid UTF-8, CR/LF, lines longer than
//! the collector keeps) through the `logs` collector's line splitting and
//! rules, in reads of a size the first byte picks: never a panic; every
//! line is counted once; captured label values are kept short; and the
//! metrics made of them are written in both exposition formats in a form
//! the text parser reads back.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use imd_exporter::collectors::logs::{LogRules, LogsConfig};
use imd_exporter::config::parse_yaml;
use imd_exporter::exposition::parse::parse_text;
use imd_exporter::exposition::{Format, encode};
use libfuzzer_sys::fuzz_target;

/// Rules that put whatever a line holds into label values and values.
const RULES: &str = r#"
files:
  - path: /var/log/app.log
    rules:
      - name: app_events_total
        regex: 'event=(?P<event>\S+) user="(?P<user>[^"]*)"'
        labels: [event, user]
        static_labels: {source: app}
      - name: app_messages_total
        regex: 'msg=(?P<msg>.*)$'
        labels: [msg]
      - name: app_lines_total
        regex: '^'
      - name: app_latency_seconds
        type: histogram
        regex: 'took=(?P<ms>\S+)ms'
        value: ms
        scale: 0.001
        buckets: [0.001, 0.01, 0.1, 1]
"#;

/// The rules, compiled once: compiling them is most of a run's time.
static COMPILED: LazyLock<LogRules> = LazyLock::new(|| {
    let config: LogsConfig = parse_yaml(Path::new("rules.yml"), RULES).expect("the rules load");
    LogRules::compile(&config).expect("the rules compile")
});

fuzz_target!(|data: &[u8]| {
    let Some((&size, log)) = data.split_first() else {
        return;
    };
    let families = COMPILED.metrics_of(log, usize::from(size) * 61 + 1);
    let lines =
        log.split(|&b| b == b'\n').count() - usize::from(log.ends_with(b"\n") || log.is_empty());
    let counted = |name: &str| {
        families
            .iter()
            .filter(|f| f.name == name)
            .flat_map(|f| &f.samples)
            .map(|s| s.value)
            .sum::<f64>()
    };
    assert_eq!(counted("app_lines_total"), lines as f64);
    assert_eq!(counted("imd_log_lines_total"), lines as f64);
    for s in families.iter().flat_map(|f| &f.samples) {
        for (_, v) in &s.labels {
            assert!(v.len() <= 1024, "a label value of {} bytes", v.len());
        }
    }
    for format in [Format::Text, Format::OpenMetrics] {
        let written = encode(&families, format);
        if let Err(e) = parse_text(&written) {
            panic!("{format:?} output does not parse: {e}\n{written}");
        }
    }
});
