//! The SMS bridge's webhook (Alertmanager's notification JSON, from the
//! network) on arbitrary bytes: read with an error for anything malformed,
//! never a panic; the message made from what it accepts is cut to any
//! length on a character boundary, marked when cut.
#![no_main]

use imd_analyzer::alert::sms::{Notification, message_text, truncate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&max, body)) = data.split_first() else {
        return;
    };
    let Ok(n) = serde_json::from_slice::<Notification>(body) else {
        return;
    };
    let text = message_text(&n);
    let max = usize::from(max);
    let (cut, was_cut) = truncate(&text, max);
    let chars = text.chars().count();
    assert_eq!(was_cut, chars > max, "{text:?} to {max}");
    if was_cut {
        assert_eq!(cut.chars().count(), max, "{text:?} to {max}");
        let kept = cut.strip_suffix('…').unwrap_or_default();
        assert!(max == 0 || cut.ends_with('…'), "{cut:?}");
        assert!(text.starts_with(kept), "{text:?} to {cut:?}");
    } else {
        assert_eq!(cut, text);
    }
});
