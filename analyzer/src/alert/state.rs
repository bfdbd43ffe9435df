//! What to send when: the notifier's memory of every alert it has seen.
//!
//! Pure bookkeeping driven by the caller's clock, so it is tested without
//! threads or sleeps. Follows Prometheus' rules: a new alert is sent at once,
//! a firing one again every `resend_delay` with `endsAt` = now +
//! `resolve_timeout`; an alert that leaves the firing set is sent at once
//! with `endsAt` = the time it resolved, and again at each resend until
//! `retention` has passed, after which it is forgotten.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::{Alert, AlertKey, valid_label_name};

/// Settings of the alert bookkeeping.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// How often a still-firing or recently resolved alert is sent again.
    pub resend_delay: Duration,
    /// How far ahead of now a firing alert's `endsAt` is set.
    pub resolve_timeout: Duration,
    /// How long a resolved alert is kept (and re-sent) after it resolved.
    pub retention: Duration,
    /// Labels added to every alert that does not have them already.
    pub external_labels: BTreeMap<String, String>,
}

/// What one [`AlertState::sync`] decided.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// Alerts to post now, `endsAt` set.
    pub send: Vec<Alert>,
    /// Resolved alerts past their retention, no longer tracked.
    pub forgotten: Vec<AlertKey>,
    /// Input alerts that were refused, with the reason.
    pub rejected: Vec<(AlertKey, String)>,
}

#[derive(Debug)]
struct Entry {
    /// The alert as last given (ends_at unset), with its first `startsAt`.
    alert: Alert,
    resolved_at: Option<Timestamp>,
    last_sent: Option<Timestamp>,
    /// Whether the resolved state has been sent.
    sent_resolved: bool,
}

/// Every alert currently firing or recently resolved, keyed by label set.
#[derive(Debug)]
pub struct AlertState {
    config: StateConfig,
    entries: BTreeMap<AlertKey, Entry>,
}

impl AlertState {
    /// An empty state.
    pub fn new(config: StateConfig) -> AlertState {
        AlertState {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// Takes the set of alerts firing at `now` and returns what to send.
    pub fn sync(&mut self, now: Timestamp, firing: Vec<Alert>) -> SyncOutcome {
        let mut out = SyncOutcome::default();
        let mut seen: BTreeMap<AlertKey, Alert> = BTreeMap::new();
        for a in firing {
            match self.normalise(a) {
                Ok(a) => {
                    // The same label set twice in one call: the last wins.
                    seen.insert(a.labels.clone(), a);
                }
                Err((key, why)) => out.rejected.push((key, why)),
            }
        }

        // Firing alerts: new ones (or ones firing again after resolving)
        // start a new entry; known ones keep their startsAt.
        for (key, mut a) in seen.iter().map(|(k, a)| (k.clone(), a.clone())) {
            a.ends_at = None;
            match self.entries.get_mut(&key) {
                Some(e) if e.resolved_at.is_none() => {
                    e.alert.annotations = a.annotations;
                    e.alert.generator_url = a.generator_url;
                }
                _ => {
                    a.starts_at = a.starts_at.min(now);
                    self.entries.insert(
                        key,
                        Entry {
                            alert: a,
                            resolved_at: None,
                            last_sent: None,
                            sent_resolved: false,
                        },
                    );
                }
            }
        }

        // Alerts that left the set resolve now.
        for (key, e) in self.entries.iter_mut() {
            if e.resolved_at.is_none() && !seen.contains_key(key) {
                e.resolved_at = Some(now);
            }
        }

        // Forget resolved alerts past their retention.
        let retention = self.config.retention;
        let expired: Vec<AlertKey> = self
            .entries
            .iter()
            .filter(|(_, e)| e.resolved_at.is_some_and(|r| add(r, retention) <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.entries.remove(k);
        }
        out.forgotten = expired;

        let resend = self.config.resend_delay;
        let horizon = self.config.resolve_timeout;
        for e in self.entries.values_mut() {
            let due = match e.last_sent {
                None => true,
                // Resolved since the last send: tell at once.
                Some(_) if e.resolved_at.is_some() && !e.sent_resolved => true,
                Some(sent) => add(sent, resend) <= now,
            };
            if !due {
                continue;
            }
            let mut a = e.alert.clone();
            a.ends_at = Some(match e.resolved_at {
                // Alertmanager refuses an end before the start.
                Some(r) => r.max(a.starts_at),
                None => add(now, horizon),
            });
            e.last_sent = Some(now);
            e.sent_resolved = e.resolved_at.is_some();
            out.send.push(a);
        }
        out
    }

    /// Number of alerts firing.
    pub fn firing(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.resolved_at.is_none())
            .count()
    }

    /// The alerts known: firing ones without `endsAt`, resolved ones (still
    /// kept) with `endsAt` = when they resolved.
    pub fn alerts(&self) -> Vec<Alert> {
        self.entries
            .values()
            .map(|e| {
                let mut a = e.alert.clone();
                a.ends_at = e.resolved_at.map(|r| r.max(a.starts_at));
                a
            })
            .collect()
    }

    /// Drops labels with empty values (absent, as in Prometheus), adds the
    /// external labels, and checks what Alertmanager would refuse.
    fn normalise(&self, mut a: Alert) -> Result<Alert, (AlertKey, String)> {
        a.labels.retain(|_, v| !v.is_empty());
        for (k, v) in &self.config.external_labels {
            if !v.is_empty() {
                a.labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if a.labels.is_empty() {
            return Err((a.labels, "an alert needs at least one label".into()));
        }
        if let Some(bad) = a.labels.keys().find(|k| !valid_label_name(k)) {
            let why = format!("invalid label name {bad:?}");
            return Err((a.labels, why));
        }
        if let Some(bad) = a.annotations.keys().find(|k| !valid_label_name(k)) {
            let why = format!("invalid annotation name {bad:?}");
            return Err((a.labels, why));
        }
        Ok(a)
    }
}

/// `t + d`, saturating at the largest timestamp.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AlertState {
        AlertState::new(StateConfig {
            resend_delay: Duration::from_secs(60),
            resolve_timeout: Duration::from_secs(240),
            retention: Duration::from_secs(900),
            external_labels: [("site".to_string(), "a".to_string())].into(),
        })
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn alert(name: &str, start: i64) -> Alert {
        Alert::new([("alertname", name)], at(start)).with_annotation("score", "0.99")
    }

    fn names(o: &SyncOutcome) -> Vec<String> {
        o.send
            .iter()
            .map(|a| a.labels["alertname"].clone())
            .collect()
    }

    #[test]
    fn new_alert_is_sent_at_once_then_every_resend_delay() {
        let mut s = state();
        let o = s.sync(at(0), vec![alert("A", -30)]);
        assert_eq!(names(&o), ["A"]);
        let a = &o.send[0];
        assert_eq!(a.starts_at, at(-30));
        assert_eq!(a.ends_at, Some(at(240)));
        assert_eq!(a.labels["site"], "a", "external label added");
        assert_eq!(s.firing(), 1);

        // Within the resend delay: nothing, even with new annotations and a
        // later startsAt from the caller.
        let mut later = alert("A", 20).with_annotation("score", "0.999");
        later.ends_at = Some(at(1));
        assert!(s.sync(at(20), vec![later.clone()]).send.is_empty());
        assert!(s.sync(at(59), vec![later.clone()]).send.is_empty());
        let o = s.sync(at(60), vec![later]);
        assert_eq!(names(&o), ["A"]);
        assert_eq!(o.send[0].starts_at, at(-30), "original startsAt kept");
        assert_eq!(o.send[0].ends_at, Some(at(300)));
        assert_eq!(o.send[0].annotations["score"], "0.999");
    }

    #[test]
    fn resolved_alert_is_sent_at_once_resent_then_forgotten() {
        let mut s = state();
        s.sync(at(0), vec![alert("A", 0), alert("B", 0)]);
        let o = s.sync(at(10), vec![alert("B", 0)]);
        assert_eq!(names(&o), ["A"]);
        assert_eq!(o.send[0].ends_at, Some(at(10)));
        assert_eq!(s.firing(), 1);
        let known = s.alerts();
        assert_eq!(known.len(), 2);
        assert_eq!(known[0].ends_at, Some(at(10)));
        assert_eq!(known[1].ends_at, None);

        // Resent with the same endsAt at each resend delay, B too.
        let o = s.sync(at(70), vec![alert("B", 0)]);
        assert_eq!(names(&o), ["A", "B"]);
        assert_eq!(o.send[0].ends_at, Some(at(10)));
        // Forgotten once the retention has passed since it resolved.
        let o = s.sync(at(10 + 900), vec![alert("B", 0)]);
        assert_eq!(o.forgotten.len(), 1);
        assert_eq!(o.forgotten[0]["alertname"], "A");
        assert_eq!(names(&o), ["B"]);
        assert_eq!(s.alerts().len(), 1);
    }

    #[test]
    fn firing_again_after_resolving_is_a_new_alert() {
        let mut s = state();
        s.sync(at(0), vec![alert("A", 0)]);
        s.sync(at(10), vec![]);
        let o = s.sync(at(20), vec![alert("A", 15)]);
        assert_eq!(names(&o), ["A"]);
        assert_eq!(o.send[0].starts_at, at(15));
        assert_eq!(o.send[0].ends_at, Some(at(260)));
    }

    #[test]
    fn resolved_end_is_never_before_start_and_future_start_is_clamped() {
        let mut s = state();
        let o = s.sync(at(0), vec![alert("A", 100)]);
        assert_eq!(o.send[0].starts_at, at(0));
        let o = s.sync(at(0), vec![]);
        assert_eq!(o.send[0].ends_at, Some(at(0)));
    }

    #[test]
    fn bad_alerts_are_rejected_with_a_reason() {
        let mut s = AlertState::new(StateConfig {
            external_labels: BTreeMap::new(),
            ..state().config
        });
        let empty = Alert::new([("job", "")], at(0));
        let bad_name = Alert::new([("bad-name", "x")], at(0));
        let bad_ann = alert("A", 0).with_annotation("no good", "x");
        let o = s.sync(at(0), vec![empty, bad_name, bad_ann, alert("B", 0)]);
        assert_eq!(names(&o), ["B"]);
        let reasons: Vec<&str> = o.rejected.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "an alert needs at least one label",
                "invalid label name \"bad-name\"",
                "invalid annotation name \"no good\""
            ]
        );
    }

    #[test]
    fn duplicate_label_sets_collapse() {
        let mut s = state();
        let o = s.sync(
            at(0),
            vec![alert("A", 0), alert("A", 0).with_annotation("score", "1")],
        );
        assert_eq!(o.send.len(), 1);
        assert_eq!(o.send[0].annotations["score"], "1");
    }
}
