//! Scheduled reports of the running analyzer (`reports:` in its
//! configuration): every `every`, a report of the last `range` is written
//! to `directory` as `imd-report-<end time>.<ext>` (and copied to
//! `imd-report-latest.<ext>`), each file replaced atomically, so that a
//! web server or a mail job never sees half a report. The configuration
//! is read again before each report, so reloads apply.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use imd_exporter::exposition::Family;

use super::{Format, Inputs, Params};
use crate::config::Config;

/// Counters of the scheduled reports.
#[derive(Debug, Default)]
pub struct ReportMetrics {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    written: [u64; 2],
    failures: u64,
    last_success: Option<f64>,
    last_duration: Option<f64>,
}

impl ReportMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `imd_reports_written_total{format}`, `imd_report_failures_total`,
    /// `imd_report_last_success_timestamp_seconds`,
    /// `imd_report_duration_seconds`.
    pub fn families(&self) -> Vec<Family> {
        let c = self.lock();
        let mut written = Family::counter(
            "imd_reports_written_total",
            "Scheduled report files written, by format.",
        );
        written.push([("format", "html")], c.written[0] as f64);
        written.push([("format", "json")], c.written[1] as f64);
        let mut failures = Family::counter(
            "imd_report_failures_total",
            "Scheduled reports that could not be made or written.",
        );
        failures.push_value(c.failures as f64);
        let mut out = vec![written, failures];
        if let Some(t) = c.last_success {
            let mut f = Family::gauge(
                "imd_report_last_success_timestamp_seconds",
                "When the last scheduled report was written.",
            );
            f.push_value(t);
            out.push(f);
        }
        if let Some(d) = c.last_duration {
            let mut f = Family::gauge(
                "imd_report_duration_seconds",
                "How long the last scheduled report took to make.",
            );
            f.push_value(d);
            out.push(f);
        }
        out
    }
}

/// Makes one scheduled report ending at `now_ms` and writes its files;
/// returns their paths.
pub fn write_once(
    config: &Config,
    storage_path: &Path,
    now_ms: i64,
    metrics: &ReportMetrics,
) -> anyhow::Result<Vec<PathBuf>> {
    let Some(rc) = &config.reports else {
        return Ok(Vec::new());
    };
    let started = std::time::Instant::now();
    let result = (|| {
        let range = rc.range.unwrap_or(rc.every);
        let report = super::generate(
            &Inputs {
                config: Some(config.clone()),
                imd_url: None,
                imd_source: rc.source.clone(),
                storage_path: storage_path.to_path_buf(),
            },
            &Params {
                from_ms: now_ms - range.as_millis() as i64,
                to_ms: now_ms,
                threshold: rc.threshold,
                top: rc.top,
            },
        )?;
        std::fs::create_dir_all(&rc.directory)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", rc.directory.display()))?;
        let stamp = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_else(|_| now_ms.to_string());
        let mut paths = Vec::new();
        for f in &rc.formats {
            let body = super::render(&report, *f);
            let path = rc
                .directory
                .join(format!("imd-report-{stamp}.{}", f.extension()));
            super::write(&path, &body)?;
            super::write(
                &rc.directory
                    .join(format!("imd-report-latest.{}", f.extension())),
                &body,
            )?;
            metrics.lock().written[usize::from(*f == Format::Json)] += 1;
            paths.push(path);
        }
        Ok(paths)
    })();
    let mut c = metrics.lock();
    c.last_duration = Some(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => c.last_success = Some(now_ms as f64 / 1000.0),
        Err(_) => c.failures += 1,
    }
    result
}

/// Writes reports on the schedule the configuration file sets, until
/// aborted. Each run reads the file again (a reload's changes apply); a
/// file that no longer loads keeps the previous configuration.
pub fn spawn(
    config_file: PathBuf,
    storage_path: PathBuf,
    metrics: std::sync::Arc<ReportMetrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<Config> = None;
        let load = |last: &mut Option<Config>| match Config::load(&config_file) {
            Ok(c) => *last = Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "reports: cannot read the configuration; keeping the previous one")
            }
        };
        load(&mut last);
        loop {
            let every = last
                .as_ref()
                .and_then(|c| c.reports.as_ref())
                .map(|r| r.every);
            // Without `reports:`, look again a minute later (a reload may add it).
            tokio::time::sleep(every.unwrap_or(Duration::from_secs(60))).await;
            load(&mut last);
            let Some(config) = last.clone().filter(|c| c.reports.is_some()) else {
                continue;
            };
            let (sp, m) = (storage_path.clone(), metrics.clone());
            let done = tokio::task::spawn_blocking(move || {
                write_once(&config, &sp, crate::schedule::now_ms(), &m)
            })
            .await;
            match done {
                Ok(Ok(paths)) => tracing::info!(files = ?paths, "report written"),
                Ok(Err(e)) => tracing::error!(
                    error = format!("{e:#}"),
                    "cannot write the scheduled report"
                ),
                Err(e) => tracing::error!(error = %e, "report task panicked"),
            }
        }
    })
}
