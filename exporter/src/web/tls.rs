use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::config::WebConfig;
use super::server::Acceptor;
use crate::config::{ConfigError, KeyError};

/// Builds the TLS acceptor a web config asks for, or `None` for plain HTTP.
/// Errors name the web config file and the key at fault.
pub(super) fn acceptor(
    config: &WebConfig,
    file: Option<&Path>,
) -> anyhow::Result<Option<Acceptor>> {
    let origin = file.unwrap_or(Path::new("web config"));
    let server =
        server_config(config).map_err(|e| ConfigError::at_key(origin, &e.key, e.message))?;
    Ok(server.map(|s| Arc::new(tokio_rustls::TlsAcceptor::from(Arc::new(s)))))
}

/// Builds the rustls server configuration of `tls_server_config` (reading
/// the certificate, key and client CA files), or `None` without TLS. Errors
/// carry the key (`tls_server_config.cert_file`, ...) they are about.
pub(super) fn server_config(config: &WebConfig) -> Result<Option<ServerConfig>, KeyError> {
    let Some(tls) = &config.tls_server_config else {
        return Ok(None);
    };
    let certs = match (&tls.cert_file, &tls.cert) {
        (Some(f), _) => read_certs(&read_file(f, "tls_server_config.cert_file")?, f)
            .map_err(|m| KeyError::new("tls_server_config.cert_file", m))?,
        (None, Some(pem)) => read_certs(pem.as_bytes(), Path::new("inline PEM"))
            .map_err(|m| KeyError::new("tls_server_config.cert", m))?,
        (None, None) => {
            return Err(KeyError::new(
                "tls_server_config.cert_file",
                "missing cert_file or cert",
            ));
        }
    };
    let key = match (&tls.key_file, &tls.key) {
        (Some(f), _) => read_key(&read_file(f, "tls_server_config.key_file")?, f)
            .map_err(|m| KeyError::new("tls_server_config.key_file", m))?,
        (None, Some(pem)) => read_key(pem.as_bytes(), Path::new("inline PEM"))
            .map_err(|m| KeyError::new("tls_server_config.key", m))?,
        (None, None) => {
            return Err(KeyError::new(
                "tls_server_config.key_file",
                "missing key_file or key",
            ));
        }
    };

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = {
        let min13 = tls.min_version.as_deref() == Some("TLS13");
        if matches!(tls.max_version.as_deref(), Some("TLS10" | "TLS11")) {
            return Err(KeyError::new(
                "tls_server_config.max_version",
                "TLS 1.2 is the lowest version offered",
            ));
        }
        let max12 = tls.max_version.as_deref() == Some("TLS12");
        let mut v = Vec::new();
        if !max12 {
            v.push(&rustls::version::TLS13);
        }
        if !min13 {
            v.push(&rustls::version::TLS12);
        }
        if v.is_empty() {
            return Err(KeyError::new(
                "tls_server_config.min_version",
                "min_version is above max_version",
            ));
        }
        v
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| KeyError::new("tls_server_config", e.to_string()))?;

    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = if auth_type == "NoClientCert" {
        builder.with_no_client_auth()
    } else {
        const CA_KEY: &str = "tls_server_config.client_ca_file";
        let ca_file = tls.client_ca_file.as_ref().ok_or_else(|| {
            KeyError::new(CA_KEY, format!("required for client_auth_type {auth_type}"))
        })?;
        let mut roots = rustls::RootCertStore::empty();
        let ca = read_file(ca_file, CA_KEY)?;
        for c in read_certs(&ca, ca_file).map_err(|m| KeyError::new(CA_KEY, m))? {
            roots
                .add(c)
                .map_err(|e| KeyError::new(CA_KEY, format!("{}: {e}", ca_file.display())))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        // rustls always verifies a certificate it is given; the "Request" and
        // "RequireAny" modes of Go, which accept unverified certificates, are
        // served as their verifying counterparts (stricter, never looser).
        let verifier = match auth_type {
            "RequestClientCert" | "VerifyClientCertIfGiven" => verifier.allow_unauthenticated(),
            _ => verifier,
        }
        .build()
        .map_err(|e| KeyError::new(CA_KEY, format!("{}: {e}", ca_file.display())))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut server = builder.with_single_cert(certs, key).map_err(|e| {
        KeyError::new(
            "tls_server_config",
            format!("certificate and key do not fit: {e}"),
        )
    })?;
    server.alpn_protocols = if config.http_server_config.http2.unwrap_or(true) {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Some(server))
}

fn read_file(path: &Path, key: &str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError::new(key, format!("{}: {e}", path.display())))
}

fn read_certs(pem: &[u8], origin: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut &pem[..]).collect();
    let certs = certs.map_err(|e| format!("{}: {e}", origin.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate found", origin.display()));
    }
    Ok(certs)
}

fn read_key(pem: &[u8], origin: &Path) -> Result<PrivateKeyDer<'static>, String> {
    rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("{}: {e}", origin.display()))?
        .ok_or_else(|| format!("{}: no PEM private key found", origin.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn build(yaml: &str) -> Result<Option<ServerConfig>, KeyError> {
        let c: WebConfig = parse_yaml(Path::new("web.yml"), yaml).unwrap();
        server_config(&c)
    }

    #[test]
    fn no_tls_section_means_plain_http() {
        assert!(build("basic_auth_users: {}\n").unwrap().is_none());
    }

    #[test]
    fn unreadable_files_name_their_key_and_path() {
        let e = build(
            "tls_server_config:\n  cert_file: /nonexistent/s.crt\n  key_file: /nonexistent/s.key\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert_file");
        assert!(e.message.contains("/nonexistent/s.crt"), "{}", e.message);
    }

    #[test]
    fn inline_pem_without_a_certificate_is_rejected() {
        let e = build("tls_server_config:\n  cert: not a pem\n  key: not a pem\n").unwrap_err();
        assert_eq!(e.key, "tls_server_config.cert");
        assert!(e.message.contains("no PEM certificate"), "{}", e.message);
    }
}
