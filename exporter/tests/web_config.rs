//! `--web.config.file` end to end: TLS, client certificates, basic auth,
//! extra headers and config checking, against a real imd-exporter process
//! with certificates made by the `openssl` CLI and requests made by `curl`.

mod common;

use std::path::{Path, PathBuf};

use common::{
    Proc, free_port, http_get, imd_exporter_bin, pki, require_tool, run, start_imd, tempdir,
};

/// A CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate signed by it, plus a client certificate from another CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// The shared CA, server and client certificates, plus a CA of its own
/// ("rogue-ca") and a client certificate it signed.
fn make_pki(dir: &Path) -> Pki {
    pki::server_cert(dir);
    pki::make_ca(dir, "rogue-ca");
    pki::make_leaf(dir, "rogue-ca", "rogue-client", pki::CLIENT_EXT);
    Pki {
        dir: dir.to_path_buf(),
    }
}

/// What curl got: its exit code, the HTTP status (0 when none), the response
/// headers and body.
struct CurlResult {
    code: i32,
    status: u16,
    headers: String,
    body: String,
    stderr: String,
}

fn curl(dir: &Path, url: &str, extra: &[&str]) -> CurlResult {
    let headers = dir.join("curl-headers.txt");
    let body = dir.join("curl-body.txt");
    let _ = std::fs::remove_file(&headers);
    let _ = std::fs::remove_file(&body);
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "-D".into(),
        headers.display().to_string(),
        "-o".into(),
        body.display().to_string(),
        "-w".into(),
        "%{http_code}".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url.to_string());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&require_tool("curl"), &arg_refs);
    CurlResult {
        code: out.status.code().unwrap_or(-1),
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&headers)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        body: std::fs::read_to_string(&body).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts imd-exporter with a web config; readiness is polled with curl
/// since the port may speak TLS only.
fn start_with_web_config(
    dir: &Path,
    port: u16,
    web_yml: &str,
    ready_args: &[&str],
    scheme: &str,
) -> Proc {
    let web = dir.join("web.yml");
    std::fs::write(&web, web_yml).expect("writing web.yml");
    let args = vec![
        format!("--web.listen-address=127.0.0.1:{port}"),
        format!("--storage.path={}", dir.join("state").display()),
        format!("--web.config.file={}", web.display()),
        "--collector.disable-defaults".to_string(),
        "--collector.loadavg".to_string(),
    ];
    let mut p = Proc::spawn("imd-exporter", &imd_exporter_bin(), &args, dir);
    let url = format!("{scheme}://127.0.0.1:{port}/-/healthy");
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = p.exited() {
            panic!("imd-exporter exited with {s}\nstderr:\n{}", p.stderr());
        }
        let r = curl(dir, &url, ready_args);
        if r.status == 200 {
            return p;
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            panic!(
                "imd-exporter not ready at {url}: curl {} {}\nstderr:\n{}",
                r.code,
                r.stderr,
                p.stderr()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn tls_only_serves_https_and_refuses_plain_http() {
    let dir = tempdir();
    let pki = make_pki(dir.path());
    let port = free_port();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        pki.file("server.crt"),
        pki.file("server.key")
    );
    let ca = pki.file("ca.crt");
    let _p = start_with_web_config(dir.path(), port, &web, &["--cacert", &ca], "https");

    let ok = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/metrics"),
        &["--cacert", &ca],
    );
    assert_eq!(
        ok.status, 200,
        "https with the CA: curl exit {} {}",
        ok.code, ok.stderr
    );
    assert!(
        ok.body.contains("node_load1 "),
        "metrics over TLS:\n{}",
        ok.body
    );

    // HTTP/1.1 over TLS as well as the HTTP/2 curl picks by ALPN.
    let h1 = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/metrics"),
        &["--cacert", &ca, "--http1.1"],
    );
    assert_eq!(h1.status, 200, "https/1.1: {}", h1.stderr);

    // The server's certificate is checked by the client: without the CA it fails.
    let untrusted = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/metrics"),
        &[],
    );
    assert_ne!(
        untrusted.code, 0,
        "a certificate from an unknown CA must not be trusted"
    );

    // Plain HTTP to a TLS port never gets metrics.
    let plain = http_get(port, "/metrics", &[]);
    // An error (connection closed on the non-TLS bytes) is a refusal too.
    if let Ok(r) = plain {
        assert!(
            r.status != 200 && !r.text().contains("node_load1"),
            "plain HTTP got {}",
            r.status
        );
    }
    let plain_curl = curl(dir.path(), &format!("http://127.0.0.1:{port}/metrics"), &[]);
    assert_ne!(
        plain_curl.status, 200,
        "plain HTTP must fail on a TLS listener"
    );
}

#[test]
fn basic_auth_checks_bcrypt_passwords() {
    let dir = tempdir();
    let port = free_port();
    let hash = bcrypt::hash("s3cret pass", 4).expect("bcrypt hash");
    let web = format!(
        "basic_auth_users:\n  alice: '{hash}'\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
    );
    let _p = start_with_web_config(dir.path(), port, &web, &["-u", "alice:s3cret pass"], "http");

    let none = http_get(port, "/metrics", &[]).expect("GET without credentials");
    assert_eq!(none.status, 401, "no credentials");
    assert!(
        none.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "401 must ask for basic auth: {:?}",
        none.headers
    );
    assert!(!none.text().contains("node_load1"));

    let basic = |user_pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let wrong = http_get(
        port,
        "/metrics",
        &[("Authorization", &basic("alice:wrong"))],
    )
    .expect("GET wrong password");
    assert_eq!(wrong.status, 401, "wrong password");
    let unknown = http_get(
        port,
        "/metrics",
        &[("Authorization", &basic("mallory:s3cret pass"))],
    )
    .expect("GET unknown user");
    assert_eq!(unknown.status, 401, "unknown user");
    let garbage = http_get(
        port,
        "/metrics",
        &[("Authorization", "Basic !!!not-base64")],
    )
    .expect("GET garbage");
    assert_eq!(garbage.status, 401, "undecodable credentials");

    for attempt in 0..2 {
        // The second time is served from the verified-credentials cache.
        let right = http_get(
            port,
            "/metrics",
            &[("Authorization", &basic("alice:s3cret pass"))],
        )
        .expect("GET right password");
        assert_eq!(right.status, 200, "right password (attempt {attempt})");
        assert!(right.text().contains("node_load1 "));
        assert_eq!(right.header("x-content-type-options"), Some("nosniff"));
    }
    // The scheme name is case-insensitive.
    let lower = basic("alice:s3cret pass").replacen("Basic", "basic", 1);
    let r =
        http_get(port, "/metrics", &[("Authorization", &lower)]).expect("GET lower-case scheme");
    assert_eq!(r.status, 200, "lower-case `basic` scheme");

    // A cached success must not open the door for another password.
    let wrong_again = http_get(
        port,
        "/metrics",
        &[("Authorization", &basic("alice:s3cret pas"))],
    )
    .expect("GET wrong again");
    assert_eq!(wrong_again.status, 401);

    let via_curl = curl(
        dir.path(),
        &format!("http://127.0.0.1:{port}/metrics"),
        &["-u", "alice:s3cret pass"],
    );
    assert_eq!(via_curl.status, 200);
}

#[test]
fn client_certificates_are_required_and_verified() {
    let dir = tempdir();
    let pki = make_pki(dir.path());
    let port = free_port();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
        pki.file("server.crt"),
        pki.file("server.key"),
        pki.file("ca.crt")
    );
    let ca = pki.file("ca.crt");
    let (cert, key) = (pki.file("client.crt"), pki.file("client.key"));
    let _p = start_with_web_config(
        dir.path(),
        port,
        &web,
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
        "https",
    );
    let url = format!("https://127.0.0.1:{port}/metrics");

    let with = curl(
        dir.path(),
        &url,
        &["--cacert", &ca, "--cert", &cert, "--key", &key],
    );
    assert_eq!(
        with.status, 200,
        "with a client certificate: curl exit {} {}",
        with.code, with.stderr
    );
    assert!(with.body.contains("node_load1 "));

    for tls in ["--tlsv1.2", "--tlsv1.3"] {
        let max = if tls == "--tlsv1.2" { "1.2" } else { "1.3" };
        let without = curl(dir.path(), &url, &["--cacert", &ca, tls, "--tls-max", max]);
        assert_ne!(
            without.code, 0,
            "{tls}: the handshake must fail without a client certificate"
        );
        assert_ne!(without.status, 200);
    }

    let rogue = curl(
        dir.path(),
        &url,
        &[
            "--cacert",
            &ca,
            "--cert",
            &pki.file("rogue-client.crt"),
            "--key",
            &pki.file("rogue-client.key"),
        ],
    );
    assert_ne!(
        rogue.code, 0,
        "a client certificate from another CA must be refused"
    );
    assert_ne!(rogue.status, 200);
}

#[test]
fn invalid_web_config_is_reported_with_file_and_key() {
    let dir = tempdir();
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown-key.yml",
            "tls_server_config:\n  cert_fil: a.crt\n  key_file: a.key\n",
            "cert_fil",
        ),
        (
            "missing-key.yml",
            "tls_server_config:\n  cert_file: a.crt\n",
            "tls_server_config.key_file",
        ),
        (
            "plain-password.yml",
            "basic_auth_users:\n  bob: hunter2\n",
            "basic_auth_users.bob",
        ),
        (
            "bad-auth-type.yml",
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: Sometimes\n",
            "tls_server_config.client_auth_type",
        ),
        (
            "missing-files.yml",
            "tls_server_config:\n  cert_file: does-not-exist.crt\n  key_file: does-not-exist.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "bad-header.yml",
            "http_server_config:\n  headers:\n    'Bad Header': x\n",
            "http_server_config.headers",
        ),
        ("not-a-map.yml", "- just\n- a list\n", "web config"),
    ];
    for (name, text, key) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("writing web config");
        let out = run(
            &imd_exporter_bin(),
            &[
                "--check-config",
                &format!("--web.config.file={}", file.display()),
                &format!("--storage.path={}", dir.path().join("state").display()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: --check-config must fail; stderr: {stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "{name}: message must name the file: {stderr}"
        );
        if *key != "web config" {
            assert!(
                stderr.contains(key),
                "{name}: message must name `{key}`: {stderr}"
            );
        }
    }

    // Certificate files that exist but do not belong together.
    let pki = make_pki(dir.path());
    let mismatched = dir.path().join("mismatched.yml");
    std::fs::write(
        &mismatched,
        "tls_server_config:\n  cert_file: client.crt\n  key_file: server.key\n",
    )
    .expect("writing");
    let out = run(
        &imd_exporter_bin(),
        &[
            "--check-config",
            &format!("--web.config.file={}", mismatched.display()),
            &format!("--storage.path={}", dir.path().join("state").display()),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("mismatched.yml")
            && stderr.contains("tls_server_config"),
        "{stderr}"
    );

    // A valid one passes the check.
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n",
    )
    .expect("writing good.yml");
    drop(pki);
    let out = run(
        &imd_exporter_bin(),
        &[
            "--check-config",
            &format!("--web.config.file={}", good.display()),
            &format!("--storage.path={}", dir.path().join("state").display()),
        ],
    );
    assert!(
        out.status.success(),
        "valid web config: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // And serving with an invalid one stops at start, naming the file.
    let bad = dir.path().join("missing-key.yml");
    let port = free_port();
    let mut p = Proc::spawn(
        "imd-exporter-bad",
        &imd_exporter_bin(),
        [
            format!("--web.listen-address=127.0.0.1:{port}"),
            format!("--web.config.file={}", bad.display()),
            format!("--storage.path={}", dir.path().join("state").display()),
        ],
        dir.path(),
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = p.exited() {
            break s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "imd-exporter kept running with an invalid web config"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(p.stderr().contains("missing-key.yml"), "{}", p.stderr());
}

#[test]
fn configured_headers_are_added_to_every_response() {
    let dir = tempdir();
    let pki = make_pki(dir.path());
    let port = free_port();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nhttp_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n    X-Frame-Options: deny\n",
        pki.file("server.crt"),
        pki.file("server.key")
    );
    let ca = pki.file("ca.crt");
    let _p = start_with_web_config(dir.path(), port, &web, &["--cacert", &ca], "https");
    for path in ["/metrics", "/", "/-/ready", "/no-such-page"] {
        let r = curl(
            dir.path(),
            &format!("https://127.0.0.1:{port}{path}"),
            &["--cacert", &ca],
        );
        assert_ne!(r.status, 0, "{path}: {}", r.stderr);
        assert!(
            r.headers
                .contains("strict-transport-security: max-age=31536000; includesubdomains"),
            "{path}: headers were\n{}",
            r.headers
        );
        assert!(
            r.headers.contains("x-frame-options: deny"),
            "{path}: headers were\n{}",
            r.headers
        );
    }
}

#[test]
fn plain_http_without_web_config_still_works() {
    let dir = tempdir();
    let port = free_port();
    let _p = start_imd(
        dir.path(),
        port,
        &[
            "--collector.disable-defaults".into(),
            "--collector.loadavg".into(),
        ],
    );
    let r = http_get(port, "/metrics", &[]).expect("GET /metrics");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("node_load1 "));
    assert!(r.header("www-authenticate").is_none());
}

/// Reads from `stream` until the server closes it; returns how long that took.
fn time_until_closed(mut stream: std::net::TcpStream) -> std::time::Duration {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(25)))
        .expect("read timeout");
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue, // e.g. a 408 answer before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!(
                "the server kept an idle connection open: {e} after {:?}",
                start.elapsed()
            ),
        }
    }
}

#[test]
fn clients_that_never_start_tls_are_disconnected() {
    let dir = tempdir();
    let pki = make_pki(dir.path());
    let port = free_port();
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        pki.file("server.crt"),
        pki.file("server.key")
    );
    let ca = pki.file("ca.crt");
    let _p = start_with_web_config(dir.path(), port, &web, &["--cacert", &ca], "https");

    // A client that connects and never starts the TLS handshake is dropped
    // after the handshake timeout (10 s), not held forever.
    let silent = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let took = time_until_closed(silent);
    assert!(
        took >= std::time::Duration::from_secs(5),
        "closed after {took:?}, before any timeout"
    );
    println!("a connection that never started TLS was closed after {took:?}");

    // The server still serves afterwards.
    let ok = curl(
        dir.path(),
        &format!("https://127.0.0.1:{port}/metrics"),
        &["--cacert", &ca],
    );
    assert_eq!(ok.status, 200, "{}", ok.stderr);
}
