//! `ets`: exponential smoothing, the form chosen by AICc among augurs'
//! non-seasonal `AutoETS` forms (additive or multiplicative error; no,
//! additive or damped trend) and, when the series has a season of which
//! the fitted points hold three cycles, the seasonal forms of Holt-Winters
//! (`holt_winters`: additive, and multiplicative on positive series;
//! augurs has no seasonal ETS).
//!
//! The parameters are estimated on the newest [`FIT_TAIL`] points of the
//! window at most: enough for ETS' five parameters at any sampling rate,
//! while the smoothing forgets older points anyway. Long windows (four days
//! of one-minute samples for a daily season) would otherwise cost six times
//! the CPU at every refit, and the fitted model keeps per-point state.

use augurs::ets::AutoETS;
use augurs::ets::model::Model as EtsFit;
use augurs::{Fit, Predict};
use serde::{Deserialize, Serialize};

use super::ModelParams;
use super::holt_winters::{self, Form, HoltWinters};
use super::refit::{Fitted, Fitter, PREDICTED, Refitting, SE_LEVEL, se_from};

/// The range a smoothing weight (α, β, φ) read back from fitted values or
/// from saved state must fall in: [0, 1], with room for rounding.
const WEIGHT_RANGE: std::ops::RangeInclusive<f64> = -1e-6..=1.0 + 1e-6;

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
    model: EtsModel,
    /// In-sample one-step errors, until taken.
    residuals: Vec<f64>,
}

/// A fitted non-seasonal (augurs) or seasonal (Holt-Winters) form.
enum EtsModel {
    Plain(Box<Following>),
    Seasonal(HoltWinters),
}

impl Fitter for EtsFitter {
    fn name(&self) -> &'static str {
        "ets"
    }

    fn seasonal(&self) -> bool {
        true
    }

    /// The shortest season detected, when the points ETS is fitted on
    /// hold enough cycles of it for the seasonal forms; none otherwise, so
    /// that a season they cannot use (a day of one-minute samples) does
    /// not make the window hold four of its cycles.
    fn seasons_used(&self, detected: Vec<usize>) -> Vec<usize> {
        detected
            .into_iter()
            .take(1)
            .filter(|m| holt_winters::fits(FIT_TAIL, *m))
            .collect()
    }

    fn min_len(&self, _seasons: &[usize]) -> usize {
        // AutoETS needs more points than parameters (up to 5) plus 4;
        // shorter series than a seasonal form needs get the others.
        10
    }

    /// A seasonal form when one is given and the season fits; the given
    /// non-seasonal one; else the best of both kinds by AICc.
    fn fit(
        &self,
        y: &[f64],
        seasons: &[usize],
        form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String> {
        let y = tail(y);
        let season = seasons
            .first()
            .copied()
            .filter(|m| holt_winters::fits(y.len(), *m));
        let given = form.and_then(Form::of_name);
        if let (Some(given), Some(m)) = (given, season) {
            if let Some(hw) = holt_winters::fit(y, m, given) {
                return Ok(seasonal(hw));
            }
        }
        let search = form.is_none() || given.is_some();
        let plain = fit_auto_ets(y, form.filter(|_| !search));
        let hw = season
            .filter(|_| search)
            .and_then(|m| holt_winters::search(y, m));
        match (plain, hw) {
            (Ok(p), Some(hw)) if hw.aicc() < p.aicc() => Ok(seasonal(hw)),
            (Ok(p), _) => Ok(plain_fitted(p, y)),
            (Err(_), Some(hw)) => Ok(seasonal(hw)),
            (Err(e), None) => Err(e),
        }
    }

    fn restore(&self, saved: serde_json::Value) -> Result<Box<dyn Fitted>, String> {
        let model = match serde_json::from_value(saved).map_err(|e| format!("ets fit: {e}"))? {
            SavedEts::Plain(f) => EtsModel::Plain(Box::new(Following::restored(f)?)),
            SavedEts::Seasonal(hw) => EtsModel::Seasonal(HoltWinters::restored(hw)?),
        };
        Ok(Box::new(EtsFitted {
            model,
            residuals: Vec::new(),
        }))
    }
}

/// An [`EtsFitted`] as saved: its non-seasonal form when that follows
/// the points without augurs' fit, or its seasonal one.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SavedEts {
    Plain(SavedFollowing),
    Seasonal(holt_winters::Saved),
}

fn seasonal(mut hw: HoltWinters) -> Box<dyn Fitted> {
    Box::new(EtsFitted {
        residuals: hw.take_residuals(),
        model: EtsModel::Seasonal(hw),
    })
}

fn plain_fitted(model: EtsFit, y: &[f64]) -> Box<dyn Fitted> {
    let fitted = in_sample(&model, y);
    let residuals = in_sample_errors(fitted.as_deref(), y);
    Box::new(EtsFitted {
        model: EtsModel::Plain(Box::new(Following::new(model, y, fitted.as_deref()))),
        residuals,
    })
}

/// The newest [`FIT_TAIL`] points of `y`.
pub(super) fn tail(y: &[f64]) -> &[f64] {
    &y[y.len().saturating_sub(FIT_TAIL)..]
}

/// Non-seasonal AutoETS on `y`: only the given form (`"AAdN"`: additive
/// error, damped additive trend, no season), or the best form by AICc when
/// none is given or the given one cannot be fitted (a multiplicative form
/// once the data reaches zero, say).
pub(super) fn fit_auto_ets(y: &[f64], form: Option<&str>) -> Result<EtsFit, String> {
    if let Some(model) = form.and_then(|f| fit_form(y, f)) {
        return Ok(model);
    }
    #[cfg(test)]
    SEARCHES.with(|n| n.set(n.get() + 1));
    AutoETS::non_seasonal()
        .fit(y)
        .map(|fitted| fitted.model().clone())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
thread_local! {
    /// Searches over every form run on this thread, for tests that count
    /// them (they are most of a fit's cost).
    pub(super) static SEARCHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `y` fitted in one non-seasonal form, as AutoETS fits each form it
/// tries (None when the form is not one, e.g. from a damaged state file,
/// or cannot be fitted to `y`). Written here rather than as an AutoETS
/// search restricted to the form because augurs-ets 0.10.3 finds no
/// model for a restricted search without a trend (`"ANN"`, `"MNN"`: its
/// trend candidates for "none" are empty), so those forms were searched
/// for again at every refit, at 20–35 times the cost of fitting the one
/// form, and the refits did not keep the form as they should.
fn fit_form(y: &[f64], form: &str) -> Option<EtsFit> {
    use augurs::ets::model::{
        ErrorComponent, ModelType, OptimizationCriteria, SeasonalComponent, TrendComponent, Unfit,
    };
    let (base, damped) = match form.strip_suffix("dN") {
        Some(base) => (base, true),
        None => (form.strip_suffix('N')?, false),
    };
    let mut c = base.chars();
    let error = match c.next()? {
        'A' => ErrorComponent::Additive,
        'M' => ErrorComponent::Multiplicative,
        _ => return None,
    };
    let trend = match c.next()? {
        'N' if !damped => TrendComponent::None,
        'A' => TrendComponent::Additive,
        'M' => TrendComponent::Multiplicative,
        _ => return None,
    };
    if c.next().is_some() {
        return None;
    }
    // AutoETS' checks before it fits: positive data for multiplicative
    // errors, and more points than the parameters plus four.
    if error == ErrorComponent::Multiplicative && !y.iter().all(|v| *v > 0.0) {
        return None;
    }
    let parameters = if trend == TrendComponent::None { 2 } else { 4 };
    if y.len() <= parameters + 4 {
        return None;
    }
    // AutoETS' settings for each form it fits.
    let model = Unfit::new(ModelType {
        error,
        trend,
        season: SeasonalComponent::None,
    })
    .damped(damped)
    .nmse(3)
    .opt_crit(OptimizationCriteria::Likelihood)
    .max_iterations(2_000)
    .fit(y)
    .ok()?;
    (!model.aicc().is_nan()).then_some(model)
}

/// Means and standard errors 1..=h steps after a fitted ETS model's data
/// (`None` when it cannot forecast that far, or not finitely).
pub(super) fn predict(model: &EtsFit, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
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
pub(super) fn form_of(model: &EtsFit) -> String {
    use augurs::ets::model::{ErrorComponent, TrendComponent};
    let t = model.model_type();
    let error = match t.error {
        ErrorComponent::Additive => "A",
        ErrorComponent::Multiplicative => "M",
    };
    let trend = match t.trend {
        TrendComponent::None => "N",
        TrendComponent::Additive => "A",
        TrendComponent::Multiplicative => "M",
    };
    let damped = if model.damped() { "d" } else { "" };
    format!("{error}{trend}{damped}N")
}

impl Fitted for EtsFitted {
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        match &self.model {
            EtsModel::Plain(m) => m.predict(h),
            EtsModel::Seasonal(m) => m.predict(h),
        }
    }

    fn residuals(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.residuals)
    }

    fn form(&self) -> Option<String> {
        Some(match &self.model {
            EtsModel::Plain(m) => m.form().to_string(),
            EtsModel::Seasonal(m) => m.form().to_string(),
        })
    }

    fn parameters(&self) -> usize {
        match &self.model {
            EtsModel::Plain(m) => m.parameters(),
            EtsModel::Seasonal(m) => m.parameters(),
        }
    }

    fn update(&mut self, v: f64) -> bool {
        match &mut self.model {
            EtsModel::Plain(m) => m.update(v),
            EtsModel::Seasonal(m) => m.update(v),
        }
    }

    fn stays_current(&self) -> bool {
        match &self.model {
            EtsModel::Plain(m) => m.follows(),
            EtsModel::Seasonal(_) => true,
        }
    }

    fn saved(&self) -> Option<serde_json::Value> {
        let saved = match &self.model {
            EtsModel::Plain(m) => SavedEts::Plain(m.saved()?),
            EtsModel::Seasonal(m) => SavedEts::Seasonal(m.saved()),
        };
        serde_json::to_value(saved).ok()
    }
}

/// A [`Following`] that needs no augurs fit, as saved: its form, weights,
/// state and one-step error variance.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SavedFollowing {
    form: String,
    parameters: usize,
    alpha: f64,
    beta: f64,
    phi: f64,
    level: f64,
    trend: f64,
    sigma2: f64,
}

/// A fitted ETS model that takes the points after its fit, where its
/// smoothing weights could be read back ([`Follower`]); its forecasts
/// then start from the newest point. Otherwise it stays anchored at the
/// fit.
pub(super) struct Following {
    /// augurs' fit, kept while forecasts need it: when the model cannot
    /// follow, or its standard errors are not worked out here. It holds
    /// every fitted point's state, fitted value and residual (24–32 KiB
    /// for ETS' 1,000 points, by the trend; 24 KiB measured on one `comb`
    /// series), the larger part of an `mstl` or `comb` series' memory
    /// besides its window.
    model: Option<EtsFit>,
    form: String,
    parameters: usize,
    follower: Option<Follower>,
    /// Standard errors 1..=[`PREDICTED`] steps ahead, from the fit, when
    /// they are augurs' (the closed forms here did not reproduce them).
    se: Vec<f64>,
    /// The one-step error variance (of relative errors, for multiplicative
    /// ones), when the standard errors are worked out here.
    sigma2: Option<f64>,
}

impl Following {
    /// `model` fitted on `y`, with `fitted` its in-sample one-step
    /// predictions (None: it cannot follow).
    pub(super) fn new(model: EtsFit, y: &[f64], fitted: Option<&[f64]>) -> Self {
        let form = form_of(&model);
        let parameters = parameters_of(&model);
        let mut follower = fitted.and_then(|f| Follower::read(&model, y, f));
        let mut se = match &follower {
            Some(_) => predict(&model, PREDICTED).map(|p| p.1).unwrap_or_default(),
            None => Vec::new(),
        };
        if se.len() != PREDICTED {
            follower = None;
        }
        // The closed forms give augurs' standard errors for any horizon,
        // so its fit can go once they agree.
        let multiplicative = form.starts_with('M');
        let sigma2 = follower
            .as_ref()
            .map(|f| {
                let relative = if multiplicative { f.means(1)[0] } else { 1.0 };
                (f, (se[0] / relative).powi(2))
            })
            .filter(|(_, s2)| s2.is_finite())
            .filter(|(f, s2)| {
                let ours = f.se(multiplicative, *s2, PREDICTED);
                ours.iter()
                    .zip(&se)
                    .all(|(a, b)| (a - b).abs() <= 1e-6 * (a.abs() + b.abs()))
            })
            .map(|(_, s2)| s2);
        if sigma2.is_some() {
            se = Vec::new();
        }
        Following {
            model: sigma2.is_none().then_some(model),
            form,
            parameters,
            follower,
            se,
            sigma2,
        }
    }

    /// The form in ETS notation (see [`form_of`]).
    pub(super) fn form(&self) -> &str {
        &self.form
    }

    /// Parameters estimated (see [`parameters_of`]).
    pub(super) fn parameters(&self) -> usize {
        self.parameters
    }

    /// Its saved form, when it forecasts without augurs' fit (with the
    /// weights read back and standard errors worked out here).
    pub(super) fn saved(&self) -> Option<SavedFollowing> {
        let (None, Some(f), Some(sigma2)) = (&self.model, &self.follower, self.sigma2) else {
            return None;
        };
        Some(SavedFollowing {
            form: self.form.clone(),
            parameters: self.parameters,
            alpha: f.alpha,
            beta: f.beta,
            phi: f.phi,
            level: f.level,
            trend: f.trend,
            sigma2,
        })
    }

    /// A model saved by [`Following::saved`], refused unless it is one a
    /// fit gives: a non-seasonal form without a multiplicative trend,
    /// weights within their ranges, finite states and variance.
    pub(super) fn restored(s: SavedFollowing) -> Result<Following, String> {
        let trended = match s.form.as_str() {
            "ANN" | "MNN" => false,
            "AAN" | "MAN" | "AAdN" | "MAdN" => true,
            other => return Err(format!("ets fit: form {other:?} is not one that follows")),
        };
        let unit = WEIGHT_RANGE;
        let finite = [s.level, s.trend, s.sigma2].iter().all(|v| v.is_finite());
        if !(unit.contains(&s.alpha)
            && unit.contains(&s.beta)
            && s.phi > 0.0
            && unit.contains(&s.phi)
            && finite
            && s.sigma2 >= 0.0
            && (trended || s.trend == 0.0))
        {
            return Err(format!(
                "ets fit: alpha {}, beta {}, phi {}, level {}, trend {}, sigma2 {}",
                s.alpha, s.beta, s.phi, s.level, s.trend, s.sigma2
            ));
        }
        Ok(Following {
            model: None,
            form: s.form,
            parameters: s.parameters,
            follower: Some(Follower {
                alpha: s.alpha,
                beta: s.beta,
                phi: s.phi,
                level: s.level,
                trend: s.trend,
                trended,
            }),
            se: Vec::new(),
            sigma2: Some(s.sigma2),
        })
    }

    /// Whether it takes points after the fit.
    pub(super) fn follows(&self) -> bool {
        self.follower.is_some()
    }

    /// Takes the next point; false when it cannot.
    pub(super) fn update(&mut self, v: f64) -> bool {
        match &mut self.follower {
            Some(f) if v.is_finite() => {
                f.take(v);
                true
            }
            _ => false,
        }
    }

    /// Means and standard errors 1..=h steps after the newest point taken.
    pub(super) fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)> {
        let (Some(f), model) = (&self.follower, &self.model) else {
            return predict(self.model.as_ref()?, h);
        };
        let mean = f.means(h);
        if mean.iter().any(|m| !m.is_finite()) {
            return None;
        }
        let se = match (self.sigma2, model) {
            (Some(s2), _) => f.se(self.form.starts_with('M'), s2, h),
            (None, _) if h <= self.se.len() => self.se[..h].to_vec(),
            (None, Some(m)) => predict(m, h)?.1,
            (None, None) => return None,
        };
        Some((mean, se))
    }
}

/// An ETS model's smoothing weights and newest state, read back from its
/// fit because augurs keeps them private. With no trend or an additive
/// (possibly damped) one, the one-step forecast f moves with the error
/// e = y − f as
///
///   g_t = f_{t+1} − f_t = (α + φβ)·e_t + φ·g_{t−1} − φα·e_{t−1}
///
/// for additive and multiplicative errors alike (g_t = α·e_t without a
/// trend), which the in-sample forecasts satisfy exactly. Least squares
/// over them recovers α, β and φ; a fit they do not reproduce to rounding
/// (a multiplicative trend, a clamped state) is not followed.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Follower {
    alpha: f64,
    beta: f64,
    phi: f64,
    /// Level after the newest point taken.
    level: f64,
    /// Trend after the newest point taken (0 without one).
    trend: f64,
    /// Whether the form has a trend.
    trended: bool,
}

impl Follower {
    /// The weights and state of `model`, fitted on `y` with in-sample
    /// one-step predictions `fitted` (None: not readable).
    fn read(model: &EtsFit, y: &[f64], fitted: &[f64]) -> Option<Self> {
        use augurs::ets::model::TrendComponent;
        let trend = match model.model_type().trend {
            TrendComponent::None => false,
            TrendComponent::Additive => true,
            TrendComponent::Multiplicative => return None,
        };
        let next = model.predict(3, None).ok()?.point;
        let follower = Self::from_forecasts(y, fitted, *next.first()?, trend, model.damped())?;
        // The state read back must give augurs' own forecasts.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()));
        let ours = follower.means(3);
        (ours.len() == next.len() && ours.iter().zip(&next).all(|(a, b)| close(*a, *b)))
            .then_some(follower)
    }

    /// The weights and the state after `y` of a model with or without a
    /// (damped) trend whose one-step forecasts of `y` were `fitted` and
    /// of the point after it `next`.
    fn from_forecasts(
        y: &[f64],
        fitted: &[f64],
        next: f64,
        trend: bool,
        damped: bool,
    ) -> Option<Self> {
        let n = y.len();
        if fitted.len() != n || n < 8 {
            return None;
        }
        // f_0 ..= f_n: the in-sample forecasts and the first one after.
        let f: Vec<f64> = fitted.iter().copied().chain([next]).collect();
        let e: Vec<f64> = y.iter().zip(fitted).map(|(a, b)| a - b).collect();
        let g: Vec<f64> = f.windows(2).map(|w| w[1] - w[0]).collect();
        let (alpha, beta, phi) = if !trend {
            let (c, fit) = least_squares(&g, |t| [e[t], 0.0, 0.0], 0..n, 1)?;
            fit.then_some((c[0], 0.0, 1.0))?
        } else if damped {
            let rows = |t: usize| [e[t], g[t - 1], e[t - 1]];
            let (c, fit) = least_squares(&g, rows, 1..n, 3)?;
            let phi = c[1];
            let alpha = -c[2] / phi;
            fit.then_some((alpha, (c[0] - alpha) / phi, phi))?
        } else {
            // φ = 1: g_t − g_{t−1} = (α + β)·e_t − α·e_{t−1}.
            let d: Vec<f64> = (0..n)
                .map(|t| if t == 0 { 0.0 } else { g[t] - g[t - 1] })
                .collect();
            let (c, fit) = least_squares(&d, |t| [e[t], e[t - 1], 0.0], 1..n, 2)?;
            let alpha = -c[1];
            fit.then_some((alpha, c[0] - alpha, 1.0))?
        };
        let unit = WEIGHT_RANGE;
        if !(unit.contains(&alpha) && unit.contains(&beta) && phi > 0.0 && unit.contains(&phi)) {
            return None;
        }
        // l_n = f_n + α·e_n and f_{n+1} = l_n + φ·b_n, at the newest point.
        let level = fitted[n - 1] + alpha * e[n - 1];
        Some(Follower {
            alpha,
            beta,
            phi,
            level,
            trend: if trend { (next - level) / phi } else { 0.0 },
            trended: trend,
        })
    }

    /// Takes the next point.
    fn take(&mut self, y: f64) {
        let f = self.level + self.phi * self.trend;
        let e = y - f;
        self.level = f + self.alpha * e;
        self.trend = self.phi * self.trend + self.beta * e;
    }

    /// Standard errors 1..=h steps ahead with these weights and one-step
    /// error variance `sigma2` (of the relative errors when they are
    /// `multiplicative`), as augurs works them out, with the growth capped
    /// as [`predict`] caps it. Additive errors: the closed forms of the
    /// variance for ETS(A,N,N), (A,A,N) and (A,Ad,N) (Hyndman et al.,
    /// "Forecasting with Exponential Smoothing", 2008, ch. 6).
    /// Multiplicative ones (class 2 there): with μ_k the point forecasts
    /// and c_j the weight of an error j steps back on the forecast,
    /// θ_k = μ_k² + σ²·Σ_{j<k} c_j²·θ_{k−j} and the variance is
    /// (1 + σ²)·θ_k − μ_k², so the bounds scale with the level followed.
    fn se(&self, multiplicative: bool, sigma2: f64, h: usize) -> Vec<f64> {
        let mut se = if multiplicative {
            self.multiplicative_se(sigma2, h)
        } else {
            self.additive_se(sigma2, h)
        };
        cap_growth(&mut se);
        se
    }

    /// Uncapped standard errors of the additive-error forms (see [`Self::se`]).
    fn additive_se(&self, sigma2: f64, h: usize) -> Vec<f64> {
        let (a, b, p) = (self.alpha, self.beta, self.phi);
        (1..=h)
            .map(|k| {
                let s = k as f64;
                let ratio = if !self.trended {
                    1.0 + a * a * (s - 1.0)
                } else if p >= 1.0 {
                    1.0 + (s - 1.0) * (a * a + a * b * s + b * b * s * (2.0 * s - 1.0) / 6.0)
                } else {
                    let ps = p.powi(k as i32);
                    let q = (1.0 - p).powi(2);
                    1.0 + a * a * (s - 1.0) + b * p * s / q * (2.0 * a * (1.0 - p) + b * p)
                        - b * p * (1.0 - ps) / (q * (1.0 - p * p))
                            * (2.0 * a * (1.0 - p * p) + b * p * (1.0 + 2.0 * p - ps))
                };
                (ratio * sigma2).sqrt()
            })
            .collect()
    }

    /// Uncapped standard errors of the multiplicative-error forms (see
    /// [`Self::se`]); quadratic in `h`, as augurs' are.
    fn multiplicative_se(&self, sigma2: f64, h: usize) -> Vec<f64> {
        let mean = self.means(h);
        // c_j = α + β·(φ + φ² + … + φ^j); φ = 1 without damping, β = 0
        // without a trend.
        let mut damp = 0.0;
        let mut power = 1.0;
        let c2: Vec<f64> = (0..h)
            .map(|_| {
                power *= self.phi;
                damp += power;
                (self.alpha + self.beta * damp).powi(2)
            })
            .collect();
        let mut theta: Vec<f64> = Vec::with_capacity(h);
        for m in &mean {
            let spread: f64 = theta.iter().rev().zip(&c2).map(|(t, c)| t * c).sum();
            theta.push(m * m + sigma2 * spread);
        }
        theta
            .iter()
            .zip(&mean)
            .map(|(t, m)| ((1.0 + sigma2) * t - m * m).max(0.0).sqrt())
            .collect()
    }

    /// Point forecasts 1..=h steps ahead, as augurs makes them: the trend
    /// is damped by φ + φ + φ² + … + φ^(h−1) at step h (the textbook sum
    /// φ + φ² + … + φ^h counts φ once; augurs' forecasts of a fit, which
    /// these continue, count it twice).
    fn means(&self, h: usize) -> Vec<f64> {
        let mut damp = self.phi;
        let mut power = 1.0;
        (0..h)
            .map(|k| {
                if k > 0 {
                    power *= self.phi;
                    damp += power;
                }
                self.level + damp * self.trend
            })
            .collect()
    }
}

/// Least squares of `target[t]` on the first `k` of `rows(t)` over `ts`:
/// the coefficients, and whether they reproduce the targets to rounding
/// (the relations fitted here hold exactly). Written out because the
/// workspace's linear algebra (ndarray without a LAPACK backend) has no
/// solver, and three unknowns need none.
fn least_squares(
    target: &[f64],
    rows: impl Fn(usize) -> [f64; 3],
    ts: std::ops::Range<usize>,
    k: usize,
) -> Option<([f64; 3], bool)> {
    let mut a = [[0.0; 4]; 3];
    for t in ts.clone() {
        let x = rows(t);
        for i in 0..k {
            for j in 0..k {
                a[i][j] += x[i] * x[j];
            }
            a[i][3] += x[i] * target[t];
        }
    }
    // Gaussian elimination with partial pivoting on the normal equations.
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        a.swap(col, pivot);
        if a[col][col].abs() <= f64::MIN_POSITIVE {
            return None;
        }
        let lead = a[col];
        for (row, line) in a.iter_mut().enumerate().take(k) {
            if row != col {
                let r = line[col] / lead[col];
                for (v, l) in line.iter_mut().zip(lead).skip(col) {
                    *v -= r * l;
                }
            }
        }
    }
    let mut c = [0.0; 3];
    for i in 0..k {
        c[i] = a[i][3] / a[i][i];
    }
    let (mut miss, mut size) = (0.0_f64, 0.0_f64);
    for t in ts {
        let x = rows(t);
        let fit: f64 = (0..k).map(|i| c[i] * x[i]).sum();
        miss = miss.max((target[t] - fit).abs());
        size = size.max(target[t].abs());
    }
    Some((c, c.iter().all(|v| v.is_finite()) && miss <= 1e-6 * size))
}

/// Parameters an ETS model estimates: α and the initial level, β and the
/// initial trend with a trend, φ when damped.
pub(super) fn parameters_of(model: &EtsFit) -> usize {
    let trend = !matches!(
        model.model_type().trend,
        augurs::ets::model::TrendComponent::None
    );
    2 + 2 * usize::from(trend) + usize::from(model.damped())
}

/// A fitted model's in-sample one-step predictions of `y` (None when it
/// has none for every point).
pub(super) fn in_sample(model: &EtsFit, y: &[f64]) -> Option<Vec<f64>> {
    let f = model.predict_in_sample(None).ok()?;
    (f.point.len() == y.len()).then_some(f.point)
}

/// `y` minus in-sample predictions (empty when there are none).
pub(super) fn in_sample_errors(fitted: Option<&[f64]>, y: &[f64]) -> Vec<f64> {
    match fitted {
        Some(f) if f.len() == y.len() => y.iter().zip(f).map(|(a, b)| a - b).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_points_as_augurs_fit_would_have() {
        // Every form a non-seasonal search can pick, on a trending series:
        // the weights read back from a fit on the first 150 points, taking
        // the next 50, must land on the state augurs' fit on all 200
        // forecasts from, since the 200-point fit's first 150 in-sample
        // forecasts are the same recursion.
        let mut walk = 100.0;
        let y: Vec<f64> = (0..200)
            .map(|i| {
                walk += 0.4 + (((i * 7919) % 13) as f64 - 6.0) / 4.0;
                walk + ((i * 104_729) % 7) as f64 / 3.0
            })
            .collect();
        // (The trendless forms' recursion is checked below.)
        for form in ["AAN", "AAdN", "MAN", "MAdN"] {
            let model = fit_form(&y, form).unwrap();
            assert_eq!(form_of(&model), form);
            let fitted = in_sample(&model, &y).unwrap();
            let damped = model.damped();
            let mut f =
                Follower::from_forecasts(&y[..150], &fitted[..150], fitted[150], true, damped)
                    .unwrap_or_else(|| panic!("{form}: weights not read"));
            let whole = Follower::read(&model, &y, &fitted).unwrap();
            assert!((f.alpha - whole.alpha).abs() < 1e-6, "{form}");
            for v in &y[150..] {
                f.take(*v);
            }
            let want = model.predict(5, None).unwrap().point;
            for (a, b) in f.means(5).iter().zip(&want) {
                assert!((a - b).abs() < 1e-6 * b.abs(), "{form}: {a} vs {b}");
            }
            // augurs' fit is let go, and the standard errors worked out
            // here match augurs' out to 300 steps.
            let own = Following::new(model.clone(), &y, Some(&fitted));
            assert!(own.model.is_none() && own.se.is_empty(), "{form}");
            let (ours, theirs) = (own.predict(300).unwrap(), predict(&model, 300).unwrap());
            for (a, b) in ours
                .0
                .iter()
                .zip(&theirs.0)
                .chain(ours.1.iter().zip(&theirs.1))
            {
                assert!((a - b).abs() <= 1e-6 * b.abs(), "{form}: {a} vs {b}");
            }
            assert_eq!(
                (own.form(), own.parameters()),
                (form, parameters_of(&model))
            );
            // Online: a refit-free model forecasts from the newest point.
            let mut online = Following::new(fit_form(&y[..150], form).unwrap(), &y[..150], None);
            assert!(!online.follows() && !online.update(1.0), "{form}");
            let m150 = fit_form(&y[..150], form).unwrap();
            let fitted150 = in_sample(&m150, &y[..150]);
            online = Following::new(m150, &y[..150], fitted150.as_deref());
            assert!(online.follows(), "{form}");
            let before = online.predict(1).unwrap().0[0];
            assert!(online.update(y[150] + 50.0));
            assert!(online.predict(1).unwrap().0[0] > before, "{form}");
        }
    }

    #[test]
    fn reads_the_weights_of_simple_exponential_smoothing() {
        let y: Vec<f64> = (0..80).map(|i| ((i * 7919) % 17) as f64).collect();
        let (alpha, mut level) = (0.3, 8.0);
        let fitted: Vec<f64> = y
            .iter()
            .map(|v| {
                let f = level;
                level += alpha * (v - f);
                f
            })
            .collect();
        let f = Follower::from_forecasts(&y, &fitted, level, false, false).unwrap();
        assert!((f.alpha - alpha).abs() < 1e-9 && (f.level - level).abs() < 1e-9);
        assert_eq!((f.beta, f.trend), (0.0, 0.0));
    }

    #[test]
    fn a_fit_the_recursion_does_not_reproduce_is_not_followed() {
        // In-sample forecasts that no smoothing recursion made.
        let y: Vec<f64> = (0..60).map(|i| (i % 5) as f64).collect();
        let fitted: Vec<f64> = (0..60).map(|i| ((i * i) % 7) as f64).collect();
        for (trend, damped) in [(false, false), (true, false), (true, true)] {
            assert_eq!(
                Follower::from_forecasts(&y, &fitted, 1.0, trend, damped),
                None
            );
        }
    }

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
    fn a_kept_form_is_fitted_alone_as_the_search_fits_it() {
        // A level with noise (the search picks a form without a trend)
        // and a trending walk (it picks one with a trend).
        let flat: Vec<f64> = (0..400)
            .map(|i| 50.0 + ((i * 7919) % 13) as f64 / 4.0)
            .collect();
        let mut walk = 100.0;
        let trending: Vec<f64> = (0..400)
            .map(|i| {
                walk += 0.3 + (((i * 104_729) % 11) as f64 - 5.0) / 5.0;
                walk
            })
            .collect();
        let same = |a: &EtsFit, b: &EtsFit, what: &str| {
            assert_eq!(form_of(a), form_of(b), "{what}");
            assert_eq!(a.aicc().to_bits(), b.aicc().to_bits(), "{what}");
            let (fa, fb) = (predict(a, 5).unwrap(), predict(b, 5).unwrap());
            assert_eq!(fa, fb, "{what}");
        };
        for y in [&flat, &trending] {
            let searched = fit_auto_ets(y, None).unwrap();
            let form = form_of(&searched);
            same(&fit_form(y, &form).unwrap(), &searched, &form);
        }
        assert_eq!(&form_of(&fit_auto_ets(&flat, None).unwrap())[1..2], "N");
        assert_eq!(&form_of(&fit_auto_ets(&trending, None).unwrap())[1..2], "A");
        // Each form alone is the fit augurs' search gives it (compared
        // with a search among it and one other, where it wins; a search
        // for a trendless form alone finds nothing in augurs-ets 0.10.3).
        for form in ["ANN", "MNN", "AAN", "AAdN", "MAN", "MAdN"] {
            let alone = fit_form(&trending, form).unwrap();
            assert_eq!(form_of(&alone), form);
            let (error, damped) = (&form[..1], form.contains('d'));
            let search = AutoETS::new(1, format!("{error}ZN").as_str())
                .unwrap()
                .damped(damped)
                .unwrap();
            let (y, won) = [&flat, &trending]
                .into_iter()
                .map(|y| (y, search.fit(y).unwrap().model().clone()))
                .find(|(_, m)| form_of(m) == form)
                .unwrap_or_else(|| panic!("{form} wins no search"));
            same(&fit_form(y, form).unwrap(), &won, form);
            // Kept by a refit even where the search would pick another.
            assert_eq!(form_of(&fit_auto_ets(&trending, Some(form)).unwrap()), form);
        }
        assert_eq!(form_of(&fit_auto_ets(&flat, Some("AAdN")).unwrap()), "AAdN");
        // No trend cannot be damped; multiplicative errors need positive
        // data; too few points for the parameters.
        assert!(fit_form(&flat, "ANdN").is_none());
        let mut crossing = flat.clone();
        crossing[7] = -1.0;
        assert!(fit_form(&crossing, "MNN").is_none());
        assert!(fit_form(&crossing, "ANN").is_some());
        assert!(fit_form(&flat[..6], "ANN").is_none());
        assert!(fit_form(&flat[..7], "ANN").is_some());
        assert!(fit_form(&flat[..8], "AAN").is_none());
    }

    #[test]
    fn a_form_that_cannot_be_fitted_falls_back_to_the_search() {
        let y: Vec<f64> = (0..200).map(|i| (i % 9) as f64 - 4.0).collect();
        // Multiplicative error needs positive data; an unreadable form is
        // ignored.
        for form in [
            "MNN", "AAdA", "", "xyz", "A\u{e9}N", "AAAN", "AdN", "NNN", "ANdN",
        ] {
            let m = fit_auto_ets(&y, Some(form)).unwrap();
            assert_eq!(&form_of(&m)[..1], "A", "{form}");
        }
        let m = fit_auto_ets(&y, Some("AAdN")).unwrap();
        assert_eq!(form_of(&m), "AAdN");
        assert_eq!(tail(&vec![1.0; FIT_TAIL + 5]).len(), FIT_TAIL);
    }

    #[test]
    fn a_daily_cycle_of_hourly_points_gets_a_seasonal_form() {
        let h = crate::model::testdata::hourly_daily(400, |i| ((i * 7919) % 11) as f64 / 10.0);
        let mut m = new(ModelParams::default());
        m.fit(&h[..300]).unwrap();
        assert_eq!(m.seasons(), &[24]);
        let form = m.form().unwrap().to_string();
        assert!(form.ends_with('A') || form.ends_with('M'), "{form}");
        // It follows the cycle point by point: none of the next 100 points
        // (noise of ±0.5 on a swing of 20) looks anomalous ...
        for p in &h[300..] {
            assert!(m.score(*p) < 0.99, "{p:?} scored {}", m.score(*p));
            m.update(*p);
        }
        // ... but a point off its phase does.
        let off = Point {
            t: 400 * 3_600_000,
            v: 50.0 - 10.0 * (std::f64::consts::TAU * 400.0 / 24.0).sin(),
        };
        assert!(m.score(off) > 0.999, "{}", m.score(off));
        // Saved and loaded, it keeps the seasonal form and its forecasts:
        // the fit is saved whole (its states after the points it took one
        // by one since its last refit).
        let mut loaded = new(ModelParams::default());
        loaded.load(m.save()).unwrap();
        assert_eq!(loaded.form(), m.form());
        let (a, b) = (
            m.forecast(24, 0.95).unwrap(),
            loaded.forecast(24, 0.95).unwrap(),
        );
        assert_eq!(a, b);
        // Seasons the fitted points cannot hold three cycles of are not
        // used (nor kept, so the window does not grow for them).
        assert_eq!(EtsFitter.seasons_used(vec![24, 168]), vec![24]);
        assert_eq!(
            EtsFitter.seasons_used(vec![1440, 10080]),
            Vec::<usize>::new()
        );
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
