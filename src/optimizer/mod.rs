//! [`BcdOptimizer`]: one backward Gauss–Seidel sweep over all blocks per [`BcdOptimizer::step`].
//!
//! The three-splitting sweep is in `three.rs`, the two-splitting sweep in `two.rs`.
//!
//! Block order of a sweep (`ALGORITHM.md`, three-splitting), each block taking the newest
//! values of the others:
//!
//! 1. `V_L` (output activation), 2. `U_L`, 3. `W̃_L`,
//! 4. for `i = L−1 … 1`: `V_i`, `U_i`, `W̃_i`.
//!
//! Work shared between blocks: `Z_i = Ṽ_{i−1}W̃_iᵀ` is computed once, right after `V_{i−1}`
//! (or, for `i = 1`, `W̃_1`) is updated. From then until the next sweep's `U_i` update neither
//! `V_{i−1}` nor `W̃_i` changes, so the same product serves both the objective of this sweep and
//! the `U_i` update of the next ([`ProductCache`] trades this for memory). The input Gram
//! `X̃ᵀX̃` is computed once.

use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::config::{BcdConfig, Splitting, VConstraint};
use crate::error::{BcdError, Result};
use crate::kernels;
use crate::model::{layer_output, layer_vars};
use crate::objective::{self, ObjectiveInputs, ObjectiveParts};
use crate::state::LiftedState;
use crate::updates::{self, AugmentedGram, PenaltyWeights};

mod cache;
mod three;
mod two;

pub use cache::ProductCache;

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Number of completed sweeps after this one.
    pub iteration: usize,
    /// `Φ` after the sweep, by parts.
    pub objective: ObjectiveParts,
    /// `‖x^k − x^{k−1}‖²` summed over all blocks (weights, biases, `U_i`, `V_i`).
    pub step_sq_norm: f64,
    /// Wall-clock seconds of the sweep (including the objective).
    pub seconds: f64,
}

/// Block coordinate descent on lifted variables for a fully connected network.
///
/// ```
/// use candle_bcd::{Activation, Architecture, BcdConfig, BcdNet, BcdOptimizer};
/// use candle_core::{Device, Tensor};
/// use candle_nn::VarMap;
/// # fn main() -> candle_bcd::Result<()> {
/// let device = Device::Cpu;
/// let arch = Architecture::mlp(&[4, 8, 3], Activation::Relu)?;
/// let x = Tensor::randn(0f32, 1.0, (32, 4), &device)?;
/// let y = Tensor::randn(0f32, 1.0, (32, 3), &device)?;
/// let varmap = VarMap::new();
/// let config = BcdConfig::default();
/// let model = BcdNet::init(&arch, &varmap, config.init, config.seed, &device)?;
/// let mut opt = BcdOptimizer::new(&varmap, &arch, x.clone(), y, config)?;
/// let before = opt.objective()?.total();
/// let report = opt.step()?;
/// assert!(report.objective.total() <= before);
/// let _outputs = candle_nn::Module::forward(&model, &x)?; // uses the updated weights
/// # Ok(()) }
/// ```
pub struct BcdOptimizer {
    arch: Architecture,
    config: BcdConfig,
    weights: Vec<Var>,
    biases: Vec<Var>,
    x: Tensor,
    y: Tensor,
    x_gram: AugmentedGram,
    state: LiftedState,
    /// `Z_i = Ṽ_{i−1}W̃_iᵀ` for the current blocks, when kept (derived, not part of the state).
    z: Vec<Option<Tensor>>,
    /// `‖U_i − Z_i‖²` for the current blocks (three-splitting).
    pre_sq: Vec<f64>,
    /// Whether `z` is kept between sweeps.
    cache: ProductCache,
}

impl BcdOptimizer {
    /// Builds the optimizer for the weights `layers.{l}.{weight,bias}` in `varmap`, inputs
    /// `x` (`[N, d_0]`) and targets `y` (`[N, d_L]`), and initialises the lifted variables by a
    /// forward pass: `U_i = Ṽ_{i−1}W̃_iᵀ`, `V_i = σ(U_i)`, `V_L = U_L`.
    pub fn new(
        varmap: &VarMap,
        arch: &Architecture,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
    ) -> Result<Self> {
        let mut opt = Self::build(varmap, arch, x, y, config)?;
        let mut input = opt.x.clone();
        for l in 0..arch.num_layers() {
            let u = opt.affine(l, &input)?;
            let mut v = layer_output(arch, l, &u, &input)?;
            let c = opt.config.v_constraint;
            if l + 1 < arch.num_layers() && c != VConstraint::None {
                v = kernels::map([&v], |[x]| c.project(x as f64) as f32)?;
            }
            if opt.config.splitting == Splitting::Three {
                opt.state.u.push(u.clone());
            }
            opt.state.v.push(v.clone());
            opt.z.push(None);
            opt.pre_sq.push(0.0);
            opt.store_z(l, u)?;
            input = v;
        }
        Ok(opt)
    }

    /// Rebuilds an optimizer from a saved [`LiftedState`] (the weights are read from `varmap`).
    /// Continuing from here gives the same iterates as an uninterrupted run.
    pub fn from_state(
        varmap: &VarMap,
        arch: &Architecture,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        state: LiftedState,
    ) -> Result<Self> {
        let mut opt = Self::build(varmap, arch, x, y, config)?;
        let n = opt.x.dim(0)?;
        let layers = arch.num_layers();
        let u_blocks = match opt.config.splitting {
            Splitting::Three => layers,
            Splitting::Two => 0,
        };
        if state.u.len() != u_blocks || state.v.len() != layers {
            return Err(BcdError::InvalidArchitecture(format!(
                "lifted state has {} U and {} V blocks, expected {u_blocks} and {layers}",
                state.u.len(),
                state.v.len()
            )));
        }
        for l in 0..layers {
            let expected = vec![n, arch.layer_dims(l).1];
            let u = state.u.get(l).map(|u| (LiftedState::u_name(l), u));
            for (name, t) in u.into_iter().chain([(LiftedState::v_name(l), &state.v[l])]) {
                if t.dims() != expected.as_slice() {
                    return Err(BcdError::ShapeMismatch {
                        name,
                        expected: expected.clone(),
                        got: t.dims().to_vec(),
                    });
                }
            }
        }
        let device = opt.x.device().clone();
        let to_dev =
            |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&device)?.to_dtype(DType::F32)?) };
        opt.state = LiftedState {
            iteration: state.iteration,
            u: state.u.iter().map(to_dev).collect::<Result<_>>()?,
            v: state.v.iter().map(to_dev).collect::<Result<_>>()?,
        };
        for l in 0..layers {
            let input = if l == 0 {
                opt.x.clone()
            } else {
                opt.state.v[l - 1].clone()
            };
            let z = opt.affine(l, &input)?;
            opt.z.push(None);
            opt.pre_sq.push(0.0);
            opt.store_z(l, z)?;
        }
        Ok(opt)
    }

    /// Validation and the parts shared by both constructors.
    fn build(
        varmap: &VarMap,
        arch: &Architecture,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
    ) -> Result<Self> {
        config.validate()?;
        let x = x.to_dtype(DType::F32)?;
        let y = y.to_dtype(DType::F32)?.to_device(x.device())?;
        let (n, d0) = x.dims2().map_err(|_| BcdError::ShapeMismatch {
            name: "inputs".into(),
            expected: vec![0, arch.input_dim()],
            got: x.dims().to_vec(),
        })?;
        for (name, t, width) in [
            ("inputs", &x, arch.input_dim()),
            ("targets", &y, arch.output_dim()),
        ] {
            if t.dims() != [n, width] || n == 0 {
                return Err(BcdError::ShapeMismatch {
                    name: name.into(),
                    expected: vec![n.max(1), width],
                    got: t.dims().to_vec(),
                });
            }
            if kernels::sum_map([t], |[v]| if v.is_finite() { 0.0 } else { 1.0 })? > 0.0 {
                return Err(BcdError::NonFinite {
                    iteration: 0,
                    what: format!("{name} contain NaN or Inf and"),
                });
            }
        }
        debug_assert_eq!(d0, arch.input_dim());
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for l in 0..arch.num_layers() {
            let (w, b) = layer_vars(varmap, arch, l)?;
            for (name, var) in [("weight", &w), ("bias", &b)] {
                if !var.device().same_device(x.device()) {
                    return Err(BcdError::Device {
                        device: format!("{:?}", var.device().location()),
                        reason: format!(
                            "layers.{l}.{name} is not on the data's device {:?}",
                            x.device().location()
                        ),
                    });
                }
            }
            weights.push(w);
            biases.push(b);
        }
        let x_gram = AugmentedGram::new(&x)?;
        Ok(Self {
            arch: arch.clone(),
            config,
            weights,
            biases,
            x,
            y,
            x_gram,
            state: LiftedState {
                iteration: 0,
                u: Vec::new(),
                v: Vec::new(),
            },
            z: Vec::new(),
            pre_sq: Vec::new(),
            cache: ProductCache::Keep,
        })
    }

    /// `Ṽ W̃_lᵀ` for layer `l`'s current weights.
    fn affine(&self, l: usize, input: &Tensor) -> Result<Tensor> {
        kernels::linear(
            input,
            self.weights[l].as_tensor(),
            self.biases[l].as_tensor(),
        )
    }

    /// Input of layer `l`: `X` or `V_l` (0-based).
    fn input(&self, l: usize) -> &Tensor {
        if l == 0 {
            &self.x
        } else {
            &self.state.v[l - 1]
        }
    }

    /// Exact `W̃_l ← argmin λ/2‖W‖² + c/2‖T − Ṽ_{l−1}W̃ᵀ‖² + α/2‖W̃ − W̃^old‖²`; returns the
    /// step's `‖ΔW‖² + ‖Δb‖²`.
    fn exact_weights(&mut self, l: usize, target: &Tensor, coupling: f64) -> Result<f64> {
        let gram_owned;
        let gram = if l == 0 {
            &self.x_gram
        } else {
            gram_owned = AugmentedGram::new(self.input(l))?;
            &gram_owned
        };
        let pw = PenaltyWeights {
            coupling,
            alpha: self.config.alpha,
            lambda: self.config.lambda,
        };
        let (w_old, b_old) = (self.weights[l].as_tensor(), self.biases[l].as_tensor());
        let block = format!("W_{}", l + 1);
        let (w, b) = updates::weights_for(gram, self.input(l), target, w_old, b_old, pw, &block)?;
        self.set_layer(l, &w, &b)
    }

    /// Writes new weights into layer `l`'s `Var`s; returns `‖ΔW‖² + ‖Δb‖²`.
    fn set_layer(&mut self, l: usize, w: &Tensor, b: &Tensor) -> Result<f64> {
        let (w_old, b_old) = (self.weights[l].as_tensor(), self.biases[l].as_tensor());
        let dx = kernels::sq_dist(w, w_old)? + kernels::sq_dist(b, b_old)?;
        self.weights[l].set(w)?;
        self.biases[l].set(b)?;
        Ok(dx)
    }

    /// Replaces a lifted block and returns `‖new − old‖²`.
    fn replace(slot: &mut Tensor, new: Tensor) -> Result<f64> {
        let dx = kernels::sq_dist(&new, slot)?;
        *slot = new;
        Ok(dx)
    }

    /// One full backward Gauss–Seidel sweep over all blocks (of the configured splitting).
    pub fn step(&mut self) -> Result<StepReport> {
        let start = Instant::now();
        let dx = match self.config.splitting {
            Splitting::Three => self.sweep_three()?,
            Splitting::Two => self.sweep_two()?,
        };
        self.state.iteration += 1;

        let objective = self.objective()?;
        if let Some(part) = objective.non_finite_part() {
            return Err(BcdError::NonFinite {
                iteration: self.state.iteration,
                what: format!("the objective's {part}"),
            });
        }
        Ok(StepReport {
            iteration: self.state.iteration,
            objective,
            step_sq_norm: dx,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// `Φ` at the current blocks, by parts.
    pub fn objective(&self) -> Result<ObjectiveParts> {
        let (weights, _) = self.layer_tensors();
        // Two-splitting has no U blocks: U := Z makes the ρ-terms vanish and turns the γ-terms
        // into γ/2‖V_i − S_i − σ(Z_i)‖², which is Φ₂.
        let (z, zeros);
        let (u, pre_sq) = match self.config.splitting {
            Splitting::Three => (&self.state.u, &self.pre_sq),
            Splitting::Two => {
                z = (0..self.z.len())
                    .map(|l| self.z(l))
                    .collect::<Result<Vec<_>>>()?;
                zeros = vec![0.0; z.len()];
                (&z, &zeros)
            }
        };
        objective::evaluate(
            &ObjectiveInputs {
                y: &self.y,
                u,
                v: &self.state.v,
                preactivation_sq: pre_sq,
                weights: &weights,
                x: &self.x,
                arch: &self.arch,
            },
            &self.config,
        )
    }

    /// The lifted variables and iteration count.
    pub fn state(&self) -> &LiftedState {
        &self.state
    }

    /// Completed sweeps.
    pub fn iteration(&self) -> usize {
        self.state.iteration
    }

    /// The hyperparameters.
    pub fn config(&self) -> &BcdConfig {
        &self.config
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// Number of training samples `N`.
    pub fn num_samples(&self) -> usize {
        self.x.dim(0).unwrap_or(0)
    }

    /// The training inputs `X`, `[N, d_0]`.
    pub fn inputs(&self) -> &Tensor {
        &self.x
    }

    /// The network's outputs (a plain forward pass with the current weights, not the lifted
    /// `V_L`) on the training inputs. The first layer's product `X̃W̃_1ᵀ` is the kept `Z_1`, so
    /// this costs one product fewer than [`BcdNet::logits`](crate::BcdNet::logits) on the same
    /// inputs, with the same result.
    pub fn training_logits(&self) -> Result<Tensor> {
        let (weights, biases) = self.layer_tensors();
        let h = layer_output(&self.arch, 0, &self.z(0)?, &self.x)?;
        crate::model::forward_from(&self.arch, &weights, &biases, 1, h)
    }

    /// Accuracy of the network (plain forward pass) on the training inputs against `labels`,
    /// in blocks of rows, reusing the kept `Z_1` as [`Self::training_logits`] does.
    pub fn training_accuracy(&self, labels: &Tensor) -> Result<f64> {
        let (weights, biases) = self.layer_tensors();
        crate::model::blocked_accuracy(
            &self.arch,
            &weights,
            &biases,
            &self.x,
            self.z[0].as_ref(),
            labels,
        )
    }

    /// The current `W_l` and `b_l` as tensors.
    fn layer_tensors(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        let tensors = |vars: &[Var]| vars.iter().map(|v| v.as_tensor().clone()).collect();
        (tensors(&self.weights), tensors(&self.biases))
    }

    /// The weight `Var`s `W_1 … W_L` (updated in place by [`Self::step`]).
    pub fn weight_vars(&self) -> &[Var] {
        &self.weights
    }

    /// The bias `Var`s `b_1 … b_L`.
    pub fn bias_vars(&self) -> &[Var] {
        &self.biases
    }
}
