//! One Alertmanager: its settings and the HTTP client posting to
//! `<url><path_prefix>/api/v2/alerts`.

use serde::Deserialize;

use super::{Alert, AlertError};
use crate::http::{ClientSettings, Credentials, HttpOptions, error_chain};

/// Where and how to reach one Alertmanager (Prometheus'
/// `alerting.alertmanagers` entry, one target).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://alertmanager:9093` (may carry a path).
    pub url: String,
    /// Path added between the URL and `/api/v2/alerts`, e.g. `/alertmanager`.
    #[serde(default)]
    pub path_prefix: String,
    /// Timeout, authentication, headers and TLS, as for every connection.
    #[serde(flatten)]
    pub http: HttpOptions,
}

impl AlertmanagerConfig {
    /// An Alertmanager at `url` with default settings (no authentication,
    /// system CAs).
    pub fn new(url: impl Into<String>) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: url.into(),
            path_prefix: String::new(),
            http: HttpOptions::default(),
        }
    }
}

/// The checked HTTP settings of an Alertmanager and an async client built
/// from them; errors name the key below `key`.
pub(super) fn http_client(
    config: &AlertmanagerConfig,
    key: &str,
) -> Result<(ClientSettings, reqwest::Client), AlertError> {
    let settings = ClientSettings::new(&config.http).map_err(|e| {
        let at = e.at(key);
        let (k, m) = at.split_once(": ").unwrap_or((key, &at));
        AlertError::config(k, m)
    })?;
    let client = settings
        .async_builder()
        .build()
        .map_err(|source| AlertError::Client {
            key: key.to_string(),
            source,
        })?;
    Ok((settings, client))
}

/// Why a POST failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again later: no connection, a timeout, 5xx, 408, 429.
    Retry(String),
    /// Trying again would fail the same way (another 4xx, a bad secret
    /// file): the batch is dropped.
    Fatal(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry(m) | SendError::Fatal(m) => f.write_str(m),
        }
    }
}

/// The HTTP client of one Alertmanager.
#[derive(Debug, Clone)]
pub struct AlertmanagerClient {
    endpoint: reqwest::Url,
    client: reqwest::Client,
    settings: ClientSettings,
}

impl AlertmanagerClient {
    /// Checks `config` (found at `key` in the configuration, for error
    /// messages) and builds its client.
    pub fn new(config: &AlertmanagerConfig, key: &str) -> Result<AlertmanagerClient, AlertError> {
        let endpoint = endpoint(&config.url, &config.path_prefix)
            .map_err(|m| AlertError::config(format!("{key}.url"), m))?;
        let (settings, client) = http_client(config, key)?;
        Ok(AlertmanagerClient {
            endpoint,
            client,
            settings,
        })
    }

    /// The full URL posted to; also the `alertmanager` label of the metrics.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Posts `alerts` in one request. Must run inside a Tokio runtime.
    pub async fn post(&self, alerts: &[Alert]) -> Result<(), SendError> {
        let body = serde_json::to_vec(alerts)
            .map_err(|e| SendError::Fatal(format!("encoding alerts: {e}")))?;
        let mut req = self
            .client
            .post(self.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        match self.settings.credentials().map_err(SendError::Fatal)? {
            Credentials::None => {}
            Credentials::Basic(user, password) => req = req.basic_auth(user, password),
            Credentials::Bearer(token) => req = req.bearer_auth(token),
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SendError::Retry(error_chain(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.trim().chars().take(512).collect();
        let msg = format!("HTTP {status}: {text}");
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(SendError::Retry(msg))
        } else {
            Err(SendError::Fatal(msg))
        }
    }
}

/// `url` + `prefix` + `/api/v2/alerts`, where alerts are posted.
fn endpoint(url: &str, prefix: &str) -> Result<reqwest::Url, String> {
    let mut full = api_base(url, prefix)?;
    full.set_path(&format!("{}/alerts", full.path()));
    Ok(full)
}

/// `url` + `prefix` + `/api/v2`, the base of Alertmanager's API (alerts and
/// silences alike), checked to be a plain http(s) URL.
pub(super) fn api_base(url: &str, prefix: &str) -> Result<reqwest::Url, String> {
    let base = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(format!("{url:?}: the scheme must be http or https"));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    let mut path = base.path().trim_end_matches('/').to_string();
    let prefix = prefix.trim_matches('/');
    if !prefix.is_empty() {
        path.push('/');
        path.push_str(prefix);
    }
    path.push_str("/api/v2");
    let mut full = base;
    full.set_path(&path);
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BasicAuth;

    #[test]
    fn endpoints_join_url_prefix_and_api_path() {
        let e = |u, p| endpoint(u, p).map(|u| u.to_string());
        assert_eq!(
            e("http://am:9093", "").unwrap(),
            "http://am:9093/api/v2/alerts"
        );
        assert_eq!(
            e("http://am:9093/", "/x/").unwrap(),
            "http://am:9093/x/api/v2/alerts"
        );
        assert_eq!(
            e("https://h/base/", "am").unwrap(),
            "https://h/base/am/api/v2/alerts"
        );
        assert!(e("am:9093", "").unwrap_err().contains("scheme"));
        assert!(e("ftp://am", "").unwrap_err().contains("scheme"));
        assert!(e("http://am?x=1", "").unwrap_err().contains("query"));
        assert!(e("not a url", "").unwrap_err().contains("not a URL"));
    }

    #[test]
    fn config_errors_name_the_key() {
        use crate::http::Secret;
        let err = |c: AlertmanagerConfig| {
            AlertmanagerClient::new(&c, "alertmanagers[2]")
                .unwrap_err()
                .to_string()
        };
        let mut c = AlertmanagerConfig::new("http://127.0.0.1:1");
        c.http.bearer_token = Some(Secret("t".into()));
        c.http.basic_auth = Some(BasicAuth {
            username: "u".into(),
            ..BasicAuth::default()
        });
        assert_eq!(
            err(c.clone()),
            "alertmanagers[2]: `basic_auth` and a bearer token are mutually exclusive"
        );
        c.http.bearer_token = None;
        c.http.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: None,
            password_file: Some("/nonexistent/pw".into()),
        });
        let e = err(c.clone());
        assert!(
            e.starts_with("alertmanagers[2].basic_auth.password_file: reading /nonexistent/pw"),
            "{e}"
        );
        c.http.basic_auth = None;
        c.http.tls.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c.clone()).starts_with("alertmanagers[2].tls_config.ca_file: reading"));
        c.http.tls.ca_file = None;
        c.http.timeout = std::time::Duration::ZERO;
        assert_eq!(
            err(c.clone()),
            "alertmanagers[2].timeout: must be above zero"
        );
        c.url = "localhost:9093".into();
        assert!(err(c).starts_with("alertmanagers[2].url:"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let mut c = AlertmanagerConfig::new("https://127.0.0.1:1");
        c.http.tls.ca_file = Some(ca);
        let e = AlertmanagerClient::new(&c, "am").unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn config_deserialises_with_defaults_and_refuses_unknown_keys() {
        let c: AlertmanagerConfig =
            serde_yaml_ng::from_str("url: http://am:9093\ntimeout: 3s\nbearer_token_file: /t\n")
                .unwrap();
        assert_eq!(c.http.timeout, std::time::Duration::from_secs(3));
        assert_eq!(
            c.http.bearer_token_file.as_deref(),
            Some(std::path::Path::new("/t"))
        );
        let d: AlertmanagerConfig = serde_yaml_ng::from_str("url: http://am:9093\n").unwrap();
        assert_eq!(d, AlertmanagerConfig::new("http://am:9093"));
        assert!(serde_yaml_ng::from_str::<AlertmanagerConfig>("url: x\ntimout: 3s\n").is_err());
    }
}
