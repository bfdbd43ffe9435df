//! Escalation, acknowledgement and resolution of alerts: the state machine
//! and its file.
//!
//! Every alert the rules produce is a *record*, keyed by its label set (its
//! identity), holding when it first fired, the escalation levels it has
//! reached and when, who acknowledged it and who resolved it. Level 0 is
//! the alert as the rules produce it; a policy (matched by labels when the
//! alert first fires) lists further levels, each reached when the alert has
//! stayed unacknowledged for `after` at the previous level. A level is sent
//! to Alertmanager as the alert's labels plus `escalation_level="N"` plus
//! the level's own labels, so that Alertmanager's routes send each level to
//! its receivers.
//!
//! Changing labels makes a new alert in Alertmanager. By default the lower
//! levels stay firing (`previous_levels: keep`): escalation *adds* people,
//! the primary on-call keeps being reminded, and when the alert resolves
//! every receiver that was paged gets the resolution. `previous_levels:
//! resolve` sends only the current level; the previous level's alert is
//! resolved when the next one starts.
//!
//! Pure bookkeeping driven by the caller's clock: no threads, no network.
//! [`StateFile`] writes the records atomically after every change, before
//! the alerts go out, so a restart (a crash included) resumes each alert at
//! its level: a level already reached is not reached again, and the next
//! one comes at its time.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::silences::{Silence, fingerprint};
use super::state::add;
use super::{Alert, AlertKey, valid_label_name};

/// The label carrying the escalation level.
pub const LEVEL_LABEL: &str = "escalation_level";

/// Who resolves an alert whose condition cleared.
pub const AUTO_RESOLVER: &str = "imd-analyzer";

/// How long imd keeps trying to expire its own silence of an alert whose
/// condition cleared before it resolves the alert anyway (the resolved
/// notification is then lost for as long as the silence lasts).
pub const UNSILENCE_DEADLINE: Duration = Duration::from_secs(300);

/// The `alerting.escalation` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// Policies, tried in order; the first whose matchers accept an alert's
    /// labels escalates it. Alerts matching none stay at level 0 (they can
    /// still be acknowledged and resolved).
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// What happens to a level's alert when the next level starts.
    #[serde(default)]
    pub previous_levels: PreviousLevels,
    /// How often the Alertmanagers' silences are read to find
    /// acknowledgements (only while an alert is open and unacknowledged).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub silence_poll_interval: Duration,
    /// Length of the silence created when an alert is acknowledged through
    /// imd's API (the request may ask for another).
    #[serde(default = "default_ack_silence", with = "humantime_serde")]
    pub ack_silence_duration: Duration,
    /// After a restart, how long an alert that was open is kept firing
    /// while the rules have not confirmed it yet (default: the longest rule
    /// `for` plus three cycles).
    #[serde(default, with = "humantime_serde")]
    pub restart_grace: Option<Duration>,
}

fn default_poll() -> Duration {
    Duration::from_secs(30)
}
fn default_ack_silence() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            policies: Vec::new(),
            previous_levels: PreviousLevels::default(),
            silence_poll_interval: default_poll(),
            ack_silence_duration: default_ack_silence(),
            restart_grace: None,
        }
    }
}

/// What happens to a level's alert when the next level starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviousLevels {
    /// Every level reached stays firing until the alert resolves.
    #[default]
    Keep,
    /// Only the current level fires; the previous one is resolved.
    Resolve,
}

/// One escalation policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name, shown in `GET /api/v1/alerts` and the metrics.
    pub name: String,
    /// Labels the alert must have with exactly these values.
    #[serde(default, rename = "match")]
    pub match_labels: BTreeMap<String, String>,
    /// Labels whose values must match these regular expressions (anchored).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Levels 1, 2, ... in order.
    pub levels: Vec<LevelConfig>,
}

/// One escalation level.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// How long the alert stays unacknowledged at the previous level
    /// before it reaches this one.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Labels added at this level (they may replace the alert's own, e.g.
    /// raise `severity`), for Alertmanager's routes.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl EscalationConfig {
    /// Checks what the schema cannot. The error is (key below
    /// `alerting.escalation`, message), e.g. `(".policies[0].levels[1].labels.x-y", ...)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        compile(&self.policies).map(|_| ())?;
        if self.silence_poll_interval.is_zero() {
            return Err((".silence_poll_interval".into(), "must be positive".into()));
        }
        if self.ack_silence_duration < Duration::from_secs(1) {
            return Err((".ack_silence_duration".into(), "must be at least 1s".into()));
        }
        Ok(())
    }
}

/// A checked policy.
#[derive(Debug, Clone)]
struct Policy {
    name: String,
    equal: Vec<(String, String)>,
    regex: Vec<(String, Regex)>,
    levels: Vec<LevelConfig>,
}

impl Policy {
    fn matches(&self, labels: &AlertKey) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        self.equal.iter().all(|(k, v)| get(k) == v)
            && self.regex.iter().all(|(k, r)| r.is_match(get(k)))
    }
}

fn compile(policies: &[PolicyConfig]) -> Result<Vec<Policy>, (String, String)> {
    let mut out: Vec<Policy> = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let key = |k: &str| format!(".policies[{i}]{k}");
        if p.name.is_empty() {
            return Err((key(".name"), "must not be empty".into()));
        }
        if let Some(j) = out.iter().position(|o| o.name == p.name) {
            return Err((
                key(".name"),
                format!("{:?} is already the name of policies[{j}]", p.name),
            ));
        }
        if p.levels.is_empty() {
            return Err((key(".levels"), "at least one level is needed".into()));
        }
        for name in p.match_labels.keys().chain(p.match_re.keys()) {
            if !valid_label_name(name) {
                return Err((key(&format!(".match.{name}")), "invalid label name".into()));
            }
        }
        let mut regex = Vec::new();
        for (name, re) in &p.match_re {
            let r = Regex::new(&format!("^(?:{re})$")).map_err(|e| {
                (
                    key(&format!(".match_re.{name}")),
                    format!("invalid regular expression: {e}"),
                )
            })?;
            regex.push((name.clone(), r));
        }
        for (j, l) in p.levels.iter().enumerate() {
            for name in l.labels.keys() {
                let k = key(&format!(".levels[{j}].labels.{name}"));
                if !valid_label_name(name) {
                    return Err((k, "invalid label name".into()));
                }
                if name == LEVEL_LABEL || name == "alertname" {
                    return Err((k, format!("`{name}` cannot be set by a level")));
                }
            }
        }
        out.push(Policy {
            name: p.name.clone(),
            equal: p
                .match_labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            regex,
            levels: p.levels.clone(),
        });
    }
    Ok(out)
}

/// When a level was reached and the labels it adds to the alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// When the level was reached.
    #[serde(with = "super::rfc3339")]
    pub at: Timestamp,
    /// Labels added to the alert at this level (`escalation_level` and the
    /// level's labels; none for an alert without a policy).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// How an alert was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckVia {
    /// A silence in Alertmanager matched it.
    Silence,
    /// `POST /api/v1/alerts/ack`.
    Api,
}

/// Who acknowledged an alert and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    /// The person (`by` of the request, `createdBy` of the silence).
    pub by: String,
    /// When (the request's time, the silence's `startsAt`).
    #[serde(with = "super::rfc3339")]
    pub at: Timestamp,
    /// Their comment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Through a silence or through the API.
    pub via: AckVia,
    /// The silence, when acknowledged by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence_id: Option<String>,
}

/// Who resolved an alert and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    /// The person, or `imd-analyzer` when the condition cleared.
    pub by: String,
    /// When.
    #[serde(with = "super::rfc3339")]
    pub at: Timestamp,
    /// Their comment (`condition cleared` when automatic).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Whether a person resolved it through the API.
    pub manual: bool,
}

/// A silence imd created in one Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnSilence {
    /// The Alertmanager (its API base URL).
    pub alertmanager: String,
    /// The silence's id there.
    pub id: String,
}

/// Everything imd knows about one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The alert's identity, as the rules produce it.
    pub labels: AlertKey,
    /// Its latest annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Its latest generator URL.
    #[serde(default)]
    pub generator_url: String,
    /// `startsAt` of level 0 (when the rule's condition started to hold).
    #[serde(with = "super::rfc3339")]
    pub starts_at: Timestamp,
    /// The escalation policy, if one matched.
    #[serde(default)]
    pub policy: Option<String>,
    /// The levels reached, level 0 first; the last is the current one.
    pub levels: Vec<Level>,
    /// Set once acknowledged.
    #[serde(default)]
    pub acknowledged: Option<Acknowledgement>,
    /// Set once resolved.
    #[serde(default)]
    pub resolved: Option<Resolution>,
    /// Whether the rules' condition no longer holds (false while a
    /// manually resolved alert's condition still holds).
    #[serde(default)]
    pub cleared: bool,
    /// Silences imd created when the alert was acknowledged through it;
    /// expired before the alert resolves.
    #[serde(default)]
    pub silences: Vec<OwnSilence>,
    /// Since when the condition is gone while imd's silences are still
    /// being expired.
    #[serde(default, with = "super::rfc3339_opt")]
    pub resolving_since: Option<Timestamp>,
    /// Seen in the rules' output since this process started.
    #[serde(skip)]
    confirmed: bool,
}

impl Record {
    /// The current level.
    pub fn level(&self) -> usize {
        self.levels.len().saturating_sub(1)
    }

    /// When the alert first fired (reached level 0).
    pub fn first_fired(&self) -> Timestamp {
        self.levels.first().map(|l| l.at).unwrap_or(self.starts_at)
    }

    /// Whether it is neither resolved nor on its way to be.
    pub fn is_open(&self) -> bool {
        self.resolved.is_none()
    }

    /// `firing`, `acknowledged` or `resolved`.
    pub fn state(&self) -> &'static str {
        match (&self.resolved, &self.acknowledged) {
            (Some(_), _) => "resolved",
            (None, Some(_)) => "acknowledged",
            (None, None) => "firing",
        }
    }

    /// The label set of level `l` as sent to Alertmanager.
    pub fn level_labels(&self, l: usize) -> AlertKey {
        let mut labels = self.labels.clone();
        if let Some(level) = self.levels.get(l) {
            for (k, v) in &level.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        labels
    }

    /// The alert of level `l` (`endsAt` unset).
    fn level_alert(&self, l: usize) -> Alert {
        let starts_at = match l {
            0 => self.starts_at,
            _ => self.levels.get(l).map(|x| x.at).unwrap_or(self.starts_at),
        };
        Alert {
            labels: self.level_labels(l),
            annotations: self.annotations.clone(),
            starts_at,
            ends_at: None,
            generator_url: self.generator_url.clone(),
        }
    }

    /// Whether `target` designates this alert: a fingerprint of its
    /// identity or of one of its levels, or labels every one of which the
    /// identity or a level's label set has.
    pub fn is_target(&self, target: &Target) -> bool {
        let sets = (0..self.levels.len().max(1)).map(|l| self.level_labels(l));
        match target {
            Target::Fingerprint(f) => {
                fingerprint(&self.labels) == *f || sets.into_iter().any(|s| fingerprint(&s) == *f)
            }
            Target::Labels(want) => {
                !want.is_empty()
                    && sets
                        .into_iter()
                        .any(|s| want.iter().all(|(k, v)| s.get(k) == Some(v)))
            }
        }
    }
}

/// Which alerts an API request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Alertmanager's fingerprint of the alert or of one of its levels.
    Fingerprint(String),
    /// Labels the alert has (all of them; at least one).
    Labels(AlertKey),
}

/// What one [`Escalator::step`] changed.
#[derive(Debug, Default)]
pub struct StepReport {
    /// Whether anything worth saving changed.
    pub changed: bool,
    /// Alerts that fired for the first time (policy name, if any).
    pub fired: Vec<(AlertKey, Option<String>)>,
    /// Alerts that reached a new level: (identity, policy, level).
    pub escalated: Vec<(AlertKey, String, usize)>,
    /// Alerts acknowledged by a silence.
    pub acknowledged: Vec<AlertKey>,
    /// Alerts resolved because their condition cleared.
    pub resolved: Vec<AlertKey>,
    /// Alerts whose condition cleared and whose imd-made silences must be
    /// expired before they resolve; report back with
    /// [`Escalator::unsilenced`].
    pub unsilence: Vec<(AlertKey, Vec<OwnSilence>)>,
    /// Records past their retention, no longer kept.
    pub closed: Vec<Record>,
}

/// The records of every open or recently resolved alert and the policies.
#[derive(Debug)]
pub struct Escalator {
    policies: Vec<Policy>,
    keep_previous: bool,
    retention: Duration,
    grace_until: Timestamp,
    records: BTreeMap<AlertKey, Record>,
}

impl Escalator {
    /// An escalator for `config` resuming `restored` records. Records
    /// restored open stay firing until `grace_until` even when the rules do
    /// not produce them yet; resolved records are kept `retention` after
    /// they resolved.
    pub fn new(
        config: &EscalationConfig,
        retention: Duration,
        grace_until: Timestamp,
        restored: Vec<Record>,
    ) -> Result<Escalator, (String, String)> {
        config.check()?;
        Ok(Escalator {
            policies: compile(&config.policies)?,
            keep_previous: config.previous_levels == PreviousLevels::Keep,
            retention,
            grace_until,
            records: restored
                .into_iter()
                .map(|r| (r.labels.clone(), r))
                .collect(),
        })
    }

    /// Puts a new configuration in force (a reload): later steps use its
    /// policies; records keep the levels they reached, with their labels.
    pub fn reconfigure(
        &mut self,
        config: &EscalationConfig,
        retention: Duration,
    ) -> Result<(), (String, String)> {
        config.check()?;
        self.policies = compile(&config.policies)?;
        self.keep_previous = config.previous_levels == PreviousLevels::Keep;
        self.retention = retention;
        Ok(())
    }

    /// Takes the alerts the rules produce at `now` and the silences in
    /// force, and advances every record: new alerts start at level 0,
    /// silenced ones are acknowledged, unacknowledged ones escalate when
    /// due, ones whose condition cleared resolve.
    pub fn step(&mut self, now: Timestamp, firing: Vec<Alert>, silences: &[Silence]) -> StepReport {
        let mut report = StepReport::default();
        let mut seen: BTreeMap<AlertKey, Alert> = BTreeMap::new();
        for mut a in firing {
            // As the notifier does: an empty value is an absent label.
            a.labels.retain(|_, v| !v.is_empty());
            if !a.labels.is_empty() {
                seen.insert(a.labels.clone(), a);
            }
        }

        for (key, a) in seen.iter() {
            let fresh = match self.records.get_mut(key) {
                Some(r) if r.resolved.is_some() && r.cleared => {
                    // Firing again after it resolved: a new incident.
                    if let Some(old) = self.records.remove(key) {
                        report.closed.push(old);
                    }
                    true
                }
                Some(r) => {
                    r.annotations = a.annotations.clone();
                    r.generator_url = a.generator_url.clone();
                    r.confirmed = true;
                    if r.resolving_since.take().is_some() {
                        report.changed = true;
                    }
                    false
                }
                None => true,
            };
            if fresh {
                let policy = self.policies.iter().find(|p| p.matches(key));
                let mut level0 = BTreeMap::new();
                if policy.is_some() {
                    level0.insert(LEVEL_LABEL.to_string(), "0".to_string());
                }
                let r = Record {
                    labels: key.clone(),
                    annotations: a.annotations.clone(),
                    generator_url: a.generator_url.clone(),
                    starts_at: a.starts_at.min(now),
                    policy: policy.map(|p| p.name.clone()),
                    levels: vec![Level {
                        at: now,
                        labels: level0,
                    }],
                    acknowledged: None,
                    resolved: None,
                    cleared: false,
                    silences: Vec::new(),
                    resolving_since: None,
                    confirmed: true,
                };
                report.fired.push((key.clone(), r.policy.clone()));
                self.records.insert(key.clone(), r);
                report.changed = true;
            }
        }

        // Records the rules no longer produce.
        let grace = now < self.grace_until;
        for (key, r) in self.records.iter_mut() {
            if seen.contains_key(key) {
                continue;
            }
            if r.resolved.is_some() {
                if !r.cleared {
                    r.cleared = true;
                    report.changed = true;
                }
                continue;
            }
            if !r.confirmed && grace {
                continue;
            }
            if !r.silences.is_empty() {
                if r.resolving_since.is_none() {
                    r.resolving_since = Some(now);
                    report.changed = true;
                }
                report.unsilence.push((key.clone(), r.silences.clone()));
                continue;
            }
            r.resolved = Some(Resolution {
                by: AUTO_RESOLVER.into(),
                at: now,
                comment: "condition cleared".into(),
                manual: false,
            });
            r.cleared = true;
            r.resolving_since = None;
            report.resolved.push(key.clone());
            report.changed = true;
        }

        // Acknowledgement by silences, then escalation.
        for (key, r) in self.records.iter_mut() {
            if !r.is_open() || r.acknowledged.is_some() || r.resolving_since.is_some() {
                continue;
            }
            let sets: Vec<AlertKey> = (0..r.levels.len()).map(|l| r.level_labels(l)).collect();
            if let Some(s) = silences
                .iter()
                .filter(|s| s.active_at(now))
                .find(|s| sets.iter().any(|l| s.matches(l)))
            {
                r.acknowledged = Some(Acknowledgement {
                    by: s.created_by.clone(),
                    at: s.starts_at,
                    comment: s.comment.clone(),
                    via: AckVia::Silence,
                    silence_id: Some(s.id.clone()),
                });
                report.acknowledged.push(key.clone());
                report.changed = true;
                continue;
            }
            let Some(policy) = r
                .policy
                .as_ref()
                .and_then(|name| self.policies.iter().find(|p| &p.name == name))
            else {
                continue;
            };
            // One level per `after`; a zero `after` goes on at once.
            while let Some(next) = policy.levels.get(r.level()) {
                let since = r.levels.last().map(|l| l.at).unwrap_or(now);
                if add(since, next.after) > now {
                    break;
                }
                let n = r.levels.len();
                let mut labels = next.labels.clone();
                labels.insert(LEVEL_LABEL.to_string(), n.to_string());
                r.levels.push(Level { at: now, labels });
                report.escalated.push((key.clone(), policy.name.clone(), n));
                report.changed = true;
            }
        }

        // Forget resolved records past their retention.
        let retention = self.retention;
        let expired: Vec<AlertKey> = self
            .records
            .iter()
            .filter(|(_, r)| {
                r.cleared
                    && r.resolved
                        .as_ref()
                        .is_some_and(|x| add(x.at, retention) <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(r) = self.records.remove(&k) {
                report.closed.push(r);
                report.changed = true;
            }
        }
        report
    }

    /// Reports whether the silences of an alert whose condition cleared
    /// could be expired. Once they are (or [`UNSILENCE_DEADLINE`] has
    /// passed) the alert resolves; returns whether it did.
    pub fn unsilenced(&mut self, now: Timestamp, key: &AlertKey, expired: bool) -> bool {
        let Some(r) = self.records.get_mut(key) else {
            return false;
        };
        let Some(since) = r.resolving_since else {
            return false;
        };
        if !r.is_open() {
            return false;
        }
        if !expired && add(since, UNSILENCE_DEADLINE) > now {
            return false;
        }
        r.silences.clear();
        r.resolving_since = None;
        r.resolved = Some(Resolution {
            by: AUTO_RESOLVER.into(),
            at: now,
            comment: "condition cleared".into(),
            manual: false,
        });
        r.cleared = true;
        true
    }

    /// The alerts to hand to the notifier now: every level that fires of
    /// every open record (the identity alone for one without a policy).
    pub fn alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for r in self.records.values().filter(|r| r.is_open()) {
            let top = r.level();
            let low = if self.keep_previous { 0 } else { top };
            for l in low..=top {
                out.push(r.level_alert(l));
            }
        }
        out
    }

    /// The records, open and recently resolved.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Whether some open alert is not acknowledged yet (silences are worth
    /// reading).
    pub fn awaits_acknowledgement(&self) -> bool {
        self.records
            .values()
            .any(|r| r.is_open() && r.acknowledged.is_none())
    }

    /// When the record reaches its next level if nobody acknowledges it.
    pub fn next_level_at(&self, r: &Record) -> Option<Timestamp> {
        if !r.is_open() || r.acknowledged.is_some() || r.resolving_since.is_some() {
            return None;
        }
        let p = self
            .policies
            .iter()
            .find(|p| Some(&p.name) == r.policy.as_ref())?;
        let next = p.levels.get(r.level())?;
        Some(add(r.levels.last()?.at, next.after))
    }

    /// The open alerts `target` designates.
    pub fn select_open(&self, target: &Target) -> Vec<AlertKey> {
        self.records
            .values()
            .filter(|r| r.is_open() && r.is_target(target))
            .map(|r| r.labels.clone())
            .collect()
    }

    /// Whether some record, open or resolved, is designated by `target`.
    pub fn knows(&self, target: &Target) -> bool {
        self.records.values().any(|r| r.is_target(target))
    }

    /// The record of `key`.
    pub fn get(&self, key: &AlertKey) -> Option<&Record> {
        self.records.get(key)
    }

    /// Acknowledges the open alerts `keys` through the API. Already
    /// acknowledged ones keep their first acknowledgement. Returns those
    /// acknowledged now.
    pub fn acknowledge(
        &mut self,
        now: Timestamp,
        keys: &[AlertKey],
        by: &str,
        comment: &str,
    ) -> Vec<AlertKey> {
        let mut done = Vec::new();
        for k in keys {
            if let Some(r) = self.records.get_mut(k)
                && r.is_open()
                && r.acknowledged.is_none()
            {
                r.acknowledged = Some(Acknowledgement {
                    by: by.to_string(),
                    at: now,
                    comment: comment.to_string(),
                    via: AckVia::Api,
                    silence_id: None,
                });
                done.push(k.clone());
            }
        }
        done
    }

    /// Remembers a silence imd made for `key`; if the alert resolved in the
    /// meantime, returns false (the caller expires the silence at once).
    pub fn add_silence(&mut self, key: &AlertKey, s: OwnSilence) -> bool {
        match self.records.get_mut(key) {
            Some(r) if r.is_open() => {
                r.silences.push(s);
                true
            }
            _ => false,
        }
    }

    /// Resolves the open alerts `keys` by hand; their own silences are
    /// forgotten (the caller has expired them). Returns those resolved.
    pub fn resolve(
        &mut self,
        now: Timestamp,
        keys: &[AlertKey],
        by: &str,
        comment: &str,
    ) -> Vec<AlertKey> {
        let mut done = Vec::new();
        for k in keys {
            if let Some(r) = self.records.get_mut(k)
                && r.is_open()
            {
                r.resolved = Some(Resolution {
                    by: by.to_string(),
                    at: now,
                    comment: comment.to_string(),
                    manual: true,
                });
                r.silences.clear();
                // Cleared when the condition is gone: if it is already,
                // the next step says so.
                r.cleared = r.resolving_since.is_some();
                r.resolving_since = None;
                done.push(k.clone());
            }
        }
        done
    }
}

/// Version of the file layout; a file of another version is set aside.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    alerts: Vec<Record>,
}

/// Where the records live: `escalation-state.json` in the data directory,
/// replaced atomically, and `alert-history.jsonl`, one line per alert
/// record once it is no longer kept (for reports).
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    history: PathBuf,
}

impl StateFile {
    /// The files in `dir` (created when missing).
    pub fn in_dir(dir: &Path) -> std::io::Result<StateFile> {
        std::fs::create_dir_all(dir)?;
        Ok(StateFile {
            path: dir.join("escalation-state.json"),
            history: dir.join("alert-history.jsonl"),
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The history file's path.
    pub fn history_path(&self) -> &Path {
        &self.history
    }

    /// The saved records. A missing file is empty; a damaged one is renamed
    /// to `*.damaged`, reported and treated as empty.
    pub fn load(&self) -> Vec<Record> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot read the escalation state; starting empty");
                return Vec::new();
            }
        };
        let problem = match serde_json::from_slice::<File>(&bytes) {
            Ok(f) if f.version == VERSION => return f.alerts,
            Ok(f) => format!("version {} (expected {VERSION})", f.version),
            Err(e) => e.to_string(),
        };
        let aside = self.path.with_extension("json.damaged");
        let _ = std::fs::rename(&self.path, &aside);
        tracing::error!(path = %self.path.display(), moved_to = %aside.display(), problem = %problem, "escalation state unusable; starting empty");
        Vec::new()
    }

    /// Replaces the saved records atomically (temporary file, fsync,
    /// rename, fsync of the directory).
    pub fn save<'a>(&self, records: impl Iterator<Item = &'a Record>) -> std::io::Result<()> {
        let file = File {
            version: VERSION,
            alerts: records.cloned().collect(),
        };
        let body = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        imd_exporter::fsutil::write_atomically(&self.path, &body)
    }

    /// Appends records that are no longer kept to the history.
    pub fn append_history(&self, records: &[Record]) -> std::io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, r).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.history)?;
        f.write_all(&text)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::silences::SilenceJson;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn config(previous: PreviousLevels) -> EscalationConfig {
        let yaml = r#"
policies:
  - name: critical
    match: {severity: critical}
    levels:
      - after: 15m
        labels: {escalation: secondary, notify: sms}
      - after: 10m
        labels: {escalation: manager, severity: page}
  - name: any-disk
    match_re: {alertname: 'Disk.*'}
    levels:
      - after: 0s
        labels: {team: storage}
"#;
        let mut c: EscalationConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.previous_levels = previous;
        c
    }

    fn escalator(previous: PreviousLevels) -> Escalator {
        Escalator::new(
            &config(previous),
            Duration::from_secs(900),
            Timestamp::UNIX_EPOCH,
            Vec::new(),
        )
        .unwrap()
    }

    fn alert(name: &str, severity: &str) -> Alert {
        Alert::new(
            [
                ("alertname", name),
                ("instance", "h1"),
                ("severity", severity),
            ],
            at(-60),
        )
        .with_annotation("summary", "odd")
    }

    fn key(name: &str, severity: &str) -> AlertKey {
        alert(name, severity).labels
    }

    /// (alertname, escalation_level or "-", escalation label or "-") of
    /// what goes to the notifier.
    fn sent(e: &Escalator) -> Vec<(String, String, String)> {
        e.alerts()
            .iter()
            .map(|a| {
                let g = |k: &str| a.labels.get(k).cloned().unwrap_or_else(|| "-".into());
                (g("alertname"), g(LEVEL_LABEL), g("escalation"))
            })
            .collect()
    }

    fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    fn silence(matchers: serde_json::Value, by: &str, start: i64) -> Silence {
        let j: SilenceJson = serde_json::from_value(serde_json::json!({
            "id": format!("sil-{by}"), "status": {"state": "active"}, "matchers": matchers,
            "startsAt": at(start).to_string(), "endsAt": at(start + 3600).to_string(),
            "createdBy": by, "comment": "mine",
        }))
        .unwrap();
        Silence::compile(j).unwrap()
    }

    #[test]
    fn levels_come_one_after_the_other_and_keep_the_lower_ones_firing() {
        let mut e = escalator(PreviousLevels::Keep);
        let r = e.step(
            at(0),
            vec![alert("Load", "critical"), alert("Load", "info")],
            &[],
        );
        assert!(r.changed);
        assert_eq!(r.fired.len(), 2);
        assert_eq!(sent(&e), [s("Load", "0", "-"), s("Load", "-", "-")]);
        let a0 = &e.alerts()[0];
        assert_eq!(a0.starts_at, at(-60), "level 0 keeps the rule's startsAt");
        assert_eq!(a0.annotations["summary"], "odd");

        // Not yet: 15 minutes at level 0.
        let r = e.step(
            at(899),
            vec![alert("Load", "critical"), alert("Load", "info")],
            &[],
        );
        assert!(!r.changed && r.escalated.is_empty());
        let rec = e.get(&key("Load", "critical")).unwrap();
        assert_eq!(e.next_level_at(rec), Some(at(900)));
        let r = e.step(
            at(900),
            vec![alert("Load", "critical"), alert("Load", "info")],
            &[],
        );
        assert_eq!(
            r.escalated,
            [(key("Load", "critical"), "critical".to_string(), 1)]
        );
        assert_eq!(
            sent(&e),
            [
                s("Load", "0", "-"),
                s("Load", "1", "secondary"),
                s("Load", "-", "-")
            ]
        );
        let l1 = e.alerts()[1].clone();
        assert_eq!(l1.starts_at, at(900), "a level starts when it is reached");
        assert_eq!(l1.labels["notify"], "sms");
        assert_eq!(l1.labels["severity"], "critical");
        // The next level counts from this one: 10 more minutes.
        assert!(
            e.step(at(1499), vec![alert("Load", "critical")], &[])
                .escalated
                .is_empty()
        );
        let r = e.step(at(1500), vec![alert("Load", "critical")], &[]);
        assert_eq!(r.escalated.len(), 1);
        let top = e.alerts().pop().unwrap();
        assert_eq!(top.labels[LEVEL_LABEL], "2");
        assert_eq!(
            top.labels["severity"], "page",
            "a level may replace a label"
        );
        // No level 3: nothing more, ever.
        assert!(
            e.step(at(99_999), vec![alert("Load", "critical")], &[])
                .escalated
                .is_empty()
        );
        assert_eq!(e.get(&key("Load", "critical")).unwrap().level(), 2);
    }

    #[test]
    fn previous_levels_resolve_sends_only_the_current_level() {
        let mut e = escalator(PreviousLevels::Resolve);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        assert_eq!(sent(&e), [s("Load", "0", "-")]);
        e.step(at(900), vec![alert("Load", "critical")], &[]);
        assert_eq!(sent(&e), [s("Load", "1", "secondary")]);
    }

    #[test]
    fn zero_delays_escalate_at_once() {
        let mut e = escalator(PreviousLevels::Keep);
        let r = e.step(at(0), vec![alert("DiskFull", "info")], &[]);
        assert_eq!(r.escalated.len(), 1);
        let a = e.alerts();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].labels["team"], "storage");
    }

    #[test]
    fn a_matching_silence_acknowledges_and_stops_escalation() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        e.step(at(900), vec![alert("Load", "critical")], &[]);
        // A silence made from the level-1 alert in Alertmanager's UI.
        let sil = silence(
            serde_json::json!([
                {"name": "alertname", "value": "Load", "isRegex": false, "isEqual": true},
                {"name": "escalation_level", "value": "1", "isRegex": false, "isEqual": true}
            ]),
            "alice",
            950,
        );
        // Another alert's silence does not count; nor one not started yet.
        let other = silence(
            serde_json::json!([{"name": "alertname", "value": "Other", "isRegex": false}]),
            "bob",
            0,
        );
        let r = e.step(
            at(949),
            vec![alert("Load", "critical")],
            &[other.clone(), sil.clone()],
        );
        assert!(r.acknowledged.is_empty());
        let r = e.step(
            at(960),
            vec![alert("Load", "critical")],
            &[other, sil.clone()],
        );
        assert_eq!(r.acknowledged, [key("Load", "critical")]);
        let rec = e.get(&key("Load", "critical")).unwrap();
        let ack = rec.acknowledged.as_ref().unwrap();
        assert_eq!(
            (ack.by.as_str(), ack.at, ack.via),
            ("alice", at(950), AckVia::Silence)
        );
        assert_eq!(ack.silence_id.as_deref(), Some("sil-alice"));
        assert_eq!(rec.state(), "acknowledged");
        assert_eq!(e.next_level_at(rec), None);
        assert!(!e.awaits_acknowledgement());
        // Level 2 was due at 1500: never comes; the levels reached keep firing.
        let r = e.step(at(5000), vec![alert("Load", "critical")], &[]);
        assert!(r.escalated.is_empty());
        assert_eq!(sent(&e).len(), 2);
        // The condition clears: resolved by imd, not firing any more.
        let r = e.step(at(5001), vec![], &[sil]);
        assert_eq!(r.resolved, [key("Load", "critical")]);
        let rec = e.get(&key("Load", "critical")).unwrap();
        assert_eq!(rec.resolved.as_ref().unwrap().by, AUTO_RESOLVER);
        assert!(e.alerts().is_empty());
        // Kept for the retention, then closed.
        assert!(e.step(at(5001 + 899), vec![], &[]).closed.is_empty());
        let r = e.step(at(5001 + 900), vec![], &[]);
        assert_eq!(r.closed.len(), 1);
        assert_eq!(r.closed[0].levels.len(), 2);
        assert_eq!(e.records().count(), 0);
    }

    #[test]
    fn api_acknowledgement_with_silence_waits_for_its_expiry_before_resolving() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        let k = key("Load", "critical");
        assert_eq!(
            e.select_open(&Target::Fingerprint(fingerprint(&k))),
            std::slice::from_ref(&k)
        );
        let keys = e.select_open(&Target::Labels(
            [("instance".to_string(), "h1".to_string())].into(),
        ));
        assert_eq!(keys, std::slice::from_ref(&k));
        assert_eq!(
            e.acknowledge(at(10), &keys, "bob", "on it"),
            std::slice::from_ref(&k)
        );
        // A second acknowledgement keeps the first.
        assert!(e.acknowledge(at(11), &keys, "carol", "").is_empty());
        assert!(e.add_silence(
            &k,
            OwnSilence {
                alertmanager: "am".into(),
                id: "x1".into()
            }
        ));
        assert!(
            e.step(at(2000), vec![alert("Load", "critical")], &[])
                .escalated
                .is_empty()
        );
        // Cleared: still firing until imd's silence is expired.
        let r = e.step(at(2001), vec![], &[]);
        assert_eq!(
            r.unsilence,
            [(
                k.clone(),
                vec![OwnSilence {
                    alertmanager: "am".into(),
                    id: "x1".into()
                }]
            )]
        );
        assert!(r.resolved.is_empty());
        assert_eq!(e.alerts().len(), 1);
        assert!(!e.unsilenced(at(2002), &k, false), "failed expiry: not yet");
        assert_eq!(e.alerts().len(), 1);
        assert!(e.unsilenced(at(2003), &k, true));
        assert!(e.alerts().is_empty());
        let rec = e.get(&k).unwrap();
        assert!(rec.silences.is_empty());
        assert_eq!(rec.acknowledged.as_ref().unwrap().by, "bob");
        assert_eq!(rec.acknowledged.as_ref().unwrap().via, AckVia::Api);
    }

    #[test]
    fn failing_silence_expiry_gives_up_after_the_deadline() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        let k = key("Load", "critical");
        e.acknowledge(at(1), std::slice::from_ref(&k), "bob", "");
        e.add_silence(
            &k,
            OwnSilence {
                alertmanager: "am".into(),
                id: "x".into(),
            },
        );
        e.step(at(10), vec![], &[]);
        assert!(!e.unsilenced(at(10 + 299), &k, false));
        assert!(e.unsilenced(at(10 + 300), &k, false));
        assert!(e.alerts().is_empty());
    }

    #[test]
    fn condition_back_while_unsilencing_cancels_the_resolution() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        let k = key("Load", "critical");
        e.acknowledge(at(1), std::slice::from_ref(&k), "bob", "");
        e.add_silence(
            &k,
            OwnSilence {
                alertmanager: "am".into(),
                id: "x".into(),
            },
        );
        e.step(at(10), vec![], &[]);
        e.step(at(20), vec![alert("Load", "critical")], &[]);
        assert!(!e.unsilenced(at(21), &k, true), "no longer resolving");
        assert!(e.get(&k).unwrap().is_open());
    }

    #[test]
    fn manual_resolution_holds_until_the_condition_clears() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        let k = key("Load", "critical");
        assert_eq!(
            e.resolve(at(5), std::slice::from_ref(&k), "dave", "fixed"),
            std::slice::from_ref(&k)
        );
        let rec = e.get(&k).unwrap();
        let res = rec.resolved.as_ref().unwrap();
        assert_eq!((res.by.as_str(), res.at, res.manual), ("dave", at(5), true));
        // The rules still produce it: it stays resolved, nothing is sent,
        // nothing escalates.
        let r = e.step(at(2000), vec![alert("Load", "critical")], &[]);
        assert!(r.fired.is_empty() && r.escalated.is_empty());
        assert!(e.alerts().is_empty());
        // It clears (and, resolved more than the retention ago, is
        // closed), then fires again: a new alert at level 0.
        let r = e.step(at(2001), vec![], &[]);
        assert_eq!(r.closed.len(), 1);
        assert_eq!(r.closed[0].resolved.as_ref().unwrap().by, "dave");
        let r = e.step(at(2002), vec![alert("Load", "critical")], &[]);
        assert_eq!(r.fired.len(), 1);
        assert_eq!(e.get(&k).unwrap().first_fired(), at(2002));
        assert_eq!(sent(&e), [s("Load", "0", "-")]);
    }

    #[test]
    fn restored_records_resume_at_their_level_and_wait_for_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(&dir.path().join("data")).unwrap();
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        e.step(at(900), vec![alert("Load", "critical")], &[]);
        file.save(e.records()).unwrap();

        // Restarted at 1000 with 60 s of grace.
        let mut e2 = Escalator::new(
            &config(PreviousLevels::Keep),
            Duration::from_secs(900),
            at(1060),
            file.load(),
        )
        .unwrap();
        assert_eq!(sent(&e2), sent(&e), "the same label sets, nothing new");
        assert_eq!(e2.alerts(), e.alerts(), "same startsAt too");
        // The rules have not produced it yet: kept firing during the grace.
        let r = e2.step(at(1000), vec![], &[]);
        assert!(r.resolved.is_empty() && r.fired.is_empty() && r.escalated.is_empty());
        assert_eq!(e2.alerts().len(), 2);
        // Level 2 still comes at 900 + 10 min, and only once.
        let r = e2.step(at(1500), vec![alert("Load", "critical")], &[]);
        assert_eq!(r.escalated.len(), 1);
        assert!(
            e2.step(at(1501), vec![alert("Load", "critical")], &[])
                .escalated
                .is_empty()
        );
        // A record that is not confirmed resolves when the grace is over.
        let mut e3 = Escalator::new(
            &config(PreviousLevels::Keep),
            Duration::from_secs(900),
            at(1060),
            file.load(),
        )
        .unwrap();
        assert!(e3.step(at(1059), vec![], &[]).resolved.is_empty());
        assert_eq!(e3.step(at(1060), vec![], &[]).resolved.len(), 1);
    }

    #[test]
    fn the_state_file_is_replaced_atomically_and_damage_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path()).unwrap();
        assert!(file.load().is_empty());
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        file.save(e.records()).unwrap();
        assert!(!dir.path().join("escalation-state.json.tmp").exists());
        let back = file.load();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].labels, key("Load", "critical"));
        std::fs::write(file.path(), b"{\"version\":1,\"alerts\":[{").unwrap();
        assert!(file.load().is_empty());
        assert!(dir.path().join("escalation-state.json.damaged").exists());
        assert!(!file.path().exists());
        file.append_history(&back).unwrap();
        file.append_history(&back).unwrap();
        let text = std::fs::read_to_string(file.history_path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        let r: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(r, back[0]);
    }

    #[test]
    fn a_reload_changes_the_next_levels_but_not_the_levels_reached() {
        let mut e = escalator(PreviousLevels::Keep);
        e.step(at(0), vec![alert("Load", "critical")], &[]);
        e.step(at(900), vec![alert("Load", "critical")], &[]);
        let mut c = config(PreviousLevels::Resolve);
        c.policies[0].levels[1].after = Duration::from_secs(60);
        c.policies[0].levels[0]
            .labels
            .insert("escalation".into(), "renamed".into());
        e.reconfigure(&c, Duration::from_secs(60)).unwrap();
        let k = key("Load", "critical");
        assert_eq!(e.next_level_at(e.get(&k).unwrap()), Some(at(960)));
        // Only the current level now; it keeps the labels it was reached with.
        assert_eq!(sent(&e), [s("Load", "1", "secondary")]);
        let mut bad = c.clone();
        bad.policies[0].levels.clear();
        assert!(e.reconfigure(&bad, Duration::from_secs(60)).is_err());
        assert_eq!(
            sent(&e),
            [s("Load", "1", "secondary")],
            "a refused reload changes nothing"
        );
    }

    #[test]
    fn configuration_mistakes_name_their_key() {
        let bad = |yaml: &str| {
            let c: EscalationConfig = serde_yaml_ng::from_str(yaml).unwrap();
            c.check().unwrap_err()
        };
        let (k, m) = bad("policies:\n  - name: p\n    levels: []\n");
        assert_eq!(k, ".policies[0].levels");
        assert!(m.contains("at least one"), "{m}");
        let (k, _) =
            bad("policies:\n  - name: p\n    match_re: {a: '('}\n    levels: [{after: 1m}]\n");
        assert_eq!(k, ".policies[0].match_re.a");
        let (k, _) = bad(
            "policies:\n  - name: p\n    levels: [{after: 1m, labels: {escalation_level: '9'}}]\n",
        );
        assert_eq!(k, ".policies[0].levels[0].labels.escalation_level");
        let (k, _) = bad(
            "policies:\n  - {name: p, levels: [{after: 1m}]}\n  - {name: p, levels: [{after: 1m}]}\n",
        );
        assert_eq!(k, ".policies[1].name");
        let (k, _) = bad("policies:\n  - {name: p, match: {a-b: c}, levels: [{after: 1m}]}\n");
        assert_eq!(k, ".policies[0].match.a-b");
        let (k, _) = bad("silence_poll_interval: 0s\n");
        assert_eq!(k, ".silence_poll_interval");
        assert!(serde_yaml_ng::from_str::<EscalationConfig>("polices: []\n").is_err());
        let d: EscalationConfig = serde_yaml_ng::from_str("{}").unwrap();
        assert_eq!(d, EscalationConfig::default());
    }
}
