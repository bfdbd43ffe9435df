//! Learned thresholds: a seasonal quantile band computed from a series'
//! history, for queries whose limit is "unusually high for this hour of the
//! day" rather than one fixed number.
//!
//! The band at a phase of the season is the median of the history at that
//! phase plus a quantile of the deviations from the phase medians, pooled
//! over all phases. Pooling is what makes it robust: a 0.99 quantile
//! estimated from the handful of points one phase has (five weeks of
//! hourly data give five per hour of the week) would be little more than
//! that phase's largest value, while the pooled deviations give it hundreds.
//! Phases with fewer than [`MIN_PER_PHASE`] points, and series with no
//! season, fall back to the plain quantile of the whole history.

use serde::Deserialize;

use super::Point;
use super::season::detect_sampled;

/// Points a phase needs for its own median.
pub const MIN_PER_PHASE: usize = 3;
/// Points the history needs for a band at all.
pub const MIN_POINTS: usize = 10;

/// How a learned threshold finds its season.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SeasonRaw")]
pub enum BandSeason {
    /// Detected from the history (the shortest season found).
    Auto,
    /// No season: one level for all times.
    None,
    /// This many points per season.
    Points(usize),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SeasonRaw {
    Points(usize),
    Word(String),
}

impl TryFrom<SeasonRaw> for BandSeason {
    type Error = String;
    fn try_from(r: SeasonRaw) -> Result<Self, String> {
        match r {
            SeasonRaw::Points(n) if n >= 2 => Ok(BandSeason::Points(n)),
            SeasonRaw::Points(n) => Err(format!("season must be at least 2 points, is {n}")),
            SeasonRaw::Word(w) if w == "auto" => Ok(BandSeason::Auto),
            SeasonRaw::Word(w) if w == "none" => Ok(BandSeason::None),
            SeasonRaw::Word(w) => Err(format!(
                "season must be `auto`, `none` or a number of points, is {w:?}"
            )),
        }
    }
}

fn default_season() -> BandSeason {
    BandSeason::Auto
}

/// A threshold learned from history (`threshold: {learned: {...}}`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Learned {
    /// Quantile of the band: 0.99 for a limit above (1 % of history is
    /// higher at its phase), 0.01 for one below.
    pub quantile: f64,
    /// `auto` (default), `none`, or points per season.
    #[serde(default = "default_season")]
    pub season: BandSeason,
}

impl Learned {
    /// Checks the settings; the error names the key below `learned`.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(self.quantile > 0.0 && self.quantile < 1.0) {
            return Err((
                ".quantile".into(),
                format!("must be between 0 and 1 (exclusive), is {}", self.quantile),
            ));
        }
        Ok(())
    }

    /// The band learned from `history`; `None` when it is too short or
    /// has no regular step.
    pub fn band(&self, history: &[Point]) -> Option<Band> {
        Band::learn(history, self.quantile, self.season)
    }
}

/// A seasonal quantile band: one level per phase of the season.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Sampling step of the history (ms).
    step: i64,
    /// Levels by phase; phase = round(t / step) mod len.
    levels: Vec<f64>,
}

impl Band {
    /// Learns the band at `quantile` from `history` (see the module).
    pub fn learn(history: &[Point], quantile: f64, season: BandSeason) -> Option<Band> {
        let finite: Vec<Point> = history
            .iter()
            .copied()
            .filter(|p| p.v.is_finite())
            .collect();
        if finite.len() < MIN_POINTS {
            return None;
        }
        let step = median_step(&finite)?;
        let global = quantile_of(
            &mut finite.iter().map(|p| p.v).collect::<Vec<_>>(),
            quantile,
        );
        let season = match season {
            BandSeason::Points(n) => n,
            BandSeason::None => 1,
            BandSeason::Auto => {
                // Detection on values clipped to their 1–99 % range, so
                // that a few outliers do not hide the cycle.
                let mut sorted: Vec<f64> = finite.iter().map(|p| p.v).collect();
                let (lo, hi) = (
                    quantile_of(&mut sorted, 0.01),
                    quantile_of(&mut sorted, 0.99),
                );
                let clipped: Vec<Point> = finite
                    .iter()
                    .map(|p| Point {
                        t: p.t,
                        v: p.v.clamp(lo, hi),
                    })
                    .collect();
                detect_sampled(&clipped, step).first().copied().unwrap_or(1)
            }
        };
        if season < 2 {
            return Some(Band {
                step,
                levels: vec![global],
            });
        }
        let phase = |t: i64| phase_of(t, step, season);
        let mut by_phase: Vec<Vec<f64>> = vec![Vec::new(); season];
        for p in &finite {
            by_phase[phase(p.t)].push(p.v);
        }
        let medians: Vec<Option<f64>> = by_phase
            .iter_mut()
            .map(|v| (v.len() >= MIN_PER_PHASE).then(|| quantile_of(v, 0.5)))
            .collect();
        let mut deviations: Vec<f64> = finite
            .iter()
            .filter_map(|p| medians[phase(p.t)].map(|m| p.v - m))
            .collect();
        if deviations.len() < MIN_POINTS {
            return Some(Band {
                step,
                levels: vec![global],
            });
        }
        let dev = quantile_of(&mut deviations, quantile);
        let levels = medians
            .iter()
            .map(|m| m.map(|m| m + dev).unwrap_or(global))
            .collect();
        Some(Band { step, levels })
    }

    /// The band's level at time `t` (ms).
    pub fn at(&self, t: i64) -> f64 {
        self.levels[phase_of(t, self.step, self.levels.len())]
    }

    /// Points per season (1: one level for all times).
    pub fn season(&self) -> usize {
        self.levels.len()
    }
}

/// When a forecast's mean first reaches a threshold whose level at time t
/// (ms) is `level(t)`: the time (ms, fractional) of the crossing,
/// interpolated between the last point before it and the first across, so
/// that the answer does not jump by whole steps; `last.t` when `last` is
/// already across; `None` when no crossing is forecast within its range.
/// Shared by `imd_forecast_breach_seconds` and `forecast --threshold`.
pub fn crossing(
    last: Point,
    forecast: &super::Forecast,
    level: impl Fn(i64) -> f64,
    direction: crate::query::Direction,
) -> Option<f64> {
    use crate::query::Direction;
    // How far past the threshold a value is (>= 0: across).
    let past = |t: i64, v: f64| match direction {
        Direction::Above => v - level(t),
        Direction::Below => level(t) - v,
    };
    let first = past(last.t, last.v);
    if first >= 0.0 {
        return Some(last.t as f64);
    }
    let mut prev = (last.t, first);
    for (t, v) in forecast.t.iter().zip(&forecast.mean) {
        let d = past(*t, *v);
        if d >= 0.0 {
            let frac = if d == prev.1 {
                1.0
            } else {
                -prev.1 / (d - prev.1)
            };
            return Some(prev.0 as f64 + frac.clamp(0.0, 1.0) * (*t - prev.0) as f64);
        }
        prev = (*t, d);
    }
    None
}

fn phase_of(t: i64, step: i64, season: usize) -> usize {
    let slot = (t as f64 / step as f64).round() as i64;
    slot.rem_euclid(season as i64) as usize
}

fn median_step(points: &[Point]) -> Option<i64> {
    let mut d: Vec<i64> = points
        .windows(2)
        .map(|w| w[1].t - w[0].t)
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    let mid = d.len() / 2;
    Some(*d.select_nth_unstable(mid).1)
}

/// The `q` quantile of `v` (linear interpolation between order
/// statistics, as numpy's default); `v` is reordered.
fn quantile_of(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hourly history: a daily cycle with noise, and one huge outlier.
    fn daily(days: i64) -> Vec<Point> {
        let noise = crate::model::testdata::noisy((days * 24) as usize, 0.0, 1.0);
        (0..days * 24)
            .map(|i| Point {
                t: i * 3_600_000,
                v: 50.0
                    + 20.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + noise[i as usize].v
                    + if i == 30 { 1000.0 } else { 0.0 },
            })
            .collect()
    }

    #[test]
    fn follows_the_season_and_ignores_an_outlier() {
        let h = daily(14);
        let b = Band::learn(&h, 0.99, BandSeason::Auto).unwrap();
        assert_eq!(b.season(), 24);
        // At the peak hour (6) the band is near 70 + the noise's 0.99
        // quantile (≈ 1), at the trough (18) near 30 + 1; one outlier of
        // 1000 moves neither.
        let peak = b.at(6 * 3_600_000 + 100 * 86_400_000);
        let trough = b.at(18 * 3_600_000);
        assert!((70.0..72.5).contains(&peak), "{peak}");
        assert!((30.0..32.5).contains(&trough), "{trough}");
        // Below: the 0.01 band lies under the cycle.
        let low = Band::learn(&h, 0.01, BandSeason::Points(24)).unwrap();
        assert!((27.5..30.0).contains(&low.at(18 * 3_600_000)));
        // No season: one global quantile.
        let flat = Band::learn(&h, 0.5, BandSeason::None).unwrap();
        assert_eq!(flat.season(), 1);
        assert!((flat.at(0) - 50.0).abs() < 3.0, "{}", flat.at(0));
    }

    #[test]
    fn too_little_history_falls_back_or_gives_none() {
        assert!(Band::learn(&daily(14)[..5], 0.9, BandSeason::Auto).is_none());
        // Two days of a 24-point season: fewer than 3 points per phase.
        let b = Band::learn(&daily(2), 0.9, BandSeason::Points(24)).unwrap();
        assert!(b.levels.iter().all(|l| *l == b.levels[0]));
    }

    #[test]
    fn settings_are_validated_with_key_names() {
        let l: Learned = serde_yaml_ng::from_str("quantile: 0.99\nseason: 24\n").unwrap();
        assert_eq!(l.season, BandSeason::Points(24));
        let l: Learned = serde_yaml_ng::from_str("quantile: 0.99\n").unwrap();
        assert_eq!(l.season, BandSeason::Auto);
        let bad: Learned = serde_yaml_ng::from_str("quantile: 1.5\n").unwrap();
        assert_eq!(bad.check().unwrap_err().0, ".quantile");
        assert!(serde_yaml_ng::from_str::<Learned>("quantile: 0.9\nseason: weekly\n").is_err());
        assert!(serde_yaml_ng::from_str::<Learned>("quantile: 0.9\nseason: 1\n").is_err());
        assert!(serde_yaml_ng::from_str::<Learned>("quantile: 0.9\nseson: 3\n").is_err());
    }
}
