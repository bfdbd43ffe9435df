//! Configuration reload as Prometheus does it, shared by both imd binaries:
//! on `SIGHUP` or `POST /-/reload` the configuration file is read again (the
//! HTTP endpoint only with `--web.enable-lifecycle`, as Prometheus: without
//! it anyone who can reach the port could make the process reload); a
//! new configuration that does not load is logged and rejected and the old
//! one keeps running. The outcome is published as
//! `<prefix>_config_last_reload_successful` and
//! `<prefix>_config_last_reload_success_timestamp_seconds`.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use crate::exposition::Family;

/// Reloads the configuration, or says (naming the file and key) why the new
/// one was rejected. Called on a blocking thread, never twice at once.
pub type ReloadFn = dyn Fn() -> anyhow::Result<()> + Send + Sync;

/// Runs reloads one at a time and remembers how the last one went.
pub struct Reloader {
    reload: Box<ReloadFn>,
    prefix: &'static str,
    /// (last reload successful, when the last successful one happened).
    status: Mutex<(bool, f64)>,
    /// Held while a reload runs, so that two never interleave.
    running: Mutex<()>,
}

impl Reloader {
    /// A reloader calling `reload`; `prefix` names the metrics (e.g.
    /// `imd_analyzer`). The configuration loaded at start counts as the
    /// first successful load, as in Prometheus.
    pub fn new(
        prefix: &'static str,
        reload: impl Fn() -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            reload: Box::new(reload),
            prefix,
            status: Mutex::new((true, unix_now())),
            running: Mutex::new(()),
        })
    }

    /// Reloads now (blocking), logs and records the outcome.
    pub fn reload(&self, trigger: &str) -> anyhow::Result<()> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let result = (self.reload)();
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(()) => {
                *status = (true, unix_now());
                tracing::info!(trigger, "configuration reloaded");
            }
            Err(e) => {
                status.0 = false;
                tracing::error!(
                    trigger,
                    error = format!("{e:#}"),
                    "reloading the configuration failed; the old configuration stays in force"
                );
            }
        }
        result
    }

    /// The two reload metrics.
    pub fn families(&self) -> Vec<Family> {
        let (ok, at) = *self.status.lock().unwrap_or_else(|e| e.into_inner());
        let p = self.prefix;
        let mut success = Family::gauge(
            format!("{p}_config_last_reload_successful"),
            "Whether the last configuration reload attempt was successful.",
        );
        success.push_value(if ok { 1.0 } else { 0.0 });
        let mut when = Family::gauge(
            format!("{p}_config_last_reload_success_timestamp_seconds"),
            "Timestamp of the last successful configuration reload.",
        );
        when.push_value(at);
        vec![success, when]
    }

    /// Reloads on every `SIGHUP` until the runtime stops. Must be called
    /// within a Tokio runtime.
    pub fn on_sighup(self: &Arc<Self>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("listening for SIGHUP: {e}"))?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let r = me.clone();
                // The outcome is logged and counted by `reload`.
                let _ = tokio::task::spawn_blocking(move || r.reload("SIGHUP")).await;
            }
        }))
    }

    /// `POST /-/reload`: 200 when the new configuration is in force, 500
    /// with the reason when it was rejected (as Prometheus answers). When
    /// `lifecycle` is false (no `--web.enable-lifecycle`) it answers 403
    /// "Lifecycle API is not enabled." as Prometheus does; SIGHUP still
    /// reloads.
    pub fn route<S: Clone + Send + Sync + 'static>(self: &Arc<Self>, lifecycle: bool) -> Router<S> {
        let me = self.clone();
        Router::new().route(
            "/-/reload",
            post(move || {
                let r = me.clone();
                async move {
                    if !lifecycle {
                        return (
                            StatusCode::FORBIDDEN,
                            "Lifecycle API is not enabled.\n".to_string(),
                        );
                    }
                    match tokio::task::spawn_blocking(move || r.reload("/-/reload")).await {
                        Ok(Ok(())) => (StatusCode::OK, String::new()),
                        Ok(Err(e)) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("failed to reload config: {e:#}\n"),
                        ),
                        Err(e) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("reload failed: {e}\n"),
                        ),
                    }
                }
            }),
        )
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn value(fams: &[Family], name: &str) -> f64 {
        let f = fams.iter().find(|f| f.name == name).unwrap();
        f.samples[0].value
    }

    #[test]
    fn failures_are_recorded_and_successes_stamp_the_time() {
        let fail = Arc::new(AtomicBool::new(false));
        let f = fail.clone();
        let r = Reloader::new("x", move || {
            if f.load(Ordering::Relaxed) {
                anyhow::bail!("a.yml: key `b`: bad")
            }
            Ok(())
        });
        let fams = r.families();
        assert_eq!(value(&fams, "x_config_last_reload_successful"), 1.0);
        let started = value(&fams, "x_config_last_reload_success_timestamp_seconds");
        assert!(started > 1.5e9);
        fail.store(true, Ordering::Relaxed);
        let e = r.reload("test").unwrap_err();
        assert!(e.to_string().contains("key `b`"));
        let fams = r.families();
        assert_eq!(value(&fams, "x_config_last_reload_successful"), 0.0);
        assert_eq!(
            value(&fams, "x_config_last_reload_success_timestamp_seconds"),
            started
        );
        fail.store(false, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(10));
        r.reload("test").unwrap();
        let fams = r.families();
        assert_eq!(value(&fams, "x_config_last_reload_successful"), 1.0);
        assert!(value(&fams, "x_config_last_reload_success_timestamp_seconds") > started);
    }
}
