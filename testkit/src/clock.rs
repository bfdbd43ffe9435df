//! The wall clock, for tests that write samples ending now (a TSDB built
//! for a real Prometheus, remote-write into VictoriaMetrics, a remote-read
//! answer) and must agree with the servers about what "now" is.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as Prometheus timestamps are.
pub fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("the clock is after 1970")
}

/// Whole seconds since the Unix epoch.
pub fn unix_now_s() -> i64 {
    unix_now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree_and_are_recent() {
        let (ms, s) = (unix_now_ms(), unix_now_s());
        // 2020-09-13 and later: a clock read as seconds where milliseconds
        // are meant (or the reverse) would fail one of these.
        assert!(ms > 1_600_000_000_000, "{ms}");
        assert!((s - ms / 1000).abs() <= 1, "{s} vs {ms}");
    }
}
