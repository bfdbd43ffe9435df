//! Plain-HTTP requests to the loopback servers a test started, through
//! reqwest's blocking client (already built for imd-analyzer), set up to
//! behave like a bare HTTP/1.1 client: no proxy, no redirects followed, no
//! decompression (the crate has no compression features), no connection
//! reuse. Each call blocks; none may be made inside an async runtime.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;

/// How long a connection to a loopback port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client every request shares (each one still gets a fresh
/// connection: the pool keeps none idle).
fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // reqwest is built with `rustls-no-provider` (as imd-analyzer wants
        // it); it needs a process-wide provider even for plain HTTP. An
        // error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent("imd-tests")
            .build()
            .expect("building the test HTTP client")
    })
}

/// An HTTP response as a test checks it.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body as sent (de-chunked, not decompressed).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (any case), if its value is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `method path` on `127.0.0.1:port` with the extra request `headers` and
/// `body` (none for `GET`), within `timeout` in all.
fn request(
    method: reqwest::Method,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    timeout: Duration,
) -> std::io::Result<Response> {
    let mut req = client()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .header("connection", "close")
        .timeout(timeout);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        // A body of known length, so that even an empty one is sent with
        // `Content-Length: 0` (servers may insist on it for a POST).
        req = req.body(body.to_string());
    }
    let resp = req.send().map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().map_err(std::io::Error::other)?.to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `GET path` on `127.0.0.1:port` with extra request headers, within
/// `timeout` in all.
fn get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> std::io::Result<Response> {
    request(reqwest::Method::GET, port, path, headers, None, timeout)
}

/// `POST path` on `127.0.0.1:port` with extra request headers and `body`
/// (may be empty; 30 s at the most), e.g. for lifecycle endpoints.
pub fn http_post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<Response> {
    request(
        reqwest::Method::POST,
        port,
        path,
        headers,
        Some(body),
        Duration::from_secs(30),
    )
}

/// `GET path` on `127.0.0.1:port` with extra request headers (20 s at the
/// most): status, headers and body, for tests that check all three.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    get(port, path, headers, Duration::from_secs(20))
}

/// Status and body (lossy UTF-8) of a plain `GET path` on `127.0.0.1:port`
/// (5 s at the most), for polling and reading `/metrics` or an API.
pub fn http_get_text(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let r = get(port, path, &[], Duration::from_secs(5))?;
    Ok((r.status, r.text()))
}

/// Status code of a plain `GET path` on `127.0.0.1:port` (5 s at the
/// most), for readiness probes.
pub fn http_get_status(port: u16, path: &str) -> std::io::Result<u16> {
    http_get_text(port, path).map(|(status, _)| status)
}

/// Percent-encodes `s` for a URL query value (RFC 3986 unreserved kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Serves one connection on a free loopback port with `answer`, and
    /// returns the port and (through the handle) the request head it read.
    fn one_shot(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 1024];
            while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the request ended early");
                raw.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).unwrap();
            String::from_utf8_lossy(&raw).to_ascii_lowercase()
        });
        (port, h)
    }

    #[test]
    fn redirects_are_not_followed_and_chunked_bodies_are_joined() {
        let (port, h) = one_shot(
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nX-Thing: a\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        let r = http_get(
            port,
            "/metrics?collect[]=cpu",
            &[("Authorization", "Basic eA==")],
        )
        .unwrap();
        let head = h.join().unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("x-thing"), Some("a"));
        assert_eq!(r.body, b"abcde");
        assert!(
            head.starts_with("get /metrics?collect[]=cpu http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nauthorization: basic ea==\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(!head.contains("accept-encoding"), "{head}");
    }

    #[test]
    fn posts_send_their_length_and_a_refused_port_is_an_error() {
        let (port, h) = one_shot(b"HTTP/1.0 403 Forbidden\r\n\r\nno");
        let r = http_post(port, "/-/reload", &[], "").unwrap();
        let head = h.join().unwrap();
        assert_eq!((r.status, r.text().as_str()), (403, "no"));
        assert!(head.starts_with("post /-/reload "), "{head}");
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        let closed = crate::free_port();
        assert!(http_get_status(closed, "/").is_err());
    }

    #[test]
    fn url_encode_keeps_only_unreserved_bytes() {
        assert_eq!(
            url_encode("a-Z_0.~ {x=\"é\"}"),
            "a-Z_0.~%20%7Bx%3D%22%C3%A9%22%7D"
        );
    }
}
