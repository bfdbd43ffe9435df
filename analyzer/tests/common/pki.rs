//! Throwaway TLS material for tests, made with the `openssl` CLI (a CI
//! dependency): a private CA and a server certificate for 127.0.0.1.

use std::path::{Path, PathBuf};

use super::{require_tool, run_ok};

/// Files written by [`server_cert`].
pub struct ServerPki {
    /// The CA certificate (what a client trusts: `tls_config.ca_file`).
    pub ca: PathBuf,
    /// The server certificate, for `IP:127.0.0.1`.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// Writes a CA (`ca.crt`, `ca.key`) and a server certificate for
/// `IP:127.0.0.1` signed by it (`server.crt`, `server.key`) into `dir`,
/// both valid for two days, with P-256 keys.
pub fn server_cert(dir: &Path) -> ServerPki {
    let openssl = require_tool("openssl");
    let p = |f: &str| dir.join(f).to_str().expect("utf-8 path").to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
        "-days",
        "2",
        "-subj",
        "/CN=imd test CA",
    ]);
    run_ok(&openssl, &args);
    let (key, csr, crt, ext) = (
        p("server.key"),
        p("server.csr"),
        p("server.crt"),
        p("server.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("writing the certificate extensions");
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &key,
        "-out",
        &csr,
        "-subj",
        "/CN=imd test server",
    ]);
    run_ok(&openssl, &args);
    run_ok(
        &openssl,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    ServerPki {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}
