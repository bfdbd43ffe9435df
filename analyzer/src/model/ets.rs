//! `ets`: exponential smoothing (error, trend, damping chosen by AICc among
//! additive and multiplicative forms) from augurs' `AutoETS`. augurs does
//! not implement seasonal ETS, so this model is non-seasonal: for seasonal
//! series use `mstl` (ETS on the seasonally adjusted series) or `auto`.
//!
//! The parameters are estimated on the newest [`FIT_TAIL`] points of the
//! window at most: enough for ETS' five parameters at any sampling rate,
//! while the smoothing forgets older points anyway. Long windows (four days
//! of one-minute samples for a daily season) would otherwise cost six times
//! the CPU at every refit, and the fitted model keeps per-point state.

use augurs::ets::{AutoETS, FittedAutoETS};
use augurs::{Fit, Predict};

use super::ModelParams;
use super::refit::{Fitted, Fitter, Refitting, SE_LEVEL, se_from};

/// Most points ETS is fitted on (the newest).
pub const FIT_TAIL: usize = 1_000;

/// The augurs AutoETS fitter.
pub struct EtsFitter;

/// ETS run online (see `refit`).
pub type Ets = Refitting<EtsFitter>;

/// A model that has seen nothing yet.
pub fn new(params: ModelParams) -> Ets {
    Refitting::new(params, EtsFitter)
}

struct EtsFitted {
    model: FittedAutoETS,
    /// The fitted data, until the residuals are taken.
    y: Vec<f64>,
}

impl Fitter for EtsFitter {
    fn name(&self) -> &'static str {
        "ets"
    }

    fn seasonal(&self) -> bool {
        false
    }

    fn min_len(&self, _seasons: &[usize]) -> usize {
        // AutoETS needs more points than parameters (up to 5) plus 4.
        10
    }

    fn fit(
        &self,
        y: &[f64],
        _seasons: &[usize],
        form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String> {
        let y = tail(y);
        let model = fit_auto_ets(y, form)?;
        Ok(Box::new(EtsFitted {
            model,
            y: y.to_vec(),
        }))
    }
}

/// The newest [`FIT_TAIL`] points of `y`.
pub(super) fn tail(y: &[f64]) -> &[f64] {
    &y[y.len().saturating_sub(FIT_TAIL)..]
}

/// Non-seasonal AutoETS on `y`: only the given form (`"AAdN"`: additive
/// error, damped additive trend, no season), or the best form by AICc when
/// none is given or the given one cannot be fitted (a multiplicative form
/// once the data reaches zero, say).
pub(super) fn fit_auto_ets(y: &[f64], form: Option<&str>) -> Result<FittedAutoETS, String> {
    if let Some(model) = form.and_then(fixed).and_then(|m| m.fit(y).ok()) {
        return Ok(model);
    }
    AutoETS::non_seasonal().fit(y).map_err(|e| e.to_string())
}

/// The search restricted to one non-seasonal form (`None` for anything
/// that is not one, e.g. from a damaged state file).
fn fixed(form: &str) -> Option<AutoETS> {
    let (base, damped) = match form.strip_suffix("dN") {
        Some(base) => (base, true),
        None => (form.strip_suffix('N')?, false),
    };
    let mut c = base.chars();
    let (error, trend) = (c.next()?, c.next()?);
    if c.next().is_some() {
        return None;
    }
    AutoETS::new(1, format!("{error}{trend}N").as_str())
        .ok()?
        .damped(damped)
        .ok()
}

/// Means and standard errors 1..=h steps after a fitted ETS model's data
/// (`None` when it cannot forecast that far, or not finitely).
pub(super) fn predict(model: &FittedAutoETS, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
    let f = model.predict(h, SE_LEVEL).ok()?;
    if f.point.len() != h || f.point.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut se = se_from(&f, h, SE_LEVEL);
    cap_growth(&mut se);
    Some((f.point, se))
}

/// Keeps the standard errors' growth with the horizon within the most an
/// additive ETS model with smoothing weights at most 1 can give: its
/// h-step error sums the one-step errors with weights of at most 1 + j,
/// so its variance is at most sqrt(1 + Σ_{j<h} (1 + j)²) times the
/// one-step one's. Multiplicative models' intervals (simulated or
/// approximated in augurs) can grow exponentially on a series with a
/// strong trend: 10^13 times the series' level 18 steps out on one M3
/// monthly series, which no bound should be.
fn cap_growth(se: &mut [f64]) {
    let Some(&first) = se.first() else {
        return;
    };
    if !(first > 0.0 && first.is_finite()) {
        return;
    }
    let mut sum = 1.0;
    for (j, s) in se.iter_mut().enumerate().skip(1) {
        sum += ((1 + j) as f64).powi(2);
        let most = first * sum.sqrt();
        if !s.is_finite() || *s > most {
            *s = most;
        }
    }
}

/// A fitted model's form in ETS notation (`"MNN"`, `"AAdN"`).
pub(super) fn form_of(model: &FittedAutoETS) -> String {
    use augurs::ets::model::{ErrorComponent, TrendComponent};
    let m = model.model();
    let t = m.model_type();
    let error = match t.error {
        ErrorComponent::Additive => "A",
        ErrorComponent::Multiplicative => "M",
    };
    let trend = match t.trend {
        TrendComponent::None => "N",
        TrendComponent::Additive => "A",
        TrendComponent::Multiplicative => "M",
    };
    let damped = if m.damped() { "d" } else { "" };
    format!("{error}{trend}{damped}N")
}

impl Fitted for EtsFitted {
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        predict(&self.model, h)
    }

    fn residuals(&mut self) -> Vec<f64> {
        let y = std::mem::take(&mut self.y);
        in_sample_errors(self.model.predict_in_sample(None).ok(), &y)
    }

    fn form(&self) -> Option<String> {
        Some(form_of(&self.model))
    }

    fn parameters(&self) -> usize {
        parameters_of(&self.model)
    }
}

/// Parameters an ETS model estimates: α and the initial level, β and the
/// initial trend with a trend, φ when damped.
pub(super) fn parameters_of(model: &FittedAutoETS) -> usize {
    let m = model.model();
    let trend = !matches!(
        m.model_type().trend,
        augurs::ets::model::TrendComponent::None
    );
    2 + 2 * usize::from(trend) + usize::from(m.damped())
}

/// `y` minus in-sample predictions (empty when there are none).
pub(super) fn in_sample_errors(f: Option<augurs::Forecast>, y: &[f64]) -> Vec<f64> {
    match f {
        Some(f) if f.point.len() == y.len() => y.iter().zip(&f.point).map(|(a, b)| a - b).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_growth_is_capped_at_the_additive_bound() {
        // Exponential growth is cut to the additive bound; slower growth
        // (a random walk's sqrt(h)) is kept.
        let mut se: Vec<f64> = (0..18).map(|j| 3.6_f64.powi(j)).collect();
        cap_growth(&mut se);
        assert_eq!(se[1], 5.0_f64.sqrt());
        assert!((se[17] - 3.6_f64.powi(17)).abs() > 1.0 && se[17] < 50.0);
        let mut walk: Vec<f64> = (1..=18).map(|h| (h as f64).sqrt()).collect();
        let before = walk.clone();
        cap_growth(&mut walk);
        assert_eq!(walk, before);
    }
    use crate::model::{Model, Point};

    #[test]
    fn refits_keep_the_form_a_full_fit_chose() {
        let trend: Vec<Point> = (0..300)
            .map(|i| Point {
                t: i * 60_000,
                v: 50.0 + 0.8 * i as f64 + if i % 3 == 0 { 0.5 } else { -0.25 },
            })
            .collect();
        let flat: Vec<Point> = (300..700)
            .map(|i| Point {
                t: i * 60_000,
                v: 20.0 + ((i * 37) % 11) as f64 / 5.0,
            })
            .collect();
        let mut m = new(ModelParams {
            window: 300,
            ..ModelParams::default()
        });
        m.fit(&trend).unwrap();
        let chosen = m.form().unwrap().to_string();
        assert_eq!(&chosen[1..2], "A", "a trend is found: {chosen}");
        // Refits on flat data (every 12 points) keep it ...
        for p in &flat {
            m.update(*p);
        }
        assert_eq!(m.form(), Some(chosen.as_str()));
        // ... until a full fit searches again.
        m.fit(&flat).unwrap();
        let searched = m.form().unwrap();
        assert_eq!(&searched[1..2], "N", "no trend in flat data: {searched}");
        // The kept form survives saving and loading.
        let mut loaded = new(ModelParams {
            window: 300,
            ..ModelParams::default()
        });
        loaded.load(m.save()).unwrap();
        assert_eq!(loaded.form(), m.form());
    }

    #[test]
    fn a_form_that_cannot_be_fitted_falls_back_to_the_search() {
        let y: Vec<f64> = (0..200).map(|i| (i % 9) as f64 - 4.0).collect();
        // Multiplicative error needs positive data; an unreadable form is
        // ignored.
        for form in ["MNN", "AAdA", "", "xyz", "A\u{e9}N", "AAAN", "AdN", "NNN"] {
            let m = fit_auto_ets(&y, Some(form)).unwrap();
            assert_eq!(&form_of(&m)[..1], "A", "{form}");
        }
        let m = fit_auto_ets(&y, Some("AAdN")).unwrap();
        assert_eq!(form_of(&m), "AAdN");
        assert_eq!(tail(&vec![1.0; FIT_TAIL + 5]).len(), FIT_TAIL);
    }

    #[test]
    fn follows_a_damped_trend_and_refits_online() {
        let h: Vec<Point> = (0..150)
            .map(|i| Point {
                t: i * 60_000,
                v: 100.0 + 0.5 * i as f64 + if i % 2 == 0 { 0.3 } else { -0.3 },
            })
            .collect();
        let mut m = new(ModelParams::default());
        m.fit(&h[..100]).unwrap();
        for p in &h[100..] {
            assert!(m.score(*p) < 0.99, "{p:?} scored {}", m.score(*p));
            m.update(*p);
        }
        let f = m.forecast(5, 0.95).unwrap();
        assert!((f.mean[0] - 175.0).abs() < 2.0, "{:?}", f.mean);
        assert_eq!(f.t[0], 150 * 60_000);
        assert!(
            m.score(Point {
                t: 150 * 60_000,
                v: 120.0
            }) > 0.999
        );
    }
}
