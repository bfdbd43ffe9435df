//! Alertmanager's `GET /api/v2/silences` answer on arbitrary bytes: read
//! with an error for anything malformed, never a panic (regular
//! expressions from the network included). A silence imd would create for
//! the labels of an accepted one's equality matchers reads back, compiles
//! and matches those labels.
#![no_main]

use imd_analyzer::alert::AlertKey;
use imd_analyzer::alert::silences::{NewSilence, Silence, SilenceJson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(all) = serde_json::from_slice::<Vec<SilenceJson>>(data) else {
        return;
    };
    for s in all {
        let labels: AlertKey = s
            .matchers
            .iter()
            .filter(|m| m.is_equal && !m.is_regex)
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let (start, end) = (s.starts_at, s.ends_at);
        if let Some(c) = Silence::compile(s.clone()) {
            let _ = c.matches(&labels);
            let _ = c.matches(&AlertKey::new());
            let _ = c.active_at(start) && c.active_at(end);
        }
        if labels.is_empty() {
            continue;
        }
        let new = NewSilence::for_labels(&labels, start, end, &s.created_by, &s.comment);
        let mut json = serde_json::to_value(&new).expect("a new silence encodes");
        json["id"] = "fuzz".into();
        let back: SilenceJson = serde_json::from_value(json).expect("a new silence reads back");
        let c = Silence::compile(back).expect("equality matchers compile");
        assert!(c.matches(&labels), "{labels:?}");
        assert_eq!((c.starts_at, c.ends_at), (start, end));
    }
});
