//! The multivariate detector: one learned detector (`iforest` by default,
//! or `ocsvm`) over several series of one host or job at once, aligned by
//! timestamp, so that a broken relationship between series (CPU busy while
//! requests dropped) is unusual even when each series alone looks normal.
//!
//! Each input gives two features per aligned row — its value and its
//! distance from the mean of the last six rows (no more: every feature that
//! does not carry the relationship dilutes the random splits that find it)
//! — and the row gets the time features of
//! [`FeatureSpec`] when the history spans days. Rows are standardised as
//! the univariate models' are and the raw output calibrated the same way.
//!
//! Which inputs made a row unusual: exact Shapley values of the raw output
//! over the inputs (up to [`SHAPLEY_MAX`] inputs; one-at-a-time occlusion
//! beyond), where leaving an input out means replacing its features by
//! their typical values (the training medians, 0 once standardised). Each
//! input's contribution is its positive Shapley value over the sum of the
//! positive ones, so contributions are in [0, 1] and sum to 1; an input
//! that made the row look more ordinary contributes 0. With no positive
//! value at all (an ordinary row) they are split equally.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::features::{FeatureSpec, Scaler};
use super::iforest::IForestDetector;
use super::ocsvm::OcsvmDetector;
use super::{Calibration, Detector, MAX_ROWS, MIN_ROWS, evenly};
use crate::model::{ModelError, ModelParams, Point};

/// Features per input.
pub const PER_INPUT: usize = 2;
/// Rows of the rolling mean.
const SPAN: usize = 6;
/// Most inputs for exact Shapley values (2^k evaluations per row).
pub const SHAPLEY_MAX: usize = 8;
/// Detectors the multivariate model can run.
pub const MODELS: &[&str] = &["iforest", "ocsvm"];

/// A trained detector of either kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Trained {
    Iforest(IForestDetector),
    Ocsvm(OcsvmDetector),
}

impl Trained {
    fn raw(&self, row: &[f64]) -> f64 {
        match self {
            Trained::Iforest(d) => d.raw(row),
            Trained::Ocsvm(d) => d.raw(row),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fitted {
    spec: FeatureSpec,
    scaler: Scaler,
    detector: Trained,
    calibration: Calibration,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    inputs: Vec<String>,
    recent: VecDeque<(i64, Vec<f64>)>,
    fitted: Option<Fitted>,
}

/// The score of one aligned row and each input's share in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Calibrated anomaly score in [0, 1].
    pub score: f64,
    /// Contribution of each input (in input order), summing to 1.
    pub contributions: Vec<f64>,
}

/// A learned detector over several aligned series.
pub struct Multivariate {
    model: &'static str,
    inputs: Vec<String>,
    params: ModelParams,
    recent: VecDeque<(i64, Vec<f64>)>,
    fitted: Option<Fitted>,
}

impl Multivariate {
    /// A model over `inputs` (at least two) with detector `model`
    /// (`iforest` or `ocsvm`).
    pub fn new(
        model: &str,
        inputs: Vec<String>,
        params: ModelParams,
    ) -> Result<Multivariate, ModelError> {
        let model = match model {
            "iforest" => {
                params.iforest.check()?;
                "iforest"
            }
            "ocsvm" => {
                params.ocsvm.check()?;
                "ocsvm"
            }
            other => {
                return Err(ModelError::Config(format!(
                    "the multivariate detector runs {}, not {other:?}",
                    MODELS.join(" or ")
                )));
            }
        };
        if inputs.len() < 2 {
            return Err(ModelError::Config(format!(
                "a multivariate model needs at least two inputs, has {}",
                inputs.len()
            )));
        }
        Ok(Multivariate {
            model,
            inputs,
            params,
            recent: VecDeque::new(),
            fitted: None,
        })
    }

    /// The detector's name.
    pub fn name(&self) -> &'static str {
        self.model
    }

    /// The inputs' names, in order.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// Whether the model has been trained.
    pub fn is_fitted(&self) -> bool {
        self.fitted.is_some()
    }

    /// Feature row of `values` at `t` after the rows in `past` (oldest first).
    fn row(spec: &FeatureSpec, past: &[&[f64]], t: i64, values: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(values.len() * PER_INPUT + 4);
        for (j, v) in values.iter().enumerate() {
            let w = &past[past.len().saturating_sub(SPAN)..];
            let mean = if w.is_empty() {
                *v
            } else {
                w.iter().map(|r| r[j]).sum::<f64>() / w.len() as f64
            };
            out.extend([*v, v - mean]);
        }
        spec.time_features(t, &mut out);
        out
    }

    /// Learns from aligned history (rows of one value per input, oldest
    /// first), replacing what was learned. With fewer than
    /// [`MIN_ROWS`] usable rows the model stays untrained and scores 0.
    pub fn fit(&mut self, history: &[(i64, Vec<f64>)]) -> Result<(), ModelError> {
        let k = self.inputs.len();
        let rows: Vec<&(i64, Vec<f64>)> = history
            .iter()
            .filter(|r| r.1.len() == k && r.1.iter().all(|v| v.is_finite()))
            .collect();
        let rows = &rows[rows.len().saturating_sub(MAX_ROWS + SPAN)..];
        self.recent = rows
            .iter()
            .skip(rows.len().saturating_sub(SPAN))
            .map(|r| (*r).clone())
            .collect();
        if rows.len() < MIN_ROWS + SPAN {
            self.fitted = None;
            return Ok(());
        }
        let pts: Vec<Point> = rows.iter().map(|r| Point { t: r.0, v: 0.0 }).collect();
        let spec = FeatureSpec::choose(&pts, None, MIN_ROWS);
        let values: Vec<&[f64]> = rows.iter().map(|r| r.1.as_slice()).collect();
        let features: Vec<Vec<f64>> = (SPAN..rows.len())
            .map(|i| Self::row(&spec, &values[i - SPAN..i], rows[i].0, values[i]))
            .collect();
        let scaler = Scaler::fit(&features);
        let scaled: Vec<Vec<f64>> = features.iter().map(|r| scaler.apply(r)).collect();
        let detector = match self.model {
            "ocsvm" => Trained::Ocsvm(OcsvmDetector::train(&scaled, &self.params)?),
            _ => Trained::Iforest(IForestDetector::train(&scaled, &self.params)?),
        };
        let raw: Vec<f64> = evenly(&scaled, 4_000)
            .into_iter()
            .map(|r| detector.raw(r))
            .collect();
        self.fitted = Some(Fitted {
            spec,
            scaler,
            detector,
            calibration: Calibration::new(&raw),
        });
        Ok(())
    }

    /// Scores the row `values` at `t` against what came before it (not yet
    /// taken in); 0 with equal contributions while untrained.
    pub fn score(&self, t: i64, values: &[f64]) -> Scored {
        let k = self.inputs.len();
        let equal = vec![1.0 / k as f64; k];
        let Some(f) = &self.fitted else {
            return Scored {
                score: 0.0,
                contributions: equal,
            };
        };
        if values.len() != k || values.iter().any(|v| !v.is_finite()) || self.recent.is_empty() {
            return Scored {
                score: 0.0,
                contributions: equal,
            };
        }
        let past: Vec<&[f64]> = self.recent.iter().map(|r| r.1.as_slice()).collect();
        let x = f.scaler.apply(&Self::row(&f.spec, &past, t, values));
        let raw = f.detector.raw(&x);
        Scored {
            score: f.calibration.score(raw),
            contributions: contributions(&x, k, |r| f.detector.raw(r)),
        }
    }

    /// Takes a row into the model's recent rows.
    pub fn update(&mut self, t: i64, values: &[f64]) {
        if values.len() != self.inputs.len() || values.iter().any(|v| !v.is_finite()) {
            return;
        }
        if self.recent.len() == SPAN {
            self.recent.pop_front();
        }
        self.recent.push_back((t, values.to_vec()));
    }

    /// The model's state, to be saved across restarts.
    pub fn save(&self) -> serde_json::Value {
        let s = Saved {
            inputs: self.inputs.clone(),
            recent: self.recent.clone(),
            fitted: self.fitted.clone(),
        };
        serde_json::to_value(s).unwrap_or(serde_json::Value::Null)
    }

    /// Restores state saved by [`Multivariate::save`] for the same inputs.
    pub fn load(&mut self, state: serde_json::Value) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::BadState {
            model: self.model,
            reason,
        };
        let s: Saved = serde_json::from_value(state).map_err(|e| bad(e.to_string()))?;
        if s.inputs != self.inputs {
            return Err(bad(format!("saved for inputs {:?}", s.inputs)));
        }
        let kind_ok = match (&s.fitted, self.model) {
            (None, _) => true,
            (Some(f), m) => matches!(
                (&f.detector, m),
                (Trained::Iforest(_), "iforest") | (Trained::Ocsvm(_), "ocsvm")
            ),
        };
        if !kind_ok {
            return Err(bad("saved by another detector".into()));
        }
        self.recent = s.recent;
        self.fitted = s.fitted;
        Ok(())
    }
}

/// Online scores of aligned rows, as `score` computes them for one series:
/// each row is scored, then taken in, and the model is refitted on all rows
/// so far when their count reaches twice `min_points`, then each time it
/// doubles, then every 1,000 rows. No score depends on a later row.
pub fn score_rows(
    rows: &[(i64, Vec<f64>)],
    model: &str,
    inputs: Vec<String>,
    params: &ModelParams,
) -> Result<Vec<Scored>, ModelError> {
    let mut m = Multivariate::new(model, inputs, params.clone())?;
    let mut next_fit = 2 * params.min_points;
    let mut out = Vec::with_capacity(rows.len());
    for (i, (t, v)) in rows.iter().enumerate() {
        out.push(m.score(*t, v));
        m.update(*t, v);
        if i + 1 == next_fit {
            m.fit(&rows[..=i])?;
            next_fit += next_fit.min(1000);
        }
    }
    Ok(out)
}

/// Each input's share in the raw output of the standardised row `x`
/// (inputs own [`PER_INPUT`] consecutive features each): positive Shapley
/// values normalised to sum to 1 (see the module documentation).
pub fn contributions(x: &[f64], k: usize, raw: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    // The row with only the inputs in `mask` kept, the others typical.
    let masked = |mask: u32| -> Vec<f64> {
        let mut r = x.to_vec();
        for j in 0..k {
            if mask & (1 << j) == 0 {
                for v in &mut r[j * PER_INPUT..(j + 1) * PER_INPUT] {
                    *v = 0.0;
                }
            }
        }
        r
    };
    let phi: Vec<f64> = if k <= SHAPLEY_MAX {
        let all = 1u32 << k;
        let value: Vec<f64> = (0..all).map(|m| raw(&masked(m))).collect();
        let fact = |n: usize| -> f64 { (1..=n).map(|i| i as f64).product() };
        (0..k)
            .map(|j| {
                (0..all)
                    .filter(|m| m & (1 << j) == 0)
                    .map(|m| {
                        let s = m.count_ones() as usize;
                        let w = fact(s) * fact(k - s - 1) / fact(k);
                        w * (value[(m | (1 << j)) as usize] - value[m as usize])
                    })
                    .sum()
            })
            .collect()
    } else {
        let full = raw(x);
        let everything = (1u32 << k.min(31)) - 1;
        (0..k)
            .map(|j| full - raw(&masked(everything & !(1 << j))))
            .collect()
    };
    let pos: Vec<f64> = phi.iter().map(|p| p.max(0.0)).collect();
    let total: f64 = pos.iter().sum();
    if total > 0.0 && total.is_finite() {
        pos.iter().map(|p| p / total).collect()
    } else {
        vec![1.0 / k as f64; k]
    }
}

/// Aligns several series by timestamp: one row per point of the first
/// series, holding each other series' latest value at or before that time
/// and not older than `tolerance_ms` (rows where some series has none are
/// left out).
pub fn align(series: &[Vec<Point>], tolerance_ms: i64) -> Vec<(i64, Vec<f64>)> {
    let Some(first) = series.first() else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(first.len());
    'rows: for p in first {
        let mut row = Vec::with_capacity(series.len());
        row.push(p.v);
        for s in &series[1..] {
            let i = s.partition_point(|q| q.t <= p.t);
            match i.checked_sub(1).map(|i| s[i]) {
                Some(q) if p.t - q.t <= tolerance_ms => row.push(q.v),
                _ => continue 'rows,
            }
        }
        out.push((p.t, row));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::learned::Rng;

    /// Two strongly correlated series (b ≈ 2a) over a daily cycle, sampled
    /// every 5 minutes; from `fault` for 12 rows b mirrors a around its mean
    /// (b = 2(100 − a)), which keeps b inside its own usual range while
    /// breaking the relationship. Returns (a, b).
    pub fn correlated_pair(n: usize, fault: usize) -> (Vec<Point>, Vec<Point>) {
        let mut rng = Rng::new(11);
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as i64 * 300_000;
            let phase = std::f64::consts::TAU * i as f64 / 288.0;
            let va = 50.0 + 20.0 * phase.sin() + (rng.uniform() - 0.5) * 2.0;
            let mut vb = 2.0 * va + (rng.uniform() - 0.5) * 4.0;
            if (fault..fault + 12).contains(&i) {
                vb = 2.0 * (100.0 - va) + (rng.uniform() - 0.5) * 4.0;
            }
            a.push(Point { t, v: va });
            b.push(Point { t, v: vb });
        }
        (a, b)
    }

    #[test]
    fn flags_a_broken_relationship_and_blames_both_inputs() {
        // The fault starts at a peak of a (phase quarter of the cycle).
        let n = 288 * 6;
        let fault = 288 * 5 + 72 - 6;
        let (a, b) = correlated_pair(n, fault);
        let rows = align(&[a.clone(), b.clone()], 60_000);
        assert_eq!(rows.len(), n);
        let mut m = Multivariate::new(
            "iforest",
            vec!["a".into(), "b".into()],
            ModelParams::default(),
        )
        .unwrap();
        m.fit(&rows[..288 * 5]).unwrap();
        let mut scores = Vec::new();
        for (t, v) in &rows[288 * 5..] {
            let s = m.score(*t, v);
            assert!((s.contributions.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            scores.push(s);
            m.update(*t, v);
        }
        let at = fault - 288 * 5;
        // Not only the onset: the sustained break stays unusual.
        let sustained = scores[at..at + 12]
            .iter()
            .filter(|s| s.score >= 0.95)
            .count();
        assert!(sustained >= 6, "{sustained} of 12 fault rows score >= 0.95");
        let in_fault = scores[at..at + 12]
            .iter()
            .map(|s| s.score)
            .fold(0.0, f64::max);
        assert!(in_fault >= 0.99, "fault scored {in_fault}");
        let outside: Vec<f64> = scores
            .iter()
            .enumerate()
            .filter(|(i, _)| *i + 2 < at || *i > at + 14)
            .map(|(_, s)| s.score)
            .collect();
        let high = outside.iter().filter(|s| **s >= 0.99).count();
        assert!(
            high <= outside.len() / 50,
            "{high} of {} high",
            outside.len()
        );
        // Each series alone stays within its range: mad does not flag b.
        use crate::model::Model;
        let mut mad = crate::model::mad::Mad::new(ModelParams::default());
        mad.fit(&b[..288 * 5]).unwrap();
        let mut mad_max: f64 = 0.0;
        for p in &b[288 * 5..fault + 12] {
            if p.t >= b[fault].t {
                mad_max = mad_max.max(mad.score(*p));
            }
            mad.update(*p);
        }
        assert!(mad_max < 0.99, "mad flagged the fault: {mad_max}");
        // Round trip.
        let mut r = Multivariate::new(
            "iforest",
            vec!["a".into(), "b".into()],
            ModelParams::default(),
        )
        .unwrap();
        r.load(m.save()).unwrap();
        let (t, v) = &rows[n - 1];
        assert_eq!(r.score(*t, v), m.score(*t, v));
        let mut wrong = Multivariate::new(
            "ocsvm",
            vec!["a".into(), "b".into()],
            ModelParams::default(),
        )
        .unwrap();
        assert!(wrong.load(m.save()).is_err());
    }

    #[test]
    fn shapley_contributions_find_the_input_that_moved() {
        // A raw output that only looks at input 1's features.
        let x = [0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.3];
        let c = contributions(&x, 2, |r| r[3].abs() + r[4].abs());
        assert_eq!(c, vec![0.0, 1.0]);
        // Symmetric interaction: equal shares.
        let c = contributions(&[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 2, |r| r[0] * r[3]);
        assert!((c[0] - 0.5).abs() < 1e-12);
        assert_eq!(contributions(&[0.0; 6], 2, |_| 1.0), vec![0.5, 0.5]);
    }

    #[test]
    fn aligns_on_the_first_series_within_tolerance() {
        let p = |t: i64, v: f64| Point { t, v };
        let a = vec![p(0, 1.0), p(10, 2.0), p(20, 3.0)];
        let b = vec![p(1, 10.0), p(9, 20.0)];
        let rows = align(&[a, b], 5);
        assert_eq!(rows, vec![(10, vec![2.0, 20.0])]);
        assert!(
            Multivariate::new("mad", vec!["a".into(), "b".into()], ModelParams::default()).is_err()
        );
        assert!(Multivariate::new("iforest", vec!["a".into()], ModelParams::default()).is_err());
    }
}
