//! `ocsvm`: One-Class SVM (Schölkopf et al., 2001) with an RBF kernel on
//! standardised feature windows, trained by linfa-svm's SMO solver on at
//! most `max_train` rows (evenly spaced over the history) to bound the
//! quadratic cost of the kernel matrix. The decision function
//! f(x) = Σ αᵢ exp(−γ‖x − svᵢ‖²) − ρ is positive inside the learned support
//! of the data; the raw output is −f(x), calibrated to [0, 1] on the
//! training history like `iforest`.
//!
//! linfa's fitted model is not serialisable without its `serde` feature
//! (which pulls ndarray's serde support into the build), and its kernel is
//! private, so the model keeps what the decision function needs — support
//! vectors, their coefficients and ρ — and evaluates it itself.

use linfa::prelude::*;
use linfa_svm::Svm;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Detector, Univariate, evenly};
use crate::model::{ModelError, ModelParams};

/// Options of the one-class SVM (`params.ocsvm` in configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcsvmParams {
    /// Upper bound on the share of training rows outside the boundary and
    /// lower bound on the share of support vectors.
    #[serde(default = "default_nu")]
    pub nu: f64,
    /// RBF kernel width γ; unset: 1 / number of features (on standardised
    /// features, scikit-learn's `gamma="auto"`).
    #[serde(default)]
    pub gamma: Option<f64>,
    /// Most rows trained on.
    #[serde(default = "default_max_train")]
    pub max_train: usize,
}

fn default_nu() -> f64 {
    0.1
}
fn default_max_train() -> usize {
    2_000
}

impl Default for OcsvmParams {
    fn default() -> Self {
        OcsvmParams {
            nu: default_nu(),
            gamma: None,
            max_train: default_max_train(),
        }
    }
}

impl OcsvmParams {
    /// Checks the options.
    pub fn check(&self) -> Result<(), ModelError> {
        if !(self.nu > 0.0 && self.nu <= 1.0) {
            return Err(ModelError::Config(format!(
                "ocsvm.nu must be in (0, 1], is {}",
                self.nu
            )));
        }
        if self.gamma.is_some_and(|g| !(g > 0.0 && g.is_finite())) {
            return Err(ModelError::Config(format!(
                "ocsvm.gamma must be a positive number, is {}",
                self.gamma.unwrap_or(0.0)
            )));
        }
        super::check_range("ocsvm", "max_train", self.max_train, 10..=20_000)?;
        Ok(())
    }
}

/// A trained one-class SVM: what its decision function needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OneClassSvm {
    gamma: f32,
    rho: f32,
    /// Coefficient of each support vector.
    alpha: Vec<f32>,
    /// Support vectors, row after row.
    support: Vec<f32>,
    /// Features per row.
    dim: usize,
}

impl OneClassSvm {
    /// Trains on `rows` (standardised, of equal length).
    pub fn fit(rows: &[&[f64]], nu: f64, gamma: Option<f64>) -> Result<OneClassSvm, ModelError> {
        let dim = rows.first().map(|r| r.len()).unwrap_or(0);
        if rows.len() < 2 || dim == 0 {
            return Err(ModelError::TooShort {
                needed: 2,
                have: rows.len(),
            });
        }
        let gamma = gamma.unwrap_or(1.0 / dim as f64);
        let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let x = Array2::from_shape_vec((rows.len(), dim), flat)
            .map_err(|e| ModelError::Config(format!("ocsvm: {e}")))?;
        let data = DatasetBase::from(x);
        let svm: Svm<f64, bool> = Svm::<f64, Pr>::params()
            .nu_weight(nu)
            .gaussian_kernel(1.0 / gamma)
            // libsvm's and scikit-learn's tolerance; linfa's default
            // (1e-7) costs many more iterations for no visible change.
            .eps(1e-3)
            .fit(&data)
            .map_err(|e| ModelError::Config(format!("ocsvm training failed: {e}")))?;
        // linfa keeps the rows whose coefficient exceeds 100 ε, in order.
        let keep = |a: f64| a.abs() > 100.0 * f64::EPSILON;
        let mut alpha = Vec::new();
        let mut support = Vec::new();
        for (a, r) in svm.alpha.iter().zip(rows) {
            if keep(*a) {
                alpha.push(*a as f32);
                support.extend(r.iter().map(|x| *x as f32));
            }
        }
        Ok(OneClassSvm {
            gamma: gamma as f32,
            rho: svm.rho as f32,
            alpha,
            support,
            dim,
        })
    }

    /// The decision function: positive inside the learned support.
    pub fn decision(&self, row: &[f64]) -> f64 {
        let g = self.gamma as f64;
        let mut sum = 0.0;
        for (a, sv) in self
            .alpha
            .iter()
            .zip(self.support.chunks_exact(self.dim.max(1)))
        {
            let d2: f64 = sv
                .iter()
                .zip(row)
                .map(|(s, x)| (*s as f64 - x).powi(2))
                .sum();
            sum += *a as f64 * (-g * d2).exp();
        }
        sum - self.rho as f64
    }

    /// Number of support vectors.
    pub fn support_vectors(&self) -> usize {
        self.alpha.len()
    }
}

/// The one-class SVM as a [`Detector`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OcsvmDetector {
    svm: OneClassSvm,
}

impl Detector for OcsvmDetector {
    const NAME: &'static str = "ocsvm";

    fn train(rows: &[Vec<f64>], params: &ModelParams) -> Result<Self, ModelError> {
        let o = &params.ocsvm;
        o.check()?;
        let sample = evenly(rows, o.max_train);
        Ok(OcsvmDetector {
            svm: OneClassSvm::fit(&sample, o.nu, o.gamma)?,
        })
    }

    fn raw(&self, row: &[f64]) -> f64 {
        -self.svm.decision(row)
    }
}

/// The `ocsvm` model: a one-class SVM on one series' feature windows.
pub type Ocsvm = Univariate<OcsvmDetector>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::learned::Rng;

    #[test]
    fn decision_matches_linfa_and_separates_an_outlier() {
        let mut rng = Rng::new(5);
        let rows: Vec<Vec<f64>> = (0..300)
            .map(|_| vec![rng.uniform() * 2.0 - 1.0, rng.uniform() * 2.0 - 1.0])
            .collect();
        let refs: Vec<&[f64]> = rows.iter().map(|r| r.as_slice()).collect();
        let m = OneClassSvm::fit(&refs, 0.1, Some(0.5)).unwrap();
        assert!(m.decision(&[0.0, 0.0]) > 0.0);
        assert!(m.decision(&[4.0, 4.0]) < 0.0);
        // About nu of the training rows fall outside.
        let out = rows.iter().filter(|r| m.decision(r) < 0.0).count();
        assert!((10..=60).contains(&out), "{out}");
        assert!(m.support_vectors() >= 30, "{}", m.support_vectors());
        // The same as linfa's own decision function (up to f32 storage).
        let x = Array2::from_shape_vec((300, 2), rows.concat()).unwrap();
        let svm: Svm<f64, bool> = Svm::<f64, Pr>::params()
            .nu_weight(0.1)
            .gaussian_kernel(2.0)
            .eps(1e-3)
            .fit(&DatasetBase::from(x))
            .unwrap();
        for p in [[0.0, 0.0], [0.9, -0.9], [2.0, 0.5]] {
            let theirs = svm.weighted_sum(&ndarray::arr1(&p)) - svm.rho;
            assert!((theirs - m.decision(&p)).abs() < 1e-4, "{theirs}");
        }
    }
}
