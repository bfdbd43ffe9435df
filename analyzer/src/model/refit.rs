//! Online use of batch forecasters (augurs' ETS and MSTL), which fit a
//! whole series at once and cannot take one more point: the model keeps a
//! window, refits it every season (at most every 48 points, or 250 for a
//! fit that stays current, below), and between refits judges each point
//! against the last fit's forecast for that many steps ahead. Scores use a
//! robust scale of the fit's one-step errors;
//! bounds use their empirical quantile, widened with the horizon as the
//! model's own intervals widen, and faster where forecasts from earlier
//! origins of a short history missed by more further out.
//!
//! Models that can follow a point without refitting (Theta's smoothed
//! level; the level and trend of ETS and of MSTL's trend model, with the
//! weights read back from augurs' fit) take each point that comes one step
//! after the fit, so that the next one is judged against a one-step
//! forecast. Those whose whole state follows (ETS, MSTL) stay current and
//! refit less often; Theta's drift and indices wait for its refits.
//!
//! A full fit (`Model::fit`) may search among forms of the model (ETS'
//! error, trend and damping, chosen by AICc); the periodic refits keep the
//! form it chose and only re-estimate its parameters, which costs a fraction
//! of the search. The next full fit searches again.
//!
//! Saved state is the window, the seasons found, the form, the points
//! taken since the last refit and, when the fit can be saved, the fit as
//! it is (its weights and states, and the summary of its errors): a
//! restored model then scores and forecasts exactly as the one saved,
//! without fitting again (what kept a restart of 10,000 `auto` series from
//! scoring for over two minutes; README, "A restart"). Fits that hold one
//! of augurs' fitted models are not serialisable: loading refits those on
//! the window, which gives the model of the newest points, and the next
//! refit comes when it would have.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::resid::{Errors, OnlineErrors, small_sample_widening};
use super::season::{detect_sampled, regular};
use super::window::{Window, future_times};
use super::{Forecast, Model, ModelError, ModelParams, Point};

/// Level of the intervals asked from augurs to read standard errors off
/// (see [`se_from`]).
pub(super) const SE_LEVEL: f64 = 0.95;

/// A batch forecaster: fits a regular series with the given seasons.
pub trait Fitter: Send + Sync {
    /// The model's name.
    fn name(&self) -> &'static str;
    /// Whether the model uses seasons (and detection should run).
    fn seasonal(&self) -> bool;
    /// Of the seasons detected in a history, those the model uses (all by
    /// default): the window holds four cycles of the longest kept.
    fn seasons_used(&self, detected: Vec<usize>) -> Vec<usize> {
        detected
    }
    /// Fewest grid points it can fit with these seasons.
    fn min_len(&self, seasons: &[usize]) -> usize;
    /// Fits `y`: in the given form (as a fit reported it), or searching
    /// for the best form when there is none or it no longer fits the data.
    fn fit(
        &self,
        y: &[f64],
        seasons: &[usize],
        form: Option<&str>,
    ) -> Result<Box<dyn Fitted>, String>;
    /// A fit saved by [`Fitted::saved`], or why it is not one of this
    /// model's.
    fn restore(&self, _saved: serde_json::Value) -> Result<Box<dyn Fitted>, String> {
        Err(format!("{} keeps no saved fits", self.name()))
    }
}

/// A fitted batch forecaster.
pub trait Fitted: Send + Sync {
    /// Means and standard errors 1..=h steps after the fitted data.
    fn predict(&self, h: usize) -> Option<(Vec<f64>, Vec<f64>)>;
    /// In-sample one-step errors. Asked once, right after the fit: a
    /// fitted model may let go of what only this needs (its copy of the
    /// data).
    fn residuals(&mut self) -> Vec<f64>;
    /// The form the fit chose, for later refits to keep (None: the model
    /// has no forms to choose among).
    fn form(&self) -> Option<String> {
        None
    }
    /// Parameters the fit estimated from the data (smoothing weights,
    /// initial states, seasonal indices): the in-sample errors understate
    /// out-of-sample ones by that many degrees of freedom, which matters on
    /// short series.
    fn parameters(&self) -> usize {
        0
    }
    /// Takes the next point (one step after the data the fit has seen)
    /// into the fit without refitting, if the model can (a smoothing
    /// model's level); false when it cannot, and its forecasts then stay
    /// anchored at the fit.
    fn update(&mut self, _v: f64) -> bool {
        false
    }
    /// Whether the fit stays current between refits: [`Fitted::update`]
    /// moves all of its state (level and trend) with each point, so refits
    /// can be further apart ([`MAX_FOLLOWING_REFIT_EVERY`]).
    fn stays_current(&self) -> bool {
        false
    }
    /// The fit as saved state, for [`Fitter::restore`] to take back
    /// without fitting again; None when it cannot be saved (it holds one of
    /// augurs' fits, which are not serialisable), and loading then refits.
    /// Asked after [`Fitted::residuals`], which it does not keep.
    fn saved(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Cycles of the longest season a window holds by default: enough for
/// every model here to estimate the season, and one more that steadies
/// forecasts a season ahead.
const CYCLES: usize = 4;

/// The longest gap between refits, in points, of a fit whose forecasts
/// stay anchored at it (every point is judged against a forecast from
/// further back until the next refit).
const MAX_REFIT_EVERY: usize = 48;
/// The longest gap between refits of a fit that stays current
/// ([`Fitted::stays_current`]): its forecasts start from the newest point
/// with its level and trend moved on, so a refit only re-estimates the
/// weights and the seasonal shape. A quarter
/// of the points ETS is fitted on ([`super::ets::FIT_TAIL`]) are new by
/// then. At one-minute samples and a daily season this is every 4 h
/// rather than every 48 min: most of `auto`'s CPU is these refits.
const MAX_FOLLOWING_REFIT_EVERY: usize = super::ets::FIT_TAIL / 4;
/// Held-out points that seed the online errors at fit time.
const SEED_POINTS: usize = 48;
/// Most origins a short window is forecast from to seed the online
/// errors (the newest): a few hundred errors, as many as are kept.
const SEED_ORIGINS: usize = 24;
/// Fewest rolling origins whose errors are read for their growth with
/// the horizon.
const MIN_POWER_ORIGINS: usize = 4;
/// Largest [`horizon_power`]: errors growing up to in proportion to the
/// horizon, on top of the model's own growth.
const MAX_HORIZON_POWER: f64 = 1.0;

/// Steps after the fit whose means and standard errors are worked out
/// once, at the fit: every point until the next refit is scored against
/// them (at most `MAX_REFIT_EVERY` steps out) and a short forecast reaches
/// a little further; longer forecasts ask the fitted model.
pub(super) const PREDICTED: usize = MAX_REFIT_EVERY + 64;

/// What was learned at the last refit.
struct State {
    fitted: Box<dyn Fitted>,
    /// `fitted.predict(PREDICTED)`, kept.
    predicted: Option<(Vec<f64>, Vec<f64>)>,
    last_t: i64,
    step: i64,
    errors: Errors,
    /// What the in-sample errors' bound is widened by for the parameters
    /// fitted to them, at [`SE_LEVEL`] (see [`small_sample_widening`];
    /// none without errors).
    widening: f64,
    /// Whether the fit stays current and has taken every point since it
    /// (so far).
    following: bool,
}

/// Means and standard errors 1..=h steps ahead, kept or worked out.
type Predicted<'a> = (Cow<'a, [f64]>, Cow<'a, [f64]>);

impl State {
    /// Means and standard errors 1..=h steps after the fit: from those
    /// kept when they reach that far (a batch forecaster's first steps do
    /// not depend on how many more are asked for), else from the model.
    fn predict(&self, h: usize) -> Option<Predicted<'_>> {
        match &self.predicted {
            Some((mean, se)) if h <= mean.len() => {
                Some((Cow::Borrowed(&mean[..h]), Cow::Borrowed(&se[..h])))
            }
            _ => {
                let (mean, se) = self.fitted.predict(h)?;
                Some((Cow::Owned(mean), Cow::Owned(se)))
            }
        }
    }
}

/// A batch forecaster run online.
pub struct Refitting<F: Fitter> {
    params: ModelParams,
    fitter: F,
    window: Window,
    seasons: Vec<usize>,
    /// The form chosen at the last full fit.
    form: Option<String>,
    /// Whether a full fit searches for the form (else it keeps `form`).
    search: bool,
    /// A form offered for the next full fit, with the seasons it was
    /// chosen with (see [`Model::offer_form`]; not saved).
    offered: Option<(String, Vec<usize>)>,
    state: Option<State>,
    since: usize,
    /// Errors of the forecasts the points were scored against, in units
    /// of the one-step error (divided by the interval's growth).
    online: OnlineErrors,
    /// Whether fitting seeds the online errors.
    seed: bool,
    /// Whether the model is kept only to score (see [`Refitting::scoring_only`]).
    scoring_only: bool,
    /// Cycles of the longest season the window holds.
    cycles: usize,
    /// How much faster than the model's own intervals the errors grow
    /// with the horizon (see [`horizon_power`]; 0 until measured) ...
    horizon_power: f64,
    /// ... beyond the horizon whose errors the seeded errors' pooled
    /// quantile stands for.
    horizon_ref: f64,
    /// Whether the model reads a window kept beside it instead of its
    /// own, which then holds only the newest point (see
    /// [`Refitting::share_window`]).
    shares_window: bool,
    /// Origins the online errors were seeded from (1 for one held-out
    /// block, 0 before any seeding): from [`SEED_ORIGINS`] on, bounds
    /// trust them without the in-sample floor (see `forecast`).
    seeded_origins: usize,
}

/// Saved state: the seasons, the window and the online errors (the fit is
/// redone on load).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    seasons: Vec<usize>,
    window: Window,
    #[serde(default, with = "super::compact::f64s_or_list")]
    online: Vec<f64>,
    #[serde(default)]
    form: Option<String>,
    #[serde(default)]
    horizon_power: f64,
    #[serde(default = "one")]
    horizon_ref: f64,
    /// Points taken since the last refit (absent in state saved before
    /// it was kept: a phase then, as after a fit).
    #[serde(default)]
    since: Option<usize>,
    /// Rolling origins the online errors were seeded from (absent in
    /// state saved before it was kept: 0, bounds keep the in-sample floor).
    #[serde(default)]
    seeded_origins: usize,
    /// The fit as it was (see [`SavedFit`]; absent when it could not be
    /// saved, and in state saved before fits were: loading refits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fit: Option<serde_json::Value>,
}

/// Most points a saved fit may count (as fitted, or taken since): far
/// beyond any history, so that a damaged count cannot overflow.
pub(super) const MAX_SAVED_COUNT: usize = 1 << 40;

/// A fit saved whole: what [`State`] holds but what is worked out again
/// from it (the kept forecasts).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFit<'a> {
    /// [`Fitted::saved`].
    fitted: serde_json::Value,
    last_t: i64,
    step: i64,
    /// Borrowed when saved, owned when loaded.
    errors: std::borrow::Cow<'a, Errors>,
    widening: f64,
    following: bool,
}

fn one() -> f64 {
    1.0
}

impl<F: Fitter> Refitting<F> {
    /// A model that has seen nothing yet.
    pub fn new(params: ModelParams, fitter: F) -> Refitting<F> {
        let seasons: Vec<usize> = params.season.filter(|s| *s > 1).into_iter().collect();
        let window = Window::new(capacity(&params, &seasons, CYCLES));
        Refitting {
            params,
            fitter,
            window,
            seasons,
            form: None,
            search: true,
            offered: None,
            state: None,
            since: 0,
            online: OnlineErrors::default(),
            seed: true,
            scoring_only: false,
            cycles: CYCLES,
            horizon_power: 0.0,
            horizon_ref: 1.0,
            shares_window: false,
            seeded_origins: 0,
        }
    }

    /// How much wider a bound `h` steps after the fit is made than the
    /// model's own growth says, from the rolling origins' errors: never
    /// narrower, so scores (which use the online errors as they are) and
    /// short horizons keep their calibration.
    fn extra_growth(&self, h: usize) -> f64 {
        (self.power_growth(h as f64) / self.power_growth(self.horizon_ref)).max(1.0)
    }

    /// `h^horizon_power`: how much faster than one step ahead errors `h`
    /// steps ahead grow than the model's own intervals.
    fn power_growth(&self, h: f64) -> f64 {
        if self.horizon_power > 0.0 {
            h.max(1.0).powf(self.horizon_power)
        } else {
            1.0
        }
    }

    /// The error of `point` against the current fit, in one-step units.
    fn online_error(&self, point: Point) -> Option<f64> {
        let s = self.state.as_ref()?;
        let h = Self::steps_to(s, point.t).max(1);
        let (mean, se) = s.predict(h)?;
        Some((point.v - mean[h - 1]) / growth(&se, h - 1))
    }

    /// The series' latest value (the spread floor's reference).
    fn level(&self) -> f64 {
        self.window.last().map(|p| p.v).unwrap_or(0.0)
    }

    /// The seasons in use.
    pub fn seasons(&self) -> &[usize] {
        &self.seasons
    }

    /// Points between refits: a season, within limits that are wider
    /// while the fit follows the points.
    fn refit_every(&self) -> usize {
        let following = self.state.as_ref().is_some_and(|s| s.following);
        self.season_within(if following {
            MAX_FOLLOWING_REFIT_EVERY
        } else {
            MAX_REFIT_EVERY
        })
    }

    /// The shortest season (12 without one), within 6 and `most`.
    fn season_within(&self, most: usize) -> usize {
        self.seasons.first().copied().unwrap_or(12).clamp(6, most)
    }

    /// Fits the window again, keeping the form (see the module's doc).
    fn refit(&mut self) {
        self.state = None;
        let (Some(step), Some(last)) = (self.window.step_ms(), self.window.last()) else {
            return;
        };
        let points: Vec<Point> = self.window.points().collect();
        let y = regular(&points, step);
        if y.len()
            < self
                .params
                .min_points
                .max(self.fitter.min_len(&self.seasons))
        {
            return;
        }
        match self.fitter.fit(&y, &self.seasons, self.form.as_deref()) {
            Ok(mut fitted) => {
                self.form = fitted.form();
                let residuals = fitted.residuals();
                let widening = if residuals.is_empty() {
                    1.0
                } else {
                    small_sample_widening(residuals.len(), fitted.parameters(), SE_LEVEL)
                };
                let mut errors = Errors::new(&residuals, last.v);
                if self.scoring_only {
                    errors.forget_sorted();
                }
                self.state = Some(State {
                    widening,
                    following: fitted.stays_current(),
                    predicted: fitted.predict(PREDICTED),
                    fitted,
                    last_t: last.t,
                    step,
                    errors,
                });
            }
            Err(e) => {
                tracing::debug!(model = self.fitter.name(), error = %e, "fit failed");
            }
        }
    }

    /// Seeds the online errors with honest out-of-sample ones: the model
    /// is fitted without the last `SEED_POINTS` (or one refit period, if
    /// longer) of the window and its forecast for them is compared with
    /// what came. In-sample errors alone are too small for bounds (a
    /// decomposition fits each point with smoothers that also see later
    /// points). A window that cannot spare that block (it would be more
    /// than a quarter of it, as on a few dozen yearly, quarterly or
    /// monthly points, where a fit without it is a different model) is
    /// forecast instead from each of its newest origins (at most
    /// [`SEED_ORIGINS`], none in its first half), up to a refit period
    /// ahead: that also measures how fast its errors grow with the
    /// horizon where the model's own intervals say too little
    /// ([`horizon_power`]). On the M3 and Tourism competitions the origins
    /// raised the 95 % bounds' coverage of yearly tails from 0.83 and 0.80
    /// to 0.87 and lowered the interval score (MSIS) of every group; the
    /// growth with the horizon then took yearly coverage to 0.89 and its
    /// MSIS 8 % and 5 % lower (README, "Forecasting competitions").
    fn seed_online(&mut self) {
        let Some(step) = self.window.step_ms() else {
            return;
        };
        let points: Vec<Point> = self.window.points().collect();
        let y = regular(&points, step);
        // Forecasts anchored at a fit, as between refits of a model that
        // cannot follow.
        let anchored = self.season_within(MAX_REFIT_EVERY);
        let h = anchored.max(SEED_POINTS);
        let need = self
            .params
            .min_points
            .max(self.fitter.min_len(&self.seasons));
        match y
            .len()
            .checked_sub(h)
            .filter(|c| *c >= need && h <= y.len() / 4)
        {
            Some(cut) => self.seed_from(&y, &[cut], h),
            None => {
                let first = self
                    .fitter
                    .min_len(&self.seasons)
                    .max(y.len() / 2)
                    .max(y.len().saturating_sub(SEED_ORIGINS));
                let origins: Vec<usize> = (first..y.len()).collect();
                self.seed_from(&y, &origins, anchored);
            }
        }
    }

    /// Adds the errors of forecasts up to `h` steps ahead from each origin
    /// (a fit on `y[..origin]`), in one-step units, to the online errors.
    /// Several origins also measure how the errors grow with the horizon
    /// beyond the model's own intervals ([`horizon_power`]); one origin's
    /// errors are too alike to tell.
    fn seed_from(&mut self, y: &[f64], origins: &[usize], h: usize) {
        // (steps ahead, error in one-step units)
        let mut errors: Vec<(usize, f64)> = Vec::new();
        let mut forecast_from = 0;
        for &cut in origins {
            let steps = h.min(y.len() - cut);
            let Ok(fitted) = self
                .fitter
                .fit(&y[..cut], &self.seasons, self.form.as_deref())
            else {
                continue;
            };
            let Some((mean, se)) = fitted.predict(steps) else {
                continue;
            };
            forecast_from += 1;
            errors.extend(
                mean.iter()
                    .enumerate()
                    .map(|(i, m)| (i + 1, (y[cut + i] - m) / growth(&se, i))),
            );
        }
        self.horizon_power = if origins.len() >= MIN_POWER_ORIGINS {
            horizon_power(&errors)
        } else {
            0.0
        };
        // The pooled errors' quantile, which the bounds use, is that of
        // the errors divided by `h^power` at this many steps ahead.
        self.horizon_ref = 1.0;
        if self.horizon_power > 0.0 {
            let q = |e: Vec<f64>| Errors::new(&e, 0.0).half_width(SE_LEVEL);
            let pooled = q(errors.iter().map(|(_, e)| *e).collect());
            let scaled = q(errors
                .iter()
                .map(|(k, e)| e / self.power_growth(*k as f64))
                .collect());
            if scaled > 0.0 {
                self.horizon_ref = (pooled / scaled)
                    .powf(1.0 / self.horizon_power)
                    .clamp(1.0, PREDICTED as f64);
            }
        }
        // Too few errors for their empirical quantile: bounds read the
        // normal quantile of their spread, which is estimated from as many
        // independent draws as there were origins (one origin's errors
        // share its fit), so it is widened by the Student-t quantile for
        // that count, as in-sample bounds are for their parameters. On the
        // yearly series of M3 and Tourism shorter than 15 points (4 to 7
        // origins) 95 % coverage went from 0.84 and 0.72 to 0.90 and 0.80
        // and MSIS fell 10 % and 6 % (README, "Forecasting competitions").
        let widen = if OnlineErrors::read_as_normal(errors.len()) && forecast_from >= 2 {
            small_sample_widening(forecast_from, 1, SE_LEVEL)
        } else {
            1.0
        };
        let level = self.level();
        self.seeded_origins = forecast_from;
        self.online
            .extend(errors.into_iter().map(|(_, e)| e * widen), level);
    }

    /// The form the last fit chose (as [`Fitted::form`] gives it).
    pub fn form(&self) -> Option<&str> {
        self.form.as_deref()
    }

    /// Makes full fits keep `form` rather than search (when given): for a
    /// backtest that fits one model at several origins of a series, where
    /// the form chosen at one origin serves the others.
    pub fn keeping_form(mut self, form: Option<String>) -> Self {
        self.search = form.is_none();
        self.form = form;
        self
    }

    /// Turns off the seeding of online errors at fit time (for quick
    /// backtests that only compare forecasts, not bounds).
    pub fn without_seeding(mut self) -> Self {
        self.seed = false;
        self
    }

    /// Keeps less per fit for a model that is asked only for scores (and
    /// one-step forecasts): its bounds then come from the normal shape of
    /// the errors, not their empirical quantile. For `auto`'s judge,
    /// which sits beside a forecaster in every series.
    pub fn scoring_only(mut self) -> Self {
        self.scoring_only = true;
        self
    }

    /// Makes the window hold `cycles` of the longest season (four by
    /// default; at least the model's own need), before the first fit.
    pub fn holding_cycles(mut self, cycles: usize) -> Self {
        self.cycles = cycles;
        self.window = Window::new(capacity(&self.params, &self.seasons, cycles));
        self
    }

    /// Reads `shared` instead of keeping a window of its own: for a model
    /// kept beside another that holds the same points and at least as many
    /// (`auto`'s judge beside its pick, which would otherwise hold each
    /// series' last few days twice). `shared` must end at the time of the point this
    /// model saw last; `false`, and nothing changed, when it does not or
    /// holds fewer points than this model's window would. From then on
    /// every point must come through [`Refitting::update_beside`] with
    /// `shared` updated first (a plain update makes the model keep its own
    /// window again, which holds too few points to refit on until it has
    /// filled). A model restored from state saved while sharing is fitted
    /// here.
    pub fn share_window(&mut self, shared: &Window) -> bool {
        // Times, not values: each window rounds its values by its own
        // blocks (see [`Window`]).
        let last_t = |w: &Window| w.last().map(|p| p.t);
        if shared.capacity() < self.capacity() || last_t(shared) != last_t(&self.window) {
            return false;
        }
        if self.state.is_none() {
            self.refit_beside(shared);
        }
        let mut own = Window::new(1);
        own.fill(&shared.last().into_iter().collect::<Vec<_>>());
        self.window = own;
        self.shares_window = true;
        true
    }

    /// Whether the model reads a window kept beside it (see
    /// [`Refitting::share_window`]).
    pub fn shares_window(&self) -> bool {
        self.shares_window
    }

    /// Takes `point` as [`Model::update`] does, refitting (when due) on
    /// the newest points of `shared`, which already holds `point`, when
    /// the model shares it (see [`Refitting::share_window`]).
    pub fn update_beside(&mut self, point: Point, shared: &Window) {
        self.take(point, Some(shared));
    }

    /// Stops reading a shared window: the model's own grows back to its
    /// full size from the points it holds.
    fn keep_own_window(&mut self) {
        self.shares_window = false;
        if self.window.capacity() < self.capacity() {
            let points: Vec<Point> = self.window.points().collect();
            self.window = Window::new(self.capacity());
            self.window.fill(&points);
        }
    }

    /// Points of history the model's window holds when full.
    fn capacity(&self) -> usize {
        capacity(&self.params, &self.seasons, self.cycles)
    }

    /// Refits on the newest points of `shared`, those the model's own
    /// window would hold.
    fn refit_beside(&mut self, shared: &Window) {
        let cap = self.capacity();
        let mut w = Window::new(cap);
        w.fill(
            &shared
                .points()
                .skip(shared.len().saturating_sub(cap))
                .collect::<Vec<_>>(),
        );
        let own = std::mem::replace(&mut self.window, w);
        self.refit();
        self.window = own;
    }

    /// Takes a point in; see [`Model::update`].
    fn take(&mut self, point: Point, shared: Option<&Window>) {
        if !point.v.is_finite() {
            return;
        }
        if let Some(e) = self.online_error(point) {
            let level = self.level();
            self.online.push(e, level);
        }
        self.window.push(point);
        self.since += 1;
        if self.shares_window && shared.is_none() {
            self.keep_own_window();
        }
        if self.since >= self.refit_every() {
            self.since = 0;
            match shared.filter(|_| self.shares_window) {
                Some(w) => self.refit_beside(w),
                None => self.refit(),
            }
        } else {
            self.follow(point);
        }
    }

    /// Moves the fit on to `point` when it is the next step after what the
    /// fit has seen and the model can take it: later points are then judged
    /// against forecasts from `point`, not from the last refit.
    fn follow(&mut self, point: Point) {
        let Some(s) = &mut self.state else {
            return;
        };
        if Self::steps_to(s, point.t) != 1 || !s.fitted.update(point.v) {
            s.following = false;
            return;
        }
        s.predicted = s.fitted.predict(PREDICTED);
        s.last_t = point.t;
    }

    /// The fit saved by [`saved_fit`], when it is sound and one of this
    /// model's, and ends no later than the window: else None, and the
    /// window is refitted (it holds what the fit was made from).
    fn restored(&self, saved: serde_json::Value) -> Option<State> {
        let refused = |why: String| {
            tracing::debug!(model = self.fitter.name(), reason = %why, "saved fit refused; refitting");
            None
        };
        let f: SavedFit = match serde_json::from_value(saved) {
            Ok(f) => f,
            Err(e) => return refused(e.to_string()),
        };
        let last = self.window.last()?;
        // The fit ends within what the window has seen, a sane number of
        // steps before its newest point.
        let behind = last
            .t
            .checked_sub(f.last_t)
            .filter(|d| *d >= 0 && f.step > 0 && d / f.step <= MAX_SAVED_COUNT as i64);
        if behind.is_none() || !(f.widening >= 1.0 && f.widening.is_finite()) {
            return refused(format!(
                "step {}, last time {} (window's {}), widening {}",
                f.step, f.last_t, last.t, f.widening
            ));
        }
        let fitted = match self.fitter.restore(f.fitted) {
            Ok(fitted) => fitted,
            Err(e) => return refused(e),
        };
        Some(State {
            predicted: fitted.predict(PREDICTED),
            fitted,
            last_t: f.last_t,
            step: f.step,
            errors: f.errors.into_owned(),
            widening: f.widening,
            following: f.following,
        })
    }

    /// Steps from the fit's last point to `t`.
    fn steps_to(state: &State, t: i64) -> usize {
        ((t - state.last_t) as f64 / state.step as f64)
            .round()
            .max(0.0) as usize
    }
}

/// Window size: the configured one, or `cycles` of the longest season and
/// a point if longer.
fn capacity(params: &ModelParams, seasons: &[usize], cycles: usize) -> usize {
    params
        .window
        .max(cycles * seasons.iter().max().copied().unwrap_or(0) + 1)
}

impl<F: Fitter> Model for Refitting<F> {
    fn name(&self) -> &'static str {
        self.fitter.name()
    }

    fn window(&self) -> Option<&Window> {
        Some(&self.window)
    }

    fn fit(&mut self, history: &[Point]) -> Result<(), ModelError> {
        if self.params.season.is_none() && self.fitter.seasonal() {
            let mut w = Window::new(history.len().max(1));
            w.fill(history);
            let points: Vec<Point> = w.points().collect();
            self.seasons = self.fitter.seasons_used(
                w.step_ms()
                    .map(|step| detect_sampled(&points, step))
                    .unwrap_or_default(),
            );
        }
        self.window = Window::new(self.capacity());
        self.window.fill(history);
        self.shares_window = false;
        // A full fit searches for the form again, unless one chosen with
        // the same seasons was offered; seeding then uses it.
        let offered = self.offered.take();
        if self.search {
            self.form = offered
                .filter(|(_, seasons)| *seasons == self.seasons)
                .map(|(form, _)| form);
        }
        self.refit();
        if self.seed && self.online.too_few() {
            self.seed_online();
        }
        self.since = refit_phase(self.window.points(), self.refit_every());
        Ok(())
    }

    fn offer_form(&mut self, form: &str, seasons: &[usize]) {
        self.offered = Some((form.to_string(), seasons.to_vec()));
    }

    fn score(&self, point: Point) -> f64 {
        let Some(s) = &self.state else {
            return 0.0;
        };
        if !point.v.is_finite() {
            return 0.0;
        }
        let h = Self::steps_to(s, point.t).max(1);
        let Some((mean, se)) = s.predict(h) else {
            return 0.0;
        };
        let growth = growth(&se, h - 1);
        self.online.score(&s.errors, point.v - mean[h - 1], growth)
    }

    fn update(&mut self, point: Point) {
        self.take(point, None);
    }

    fn forecast(&self, steps: usize, level: f64) -> Option<Forecast> {
        let s = self.state.as_ref()?;
        let last = self.window.last()?;
        let h0 = Self::steps_to(s, last.t);
        let (mean, se) = s.predict(h0 + steps)?;
        // The in-sample one-step errors are a floor under the bounds,
        // unless the online errors came from the most rolling origins a
        // window is forecast from and count: errors of forecasts from 24
        // origins in the recent history estimate the bounds better than
        // errors of a fit to the whole of it, whose first points (the
        // level and drift still settling) and older regimes widen the
        // bounds of smooth series (M3 "other": 95 % coverage 0.983 with
        // the floor, 0.904 without; README, "Forecasting competitions").
        // Fewer origins keep it: they are too few to be trusted alone.
        let trust_online = self.seeded_origins >= SEED_ORIGINS && !self.online.too_few();
        let in_sample = if trust_online {
            0.0
        } else {
            s.errors.half_width(level) * s.widening
        };
        // The online errors' quantile (0 when fewer than ten) and the in-sample
        // one-step one, each widened with the horizon as measured.
        let online = self.online.half_width(0.0, level);
        let mut f = Forecast {
            t: future_times(last.t, s.step, steps),
            mean: Vec::with_capacity(steps),
            lower: Vec::with_capacity(steps),
            upper: Vec::with_capacity(steps),
        };
        for (i, m) in mean.iter().enumerate().skip(h0) {
            let half = (online * self.extra_growth(i + 1))
                .max(in_sample * self.power_growth((i + 1) as f64));
            let g = growth(&se, i);
            f.mean.push(*m);
            f.lower.push(m - half * g);
            f.upper.push(m + half * g);
        }
        Some(f)
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(Saved {
            seasons: self.seasons.clone(),
            window: self.window.clone(),
            online: self.online.saved(),
            form: self.form.clone(),
            horizon_power: self.horizon_power,
            horizon_ref: self.horizon_ref,
            since: Some(self.since),
            seeded_origins: self.seeded_origins,
            fit: self.state.as_ref().and_then(saved_fit),
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let s: Saved = serde_json::from_value(state).map_err(|e| ModelError::BadState {
            model: self.fitter.name(),
            reason: e.to_string(),
        })?;
        if s.seasons.iter().any(|p| *p < 2) {
            return Err(ModelError::BadState {
                model: self.fitter.name(),
                reason: format!("bad seasons {:?}", s.seasons),
            });
        }
        if !(0.0..=MAX_HORIZON_POWER).contains(&s.horizon_power)
            || !(1.0..=PREDICTED as f64).contains(&s.horizon_ref)
        {
            return Err(ModelError::BadState {
                model: self.fitter.name(),
                reason: format!(
                    "bad horizon_power {} or horizon_ref {}",
                    s.horizon_power, s.horizon_ref
                ),
            });
        }
        self.horizon_power = s.horizon_power;
        self.horizon_ref = s.horizon_ref;
        self.seasons = s.seasons;
        self.window = s.window;
        // A window saved while shared holds only the newest point: it
        // grows again unless it is shared again.
        self.keep_own_window();
        self.online = OnlineErrors::restored(s.online, self.level());
        self.seeded_origins = s.seeded_origins;
        self.form = s.form;
        self.state = s.fit.and_then(|f| self.restored(f));
        if self.state.is_none() {
            self.refit();
        }
        self.since = s
            .since
            .unwrap_or_else(|| refit_phase(self.window.points(), self.refit_every()));
        Ok(())
    }
}

/// `state`'s fit as saved state, when the fitted model can be saved.
fn saved_fit(state: &State) -> Option<serde_json::Value> {
    serde_json::to_value(SavedFit {
        fitted: state.fitted.saved()?,
        last_t: state.last_t,
        step: state.step,
        errors: std::borrow::Cow::Borrowed(&state.errors),
        widening: state.widening,
        following: state.following,
    })
    .ok()
}

/// Points to count as already taken after a full fit (or a load), in
/// `0..every`: series fitted in the same cycle, as at a start or a
/// periodic refit of the engine, would otherwise all refit again in one
/// later cycle, which then takes minutes where the others take a second
/// (352 CPU s against a mean of 3 at 10,000 `auto` series; bench/RESULTS.md).
/// The phase is a hash of the fitted points, so it differs between series
/// and is the same for a series refitted on the same data. Saved state
/// keeps the count itself.
pub(super) fn refit_phase(points: impl IntoIterator<Item = Point>, every: usize) -> usize {
    use std::hash::{DefaultHasher, Hash, Hasher};
    if every < 2 {
        return 0;
    }
    let mut h = DefaultHasher::new();
    for p in points {
        p.t.hash(&mut h);
        p.v.to_bits().hash(&mut h);
    }
    (h.finish() % every as u64) as usize
}

/// How much wider the model's own interval is at index `i` than one step
/// ahead (at least 1).
fn growth(se: &[f64], i: usize) -> f64 {
    match (se.first(), se.get(i)) {
        (Some(a), Some(b)) if *a > 0.0 && b.is_finite() => (b / a).max(1.0),
        _ => 1.0,
    }
}

/// The power `b` in [0, 1] under which errors `h` steps ahead, divided by
/// `h^b`, are most alike: the maximum-likelihood exponent of a Laplace
/// error whose scale grows as `c h^b`, found on a grid (with `c` profiled
/// out). A model whose intervals widen as fast as its errors gives 0;
/// yearly series whose trends turn give more, since a fit on a short
/// history cannot see how far its trend may be off. Hand-written: a
/// one-parameter search no crate offers.
fn horizon_power(errors: &[(usize, f64)]) -> f64 {
    let one_step = errors.iter().any(|(h, _)| *h == 1);
    let further = errors.iter().any(|(h, _)| *h > 1);
    if errors.len() < 20 || !one_step || !further {
        return 0.0;
    }
    let n = errors.len() as f64;
    let log_h: f64 = errors.iter().map(|(h, _)| (*h as f64).ln()).sum();
    let log_lik = |b: f64| {
        let c = errors
            .iter()
            .map(|(h, e)| e.abs() / (*h as f64).powf(b))
            .sum::<f64>()
            / n;
        if c > 0.0 {
            -n * c.ln() - b * log_h
        } else {
            f64::NEG_INFINITY
        }
    };
    (0..=20)
        .map(|k| MAX_HORIZON_POWER * k as f64 / 20.0)
        .map(|b| (b, log_lik(b)))
        .fold((0.0, f64::NEG_INFINITY), |best, (b, l)| {
            if l > best.1 { (b, l) } else { best }
        })
        .0
}

/// Standard errors from an augurs forecast's intervals at `level`.
pub fn se_from(f: &augurs::Forecast, h: usize, level: f64) -> Vec<f64> {
    let z = super::z_for_level(level);
    match &f.intervals {
        Some(iv) if iv.lower.len() == h && iv.upper.len() == h => iv
            .lower
            .iter()
            .zip(&iv.upper)
            .map(|(l, u)| (u - l) / (2.0 * z))
            .collect(),
        _ => vec![1.0; h],
    }
}

#[cfg(test)]
mod tests {
    use super::super::theta;
    use super::*;

    /// Thirty yearly-like points: a trend that turns, with some noise.
    fn turning(n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| Point {
                t: i as i64 * 60_000,
                v: 100.0
                    + if i < 20 {
                        2.0 * i as f64
                    } else {
                        40.0 - (i - 20) as f64
                    }
                    + 3.0 * ((i * 7919) % 13) as f64 / 13.0,
            })
            .collect()
    }

    #[test]
    fn a_short_window_is_seeded_from_rolling_origins() {
        let h = turning(30);
        let params = ModelParams {
            window: 30,
            ..ModelParams::default()
        };
        let mut seeded = theta::new(params.clone());
        seeded.fit(&h).unwrap();
        let mut bare = theta::new(params).without_seeding();
        bare.fit(&h).unwrap();
        // 48 points cannot be held out of 30: the origins 15..30 give
        // errors up to 12 steps ahead instead.
        assert!(!seeded.online.too_few());
        let (a, b) = (
            seeded.forecast(6, 0.95).unwrap(),
            bare.forecast(6, 0.95).unwrap(),
        );
        assert_eq!(a.mean, b.mean);
        // The turn makes forecasts from the origins miss by more than the
        // in-sample one-step errors say.
        let width = |f: &Forecast| f.upper[5] - f.lower[5];
        assert!(width(&a) > width(&b), "{} vs {}", width(&a), width(&b));
    }

    #[test]
    fn few_held_out_errors_give_bounds_widened_for_their_origins() {
        // Up, then down from point 6: forecasts from the origins miss.
        let h: Vec<Point> = turning(11)
            .into_iter()
            .enumerate()
            .map(|(i, p)| Point {
                v: p.v - if i > 6 { 4.0 * (i - 6) as f64 } else { 0.0 },
                ..p
            })
            .collect();
        let params = ModelParams {
            window: 11,
            min_points: 4,
            ..ModelParams::default()
        };
        let mut seeded = theta::new(params.clone());
        seeded.fit(&h).unwrap();
        let mut bare = theta::new(params).without_seeding();
        bare.fit(&h).unwrap();
        // Origins 5..11 give 6 + 5 + ... + 1 = 21 errors: too few to
        // count for scores, enough for bounds.
        assert_eq!(seeded.seeded_origins, 6);
        assert_eq!(seeded.online.saved().len(), 21);
        assert!(seeded.online.too_few());
        let half = seeded.online.half_width(0.0, 0.95);
        assert!(half > 0.0);
        // Kept widened by the t quantile with 5 degrees of freedom.
        let raw: Vec<f64> = seeded
            .online
            .saved()
            .iter()
            .map(|e| e / small_sample_widening(6, 1, SE_LEVEL))
            .collect();
        let unwidened = Errors::new(&raw, 0.0).half_width(0.95);
        assert!((half / unwidened - small_sample_widening(6, 1, SE_LEVEL)).abs() < 1e-9);
        let (a, b) = (
            seeded.forecast(4, 0.95).unwrap(),
            bare.forecast(4, 0.95).unwrap(),
        );
        // Four steps out the origins' errors, grown with the horizon,
        // are wider than the in-sample ones.
        let width = |f: &Forecast| f.upper[3] - f.lower[3];
        assert!(width(&a) > width(&b), "{} vs {}", width(&a), width(&b));
    }

    #[test]
    fn many_origins_lift_the_in_sample_floor_and_saved_state_keeps_that() {
        // Noisy first half, calm second half: the in-sample errors of the
        // whole window are those of the noise; the 24 origins' are calm.
        let h: Vec<Point> = (0..100)
            .map(|i| {
                let noise = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
                Point {
                    t: i as i64 * 60_000,
                    v: 100.0 + noise * if i < 50 { 40.0 } else { 1.0 },
                }
            })
            .collect();
        let params = ModelParams {
            window: 100,
            ..ModelParams::default()
        };
        let mut m = theta::new(params.clone());
        m.fit(&h).unwrap();
        assert_eq!(m.seeded_origins, SEED_ORIGINS);
        let lifted = m.forecast(4, 0.95).unwrap();
        let mut loaded = theta::new(params.clone());
        loaded.load(m.save()).unwrap();
        assert_eq!(loaded.forecast(4, 0.95).unwrap().upper, lifted.upper);
        // State saved before the count was kept keeps the floor.
        let mut old = m.save();
        old.as_object_mut().unwrap().remove("seeded_origins");
        let mut floored = theta::new(params);
        floored.load(old).unwrap();
        let kept = floored.forecast(4, 0.95).unwrap();
        let width = |f: &Forecast| f.upper[0] - f.lower[0];
        assert!(
            width(&kept) > 3.0 * width(&lifted),
            "{} vs {}",
            width(&kept),
            width(&lifted)
        );
    }

    /// Errors from 8 origins up to 12 steps out, whose size grows as
    /// `h^power` (the same spread of sizes at every horizon).
    fn growing(power: f64) -> Vec<(usize, f64)> {
        (0..8)
            .flat_map(|o| {
                (1..=12).map(move |h| {
                    let size = 0.5 + ((o * 12 + h) * 7919 % 17) as f64 / 17.0;
                    let sign = if (o + h) % 2 == 0 { 1.0 } else { -1.0 };
                    (h, sign * size * (h as f64).powf(power))
                })
            })
            .collect()
    }

    #[test]
    fn the_horizon_power_is_how_fast_errors_outgrow_the_intervals() {
        for want in [0.0, 0.3, 0.5, 1.0] {
            let got = horizon_power(&growing(want));
            assert!((got - want).abs() <= 0.1, "{want}: {got}");
        }
        // Errors that shrink with the horizon do not narrow the bounds.
        assert_eq!(horizon_power(&growing(-0.5)), 0.0);
        // Too few errors, or one horizon only: nothing to read.
        assert_eq!(horizon_power(&growing(0.5)[..12]), 0.0);
        let one: Vec<(usize, f64)> = (0..40).map(|i| (1, i as f64)).collect();
        assert_eq!(horizon_power(&one), 0.0);
    }

    #[test]
    fn saved_state_keeps_the_horizon_power_and_refuses_a_bad_one() {
        let h = turning(30);
        let params = ModelParams {
            window: 30,
            ..ModelParams::default()
        };
        let mut m = theta::new(params.clone());
        m.fit(&h).unwrap();
        let mut loaded = theta::new(params.clone());
        loaded.load(m.save()).unwrap();
        assert_eq!(loaded.horizon_power, m.horizon_power);
        let (a, b) = (
            loaded.forecast(6, 0.95).unwrap(),
            m.forecast(6, 0.95).unwrap(),
        );
        for (x, y) in a.upper.iter().zip(&b.upper) {
            assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
        }
        let mut bad = m.save();
        bad["horizon_power"] = serde_json::json!(3.0);
        let err = theta::new(params).load(bad).unwrap_err().to_string();
        assert!(err.contains("horizon_power"), "{err}");
    }

    #[test]
    fn series_fitted_together_refit_at_different_points() {
        let params = ModelParams {
            window: 60,
            ..ModelParams::default()
        };
        let mut models: Vec<_> = (0..12)
            .map(|k| {
                let h: Vec<Point> = turning(60)
                    .into_iter()
                    .map(|p| Point {
                        v: p.v + 0.37 * k as f64,
                        ..p
                    })
                    .collect();
                let mut m = theta::new(params.clone());
                m.fit(&h).unwrap();
                // A load keeps the count to the next refit.
                let mut loaded = theta::new(params.clone());
                loaded.load(m.save()).unwrap();
                assert_eq!(loaded.since, m.since);
                m
            })
            .collect();
        let every = models[0].refit_every();
        let mut refits = vec![0; every];
        for (i, n) in refits.iter_mut().enumerate() {
            for m in &mut models {
                m.update(Point {
                    t: (60 + i) as i64 * 60_000,
                    v: 150.0,
                });
                if m.since == 0 {
                    *n += 1;
                }
            }
        }
        // Each refits once in a period, not all in the same step (as
        // they did when every fit started its count at 0).
        assert_eq!(refits.iter().sum::<usize>(), models.len(), "{refits:?}");
        assert!(refits.iter().all(|n| *n <= models.len() / 2), "{refits:?}");
    }

    #[test]
    fn far_bounds_widen_where_origin_errors_outgrew_the_intervals() {
        let h = turning(30);
        let mut m = theta::new(ModelParams {
            window: 30,
            ..ModelParams::default()
        });
        m.fit(&h).unwrap();
        // The turn makes errors from the origins grow faster than Theta's
        // intervals: a power is measured ...
        assert!(m.horizon_power > 0.0, "{}", m.horizon_power);
        let wide = m.forecast(6, 0.95).unwrap();
        m.horizon_power = 0.0;
        let plain = m.forecast(6, 0.95).unwrap();
        let width = |f: &Forecast, k: usize| f.upper[k] - f.lower[k];
        // ... which widens the far bounds and never narrows any.
        assert!(width(&wide, 5) > width(&plain, 5));
        for k in 0..6 {
            assert!(width(&wide, k) >= width(&plain, k) - 1e-9, "step {k}");
        }
    }

    /// An hourly series with a daily shape, a wandering level and
    /// deterministic noise; `seasonal` false leaves the shape out.
    fn hourly(n: usize, seasonal: bool) -> Vec<Point> {
        let mut state = 99_u64;
        let mut level = 200.0;
        (0..n)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                level += 0.3 * u;
                let shape = if seasonal {
                    12.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                } else {
                    0.0
                };
                Point {
                    t: i as i64 * 3_600_000,
                    v: level + shape + 2.0 * u,
                }
            })
            .collect()
    }

    /// The forecast as bits, to compare exactly.
    fn bits(f: Option<Forecast>) -> Vec<u64> {
        let f = f.expect("forecasts");
        [f.mean, f.lower, f.upper]
            .iter()
            .flatten()
            .map(|v| v.to_bits())
            .collect()
    }

    #[test]
    fn a_saved_fit_is_restored_as_it_was_and_a_damaged_one_refitted() {
        use super::super::build;
        for (name, seasonal) in [
            ("theta", true),
            ("ets", true),
            ("ets", false),
            ("mstl", true),
            ("mstl", false),
            ("comb", true),
            ("auto", true),
        ] {
            let h = hourly(700, seasonal);
            let params = ModelParams::default();
            let mut kept = build(name, &params).unwrap();
            kept.fit(&h[..450]).unwrap();
            // Points followed since the fit, then saved.
            for p in &h[450..470] {
                kept.update(*p);
            }
            let saved = kept.save();
            assert!(
                saved.to_string().contains("\"fit\""),
                "{name}: no fit saved"
            );
            let mut restored = build(name, &params).unwrap();
            restored.load(saved.clone()).unwrap();
            // Scores and forecasts are the saved model's to the bit, across
            // refits.
            for (i, p) in h[470..].iter().enumerate() {
                assert_eq!(
                    kept.score(*p).to_bits(),
                    restored.score(*p).to_bits(),
                    "{name} (seasonal {seasonal}): score of point {i} after the load"
                );
                kept.update(*p);
                restored.update(*p);
                if i % 37 == 0 {
                    let (a, b) = (kept.forecast(30, 0.95), restored.forecast(30, 0.95));
                    assert_eq!(bits(a), bits(b), "{name}: forecast after point {i}");
                }
            }
            if name == "auto" {
                continue;
            }
            // Without its fit, the load refits the window: the model of
            // the newest points, not the one followed since the fit.
            let mut bare = saved.clone();
            bare.as_object_mut().unwrap().remove("fit");
            let mut refitted = build(name, &params).unwrap();
            refitted.load(bare).unwrap();
            let mut first = build(name, &params).unwrap();
            first.load(saved.clone()).unwrap();
            assert_ne!(
                bits(refitted.forecast(30, 0.95)),
                bits(first.forecast(30, 0.95)),
                "{name}: refitted on load"
            );
            // A damaged fit is refitted the same way.
            let mut damaged = saved.clone();
            damaged["fit"]["step"] = serde_json::json!(-1);
            let mut m = build(name, &params).unwrap();
            m.load(damaged).unwrap();
            assert_eq!(
                bits(m.forecast(30, 0.95)),
                bits(refitted.forecast(30, 0.95))
            );
            let mut damaged = saved.clone();
            damaged["fit"]["fitted"] = serde_json::json!({"alpha": 7});
            let mut m = build(name, &params).unwrap();
            m.load(damaged).unwrap();
            assert_eq!(
                bits(m.forecast(30, 0.95)),
                bits(refitted.forecast(30, 0.95))
            );
        }
    }
}
