//! What the neural models (`autoencoder`, `lstm`) share, on candle's CPU
//! back end: a standardising scale, seeded weight initialisation, weights to
//! and from JSON, and the mini-batch training loop.
//!
//! candle draws its own initial weights from an unseeded thread-local
//! generator (the CPU device cannot be seeded), so every variable is
//! re-initialised here from the model's seed, in name order: the same seed
//! and history give bit-identical weights. Training is deterministic too:
//! candle's CPU kernels sum in a fixed order whatever the thread count.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};

use super::Rng;
use crate::model::ModelError;
use crate::model::compact::F32s;
use crate::model::window::spread_floor;

/// The device the models run on (CPU only).
pub fn device() -> Device {
    Device::Cpu
}

/// A candle error as a model error of `model`.
pub fn candle_error(model: &'static str, e: candle_core::Error) -> ModelError {
    ModelError::Config(format!("{model}: {e}"))
}

/// A bad saved state of `model`.
pub fn bad_state(model: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::BadState {
        model,
        reason: reason.into(),
    }
}

/// Standardisation of a series: `(v - center) / scale`, with the mean and
/// standard deviation of the history (the spread floored as the other
/// models floor it, so a flat series does not blow small changes up).
/// Kept as `f32` so that saved state restores it bit for bit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    center: f32,
    scale: f32,
}

impl Scale {
    /// The scale of `values` (finite ones).
    pub fn fit(values: &[f64]) -> Scale {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let n = finite.len().max(1) as f64;
        let mean = finite.iter().sum::<f64>() / n;
        let var = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Scale {
            center: mean as f32,
            scale: var.sqrt().max(spread_floor(mean)) as f32,
        }
    }

    /// A value in standard units.
    pub fn apply(&self, v: f64) -> f32 {
        ((v - self.center as f64) / self.scale as f64) as f32
    }

    /// A value in standard units back in the series' units.
    pub fn invert(&self, z: f64) -> f64 {
        self.center as f64 + z * self.scale as f64
    }

    /// Whether the scale is usable (finite, positive).
    pub fn is_valid(&self) -> bool {
        self.center.is_finite() && self.scale.is_finite() && self.scale > 0.0
    }
}

/// One saved weight tensor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SavedTensor {
    /// Its dimensions.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub values: F32s,
}

/// The weights of a network by variable name.
pub type SavedWeights = BTreeMap<String, SavedTensor>;

/// Variables in name order (a `VarMap` is a hash map, whose order varies).
fn sorted_vars(vars: &VarMap) -> Vec<(String, Var)> {
    let data = vars.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Gives every variable seeded initial values, in name order: matrices
/// uniform in ±√(6 / (fan_in + fan_out)) (Glorot, suited to tanh and
/// sigmoid units), vectors (biases) zero.
pub fn seed_vars(vars: &VarMap, rng: &mut Rng) -> candle_core::Result<()> {
    for (_, var) in sorted_vars(vars) {
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match dims.as_slice() {
            [fan_out, fan_in] => {
                let bound = (6.0 / (*fan_in + *fan_out) as f64).sqrt();
                (0..n)
                    .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                    .collect()
            }
            _ => vec![0.0; n],
        };
        var.set(&Tensor::from_vec(values, dims, &device())?)?;
    }
    Ok(())
}

/// The weights of `vars`.
pub fn save_vars(vars: &VarMap) -> candle_core::Result<SavedWeights> {
    let mut out = SavedWeights::new();
    for (name, var) in sorted_vars(vars) {
        let t = var.as_tensor();
        out.insert(
            name,
            SavedTensor {
                shape: t.dims().to_vec(),
                values: F32s(t.flatten_all()?.to_vec1::<f32>()?),
            },
        );
    }
    Ok(out)
}

/// Sets `vars` (a freshly built network) to saved weights; every variable
/// must be there with its shape, and nothing else.
pub fn load_vars(vars: &VarMap, saved: &SavedWeights) -> Result<(), String> {
    let current = sorted_vars(vars);
    if current.len() != saved.len() {
        return Err(format!(
            "{} weight tensors saved, the network has {}",
            saved.len(),
            current.len()
        ));
    }
    for (name, var) in current {
        let s = saved
            .get(&name)
            .ok_or_else(|| format!("weights {name:?} missing"))?;
        if s.shape != var.dims() || s.values.0.len() != var.elem_count() {
            return Err(format!(
                "weights {name:?}: shape {:?} with {} values, the network needs {:?}",
                s.shape,
                s.values.0.len(),
                var.dims()
            ));
        }
        if s.values.0.iter().any(|x| !x.is_finite()) {
            return Err(format!("weights {name:?} are not all finite"));
        }
        let t = Tensor::from_vec(s.values.0.clone(), var.dims(), &device())
            .map_err(|e| e.to_string())?;
        var.set(&t).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How long and how fast to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    /// Passes over the training samples (at most; training stops early
    /// once the loss stops falling).
    pub epochs: usize,
    /// Samples per optimiser step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f64,
}

/// Epochs without a 0.5 % better loss after which training stops.
const PATIENCE: usize = 4;

/// Trains `vars` with Adam on `n` samples: each epoch shuffles them (from
/// `rng`) into mini-batches, and `loss` gives a batch's loss from a `u32`
/// tensor of its sample indices. Returns the last epoch's mean loss.
pub fn train(
    vars: &VarMap,
    n: usize,
    t: &Training,
    rng: &mut Rng,
    mut loss: impl FnMut(&Tensor) -> candle_core::Result<Tensor>,
) -> candle_core::Result<f64> {
    let params = ParamsAdamW {
        lr: t.lr,
        weight_decay: 0.0,
        ..ParamsAdamW::default()
    };
    let mut vs = sorted_vars(vars);
    let mut opt = AdamW::new(vs.drain(..).map(|(_, v)| v).collect(), params)?;
    let batch = t.batch.max(1);
    let (mut best, mut stale, mut last) = (f64::INFINITY, 0, f64::NAN);
    for _ in 0..t.epochs {
        let order = rng.sample(n, n);
        let mut total = 0.0;
        for chunk in order.chunks(batch) {
            let idx: Vec<u32> = chunk.iter().map(|i| *i as u32).collect();
            let idx = Tensor::from_vec(idx, chunk.len(), &device())?;
            let l = loss(&idx)?;
            total += l.to_dtype(DType::F64)?.to_scalar::<f64>()? * chunk.len() as f64;
            opt.backward_step(&l)?;
        }
        last = total / n.max(1) as f64;
        if !last.is_finite() {
            candle_core::bail!("training diverged (loss {last})");
        }
        if last < best * 0.995 {
            best = last;
            stale = 0;
        } else {
            stale += 1;
            if stale >= PATIENCE {
                break;
            }
        }
    }
    Ok(last)
}

/// Batches of at most this many rows are multiplied by broadcasting
/// instead of candle's `matmul` (see [`Dense`]).
const SMALL_BATCH: usize = 4;

/// `x · wᵀ` for `x` (batch, in) and `w` (out, in). candle's CPU `matmul`
/// looks the number of physical CPUs up on every call (num_cpus reads
/// /proc/cpuinfo, ≈40 µs) unless `RAYON_NUM_THREADS` is set; for the few
/// rows of inference a broadcast product and a sum (≈7 µs) is faster,
/// while training batches amortise the lookup.
pub fn times_transposed(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    if x.dim(0)? <= SMALL_BATCH {
        x.unsqueeze(1)?
            .broadcast_mul(&w.unsqueeze(0)?)?
            .sum(candle_core::D::Minus1)
    } else {
        x.matmul(&w.t()?)
    }
}

/// A dense layer `x · wᵀ + b` whose variables live in a `VarMap`.
pub struct Dense {
    w: Tensor,
    b: Tensor,
}

impl Dense {
    /// A layer from `inputs` to `outputs` units named `name.weight` and
    /// `name.bias` (initial values come from [`seed_vars`]).
    pub fn new(
        vb: &candle_nn::VarBuilder,
        inputs: usize,
        outputs: usize,
        name: &str,
    ) -> candle_core::Result<Dense> {
        let vb = vb.pp(name);
        Ok(Dense {
            w: vb.get_with_hints((outputs, inputs), "weight", candle_nn::Init::Const(0.0))?,
            b: vb.get_with_hints(outputs, "bias", candle_nn::Init::Const(0.0))?,
        })
    }

    /// The layer applied to rows (batch, inputs).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        times_transposed(x, &self.w)?.broadcast_add(&self.b)
    }
}

/// A tensor of `rows` rows of equal length.
pub fn matrix(rows: &[Vec<f32>], cols: usize) -> candle_core::Result<Tensor> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), cols), &device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Module, VarBuilder};

    fn net(seed: u64) -> (VarMap, candle_nn::Linear) {
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &device());
        let l = candle_nn::linear(3, 2, vb.pp("l")).unwrap();
        seed_vars(&vars, &mut Rng::new(seed)).unwrap();
        (vars, l)
    }

    #[test]
    fn seeded_weights_round_trip_through_json() {
        let (a, _) = net(1);
        let (b, _) = net(1);
        let (c, _) = net(2);
        let sa = save_vars(&a).unwrap();
        assert_eq!(sa, save_vars(&b).unwrap());
        assert_ne!(sa, save_vars(&c).unwrap());
        let text = serde_json::to_string(&sa).unwrap();
        let back: SavedWeights = serde_json::from_str(&text).unwrap();
        load_vars(&c, &back).unwrap();
        assert_eq!(save_vars(&c).unwrap(), sa);
        let mut wrong = back.clone();
        wrong.get_mut("l.weight").unwrap().shape = vec![3, 2];
        assert!(load_vars(&c, &wrong).unwrap_err().contains("l.weight"));
        wrong.remove("l.weight");
        assert!(load_vars(&c, &wrong).is_err());
    }

    #[test]
    fn training_fits_a_line() {
        let (vars, l) = net(3);
        // y = x0 - 2 x1 + 0.5, twice.
        let rows: Vec<Vec<f32>> = (0..64)
            .map(|i| vec![(i % 8) as f32 / 4.0 - 1.0, (i / 8) as f32 / 4.0 - 1.0, 0.0])
            .collect();
        let x = matrix(&rows, 3).unwrap();
        let y: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| vec![r[0] - 2.0 * r[1] + 0.5, r[0] - 2.0 * r[1] + 0.5])
            .collect();
        let y = matrix(&y, 2).unwrap();
        let t = Training {
            epochs: 300,
            batch: 16,
            lr: 0.05,
        };
        let loss = train(&vars, 64, &t, &mut Rng::new(4), |idx| {
            let p = l.forward(&x.index_select(idx, 0)?)?;
            (p - y.index_select(idx, 0)?)?.sqr()?.mean_all()
        })
        .unwrap();
        assert!(loss < 1e-3, "loss {loss}");
    }

    #[test]
    fn scale_standardises_and_floors() {
        let s = Scale::fit(&[1.0, 3.0, f64::NAN]);
        assert_eq!(s.apply(2.0), 0.0);
        assert_eq!(s.apply(3.0), 1.0);
        assert_eq!(s.invert(1.0), 3.0);
        let flat = Scale::fit(&[100.0; 5]);
        assert!(flat.is_valid() && flat.apply(100.1).is_finite());
    }
}
