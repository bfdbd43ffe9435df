//! `auto`: the default. At fit time it finds the series' seasons and runs a
//! quick rolling-origin backtest on the series' own history (three origins,
//! one season — or 24 points — ahead each) of seasonal naive, drift, ETS,
//! MSTL and `comb` (the mean of Theta's and MSTL's forecasts). It keeps
//! `comb`, the safest of them, unless another candidate's errors are
//! smaller by more than twice the standard error of the paired
//! differences: a backtest this short often ranks close candidates wrongly,
//! and a combination loses little where it is not the best. Series too
//! short for the backtest get `comb`. Its forecasts are the picked model's.
//! On a long history the pick keeps the ETS form (for MSTL and `comb`,
//! that of MSTL's trend model) its backtest chose at the newest origin
//! rather than search every form again (see `FORM_HELD_OUT_SHARE`).
//!
//! Its anomaly score judges each point against a one-step forecast: that
//! of a Theta model kept beside the pick, whose level follows every point
//! (the robust residual score of `refit`). The picked forecaster is chosen
//! for forecasts a season ahead, and seasonal naive (or an ETS or MSTL
//! whose weights could not be read back) stays anchored at its last refit,
//! so its errors mix the point's surprise with the drift of a forecast up
//! to a season old. The picked model scores while Theta has
//! too little history, the rolling median/MAD model (`mad`) before either
//! can. Scoring by the pick gave F1 0.480 / 0.715 at 0.99 / 0.999 on the
//! labelled suite of `tests/model_quality.rs`, by the judge 0.477 / 0.767;
//! on UCR anomaly-archive series 135 average precision went from 0.005 to
//! 0.325 (README, "Model quality").

use serde::{Deserialize, Serialize};

use super::mad::Mad;
use super::refit::{Fitter, Refitting};
use super::season::detect_sampled;
use super::theta::{self, Theta};
use super::window::Window;
use super::{Forecast, Model, ModelError, ModelParams, Point, build};

/// Forecasters `auto` chooses among, preferred first on ties (`comb`
/// whenever no other is clearly better).
pub const CANDIDATES: &[&str] = &["snaive", "drift", "ets", "mstl", "comb"];
/// Backtest origins.
const ORIGINS: usize = 3;
/// The pick takes the form its backtest chose only when the points the
/// newest origin left out are at most this share of the history (1/20).
/// There the form a search picks rarely changes and a search is costly
/// (a week of one-minute points: MSTL's search was a fifth of `auto`'s
/// fit). On short histories it is cheap, and the horizon left out is a
/// tenth of a monthly series of M3 or Tourism: handing the form over
/// there raised `auto`'s MASE by 0.2–0.4 % in four of their groups
/// (README, "Forecasting competitions").
const FORM_HELD_OUT_SHARE: usize = 20;

/// Picks a forecaster per series and scores against one-step forecasts.
pub struct Auto {
    params: ModelParams,
    picked: Option<Box<dyn Model>>,
    /// Judges each point (see the module's doc).
    judge: Theta,
    mad: Mad,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    picked: Option<(String, serde_json::Value)>,
    /// Absent in state saved before the judge existed: the pick then
    /// scores until the next fit.
    #[serde(default)]
    judge: Option<serde_json::Value>,
    mad: serde_json::Value,
}

impl Auto {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams) -> Auto {
        Auto {
            mad: Mad::new(params.clone()),
            judge: judge(&params),
            params,
            picked: None,
        }
    }

    /// The forecaster picked at the last fit.
    pub fn picked(&self) -> Option<&'static str> {
        self.picked.as_ref().map(|m| m.name())
    }

    /// The picked model, once it can forecast.
    fn ready(&self) -> Option<&dyn Model> {
        let m = self.picked.as_deref()?;
        m.forecast(1, 0.5).map(|_| m)
    }

    /// Lets the judge read the pick's window when that holds every point
    /// the judge's own would: the judge's three days of one-minute points
    /// are the newest part of `comb`'s four, and kept twice they were a
    /// quarter of `auto`'s memory per series (bench/RESULTS.md).
    fn share_window(&mut self) {
        if let Some(w) = self.picked.as_deref().and_then(|m| m.window()) {
            self.judge.share_window(w);
        }
    }

    /// The model that scores the next point: the judge, else the pick,
    /// else `mad`.
    fn scorer(&self) -> &dyn Model {
        if self.judge.forecast(1, 0.5).is_some() {
            return &self.judge;
        }
        self.ready().unwrap_or(&self.mad)
    }
}

/// The Theta model that judges points: it keeps no more than scores need
/// (the cycles its seasonal test needs, no sorted errors for bounds), as
/// it sits beside the pick in every series.
fn judge(params: &ModelParams) -> Theta {
    theta::new(params.clone())
        .scoring_only()
        .holding_cycles(theta::SEASONAL_CYCLES)
}

/// What a backtest found.
pub struct Backtest {
    /// Each candidate's absolute errors over the origins, newest origin
    /// first (candidates that could not forecast at some origin are left
    /// out).
    pub errors: Vec<(&'static str, Vec<f64>)>,
    /// The form each form-choosing candidate (ETS, MSTL) chose at the
    /// newest origin, with the seasons it used.
    pub forms: Vec<(&'static str, Chosen)>,
}

/// A form a fit chose, and the seasons it chose it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// In the notation of [`super::refit::Fitted::form`].
    pub form: String,
    /// The seasons the model used.
    pub seasons: Vec<usize>,
}

impl Backtest {
    /// The form the `picked` model can take for its fit on the whole
    /// history: its own at the newest origin (MSTL's for `comb`, whose
    /// form is its MSTL's), which is one horizon of points short of that
    /// history. Searching every form again on it is a third of `auto`'s
    /// ETS searches.
    pub fn form_for(&self, picked: &str) -> Option<&Chosen> {
        let of = if picked == "comb" { "mstl" } else { picked };
        self.forms.iter().find(|(c, _)| *c == of).map(|(_, f)| f)
    }
}

/// Each candidate's absolute errors over the backtest origins, and the
/// forms chosen. ETS and MSTL choose their form at the newest origin and
/// keep it at the earlier ones. `comb` is the mean of Theta's and MSTL's
/// forecasts, so only Theta is fitted for it.
pub fn backtest(params: &ModelParams, history: &[Point], h: usize) -> Backtest {
    let n = history.len();
    let cuts: Vec<usize> = (1..=ORIGINS).map(|o| n - o * h).collect();
    // Each fitted candidate's mean forecasts, one per origin, and the
    // form it chose at the newest.
    type Run = (Option<Vec<Vec<f64>>>, Option<Chosen>);
    let means = |name: &str| -> Run {
        let mut form = None;
        let mut newest = None;
        let means = cuts
            .iter()
            .enumerate()
            .map(|(i, &cut)| {
                let f = candidate_forecast(name, params, &history[..cut], h, &mut form);
                if i == 0 {
                    newest.clone_from(&form);
                }
                f.map(|f| f.mean)
            })
            .collect();
        (means, newest)
    };
    let fitted: Vec<(&'static str, Run)> = CANDIDATES
        .iter()
        .filter(|c| **c != "comb")
        .chain(std::iter::once(&"theta"))
        .map(|c| (*c, means(c)))
        .collect();
    let of = |name: &str| {
        fitted
            .iter()
            .find(|(c, _)| *c == name)
            .and_then(|(_, (m, _))| m.as_ref())
    };
    let comb: Option<Vec<Vec<f64>>> = match (of("theta"), of("mstl")) {
        (Some(t), Some(m)) => Some(
            t.iter()
                .zip(m)
                .map(|(a, b)| a.iter().zip(b).map(|(x, y)| 0.5 * (x + y)).collect())
                .collect(),
        ),
        _ => None,
    };
    let mut out = Vec::new();
    for name in CANDIDATES.iter().copied() {
        let forecasts = if name == "comb" {
            comb.as_ref()
        } else {
            of(name)
        };
        let Some(forecasts) = forecasts else {
            continue;
        };
        let errors: Vec<f64> = cuts
            .iter()
            .zip(forecasts)
            .flat_map(|(&cut, mean)| {
                history[cut..cut + h]
                    .iter()
                    .zip(mean)
                    .map(|(p, m)| (p.v - m).abs())
            })
            .collect();
        if errors.iter().all(|e| e.is_finite()) {
            out.push((name, errors));
        }
    }
    let forms = fitted
        .iter()
        .filter_map(|(c, (_, chosen))| Some((*c, chosen.clone()?)))
        .collect();
    Backtest { errors: out, forms }
}

/// A candidate's forecast `h` steps past `train`. The refitting models skip
/// seeding their error scale, since only their forecasts are compared, and
/// keep `form` (set by their first fit).
fn candidate_forecast(
    name: &str,
    params: &ModelParams,
    train: &[Point],
    h: usize,
    form: &mut Option<Chosen>,
) -> Option<Forecast> {
    fn refitting<F: Fitter>(
        m: Refitting<F>,
        train: &[Point],
        h: usize,
        form: &mut Option<Chosen>,
    ) -> Option<Forecast> {
        let mut m = m
            .without_seeding()
            .keeping_form(form.take().map(|c| c.form));
        m.fit(train).ok()?;
        *form = m.form().map(|f| Chosen {
            form: f.to_string(),
            seasons: m.seasons().to_vec(),
        });
        m.forecast(h, 0.95)
    }
    match name {
        "ets" => refitting(super::ets::new(params.clone()), train, h, form),
        "mstl" => refitting(super::mstl::new(params.clone()), train, h, form),
        "theta" => refitting(super::theta::new(params.clone()), train, h, form),
        _ => {
            let mut m = build(name, params).ok()?;
            m.fit(train).ok()?;
            m.forecast(h, 0.95)
        }
    }
}

/// The candidate to use after a backtest: `comb`, unless another
/// candidate's errors are smaller by more than twice the standard error of
/// the paired differences.
fn pick(results: &[(&'static str, Vec<f64>)]) -> Option<&'static str> {
    let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len().max(1) as f64;
    let best = results
        .iter()
        .min_by(|a, b| mean(&a.1).total_cmp(&mean(&b.1)))?;
    let Some((_, comb)) = results.iter().find(|(n, _)| *n == "comb") else {
        return Some(best.0);
    };
    let d: Vec<f64> = comb.iter().zip(&best.1).map(|(c, b)| c - b).collect();
    let m = mean(&d);
    let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len().max(2) - 1) as f64;
    let se = (var / d.len().max(1) as f64).sqrt();
    if m > 2.0 * se {
        Some(best.0)
    } else {
        Some("comb")
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
                .and_then(|step| detect_sampled(&points, step).first().copied()),
        };
        let h = season.unwrap_or(24).clamp(6, 48);
        let mut params = self.params.clone();
        params.season = season.or(self.params.season);
        // Room for the backtest: each origin keeps at least four horizons
        // (and two seasons) of training data.
        let need = ORIGINS * h + (4 * h).max(self.params.min_points);
        let (name, form) = if points.len() >= need {
            let b = backtest(&params, &points, h);
            let name = pick(&b.errors).unwrap_or("comb");
            let form = b
                .form_for(name)
                .filter(|_| h * FORM_HELD_OUT_SHARE <= points.len());
            (name, form.cloned())
        } else {
            ("comb", None)
        };
        self.judge.fit(&points)?;
        // Let the picked model find both seasons itself when none is set
        // (it takes the backtest's form only if it finds the same ones).
        // A model picked again is refitted in place: it keeps the online
        // errors that calibrate its scores and bounds, which a new one
        // would have to collect again.
        let fit = |m: &mut dyn Model| {
            if let Some(c) = &form {
                m.offer_form(&c.form, &c.seasons);
            }
            m.fit(&points)
        };
        match &mut self.picked {
            Some(m) if m.name() == name => fit(m.as_mut())?,
            _ => {
                let mut m = build(name, &self.params)?;
                fit(m.as_mut())?;
                self.picked = Some(m);
            }
        }
        self.share_window();
        Ok(())
    }

    fn score(&self, point: Point) -> f64 {
        self.scorer().score(point)
    }

    fn update(&mut self, point: Point) {
        self.mad.update(point);
        if let Some(m) = &mut self.picked {
            m.update(point);
        }
        match self.picked.as_deref().and_then(|m| m.window()) {
            Some(w) => self.judge.update_beside(point, w),
            None => self.judge.update(point),
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
            judge: Some(self.judge.save()),
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
        self.judge = judge(&self.params);
        if let Some(state) = s.judge {
            self.judge.load(state)?;
        }
        self.share_window();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Online errors in the picked model's saved state.
    fn online_errors(m: &Auto) -> serde_json::Value {
        m.save()["picked"][1]["online"].clone()
    }

    #[test]
    fn a_model_picked_again_keeps_its_online_errors() {
        let h = daily(600);
        let mut m = Auto::new(ModelParams::default());
        m.fit(&h[..400]).unwrap();
        let first = m.picked();
        for p in &h[400..] {
            m.update(*p);
        }
        let kept = online_errors(&m);
        m.fit(&h).unwrap();
        let mut fresh = Auto::new(ModelParams::default());
        fresh.fit(&h).unwrap();
        assert_eq!(m.picked(), first, "the same data picks the same model");
        assert_eq!(m.picked(), fresh.picked());
        // The refitted model still has the errors of the points it judged;
        // a new one only the errors its fit seeded.
        let kept_errors: crate::model::compact::F64s =
            serde_json::from_value(kept.clone()).unwrap();
        assert!(kept_errors.0.len() >= 200);
        assert_eq!(online_errors(&m), kept);
        assert_ne!(online_errors(&fresh), kept);
    }

    /// Form searches `f` runs (see `ets::SEARCHES`).
    fn searches_in(f: impl FnOnce()) -> usize {
        let before = super::super::ets::SEARCHES.with(|n| n.get());
        f();
        super::super::ets::SEARCHES.with(|n| n.get()) - before
    }

    #[test]
    fn the_pick_takes_the_form_its_backtest_chose() {
        let h = daily(600);
        let params = ModelParams {
            season: Some(24),
            ..ModelParams::default()
        };
        let b = backtest(&params, &h, 24);
        let mstl = b.form_for("mstl").unwrap();
        assert_eq!(mstl.seasons, vec![24]);
        assert_eq!(b.form_for("comb"), Some(mstl));
        assert!(b.form_for("ets").is_some());
        assert_eq!(b.form_for("snaive"), None);
        // ETS and MSTL search at the newest origin only: the pick (`comb`
        // here, with MSTL's form) and its seeding search no more, whether
        // the seasons are set or found.
        let backtest_only = searches_in(|| drop(backtest(&params, &h, 24)));
        assert_eq!(backtest_only, 2);
        for params in [params.clone(), ModelParams::default()] {
            let mut m = Auto::new(params);
            assert_eq!(searches_in(|| m.fit(&h).unwrap()), backtest_only);
            assert_eq!(m.picked(), Some("comb"));
            let form = &m.save()["picked"][1]["form"];
            assert_eq!(form.as_str(), Some(mstl.form.as_str()));
        }
        // A history the newest origin left a twentieth of out or more:
        // the pick searches.
        let short = daily(24 * 19);
        let b = backtest(&params, &short, 24);
        assert!(b.form_for("comb").is_some());
        let mut m = Auto::new(params.clone());
        assert_eq!(searches_in(|| m.fit(&short).unwrap()), 3);
        // A pick whose own seasons differ from the backtest's searches; an
        // offer serves one fit.
        let mut m = super::super::mstl::new(ModelParams::default());
        m.offer_form(&mstl.form, &[12]);
        assert_eq!(searches_in(|| m.fit(&h).unwrap()), 1);
        m.offer_form(&mstl.form, &[24]);
        assert_eq!(searches_in(|| m.fit(&h).unwrap()), 0);
        assert_eq!(searches_in(|| m.fit(&h).unwrap()), 1);
    }

    fn daily(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t: i as i64 * 3_600_000,
                v: 50.0
                    + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + ((i * 7919) % 13) as f64 / 13.0,
            })
            .collect()
    }

    #[test]
    fn points_are_judged_by_a_theta_that_follows_every_point() {
        let h = daily(600);
        // The default window (the pick's as long as the judge's) and a
        // short one (the pick's four cycles, the judge's three): either
        // way the judge reads the pick's window and keeps one point, and
        // scores as a judge with a window of its own.
        for params in [
            ModelParams::default(),
            ModelParams {
                window: 12,
                ..ModelParams::default()
            },
        ] {
            let mut m = Auto::new(params.clone());
            let mut judge = super::judge(&params);
            m.fit(&h[..400]).unwrap();
            judge.fit(&h[..400]).unwrap();
            assert!(m.judge.shares_window());
            assert_eq!(m.judge.window().map(Window::len), Some(1));
            let (pick, own) = (
                m.ready().unwrap().window().unwrap(),
                judge.window().unwrap(),
            );
            let last_t = |w: &Window| w.last().map(|p| p.t);
            assert!(pick.capacity() >= own.capacity() && last_t(pick) == last_t(own));
            assert_eq!(pick.capacity() > own.capacity(), params.window == 12);
            for (k, p) in h[400..].iter().enumerate() {
                // Every tenth point jumps: scores must agree there too.
                let p = Point {
                    v: p.v + if k % 10 == 0 { 8.0 } else { 0.0 },
                    ..*p
                };
                // The same points, rounded by each window's own blocks
                // (model::window).
                assert!(
                    (m.score(p) - judge.score(p)).abs() < 1e-4,
                    "{} vs {}: window {}, point {k}",
                    m.score(p),
                    judge.score(p),
                    params.window
                );
                m.update(p);
                judge.update(p);
            }
        }
    }

    #[test]
    fn a_judge_saved_while_reading_the_picks_window_loads_as_one_with_its_own() {
        let h = daily(700);
        let mut m = Auto::new(ModelParams::default());
        let mut judge = super::judge(&ModelParams::default());
        m.fit(&h[..400]).unwrap();
        judge.fit(&h[..400]).unwrap();
        for p in &h[400..450] {
            m.update(*p);
            judge.update(*p);
        }
        let shared = m.save();
        let window = crate::model::window::Window::load("test", shared["judge"]["window"].clone());
        assert_eq!(window.unwrap().len(), 1);
        let mut own = shared.clone();
        own["judge"] = judge.save();
        let (mut a, mut b) = (
            Auto::new(ModelParams::default()),
            Auto::new(ModelParams::default()),
        );
        a.load(shared.clone()).unwrap();
        b.load(own).unwrap();
        assert!(a.judge.shares_window() && b.judge.shares_window());
        let a_judge_score_at_450 = a.judge.score(h[450]);
        for (k, p) in h[450..].iter().enumerate() {
            // Each window rounds values by its own blocks (model::window).
            let (x, y) = (a.score(*p), b.score(*p));
            assert!((x - y).abs() < 1e-4, "{x} vs {y}: point {k}");
            assert_eq!(a.score(*p), a.judge.score(*p));
            a.update(*p);
            b.update(*p);
        }
        // Loaded alone, where no window is there to read, the judge
        // scores with its saved fit, its window grows again, and it
        // refits on that once it holds enough points.
        let mut alone = super::judge(&ModelParams::default());
        alone.load(shared["judge"].clone()).unwrap();
        assert!(alone.forecast(1, 0.5).is_some());
        assert_eq!(alone.score(h[450]), a_judge_score_at_450);
        for p in &h[450..] {
            alone.update(*p);
        }
        assert!(alone.forecast(1, 0.5).is_some());
        assert_eq!(alone.window().map(Window::len), Some(120));
        // A sharing judge updated without the window it reads keeps its
        // own again, and refits once that holds enough points.
        let mut judge = a.judge;
        assert!(judge.shares_window());
        let more = daily(1000);
        for p in &more[700..] {
            judge.update(*p);
        }
        assert!(!judge.shares_window());
        assert!(judge.forecast(1, 0.5).is_some());
        assert_eq!(judge.window().map(Window::len), Some(120));
    }

    #[test]
    fn saved_state_keeps_the_judge() {
        let h = daily(500);
        let mut m = Auto::new(ModelParams::default());
        m.fit(&h[..400]).unwrap();
        for p in &h[400..450] {
            m.update(*p);
        }
        let mut loaded = Auto::new(ModelParams::default());
        loaded.load(m.save()).unwrap();
        // Loading refits on the saved window (the original has followed
        // points since its last refit), so scores differ a little; the
        // judge is back and scores.
        assert!(loaded.judge.forecast(1, 0.5).is_some());
        for p in &h[450..] {
            assert_eq!(loaded.score(*p), loaded.judge.score(*p));
            m.update(*p);
            loaded.update(*p);
        }
        // State saved before the judge existed: the pick scores.
        let mut old = m.save();
        old.as_object_mut().unwrap().remove("judge");
        let mut loaded = Auto::new(ModelParams::default());
        loaded.load(old).unwrap();
        let next = Point {
            t: 500 * 3_600_000,
            v: 60.0,
        };
        assert_eq!(loaded.score(next), loaded.ready().unwrap().score(next));
    }

    #[test]
    fn comb_stays_unless_another_candidate_is_clearly_better() {
        // Errors that alternate around comb's: a smaller mean, but by less
        // than two standard errors of the differences.
        let comb: Vec<f64> = (0..72).map(|i| 1.0 + (i % 5) as f64 * 0.1).collect();
        let close: Vec<f64> = comb
            .iter()
            .enumerate()
            .map(|(i, e)| e + if i % 2 == 0 { -0.5 } else { 0.45 })
            .collect();
        let results = vec![("comb", comb.clone()), ("ets", close)];
        assert_eq!(pick(&results), Some("comb"));
        // A candidate that is smaller nearly everywhere wins.
        let better: Vec<f64> = comb
            .iter()
            .enumerate()
            .map(|(i, e)| e * 0.7 + (i % 3) as f64 * 0.01)
            .collect();
        let results = vec![("comb", comb), ("mstl", better)];
        assert_eq!(pick(&results), Some("mstl"));
        // Without comb among the results, the smallest mean error.
        assert_eq!(
            pick(&[("snaive", vec![2.0, 2.0]), ("drift", vec![1.0, 3.5])]),
            Some("snaive")
        );
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn picks_a_seasonal_model_for_seasonal_data() {
        let h = crate::model::testdata::hourly_daily(400, |i| if i % 5 == 0 { 0.5 } else { -0.1 });
        let mut m = Auto::new(ModelParams::default());
        m.fit(&h).unwrap();
        let picked = m.picked().unwrap();
        assert!(
            ["snaive", "ets", "mstl", "comb"].contains(&picked),
            "{picked}"
        );
        // Whichever it is, the forecast follows the cycle.
        let f = m.forecast(24, 0.95).unwrap();
        for (k, mean) in f.mean.iter().enumerate() {
            let want = 50.0 + 10.0 * (std::f64::consts::TAU * (400 + k) as f64 / 24.0).sin();
            assert!((mean - want).abs() < 1.5, "step {k}: {mean} vs {want}");
        }
        let mut flat = Auto::new(ModelParams::default());
        flat.fit(&crate::model::testdata::noisy(300, 10.0, 1.0))
            .unwrap();
        assert!(flat.picked().is_some());
    }
}
