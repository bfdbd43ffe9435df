//! imd-exporter's whole output (every collector on, with a textfile, log
//! rules and the processes collector) passes `promtool check metrics`: no
//! parse error ever, and lint warnings only where node_exporter's own output
//! gets the very same warning (names kept for compatibility, such as
//! `node_memory_MemTotal_bytes`). Also: OpenMetrics content negotiation and
//! gzip compression of the same output.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    free_port, http_get, parse_text, require_tool, start_imd, start_node_exporter, tempdir,
};

const TEXTFILE: &str = "\
# HELP imd_test_backup_last_success_timestamp_seconds When the last backup succeeded.
# TYPE imd_test_backup_last_success_timestamp_seconds gauge
imd_test_backup_last_success_timestamp_seconds{database=\"orders\"} 1.7e+09
# HELP imd_test_jobs_processed_total Jobs processed by the queue worker.
# TYPE imd_test_jobs_processed_total counter
imd_test_jobs_processed_total{queue=\"mail\"} 10
imd_test_jobs_processed_total{queue=\"sms\"} 3
";

/// process-exporter declares these counters without the `_total` suffix
/// (`prometheus.NewDesc("namedprocess_scrape_errors", ...)` as a counter);
/// the process groups collector keeps its names so that its dashboards work,
/// and promtool's warning about them is the one allowed beyond
/// node_exporter's own.
const PROCESS_EXPORTER_COUNTERS: &[&str] = &[
    "namedprocess_scrape_errors",
    "namedprocess_scrape_procread_errors",
    "namedprocess_scrape_partial_errors",
];

/// Runs `promtool check metrics` on `body`; returns the exit code and the
/// warning lines (as promtool prints them).
fn promtool_check(body: &str) -> (i32, BTreeSet<String>, String) {
    let mut child = Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    let mut stdin = child.stdin.take().expect("promtool stdin");
    let input = body.to_string();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("running promtool");
    let _ = writer.join();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    (out.status.code().unwrap_or(-1), warnings, text)
}

/// A scratch dir with a textfile directory and an exporter config with two
/// process groups and a tailed log file with a counter and a histogram rule,
/// plus some lines.
fn setup(dir: &Path) -> (String, std::path::PathBuf) {
    let textfiles = dir.join("textfiles");
    std::fs::create_dir_all(&textfiles).expect("creating textfile dir");
    std::fs::write(textfiles.join("backup.prom"), TEXTFILE).expect("writing textfile");
    let log = dir.join("app.log");
    std::fs::write(
        &log,
        "ERROR E1 boom\nGET / took 12ms\nGET / took 230ms\nERROR E2 bang\n",
    )
    .expect("writing log");
    let config = dir.join("exporter.yml");
    std::fs::write(
        &config,
        format!(
            r#"process_groups:
  - name: imd
    comm: [imd-exporter]
  - name: "{{{{.Comm}}}}"
    cmdline: ['.']
logs:
  poll_interval: 100ms
  files:
    - path: {log}
      from: beginning
      rules:
        - name: imd_test_log_errors_total
          help: Error lines by code.
          regex: 'ERROR (?P<code>E[0-9]+)'
          labels: [code]
        - name: imd_test_log_request_duration_seconds
          help: Logged request durations.
          type: histogram
          regex: 'took (?P<ms>[0-9]+)ms'
          value: ms
          scale: 0.001
"#,
            log = log.display()
        ),
    )
    .expect("writing exporter.yml");
    (textfiles.display().to_string(), config)
}

fn all_collector_flags(textfiles: &str, config: &Path) -> Vec<String> {
    let mut flags: Vec<String> = common::imd_collectors()
        .iter()
        .map(|c| format!("--collector.{c}"))
        .collect();
    flags.push(format!("--collector.textfile.directory={textfiles}"));
    flags.push(format!("--config.file={}", config.display()));
    flags
}

/// The plain output once the logs collector, which reads in the
/// background, has counted the setup's lines (or after 10 s).
fn wait_for_log_series(port: u16) -> String {
    let start = std::time::Instant::now();
    loop {
        let r = http_get(port, "/metrics", &[]).expect("scraping imd-exporter");
        assert_eq!(r.status, 200);
        let text = r.text();
        let counted = text.contains("imd_test_log_errors_total{code=\"E2\"} 1")
            && text.contains("imd_test_log_request_duration_seconds_count 2");
        if counted || start.elapsed().as_secs() > 10 {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn full_output_passes_promtool_like_node_exporter() {
    let dir = tempdir();
    let (textfiles, config) = setup(dir.path());
    let imd_port = free_port();
    let _imd = start_imd(
        dir.path(),
        imd_port,
        &all_collector_flags(&textfiles, &config),
    );

    let body = wait_for_log_series(imd_port);
    let fams = parse_text(&body).expect("imd-exporter output parses");
    for name in [
        "imd_test_jobs_processed_total",
        "imd_test_log_errors_total",
        "imd_test_log_request_duration_seconds",
        "node_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            fams.contains_key(name),
            "{name} is missing from the full output"
        );
    }
    let success = &fams["node_scrape_collector_success"];
    let failed: Vec<_> = success
        .samples
        .iter()
        .filter(|s| s.value != 1.0)
        .filter_map(|s| s.label("collector"))
        .filter(|c| *c != "pressure" || Path::new("/proc/pressure/cpu").exists())
        .collect();
    assert!(failed.is_empty(), "collectors failed: {failed:?}");
    assert_eq!(fams["node_textfile_scrape_error"].samples[0].value, 0.0);

    // node_exporter with its defaults plus processes and the same textfiles:
    // the warnings promtool gives it are the allowance.
    let ne_port = free_port();
    let _ne = start_node_exporter(
        dir.path(),
        ne_port,
        &[
            "--collector.processes".to_string(),
            format!("--collector.textfile.directory={textfiles}"),
        ],
    );
    let ne_body = http_get(ne_port, "/metrics", &[])
        .expect("scraping node_exporter")
        .text();
    let (ne_code, ne_warnings, ne_text) = promtool_check(&ne_body);
    assert!(
        ne_code == 0 || ne_code == 3,
        "promtool on node_exporter's output: exit {ne_code}\n{ne_text}"
    );

    let (code, warnings, text) = promtool_check(&body);
    assert_ne!(
        code, 1,
        "promtool could not parse imd-exporter's output:\n{text}"
    );
    assert!(code == 0 || code == 3, "promtool exit {code}:\n{text}");
    let mut allowed = ne_warnings.clone();
    allowed.extend(
        PROCESS_EXPORTER_COUNTERS
            .iter()
            .map(|n| format!("{n} counter metrics should have \"_total\" suffix")),
    );
    let own: Vec<&String> = warnings.difference(&allowed).collect();
    assert!(
        own.is_empty(),
        "lint warnings node_exporter does not get ({}):\n{}",
        own.len(),
        own.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if code == 3 {
        assert!(!warnings.is_empty(), "exit 3 without a warning:\n{text}");
    }
    println!(
        "promtool: imd-exporter exit {code} with {} warnings, all shared with node_exporter (exit {ne_code}, {} warnings) \
         or process-exporter's names; {} families checked",
        warnings.len(),
        ne_warnings.len(),
        fams.len()
    );
}

#[test]
fn openmetrics_is_negotiated_and_gzip_compresses() {
    let dir = tempdir();
    let (textfiles, config) = setup(dir.path());
    let port = free_port();
    let _imd = start_imd(dir.path(), port, &all_collector_flags(&textfiles, &config));
    // Families of the log rules appear once their lines are read: wait, so
    // that the scrapes compared below see the same families.
    wait_for_log_series(port);

    // What Prometheus 2.x sends.
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                  text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let om = http_get(port, "/metrics", &[("Accept", accept)]).expect("OpenMetrics scrape");
    assert_eq!(om.status, 200);
    let ct = om.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/openmetrics-text"),
        "content type {ct}"
    );
    let body = om.text();
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics body must end with `# EOF`: ...{}",
        &body[body.len().saturating_sub(200)..]
    );
    assert_eq!(body.matches("# EOF").count(), 1);
    check_openmetrics_counters(&body);

    // Plain text when not asked otherwise.
    let plain = http_get(port, "/metrics", &[]).expect("plain scrape");
    let ct = plain.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain") && ct.contains("version=0.0.4"),
        "content type {ct}"
    );
    assert!(!plain.text().contains("# EOF"));
    assert!(plain.header("content-encoding").is_none());
    let plain_fams = parse_text(&plain.text()).expect("plain output parses");

    // gzip when accepted; it decompresses to the same families.
    let gz = http_get(port, "/metrics", &[("Accept-Encoding", "gzip")]).expect("gzip scrape");
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_string(&mut text)
        .expect("the gzip body decompresses");
    assert!(
        gz.body.len() * 3 < text.len(),
        "gzip saved little: {} → {}",
        text.len(),
        gz.body.len()
    );
    let gz_fams = parse_text(&text).expect("decompressed output parses");
    let a: BTreeSet<_> = plain_fams.keys().collect();
    let b: BTreeSet<_> = gz_fams.keys().collect();
    assert_eq!(
        a, b,
        "the gzip scrape has other families than the plain one"
    );

    // OpenMetrics and gzip together, as Prometheus asks.
    let both = http_get(
        port,
        "/metrics",
        &[("Accept", accept), ("Accept-Encoding", "gzip")],
    )
    .expect("both");
    assert_eq!(both.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&both.body[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    assert!(text.ends_with("# EOF\n"));

    // An identity-only client gets no compression.
    let id = http_get(
        port,
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0, identity")],
    )
    .expect("identity");
    assert!(id.header("content-encoding").is_none());
}

/// In OpenMetrics a counter family is declared without `_total` and its
/// samples carry it; every family is declared once.
fn check_openmetrics_counters(body: &str) {
    let mut declared = BTreeSet::new();
    let mut counter: Option<String> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(declared.insert(name.to_string()), "{name} declared twice");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "unknown",
                    "info",
                    "stateset",
                    "gaugehistogram"
                ]
                .contains(&kind),
                "{line}"
            );
            if kind == "counter" {
                assert!(
                    !name.ends_with("_total"),
                    "OpenMetrics counter family named with _total: {line}"
                );
            }
            counter = (kind == "counter").then(|| name.to_string());
        } else if !line.starts_with('#')
            && let Some(c) = &counter
        {
            let sample = line.split(['{', ' ']).next().unwrap_or("");
            assert!(
                sample == format!("{c}_total") || sample == format!("{c}_created"),
                "sample {sample} under counter {c}"
            );
        }
    }
    assert!(
        declared.contains("node_cpu_seconds"),
        "node_cpu_seconds counter family missing in OpenMetrics"
    );
}
