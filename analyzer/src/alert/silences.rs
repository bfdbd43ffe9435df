//! Alertmanager silences as acknowledgements: listing them
//! (`GET /api/v2/silences`), creating one when an alert is acknowledged
//! through imd (`POST /api/v2/silences`), expiring it again
//! (`DELETE /api/v2/silence/{id}`), and deciding whether a silence covers
//! a label set the way Alertmanager does.

use std::collections::BTreeMap;

use jiff::Timestamp;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::alertmanager::{AlertmanagerConfig, api_base};
use super::{AlertError, AlertKey};
use crate::http::{ClientSettings, Credentials, error_chain};

/// One matcher of a silence as Alertmanager's API v2 writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceMatcher {
    /// Label name.
    pub name: String,
    /// Value or regular expression.
    pub value: String,
    /// Whether `value` is a regular expression (anchored at both ends).
    #[serde(default)]
    pub is_regex: bool,
    /// `false` for `!=` and `!~`; absent in Alertmanager before 0.22,
    /// which had only positive matchers.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence as `GET /api/v2/silences` returns it (fields imd needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceJson {
    /// Alertmanager's id of the silence.
    pub id: String,
    /// What it matches.
    pub matchers: Vec<SilenceMatcher>,
    /// Start of the silence.
    #[serde(with = "super::rfc3339")]
    pub starts_at: Timestamp,
    /// End of the silence.
    #[serde(with = "super::rfc3339")]
    pub ends_at: Timestamp,
    /// Who made it.
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
    /// `{state: active|pending|expired}`.
    #[serde(default)]
    pub status: SilenceStatus,
}

/// The state of a silence.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SilenceStatus {
    /// `active`, `pending` or `expired`.
    #[serde(default)]
    pub state: String,
}

/// A silence with its matchers compiled, ready to test label sets.
#[derive(Debug, Clone)]
pub struct Silence {
    /// Alertmanager's id of the silence.
    pub id: String,
    /// Start of the silence.
    pub starts_at: Timestamp,
    /// End of the silence.
    pub ends_at: Timestamp,
    /// Who made it (`createdBy`).
    pub created_by: String,
    /// Why (`comment`).
    pub comment: String,
    matchers: Vec<Compiled>,
}

#[derive(Debug, Clone)]
struct Compiled {
    name: String,
    equal: bool,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Value(String),
    Regex(Regex),
}

impl Silence {
    /// Compiles a silence from the API. `None` when it has expired or one
    /// of its regular expressions does not compile here (Go's RE2 and
    /// Rust's `regex` agree on nearly everything; a silence imd cannot read
    /// is better ignored than taken to match everything).
    pub fn compile(s: SilenceJson) -> Option<Silence> {
        if s.status.state == "expired" {
            return None;
        }
        let mut matchers = Vec::with_capacity(s.matchers.len());
        for m in &s.matchers {
            let test = if m.is_regex {
                match Regex::new(&format!("^(?:{})$", m.value)) {
                    Ok(r) => Test::Regex(r),
                    Err(e) => {
                        tracing::warn!(silence = %s.id, matcher = %m.name, error = %e, "ignoring a silence whose regular expression does not compile");
                        return None;
                    }
                }
            } else {
                Test::Value(m.value.clone())
            };
            matchers.push(Compiled {
                name: m.name.clone(),
                equal: m.is_equal,
                test,
            });
        }
        Some(Silence {
            id: s.id,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            created_by: s.created_by,
            comment: s.comment,
            matchers,
        })
    }

    /// Whether the silence is in force at `now`.
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether every matcher accepts `labels`; a missing label reads as
    /// the empty string, as in Alertmanager. A silence without matchers
    /// matches nothing (Alertmanager refuses to create one).
    pub fn matches(&self, labels: &AlertKey) -> bool {
        !self.matchers.is_empty()
            && self.matchers.iter().all(|m| {
                let v = labels.get(&m.name).map(String::as_str).unwrap_or("");
                let hit = match &m.test {
                    Test::Value(x) => v == x,
                    Test::Regex(r) => r.is_match(v),
                };
                hit == m.equal
            })
    }
}

/// What a new silence says.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSilence {
    /// Equality matchers, one per label.
    pub matchers: Vec<SilenceMatcher>,
    /// Start.
    #[serde(with = "super::rfc3339")]
    pub starts_at: Timestamp,
    /// End.
    #[serde(with = "super::rfc3339")]
    pub ends_at: Timestamp,
    /// Who acknowledged.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl NewSilence {
    /// A silence matching exactly these labels (so every escalation level
    /// of the alert, which only adds labels) from `start` to `end`.
    pub fn for_labels(
        labels: &AlertKey,
        start: Timestamp,
        end: Timestamp,
        by: &str,
        comment: &str,
    ) -> NewSilence {
        NewSilence {
            matchers: labels
                .iter()
                .map(|(k, v)| SilenceMatcher {
                    name: k.clone(),
                    value: v.clone(),
                    is_regex: false,
                    is_equal: true,
                })
                .collect(),
            starts_at: start,
            ends_at: end,
            created_by: by.to_string(),
            comment: comment.to_string(),
        }
    }
}

/// The silences API of one Alertmanager.
#[derive(Debug, Clone)]
pub struct SilenceClient {
    base: reqwest::Url,
    client: reqwest::Client,
    settings: ClientSettings,
}

impl SilenceClient {
    /// A client for the Alertmanager `config` (found at `key` in the
    /// configuration, for error messages).
    pub fn new(config: &AlertmanagerConfig, key: &str) -> Result<SilenceClient, AlertError> {
        let base = api_base(&config.url, &config.path_prefix)
            .map_err(|m| AlertError::config(format!("{key}.url"), m))?;
        let (settings, client) = super::alertmanager::http_client(config, key)?;
        Ok(SilenceClient {
            base,
            client,
            settings,
        })
    }

    /// The API base, `<url><path_prefix>/api/v2`; also the `alertmanager`
    /// label of the metrics and the name of the Alertmanager in records.
    pub fn name(&self) -> &str {
        self.base.as_str()
    }

    fn url(&self, tail: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        let path = format!("{}/{tail}", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }

    fn authorised(
        &self,
        mut req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, String> {
        match self.settings.credentials()? {
            Credentials::None => {}
            Credentials::Basic(user, password) => req = req.basic_auth(user, password),
            Credentials::Bearer(token) => req = req.bearer_auth(token),
        }
        Ok(req)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<String, String> {
        let resp = self
            .authorised(req)?
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| error_chain(&e))?;
        if status.is_success() {
            Ok(text)
        } else {
            let short: String = text.trim().chars().take(512).collect();
            Err(format!("HTTP {status}: {short}"))
        }
    }

    /// The silences Alertmanager holds that are not expired, compiled.
    pub async fn list(&self) -> Result<Vec<Silence>, String> {
        let text = self.send(self.client.get(self.url("silences"))).await?;
        let all: Vec<SilenceJson> = serde_json::from_str(&text)
            .map_err(|e| format!("GET {}: not a list of silences: {e}", self.url("silences")))?;
        Ok(all.into_iter().filter_map(Silence::compile).collect())
    }

    /// Creates a silence; returns its id.
    pub async fn create(&self, s: &NewSilence) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "silenceID")]
            silence_id: String,
        }
        let body = serde_json::to_vec(s).map_err(|e| format!("encoding the silence: {e}"))?;
        let text = self
            .send(
                self.client
                    .post(self.url("silences"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body),
            )
            .await?;
        let c: Created = serde_json::from_str(&text)
            .map_err(|e| format!("POST silences answered {text:?}: {e}"))?;
        Ok(c.silence_id)
    }

    /// Expires a silence. One that is already expired, or that this
    /// Alertmanager no longer knows (it lost its data), counts as done.
    pub async fn expire(&self, id: &str) -> Result<(), String> {
        let url = self.url(&format!("silence/{id}"));
        match self.send(self.client.delete(url)).await {
            Ok(_) => Ok(()),
            Err(e) if e.contains("silence not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Alertmanager's fingerprint of a label set, as its API and UI show it
/// (16 hex digits): 64-bit FNV-1a over the label names in order, each
/// name and value followed by the byte 0xff (Prometheus'
/// `model.LabelSet.Fingerprint`).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    for (k, v) in labels {
        h.write(k.as_bytes());
        h.write_u8(0xff);
        h.write(v.as_bytes());
        h.write_u8(0xff);
    }
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> AlertKey {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn silence(matchers: serde_json::Value) -> Option<Silence> {
        let s: SilenceJson = serde_json::from_value(serde_json::json!({
            "id": "s1",
            "status": {"state": "active"},
            "matchers": matchers,
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "2024-05-01T11:00:00.000Z",
            "createdBy": "alice",
            "comment": "looking",
            "updatedAt": "2024-05-01T10:00:00Z",
        }))
        .unwrap();
        Silence::compile(s)
    }

    #[test]
    fn fingerprint_is_alertmanagers() {
        // Taken from Alertmanager 0.25's GET /api/v2/alerts.
        assert_eq!(
            fingerprint(&labels(&[("alertname", "A"), ("instance", "h")])),
            "cb991762f04fbc6c"
        );
    }

    #[test]
    fn matchers_work_as_in_alertmanager() {
        let l = labels(&[
            ("alertname", "Load"),
            ("instance", "web-1"),
            ("env", "prod"),
        ]);
        let m = |name: &str, value: &str, re: bool, eq: bool| serde_json::json!({"name": name, "value": value, "isRegex": re, "isEqual": eq});
        let s = silence(serde_json::json!([m("alertname", "Load", false, true)])).unwrap();
        assert!(s.matches(&l));
        assert_eq!(s.created_by, "alice");
        let s = silence(serde_json::json!([m("instance", "web-.*", true, true)])).unwrap();
        assert!(s.matches(&l));
        // Anchored: a partial match is no match.
        let s = silence(serde_json::json!([m("instance", "web", true, true)])).unwrap();
        assert!(!s.matches(&l));
        let s = silence(serde_json::json!([
            m("alertname", "Load", false, true),
            m("env", "prod", false, false)
        ]))
        .unwrap();
        assert!(!s.matches(&l));
        let s = silence(serde_json::json!([m("env", "dev|test", true, false)])).unwrap();
        assert!(s.matches(&l));
        // A missing label is the empty string.
        let s = silence(serde_json::json!([m("team", "", false, true)])).unwrap();
        assert!(s.matches(&l));
        // Old Alertmanagers omit isEqual: positive.
        let s = silence(serde_json::json!([{"name": "env", "value": "prod", "isRegex": false}]))
            .unwrap();
        assert!(s.matches(&l));
        // Nothing to match: matches nothing.
        assert!(!silence(serde_json::json!([])).unwrap().matches(&l));
        // A regex Rust cannot compile: ignored.
        assert!(silence(serde_json::json!([m("x", "(", true, true)])).is_none());
    }

    #[test]
    fn activity_follows_the_times_and_the_state() {
        let s = silence(serde_json::json!([{"name": "a", "value": "b"}])).unwrap();
        assert!(!s.active_at("2024-05-01T09:59:59Z".parse().unwrap()));
        assert!(s.active_at("2024-05-01T10:00:00Z".parse().unwrap()));
        assert!(!s.active_at("2024-05-01T11:00:00Z".parse().unwrap()));
        let expired: SilenceJson = serde_json::from_value(serde_json::json!({
            "id": "s2", "status": {"state": "expired"}, "matchers": [],
            "startsAt": "2024-05-01T10:00:00Z", "endsAt": "2024-05-01T10:00:01Z",
        }))
        .unwrap();
        assert!(Silence::compile(expired).is_none());
    }

    #[test]
    fn new_silences_serialise_as_the_api_wants() {
        let s = NewSilence::for_labels(
            &labels(&[("alertname", "A"), ("instance", "h")]),
            "2024-05-01T10:00:00Z".parse().unwrap(),
            "2024-05-01T12:00:00Z".parse().unwrap(),
            "bob",
            "on it",
        );
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({
                "matchers": [
                    {"name": "alertname", "value": "A", "isRegex": false, "isEqual": true},
                    {"name": "instance", "value": "h", "isRegex": false, "isEqual": true},
                ],
                "startsAt": "2024-05-01T10:00:00Z",
                "endsAt": "2024-05-01T12:00:00Z",
                "createdBy": "bob",
                "comment": "on it",
            })
        );
    }

    #[test]
    fn api_base_joins_url_and_prefix() {
        let b = |u, p| api_base(u, p).map(|u| u.to_string());
        assert_eq!(b("http://am:9093", "").unwrap(), "http://am:9093/api/v2");
        assert_eq!(
            b("http://am:9093/x/", "/am/").unwrap(),
            "http://am:9093/x/am/api/v2"
        );
        assert!(b("am:9093", "").is_err());
        let c = SilenceClient::new(&AlertmanagerConfig::new("http://am:9093/"), "am[0]").unwrap();
        assert_eq!(
            c.url("silence/abc").as_str(),
            "http://am:9093/api/v2/silence/abc"
        );
        let e = SilenceClient::new(&AlertmanagerConfig::new("ftp://am"), "alertmanagers[1]")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("alertmanagers[1].url:"), "{e}");
    }
}
