//! Alerting: sends imd's alerts to one or more Alertmanagers through their
//! API v2, the way Prometheus' notifier does.
//!
//! The engine calls [`Notifier::sync`] once per cycle with the alerts that
//! are firing at that moment. The notifier remembers each alert (by its
//! label set) with its original `startsAt`, posts new ones at once, re-posts
//! firing ones every `resend_delay` with an `endsAt` a few intervals ahead
//! (so that Alertmanager resolves them by itself if imd dies), and posts an
//! alert that left the firing set with `endsAt` = the time it resolved,
//! again at each resend while it is kept (15 minutes by default).
//!
//! Sending happens on a background thread: every Alertmanager has its own
//! bounded queue, retried with exponential backoff and jitter, so a slow or
//! dead Alertmanager neither blocks the engine nor its peers, and receives
//! the latest state of every queued alert once it is back.
//!
//! Files: [`state`] decides what to send when, [`queue`] holds what an
//! Alertmanager has not received yet, [`alertmanager`] speaks HTTP to one
//! Alertmanager, [`notifier`] runs them, [`metrics`] counts their work.

pub mod alertmanager;
pub mod escalation;
pub mod lifecycle;
pub mod metrics;
pub mod notifier;
pub mod queue;
pub mod rules;
pub mod silences;
pub mod sms;
pub mod state;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::http::{BasicAuth, HttpOptions, TlsOptions};
pub use alertmanager::AlertmanagerConfig;
pub use metrics::NotifierMetrics;
pub use notifier::{Notifier, NotifierConfig};

/// One alert as Alertmanager's API v2 takes it (`POST /api/v2/alerts`) and
/// returns it (`GET /api/v2/alerts`; extra fields are ignored).
///
/// An alert is identified by its label set. Times are RFC 3339 on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Identifying labels (`alertname`, the series' labels, ...).
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    #[serde(with = "rfc3339")]
    pub starts_at: Timestamp,
    /// When the alert ends: in the future for a firing alert, in the past
    /// for a resolved one. The notifier sets it; input values are ignored.
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// A link back to what produced the alert (imd's page for the series).
    #[serde(
        rename = "generatorURL",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub generator_url: String,
}

impl Alert {
    /// An alert with these labels, starting at `starts_at`, with no
    /// annotations and no generator URL.
    pub fn new<K, V>(labels: impl IntoIterator<Item = (K, V)>, starts_at: Timestamp) -> Alert
    where
        K: Into<String>,
        V: Into<String>,
    {
        Alert {
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at,
            ends_at: None,
            generator_url: String::new(),
        }
    }

    /// Adds (or replaces) one annotation.
    pub fn with_annotation(mut self, name: impl Into<String>, value: impl Into<String>) -> Alert {
        self.annotations.insert(name.into(), value.into());
        self
    }

    /// Sets the generator URL.
    pub fn with_generator_url(mut self, url: impl Into<String>) -> Alert {
        self.generator_url = url.into();
        self
    }

    /// Whether the alert is resolved at `now` (its `endsAt` is not after it).
    pub fn is_resolved_at(&self, now: Timestamp) -> bool {
        self.ends_at.is_some_and(|e| e <= now)
    }
}

/// Label set identifying an alert.
pub type AlertKey = BTreeMap<String, String>;

/// Errors building a notifier. Configuration errors name the key, as in
/// `alertmanagers[1].tls_config.ca_file`.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A configuration value is wrong.
    #[error("{key}: {message}")]
    Config {
        /// Path of the offending key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("{key}: building the HTTP client: {source}")]
    Client {
        /// Path of the Alertmanager entry.
        key: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The sender thread could not be started.
    #[error("starting the notification sender: {0}")]
    Runtime(#[from] std::io::Error),
}

impl AlertError {
    /// A configuration error at `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> AlertError {
        AlertError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Whether `name` is a valid label or annotation name for Alertmanager
/// (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 3339 (de)serialisation of a timestamp.
mod rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {text:?}: {e}")))
    }
}

/// RFC 3339 (de)serialisation of an optional timestamp.
mod rfc3339_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {text:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_serialises_as_api_v2_json() {
        let start: Timestamp = "2024-05-01T10:00:00Z".parse().unwrap();
        let mut a = Alert::new([("alertname", "HighScore"), ("instance", "h:9100")], start)
            .with_annotation("summary", "odd")
            .with_generator_url("http://imd/series?id=1");
        a.ends_at = Some("2024-05-01T10:04:00.5Z".parse().unwrap());
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "labels": {"alertname": "HighScore", "instance": "h:9100"},
                "annotations": {"summary": "odd"},
                "startsAt": "2024-05-01T10:00:00Z",
                "endsAt": "2024-05-01T10:04:00.5Z",
                "generatorURL": "http://imd/series?id=1",
            })
        );
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn alertmanager_answers_decode() {
        // Shape of one element of Alertmanager 0.25's GET /api/v2/alerts.
        let text = r#"{"annotations":{},"endsAt":"2024-05-01T10:04:00.000Z",
            "fingerprint":"3c1f","receivers":[{"name":"web"}],"startsAt":"2024-05-01T10:00:00.000Z",
            "status":{"inhibitedBy":[],"silencedBy":[],"state":"active"},
            "updatedAt":"2024-05-01T10:00:01.000Z","generatorURL":"","labels":{"alertname":"A"}}"#;
        let a: Alert = serde_json::from_str(text).unwrap();
        assert_eq!(a.labels["alertname"], "A");
        assert!(a.is_resolved_at("2024-05-01T10:04:00Z".parse().unwrap()));
        assert!(!a.is_resolved_at("2024-05-01T10:03:59Z".parse().unwrap()));
        let bad = r#"{"labels":{},"startsAt":"yesterday"}"#;
        let err = serde_json::from_str::<Alert>(bad).unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
    }

    #[test]
    fn label_names() {
        assert!(valid_label_name("alertname"));
        assert!(valid_label_name("_x9"));
        assert!(!valid_label_name(""));
        assert!(!valid_label_name("9x"));
        assert!(!valid_label_name("a-b"));
        assert!(!valid_label_name("é"));
    }
}
