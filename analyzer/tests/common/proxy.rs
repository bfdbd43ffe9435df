//! A loopback HTTP/1.1 front for tests that need a gateway in the path
//! (a multi-tenant front like Mimir's or Cortex's, an auth proxy): each
//! request's head is shown to a routing function that either names the
//! upstream port to forward it to, unchanged, or answers it itself (e.g.
//! 401). Hand-written rather than a proxy crate because it is a few dozen
//! lines of blocking I/O and the tests need to see every decision.
//!
//! Limits, fine for the analyzer's clients: request bodies must come with
//! `Content-Length` (no chunked uploads), and each connection carries one
//! request (`Connection: close` both ways).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the routing function sees it.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Header names in lower case, with their values.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// What to do with a request: forward it to `127.0.0.1:port`, or answer it
/// with a status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward to this loopback port.
    Forward(u16),
    /// Answer with this status and body.
    Answer(u16, String),
}

/// A running front; stops when dropped.
pub struct Proxy {
    /// The loopback port it listens on.
    pub port: u16,
    log: Arc<Mutex<Vec<(RequestHead, Route)>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Every request so far and what was done with it.
    pub fn requests(&self) -> Vec<(RequestHead, Route)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Starts a front on a free loopback port that routes each request with
/// `route`.
pub fn start_proxy(route: impl Fn(&RequestHead) -> Route + Send + Sync + 'static) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy port");
    let port = listener.local_addr().expect("proxy address").port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let route = Arc::new(route);
    {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (log, route) = (log.clone(), route.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &*route, &log);
                });
            }
        });
    }
    Proxy { port, log, stop }
}

fn serve(
    mut client: TcpStream,
    route: &dyn Fn(&RequestHead) -> Route,
    log: &Mutex<Vec<(RequestHead, Route)>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let text = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let head = RequestHead {
        method: first.next().unwrap_or("").to_string(),
        target: first.next().unwrap_or("").to_string(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
    };
    let length: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < end + 4 + length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let decision = route(&head);
    log.lock().unwrap().push((head.clone(), decision.clone()));
    match decision {
        Route::Answer(status, body) => write!(
            client,
            "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        Route::Forward(port) => {
            let mut upstream = TcpStream::connect(("127.0.0.1", port))?;
            write!(upstream, "{} {} HTTP/1.1\r\n", head.method, head.target)?;
            for (k, v) in head.headers.iter().filter(|(k, _)| k != "connection") {
                write!(upstream, "{k}: {v}\r\n")?;
            }
            upstream.write_all(b"Connection: close\r\n\r\n")?;
            upstream.write_all(&raw[end + 4..])?;
            std::io::copy(&mut upstream, &mut client)?;
            Ok(())
        }
    }
}
