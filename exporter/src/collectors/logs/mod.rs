//! `logs`: metrics from log files. A background thread tails the files of
//! the `logs:` configuration section every `poll_interval`, following
//! rotation and truncation, and runs each new line through the configured
//! regular expressions, which update counters and histograms in memory; a
//! scrape only takes a snapshot of them. Offsets are kept in
//! `<storage.path>/log-offsets.json`, so that a restart resumes where the
//! last run stopped. Without configuration the collector emits nothing.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::{BuildContext, CollectError, Collector, Spec};
use crate::exposition::Family;

mod config;
mod offsets;
mod poller;
mod rules;
mod tail;

pub use config::{DEFAULT_BUCKETS, LogFileConfig, LogsConfig, RuleConfig, RuleKind, StartFrom};

use poller::Poller;
use rules::Store;

/// Registration of this collector.
pub const SPEC: Spec = Spec {
    name: "logs",
    help: "Metrics from log lines matched by the rules of the configuration's `logs:` section",
    default_enabled: true,
    configured: super::not_configured,
    flags: Vec::new,
    build,
};

/// A `logs:` section's rules, compiled, to run over a log file's contents
/// in memory: for the `log_lines` fuzz target and tests.
#[doc(hidden)]
pub struct LogRules(rules::Compiled);

impl LogRules {
    /// Checks and compiles the rules; errors name the key below `logs`.
    pub fn compile(config: &LogsConfig) -> Result<LogRules, crate::config::KeyError> {
        rules::compile(config).map(LogRules)
    }

    /// The metrics the rules make of `data` read as one log file, in reads
    /// of `read_size` bytes, with every file entry's rules applied to it:
    /// what the collector would show after reading that file.
    pub fn metrics_of(&self, data: &[u8], read_size: usize) -> Vec<Family> {
        let mut store = self.0.store.clone();
        let path = "/fuzz.log";
        let mut splitter = tail::LineSplitter::default();
        let rules = self.0.entries.iter().map(|e| &e.matcher);
        for chunk in data.chunks(read_size.max(1)) {
            store.file(path).bytes += chunk.len() as u64;
            poller::feed_lines(&mut splitter, Some(chunk), rules.clone(), path, &mut store);
        }
        poller::feed_lines(&mut splitter, None, rules, path, &mut store);
        store.snapshot()
    }
}

fn build(ctx: &BuildContext) -> anyhow::Result<Box<dyn Collector>> {
    let Some(config) = ctx.config.logs.as_ref().filter(|c| !c.files.is_empty()) else {
        return Ok(Box::new(Logs {
            store: None,
            stop: None,
            thread: None,
        }));
    };
    let compiled = rules::compile(config)
        .map_err(|e| anyhow::anyhow!("configuration key `logs{}`: {}", e.key, e.message))?;
    let interval = compiled.poll_interval;
    let store = Arc::new(Mutex::new(compiled.store));
    let mut poller = Poller::new(
        compiled.entries,
        store.clone(),
        ctx.paths.clone(),
        ctx.state_dir,
    );
    poller.prime();
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("imd-logs".into())
        .spawn(move || run(poller, interval, stopped))
        .map_err(|e| anyhow::anyhow!("starting the log reader thread: {e}"))?;
    Ok(Box::new(Logs {
        store: Some(store),
        stop: Some(stop),
        thread: Some(thread),
    }))
}

/// The background thread: polls every `interval` until the collector is
/// dropped, saving offsets every few seconds and at the end. A collector
/// dropped before its first poll (as by `--check-config`) writes nothing.
fn run(mut poller: Poller, interval: std::time::Duration, stopped: mpsc::Receiver<()>) {
    let mut polled = false;
    // Anything but a timeout (a message, or the sender dropped) means stop.
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        poller.poll_once();
        poller.save_if_due();
        polled = true;
    }
    if polled {
        poller.save_now();
    }
}

struct Logs {
    /// The metrics the thread updates; `None` without configuration.
    store: Option<Arc<Mutex<Store>>>,
    /// Dropping it stops the thread.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector for Logs {
    fn collect(&self) -> Result<Vec<Family>, CollectError> {
        Ok(match &self.store {
            Some(store) => store.lock().unwrap_or_else(|e| e.into_inner()).snapshot(),
            None => Vec::new(),
        })
    }
}

impl Drop for Logs {
    /// Stops the reader thread, which saves the offsets as it ends.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the log reader thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, parse_yaml};
    use crate::paths::Paths;
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn build_with(yaml: &str, state: &Path) -> anyhow::Result<Box<dyn Collector>> {
        let config: Config = parse_yaml(Path::new("x.yml"), yaml).unwrap();
        let matches = clap::Command::new("t").get_matches_from(["t"]);
        let paths = Paths::default();
        build(&BuildContext {
            paths: &paths,
            matches: &matches,
            config: &config,
            state_dir: Some(state),
        })
    }

    fn value(c: &dyn Collector, name: &str) -> Option<f64> {
        c.collect()
            .unwrap()
            .into_iter()
            .find(|f| f.name == name)
            .map(|f| f.samples[0].value)
    }

    #[test]
    fn nothing_without_configuration() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            build_with("", dir.path())
                .unwrap()
                .collect()
                .unwrap()
                .is_empty()
        );
        assert!(
            build_with("logs: {files: []}", dir.path())
                .unwrap()
                .collect()
                .unwrap()
                .is_empty()
        );
        assert!(!dir.path().join(offsets::FILE_NAME).exists());
    }

    #[test]
    fn invalid_rules_fail_the_build_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = build_with(
            "logs:\n  files:\n    - path: /x\n      rules: [{name: a_total, regex: '('}]\n",
            dir.path(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("`logs.files[0].rules[0].regex`"), "{err}");
    }

    #[test]
    fn background_thread_counts_and_saves_offsets_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "ERROR before start\n").unwrap();
        let yaml = format!(
            "logs:\n  poll_interval: 10ms\n  files:\n    - path: '{}'\n      rules: [{{name: errors_total, regex: ERROR}}]\n",
            log.display()
        );
        let state = dir.path().join("state");
        let c = build_with(&yaml, &state).unwrap();
        // The series exists at zero, and `from: end` is the end at start-up.
        assert_eq!(value(&*c, "errors_total"), Some(0.0));
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"ERROR one\nINFO two\nERROR three\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while value(&*c, "errors_total") != Some(2.0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(value(&*c, "errors_total"), Some(2.0));
        assert_eq!(value(&*c, "imd_log_lines_total"), Some(3.0));
        drop(c);
        let saved = offsets::load(&state.join(offsets::FILE_NAME));
        let len = std::fs::metadata(&log).unwrap().len();
        assert_eq!(saved[&log.display().to_string()].offset, len);
    }

    #[test]
    fn a_log_read_in_any_pieces_gives_the_same_metrics_and_they_parse_back() {
        let config: Config = parse_yaml(
            Path::new("x.yml"),
            r#"
logs:
  files:
    - path: /var/log/app.log
      rules:
        - name: app_events_total
          regex: 'user="(?P<user>[^"]*)"'
          labels: [user]
        - name: app_latency_seconds
          type: histogram
          regex: 'took=(?P<ms>\S+)ms'
          value: ms
          scale: 0.001
          buckets: [0.01, 0.1]
"#,
        )
        .unwrap();
        let rules = LogRules::compile(&config.logs.unwrap()).unwrap();
        let log: &[u8] =
            b"user=\"a\\\"b\" took=20ms\r\n\xff user=\"\xc3\xa9\"\ntook=xms\nuser=\"a\\\"b\"";
        let whole = rules.metrics_of(log, log.len());
        for size in [1, 2, 7] {
            assert_eq!(rules.metrics_of(log, size), whole, "reads of {size}");
        }
        // The compiled rules keep nothing from one file to the next.
        assert_eq!(rules.metrics_of(log, 3), whole);
        let text = crate::exposition::encode(&whole, crate::exposition::Format::Text);
        let parsed = crate::exposition::parse::parse_text(&text).unwrap();
        let events = parsed
            .iter()
            .find(|f| f.name == "app_events_total")
            .unwrap();
        let by_user: Vec<(&str, f64)> = events
            .samples
            .iter()
            .map(|s| (s.labels[0].1.as_str(), s.value))
            .collect();
        // The capture stops at the escaped quote: `a\`, a backslash to escape.
        assert_eq!(by_user, [("a\\", 2.0), ("é", 1.0)]);
        assert!(text.contains("app_latency_seconds_count 1\n"), "{text}");
        assert!(
            text.contains("imd_log_lines_total{path=\"/fuzz.log\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("imd_log_value_errors_total{metric=\"app_latency_seconds\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn dropping_before_the_first_poll_writes_nothing() {
        // As `--check-config` does: build, then drop at once.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "x\n").unwrap();
        let yaml = format!(
            "logs:\n  poll_interval: 1h\n  files:\n    - path: '{}'\n      from: beginning\n",
            log.display()
        );
        let state = dir.path().join("state");
        let c = build_with(&yaml, &state).unwrap();
        assert_eq!(value(&*c, "imd_log_file_up"), Some(1.0));
        assert_eq!(value(&*c, "imd_log_lines_total"), Some(0.0));
        drop(c);
        assert!(!state.exists());
    }
}
