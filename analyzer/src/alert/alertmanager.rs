//! One Alertmanager: its settings and the HTTP client posting to
//! `<url><path_prefix>/api/v2/alerts`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Alert, AlertError};

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
    /// Time allowed for one POST.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token sent in `Authorization`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// File holding the bearer token (read at each send).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for `https` URLs.
    #[serde(default)]
    pub tls_config: TlsConfig,
}

/// HTTP basic authentication; the password inline or in a file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the password (read at each send).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// TLS settings of the connection to an Alertmanager.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (for tests only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl AlertmanagerConfig {
    /// An Alertmanager at `url` with default settings (10 s timeout, no
    /// authentication, system CAs).
    pub fn new(url: impl Into<String>) -> AlertmanagerConfig {
        AlertmanagerConfig {
            url: url.into(),
            path_prefix: String::new(),
            timeout: default_timeout(),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
        }
    }
}

/// A secret given inline or read from a file at each use, so that a
/// rotated token is picked up without a restart.
#[derive(Debug, Clone)]
enum Secret {
    Inline(String),
    File(PathBuf),
}

impl Secret {
    fn from_config(
        inline: Option<&String>,
        file: Option<&PathBuf>,
        key: &str,
        inline_name: &str,
        file_name: &str,
    ) -> Result<Option<Secret>, AlertError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(AlertError::config(
                key,
                format!("`{inline_name}` and `{file_name}` are mutually exclusive"),
            )),
            (Some(s), None) => Ok(Some(Secret::Inline(s.clone()))),
            (None, Some(p)) => {
                read_secret(p).map_err(|m| AlertError::config(format!("{key}.{file_name}"), m))?;
                Ok(Some(Secret::File(p.clone())))
            }
            (None, None) => Ok(None),
        }
    }

    fn get(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => read_secret(p),
        }
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<Secret>,
    },
    Bearer(Secret),
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
    auth: Auth,
}

impl AlertmanagerClient {
    /// Checks `config` (found at `key` in the configuration, for error
    /// messages) and builds its client.
    pub fn new(config: &AlertmanagerConfig, key: &str) -> Result<AlertmanagerClient, AlertError> {
        let endpoint = endpoint(&config.url, &config.path_prefix)
            .map_err(|m| AlertError::config(format!("{key}.url"), m))?;
        if config.timeout.is_zero() {
            return Err(AlertError::config(
                format!("{key}.timeout"),
                "must be above zero",
            ));
        }
        let bearer = Secret::from_config(
            config.bearer_token.as_ref(),
            config.bearer_token_file.as_ref(),
            key,
            "bearer_token",
            "bearer_token_file",
        )?;
        let auth = match (&config.basic_auth, bearer) {
            (Some(_), Some(_)) => {
                return Err(AlertError::config(
                    key,
                    "`basic_auth` and a bearer token are mutually exclusive",
                ));
            }
            (Some(b), None) => {
                let bkey = format!("{key}.basic_auth");
                if b.username.is_empty() {
                    return Err(AlertError::config(
                        format!("{bkey}.username"),
                        "must not be empty",
                    ));
                }
                let password = Secret::from_config(
                    b.password.as_ref(),
                    b.password_file.as_ref(),
                    &bkey,
                    "password",
                    "password_file",
                )?;
                Auth::Basic {
                    username: b.username.clone(),
                    password,
                }
            }
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => Auth::None,
        };

        // reqwest is built without a bundled crypto provider; the workspace
        // uses ring everywhere. Installing fails harmlessly when a provider
        // is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = &config.tls_config;
        let tkey = format!("{key}.tls_config");
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("imd-analyzer/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                AlertError::config(
                    format!("{tkey}.ca_file"),
                    format!("reading {}: {e}", ca.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    AlertError::config(
                        format!("{tkey}.ca_file"),
                        format!("{} holds no PEM certificate", ca.display()),
                    )
                })?;
            builder = builder.tls_certs_only(certs);
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(k)) => {
                let mut pem = std::fs::read(cert).map_err(|e| {
                    AlertError::config(
                        format!("{tkey}.cert_file"),
                        format!("reading {}: {e}", cert.display()),
                    )
                })?;
                pem.push(b'\n');
                pem.extend(std::fs::read(k).map_err(|e| {
                    AlertError::config(
                        format!("{tkey}.key_file"),
                        format!("reading {}: {e}", k.display()),
                    )
                })?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    AlertError::config(&tkey, format!("client certificate and key: {e}"))
                })?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(AlertError::config(
                    tkey,
                    "`cert_file` and `key_file` must be given together",
                ));
            }
        }
        if tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|source| AlertError::Client {
            key: key.to_string(),
            source,
        })?;
        Ok(AlertmanagerClient {
            endpoint,
            client,
            auth,
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
        match &self.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                let pw = match password {
                    Some(p) => Some(p.get().map_err(SendError::Fatal)?),
                    None => None,
                };
                req = req.basic_auth(username, pw);
            }
            Auth::Bearer(token) => req = req.bearer_auth(token.get().map_err(SendError::Fatal)?),
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

/// `url` + `prefix` + `/api/v2/alerts`, checked to be a plain http(s) URL.
fn endpoint(url: &str, prefix: &str) -> Result<reqwest::Url, String> {
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
    path.push_str("/api/v2/alerts");
    let mut full = base;
    full.set_path(&path);
    Ok(full)
}

/// An error with its causes, which reqwest keeps in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = |c: AlertmanagerConfig| {
            AlertmanagerClient::new(&c, "alertmanagers[2]")
                .unwrap_err()
                .to_string()
        };
        let mut c = AlertmanagerConfig::new("http://127.0.0.1:1");
        c.bearer_token = Some("t".into());
        c.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: Some("p".into()),
            password_file: None,
        });
        assert_eq!(
            err(c.clone()),
            "alertmanagers[2]: `basic_auth` and a bearer token are mutually exclusive"
        );
        c.bearer_token = None;
        c.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: None,
            password_file: Some("/nonexistent/pw".into()),
        });
        let e = err(c.clone());
        assert!(
            e.starts_with("alertmanagers[2].basic_auth.password_file: reading /nonexistent/pw"),
            "{e}"
        );
        c.basic_auth = None;
        c.tls_config.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c.clone()).starts_with("alertmanagers[2].tls_config.ca_file: reading"));
        c.tls_config = TlsConfig {
            cert_file: Some("/x".into()),
            ..TlsConfig::default()
        };
        assert!(err(c.clone()).contains("must be given together"));
        c.tls_config = TlsConfig::default();
        c.timeout = Duration::ZERO;
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
        c.tls_config.ca_file = Some(ca);
        let e = AlertmanagerClient::new(&c, "am").unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }

    #[test]
    fn config_deserialises_with_defaults_and_refuses_unknown_keys() {
        let c: AlertmanagerConfig =
            serde_yaml_ng::from_str("url: http://am:9093\ntimeout: 3s\nbearer_token_file: /t\n")
                .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.bearer_token_file.as_deref(), Some(Path::new("/t")));
        let d: AlertmanagerConfig = serde_yaml_ng::from_str("url: http://am:9093\n").unwrap();
        assert_eq!(d, AlertmanagerConfig::new("http://am:9093"));
        assert!(serde_yaml_ng::from_str::<AlertmanagerConfig>("url: x\ntimout: 3s\n").is_err());
    }
}
