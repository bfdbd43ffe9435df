use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::config::WebConfig;

/// Wraps an app with basic auth (when users are configured) and the
/// configured response headers.
pub(super) fn wrap(app: Router, config: &WebConfig) -> Router {
    let mut app = app;
    if !config.basic_auth_users.is_empty() {
        let users = Arc::new(Users {
            hashes: config.basic_auth_users.clone(),
            verified: Mutex::new(HashSet::new()),
        });
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let users = users.clone();
            async move { users.check(req, next).await }
        }));
    }
    let headers: Vec<(HeaderName, HeaderValue)> = config
        .http_server_config
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    if !headers.is_empty() {
        let headers = Arc::new(headers);
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let headers = headers.clone();
            async move {
                let mut resp = next.run(req).await;
                for (k, v) in headers.iter() {
                    resp.headers_mut().insert(k.clone(), v.clone());
                }
                resp
            }
        }));
    }
    app
}

struct Users {
    hashes: BTreeMap<String, String>,
    /// Digests of credentials already verified: bcrypt is slow on purpose,
    /// and a scraper sends the same credentials every few seconds
    /// (exporter-toolkit caches for the same reason).
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Users {
    async fn check(self: Arc<Self>, req: Request, next: Next) -> Response {
        let creds = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme name is case-insensitive (RFC 7617), as in Go's BasicAuth.
            .and_then(|v| {
                v.get(..6)
                    .filter(|s| s.eq_ignore_ascii_case("basic "))
                    .map(|_| &v[6..])
            })
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok());
        let ok = match creds.as_deref().and_then(|c| c.split_once(':')) {
            Some((user, pass)) => {
                let this = self.clone();
                let (user, pass) = (user.to_string(), pass.to_string());
                tokio::task::spawn_blocking(move || this.verify(&user, &pass))
                    .await
                    .unwrap_or(false)
            }
            None => false,
        };
        if ok {
            next.run(req).await
        } else {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response()
        }
    }

    fn verify(&self, user: &str, pass: &str) -> bool {
        let Some(hash) = self.hashes.get(user) else {
            // Spend the same time as for a known user, so that timing does
            // not tell which users exist.
            let _ = bcrypt::verify(
                pass,
                "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DSmkb5L0MwUlmmzcsvHSW",
            );
            return false;
        };
        let digest: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(pass.as_bytes())
            .chain_update([0u8])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        if self
            .verified
            .lock()
            .map(|s| s.contains(&digest))
            .unwrap_or(false)
        {
            return true;
        }
        let ok = bcrypt::verify(pass, hash).unwrap_or(false);
        if ok && let Ok(mut s) = self.verified.lock() {
            if s.len() > 1024 {
                s.clear();
            }
            s.insert(digest);
        }
        ok
    }
}
