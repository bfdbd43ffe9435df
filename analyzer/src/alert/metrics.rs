//! The notifier's metrics about its own work, named like Prometheus'
//! `prometheus_notifications_*` with imd's prefix.

use std::sync::Mutex;

use imd_exporter::exposition::{Family, MetricType};

/// Running totals of the notifier, shared by the engine side and the sender.
#[derive(Debug, Default)]
pub struct NotifierMetrics {
    inner: Mutex<Totals>,
}

#[derive(Debug, Default)]
struct Totals {
    /// One per Alertmanager, in configuration order.
    per_am: Vec<PerAm>,
    dropped: u64,
    active: usize,
}

#[derive(Debug, Default, Clone)]
struct PerAm {
    endpoint: String,
    sent: u64,
    errors: u64,
    latency_sum: f64,
    latency_count: u64,
    queue_length: usize,
    queue_capacity: usize,
}

impl NotifierMetrics {
    /// Metrics for these Alertmanager endpoints, each with a queue of
    /// `capacity` alerts.
    pub fn new(endpoints: &[String], capacity: usize) -> NotifierMetrics {
        let per_am = endpoints
            .iter()
            .map(|e| PerAm {
                endpoint: e.clone(),
                queue_capacity: capacity,
                ..PerAm::default()
            })
            .collect();
        NotifierMetrics {
            inner: Mutex::new(Totals {
                per_am,
                ..Totals::default()
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Totals) -> R) -> R {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut t)
    }

    fn with_am(&self, am: usize, f: impl FnOnce(&mut PerAm)) {
        self.with(|t| {
            if let Some(p) = t.per_am.get_mut(am) {
                f(p)
            }
        })
    }

    /// `alerts` alerts were delivered to Alertmanager `am` by one request
    /// that took `seconds`.
    pub fn sent(&self, am: usize, alerts: usize, seconds: f64) {
        self.with_am(am, |p| {
            p.sent += alerts as u64;
            p.latency_sum += seconds;
            p.latency_count += 1;
        })
    }

    /// A request carrying `alerts` alerts to Alertmanager `am` failed after
    /// `seconds`.
    pub fn failed(&self, am: usize, alerts: usize, seconds: f64) {
        self.with_am(am, |p| {
            p.errors += alerts as u64;
            p.latency_sum += seconds;
            p.latency_count += 1;
        })
    }

    /// `n` alerts were dropped from a full queue.
    pub fn dropped(&self, n: usize) {
        self.with(|t| t.dropped += n as u64)
    }

    /// The queue of Alertmanager `am` now holds `len` alerts.
    pub fn queue_length(&self, am: usize, len: usize) {
        self.with_am(am, |p| p.queue_length = len)
    }

    /// `n` alerts are firing.
    pub fn active(&self, n: usize) {
        self.with(|t| t.active = n)
    }

    /// Alerts delivered to Alertmanager `am` so far.
    pub fn sent_total(&self, am: usize) -> u64 {
        self.with(|t| t.per_am.get(am).map_or(0, |p| p.sent))
    }

    /// Alerts whose delivery to Alertmanager `am` failed so far (an alert
    /// counts once per failed attempt).
    pub fn errors_total(&self, am: usize) -> u64 {
        self.with(|t| t.per_am.get(am).map_or(0, |p| p.errors))
    }

    /// Alerts dropped from full queues so far.
    pub fn dropped_total(&self) -> u64 {
        self.with(|t| t.dropped)
    }

    /// Alerts waiting in the queue of Alertmanager `am`.
    pub fn queued(&self, am: usize) -> usize {
        self.with(|t| t.per_am.get(am).map_or(0, |p| p.queue_length))
    }

    /// The metrics as families.
    pub fn families(&self) -> Vec<Family> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let am = |p: &PerAm| [("alertmanager", p.endpoint.clone())];
        let mut sent = Family::counter(
            "imd_notifications_sent_total",
            "Alerts delivered to each Alertmanager.",
        );
        let mut errors = Family::counter(
            "imd_notifications_errors_total",
            "Alerts whose delivery to each Alertmanager failed (once per failed attempt).",
        );
        let mut latency = Family::new(
            "imd_notifications_latency_seconds",
            "Duration of the requests posting alerts to each Alertmanager.",
            MetricType::Summary,
        );
        let mut queue = Family::gauge(
            "imd_notifications_queue_length",
            "Alerts waiting to be sent to each Alertmanager.",
        );
        let mut capacity = Family::gauge(
            "imd_notifications_queue_capacity",
            "The most alerts the queue of each Alertmanager holds.",
        );
        for p in &t.per_am {
            sent.push(am(p), p.sent as f64);
            errors.push(am(p), p.errors as f64);
            latency.push_named(
                "imd_notifications_latency_seconds_sum",
                am(p),
                p.latency_sum,
            );
            latency.push_named(
                "imd_notifications_latency_seconds_count",
                am(p),
                p.latency_count as f64,
            );
            queue.push(am(p), p.queue_length as f64);
            capacity.push(am(p), p.queue_capacity as f64);
        }
        let mut dropped = Family::counter(
            "imd_notifications_dropped_total",
            "Alerts dropped because a queue was full.",
        );
        dropped.push_value(t.dropped as f64);
        let mut ams = Family::gauge(
            "imd_notifications_alertmanagers",
            "Alertmanagers alerts are sent to.",
        );
        ams.push_value(t.per_am.len() as f64);
        let mut active = Family::gauge("imd_alerts_active", "Alerts firing.");
        active.push_value(t.active as f64);
        vec![sent, errors, dropped, queue, capacity, latency, ams, active]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imd_exporter::exposition::{Format, encode};

    #[test]
    fn families_carry_the_alertmanager_label() {
        let m = NotifierMetrics::new(
            &[
                "http://a/api/v2/alerts".into(),
                "http://b/api/v2/alerts".into(),
            ],
            5,
        );
        m.sent(0, 3, 0.25);
        m.failed(1, 2, 0.5);
        m.failed(1, 2, 0.5);
        m.dropped(4);
        m.queue_length(1, 2);
        m.active(7);
        m.sent(9, 1, 1.0); // unknown index: ignored
        assert_eq!(
            (
                m.sent_total(0),
                m.errors_total(1),
                m.dropped_total(),
                m.queued(1)
            ),
            (3, 4, 4, 2)
        );
        let text = encode(&m.families(), Format::Text);
        for line in [
            "imd_notifications_sent_total{alertmanager=\"http://a/api/v2/alerts\"} 3",
            "imd_notifications_errors_total{alertmanager=\"http://b/api/v2/alerts\"} 4",
            "imd_notifications_dropped_total 4",
            "imd_notifications_queue_length{alertmanager=\"http://b/api/v2/alerts\"} 2",
            "imd_notifications_queue_capacity{alertmanager=\"http://a/api/v2/alerts\"} 5",
            "imd_notifications_latency_seconds_sum{alertmanager=\"http://b/api/v2/alerts\"} 1",
            "imd_notifications_latency_seconds_count{alertmanager=\"http://b/api/v2/alerts\"} 2",
            "imd_notifications_alertmanagers 2",
            "imd_alerts_active 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
