//! No secret is ever logged, published or shown: the real imd-analyzer runs
//! at `--log.level=debug` with a basic-auth password, inline and file bearer
//! tokens, Alertmanager passwords and remote-write tokens, against a real
//! Prometheus, a closed port and a loopback server answering 401 or 200. The
//! secrets must reach the servers (checked, so the test cannot pass by not
//! using them) and appear nowhere in the analyzer's stdout, stderr,
//! `/metrics`, page or `--check-config` errors.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{
    build_recent_tsdb, free_port, http_get, start_analyzer, start_prometheus_on, tempdir, wait_for,
};

const SRC_PASSWORD: &str = "srcpw-Q7v2kX9";
const SRC_TOKEN: &str = "srctok-Lm4pR8s";
const SRC_FILE_TOKEN: &str = "srcfiletok-Zt5nW1c";
const AM_PASSWORD: &str = "ampw-Hy3dF6g";
const AM_FILE_PASSWORD: &str = "amfilepw-Ke8uJ2b";
const RW_TOKEN: &str = "rwtok-Vb9qN4x";
const RW_FILE_TOKEN: &str = "rwfiletok-Pc6mT3y";

const ALL_SECRETS: &[&str] = &[
    SRC_PASSWORD,
    SRC_TOKEN,
    SRC_FILE_TOKEN,
    AM_PASSWORD,
    AM_FILE_PASSWORD,
    RW_TOKEN,
    RW_FILE_TOKEN,
];

/// Every form a secret could leak in: as is, and inside a basic-auth
/// header value.
fn forms(secret: &str) -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        secret.to_string(),
        b64(&format!("imd:{secret}")),
        b64(&format!("am:{secret}")),
    ]
}

fn assert_no_secret(what: &str, text: &str) {
    for s in ALL_SECRETS {
        for f in forms(s) {
            assert!(
                !text.contains(&f),
                "{what} contains the secret {f:?}:\n{}",
                &text[text.find(&f).unwrap_or(0).saturating_sub(300)..]
                    .chars()
                    .take(800)
                    .collect::<String>()
            );
        }
    }
}

/// A loopback HTTP server answering every request with `status`, keeping
/// each request's head (request line and headers).
struct Server {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(status: u16) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, status, &kept));
            }
        });
        Server { port, heads }
    }

    fn saw(&self, needle: &str) -> bool {
        self.heads
            .lock()
            .unwrap()
            .iter()
            .any(|h| h.contains(needle))
    }
}

/// Serves requests on one connection (keep-alive) until it closes.
fn serve(stream: std::net::TcpStream, status: u16, kept: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        kept.lock().unwrap().push(head);
        let reason = if status == 200 { "OK" } else { "Unauthorized" };
        let answer = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn analyzer_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_imd-analyzer"))
}

/// The configuration with every kind of secret, `ok` and `denied` being
/// the 200 and 401 servers, `closed` a port nobody listens on.
fn config(dir: &Path, prom: u16, ok: u16, denied: u16, closed: u16) -> String {
    let file = |name: &str, secret: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{secret}\n")).unwrap();
        p.display().to_string()
    };
    let src_token_file = file("src.token", SRC_FILE_TOKEN);
    let am_password_file = file("am.password", AM_FILE_PASSWORD);
    let rw_token_file = file("rw.token", RW_FILE_TOKEN);
    format!(
        "global:
  infer_every: 1s
  lookback_delta: 10m
sources:
  - name: prom
    url: http://127.0.0.1:{prom}
    timeout: 2s
    basic_auth: {{username: imd, password: {SRC_PASSWORD}}}
  - name: closed
    url: http://127.0.0.1:{closed}
    timeout: 1s
    bearer_token: {SRC_TOKEN}
  - name: denied
    url: http://127.0.0.1:{denied}
    timeout: 1s
    bearer_token_file: {src_token_file}
queries:
  - name: good
    source: prom
    selector: secret_test_metric
    history: 1h
    params: {{min_points: 5}}
  - name: unreachable
    source: closed
    selector: up
    history: 1h
  - name: refused
    source: denied
    selector: up
    history: 1h
alerting:
  resend_delay: 1s
  alertmanagers:
    - url: http://127.0.0.1:{ok}
      timeout: 1s
      basic_auth: {{username: am, password: {AM_PASSWORD}}}
    - url: http://127.0.0.1:{closed}
      timeout: 1s
      basic_auth: {{username: am, password_file: {am_password_file}}}
    - url: http://127.0.0.1:{denied}
      timeout: 1s
      basic_auth: {{username: am, password: {AM_PASSWORD}}}
  rules:
    - alert: SecretTest
      score_above: 0.000001
output:
  remote_write:
    - url: http://127.0.0.1:{denied}/api/v1/write
      timeout: 1s
      bearer_token: {RW_TOKEN}
    - url: http://127.0.0.1:{ok}/api/v1/write
      timeout: 1s
      bearer_token_file: {rw_token_file}
    - url: http://127.0.0.1:{closed}/api/v1/write
      timeout: 1s
      bearer_token: {RW_TOKEN}
"
    )
}

#[test]
fn secrets_reach_the_servers_and_appear_nowhere_else() {
    let dir = tempdir();
    let d = dir.path();
    let tsdb = build_recent_tsdb(
        d,
        &[("secret_test_metric", "a"), ("secret_test_metric", "b")],
        40,
        |i, k| (i as f64 + 1.0) * 10.0 + (k % 7) as f64,
    );
    let prom_port = free_port();
    let _prom = start_prometheus_on(&tsdb, d, prom_port, &[]);
    let ok = Server::start(200);
    let denied = Server::start(401);
    let closed = free_port();
    let cfg = d.join("analyzer.yml");
    std::fs::write(&cfg, config(d, prom_port, ok.port, denied.port, closed)).unwrap();

    // The configuration is valid, and checking it prints no secret.
    let check = std::process::Command::new(analyzer_bin())
        .args([
            format!("--config.file={}", cfg.display()),
            "--check-config".to_string(),
            "--log.level=debug".to_string(),
        ])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "--check-config failed:\n{printed}");
    assert_no_secret("--check-config output", &printed);

    let (mut an, port) = start_analyzer(&cfg, d, &["--log.level=debug"]);

    // The secrets are in use: each server got its credentials.
    wait_for("the alert and remote write with credentials", 60, || {
        ok.saw(&basic("am", AM_PASSWORD))
            && ok.saw(&format!("Bearer {RW_FILE_TOKEN}"))
            && denied.saw(&format!("Bearer {SRC_FILE_TOKEN}"))
            && denied.saw(&format!("Bearer {RW_TOKEN}"))
            && denied.saw(&basic("am", AM_PASSWORD))
    });
    assert!(ok.saw("POST /api/v2/alerts"), "alerts were posted");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains("imd_read_errors_total{source=\"closed\""),
        "the closed source failed:\n{metrics}"
    );
    assert!(
        metrics.contains("imd_anomaly_score{"),
        "the good source was scored"
    );
    // Let a few more failing cycles (and retries, and debug logs) happen.
    std::thread::sleep(Duration::from_secs(3));

    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_no_secret("/metrics", &metrics);
    for path in ["/", "/?query=good", "/api/v1/status/config", "/-/ready"] {
        if let Ok((_, page)) = http_get(port, path) {
            assert_no_secret(path, &page);
        }
    }
    an.stop();
    let stderr = std::fs::read_to_string(d.join("imd-analyzer.stderr")).unwrap();
    let stdout = std::fs::read_to_string(d.join("imd-analyzer.stdout")).unwrap();
    assert!(
        stderr.contains("level=debug"),
        "debug logging was on:\n{stderr}"
    );
    assert_no_secret("stderr", &stderr);
    assert_no_secret("stdout", &stdout);
}

#[test]
fn config_errors_near_a_secret_do_not_show_it() {
    let dir = tempdir();
    let d = dir.path();
    let token_file = d.join("token");
    std::fs::write(&token_file, SRC_FILE_TOKEN).unwrap();
    let head = "queries:\n  - name: q\n    selector: up\nsources:\n  - name: s\n    url: http://127.0.0.1:9\n";
    let cases = [
        // Both an inline token and a file.
        format!(
            "    bearer_token: {SRC_TOKEN}\n    bearer_token_file: {}\n",
            token_file.display()
        ),
        // Basic auth and a bearer token.
        format!(
            "    bearer_token: {SRC_TOKEN}\n    basic_auth: {{username: u, password: {SRC_PASSWORD}}}\n"
        ),
        // An unknown key next to a password.
        format!(
            "    basic_auth: {{username: u, password: {SRC_PASSWORD}, pasword: {SRC_TOKEN}}}\n"
        ),
        // A password of the wrong type.
        format!("    basic_auth: {{username: u, password: [{SRC_PASSWORD}]}}\n"),
        // A token of the wrong type.
        format!("    bearer_token: {{{SRC_TOKEN}: 1}}\n"),
        // Broken YAML on the secret's line.
        format!("    bearer_token: \"{SRC_TOKEN}\n    timeout: 1s\n"),
        format!("    bearer_token: {SRC_TOKEN}: [\n"),
        // An invalid key after the secret.
        format!("    bearer_token: {SRC_TOKEN}\n    timeout: soon\n"),
        // An unreadable password file, and a password in a header.
        format!(
            "    basic_auth: {{username: u, password_file: {}/missing}}\n    headers: {{Authorization: {RW_TOKEN}}}\n",
            d.display()
        ),
    ];
    for (i, case) in cases.iter().enumerate() {
        let cfg = d.join(format!("bad{i}.yml"));
        std::fs::write(&cfg, format!("{head}{case}")).unwrap();
        let out = std::process::Command::new(analyzer_bin())
            .args([
                format!("--config.file={}", cfg.display()),
                "--check-config".to_string(),
                "--log.level=debug".to_string(),
            ])
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "case {i} should be invalid:\n{case}\n{printed}"
        );
        assert!(
            printed.contains("sources") || printed.contains("line"),
            "case {i}: the error says where:\n{printed}"
        );
        assert_no_secret(&format!("case {i} ({case:?})"), &printed);
    }
}
