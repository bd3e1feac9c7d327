//! Initialisation of a [`Network`]: seeded random weights ([`WeightInit`]) and the closed-form
//! ridge fit of the linear head on the network's features,
//! `W̃_L = argmin ½‖Y − H̃W̃ᵀ‖² + λ/2‖W‖²` (bias not penalised), one SPD solve of size
//! `d_{L−1} + 1` — the exact weight block of the method applied to the head alone.

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::Network;
use crate::arch::Architecture;
use crate::blocks::{AugmentedGram, NormalSums};
use crate::comm::{Communicator, SingleProcess};
use crate::config::WeightInit;
use crate::conv;
use crate::error::{BcdError, Result};

/// Rows per block of the head fit's normal sums.
pub(crate) const HEAD_FIT_ROWS: usize = 4096;

impl Network {
    /// Creates freshly initialised weights for `arch` in `varmap` (seeded, see [`WeightInit`])
    /// under the names `layers.{l}` ([`Architecture::layer_prefix`]) and returns the network
    /// reading them, with `arch`'s activation and residual layers. Existing entries of the same
    /// names are set to the new values, so a model already reading them sees them.
    pub fn init(
        arch: &Architecture,
        varmap: &VarMap,
        init: WeightInit,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut tensors = Vec::new();
        for l in 0..arch.num_layers() {
            let shape = arch.weight_shape(l);
            let (fan_in, fan_out) = arch.fans(l);
            let (std, bias) = init.std_and_bias(fan_in, fan_out);
            let normal = Normal::new(0.0, std).map_err(|e| {
                BcdError::InvalidArchitecture(format!("weight init of layer {l}: {e}"))
            })?;
            let count: usize = shape.iter().product();
            let w: Vec<f32> = (0..count).map(|_| normal.sample(&mut rng) as f32).collect();
            let m = shape[0];
            let prefix = Architecture::layer_prefix(l);
            tensors.push((
                format!("{prefix}.weight"),
                Tensor::from_vec(w, shape, device)?,
            ));
            tensors.push((
                format!("{prefix}.bias"),
                Tensor::full(bias as f32, m, device)?,
            ));
        }
        set_or_insert(varmap, tensors)?;
        Self::of_architecture(varmap, arch)
    }

    /// Multiplies the weights of every residual layer (with two-layer branches, each branch's
    /// closing layer) by `factor` (biases unchanged), as an initialisation step. With `K`
    /// residual layers `V_i = V_{i−1} + σ(U_i)`, an initialisation that preserves each layer's
    /// variance lets the activations' variance grow
    /// about `(1 + 1)` times per residual layer, `2^K` in all; branches scaled by
    /// `1/√K` keep the growth near `(1 + 1/K)^K ≤ e`, and `0` starts every branch at its bias.
    /// `docs/algorithm.md` ("Depth") gives the measured effect. Errors on a negative or
    /// non-finite factor.
    pub fn scale_residual_branches(&self, factor: f64) -> Result<()> {
        if !(factor.is_finite() && factor >= 0.0) {
            return Err(BcdError::InvalidHyperparameter {
                name: "residual_scale",
                value: factor,
                reason: "must be finite and >= 0",
            });
        }
        for l in (0..self.len()).filter(|&l| self.arch.is_residual(l)) {
            self.weights[l].set(&(self.weight(l) * factor)?)?;
        }
        Ok(())
    }

    /// Number of residual layers `K`.
    pub fn residual_layers(&self) -> usize {
        (0..self.len())
            .filter(|&l| self.arch.is_residual(l))
            .count()
    }

    /// Sets the linear head to the ridge least-squares fit of targets `y` (`[N, d_L]`, e.g.
    /// one-hot) on the network's current [`features`](Self::features) of `x` (see the module
    /// documentation). The hidden layers are unchanged. Used as a head initialisation before an
    /// optimizer is built (its lifted state is then set from the network with this head).
    pub fn fit_head(&self, x: &Tensor, y: &Tensor, lambda: f64) -> Result<()> {
        self.fit_head_distributed(x, y, lambda, &SingleProcess)
    }

    /// [`Self::fit_head`] on the rows of all ranks of a data-parallel run, each passing its own
    /// rows of `x` and `y`; every rank receives the same head.
    pub fn fit_head_distributed(
        &self,
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
            let (h, t) = conv::weight_problem(&self.arch, head, &h, &y.narrow(0, start, rows)?)?;
            let part = NormalSums::new(AugmentedGram::new(&h)?, &h, &t)?;
            match &mut sums {
                Some(s) => s.decay_add(1.0, &part),
                None => sums = Some(part),
            }
        }
        let sums = match sums {
            Some(s) => s,
            // No rows on this rank: the sums of none.
            None => {
                let (h, t) = conv::weight_problem(&self.arch, head, &self.features(x)?, y)?;
                NormalSums::new(AugmentedGram::new(&h)?, &h, &t)?
            }
        };
        let (w, b) =
            crate::blocks::ridge_solve(sums, lambda, "head initialisation", comm, x.device())?;
        self.weights[head].set(&w.reshape(self.arch.weight_shape(head))?)?;
        self.biases[head].set(&b)?;
        Ok(())
    }
}

/// Puts `tensors` into `varmap` by name: an existing `Var` of the same shape and dtype is set
/// to the value (so every model reading it sees the change), any other entry is replaced.
pub(crate) fn set_or_insert(varmap: &VarMap, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
    for (name, t) in tensors {
        match data.get(&name) {
            Some(var)
                if var.dims() == t.dims()
                    && var.dtype() == t.dtype()
                    && var.device().same_device(t.device()) =>
            {
                var.set(&t)?
            }
            _ => {
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::kernels;
    use candle_core::DType;

    /// `fit_head` writes the ridge fit into the model's own head (checked through `logits`):
    /// the residual `Y − logits` is orthogonal to every feature column and to the ones column
    /// up to the ridge term, `H̃ᵀ(Y − logits) = λ[W 0]ᵀ`, computed here in f64.
    #[test]
    fn fit_head_solves_the_ridge_normal_equations() {
        let dev = Device::Cpu;
        let arch = Architecture::mlp(&[5, 7, 3], Activation::Relu).unwrap();
        let net = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 1, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (40, 5), &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (40, 3), &dev).unwrap();
        let lambda = 0.5;
        net.fit_head(&x, &y, lambda).unwrap();
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
        assert!(net.fit_head(&x, &bad, lambda).is_err());
        assert!(net.fit_head(&x, &y, -1.0).is_err());
    }

    /// Over more rows than one block of the head fit, the blocked sums give the head that one
    /// fit over all the features at once gives (to `f32` round-off of the sums' order).
    #[test]
    fn fit_head_over_blocks_of_rows_equals_one_fit() {
        let dev = Device::Cpu;
        let arch = Architecture::mlp(&[6, 9, 4], Activation::Relu).unwrap();
        let net = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 2, &dev).unwrap();
        let n = 2 * HEAD_FIT_ROWS + 123;
        let x = Tensor::randn(0f32, 1.0, (n, 6), &dev).unwrap();
        let y = Tensor::randn(0f32, 1.0, (n, 4), &dev).unwrap();
        let (w, b) =
            crate::blocks::ridge_fit(&net.features(&x).unwrap(), &y, 0.5, "reference").unwrap();
        net.fit_head(&x, &y, 0.5).unwrap();
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
            Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 3, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (20, 6), &Device::Cpu).unwrap();
        let f = net.features(&x).unwrap();
        assert_eq!(f.dims(), [20, 8]);
        let head = kernels::linear(&f, net.weight(3), net.bias(3)).unwrap();
        let diff = kernels::max_abs_diff(&head, &net.logits(&x).unwrap());
        assert!(diff < 1e-6, "{diff}");
    }

    /// Only the residual layers' weights are scaled, by exactly the factor; a negative factor
    /// is refused.
    #[test]
    fn scaling_touches_the_residual_branches_only() {
        let dev = Device::Cpu;
        let arch = Architecture::resnet(5, 6, 3, 2, Activation::Relu).unwrap();
        let net = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 4, &dev).unwrap();
        assert_eq!(net.residual_layers(), 3);
        let before: Vec<Vec<f32>> = (0..net.len())
            .map(|l| net.weight(l).flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        net.scale_residual_branches(0.25).unwrap();
        for (l, old) in before.iter().enumerate() {
            let new: Vec<f32> = net.weight(l).flatten_all().unwrap().to_vec1().unwrap();
            let factor = if arch.is_residual(l) { 0.25 } else { 1.0 };
            for (a, b) in new.iter().zip(old) {
                assert_eq!(*a, b * factor, "layer {l}");
            }
        }
        assert!(net.scale_residual_branches(-1.0).is_err());
        assert!(net.scale_residual_branches(f64::NAN).is_err());
    }

    /// Re-initialising a `VarMap` that a model already reads changes that model's weights
    /// (the `Var`s are set, not replaced behind its back).
    #[test]
    fn init_sets_the_vars_a_model_already_reads() {
        let dev = Device::Cpu;
        let arch = Architecture::mlp(&[4, 3], Activation::Relu).unwrap();
        let varmap = VarMap::new();
        let first = Network::init(&arch, &varmap, WeightInit::Kaiming, 1, &dev).unwrap();
        let second = Network::init(&arch, &varmap, WeightInit::Kaiming, 2, &dev).unwrap();
        let diff = kernels::max_abs_diff(first.weight(0), second.weight(0));
        assert_eq!(diff, 0.0, "the first network still reads the old weights");
    }
}
