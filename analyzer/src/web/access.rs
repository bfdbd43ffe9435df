//! Who may act on the page and the API, and CSRF protection of the page's
//! forms.
//!
//! Roles come from the web config (`roles`, `trusted_proxy`; see
//! `imd_exporter::web::Identity`): viewers see the page and read the API,
//! operators also acknowledge and resolve. Without a web config (or one
//! without auth and roles) everyone is an operator, as before roles
//! existed; `by` then names the person. With a user, `by` is the user.
//!
//! CSRF: a browser sends basic-auth credentials (and a proxy's session
//! cookie) with any request to the analyzer, including a form another site
//! posts. The page's forms therefore carry a synchronizer token: an
//! HMAC-SHA256, under a random key made at process start, of the user the
//! page was rendered for and the time; a POST is accepted only with a valid
//! token for the same user, less than [`TOKEN_LIFETIME`] old (the page
//! refreshes itself far more often). Another site cannot read the page, so
//! it cannot learn the token. In addition, a POST whose `Origin` (or, when
//! absent, `Referer`) names another host than the request's `Host` is
//! refused. The JSON API needs no token: it accepts only
//! `Content-Type: application/json`, which a cross-site form cannot send
//! and a cross-site `fetch` can send only after a CORS preflight the
//! analyzer never grants.

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use imd_exporter::web::{Identity, Role};
use sha2::Sha256;

/// How long a form token stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The per-process key of the page's CSRF tokens.
pub struct Csrf {
    key: [u8; 32],
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Csrf { .. }")
    }
}

impl Csrf {
    /// A key from the kernel's random source (Linux `/dev/urandom`).
    pub fn new() -> std::io::Result<Csrf> {
        use std::io::Read;
        let mut key = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(Csrf { key })
    }

    /// A key given by the caller (tests).
    pub fn with_key(key: [u8; 32]) -> Csrf {
        Csrf { key }
    }

    fn mac(&self, subject: &str, t: u64) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        m.update(subject.as_bytes());
        m.update(&[0]);
        m.update(t.to_string().as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The token for a page rendered for `subject` (the user, or empty)
    /// at `now_s` (seconds since the epoch).
    pub fn token(&self, subject: &str, now_s: u64) -> String {
        format!("{now_s}.{}", self.mac(subject, now_s))
    }

    /// Whether `token` was made for `subject`, by this process, less than
    /// [`TOKEN_LIFETIME`] before `now_s`.
    pub fn verify(&self, token: &str, subject: &str, now_s: u64) -> bool {
        let Some((t, mac)) = token.split_once('.') else {
            return false;
        };
        let Ok(t) = t.parse::<u64>() else {
            return false;
        };
        if t > now_s + 60 || now_s - t.min(now_s) > TOKEN_LIFETIME.as_secs() {
            return false;
        }
        // Compared through the MAC's own constant-time check.
        let Ok(given) = hex(mac) else {
            return false;
        };
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        m.update(subject.as_bytes());
        m.update(&[0]);
        m.update(t.to_string().as_bytes());
        m.verify_slice(&given).is_ok()
    }
}

fn hex(s: &str) -> Result<Vec<u8>, ()> {
    if s.len() % 2 != 0 {
        return Err(());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).ok_or(())?, 16).map_err(|_| ()))
        .collect()
}

/// The CSRF subject of a request: its user, or empty.
pub fn subject(id: Option<&Identity>) -> &str {
    id.and_then(|i| i.user.as_deref()).unwrap_or("")
}

/// Whether the request's `Origin` (or `Referer`) is this server: absent
/// both, true (the token decides); present, its host and port must be
/// the `Host` header's.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let from = headers
        .get(axum::http::header::ORIGIN)
        .or_else(|| headers.get(axum::http::header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (from, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(h)) => {
            let authority = o
                .split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
                .unwrap_or("");
            authority.eq_ignore_ascii_case(h)
        }
    }
}

/// Whether an identity may acknowledge and resolve: operators, and
/// everyone when the auth layer set no identity (no web config).
pub fn may_act(id: Option<&Identity>) -> bool {
    id.is_none_or(|i| i.role == Role::Operator)
}

/// Who acts: the authenticated user when there is one, else the `by`
/// the request gives.
pub fn actor(id: Option<&Identity>, by: &str) -> String {
    id.and_then(|i| i.user.clone())
        .unwrap_or_else(|| by.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_the_user_the_key_and_the_time() {
        let c = Csrf::with_key([7; 32]);
        let t = c.token("alice", 1_000_000);
        assert!(c.verify(&t, "alice", 1_000_100));
        assert!(!c.verify(&t, "bob", 1_000_100), "another user");
        assert!(!c.verify(&t, "alice", 1_000_000 + 13 * 3600), "expired");
        assert!(
            !Csrf::with_key([8; 32]).verify(&t, "alice", 1_000_100),
            "another process"
        );
        let forged = format!("1000000.{}", "0".repeat(64));
        assert!(!c.verify(&forged, "alice", 1_000_100));
        for bad in ["", "x", "1000000.", "1000000.zz", "abc.00"] {
            assert!(!c.verify(bad, "alice", 1_000_100), "{bad}");
        }
        assert!(Csrf::new().is_ok());
    }

    #[test]
    fn origin_must_be_this_host() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(same_origin(&h(&[("host", "a:9110")])));
        assert!(same_origin(&h(&[
            ("host", "a:9110"),
            ("origin", "http://a:9110")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "a:9110"),
            ("origin", "https://evil.example")
        ])));
        assert!(same_origin(&h(&[
            ("host", "a:9110"),
            ("referer", "http://a:9110/#alerts")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "a:9110"),
            ("referer", "http://evil/a:9110")
        ])));
        assert!(!same_origin(&h(&[("origin", "null")])));
    }

    #[test]
    fn only_operators_act_and_users_are_who() {
        let id = |user: Option<&str>, role| Identity {
            user: user.map(String::from),
            groups: vec![],
            role,
        };
        assert!(may_act(None));
        assert!(may_act(Some(&id(Some("a"), Role::Operator))));
        assert!(!may_act(Some(&id(Some("b"), Role::Viewer))));
        assert_eq!(actor(Some(&id(Some("a"), Role::Operator)), "mallory"), "a");
        assert_eq!(actor(None, " bob "), "bob");
    }
}
