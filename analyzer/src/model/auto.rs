//! `auto`: the default. At fit time it finds the series' seasons and picks
//! the forecaster (seasonal naive, drift, ETS or MSTL) with the smallest
//! error in a quick rolling-origin backtest on the series' own history
//! (three origins, one season — or 24 points — ahead each). Its forecasts are
//! the picked model's; its anomaly score is the picked model's robust
//! residual score (the one-step error in units of the median absolute
//! error of its fit), with the rolling median/MAD model (`mad`) standing in
//! while the forecaster has too little history.

use serde::{Deserialize, Serialize};

use super::mad::Mad;
use super::refit::{Fitter, Refitting};
use super::season::{detect, regular};
use super::window::Window;
use super::{Forecast, Model, ModelError, ModelParams, Point, build};

/// Forecasters `auto` chooses among, preferred first on ties.
pub const CANDIDATES: &[&str] = &["snaive", "drift", "ets", "mstl"];
/// Backtest origins.
const ORIGINS: usize = 3;

/// Picks a forecaster per series and scores with its residuals.
pub struct Auto {
    params: ModelParams,
    picked: Option<Box<dyn Model>>,
    mad: Mad,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    picked: Option<(String, serde_json::Value)>,
    mad: serde_json::Value,
}

impl Auto {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Auto {
        Auto {
            mad: Mad::new(params.clone()),
            params,
            picked: None,
        }
    }

    /// The forecaster picked at the last fit.
    pub fn picked(&self) -> Option<&'static str> {
        self.picked.as_ref().map(|m| m.name())
    }

    fn ready(&self) -> Option<&dyn Model> {
        let m = self.picked.as_deref()?;
        m.forecast(1, 0.5).map(|_| m)
    }
}

/// Mean absolute error of each candidate over the backtest origins (None
/// when a candidate could not forecast at some origin). ETS and MSTL choose
/// their form at the latest origin and keep it at the earlier ones.
pub fn backtest(params: &ModelParams, history: &[Point], h: usize) -> Vec<(&'static str, f64)> {
    let n = history.len();
    let mut out = Vec::new();
    for name in CANDIDATES.iter().copied() {
        let mut total = 0.0;
        let mut ok = true;
        let mut form = None;
        for o in 1..=ORIGINS {
            let cut = n - o * h;
            let Some(f) = candidate_forecast(name, params, &history[..cut], h, &mut form) else {
                ok = false;
                break;
            };
            total += history[cut..cut + h]
                .iter()
                .zip(&f.mean)
                .map(|(p, m)| (p.v - m).abs())
                .sum::<f64>();
        }
        if ok && total.is_finite() {
            out.push((name, total / (ORIGINS * h) as f64));
        }
    }
    out
}

/// A candidate's forecast `h` steps past `train`. The refitting models skip
/// seeding their error scale, since only their forecasts are compared, and
/// keep `form` (set by their first fit).
fn candidate_forecast(
    name: &str,
    params: &ModelParams,
    train: &[Point],
    h: usize,
    form: &mut Option<String>,
) -> Option<Forecast> {
    fn refitting<F: Fitter>(
        m: Refitting<F>,
        train: &[Point],
        h: usize,
        form: &mut Option<String>,
    ) -> Option<Forecast> {
        let mut m = m.without_seeding().keeping_form(form.take());
        m.fit(train).ok()?;
        *form = m.form().map(str::to_string);
        m.forecast(h, 0.95)
    }
    match name {
        "ets" => refitting(super::ets::new(params.clone()), train, h, form),
        "mstl" => refitting(super::mstl::new(params.clone()), train, h, form),
        _ => {
            let mut m = build(name, params).ok()?;
            m.fit(train).ok()?;
            m.forecast(h, 0.95)
        }
    }
}

impl Model for Auto {
    fn name(&self) -> &'static str {
        "auto"
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        self.mad.fit(history)?;
        let mut w = Window::new(history.len().max(1));
        w.fill(history);
        let points: Vec<Point> = w.points().collect();
        let season = match self.params.season {
            Some(s) => Some(s),
            None => w
                .step_ms()
                .and_then(|step| detect(&regular(&points, step)).first().copied()),
        };
        let h = season.unwrap_or(24).clamp(6, 48);
        let mut params = self.params.clone();
        params.season = season.or(self.params.season);
        // Room for the backtest: each origin keeps at least four horizons
        // (and two seasons) of training data.
        let need = ORIGINS * h + (4 * h).max(self.params.min_points);
        let name = if points.len() >= need {
            backtest(&params, &points, h)
                .into_iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(n, _)| n)
        } else {
            None
        };
        let name = name.unwrap_or(if season.is_some() { "mstl" } else { "ets" });
        // Let the picked model find both seasons itself when none is set.
        // A model picked again is refitted in place: it keeps the online
        // errors that calibrate its scores and bounds, which a new one
        // would have to collect again.
        match &mut self.picked {
            Some(m) if m.name() == name => m.fit(&points)?,
            _ => {
                let mut m = build(name, &self.params)?;
                m.fit(&points)?;
                self.picked = Some(m);
            }
        }
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        match self.ready() {
            Some(m) => m.score(point),
            None => self.mad.score(point),
        }
    }

    fn update(&mut self, point: Point) {
        self.mad.update(point);
        if let Some(m) = &mut self.picked {
            m.update(point);
        }
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        match self.ready() {
            Some(m) => m.forecast(steps, level),
            None => self.mad.forecast(steps, level),
        }
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            picked: self
                .picked
                .as_ref()
                .map(|m| (m.name().to_string(), m.save())),
            mad: self.mad.save(),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: "auto",
            reason: e.to_string(),
        })?;
        self.mad.load(s.mad)?;
        self.picked = match s.picked {
            Some((name, state)) => {
                if !CANDIDATES.contains(&name.as_str()) {
                    return Err(ModelError::BadState {
                        model: "auto",
                        reason: format!("unknown picked model {name:?}"),
                    });
                }
                let mut m = build(&name, &self.params)?;
                m.load(state)?;
                Some(m)
            }
            None => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Online errors in the picked model's saved state.
    fn online_errors(m: &Auto) -> usize {
        m.save()["picked"][1]["online"]
            .as_array()
            .map_or(0, |a| a.len())
    }

    #[test]
    fn a_model_picked_again_keeps_its_online_errors() {
        let h: Vec<Point> = (0..600)
            .map(|i| Point {
                t: i * 3_600_000,
                v: 50.0
                    + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + ((i * 7919) % 13) as f64 / 13.0,
            })
            .collect();
        let mut m = Auto::new(ModelParams::default());
        m.fit(&h[..400]).unwrap();
        let first = m.picked();
        for p in &h[400..] {
            m.update(*p);
        }
        m.fit(&h).unwrap();
        let mut fresh = Auto::new(ModelParams::default());
        fresh.fit(&h).unwrap();
        assert_eq!(m.picked(), first, "the same data picks the same model");
        assert_eq!(m.picked(), fresh.picked());
        // The refitted model has its seed errors and 200 online ones; a new
        // one only the seed errors.
        assert!(
            online_errors(&m) > online_errors(&fresh) + 100,
            "{} vs {}",
            online_errors(&m),
            online_errors(&fresh)
        );
    }

    #[test]
    fn picks_a_seasonal_model_for_seasonal_data() {
        let h: Vec<Point> = (0..400)
            .map(|i| Point {
                t: i * 3_600_000,
                v: 50.0
                    + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + if i % 5 == 0 { 0.5 } else { -0.1 },
            })
            .collect();
        let mut m = Auto::new(ModelParams::default());
        m.fit(&h).unwrap();
        let picked = m.picked().unwrap();
        assert!(picked == "snaive" || picked == "mstl", "{picked}");
        let mut flat = Auto::new(ModelParams::default());
        flat.fit(&crate::model::testdata::noisy(300, 10.0, 1.0))
            .unwrap();
        assert!(flat.picked().is_some());
    }
}
