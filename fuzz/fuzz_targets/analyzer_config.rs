//! The analyzer's configuration loader on arbitrary YAML: parsed, validated
//! and turned into queries, with an error naming the key, never a panic.
//! The SMS bridge's configuration (`sms-bridge --config.file`) likewise.
#![no_main]

use std::path::Path;

use imd_analyzer::alert::sms::SmsBridgeConfig;
use imd_analyzer::config::Config;
use imd_exporter::config::parse_yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yml");
    if let Ok(config) = parse_yaml::<Config>(file, text)
        && config.validate(file).is_ok()
    {
        // A valid configuration yields every query it lists.
        assert_eq!(config.queries().len(), config.queries.len());
    }
    if let Ok(bridge) = parse_yaml::<SmsBridgeConfig>(file, text) {
        let _ = bridge.validate();
    }
});
