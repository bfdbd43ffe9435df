//! HTTP client settings shared by every connection the analyzer makes
//! (sources and Alertmanagers): timeout, authentication, extra headers and
//! TLS, named as in Prometheus' `http_config` (`basic_auth`,
//! `bearer_token_file`, `tls_config.ca_file`, ...), so a block copied from a
//! Prometheus configuration reads the same here.
//!
//! TLS is rustls with the `ring` provider, the one the exporter's server
//! already uses; reqwest is built without a provider of its own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// A secret given inline; printed as `<secret>`.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// HTTP basic authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Password given inline.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the password (read at each request, trailing newline
    /// removed), for secrets that rotate.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// TLS settings for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// PEM file of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// How to reach a server: everything but the URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpOptions {
    /// Limit for a whole request, answer body included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token given inline.
    pub bearer_token: Option<Secret>,
    /// File holding the bearer token (read at each request).
    pub bearer_token_file: Option<PathBuf>,
    /// Extra request headers, e.g. `X-Scope-OrgID` for a multi-tenant
    /// Cortex/Mimir/Thanos.
    pub headers: BTreeMap<String, String>,
    /// TLS settings.
    #[serde(rename = "tls_config")]
    pub tls: TlsOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            basic_auth: None,
            bearer_token: None,
            bearer_token_file: None,
            headers: BTreeMap::new(),
            tls: TlsOptions::default(),
        }
    }
}

/// Headers the protocols set themselves; configuring them is an error.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "accept-encoding",
    "user-agent",
    "connection",
    "transfer-encoding",
    "x-prometheus-remote-read-version",
];

/// An invalid option: its key relative to the options (`tls_config.ca_file`,
/// empty for the block itself) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The key, e.g. `basic_auth.password_file`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
        SettingsError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The message with the key below `prefix` in front (`prefix.key: ...`).
    pub fn at(&self, prefix: &str) -> String {
        match (prefix.is_empty(), self.key.is_empty()) {
            (true, true) => self.message.clone(),
            (true, false) => format!("{}: {}", self.key, self.message),
            (false, true) => format!("{prefix}: {}", self.message),
            (false, false) => format!("{prefix}.{}: {}", self.key, self.message),
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.at(""))
    }
}

/// A secret given inline or read from a file at each use, so that a rotated
/// token is picked up without a restart.
#[derive(Clone)]
enum SecretSource {
    Inline(String),
    File(PathBuf),
}

/// Shows the file but never the inline secret (a derived `Debug` would, in
/// any `{:?}` of the settings).
impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<secret>)"),
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl SecretSource {
    fn get(&self) -> Result<String, String> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::File(p) => read_secret(p),
        }
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

/// An inline secret or a file, never both; a file is read once now so that a
/// wrong path is reported at start-up.
fn inline_or_file(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
    key: &str,
) -> Result<Option<SecretSource>, SettingsError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SettingsError::new(
            format!("{key}_file"),
            format!("`{key}` and `{key}_file` are mutually exclusive"),
        )),
        (Some(s), None) => Ok(Some(SecretSource::Inline(s.0.clone()))),
        (None, Some(p)) => {
            let src = SecretSource::File(p.clone());
            src.get()
                .map_err(|m| SettingsError::new(format!("{key}_file"), m))?;
            Ok(Some(src))
        }
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic {
        username: String,
        password: Option<SecretSource>,
    },
    Bearer(SecretSource),
}

/// What a request carries to authenticate, read fresh for each request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing.
    None,
    /// User and password.
    Basic(String, Option<String>),
    /// A bearer token.
    Bearer(String),
}

/// Shows the user name but never the password or token.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic(user, password) => f
                .debug_tuple("Basic")
                .field(user)
                .field(&password.as_ref().map(|_| "<secret>"))
                .finish(),
            Credentials::Bearer(_) => f.write_str("Bearer(<secret>)"),
        }
    }
}

/// Options checked and TLS material loaded, ready to configure a reqwest
/// client (blocking or async).
#[derive(Clone)]
pub struct ClientSettings {
    timeout: Duration,
    auth: Auth,
    headers: HeaderMap,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    insecure: bool,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("timeout", &self.timeout)
            .field(
                "auth",
                &if matches!(self.auth, Auth::None) {
                    "none"
                } else {
                    "set"
                },
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn read_file(key: &str, path: &Path) -> Result<Vec<u8>, SettingsError> {
    std::fs::read(path)
        .map_err(|e| SettingsError::new(key, format!("reading {}: {e}", path.display())))
}

/// An error and its causes on one line (reqwest keeps the useful part, such
/// as "connection refused", in `source()`); a cause whose text the line
/// already holds is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}

/// Makes rustls' `ring` provider the process default (once), so reqwest,
/// built without a provider of its own, uses it.
pub fn install_ring_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only when a default is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl ClientSettings {
    /// Checks `opts` and loads their secret, TLS and header values; errors
    /// name the key at fault.
    pub fn new(opts: &HttpOptions) -> Result<ClientSettings, SettingsError> {
        if opts.timeout.is_zero() {
            return Err(SettingsError::new("timeout", "must be above zero"));
        }
        let bearer = inline_or_file(&opts.bearer_token, &opts.bearer_token_file, "bearer_token")?;
        let auth = match (&opts.basic_auth, bearer) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::new(
                    "",
                    "`basic_auth` and a bearer token are mutually exclusive",
                ));
            }
            (Some(b), None) => {
                if b.username.is_empty() {
                    return Err(SettingsError::new(
                        "basic_auth.username",
                        "must not be empty",
                    ));
                }
                Auth::Basic {
                    username: b.username.clone(),
                    password: inline_or_file(&b.password, &b.password_file, "password").map_err(
                        |e| SettingsError::new(format!("basic_auth.{}", e.key), e.message),
                    )?,
                }
            }
            (None, Some(token)) => Auth::Bearer(token),
            (None, None) => Auth::None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &opts.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
                SettingsError::new(format!("headers.{k}"), format!("invalid header name: {e}"))
            })?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(SettingsError::new(
                    format!("headers.{k}"),
                    "is set by imd itself and cannot be configured",
                ));
            }
            let value = HeaderValue::from_str(v).map_err(|e| {
                SettingsError::new(format!("headers.{k}"), format!("invalid header value: {e}"))
            })?;
            headers.insert(name, value);
        }
        let tls = &opts.tls;
        let roots = match &tls.ca_file {
            Some(p) => {
                let certs =
                    reqwest::Certificate::from_pem_bundle(&read_file("tls_config.ca_file", p)?)
                        .map_err(|e| {
                            SettingsError::new(
                                "tls_config.ca_file",
                                format!("{}: {e}", p.display()),
                            )
                        })?;
                if certs.is_empty() {
                    return Err(SettingsError::new(
                        "tls_config.ca_file",
                        format!("{} holds no PEM certificate", p.display()),
                    ));
                }
                certs
            }
            None => Vec::new(),
        };
        let identity = match (&tls.cert_file, &tls.key_file) {
            (Some(c), Some(k)) => {
                let mut pem = read_file("tls_config.cert_file", c)?;
                pem.push(b'\n');
                pem.extend(read_file("tls_config.key_file", k)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    SettingsError::new(
                        "tls_config",
                        format!(
                            "client certificate {} and key {}: {e}",
                            c.display(),
                            k.display()
                        ),
                    )
                })?)
            }
            (None, None) => None,
            _ => {
                return Err(SettingsError::new(
                    "tls_config",
                    "`cert_file` and `key_file` must be given together",
                ));
            }
        };
        Ok(ClientSettings {
            timeout: opts.timeout,
            auth,
            headers,
            roots,
            identity,
            insecure: tls.insecure_skip_verify,
        })
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The credentials to send now (secret files are read again).
    pub fn credentials(&self) -> Result<Credentials, String> {
        Ok(match &self.auth {
            Auth::None => Credentials::None,
            Auth::Basic { username, password } => Credentials::Basic(
                username.clone(),
                password.as_ref().map(SecretSource::get).transpose()?,
            ),
            Auth::Bearer(token) => Credentials::Bearer(token.get()?),
        })
    }
}

/// Applies the settings to a reqwest client builder; one macro body serves
/// the blocking and the async builder, whose methods have the same names
/// but belong to different types.
macro_rules! configure {
    ($s:expr, $b:expr) => {{
        install_ring_provider();
        let s: &ClientSettings = $s;
        let mut b = $b
            .timeout(s.timeout)
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("imd-analyzer/", env!("CARGO_PKG_VERSION")))
            .default_headers(s.headers.clone());
        if !s.roots.is_empty() {
            b = b.tls_certs_only(s.roots.clone());
        }
        if let Some(id) = &s.identity {
            b = b.identity(id.clone());
        }
        if s.insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        b
    }};
}

impl ClientSettings {
    /// A blocking client builder with these settings.
    pub fn blocking_builder(&self) -> reqwest::blocking::ClientBuilder {
        configure!(self, reqwest::blocking::Client::builder())
    }

    /// An async client builder with these settings.
    pub fn async_builder(&self) -> reqwest::ClientBuilder {
        configure!(self, reqwest::Client::builder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose text is `text` and whose cause is `cause`.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_joins_causes_and_skips_those_already_said() {
        let refused = Layer("Connection refused (os error 111)", None);
        let connect = Layer("client error (Connect)", Some(Box::new(refused)));
        let top = Layer("error sending request", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&top),
            "error sending request: client error (Connect): Connection refused (os error 111)"
        );
        let repeated = Layer(
            "timed out: deadline has elapsed",
            Some(Box::new(Layer("deadline has elapsed", None))),
        );
        assert_eq!(error_chain(&repeated), "timed out: deadline has elapsed");
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let opts = HttpOptions {
            basic_auth: Some(BasicAuth {
                username: "imd".into(),
                password: Some(Secret("pw-inline-1".into())),
                password_file: None,
            }),
            ..HttpOptions::default()
        };
        let auth = Auth::Basic {
            username: "imd".into(),
            password: Some(SecretSource::Inline("pw-inline-2".into())),
        };
        let shown = format!(
            "{opts:?} {auth:?} {:?} {:?} {:?}",
            Auth::Bearer(SecretSource::Inline("tok-3".into())),
            Credentials::Basic("imd".into(), Some("pw-4".into())),
            Credentials::Bearer("tok-5".into()),
        );
        for secret in ["pw-inline-1", "pw-inline-2", "tok-3", "pw-4", "tok-5"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("imd") && shown.contains("<secret>"),
            "{shown}"
        );
        let file = format!("{:?}", SecretSource::File("/etc/imd/token".into()));
        assert_eq!(file, "File(\"/etc/imd/token\")");
    }

    #[test]
    fn mistakes_name_their_key() {
        let e = |o: HttpOptions| ClientSettings::new(&o).unwrap_err().at("sources[0]");
        let mut o = HttpOptions {
            bearer_token: Some(Secret("t".into())),
            bearer_token_file: Some("/x".into()),
            ..HttpOptions::default()
        };
        assert_eq!(
            e(o.clone()),
            "sources[0].bearer_token_file: `bearer_token` and `bearer_token_file` are mutually exclusive"
        );
        o.bearer_token_file = None;
        o.basic_auth = Some(BasicAuth {
            username: "u".into(),
            ..BasicAuth::default()
        });
        assert_eq!(
            e(o.clone()),
            "sources[0]: `basic_auth` and a bearer token are mutually exclusive"
        );
        o.bearer_token = None;
        o.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: None,
            password_file: Some("/nonexistent/pw".into()),
        });
        assert!(
            e(o.clone())
                .starts_with("sources[0].basic_auth.password_file: reading /nonexistent/pw")
        );
        o.basic_auth = None;
        o.headers.insert("Content-Type".into(), "x".into());
        assert!(e(o.clone()).starts_with("sources[0].headers.Content-Type: is set by imd"));
        o.headers.clear();
        o.tls.cert_file = Some("/c".into());
        assert!(
            e(o.clone()).contains("tls_config: `cert_file` and `key_file` must be given together")
        );
        o.tls.cert_file = None;
        o.timeout = Duration::ZERO;
        assert_eq!(e(o), "sources[0].timeout: must be above zero");
    }

    #[test]
    fn secret_files_are_read_at_each_use() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "one\n").unwrap();
        let s = ClientSettings::new(&HttpOptions {
            bearer_token_file: Some(f.clone()),
            ..HttpOptions::default()
        })
        .unwrap();
        assert_eq!(s.credentials().unwrap(), Credentials::Bearer("one".into()));
        std::fs::write(&f, "two").unwrap();
        assert_eq!(s.credentials().unwrap(), Credentials::Bearer("two".into()));
        assert!(format!("{:?}", Secret("pw".into())) == "<secret>");
    }
}
