//! `ensemble`: several models on one series (`members`, by default
//! `auto` and `iforest`), each learning and scoring as on its own.
//!
//! The score is the Šidák-corrected maximum of the members' scores,
//! `max(sᵢ)^k` for k members: a point is as unusual as its most surprised
//! member says, discounted for having asked k of them. Each member's score
//! is (close to) uniform on ordinary points, so for independent members the
//! corrected maximum is uniform too and a score of 0.99 keeps its meaning
//! of a 1-in-100 event; members that agree (correlated) make it
//! conservative rather than noisy. The maximum rather than the mean of the
//! members' z values: a fault one member sees and the other cannot (a
//! broken season for `auto`, an odd shape for `iforest`) should not be
//! averaged away. Forecasts come from the first member that forecasts.

use serde::{Deserialize, Serialize};

use super::{Forecast, Model, ModelError, ModelParams, Point, build};

/// Members used when `members` is not set.
pub fn default_members() -> Vec<String> {
    vec!["auto".into(), "iforest".into()]
}

/// Several models combined.
pub struct Ensemble {
    members: Vec<Box<dyn Model>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    members: Vec<(String, serde_json::Value)>,
}

impl Ensemble {
    /// Builds the members named in `params.members`.
    pub fn new(params: &ModelParams) -> Result<Ensemble, ModelError> {
        if params.members.is_empty() {
            return Err(ModelError::Config(
                "ensemble needs at least one member in members".into(),
            ));
        }
        let members = params
            .members
            .iter()
            .map(|name| {
                if name == "ensemble" {
                    return Err(ModelError::Config(
                        "an ensemble cannot be a member of an ensemble".into(),
                    ));
                }
                build(name, params)
                    .map_err(|e| ModelError::Config(format!("ensemble member {name:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ensemble { members })
    }

    /// The members' names.
    pub fn member_names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.name()).collect()
    }
}

impl Model for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        for m in &mut self.members {
            m.fit(history)?;
        }
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        let k = self.members.len() as i32;
        let max = self
            .members
            .iter()
            .map(|m| m.score(point))
            .fold(0.0, f64::max);
        max.powi(k).clamp(0.0, 1.0)
    }

    fn update(&mut self, point: Point) {
        for m in &mut self.members {
            m.update(point);
        }
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        self.members.iter().find_map(|m| m.forecast(steps, level))
    }

    fn save(&self) -> serde_json::Value {
        let s = Saved {
            members: self
                .members
                .iter()
                .map(|m| (m.name().to_string(), m.save()))
                .collect(),
        };
        serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::BadState {
            model: "ensemble",
            reason,
        };
        let s: Saved = serde_json::from_value(state).map_err(|e| bad(e.to_string()))?;
        if s.members.len() != self.members.len() {
            return Err(bad(format!(
                "{} members saved, {} configured",
                s.members.len(),
                self.members.len()
            )));
        }
        for (m, (name, _)) in self.members.iter().zip(&s.members) {
            if m.name() != name {
                return Err(bad(format!(
                    "member {name:?} saved, {:?} configured",
                    m.name()
                )));
            }
        }
        for (m, (_, state)) in self.members.iter_mut().zip(s.members) {
            m.load(state)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testdata::noisy;

    #[test]
    fn corrected_maximum_and_forecasts_from_the_first_forecaster() {
        let h = noisy(300, 10.0, 1.0);
        let p = ModelParams {
            members: vec!["iforest".into(), "mad".into()],
            ..ModelParams::default()
        };
        let mut e = Ensemble::new(&p).unwrap();
        e.fit(&h).unwrap();
        let mut mad = build("mad", &p).unwrap();
        let mut forest = build("iforest", &p).unwrap();
        mad.fit(&h).unwrap();
        forest.fit(&h).unwrap();
        let pt = Point {
            t: 300 * 15_000,
            v: 11.5,
        };
        let want = mad.score(pt).max(forest.score(pt)).powi(2);
        assert!((e.score(pt) - want).abs() < 1e-12);
        // iforest does not forecast, so the forecast is mad's.
        assert_eq!(e.forecast(3, 0.9), mad.forecast(3, 0.9));
        assert_eq!(e.member_names(), vec!["iforest", "mad"]);
        let mut other = Ensemble::new(&ModelParams::default()).unwrap();
        assert!(other.load(e.save()).is_err(), "different members");
        let nested = ModelParams {
            members: vec!["ensemble".into()],
            ..ModelParams::default()
        };
        assert!(Ensemble::new(&nested).is_err());
        let empty = ModelParams {
            members: vec![],
            ..ModelParams::default()
        };
        assert!(Ensemble::new(&empty).is_err());
    }
}
