//! The exporter's configuration loader on arbitrary YAML, with the `logs:`
//! section's rules compiled (regexes, names, buckets): an error naming the
//! key, never a panic.
#![no_main]

use std::path::Path;

use imd_exporter::collectors::logs::LogsConfig;
use imd_exporter::config::{Config, parse_yaml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yml");
    if let Ok(logs) = parse_yaml::<LogsConfig>(file, text) {
        let _ = logs.validate();
    }
    if let Ok(config) = parse_yaml::<Config>(file, text) {
        let _ = config.validate(file);
    }
});
