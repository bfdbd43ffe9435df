//! Learned thresholds end to end in the analyzer: a query with a seasonal
//! quantile band learned from history, run by the engine over the
//! in-process store, publishes the band's current level as `imd_threshold`
//! and the time until the forecast crosses the band as
//! `imd_forecast_breach_seconds`.

use std::time::Duration;

use imd_analyzer::emit::{Naming, families};
use imd_analyzer::engine::{Engine, EngineOptions};
use imd_analyzer::model::ModelParams;
use imd_analyzer::query::{Query, QueryConfig, Threshold};
use imd_analyzer::read::store::Store;
use imd_exporter::exposition::Family;

const STEP_MS: i64 = 10_000;
const SEASON: i64 = 24;

fn query(threshold: &str, forecast_model: &str) -> Query {
    Query::new(QueryConfig {
        name: "temp".into(),
        selector: "room_temp".into(),
        expr: None,
        rate: false,
        anomaly_model: "mad".into(),
        forecast_model: forecast_model.into(),
        params: ModelParams {
            window: 240,
            ..ModelParams::default()
        },
        horizons: vec![Duration::from_secs(60)],
        level: 0.95,
        threshold: Some(serde_yaml_ng::from_str::<Threshold>(threshold).expect("threshold")),
        history: Duration::from_secs(3600),
    })
    .expect("query")
}

/// A cycle of 24 steps (amplitude 10 around 50) with small noise, rising
/// by `slope` per step after `rise_from`.
fn value(i: i64, slope: f64, rise_from: i64) -> f64 {
    let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
    50.0 + 10.0 * (std::f64::consts::TAU * i as f64 / SEASON as f64).sin()
        + 0.5 * noise
        + slope * (i - rise_from).max(0) as f64
}

fn sample(v: f64) -> Family {
    let mut f = Family::gauge("room_temp", "temperature");
    f.push([("room", "a")], v);
    f
}

fn published(engine: &Engine, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    families(engine, Naming::default())
        .into_iter()
        .filter(|f| f.name == name)
        .flat_map(|f| f.samples)
        .map(|s| (s.labels, s.value))
        .collect()
}

#[test]
fn a_learned_band_is_published_and_its_crossing_forecast() {
    let store = Store::new(10 * 3_600_000, 100_000);
    let n = 300;
    // Flat cycles, then a rise of 0.05 per step over the last 60 points.
    for i in 0..n {
        store.ingest(i * STEP_MS, &[sample(value(i, 0.05, n - 60))]);
    }
    let q = query(
        "{direction: above, learned: {quantile: 0.99, season: auto}}",
        "arima",
    );
    let mut e = Engine::new(vec![q], EngineOptions::default());
    e.cycle(&store, (n - 1) * STEP_MS);

    let t = e.tracked()[0];
    let band = t.band.as_ref().expect("band learned");
    assert_eq!(band.season(), SEASON as usize);
    // The band follows the cycle: higher at the peak phase than at the
    // trough, each just above the values there.
    let peak = band.at(6 * STEP_MS);
    let trough = band.at(18 * STEP_MS);
    assert!(peak > 60.0 && peak < 66.0, "{peak}");
    assert!(trough > 40.0 && trough < 46.0, "{trough}");

    let th = published(&e, "imd_threshold");
    assert_eq!(th.len(), 1);
    let labels = &th[0].0;
    assert!(
        labels.contains(&("direction".into(), "above".into())),
        "{labels:?}"
    );
    assert!(labels.contains(&("query".into(), "temp".into())));
    let last_t = t.recent.back().expect("points").0;
    assert_eq!(th[0].1, band.at(last_t));

    // The breach time: the first forecast step whose mean reaches the
    // band's level at that step's phase, found here by hand.
    let f = t.forecast.as_ref().expect("forecast");
    let first =
        f.t.iter()
            .zip(&f.mean)
            .position(|(ft, m)| *m >= band.at(*ft))
            .expect("the rising forecast crosses the band");
    let breach = published(&e, "imd_forecast_breach_seconds");
    assert_eq!(breach.len(), 1);
    assert!(
        breach[0]
            .0
            .contains(&("threshold".into(), "learned_q0.99".into())),
        "{:?}",
        breach[0].0
    );
    let secs = breach[0].1;
    let step_s = STEP_MS as f64 / 1000.0;
    let at_first = (f.t[first] - last_t) as f64 / 1000.0;
    assert!(
        secs <= at_first && secs > at_first - step_s,
        "breach {secs} s, first step across at {at_first} s"
    );
    // Rising 0.05 per step against a band ~1 above the cycle's values
    // plus the 3 already risen: it is crossed well within an hour.
    assert!(secs > 0.0 && secs < 3600.0, "{secs}");
}

#[test]
fn a_fixed_threshold_is_published_too_and_a_flat_series_never_breaches() {
    let store = Store::new(10 * 3_600_000, 100_000);
    for i in 0..300 {
        store.ingest(i * STEP_MS, &[sample(value(i, 0.0, 0))]);
    }
    let mut e = Engine::new(
        vec![
            query("{value: 90, direction: above}", "snaive"),
            query(
                "{direction: below, learned: {quantile: 0.001, season: 24}}",
                "snaive",
            ),
        ],
        EngineOptions::default(),
    );
    e.cycle(&store, 299 * STEP_MS);
    let th = published(&e, "imd_threshold");
    assert_eq!(th.len(), 2);
    assert!(th.iter().any(|(_, v)| *v == 90.0));
    let below = th
        .iter()
        .find(|(l, _)| l.contains(&("direction".into(), "below".into())))
        .expect("below band");
    // Just under the cycle's value at the latest point's phase.
    let now = value(299, 0.0, 0);
    assert!(below.1 < now && below.1 > now - 2.0, "{} vs {now}", below.1);
    // Seasonal naive repeats the cycle: it never reaches 90, nor goes
    // under the 0.1 % band.
    for (_, s) in published(&e, "imd_forecast_breach_seconds") {
        assert_eq!(s, f64::INFINITY);
    }
}
