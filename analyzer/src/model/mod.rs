//! Models: every anomaly detector and forecaster behind one small trait, so
//! that the engine, the command line and the tests treat them alike.

use serde::{Deserialize, Serialize};

pub mod arima;
pub mod auto;
mod calibrate;
pub mod changepoint;
pub mod comb;
pub mod compact;
pub mod discord;
pub mod drift;
pub mod ensemble;
pub mod ets;
mod holt_winters;
pub mod learned;
pub mod mad;
pub mod mstl;
pub mod prophet;
pub mod refit;
mod resid;
pub mod season;
pub mod snaive;
pub mod theta;
pub mod threshold;
pub mod window;
pub mod zscore;

pub use calibrate::{Recent, score_from_z, z_for_level, z_from_score};

/// One observation: time in milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The value.
    pub v: f64,
}

/// A forecast `steps` ahead of the last observation, with bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Time of each forecast point (ms since the epoch).
    pub t: Vec<i64>,
    /// Expected values.
    pub mean: Vec<f64>,
    /// Lower bounds at the requested level.
    pub lower: Vec<f64>,
    /// Upper bounds at the requested level.
    pub upper: Vec<f64>,
}

/// Why a model could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not enough history to fit.
    #[error("needs at least {needed} points, has {have}")]
    TooShort {
        /// Points needed.
        needed: usize,
        /// Points given.
        have: usize,
    },
    /// Saved state did not fit this model.
    #[error("saved state of model {model} is unreadable: {reason}")]
    BadState {
        /// The model.
        model: &'static str,
        /// Why.
        reason: String,
    },
    /// Unknown model name or bad parameter.
    #[error("{0}")]
    Config(String),
}

/// The contract every model keeps. A model learns from history, then
/// follows the series point by point; scores only ever use the past.
pub trait Model: Send {
    /// The model's name as used in configuration and `--model`.
    fn name(&self) -> &'static str;

    /// Learns from history, replacing what was learned before.
    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError>;

    /// Anomaly score in [0, 1] of a new point, judged against what was
    /// learned before it (the point itself is not yet included). 0 while
    /// the model has too little history to judge.
    fn score(&self, point: Point) -> f64;

    /// Takes a new point into the model's state.
    fn update(&mut self, point: Point);

    /// Forecasts `steps` sampling intervals past the last point, with bounds
    /// at `level` (e.g. 0.95). `None` while the model has too little history.
    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast>;

    /// The model's learned state, to be saved across restarts.
    fn save(&self) -> serde_json::Value;

    /// Restores state saved by [`Model::save`].
    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError>;

    /// The recent points the model keeps (its window), for a model kept
    /// beside it that can read them instead of keeping the same points
    /// again (`auto`'s judge); `None` for models that keep no window.
    fn window(&self) -> Option<&window::Window> {
        None
    }

    /// Offers the next full fit a form (as [`refit::Fitted::form`] names
    /// it) that a fit of the same model with `seasons` chose on nearly the
    /// same history, to fit instead of searching every form again (`auto`'s
    /// backtest hands its pick the form found at its newest origin). Taken
    /// only by that next fit and only when it uses the same seasons; models
    /// that choose no form ignore it.
    fn offer_form(&mut self, _form: &str, _seasons: &[usize]) {}
}

/// Parameters every model understands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelParams {
    /// Points of history the model looks at (its window).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Points needed before the model scores or forecasts.
    #[serde(default = "default_min_points")]
    pub min_points: usize,
    /// Seasonal period in points (24 for a daily cycle sampled hourly);
    /// unset: detected from the history by the seasonal models.
    #[serde(default)]
    pub season: Option<usize>,
    /// Seed of the learned models' random choices (same seed, same model).
    #[serde(default)]
    pub seed: u64,
    /// Members of the `ensemble` model.
    #[serde(default = "ensemble::default_members")]
    pub members: Vec<String>,
    /// Options of the `iforest` model (and the multivariate detector).
    #[serde(default)]
    pub iforest: learned::iforest::IForestParams,
    /// Options of the `ocsvm` model.
    #[serde(default)]
    pub ocsvm: learned::ocsvm::OcsvmParams,
    /// Options of the `autoencoder` model.
    #[serde(default)]
    pub autoencoder: learned::autoencoder::AutoencoderParams,
    /// Options of the `lstm` model.
    #[serde(default)]
    pub lstm: learned::lstm::LstmParams,
}

fn default_window() -> usize {
    120
}

fn default_min_points() -> usize {
    12
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            window: default_window(),
            min_points: default_min_points(),
            season: None,
            seed: 0,
            members: ensemble::default_members(),
            iforest: Default::default(),
            ocsvm: Default::default(),
            autoencoder: Default::default(),
            lstm: Default::default(),
        }
    }
}

/// Names of the models that can be built.
pub const NAMES: &[&str] = &[
    "zscore",
    "mad",
    "drift",
    "snaive",
    "ets",
    "mstl",
    "theta",
    "comb",
    "arima",
    "changepoint",
    "discord",
    "prophet",
    "auto",
    "iforest",
    "ocsvm",
    "ensemble",
    "autoencoder",
    "lstm",
];

/// Models that only detect anomalies: their `forecast` is always `None`,
/// so they cannot be a `forecast_model`.
pub const DETECTORS: &[&str] = &["iforest", "ocsvm", "autoencoder", "discord"];

/// Builds a model by name.
pub fn build(name: &str, params: &ModelParams) -> Result<Box<dyn Model>, ModelError> {
    if params.window < 3 {
        return Err(ModelError::Config(format!(
            "window must be at least 3, is {}",
            params.window
        )));
    }
    if params.min_points < 2 || params.min_points > params.window {
        return Err(ModelError::Config(format!(
            "min_points must be between 2 and window ({}), is {}",
            params.window, params.min_points
        )));
    }
    if params.season.is_some_and(|s| s < 2) {
        return Err(ModelError::Config(format!(
            "season must be at least 2 points, is {}",
            params.season.unwrap_or(0)
        )));
    }
    Ok(match name {
        "zscore" => Box::new(zscore::ZScore::new(params.clone())),
        "mad" => Box::new(mad::Mad::new(params.clone())),
        "drift" => Box::new(drift::Drift::new(params.clone())),
        "snaive" => Box::new(snaive::SNaive::new(params.clone())),
        "ets" => Box::new(ets::new(params.clone())),
        "mstl" => Box::new(mstl::new(params.clone())),
        "theta" => Box::new(theta::new(params.clone())),
        "comb" => Box::new(comb::new(params.clone())),
        "arima" => Box::new(arima::Arima::new(params.clone())),
        "changepoint" => Box::new(changepoint::Changepoint::new(params.clone())),
        "discord" => Box::new(discord::Discord::new(params.clone())),
        "prophet" => Box::new(prophet::ProphetModel::new(params.clone())),
        "auto" => Box::new(auto::Auto::new(params.clone())),
        "iforest" => {
            params.iforest.check()?;
            Box::new(learned::iforest::IForest::new(params.clone()))
        }
        "ocsvm" => {
            params.ocsvm.check()?;
            Box::new(learned::ocsvm::Ocsvm::new(params.clone()))
        }
        "ensemble" => Box::new(ensemble::Ensemble::new(params)?),
        "autoencoder" => {
            params.autoencoder.check()?;
            Box::new(learned::autoencoder::Autoencoder::new(params.clone()))
        }
        "lstm" => {
            params.lstm.check()?;
            Box::new(learned::lstm::Lstm::new(params.clone()))
        }
        other => {
            return Err(ModelError::Config(format!(
                "unknown model {other:?}; known: {}",
                NAMES.join(", ")
            )));
        }
    })
}

#[cfg(test)]
pub(crate) mod testdata {
    use super::Point;

    /// A deterministic noisy series: level + small pseudo-random noise.
    pub fn noisy(n: usize, level: f64, noise: f64) -> Vec<Point> {
        let mut state: u64 = 0x9e3779b97f4a7c15;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                Point {
                    t: i as i64 * 15_000,
                    v: level + noise * u * 2.0,
                }
            })
            .collect()
    }

    /// `n` hourly points of a daily sine (level 50, amplitude 10) plus
    /// `extra(i)` at the i-th.
    pub fn hourly_daily(n: i64, extra: impl Fn(i64) -> f64) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t: i * 3_600_000,
                v: 50.0 + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin() + extra(i),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every model keeps the contract: no score before min_points, a spike
    /// scores high, normal points score low, state round-trips.
    #[test]
    fn every_model_keeps_the_contract() {
        let history = testdata::noisy(200, 10.0, 1.0);
        for name in NAMES {
            let mut m = build(name, &ModelParams::default()).unwrap();
            assert_eq!(
                m.score(Point { t: 0, v: 1e9 }),
                0.0,
                "{name} scored without history"
            );
            assert!(
                m.forecast(5, 0.95).is_none(),
                "{name} forecast without history"
            );
            m.fit(&history).unwrap();
            let next_t = history.last().unwrap().t + 15_000;
            let spike = m.score(Point { t: next_t, v: 30.0 });
            assert!(spike > 0.99, "{name}: spike scored {spike}");
            let Some(expected) = m.forecast(1, 0.95).map(|f| f.mean[0]) else {
                // Detectors (the learned models) do not forecast; a value at
                // the centre of the history is ordinary for them.
                let normal = m.score(Point { t: next_t, v: 10.0 });
                assert!(normal < 0.9, "{name}: the centre scored {normal}");
                let mut restored = build(name, &ModelParams::default()).unwrap();
                restored.load(m.save()).unwrap();
                assert_eq!(restored.score(Point { t: next_t, v: 30.0 }), spike);
                assert!(restored.load(serde_json::json!({"nonsense": 1})).is_err());
                continue;
            };
            let normal = m.score(Point {
                t: next_t,
                v: expected,
            });
            // An ensemble's score also carries its detectors' view.
            let ceiling = if *name == "ensemble" { 0.9 } else { 0.05 };
            assert!(
                normal < ceiling,
                "{name}: the expected value scored {normal}"
            );
            let f = m.forecast(4, 0.95).unwrap();
            assert_eq!(f.mean.len(), 4);
            assert_eq!(f.t[0], next_t);
            for i in 0..4 {
                assert!(
                    f.lower[i] < f.mean[i] && f.mean[i] < f.upper[i],
                    "{name} bounds"
                );
                assert!(
                    (f.mean[i] - 10.0).abs() < 2.0,
                    "{name} forecast {}",
                    f.mean[i]
                );
            }
            let saved = m.save();
            let mut restored = build(name, &ModelParams::default()).unwrap();
            restored.load(saved).unwrap();
            assert_eq!(
                restored.score(Point { t: next_t, v: 30.0 }),
                spike,
                "{name} state round trip"
            );
            assert!(restored.load(serde_json::json!({"nonsense": 1})).is_err());
        }
    }

    #[test]
    fn bad_names_and_params_are_errors() {
        assert!(build("nope", &ModelParams::default()).is_err());
        let p = ModelParams {
            window: 10,
            min_points: 20,
            ..ModelParams::default()
        };
        assert!(build("zscore", &p).is_err());
        let p = ModelParams {
            season: Some(1),
            ..ModelParams::default()
        };
        assert!(build("snaive", &p).is_err());
        // Configurations written before `season` existed still load.
        let old: ModelParams = serde_yaml_ng::from_str("window: 50\nmin_points: 5\n").unwrap();
        assert_eq!(old.season, None);
        assert!(serde_yaml_ng::from_str::<ModelParams>("sesaon: 3\n").is_err());
    }
}
