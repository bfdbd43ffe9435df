//! The clock and the periodic loop both the analyzer and the embedded
//! default run their cycles on.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `work` on a blocking thread every `interval` (the first at once),
/// never two at a time; a cycle that overruns delays the next instead of
/// piling up, and a panicking cycle is logged and the loop goes on.
pub fn spawn_every<S: Send + Sync + 'static>(
    interval: Duration,
    state: Arc<S>,
    work: fn(&S),
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let st = state.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || work(&st)).await {
                tracing::error!(error = %e, "cycle panicked; continuing");
            }
        }
    })
}
