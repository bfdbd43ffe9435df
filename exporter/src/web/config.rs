//! The `--web.config.file` format of Prometheus' exporter-toolkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, parse_yaml, read_text};

/// The whole web config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Turns on TLS when present.
    #[serde(default)]
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP options.
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// Users allowed in, with bcrypt hashes of their passwords. Empty = no auth.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, String>,
    /// imd's addition: who may act (acknowledge, resolve) on the analyzer's
    /// page and API. Absent: everyone who gets in is an operator.
    #[serde(default)]
    pub roles: Option<RolesConfig>,
    /// imd's addition: believe a user (and groups) header set by an
    /// authenticating proxy (oauth2-proxy, an OIDC gateway), but only on
    /// connections from the proxy's addresses.
    #[serde(default)]
    pub trusted_proxy: Option<TrustedProxyConfig>,
}

/// `roles`: viewers see the page and read the API; operators also
/// acknowledge and resolve alerts. A user in both lists is an operator.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesConfig {
    /// User names (basic auth or proxy) that are operators.
    #[serde(default)]
    pub operators: Vec<String>,
    /// User names that are viewers.
    #[serde(default)]
    pub viewers: Vec<String>,
    /// Proxy groups whose members are operators.
    #[serde(default)]
    pub operator_groups: Vec<String>,
    /// Proxy groups whose members are viewers.
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    /// The role of an authenticated user listed nowhere: `viewer`
    /// (default), `operator`, or `none` (refused with 403). Requests
    /// without a user (no auth configured) get at most `viewer`.
    #[serde(default)]
    pub default: DefaultRole,
}

/// `roles.default`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultRole {
    /// Sees, cannot act.
    #[default]
    Viewer,
    /// Sees and acts.
    Operator,
    /// Refused.
    None,
}

/// `trusted_proxy`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedProxyConfig {
    /// The header holding the authenticated user, e.g. `X-Forwarded-User`.
    pub user_header: String,
    /// The header holding the user's groups, comma-separated, e.g.
    /// `X-Forwarded-Groups`.
    #[serde(default)]
    pub groups_header: Option<String>,
    /// Addresses (CIDR, or one address) connections from which are the
    /// proxy's; the headers are removed from every other request.
    pub trusted_proxies: Vec<String>,
}

impl TrustedProxyConfig {
    /// The parsed `trusted_proxies` (entries that do not parse are left
    /// out; `validate` rejects them).
    pub fn networks(&self) -> Vec<ipnet::IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|s| parse_net(s).ok())
            .collect()
    }
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or CIDR range (like 127.0.0.1/32)"))
}

/// `tls_server_config`, as exporter-toolkit names its keys.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// PEM certificate chain file.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM certificate chain given inline.
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM private key given inline.
    #[serde(default)]
    pub key: Option<String>,
    /// `NoClientCert` (default), `RequestClientCert`, `RequireAnyClientCert`,
    /// `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`.
    #[serde(default)]
    pub client_auth_type: Option<String>,
    /// CA certificates that client certificates are verified against.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Lowest TLS version: `TLS12` (default) or `TLS13`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Highest TLS version: `TLS12` or `TLS13` (default).
    #[serde(default)]
    pub max_version: Option<String>,
    /// Accepted for compatibility; rustls chooses among its safe suites.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Accepted for compatibility; rustls orders suites itself.
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Accepted for compatibility; rustls chooses among its safe curves.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// `http_server_config`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Whether HTTP/2 is offered over TLS (default true).
    #[serde(default)]
    pub http2: Option<bool>,
    /// Headers added to every response (e.g. `Strict-Transport-Security`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebConfig {
    /// Loads and checks a web config file; errors name the file and key.
    pub fn load(file: &Path) -> Result<WebConfig, ConfigError> {
        WebConfig::parse(file, &read_text(file)?)
    }

    /// Checks the text of the web config file `file` as [`WebConfig::load`]
    /// does, certificate files (relative to `file`'s folder) included.
    pub fn parse(file: &Path, text: &str) -> Result<WebConfig, ConfigError> {
        let mut c: WebConfig = parse_yaml(file, text)?;
        c.validate(file)?;
        // Relative certificate paths are relative to the config file, as in
        // exporter-toolkit.
        if let Some(tls) = &mut c.tls_server_config {
            let base = file.parent().unwrap_or(Path::new("."));
            for p in [
                &mut tls.cert_file,
                &mut tls.key_file,
                &mut tls.client_ca_file,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        // Reading the certificate, key and CA files is part of the check, as
        // in exporter-toolkit, so that `--check-config` catches a missing or
        // mismatched file before the server is started with it.
        super::tls::server_config(&c).map_err(|e| ConfigError::at_key(file, &e.key, e.message))?;
        Ok(c)
    }

    /// Checks values the schema cannot.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        for (user, hash) in &self.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                return Err(ConfigError::at_key(
                    file,
                    "basic_auth_users",
                    format!("invalid user name {user:?}"),
                ));
            }
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(ConfigError::at_key(
                    file,
                    &format!("basic_auth_users.{user}"),
                    "not a bcrypt hash (expected $2a$, $2b$ or $2y$; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
                ));
            }
        }
        self.validate_roles(file)?;
        for name in self.http_server_config.headers.keys() {
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::at_key(
                    file,
                    &format!("http_server_config.headers.{name}"),
                    "invalid header name",
                ));
            }
            if SERVER_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Err(ConfigError::at_key(
                    file,
                    &format!("http_server_config.headers.{name}"),
                    "set by the server for each response; it cannot be configured",
                ));
            }
            if axum::http::HeaderValue::from_str(&self.http_server_config.headers[name]).is_err() {
                return Err(ConfigError::at_key(
                    file,
                    &format!("http_server_config.headers.{name}"),
                    "invalid header value",
                ));
            }
        }
        if let Some(tls) = &self.tls_server_config {
            let has_cert = tls.cert_file.is_some() || tls.cert.is_some();
            let has_key = tls.key_file.is_some() || tls.key.is_some();
            if !has_cert {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.cert_file",
                    "missing cert_file or cert",
                ));
            }
            if !has_key {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.key_file",
                    "missing key_file or key",
                ));
            }
            if tls.cert_file.is_some() && tls.cert.is_some() {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.cert",
                    "give cert_file or cert, not both",
                ));
            }
            if tls.key_file.is_some() && tls.key.is_some() {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.key",
                    "give key_file or key, not both",
                ));
            }
            if let Some(t) = &tls.client_auth_type
                && !CLIENT_AUTH_TYPES.contains(&t.as_str())
            {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.client_auth_type",
                    format!(
                        "unknown value {t:?}; one of {}",
                        CLIENT_AUTH_TYPES.join(", ")
                    ),
                ));
            }
            let verifies = matches!(
                tls.client_auth_type.as_deref(),
                Some("VerifyClientCertIfGiven" | "RequireAndVerifyClientCert")
            );
            if verifies && tls.client_ca_file.is_none() {
                return Err(ConfigError::at_key(
                    file,
                    "tls_server_config.client_ca_file",
                    "required when client certificates are verified",
                ));
            }
            for (key, v) in [
                ("min_version", &tls.min_version),
                ("max_version", &tls.max_version),
            ] {
                if let Some(v) = v
                    && !matches!(v.as_str(), "TLS10" | "TLS11" | "TLS12" | "TLS13")
                {
                    return Err(ConfigError::at_key(
                        file,
                        &format!("tls_server_config.{key}"),
                        format!("unknown TLS version {v:?}"),
                    ));
                }
            }
            if matches!(tls.min_version.as_deref(), Some("TLS10" | "TLS11")) {
                tracing::warn!("TLS 1.0 and 1.1 are not offered; the minimum is TLS 1.2");
            }
        }
        Ok(())
    }
}

impl WebConfig {
    fn validate_roles(&self, file: &Path) -> Result<(), ConfigError> {
        let err = |key: String, msg: String| ConfigError::at_key(file, &key, msg);
        if let Some(p) = &self.trusted_proxy {
            for (key, name) in [
                ("user_header", Some(&p.user_header)),
                ("groups_header", p.groups_header.as_ref()),
            ] {
                if let Some(name) = name
                    && (name.is_empty()
                        || axum::http::HeaderName::from_bytes(name.as_bytes()).is_err())
                {
                    return Err(err(
                        format!("trusted_proxy.{key}"),
                        format!("invalid header name {name:?}"),
                    ));
                }
            }
            if p.trusted_proxies.is_empty() {
                return Err(err(
                    "trusted_proxy.trusted_proxies".into(),
                    "list the proxy's addresses (e.g. [127.0.0.1/32]); the user header is believed from them only".into(),
                ));
            }
            for (i, s) in p.trusted_proxies.iter().enumerate() {
                parse_net(s).map_err(|m| err(format!("trusted_proxy.trusted_proxies[{i}]"), m))?;
            }
        }
        if let Some(r) = &self.roles {
            if self.basic_auth_users.is_empty() && self.trusted_proxy.is_none() {
                return Err(err(
                    "roles".into(),
                    "roles need users: set basic_auth_users or trusted_proxy".into(),
                ));
            }
            // Without a proxy, users are the basic-auth users: a name not
            // among them is a typo.
            if self.trusted_proxy.is_none() {
                for (key, list) in [("operators", &r.operators), ("viewers", &r.viewers)] {
                    for (i, u) in list.iter().enumerate() {
                        if !self.basic_auth_users.contains_key(u) {
                            return Err(err(
                                format!("roles.{key}[{i}]"),
                                format!("no user {u:?} in basic_auth_users"),
                            ));
                        }
                    }
                }
                if !(r.operator_groups.is_empty() && r.viewer_groups.is_empty()) {
                    return Err(err(
                        "roles.operator_groups".into(),
                        "groups come from trusted_proxy.groups_header, which is not set".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Headers that describe the body or the connection: overriding them would
/// corrupt responses, so the config may not set them.
const SERVER_HEADERS: &[&str] = &[
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
];

const CLIENT_AUTH_TYPES: &[&str] = &[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn check(yaml: &str) -> Result<WebConfig, String> {
        let f = Path::new("web.yml");
        let c: WebConfig = parse_yaml(f, yaml).map_err(|e| e.to_string())?;
        c.validate(f).map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn exporter_toolkit_examples_load() {
        let c = check(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\nbasic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        )
        .unwrap();
        assert_eq!(c.basic_auth_users.len(), 1);
    }

    #[test]
    fn framing_headers_cannot_be_configured() {
        let e = check("http_server_config:\n  headers:\n    Content-Encoding: gzip\n").unwrap_err();
        assert!(
            e.contains("key `http_server_config.headers.Content-Encoding`"),
            "{e}"
        );
        let e = check("http_server_config:\n  headers:\n    X-A: \"a\\nb\"\n").unwrap_err();
        assert!(e.contains("invalid header value"), "{e}");
        check("http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n")
            .unwrap();
    }

    #[test]
    fn roles_and_trusted_proxy_are_checked() {
        let hash = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";
        let c = check(&format!(
            "basic_auth_users:\n  alice: {hash}\n  bob: {hash}\nroles:\n  operators: [alice]\n  viewers: [bob]\n  default: none\n"
        ))
        .unwrap();
        let r = c.roles.unwrap();
        assert_eq!((r.operators.len(), r.default), (1, DefaultRole::None));
        let e = check(&format!(
            "basic_auth_users:\n  alice: {hash}\nroles:\n  operators: [alice, carol]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("key `roles.operators[1]`") && e.contains("carol"),
            "{e}"
        );
        let e = check("roles:\n  operators: [alice]\n").unwrap_err();
        assert!(e.contains("key `roles`"), "{e}");
        let e = check("roles:\n  operatorz: [alice]\n").unwrap_err();
        assert!(e.contains("unknown field `operatorz`"), "{e}");
        let c = check(
            "trusted_proxy:\n  user_header: X-Forwarded-User\n  groups_header: X-Forwarded-Groups\n  trusted_proxies: [127.0.0.1/32, '::1']\nroles:\n  operator_groups: [sre]\n",
        )
        .unwrap();
        assert_eq!(c.trusted_proxy.unwrap().networks().len(), 2);
        let e = check("trusted_proxy:\n  user_header: X-User\n  trusted_proxies: [10.0.0.0/33]\n")
            .unwrap_err();
        assert!(e.contains("key `trusted_proxy.trusted_proxies[0]`"), "{e}");
        let e =
            check("trusted_proxy:\n  user_header: X-User\n  trusted_proxies: []\n").unwrap_err();
        assert!(e.contains("trusted_proxy.trusted_proxies"), "{e}");
        let e = check("trusted_proxy:\n  user_header: 'X User'\n  trusted_proxies: [127.0.0.1]\n")
            .unwrap_err();
        assert!(e.contains("trusted_proxy.user_header"), "{e}");
    }

    #[test]
    fn mistakes_name_their_key() {
        assert!(
            check("basic_auth_users:\n  bob: secret\n")
                .unwrap_err()
                .contains("key `basic_auth_users.bob`")
        );
        assert!(
            check("tls_server_config:\n  cert_file: a\n")
                .unwrap_err()
                .contains("tls_server_config.key_file")
        );
        assert!(
            check("tls_server_config:\n  cert_fil: a\n")
                .unwrap_err()
                .contains("unknown field `cert_fil`")
        );
        assert!(
            check("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n")
                .unwrap_err()
                .contains("client_auth_type")
        );
    }
}
