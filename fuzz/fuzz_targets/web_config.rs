//! The `--web.config.file` loader (exporter-toolkit's format, and imd's
//! `roles` and `trusted_proxy`) on arbitrary YAML, inline PEM certificates
//! and keys included: an error naming the key, never a panic.
#![no_main]

use std::path::Path;

use imd_exporter::config::parse_yaml;
use imd_exporter::web::config::WebConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("/nonexistent/web-config.yml");
    // The target reads no files: a config naming certificate files (which
    // could name a device or a FIFO) is left to the unit tests.
    if let Ok(c) = parse_yaml::<WebConfig>(file, text)
        && c.tls_server_config.as_ref().is_some_and(|t| {
            t.cert_file.is_some() || t.key_file.is_some() || t.client_ca_file.is_some()
        })
    {
        return;
    }
    if let Ok(c) = WebConfig::parse(file, text)
        && let Some(proxy) = &c.trusted_proxy
    {
        // A valid config's proxy addresses all parse.
        assert_eq!(proxy.networks().len(), proxy.trusted_proxies.len());
    }
});
