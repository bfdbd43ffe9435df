//! The alert lifecycle in the running analyzer: the [`Escalator`] with its
//! file, the Alertmanagers' silences read in the background, the HTTP API
//! (`GET /api/v1/alerts`, `POST /api/v1/alerts/ack`,
//! `POST /api/v1/alerts/resolve`) and the metrics of it all.
//!
//! Each cycle, [`Lifecycle::cycle`] takes the alerts the rules produce and
//! returns the alerts to hand to the notifier (one per escalation level
//! that fires). State changes are saved before the alerts go out.
//!
//! Resolved notifications for alerts acknowledged through imd: the
//! acknowledgement creates a silence (so that Alertmanager stops repeating
//! the alert), and Alertmanager sends no resolved notification for a
//! silenced alert. So when such an alert resolves (its condition clears,
//! or someone resolves it through the API), imd first expires its own
//! silence and only then lets the notifier send the resolution: the
//! receivers that were paged get Alertmanager's ordinary resolved
//! notification (`send_resolved`), through their usual routes and
//! templates. Silences made by people in Alertmanager are theirs and are
//! left alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use imd_exporter::exposition::Family;
use imd_exporter::web::Identity;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::escalation::{
    Acknowledgement, EscalationConfig, Escalator, OwnSilence, Record, Resolution, StateFile,
    StepReport, Target,
};
use super::silences::{NewSilence, Silence, SilenceClient, fingerprint};
use super::state::add;
use super::{Alert, AlertError, AlertKey};
use crate::config::AlertingConfig;

/// The alert lifecycle of a running analyzer.
pub struct Lifecycle {
    escalator: Mutex<Escalator>,
    file: StateFile,
    settings: Mutex<Settings>,
    /// The latest silences read from each Alertmanager, by its name.
    silences: Mutex<BTreeMap<String, Vec<Silence>>>,
    counters: Mutex<Counters>,
    /// The runtime silences are expired on from the (blocking) cycle.
    runtime: Option<tokio::runtime::Handle>,
}

/// What the configuration file sets; replaced on reload.
struct Settings {
    clients: Arc<Vec<SilenceClient>>,
    poll_every: Duration,
    ack_silence: Duration,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("file", &self.file.path())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Counters {
    escalations: BTreeMap<(String, usize), u64>,
    acks: BTreeMap<&'static str, u64>,
    resolutions: BTreeMap<&'static str, u64>,
    /// Reads and failed reads of silences, by Alertmanager.
    polls: BTreeMap<String, (u64, u64)>,
    save_errors: u64,
}

/// Why an API action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// The request is malformed (HTTP 400).
    BadRequest(String),
    /// No alert matches (HTTP 404).
    NotFound(String),
    /// The alerts it designates are already resolved (HTTP 409).
    Resolved(String),
    /// The user may not act (a viewer; HTTP 403).
    Forbidden(String),
}

/// What an acknowledgement or resolution did.
#[derive(Debug, Clone, Default)]
pub struct ActionOutcome {
    /// The open alerts the request designated.
    pub alerts: Vec<AlertKey>,
    /// Those that changed state now (the others already had).
    pub changed: Vec<AlertKey>,
    /// Silences created in (acknowledgement) or expired from
    /// (resolution) the Alertmanagers.
    pub silences: Vec<OwnSilence>,
    /// Problems that did not stop the action (an Alertmanager that could
    /// not be reached, ...).
    pub warnings: Vec<String>,
}

impl Lifecycle {
    /// Builds the lifecycle of `alerting` (none: nothing fires, but the
    /// API answers), resuming the records saved in `dir`. `infer_every` is
    /// the cycle length (for the restart grace). Call it inside the Tokio
    /// runtime the analyzer runs on.
    pub fn new(
        alerting: Option<&AlertingConfig>,
        infer_every: Duration,
        dir: &Path,
    ) -> Result<Lifecycle, AlertError> {
        let defaults = EscalationConfig::default();
        let esc = alerting.map(|a| &a.escalation).unwrap_or(&defaults);
        let file = StateFile::in_dir(dir)?;
        let restored = file.load();
        let longest_for = alerting
            .iter()
            .flat_map(|a| a.rules.iter())
            .filter_map(|r| r.for_)
            .max()
            .unwrap_or_default();
        let grace = esc.restart_grace.unwrap_or(longest_for + 3 * infer_every);
        if !restored.is_empty() {
            tracing::info!(alerts = restored.len(), path = %file.path().display(), "resuming alert escalation state");
        }
        let escalator = Escalator::new(
            esc,
            retention(alerting),
            add(Timestamp::now(), grace),
            restored,
        )
        .map_err(|(k, m)| AlertError::config(format!("escalation{k}"), m))?;
        Ok(Lifecycle {
            escalator: Mutex::new(escalator),
            file,
            settings: Mutex::new(settings(alerting)?),
            silences: Mutex::new(BTreeMap::new()),
            counters: Mutex::new(Counters::default()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Puts a reloaded configuration in force: policies, Alertmanagers and
    /// durations change; the records stay.
    pub fn reconfigure(&self, alerting: Option<&AlertingConfig>) -> Result<(), AlertError> {
        let defaults = EscalationConfig::default();
        let esc = alerting.map(|a| &a.escalation).unwrap_or(&defaults);
        let fresh = settings(alerting)?;
        self.escalator()
            .reconfigure(esc, retention(alerting))
            .map_err(|(k, m)| AlertError::config(format!("escalation{k}"), m))?;
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn clients(&self) -> Arc<Vec<SilenceClient>> {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clients
            .clone()
    }

    fn escalator(&self) -> MutexGuard<'_, Escalator> {
        self.escalator.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, e: &Escalator) {
        if let Err(err) = self.file.save(e.records()) {
            self.counters().save_errors += 1;
            tracing::error!(path = %self.file.path().display(), error = %err, "cannot save the escalation state");
        }
    }

    /// Reads the silences of every Alertmanager every
    /// `silence_poll_interval` while some open alert awaits an
    /// acknowledgement. Runs on the current Tokio runtime until aborted.
    pub fn spawn_poller(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if self.escalator().awaits_acknowledgement() {
                    self.poll_silences().await;
                }
                let every = self
                    .settings
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .poll_every;
                tokio::time::sleep(every).await;
            }
        })
    }

    /// Reads the silences of every Alertmanager once. An Alertmanager that
    /// cannot be read keeps its last list (acknowledgements are never
    /// withdrawn, so a stale list only delays one).
    pub async fn poll_silences(&self) {
        let clients = self.clients();
        for c in clients.iter() {
            let result = c.list().await;
            let p = {
                let mut counters = self.counters();
                let p = counters.polls.entry(c.name().to_string()).or_default();
                p.0 += 1;
                p.1 += u64::from(result.is_err());
                *p
            };
            match result {
                Ok(list) => {
                    self.silences
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(c.name().to_string(), list);
                }
                Err(e) => {
                    tracing::warn!(alertmanager = c.name(), error = %e, failures = p.1, "cannot read silences")
                }
            }
        }
        // Alertmanagers no longer configured: their silences no longer count.
        self.silences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| clients.iter().any(|c| c.name() == name));
    }

    /// One cycle: takes the alerts the rules produce at `now` and returns
    /// those to hand to the notifier. Call it from a blocking thread inside
    /// the Tokio runtime (the analyzer's cycle runs on one): expiring imd's
    /// silences of alerts that resolve waits for the Alertmanagers.
    pub fn cycle(&self, now: Timestamp, firing: Vec<Alert>) -> Vec<Alert> {
        let silences: Vec<Silence> = self
            .silences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flatten()
            .cloned()
            .collect();
        let report = {
            let mut e = self.escalator();
            let r = e.step(now, firing, &silences);
            if r.changed {
                self.save(&e);
            }
            r
        };
        self.account(&report);
        if !report.unsilence.is_empty() {
            let results = self.expire_blocking(&report.unsilence);
            let mut e = self.escalator();
            let mut changed = false;
            for (key, ok) in results {
                if e.unsilenced(now, &key, ok) {
                    changed = true;
                    *self.counters().resolutions.entry("condition").or_default() += 1;
                    tracing::info!(alert = ?key, "alert resolved (its silence expired first)");
                } else if !ok {
                    tracing::warn!(alert = ?key, "alert kept firing until imd's silence can be expired");
                }
            }
            if changed {
                self.save(&e);
            }
        }
        if let Err(err) = self.file.append_history(&report.closed) {
            tracing::warn!(path = %self.file.history_path().display(), error = %err, "cannot append to the alert history");
        }
        self.escalator().alerts()
    }

    fn account(&self, r: &StepReport) {
        let mut c = self.counters();
        for (key, policy) in &r.fired {
            tracing::info!(alert = ?key, policy = policy.as_deref().unwrap_or("none"), "alert fired");
        }
        for (key, policy, level) in &r.escalated {
            *c.escalations.entry((policy.clone(), *level)).or_default() += 1;
            tracing::info!(alert = ?key, policy = %policy, level, "alert escalated");
        }
        for key in &r.acknowledged {
            *c.acks.entry("silence").or_default() += 1;
            tracing::info!(alert = ?key, "alert acknowledged by a silence");
        }
        for key in &r.resolved {
            *c.resolutions.entry("condition").or_default() += 1;
            tracing::info!(alert = ?key, "alert resolved");
        }
    }

    /// Expires silences; per alert, whether all of them are gone. A
    /// silence of an Alertmanager no longer configured counts as gone.
    async fn expire(
        &self,
        items: &[(AlertKey, Vec<OwnSilence>)],
    ) -> (Vec<(AlertKey, bool)>, Vec<String>) {
        let clients = self.clients();
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        for (key, silences) in items {
            let mut ok = true;
            for s in silences {
                if let Some(c) = clients.iter().find(|c| c.name() == s.alertmanager)
                    && let Err(e) = c.expire(&s.id).await
                {
                    ok = false;
                    warnings.push(format!(
                        "expiring silence {} in {}: {e}",
                        s.id, s.alertmanager
                    ));
                }
            }
            out.push((key.clone(), ok));
        }
        (out, warnings)
    }

    fn expire_blocking(&self, items: &[(AlertKey, Vec<OwnSilence>)]) -> Vec<(AlertKey, bool)> {
        let Some(handle) = self
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            tracing::error!("no Tokio runtime to expire silences with");
            return items.iter().map(|(k, _)| (k.clone(), false)).collect();
        };
        let (results, warnings) = handle.block_on(self.expire(items));
        for w in warnings {
            tracing::warn!("{w}");
        }
        results
    }

    /// Acknowledges the open alerts `target` designates, as `by`, and
    /// (with `silence`) creates a silence for each in every Alertmanager,
    /// lasting `duration` (default `ack_silence_duration`).
    pub async fn acknowledge(
        self: &Arc<Self>,
        target: Target,
        by: String,
        comment: String,
        silence: bool,
        duration: Option<Duration>,
    ) -> Result<ActionOutcome, ActionError> {
        let now = Timestamp::now();
        let me = self.clone();
        let (c, b) = (comment.clone(), by.clone());
        let (alerts, changed) = blocking(move || {
            let mut e = me.escalator();
            let open = e.select_open(&target);
            if open.is_empty() {
                return Err(nothing_open(&e, &target));
            }
            let changed = e.acknowledge(now, &open, &b, &c);
            if !changed.is_empty() {
                me.save(&e);
            }
            Ok((open, changed))
        })
        .await??;
        *self.counters().acks.entry("api").or_default() += changed.len() as u64;
        for k in &changed {
            tracing::info!(alert = ?k, by = %by, "alert acknowledged through the API");
        }
        let mut out = ActionOutcome {
            alerts,
            changed: changed.clone(),
            ..ActionOutcome::default()
        };
        if !silence || changed.is_empty() {
            return Ok(out);
        }
        let (clients, ack_silence) = {
            let s = self.settings.lock().unwrap_or_else(|e| e.into_inner());
            (s.clients.clone(), s.ack_silence)
        };
        let end = add(now, duration.unwrap_or(ack_silence));
        let comment = if comment.is_empty() {
            "acknowledged through imd".to_string()
        } else {
            comment
        };
        let mut made: Vec<(AlertKey, OwnSilence)> = Vec::new();
        for key in &changed {
            let s = NewSilence::for_labels(key, now, end, &by, &comment);
            for c in clients.iter() {
                match c.create(&s).await {
                    Ok(id) => made.push((
                        key.clone(),
                        OwnSilence {
                            alertmanager: c.name().to_string(),
                            id,
                        },
                    )),
                    Err(e) => out
                        .warnings
                        .push(format!("creating a silence in {}: {e}", c.name())),
                }
            }
        }
        let me = self.clone();
        let kept = made.clone();
        let orphans = blocking(move || {
            let mut e = me.escalator();
            let mut orphans = Vec::new();
            for (key, s) in kept {
                if !e.add_silence(&key, s.clone()) {
                    orphans.push((key, vec![s]));
                }
            }
            me.save(&e);
            orphans
        })
        .await?;
        // Resolved while the silences were being made: expire them again.
        let (_, warnings) = self.expire(&orphans).await;
        out.warnings.extend(warnings);
        out.silences = made.into_iter().map(|(_, s)| s).collect();
        for w in &out.warnings {
            tracing::warn!("{w}");
        }
        Ok(out)
    }

    /// Resolves the open alerts `target` designates, as `by`: expires the
    /// silences imd made for them (so that their resolution is notified),
    /// then stops sending them as firing.
    pub async fn resolve(
        self: &Arc<Self>,
        target: Target,
        by: String,
        comment: String,
    ) -> Result<ActionOutcome, ActionError> {
        let me = self.clone();
        let t = target.clone();
        let items = blocking(move || {
            let e = me.escalator();
            let open = e.select_open(&t);
            if open.is_empty() {
                return Err(nothing_open(&e, &t));
            }
            Ok(open
                .into_iter()
                .map(|k| {
                    let s = e.get(&k).map(|r| r.silences.clone()).unwrap_or_default();
                    (k, s)
                })
                .collect::<Vec<_>>())
        })
        .await??;
        let (_, warnings) = self.expire(&items).await;
        let now = Timestamp::now();
        let me = self.clone();
        let keys: Vec<AlertKey> = items.iter().map(|(k, _)| k.clone()).collect();
        let b = by.clone();
        let changed = blocking(move || {
            let mut e = me.escalator();
            let done = e.resolve(now, &keys, &b, &comment);
            if !done.is_empty() {
                me.save(&e);
            }
            done
        })
        .await?;
        *self.counters().resolutions.entry("manual").or_default() += changed.len() as u64;
        for k in &changed {
            tracing::info!(alert = ?k, by = %by, "alert resolved through the API");
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(ActionOutcome {
            alerts: items.iter().map(|(k, _)| k.clone()).collect(),
            changed,
            silences: items.into_iter().flat_map(|(_, s)| s).collect(),
            warnings,
        })
    }

    /// Every record (open and recently resolved) as `GET /api/v1/alerts`
    /// lists it.
    pub fn views(&self) -> Vec<AlertView> {
        let e = self.escalator();
        e.records().map(|r| AlertView::of(r, &e)).collect()
    }

    /// The views of the records `keys`.
    fn views_of(&self, keys: &[AlertKey]) -> Vec<AlertView> {
        let e = self.escalator();
        keys.iter()
            .filter_map(|k| e.get(k))
            .map(|r| AlertView::of(r, &e))
            .collect()
    }

    /// The routes of the API, to merge into the analyzer's router.
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/alerts", get(list_alerts))
            .route("/api/v1/alerts/ack", post(ack_alerts))
            .route("/api/v1/alerts/resolve", post(resolve_alerts))
            .with_state(self)
    }

    /// The lifecycle's metrics.
    pub fn families(&self) -> Vec<Family> {
        let mut states = Family::gauge(
            "imd_alert_lifecycle_alerts",
            "Alerts imd tracks, by state (firing, acknowledged, resolved and still kept).",
        );
        let mut levels = Family::gauge(
            "imd_alert_escalation_level",
            "Open alerts by the escalation level they have reached.",
        );
        {
            let e = self.escalator();
            let mut by_state: BTreeMap<&str, u64> =
                [("firing", 0), ("acknowledged", 0), ("resolved", 0)].into();
            let mut by_level: BTreeMap<usize, u64> = BTreeMap::new();
            for r in e.records() {
                *by_state.entry(r.state()).or_default() += 1;
                if r.is_open() {
                    *by_level.entry(r.level()).or_default() += 1;
                }
            }
            for (s, n) in by_state {
                states.push([("state", s)], n as f64);
            }
            for (l, n) in by_level {
                levels.push([("level", l.to_string())], n as f64);
            }
        }
        let c = self.counters();
        let mut escalations = Family::counter(
            "imd_alert_escalations_total",
            "Alerts that reached an escalation level, by policy and level.",
        );
        for ((policy, level), n) in &c.escalations {
            escalations.push(
                [("policy", policy.clone()), ("level", level.to_string())],
                *n as f64,
            );
        }
        let mut acks = Family::counter(
            "imd_alert_acknowledgements_total",
            "Alerts acknowledged, by how (an Alertmanager silence or imd's API).",
        );
        for via in ["silence", "api"] {
            acks.push([("via", via)], c.acks.get(via).copied().unwrap_or(0) as f64);
        }
        let mut resolutions = Family::counter(
            "imd_alert_resolutions_total",
            "Alerts resolved, by how (the condition cleared, or by hand through the API).",
        );
        for how in ["condition", "manual"] {
            resolutions.push(
                [("how", how)],
                c.resolutions.get(how).copied().unwrap_or(0) as f64,
            );
        }
        let mut polls = Family::counter(
            "imd_alert_silence_polls_total",
            "Reads of an Alertmanager's silences.",
        );
        let mut poll_errors = Family::counter(
            "imd_alert_silence_poll_errors_total",
            "Failed reads of an Alertmanager's silences.",
        );
        for (name, (n, err)) in &c.polls {
            polls.push([("alertmanager", name.as_str())], *n as f64);
            poll_errors.push([("alertmanager", name.as_str())], *err as f64);
        }
        let mut save_errors = Family::counter(
            "imd_alert_state_save_errors_total",
            "Failed writes of the escalation state file.",
        );
        save_errors.push_value(c.save_errors as f64);
        vec![
            states,
            levels,
            escalations,
            acks,
            resolutions,
            polls,
            poll_errors,
            save_errors,
        ]
    }
}

/// The silence clients and durations of `alerting`.
fn settings(alerting: Option<&AlertingConfig>) -> Result<Settings, AlertError> {
    let defaults = EscalationConfig::default();
    let esc = alerting.map(|a| &a.escalation).unwrap_or(&defaults);
    let mut clients = Vec::new();
    for (i, am) in alerting
        .iter()
        .flat_map(|a| a.alertmanagers.iter())
        .enumerate()
    {
        clients.push(SilenceClient::new(am, &format!("alertmanagers[{i}]"))?);
    }
    Ok(Settings {
        clients: Arc::new(clients),
        poll_every: esc.silence_poll_interval,
        ack_silence: esc.ack_silence_duration,
    })
}

/// How long resolved alerts are listed: as long as the notifier re-sends
/// them.
fn retention(alerting: Option<&AlertingConfig>) -> Duration {
    alerting
        .map(|a| a.resolved_retention)
        .unwrap_or(Duration::from_secs(15 * 60))
}

/// Runs `f` on a blocking thread (it locks and writes files).
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ActionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ActionError::BadRequest(format!("internal error: {e}")))
}

fn nothing_open(e: &Escalator, target: &Target) -> ActionError {
    if e.knows(target) {
        ActionError::Resolved("the alert is already resolved".into())
    } else {
        ActionError::NotFound("no alert matches".into())
    }
}

/// One level of an alert as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LevelView {
    /// The level.
    pub level: usize,
    /// When it was reached.
    pub at: String,
    /// The label set sent to Alertmanager at this level.
    pub labels: AlertKey,
    /// Alertmanager's fingerprint of that label set.
    pub fingerprint: String,
}

/// An alert's escalation as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EscalationView {
    /// The policy, if one matched.
    pub policy: Option<String>,
    /// The current level.
    pub level: usize,
    /// When it was reached.
    pub level_since: String,
    /// When the next level comes if nobody acknowledges.
    pub next_level_at: Option<String>,
    /// Every level reached.
    pub levels: Vec<LevelView>,
}

/// An alert as `GET /api/v1/alerts` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// The alert's identity (level 0's labels without `escalation_level`).
    pub labels: AlertKey,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
    /// Alertmanager's fingerprint of `labels`.
    pub fingerprint: String,
    /// `firing`, `acknowledged` or `resolved`.
    pub state: String,
    /// When the rule's condition started to hold.
    pub active_at: String,
    /// When imd first sent it.
    pub fired_at: String,
    /// Its escalation.
    pub escalation: EscalationView,
    /// Who acknowledged it, when, how.
    pub acknowledged: Option<Acknowledgement>,
    /// Who resolved it, when.
    pub resolved: Option<Resolution>,
    /// Silences imd made for it.
    pub silences: Vec<OwnSilence>,
    /// The link back to imd's page.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

impl AlertView {
    fn of(r: &Record, e: &Escalator) -> AlertView {
        AlertView {
            labels: r.labels.clone(),
            annotations: r.annotations.clone(),
            fingerprint: fingerprint(&r.labels),
            state: r.state().to_string(),
            active_at: r.starts_at.to_string(),
            fired_at: r.first_fired().to_string(),
            escalation: EscalationView {
                policy: r.policy.clone(),
                level: r.level(),
                level_since: r
                    .levels
                    .last()
                    .map(|l| l.at)
                    .unwrap_or(r.starts_at)
                    .to_string(),
                next_level_at: e.next_level_at(r).map(|t| t.to_string()),
                levels: r
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let labels = r.level_labels(i);
                        LevelView {
                            level: i,
                            at: l.at.to_string(),
                            fingerprint: fingerprint(&labels),
                            labels,
                        }
                    })
                    .collect(),
            },
            acknowledged: r.acknowledged.clone(),
            resolved: r.resolved.clone(),
            silences: r.silences.clone(),
            generator_url: r.generator_url.clone(),
        }
    }
}

/// The body of `POST /api/v1/alerts/ack` and `/resolve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Labels the alerts have (all of them).
    #[serde(default)]
    pub labels: Option<AlertKey>,
    /// Or Alertmanager's fingerprint of the alert or of one of its levels.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Who acts.
    #[serde(default)]
    pub by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// Acknowledgement only: whether to create a silence in the
    /// Alertmanagers (default true).
    #[serde(default)]
    pub silence: Option<bool>,
    /// Acknowledgement only: how long that silence lasts.
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
}

/// The longest `by` accepted.
const MAX_BY: usize = 256;
/// The longest `comment` accepted.
const MAX_COMMENT: usize = 4096;

impl ActionRequest {
    /// Parses and checks a request body; `ack` says whether it is an
    /// acknowledgement (which alone may carry `silence` and `duration`).
    /// `user` is the authenticated user, if any: it becomes `by` (who
    /// acts is who logged in, whatever the body says).
    pub fn parse(
        body: &[u8],
        ack: bool,
        user: Option<&str>,
    ) -> Result<(ActionRequest, Target), String> {
        let mut r: ActionRequest =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        if let Some(u) = user {
            r.by = u.to_string();
        }
        let target = match (&r.labels, &r.fingerprint) {
            (Some(_), Some(_)) => return Err("give `labels` or `fingerprint`, not both".into()),
            (None, None) => return Err("`labels` or `fingerprint` is required".into()),
            (Some(l), None) if l.is_empty() => {
                return Err("`labels` must hold at least one label".into());
            }
            (Some(l), None) => Target::Labels(l.clone()),
            (None, Some(f)) => {
                let f = f.trim().to_ascii_lowercase();
                if f.is_empty() || f.len() > 16 || !f.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("`fingerprint` {f:?} is not 16 hex digits"));
                }
                Target::Fingerprint(format!("{:0>16}", f))
            }
        };
        if r.by.trim().is_empty() {
            return Err("`by` (who acts) is required".into());
        }
        if r.by.chars().count() > MAX_BY {
            return Err(format!("`by` is longer than {MAX_BY} characters"));
        }
        if r.comment.chars().count() > MAX_COMMENT {
            return Err(format!("`comment` is longer than {MAX_COMMENT} characters"));
        }
        if !ack && (r.silence.is_some() || r.duration.is_some()) {
            return Err("`silence` and `duration` belong to acknowledgements".into());
        }
        if r.duration.is_some_and(|d| d < Duration::from_secs(1)) {
            return Err("`duration` must be at least 1s".into());
        }
        Ok((r, target))
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn error_response(e: ActionError) -> Response {
    let (status, kind, msg) = match e {
        ActionError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_data", m),
        ActionError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
        ActionError::Resolved(m) => (StatusCode::CONFLICT, "conflict", m),
        ActionError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
    };
    json_response(
        status,
        serde_json::json!({"status": "error", "errorType": kind, "error": msg}),
    )
}

async fn list_alerts(State(l): State<Arc<Lifecycle>>) -> Response {
    json_response(
        StatusCode::OK,
        serde_json::json!({"status": "success", "data": {"alerts": l.views()}}),
    )
}

fn outcome_response(l: &Lifecycle, o: ActionOutcome) -> Response {
    let mut v = serde_json::json!({
        "status": "success",
        "data": {
            "alerts": l.views_of(&o.alerts),
            "changed": o.changed.iter().map(fingerprint).collect::<Vec<_>>(),
            "silences": o.silences,
        },
    });
    if !o.warnings.is_empty() {
        v["warnings"] = serde_json::json!(o.warnings);
    }
    json_response(StatusCode::OK, v)
}

/// Checks that an API action may proceed: a JSON body (which also keeps
/// it out of reach of cross-site forms: see `web::access`) from an
/// operator. Gives the authenticated user, if any.
fn admit(headers: &HeaderMap, id: Option<&Identity>) -> Result<Option<String>, Box<Response>> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Box::new(json_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({"status": "error", "errorType": "bad_data",
                "error": "send the body as Content-Type: application/json"}),
        )));
    }
    if !crate::web::access::may_act(id) {
        return Err(Box::new(error_response(ActionError::Forbidden(format!(
            "user {:?} is a viewer; acknowledging and resolving need the operator role",
            crate::web::access::subject(id)
        )))));
    }
    Ok(id.and_then(|i| i.user.clone()))
}

async fn ack_alerts(
    State(l): State<Arc<Lifecycle>>,
    id: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match admit(&headers, id.as_ref().map(|e| &e.0)) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (req, target) = match ActionRequest::parse(&body, true, user.as_deref()) {
        Ok(x) => x,
        Err(m) => return error_response(ActionError::BadRequest(m)),
    };
    match l
        .acknowledge(
            target,
            req.by.trim().to_string(),
            req.comment,
            req.silence.unwrap_or(true),
            req.duration,
        )
        .await
    {
        Ok(o) => outcome_response(&l, o),
        Err(e) => error_response(e),
    }
}

async fn resolve_alerts(
    State(l): State<Arc<Lifecycle>>,
    id: Option<Extension<Identity>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match admit(&headers, id.as_ref().map(|e| &e.0)) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (req, target) = match ActionRequest::parse(&body, false, user.as_deref()) {
        Ok(x) => x,
        Err(m) => return error_response(ActionError::BadRequest(m)),
    };
    match l
        .resolve(target, req.by.trim().to_string(), req.comment)
        .await
    {
        Ok(o) => outcome_response(&l, o),
        Err(e) => error_response(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let ok = |b: &str, ack| ActionRequest::parse(b.as_bytes(), ack, None);
        let (r, t) = ok(
            r#"{"labels":{"alertname":"A"},"by":" bob ","comment":"x"}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            t,
            Target::Labels([("alertname".to_string(), "A".to_string())].into())
        );
        assert_eq!(r.by, " bob ");
        let (r, t) = ok(
            r#"{"fingerprint":"CB991762F04FBC6C","by":"bob","silence":false,"duration":"2h"}"#,
            true,
        )
        .unwrap();
        assert_eq!(t, Target::Fingerprint("cb991762f04fbc6c".into()));
        assert_eq!(r.silence, Some(false));
        assert_eq!(r.duration, Some(Duration::from_secs(7200)));
        // Alertmanager drops leading zeros nowhere, but people do.
        let (_, t) = ok(r#"{"fingerprint":"ff","by":"b"}"#, true).unwrap();
        assert_eq!(t, Target::Fingerprint("00000000000000ff".into()));
        for (body, want) in [
            (r#"{"by":"b"}"#, "is required"),
            (r#"{"labels":{},"by":"b"}"#, "at least one label"),
            (
                r#"{"labels":{"a":"b"},"fingerprint":"ab","by":"b"}"#,
                "not both",
            ),
            (r#"{"fingerprint":"xyz","by":"b"}"#, "16 hex digits"),
            (r#"{"labels":{"a":"b"}}"#, "`by`"),
            (
                r#"{"labels":{"a":"b"},"by":"b","silence":true}"#,
                "belong to acknowledgements",
            ),
            (
                r#"{"labels":{"a":"b"},"by":"b","who":"x"}"#,
                "unknown field",
            ),
            ("not json", "invalid JSON"),
        ] {
            let e = ok(body, false).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let long = format!(r#"{{"labels":{{"a":"b"}},"by":"{}"}}"#, "x".repeat(300));
        assert!(ok(&long, true).unwrap_err().contains("longer"));
        assert!(ok(r#"{"labels":{"a":"b"},"by":"b","duration":"0s"}"#, true).is_err());
        // An authenticated user is who acts, `by` or not.
        let (r, _) = ActionRequest::parse(
            br#"{"labels":{"a":"b"},"by":"mallory"}"#,
            true,
            Some("alice"),
        )
        .unwrap();
        assert_eq!(r.by, "alice");
        let (r, _) = ActionRequest::parse(br#"{"labels":{"a":"b"}}"#, true, Some("alice")).unwrap();
        assert_eq!(r.by, "alice");
    }

    #[tokio::test]
    async fn without_alerting_the_api_answers_with_no_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let l = Arc::new(Lifecycle::new(None, Duration::from_secs(60), dir.path()).unwrap());
        assert!(l.views().is_empty());
        let app = l.clone().routes();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        crate::http::install_ring_provider();
        let c = reqwest::Client::new();
        let r = c
            .get(format!("http://127.0.0.1:{port}/api/v1/alerts"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status": "success", "data": {"alerts": []}})
        );
        let r = c
            .post(format!("http://127.0.0.1:{port}/api/v1/alerts/ack"))
            .header("content-type", "application/json")
            .body(r#"{"labels":{"alertname":"A"},"by":"bob"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        // A form (or text/plain) post, as another site could make a
        // browser send: refused before anything is read.
        let r = c
            .post(format!("http://127.0.0.1:{port}/api/v1/alerts/ack"))
            .header("content-type", "text/plain")
            .body(r#"{"labels":{"alertname":"A"},"by":"bob"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let r = c
            .post(format!("http://127.0.0.1:{port}/api/v1/alerts/resolve"))
            .header("content-type", "application/json; charset=utf-8")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["errorType"], "bad_data");
        // Nothing was written for nothing.
        assert!(!dir.path().join("escalation-state.json").exists());
    }

    #[test]
    fn errors_answer_in_the_prometheus_api_shape() {
        let r = error_response(ActionError::NotFound("no alert matches".into()));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = error_response(ActionError::Resolved("x".into()));
        assert_eq!(r.status(), StatusCode::CONFLICT);
    }
}
