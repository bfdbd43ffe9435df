//! Throwaway TLS material for tests, made with the `openssl` CLI (a CI
//! dependency): P-256 keys, CAs and leaf certificates valid for two days,
//! written as `<name>.key` / `<name>.crt` into a test's dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::require_tool;

/// Extensions of a server certificate for the loopback address.
pub const SERVER_EXT: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n";

/// Extensions of a client certificate.
pub const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n";

/// Runs `openssl` with `args` in `dir`, so that file names are relative to
/// it, failing the test with what it said if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require_tool("openssl"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a new P-256 key without a passphrase to `dir/<name>.key`.
fn new_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ],
    );
}

/// Writes a self-signed CA `dir/<name>.crt` (subject `CN=<name>`) and its
/// key `dir/<name>.key`, to sign leaves with [`make_leaf`].
pub fn make_ca(dir: &Path, name: &str) {
    new_key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// Writes a certificate `dir/<name>.crt` (subject `CN=<name>`, with the
/// X.509 extensions `ext`, one `key=value` a line) signed by the CA `ca`
/// of the same dir, and its key `dir/<name>.key`.
pub fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) {
    new_key(dir, name);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(dir.join(format!("{name}.ext")), ext).expect("writing the extension file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// Files written by [`server_cert`].
pub struct ServerPki {
    /// The CA certificate (what a client trusts: `tls_config.ca_file`, and
    /// what a server checks client certificates against).
    pub ca: PathBuf,
    /// The server certificate, for `IP:127.0.0.1` and `DNS:localhost`.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// A client certificate (`extendedKeyUsage=clientAuth`).
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

/// Writes into `dir` a CA (`ca.crt`, `ca.key`), a server certificate for
/// the loopback address (`server.crt`, `server.key`) and a client
/// certificate (`client.crt`, `client.key`) signed by it, for a TLS server
/// that a test talks to and that may check client certificates.
pub fn server_cert(dir: &Path) -> ServerPki {
    make_ca(dir, "ca");
    make_leaf(dir, "ca", "server", SERVER_EXT);
    make_leaf(dir, "ca", "client", CLIENT_EXT);
    ServerPki {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}
