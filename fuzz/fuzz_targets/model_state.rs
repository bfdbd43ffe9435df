//! One series of the analyzer's state file (`engine-state.json`, read from
//! the data directory at start) on arbitrary bytes: read with an error for
//! anything malformed, never a panic. A model state it holds either loads
//! or is refused with an error; a model that loads goes on as a resumed
//! series does (scores a point in [0, 1], takes it in, forecasts) and
//! saves a state that loads again.
#![no_main]

use imd_analyzer::engine::persist::SavedSeries;
use imd_analyzer::model::{self, ModelParams, Point};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(saved) = serde_json::from_slice::<SavedSeries>(data) else {
        return;
    };
    let params = ModelParams::default();
    for (name, state) in [&saved.anomaly, &saved.forecaster] {
        let Ok(mut m) = model::build(name, &params) else {
            continue;
        };
        let Ok(state) = state.value() else {
            continue;
        };
        if m.load(state).is_err() {
            continue;
        }
        let p = Point {
            t: saved.last_t.saturating_add(60_000),
            v: saved.recent.last().map_or(1.0, |r| r.1),
        };
        let score = m.score(p);
        assert!((0.0..=1.0).contains(&score), "{name} scored {score}");
        m.update(p);
        let _ = m.forecast(3, 0.95);
        let mut again = model::build(name, &params).expect("built once already");
        if let Err(e) = again.load(m.save()) {
            panic!("{name}: the state it saved does not load: {e}");
        }
    }
});
