use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use super::config::{DefaultRole, RolesConfig, WebConfig};

/// Who makes a request. The auth layer puts it in every request's
/// extensions when the web config sets basic auth, `roles` or
/// `trusted_proxy`; handlers that act (the analyzer's acknowledge and
/// resolve) check [`Identity::role`] and record [`Identity::user`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user: the basic-auth user, or the trusted proxy's user header;
    /// `None` when no authentication is configured.
    pub user: Option<String>,
    /// Groups from the trusted proxy's groups header.
    pub groups: Vec<String>,
    /// What the user may do.
    pub role: Role,
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Sees the page, reads the API.
    Viewer,
    /// Also acknowledges and resolves alerts.
    Operator,
}

/// How users are recognised and given roles.
struct Access {
    users: Option<Arc<Users>>,
    proxy: Option<Proxy>,
    roles: Option<RolesConfig>,
}

struct Proxy {
    user: HeaderName,
    groups: Option<HeaderName>,
    networks: Vec<ipnet::IpNet>,
}

/// Wraps an app with authentication (basic auth and/or a trusted proxy's
/// user header), roles, and the configured response headers.
pub(super) fn wrap(app: Router, config: &WebConfig) -> Router {
    let mut app = app;
    let users = (!config.basic_auth_users.is_empty()).then(|| {
        Arc::new(Users {
            hashes: config.basic_auth_users.clone(),
            verified: Mutex::new(HashSet::new()),
        })
    });
    let proxy = config.trusted_proxy.as_ref().and_then(|p| {
        Some(Proxy {
            user: HeaderName::from_bytes(p.user_header.as_bytes()).ok()?,
            groups: p
                .groups_header
                .as_ref()
                .and_then(|g| HeaderName::from_bytes(g.as_bytes()).ok()),
            networks: p.networks(),
        })
    });
    if users.is_some() || proxy.is_some() || config.roles.is_some() {
        let access = Arc::new(Access {
            users,
            proxy,
            roles: config.roles.clone(),
        });
        app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
            let access = access.clone();
            async move { access.check(req, next).await }
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

impl Access {
    async fn check(self: Arc<Self>, mut req: Request, next: Next) -> Response {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let mut identity: Option<(String, Vec<String>)> = None;
        if let Some(p) = &self.proxy {
            let trusted = peer.is_some_and(|ip| p.networks.iter().any(|n| n.contains(&ip)));
            let header = |name: &HeaderName| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim().to_string())
            };
            if trusted {
                if let Some(user) = header(&p.user).filter(|u| !u.is_empty()) {
                    let groups = p
                        .groups
                        .as_ref()
                        .and_then(header)
                        .map(|g| {
                            g.split(',')
                                .map(|x| x.trim().to_string())
                                .filter(|x| !x.is_empty())
                                .collect()
                        })
                        .unwrap_or_default();
                    identity = Some((user, groups));
                }
            } else {
                // Anybody can send these headers: from elsewhere than the
                // proxy they mean nothing, and nothing after this layer
                // may see them.
                if req.headers().contains_key(&p.user) {
                    tracing::debug!(peer = ?peer, header = %p.user, "user header from an untrusted address ignored");
                }
                req.headers_mut().remove(&p.user);
                if let Some(g) = &p.groups {
                    req.headers_mut().remove(g);
                }
            }
        }
        if identity.is_none()
            && let Some(users) = &self.users
        {
            match users.clone().authenticate(req.headers()).await {
                Some(user) => identity = Some((user, Vec::new())),
                None => {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic")],
                        "Unauthorized\n",
                    )
                        .into_response();
                }
            }
        }
        let (user, groups) = match identity {
            Some((u, g)) => (Some(u), g),
            None => (None, Vec::new()),
        };
        let Some(role) = role_of(self.roles.as_ref(), user.as_deref(), &groups) else {
            return (
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden: user {:?} has no role\n",
                    user.as_deref().unwrap_or("")
                ),
            )
                .into_response();
        };
        req.extensions_mut().insert(Identity { user, groups, role });
        next.run(req).await
    }
}

/// The role of a user: without `roles`, everyone is an operator (as before
/// roles existed); with them, the lists decide, then `roles.default`; a
/// request without a user gets at most `viewer` (acting needs a name to
/// record). `None`: refused.
fn role_of(roles: Option<&RolesConfig>, user: Option<&str>, groups: &[String]) -> Option<Role> {
    let Some(r) = roles else {
        return Some(Role::Operator);
    };
    let listed = |names: &[String], groups_list: &[String]| {
        user.is_some_and(|u| names.iter().any(|n| n == u))
            || groups.iter().any(|g| groups_list.contains(g))
    };
    if listed(&r.operators, &r.operator_groups) {
        return Some(Role::Operator);
    }
    if listed(&r.viewers, &r.viewer_groups) {
        return Some(Role::Viewer);
    }
    let default = match r.default {
        DefaultRole::Operator => Some(Role::Operator),
        DefaultRole::Viewer => Some(Role::Viewer),
        DefaultRole::None => None,
    };
    match user {
        Some(_) => default,
        None => default.map(|d| d.min(Role::Viewer)),
    }
}

impl Users {
    /// The basic-auth user of a request whose credentials are right.
    async fn authenticate(self: Arc<Self>, headers: &axum::http::HeaderMap) -> Option<String> {
        let creds = headers
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
            .and_then(|b| String::from_utf8(b).ok())?;
        let (user, pass) = creds.split_once(':')?;
        let (user, pass) = (user.to_string(), pass.to_string());
        let this = self.clone();
        let u = user.clone();
        let ok = tokio::task::spawn_blocking(move || this.verify(&u, &pass))
            .await
            .unwrap_or(false);
        ok.then_some(user)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;
    use std::io::{Read, Write};

    fn roles(yaml: &str) -> RolesConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn roles_come_from_lists_groups_and_the_default() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_of(None, Some("x"), &[]), Some(Role::Operator));
        assert_eq!(role_of(None, None, &[]), Some(Role::Operator));
        let r = roles("operators: [alice]\nviewers: [bob]\noperator_groups: [sre]\n");
        assert_eq!(role_of(Some(&r), Some("alice"), &[]), Some(Role::Operator));
        assert_eq!(role_of(Some(&r), Some("bob"), &[]), Some(Role::Viewer));
        assert_eq!(
            role_of(Some(&r), Some("bob"), &g(&["dev", "sre"])),
            Some(Role::Operator)
        );
        assert_eq!(role_of(Some(&r), Some("carol"), &[]), Some(Role::Viewer));
        let r = roles("operators: [alice]\ndefault: operator\n");
        assert_eq!(role_of(Some(&r), Some("carol"), &[]), Some(Role::Operator));
        // Without a user, never more than a viewer.
        assert_eq!(role_of(Some(&r), None, &[]), Some(Role::Viewer));
        let r = roles("operators: [alice]\ndefault: none\n");
        assert_eq!(role_of(Some(&r), Some("carol"), &[]), None);
    }

    /// Serves a handler that answers with the identity and the user header
    /// it sees, behind the auth layer of `yaml`; returns the port.
    async fn serve(yaml: &str) -> u16 {
        let c: WebConfig = parse_yaml(std::path::Path::new("web.yml"), yaml).unwrap();
        let app = Router::new().route(
            "/",
            axum::routing::get(|req: Request| async move {
                let id = req.extensions().get::<Identity>().cloned();
                let h = req
                    .headers()
                    .get("x-user")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                format!("{id:?} header={h:?}")
            }),
        );
        let app = wrap(app, &c);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            axum::serve(
                l,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
        });
        port
    }

    async fn get(port: u16, headers: &str) -> String {
        let headers = headers.to_string();
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                s,
                "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
            )
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_user_header_is_believed_from_trusted_proxies_only() {
        let roles = "roles:\n  operator_groups: [sre]\n  viewers: [bob]\n";
        let trusted = serve(&format!(
            "trusted_proxy:\n  user_header: X-User\n  groups_header: X-Groups\n  trusted_proxies: [127.0.0.1/32]\n{roles}"
        ))
        .await;
        let r = get(trusted, "X-User: alice\r\nX-Groups: dev, sre\r\n").await;
        assert!(
            r.contains("user: Some(\"alice\")") && r.contains("role: Operator"),
            "{r}"
        );
        let r = get(trusted, "X-User: bob\r\n").await;
        assert!(r.contains("role: Viewer"), "{r}");
        // The same headers from an address that is not the proxy's: ignored
        // and removed, so the request is anonymous (a viewer).
        let untrusted = serve(&format!(
            "trusted_proxy:\n  user_header: X-User\n  groups_header: X-Groups\n  trusted_proxies: [10.0.0.0/8]\n{roles}"
        ))
        .await;
        let r = get(untrusted, "X-User: alice\r\nX-Groups: sre\r\n").await;
        assert!(
            r.contains("user: None") && r.contains("role: Viewer") && r.contains("header=None"),
            "{r}"
        );
    }
}
