//! `iforest`: Isolation Forest (Liu, Ting and Zhou, 2008) on feature
//! windows. Each tree splits a random subsample on a random feature at a
//! random value between the feature's minimum and maximum, down to depth
//! ⌈log2 ψ⌉; unusual rows are isolated in fewer splits. The raw output is
//! the standard anomaly score 2^(−E[h(x)] / c(ψ)), with c(n) the average
//! path length of an unsuccessful search in a binary search tree of n
//! points, and is calibrated to [0, 1] on the training history
//! ([`super::Calibration`]).
//!
//! Written here rather than taken from a crate: `extended-isolation-forest`
//! fixes the number of features at compile time (const generics) and
//! `isolation_forest` takes integer features and an unseeded thread
//! generator, while this model needs a feature count chosen at fit time,
//! a seed, and state that saves to JSON. The algorithm is small.

use serde::{Deserialize, Serialize};

use super::{Detector, Rng, Univariate};
use crate::model::{ModelError, ModelParams};

/// Options of the isolation forest (`params.iforest` in configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IForestParams {
    /// Number of trees (scikit-learn's default: 100).
    #[serde(default = "default_trees")]
    pub trees: usize,
    /// Rows each tree is grown on (ψ; scikit-learn's default: 256).
    #[serde(default = "default_sample_size")]
    pub sample_size: usize,
}

fn default_trees() -> usize {
    100
}
fn default_sample_size() -> usize {
    256
}

impl Default for IForestParams {
    fn default() -> Self {
        IForestParams {
            trees: default_trees(),
            sample_size: default_sample_size(),
        }
    }
}

impl IForestParams {
    /// Checks the options.
    pub fn check(&self) -> Result<(), ModelError> {
        super::check_range("iforest", "trees", self.trees, 1..=10_000)?;
        super::check_range("iforest", "sample_size", self.sample_size, 2..=100_000)?;
        Ok(())
    }
}

/// One isolation tree in preorder: node `i` is a leaf when `feature[i]` is
/// negative (`value[i]` is then its row count); otherwise it splits on
/// `feature[i] < value[i]`, with the left child at `i + 1` and the right
/// child at `right[i]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Tree {
    feature: Vec<i32>,
    value: Vec<f32>,
    right: Vec<u32>,
}

/// A trained isolation forest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Forest {
    /// Rows per tree actually used (ψ, at most the training size).
    sample: usize,
    trees: Vec<Tree>,
}

/// Average path length of an unsuccessful search in a binary search tree
/// of `n` points: 2H(n−1) − 2(n−1)/n.
pub fn c(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n < 2.5 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

impl Forest {
    /// Grows `trees` trees on subsamples of `sample_size` rows.
    pub fn fit<R: AsRef<[f64]>>(rows: &[R], trees: usize, sample_size: usize, seed: u64) -> Forest {
        let mut rng = Rng::new(seed);
        let psi = sample_size.min(rows.len()).max(1);
        let limit = (psi as f64).log2().ceil().max(1.0) as usize;
        let d = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
        let trees = (0..trees)
            .map(|_| {
                let mut idx = rng.sample(rows.len(), psi);
                let mut t = Tree {
                    feature: Vec::new(),
                    value: Vec::new(),
                    right: Vec::new(),
                };
                grow(&mut t, rows, &mut idx, 0, limit, d, &mut rng);
                t
            })
            .collect();
        Forest { sample: psi, trees }
    }

    /// Mean path length of `row` over the trees.
    pub fn path_length(&self, row: &[f64]) -> f64 {
        let total: f64 = self.trees.iter().map(|t| t.path(row)).sum();
        total / self.trees.len().max(1) as f64
    }

    /// The anomaly score 2^(−E[h]/c(ψ)) in (0, 1]: about 0.5 and below for
    /// ordinary rows, towards 1 for rows isolated quickly.
    pub fn score(&self, row: &[f64]) -> f64 {
        let cn = c(self.sample as f64).max(1e-9);
        2f64.powf(-self.path_length(row) / cn)
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.trees.len()
    }
}

fn grow<R: AsRef<[f64]>>(
    t: &mut Tree,
    rows: &[R],
    idx: &mut [usize],
    depth: usize,
    limit: usize,
    d: usize,
    rng: &mut Rng,
) {
    let node = t.feature.len();
    let leaf = |t: &mut Tree, n: usize| {
        t.feature.push(-1);
        t.value.push(n as f32);
        t.right.push(0);
    };
    if depth >= limit || idx.len() <= 1 || d == 0 {
        leaf(t, idx.len());
        return;
    }
    // A random feature that is not constant on this node's rows (as
    // scikit-learn's extra trees draw until one varies).
    let mut split = None;
    for f in rng.sample(d, d) {
        let (lo, hi) = idx
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), i| {
                let x = rows[*i].as_ref()[f];
                (a.min(x), b.max(x))
            });
        if hi > lo && hi.is_finite() && lo.is_finite() {
            let thr = (lo + rng.uniform() * (hi - lo)) as f32;
            // Rounding to f32 must still leave rows on both sides.
            let thr = if (thr as f64) <= lo || (thr as f64) > hi {
                hi as f32
            } else {
                thr
            };
            if (thr as f64) > lo && (thr as f64) <= hi {
                split = Some((f, thr));
                break;
            }
        }
    }
    let Some((f, thr)) = split else {
        leaf(t, idx.len());
        return;
    };
    // Partition: rows below the threshold first.
    let mut k = 0;
    for j in 0..idx.len() {
        if rows[idx[j]].as_ref()[f] < thr as f64 {
            idx.swap(j, k);
            k += 1;
        }
    }
    t.feature.push(f as i32);
    t.value.push(thr);
    t.right.push(0);
    let (left, right) = idx.split_at_mut(k);
    grow(t, rows, left, depth + 1, limit, d, rng);
    t.right[node] = t.feature.len() as u32;
    grow(t, rows, right, depth + 1, limit, d, rng);
}

impl Tree {
    fn path(&self, row: &[f64]) -> f64 {
        let mut i = 0;
        let mut depth = 0.0;
        loop {
            let f = self.feature[i];
            if f < 0 {
                return depth + c(self.value[i] as f64);
            }
            let x = row.get(f as usize).copied().unwrap_or(0.0);
            i = if x < self.value[i] as f64 {
                i + 1
            } else {
                self.right[i] as usize
            };
            depth += 1.0;
            if i >= self.feature.len() {
                return depth;
            }
        }
    }
}

/// The forest as a [`Detector`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IForestDetector {
    forest: Forest,
}

impl Detector for IForestDetector {
    const NAME: &'static str = "iforest";

    fn train(rows: &[Vec<f64>], params: &ModelParams) -> Result<Self, ModelError> {
        params.iforest.check()?;
        Ok(IForestDetector {
            forest: Forest::fit(
                rows,
                params.iforest.trees,
                params.iforest.sample_size,
                params.seed,
            ),
        })
    }

    fn raw(&self, row: &[f64]) -> f64 {
        self.forest.score(row)
    }
}

/// The `iforest` model: an isolation forest on one series' feature windows.
pub type IForest = Univariate<IForestDetector>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Point};

    #[test]
    fn path_length_constant_matches_the_paper() {
        assert_eq!(c(1.0), 0.0);
        assert_eq!(c(2.0), 1.0);
        // c(256) ≈ 10.24 (Liu et al.).
        assert!((c(256.0) - 10.244).abs() < 0.01, "{}", c(256.0));
    }

    #[test]
    fn isolates_an_outlier_of_a_gaussian_cloud() {
        let mut rng = Rng::new(3);
        let rows: Vec<Vec<f64>> = (0..1000)
            .map(|_| vec![rng.uniform() * 2.0 - 1.0, rng.uniform() * 2.0 - 1.0])
            .collect();
        let f = Forest::fit(&rows, 100, 256, 1);
        let inside = f.score(&[0.0, 0.0]);
        let outside = f.score(&[4.0, 0.0]);
        assert!(inside < 0.5 && outside > 0.6, "{inside} {outside}");
        // Seeded: the same seed grows the same forest.
        assert_eq!(f, Forest::fit(&rows, 100, 256, 1));
        assert_ne!(f, Forest::fit(&rows, 100, 256, 2));
    }

    #[test]
    fn scores_a_spike_in_a_seasonal_series_and_round_trips() {
        let h: Vec<Point> = (0..24 * 30)
            .map(|i| Point {
                t: i as i64 * 3_600_000,
                v: 50.0
                    + 10.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                    + ((i * 7919) % 13) as f64 / 13.0,
            })
            .collect();
        let mut m = IForest::new(ModelParams::default());
        m.fit(&h).unwrap();
        let t = h.last().unwrap().t + 3_600_000;
        let next = 50.0 + 10.0 * (std::f64::consts::TAU * h.len() as f64 / 24.0).sin();
        let normal = m.score(Point { t, v: next + 0.5 });
        let spike = m.score(Point { t, v: next + 15.0 });
        assert!(spike > 0.99, "spike {spike}");
        assert!(normal < 0.9, "normal {normal}");
        let mut r = IForest::new(ModelParams::default());
        r.load(m.save()).unwrap();
        assert_eq!(r.score(Point { t, v: next + 15.0 }), spike);
    }
}
