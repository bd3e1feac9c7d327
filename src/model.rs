//! The network BCD trains: an ordinary candle-nn model.
//!
//! [`BcdNet`] holds its weights as tensors of `Var`s in a [`candle_nn::VarMap`] under
//! candle-nn's names (`layers.{l}.weight` as `[out, in]`, `layers.{l}.bias` as `[out]`) and
//! implements [`candle_nn::Module`]: `forward` is the plain forward pass
//! `U_i = V_{i−1}W_iᵀ + 1b_iᵀ`, `V_i = σ(U_i)`, linear output. The optimizer updates the
//! `Var`s in place, so the model always computes with the newest weights.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::activation::with_sigma;
use crate::arch::Architecture;
use crate::blocks::{AugmentedGram, NormalSums};
use crate::comm::{Communicator, SingleProcess};
use crate::config::WeightInit;
use crate::error::{BcdError, Result};
use crate::kernels;
use crate::layers::Layers;

/// Rows per block of the head fit's normal sums.
const HEAD_FIT_ROWS: usize = 4096;

/// A fully connected network whose weights live in a `VarMap`.
#[derive(Debug, Clone)]
pub struct BcdNet {
    arch: Architecture,
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
}

impl BcdNet {
    /// Reads the weights from a `VarBuilder` (a `VarMap`, a safetensors file, ...).
    pub fn new(arch: &Architecture, vb: VarBuilder) -> Result<Self> {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for l in 0..arch.num_layers() {
            let (n, m) = arch.layer_dims(l);
            let vb = vb.pp(Architecture::layer_prefix(l));
            weights.push(vb.get((m, n), "weight")?);
            biases.push(vb.get(m, "bias")?);
        }
        Ok(Self {
            arch: arch.clone(),
            weights,
            biases,
        })
    }

    /// Creates freshly initialised weights in `varmap` (seeded, see [`WeightInit`]) and
    /// returns the model reading them. Existing entries of the same names are replaced.
    pub fn init(
        arch: &Architecture,
        varmap: &VarMap,
        init: WeightInit,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
            for l in 0..arch.num_layers() {
                let (n, m) = arch.layer_dims(l);
                let (std, bias) = init.std_and_bias(n, m);
                let normal = Normal::new(0.0, std).map_err(|e| {
                    BcdError::InvalidArchitecture(format!("weight init of layer {l}: {e}"))
                })?;
                let w: Vec<f32> = (0..m * n).map(|_| normal.sample(&mut rng) as f32).collect();
                let w = Tensor::from_vec(w, (m, n), device)?;
                let b = Tensor::full(bias as f32, m, device)?;
                let prefix = Architecture::layer_prefix(l);
                data.insert(format!("{prefix}.weight"), Var::from_tensor(&w)?);
                data.insert(format!("{prefix}.bias"), Var::from_tensor(&b)?);
            }
        }
        Self::new(arch, VarBuilder::from_varmap(varmap, DType::F32, device))
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// `W_{l+1}` (0-based layer index `l`), `[d_{l+1}, d_l]`.
    pub fn weight(&self, l: usize) -> &Tensor {
        &self.weights[l]
    }

    /// `b_{l+1}` (0-based layer index `l`), `[d_{l+1}]`.
    pub fn bias(&self, l: usize) -> &Tensor {
        &self.biases[l]
    }

    /// The network's outputs (logits) for inputs `x` of shape `[N, d_0]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        forward_from(&self.arch, &self.weights, &self.biases, 0, x.clone())
    }

    /// The head's input for inputs `x`: the output of the last hidden layer, i.e. the
    /// features the linear head classifies (`logits = features · W_Lᵀ + 1b_Lᵀ`).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let head = self.arch.num_layers() - 1;
        forward_range(&self.arch, &self.weights, &self.biases, 0..head, x.clone())
    }

    /// Sets the linear head to the ridge least-squares fit of targets `y` (`[N, d_L]`, e.g.
    /// one-hot) on the network's current [`features`](Self::features) of `x`:
    /// `W̃_L = argmin ½‖Y − H̃W̃ᵀ‖² + λ/2‖W‖²` (bias not penalised), one SPD solve of size
    /// `d_{L−1} + 1` (the weight block of `docs/algorithm.md`). The hidden layers
    /// are unchanged. Used as a head initialisation before an optimizer is built (its lifted
    /// state is then set from the network with this head); `varmap` must hold this model's
    /// `Var`s.
    pub fn fit_head(&self, varmap: &VarMap, x: &Tensor, y: &Tensor, lambda: f64) -> Result<()> {
        self.fit_head_distributed(varmap, x, y, lambda, &SingleProcess)
    }

    /// [`Self::fit_head`] on the rows of all ranks of a data-parallel run, each passing its own
    /// rows of `x` and `y`; every rank receives the same head.
    pub fn fit_head_distributed(
        &self,
        varmap: &VarMap,
        x: &Tensor,
        y: &Tensor,
        lambda: f64,
        comm: &dyn Communicator,
    ) -> Result<()> {
        let head = self.arch.num_layers() - 1;
        let (_, d_out) = self.arch.layer_dims(head);
        let n = x.dim(0)?;
        if y.dims() != [n, d_out] {
            return Err(BcdError::ShapeMismatch {
                name: "head targets".into(),
                expected: vec![n, d_out],
                got: y.dims().to_vec(),
            });
        }
        // The normal sums are taken over blocks of rows, so that the features of all `N` rows
        // are never held at once (a mini-batch run keeps its memory independent of `N`).
        let mut sums: Option<NormalSums> = None;
        for start in (0..n).step_by(HEAD_FIT_ROWS) {
            let rows = HEAD_FIT_ROWS.min(n - start);
            let h = self.features(&x.narrow(0, start, rows)?)?;
            let part = NormalSums::new(AugmentedGram::new(&h)?, &h, &y.narrow(0, start, rows)?)?;
            match &mut sums {
                Some(s) => s.decay_add(1.0, &part),
                None => sums = Some(part),
            }
        }
        let sums = match sums {
            Some(s) => s,
            // No rows on this rank: the sums of none.
            None => {
                let h = self.features(x)?;
                NormalSums::new(AugmentedGram::new(&h)?, &h, y)?
            }
        };
        let (w, b) =
            crate::blocks::ridge_solve(sums, lambda, "head initialisation", comm, x.device())?;
        let layers = Layers::of_architecture(varmap, &self.arch)?;
        layers.weight_vars()[head].set(&w)?;
        layers.bias_vars()[head].set(&b)?;
        Ok(())
    }

    /// Fraction of rows of `x` whose arg-max output equals `labels` (integer class ids),
    /// computed in blocks of rows so that it needs only a few megabytes beyond `x`.
    pub fn accuracy(&self, x: &Tensor, labels: &Tensor) -> Result<f64> {
        let correct = blocked_correct(&self.arch, &self.weights, &self.biases, x, None, labels)?;
        Ok(correct / x.dim(0)?.max(1) as f64)
    }
}

impl Module for BcdNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.logits(xs).map_err(candle_core::Error::wrap)
    }
}

/// Output `V` of layer `l` from its pre-activation `u` and input `x`: `σ(u)`, `x + σ(u)` for a
/// residual layer, `u` for the linear head.
pub(crate) fn layer_output(
    arch: &Architecture,
    l: usize,
    u: &Tensor,
    x: &Tensor,
) -> Result<Tensor> {
    let act = arch.activation();
    if l + 1 == arch.num_layers() {
        Ok(u.clone())
    } else if !kernels::fused(u) {
        act.output_tensor(u, arch.is_residual(l).then_some(x))
    } else if arch.is_residual(l) {
        with_sigma!(act, |sigma| kernels::map([u, x], |[u, x]| {
            (x as f64 + sigma.apply(u as f64)) as f32
        }))
    } else {
        with_sigma!(act, |sigma| kernels::map([u], |[u]| sigma.apply(u as f64)
            as f32))
    }
}

/// The forward pass from layer `from` on, `h` being that layer's input.
pub(crate) fn forward_from(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    from: usize,
    h: Tensor,
) -> Result<Tensor> {
    forward_range(arch, weights, biases, from..arch.num_layers(), h)
}

/// The forward pass through `layers`, `h` being the first one's input.
fn forward_range(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    layers: std::ops::Range<usize>,
    mut h: Tensor,
) -> Result<Tensor> {
    for l in layers {
        let u = kernels::linear(&h, &weights[l], &biases[l])?;
        h = layer_output(arch, l, &u, &h)?;
    }
    Ok(h)
}

/// Accuracy of the network on `x`, a block of rows at a time; `first`, when given, is the
/// first layer's pre-activation `X̃W̃_1ᵀ` for the same rows (then not recomputed).
pub(crate) fn blocked_correct(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    x: &Tensor,
    first: Option<&Tensor>,
    labels: &Tensor,
) -> Result<f64> {
    crate::metrics::correct_in_blocks(labels, x.dim(0)?, |start, len| {
        let xb = x.narrow(0, start, len)?;
        match first {
            Some(z) => {
                let h = layer_output(arch, 0, &z.narrow(0, start, len)?, &xb)?;
                forward_from(arch, weights, biases, 1, h)
            }
            None => forward_from(arch, weights, biases, 0, xb),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, WeightInit};
    use candle_core::Device;

    /// `fit_head` writes the ridge fit into the model's own head (checked through `logits`):
    /// the residual `Y − logits` is orthogonal to every feature column and to the ones column
    /// up to the ridge term, `H̃ᵀ(Y − logits) = λ[W 0]ᵀ`, computed here in f64.
    #[test]
    fn fit_head_solves_the_ridge_normal_equations() {
        let dev = Device::Cpu;
        let arch = Architecture::mlp(&[5, 7, 3], Activation::Relu).unwrap();
        let varmap = VarMap::new();
        let net = BcdNet::init(&arch, &varmap, WeightInit::Kaiming, 1, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (40, 5), &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (40, 3), &dev).unwrap();
        let lambda = 0.5;
        net.fit_head(&varmap, &x, &y, lambda).unwrap();
        let to64 = |t: &Tensor| t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
        let (h, r) = (to64(&net.features(&x).unwrap()), to64(&y));
        let out = to64(&net.logits(&x).unwrap());
        let w = to64(net.weight(1));
        for c in 0..3 {
            for j in 0..=7 {
                let dot: f64 = (0..40)
                    .map(|s| (if j < 7 { h[s][j] } else { 1.0 }) * (r[s][c] - out[s][c]))
                    .sum();
                let expected = if j < 7 { lambda * w[c][j] } else { 0.0 };
                assert!(
                    (dot - expected).abs() < 1e-3,
                    "class {c} column {j}: {dot} vs {expected}"
                );
            }
        }
        let bad = Tensor::zeros((40, 2), DType::F32, &dev).unwrap();
        assert!(net.fit_head(&varmap, &x, &bad, lambda).is_err());
        assert!(net.fit_head(&varmap, &x, &y, -1.0).is_err());
    }

    /// Over more rows than one block of the head fit, the blocked sums give the head that one
    /// fit over all the features at once gives (to `f32` round-off of the sums' order).
    #[test]
    fn fit_head_over_blocks_of_rows_equals_one_fit() {
        let dev = Device::Cpu;
        let arch = Architecture::mlp(&[6, 9, 4], Activation::Relu).unwrap();
        let varmap = VarMap::new();
        let net = BcdNet::init(&arch, &varmap, WeightInit::Kaiming, 2, &dev).unwrap();
        let n = 2 * HEAD_FIT_ROWS + 123;
        let x = Tensor::randn(0f32, 1.0, (n, 6), &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (n, 4), &dev).unwrap();
        let (w, b) =
            crate::blocks::ridge_fit(&net.features(&x).unwrap(), &y, 0.5, "reference").unwrap();
        net.fit_head(&varmap, &x, &y, 0.5).unwrap();
        let rel = |a: &Tensor, b: &Tensor| {
            let d = (a - b).unwrap().sqr().unwrap().sum_all().unwrap();
            let s = b.sqr().unwrap().sum_all().unwrap();
            (d.to_scalar::<f32>().unwrap() / s.to_scalar::<f32>().unwrap()).sqrt()
        };
        assert!(rel(net.weight(1), &w) < 1e-5, "{}", rel(net.weight(1), &w));
        assert!(rel(net.bias(1), &b) < 1e-5, "{}", rel(net.bias(1), &b));
    }

    /// The head applied to `features` gives `logits` (same products, so equal to round-off).
    #[test]
    fn features_feed_the_head() {
        let arch = Architecture::resnet(6, 8, 2, 3, Activation::Relu).unwrap();
        let net =
            BcdNet::init(&arch, &VarMap::new(), WeightInit::Kaiming, 3, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (20, 6), &Device::Cpu).unwrap();
        let f = net.features(&x).unwrap();
        assert_eq!(f.dims(), [20, 8]);
        let head = kernels::linear(&f, net.weight(3), net.bias(3)).unwrap();
        let diff = kernels::max_abs_diff(&head, &net.logits(&x).unwrap());
        assert!(diff < 1e-6, "{diff}");
    }
}
