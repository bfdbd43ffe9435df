//! The Prometheus text-format parser (textfiles) on arbitrary text: never a
//! panic, and what it accepts is written back in a form it accepts again.
#![no_main]

use imd_exporter::exposition::parse::parse_text;
use imd_exporter::exposition::{Format, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(families) = parse_text(text) {
        let written = encode(&families, Format::Text);
        if let Err(e) = parse_text(&written) {
            panic!("re-parsing our own output failed: {e}\ninput: {text:?}\noutput: {written:?}");
        }
    }
});
