//! The notifier: the engine-facing side ([`Notifier::sync`], callable from
//! any thread) and a background thread with one sending task per
//! Alertmanager.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use super::alertmanager::{AlertmanagerClient, AlertmanagerConfig, SendError};
use super::metrics::NotifierMetrics;
use super::queue::AlertQueue;
use super::state::{AlertState, StateConfig};
use super::{Alert, AlertError, AlertKey, valid_label_name};

/// Settings of the notifier (Prometheus' `alerting` section plus its
/// notifier flags).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// The Alertmanagers; every alert goes to all of them.
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// How often firing (and recently resolved) alerts are sent again.
    #[serde(default = "default_resend_delay", with = "humantime_serde")]
    pub resend_delay: Duration,
    /// How often the engine calls [`Notifier::sync`].
    #[serde(default = "default_eval_interval", with = "humantime_serde")]
    pub eval_interval: Duration,
    /// How far ahead a firing alert's `endsAt` is set, so that Alertmanager
    /// resolves it if imd stops sending. Default: 4 × the larger of
    /// `resend_delay` and `eval_interval`, as Prometheus does.
    #[serde(default, with = "humantime_serde")]
    pub resolve_timeout: Option<Duration>,
    /// How long a resolved alert is kept and re-sent.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// The most alerts waiting for one Alertmanager; the oldest are dropped
    /// beyond it.
    #[serde(default = "default_capacity")]
    pub queue_capacity: usize,
    /// The most alerts in one request.
    #[serde(default = "default_batch")]
    pub max_batch_size: usize,
    /// First wait before retrying a failed request; doubled up to
    /// `retry_max_backoff`, with jitter.
    #[serde(default = "default_min_backoff", with = "humantime_serde")]
    pub retry_min_backoff: Duration,
    /// Longest wait between retries.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Labels added to every alert that lacks them (e.g. `cluster`).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
}

fn default_resend_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_eval_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_retention() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_capacity() -> usize {
    10_000
}
fn default_batch() -> usize {
    256
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Default for NotifierConfig {
    fn default() -> NotifierConfig {
        NotifierConfig {
            alertmanagers: Vec::new(),
            resend_delay: default_resend_delay(),
            eval_interval: default_eval_interval(),
            resolve_timeout: None,
            resolved_retention: default_retention(),
            queue_capacity: default_capacity(),
            max_batch_size: default_batch(),
            retry_min_backoff: default_min_backoff(),
            retry_max_backoff: default_max_backoff(),
            external_labels: BTreeMap::new(),
        }
    }
}

impl NotifierConfig {
    /// The `endsAt` horizon of firing alerts.
    pub fn effective_resolve_timeout(&self) -> Duration {
        self.resolve_timeout
            .unwrap_or_else(|| 4 * self.resend_delay.max(self.eval_interval))
    }

    fn check(&self) -> Result<(), AlertError> {
        let positive = [
            ("resend_delay", self.resend_delay),
            ("eval_interval", self.eval_interval),
            ("resolve_timeout", self.effective_resolve_timeout()),
            ("retry_min_backoff", self.retry_min_backoff),
        ];
        for (key, d) in positive {
            if d.is_zero() {
                return Err(AlertError::config(key, "must be above zero"));
            }
        }
        if self.retry_max_backoff < self.retry_min_backoff {
            return Err(AlertError::config(
                "retry_max_backoff",
                "must not be below retry_min_backoff",
            ));
        }
        if self.queue_capacity == 0 {
            return Err(AlertError::config("queue_capacity", "must be at least 1"));
        }
        if self.max_batch_size == 0 {
            return Err(AlertError::config("max_batch_size", "must be at least 1"));
        }
        if let Some(bad) = self.external_labels.keys().find(|k| !valid_label_name(k)) {
            return Err(AlertError::config(
                format!("external_labels.{bad}"),
                "invalid label name",
            ));
        }
        Ok(())
    }
}

/// What one [`Notifier::sync`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    /// Alerts queued for sending (to each Alertmanager).
    pub queued: usize,
    /// Input alerts refused (label set as given, reason); also logged.
    pub rejected: Vec<(AlertKey, String)>,
}

/// One Alertmanager with its queue.
struct Slot {
    client: AlertmanagerClient,
    queue: Mutex<AlertQueue>,
    wake: Notify,
}

struct Shared {
    slots: Vec<Slot>,
    metrics: NotifierMetrics,
}

/// Sends alerts to Alertmanagers. Built once from a [`NotifierConfig`];
/// the engine calls [`Notifier::sync`] each cycle. Dropping it makes one
/// last attempt to deliver what is queued, then stops the sender thread.
pub struct Notifier {
    state: Mutex<AlertState>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("alertmanagers", &self.endpoints())
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Checks the configuration, builds the HTTP clients and starts the
    /// sender thread.
    pub fn new(config: NotifierConfig) -> Result<Notifier, AlertError> {
        config.check()?;
        let mut slots: Vec<Slot> = Vec::new();
        for (i, am) in config.alertmanagers.iter().enumerate() {
            let key = format!("alertmanagers[{i}]");
            let client = AlertmanagerClient::new(am, &key)?;
            if let Some(j) = slots
                .iter()
                .position(|s| s.client.endpoint() == client.endpoint())
            {
                return Err(AlertError::config(
                    format!("{key}.url"),
                    format!("{} is already alertmanagers[{j}]", client.endpoint()),
                ));
            }
            slots.push(Slot {
                client,
                queue: Mutex::new(AlertQueue::new(config.queue_capacity)),
                wake: Notify::new(),
            });
        }
        let endpoints: Vec<String> = slots
            .iter()
            .map(|s| s.client.endpoint().to_string())
            .collect();
        let shared = Arc::new(Shared {
            slots,
            metrics: NotifierMetrics::new(&endpoints, config.queue_capacity),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let retry = Retry {
            min: config.retry_min_backoff,
            max: config.retry_max_backoff,
            batch: config.max_batch_size,
        };
        let sender_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("imd-notifier".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let tasks: Vec<_> = (0..sender_shared.slots.len())
                        .map(|i| {
                            tokio::spawn(send_loop(
                                sender_shared.clone(),
                                i,
                                shutdown_rx.clone(),
                                retry,
                            ))
                        })
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })?;
        let state = AlertState::new(StateConfig {
            resend_delay: config.resend_delay,
            resolve_timeout: config.effective_resolve_timeout(),
            retention: config.resolved_retention,
            external_labels: config.external_labels.clone(),
        });
        Ok(Notifier {
            state: Mutex::new(state),
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Tells the notifier which alerts are firing at `now` (wall-clock
    /// time: it sets `endsAt`). Alerts are identified by their labels; ones
    /// absent from `firing` that were firing are resolved at `now`. Never
    /// blocks on the network.
    pub fn sync(&self, now: Timestamp, firing: Vec<Alert>) -> SyncReport {
        let outcome = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let o = state.sync(now, firing);
            self.shared.metrics.active(state.firing());
            o
        };
        for (labels, why) in &outcome.rejected {
            tracing::warn!(?labels, reason = %why, "alert not sent");
        }
        let mut dropped = 0;
        for (i, slot) in self.shared.slots.iter().enumerate() {
            {
                let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
                for key in &outcome.forgotten {
                    q.forget_resolved(key);
                }
                for a in &outcome.send {
                    dropped += q.push(a.clone(), a.is_resolved_at(now));
                }
                self.shared.metrics.queue_length(i, q.len());
            }
            if !outcome.send.is_empty() {
                slot.wake.notify_one();
            }
        }
        if dropped > 0 {
            self.shared.metrics.dropped(dropped);
            tracing::warn!(dropped, "alert queue full, dropped the oldest alerts");
        }
        SyncReport {
            queued: outcome.send.len(),
            rejected: outcome.rejected,
        }
    }

    /// The alerts known now: firing ones without `endsAt`, recently
    /// resolved ones with `endsAt` = when they resolved.
    pub fn alerts(&self) -> Vec<Alert> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alerts()
    }

    /// The URLs alerts are posted to, in configuration order.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared
            .slots
            .iter()
            .map(|s| s.client.endpoint().to_string())
            .collect()
    }

    /// The notifier's own metrics (turn them into families with
    /// [`NotifierMetrics::families`]).
    pub fn metrics(&self) -> &NotifierMetrics {
        &self.shared.metrics
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    min: Duration,
    max: Duration,
    batch: usize,
}

/// Sends the queue of Alertmanager `i` until shutdown, retrying failed
/// requests with exponential backoff; at shutdown, makes one last attempt.
async fn send_loop(
    shared: Arc<Shared>,
    i: usize,
    mut shutdown: watch::Receiver<bool>,
    retry: Retry,
) {
    let slot = &shared.slots[i];
    let metrics = &shared.metrics;
    let endpoint = slot.client.endpoint();
    let mut backoff = retry.min;
    let mut failing = false;
    loop {
        let closing = *shutdown.borrow_and_update();
        let batch = {
            let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            let b = q.take(retry.batch);
            metrics.queue_length(i, q.len());
            b
        };
        if batch.is_empty() {
            if closing {
                return;
            }
            tokio::select! {
                _ = slot.wake.notified() => {}
                r = shutdown.changed() => if r.is_err() { return },
            }
            continue;
        }
        let alerts: Vec<Alert> = batch.iter().map(|q| q.alert.clone()).collect();
        let started = Instant::now();
        let result = slot.client.post(&alerts).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                metrics.sent(i, alerts.len(), seconds);
                if failing {
                    tracing::info!(alertmanager = endpoint, "Alertmanager reachable again");
                }
                failing = false;
                backoff = retry.min;
            }
            Err(SendError::Fatal(e)) => {
                metrics.failed(i, alerts.len(), seconds);
                tracing::error!(alertmanager = endpoint, error = %e, alerts = alerts.len(), "Alertmanager refused alerts; dropping them");
            }
            Err(SendError::Retry(e)) => {
                metrics.failed(i, alerts.len(), seconds);
                if closing {
                    let left = slot.queue.lock().map(|q| q.len()).unwrap_or(0) + alerts.len();
                    tracing::warn!(alertmanager = endpoint, error = %e, alerts = left, "shutting down with alerts not delivered");
                    return;
                }
                let dropped = {
                    let mut q = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
                    let d = q.put_back(batch);
                    metrics.queue_length(i, q.len());
                    d
                };
                if dropped > 0 {
                    metrics.dropped(dropped);
                }
                let wait = jitter(backoff);
                if failing {
                    tracing::debug!(alertmanager = endpoint, error = %e, retry_in = ?wait, "sending alerts failed");
                } else {
                    tracing::warn!(alertmanager = endpoint, error = %e, retry_in = ?wait, "sending alerts failed; retrying with backoff");
                }
                failing = true;
                backoff = (backoff * 2).min(retry.max);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    r = shutdown.changed() => if r.is_err() { return },
                }
            }
        }
    }
}

/// A duration between `d/2` and `d`, so that retries of several imd
/// instances spread out. Spreading needs no good randomness: std's
/// randomly keyed hasher is enough, without a dependency for it.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + 0.5 * frac)
}

#[cfg(test)]
mod tests;
