//! The body of `POST /api/v1/alerts/ack` and `/resolve` (from users,
//! through the page or the API) on arbitrary bytes: an error saying what
//! is wrong, never a panic; what it accepts names its target and who acts.
#![no_main]

use imd_analyzer::alert::escalation::Target;
use imd_analyzer::alert::lifecycle::ActionRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses acknowledgement or resolution, and whether
    // the request came with a logged-in user.
    let Some((&how, body)) = data.split_first() else {
        return;
    };
    let ack = how & 1 == 1;
    let user = (how & 2 == 2).then_some("alice");
    let Ok((req, target)) = ActionRequest::parse(body, ack, user) else {
        return;
    };
    if let Some(u) = user {
        assert_eq!(req.by, u, "who logged in is who acts");
    }
    assert!(!req.by.trim().is_empty());
    match target {
        Target::Fingerprint(f) => assert!(
            f.len() == 16
                && f.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{f:?}"
        ),
        Target::Labels(l) => assert!(!l.is_empty()),
    }
    if !ack {
        assert!(req.silence.is_none() && req.duration.is_none());
    }
});
