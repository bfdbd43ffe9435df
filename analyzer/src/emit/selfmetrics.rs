//! The analyzer's metrics about its own work.

use std::sync::Mutex;

use imd_exporter::exposition::Family;

use crate::engine::CycleReport;

/// Running totals of the engine's cycles.
#[derive(Default)]
pub struct SelfMetrics {
    inner: Mutex<Totals>,
}

#[derive(Default)]
struct Totals {
    cycles: u64,
    points: u64,
    fitted: u64,
    dropped: u64,
    read_errors: u64,
    read_seconds: f64,
    model_seconds: f64,
    fit_seconds: f64,
    last_cycle_seconds: f64,
    last_success_ms: i64,
    series: usize,
}

impl SelfMetrics {
    /// Adds one cycle's report, which took `seconds` and ended at `now_ms`.
    pub fn record(&self, r: &CycleReport, seconds: f64, now_ms: i64, series: usize) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.cycles += 1;
        t.points += r.points as u64;
        t.fitted += r.fitted as u64;
        t.dropped += r.dropped as u64;
        t.read_errors += r.read_errors as u64;
        t.read_seconds += r.read_seconds;
        t.model_seconds += r.model_seconds;
        t.fit_seconds += r.fit_seconds;
        t.last_cycle_seconds = seconds;
        t.series = series;
        if r.read_errors == 0 {
            t.last_success_ms = now_ms;
        }
    }

    /// The metrics as families.
    pub fn families(&self) -> Vec<Family> {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut add = |f: Family| out.push(f);
        let counter = |name: &str, help: &str, v: f64| {
            let mut f = Family::counter(name, help);
            f.push_value(v);
            f
        };
        let gauge = |name: &str, help: &str, v: f64| {
            let mut f = Family::gauge(name, help);
            f.push_value(v);
            f
        };
        add(counter(
            "imd_analyzer_cycles_total",
            "Analysis cycles run.",
            t.cycles as f64,
        ));
        add(counter(
            "imd_analyzer_points_total",
            "Points taken into models.",
            t.points as f64,
        ));
        add(counter(
            "imd_analyzer_fits_total",
            "Series fitted on their history when first seen.",
            t.fitted as f64,
        ));
        add(counter(
            "imd_analyzer_series_dropped_total",
            "Series dropped because their source vanished.",
            t.dropped as f64,
        ));
        add(counter(
            "imd_analyzer_read_errors_total",
            "Query reads that failed.",
            t.read_errors as f64,
        ));
        add(counter(
            "imd_analyzer_read_seconds_total",
            "Time spent reading series.",
            t.read_seconds,
        ));
        add(counter(
            "imd_analyzer_model_seconds_total",
            "Time spent fitting, scoring and forecasting.",
            t.model_seconds,
        ));
        add(counter(
            "imd_analyzer_fit_seconds_total",
            "Time spent fitting models on history (new series and refits).",
            t.fit_seconds,
        ));
        add(counter(
            "imd_analyzer_inference_seconds_total",
            "Time spent scoring new points and forecasting.",
            (t.model_seconds - t.fit_seconds).max(0.0),
        ));
        add(gauge(
            "imd_analyzer_last_cycle_duration_seconds",
            "Duration of the last cycle.",
            t.last_cycle_seconds,
        ));
        add(gauge(
            "imd_analyzer_last_success_timestamp_seconds",
            "When the last cycle with no read error ended.",
            t.last_success_ms as f64 / 1000.0,
        ));
        add(gauge(
            "imd_analyzer_series",
            "Series under analysis.",
            t.series as f64,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_and_inference_split_the_model_time() {
        let m = SelfMetrics::default();
        let r = CycleReport {
            model_seconds: 3.0,
            fit_seconds: 2.0,
            fitted: 4,
            ..CycleReport::default()
        };
        m.record(&r, 3.5, 1000, 4);
        m.record(&r, 3.5, 2000, 4);
        let fams = m.families();
        let v = |n: &str| fams.iter().find(|f| f.name == n).unwrap().samples[0].value;
        assert_eq!(v("imd_analyzer_fit_seconds_total"), 4.0);
        assert_eq!(v("imd_analyzer_inference_seconds_total"), 2.0);
        assert_eq!(v("imd_analyzer_fits_total"), 8.0);
        assert_eq!(v("imd_analyzer_last_success_timestamp_seconds"), 2.0);
    }
}
