//! Throwaway TLS material for tests, made with the `openssl` CLI (a CI
//! dependency): a private CA, a server certificate for 127.0.0.1 and a
//! client certificate, all signed by that CA.

use std::path::{Path, PathBuf};

use super::{require_tool, run_ok};

/// Files written by [`server_cert`].
pub struct ServerPki {
    /// The CA certificate (what a client trusts: `tls_config.ca_file`, and
    /// what a server checks client certificates against).
    pub ca: PathBuf,
    /// The server certificate, for `IP:127.0.0.1`.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
    /// A client certificate (`extendedKeyUsage=clientAuth`).
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

/// Options of `openssl req` for a new P-256 key without a passphrase.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Writes into `dir` a CA (`ca.crt`, `ca.key`), a server certificate for
/// `IP:127.0.0.1` (`server.crt`, `server.key`) and a client certificate
/// (`client.crt`, `client.key`) signed by it, valid for two days.
pub fn server_cert(dir: &Path) -> ServerPki {
    let openssl = require_tool("openssl");
    let p = |f: &str| dir.join(f).to_str().expect("utf-8 path").to_string();
    let (ca_key, ca_crt) = (p("ca.key"), p("ca.crt"));
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_EC_KEY);
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
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, crt, extf) = (
            p(&format!("{name}.key")),
            p(&format!("{name}.csr")),
            p(&format!("{name}.crt")),
            p(&format!("{name}.ext")),
        );
        std::fs::write(&extf, ext).expect("writing the certificate extensions");
        let subj = format!("/CN=imd test {name}");
        let mut args = vec!["req"];
        args.extend(NEW_EC_KEY);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
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
                &extf,
            ],
        );
    }
    ServerPki {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}
