//! [`BcdOptimizer`]: the blocks of one network and data, and one backward Gauss–Seidel sweep
//! over them per [`BcdOptimizer::step`].
//!
//! The sweeps and objectives of the two formulations live in their own modules
//! (`crate::three_split`, `crate::two_split`); this module holds the state they share, the
//! constructors and the exact weight block both use.
//!
//! Work shared between blocks: `Z_i = Ṽ_{i−1}W̃_iᵀ` is computed once, right after `V_{i−1}`
//! (or, for `i = 1`, `W̃_1`) is updated. From then until the next sweep's `U_i` update neither
//! `V_{i−1}` nor `W̃_i` changes, so the same product serves both the objective of this sweep and
//! the `U_i` update of the next ([`ProductCache`] trades this for memory). The input Gram
//! `X̃ᵀX̃` is computed once.

use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, Branch};
use crate::blocks::{self, AugmentedGram, NormalSums, PenaltyWeights};
use crate::comm::{self, Communicator, SingleProcess};
use crate::config::{BcdConfig, Splitting, VConstraint};
use crate::conv::{self, CgReport};
use crate::error::{BcdError, Result};
use crate::kernels;
use crate::network::forward::layer_output;
use crate::network::Network;
use crate::objective::{Lifted, ObjectiveParts};
use crate::state::LiftedState;
use crate::{three_split, two_split};

mod cache;

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

/// Block coordinate descent on lifted variables for a [`Network`], fully connected or
/// convolutional: the layers of any candle-nn model ([`Network::from_varmap`],
/// [`Network::from_varmap_as`]), or the crate's own ([`Network::init`]):
///
/// ```
/// use candle_bcd::{Activation, Architecture, BcdConfig, BcdOptimizer, Network, WeightInit};
/// use candle_core::{Device, Tensor};
/// use candle_nn::VarMap;
/// # fn main() -> candle_bcd::Result<()> {
/// let device = Device::Cpu;
/// let arch = Architecture::mlp(&[4, 8, 3], Activation::Relu)?;
/// let x = Tensor::randn(0f32, 1.0, (32, 4), &device)?;
/// let y = Tensor::randn(0f32, 1.0, (32, 3), &device)?;
/// let varmap = VarMap::new();
/// let model = Network::init(&arch, &varmap, WeightInit::Official, 0, &device)?;
/// let mut opt = BcdOptimizer::new(&model, x.clone(), y, BcdConfig::default())?;
/// let before = opt.objective()?.total();
/// let report = opt.step()?;
/// assert!(report.objective.total() <= before);
/// let _outputs = candle_nn::Module::forward(&model, &x)?; // uses the updated weights
/// # Ok(()) }
/// ```
pub struct BcdOptimizer {
    pub(crate) layers: Network,
    pub(crate) config: BcdConfig,
    pub(crate) x: Tensor,
    pub(crate) y: Tensor,
    x_gram: AugmentedGram,
    pub(crate) state: LiftedState,
    /// `Z_i = Ṽ_{i−1}W̃_iᵀ` for the current blocks, when kept (derived, not part of the state).
    pub(crate) kept_products: Vec<Option<Tensor>>,
    /// `‖U_i − Z_i‖²` for the current blocks (three-splitting, kept by its sweep).
    pub(crate) pre_sq: Vec<f64>,
    /// Sums of earlier rows each exact weight block's normal equations add, times
    /// `prior_scale` (mini-batch memory); empty when there is none.
    weight_prior: Vec<Option<NormalSums>>,
    /// The factor of `weight_prior`.
    prior_scale: f64,
    /// The normal sums of this data each exact weight block last solved, when `weight_prior`
    /// is in use.
    last_sums: Vec<Option<NormalSums>>,
    /// Whether `z` is kept between sweeps.
    cache: ProductCache,
    /// The ranks that share the rows (one process by default).
    pub(crate) comm: Arc<dyn Communicator>,
    /// Rows over all ranks.
    total_rows: usize,
    /// The conjugate-gradient solves of the last sweep's activation blocks under image layers.
    pub(crate) cg_reports: Vec<CgReport>,
    /// Copies of the weights and biases as the optimizer last left them: the lifted state and
    /// the kept products were formed from these, so a change made outside its steps (a
    /// `VarMap::load`, a head fit, another optimizer on the same `Var`s) is detected.
    seen: Vec<(Tensor, Tensor)>,
}

/// Sets every rank's weights of `layers` to rank 0's.
pub(crate) fn sync_weights(layers: &Network, comm: &dyn Communicator) -> Result<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let vars: Vec<&Var> = layers
        .weight_vars()
        .iter()
        .chain(layers.bias_vars())
        .collect();
    let like: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let root = comm::from_root(comm, &like, || {
        Ok(like.iter().map(|t| (*t).clone()).collect())
    })?;
    for (var, t) in vars.iter().zip(&root) {
        var.set(t)?;
    }
    Ok(())
}

/// How far one sweep moved the blocks: the lifted blocks of this rank's rows and the weights
/// (which every rank holds alike), each `Σ ‖new − old‖²`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SweepChange {
    /// Over this rank's rows of the `U_i`, `V_i`.
    pub lifted: f64,
    /// Over the weights and biases.
    pub weights: f64,
}

impl BcdOptimizer {
    /// Builds the optimizer for `layers` (whose `Var`s it updates in place), inputs `x`
    /// (`[N, d_0]`) and targets `y` (`[N, d_L]`), and initialises the lifted variables by a
    /// forward pass: `U_i = Ṽ_{i−1}W̃_iᵀ`, `V_i = σ(U_i)`, `V_L = U_L`.
    pub fn new(layers: &Network, x: Tensor, y: Tensor, config: BcdConfig) -> Result<Self> {
        Self::new_distributed(layers, x, y, config, Arc::new(SingleProcess))
    }

    /// [`Self::new`] for one rank of a data-parallel run: `x` and `y` are this rank's rows (see
    /// [`comm::share`]), and every rank calls this with its own rows and
    /// the same `layers` architecture, `config` and `comm`. The weights start as rank 0's
    /// (broadcast), sums over rows are taken over all ranks, and every sweep leaves the same
    /// weights on every rank.
    pub fn new_distributed(
        layers: &Network,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        comm: Arc<dyn Communicator>,
    ) -> Result<Self> {
        Self::from_forward_pass(layers, x, y, config, comm, true)
    }

    /// [`Self::new_distributed`], broadcasting rank 0's weights first only when `sync` (a
    /// caller whose ranks already hold the same weights skips it).
    pub(crate) fn from_forward_pass(
        layers: &Network,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        comm: Arc<dyn Communicator>,
        sync: bool,
    ) -> Result<Self> {
        let mut opt = Self::build(layers, x, y, config, comm, sync)?;
        let arch = layers.architecture();
        let mut input = opt.x.clone();
        for l in 0..arch.num_layers() {
            let u = opt.affine(l, &input)?;
            let skip = opt.skip(l).unwrap_or(&input);
            let mut v = layer_output(arch, l, &u, skip)?;
            let c = opt.config.v_constraint;
            if l + 1 < arch.num_layers() && c != VConstraint::None {
                v = c.project_all(&v)?;
            }
            if opt.config.splitting == Splitting::Three {
                opt.state.u.push(u.clone());
            }
            opt.state.v.push(v.clone());
            opt.kept_products.push(None);
            opt.pre_sq.push(0.0);
            opt.record_formed(l, u)?;
            input = v;
        }
        opt.remember_weights()?;
        Ok(opt)
    }

    /// Rebuilds an optimizer from a saved [`LiftedState`] (the weights are those `layers`
    /// hold). Continuing from here gives the same iterates as an uninterrupted run.
    pub fn from_state(
        layers: &Network,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        state: LiftedState,
    ) -> Result<Self> {
        Self::from_state_distributed(layers, x, y, config, state, Arc::new(SingleProcess))
    }

    /// [`Self::from_state`] for one rank of a data-parallel run (see
    /// [`Self::new_distributed`]): `state` holds this rank's rows of the lifted variables.
    pub fn from_state_distributed(
        layers: &Network,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        state: LiftedState,
        comm: Arc<dyn Communicator>,
    ) -> Result<Self> {
        let mut opt = Self::build(layers, x, y, config, comm, true)?;
        let arch = layers.architecture();
        let n = opt.x.dim(0)?;
        let num_layers = arch.num_layers();
        let u_blocks = match opt.config.splitting {
            Splitting::Three => num_layers,
            Splitting::Two => 0,
        };
        if state.u.len() != u_blocks || state.v.len() != num_layers {
            return Err(BcdError::StateMismatch(format!(
                "it has {} U and {} V blocks, the {:?}-splitting of {num_layers} layers needs \
                 {u_blocks} and {num_layers}",
                state.u.len(),
                state.v.len(),
                opt.config.splitting
            )));
        }
        for l in 0..num_layers {
            let expected = vec![n, arch.layer_dims(l).1];
            let u = state.u.get(l).map(|u| (LiftedState::u_name(l), u));
            for (name, t) in u.into_iter().chain([(LiftedState::v_name(l), &state.v[l])]) {
                if t.dims() != expected.as_slice() {
                    return Err(BcdError::StateMismatch(format!(
                        "{name} has shape {:?}, the layer and data need {expected:?}",
                        t.dims()
                    )));
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
        for l in 0..num_layers {
            let input = if l == 0 {
                opt.x.clone()
            } else {
                opt.state.v[l - 1].clone()
            };
            let z = opt.affine(l, &input)?;
            opt.kept_products.push(None);
            opt.pre_sq.push(0.0);
            opt.record_formed(l, z)?;
        }
        opt.remember_weights()?;
        Ok(opt)
    }

    /// Validation and the parts shared by both constructors.
    fn build(
        layers: &Network,
        x: Tensor,
        y: Tensor,
        config: BcdConfig,
        comm: Arc<dyn Communicator>,
        sync: bool,
    ) -> Result<Self> {
        config.validate()?;
        Self::check_formulation(layers.architecture(), &config)?;
        let x = x.to_dtype(DType::F32)?;
        let y = y.to_dtype(DType::F32)?.to_device(x.device())?;
        comm::agree(&*comm, Self::check_data(layers, &x, &y))?;
        if sync {
            sync_weights(layers, &*comm)?;
        }
        let x_gram =
            AugmentedGram::new(&conv::design(layers.architecture(), 0, &x)?)?.summed(&*comm);
        let [total_rows] = comm::sum(&*comm, [x.dim(0)? as f64]);
        Ok(Self {
            layers: layers.clone(),
            config,
            x,
            y,
            x_gram,
            state: LiftedState {
                iteration: 0,
                u: Vec::new(),
                v: Vec::new(),
            },
            kept_products: Vec::new(),
            weight_prior: Vec::new(),
            prior_scale: 1.0,
            last_sums: Vec::new(),
            pre_sq: Vec::new(),
            cache: ProductCache::Keep,
            comm,
            total_rows: total_rows as usize,
            cg_reports: Vec::new(),
            seen: Vec::new(),
        })
    }

    /// What image layers cannot do yet: the two-splitting's prox-linear blocks and the
    /// constrained activation blocks assume linear layers. Nor do the two-splitting's blocks
    /// know two-layer residual branches.
    fn check_formulation(arch: &Architecture, config: &BcdConfig) -> Result<()> {
        if arch.branch() == Branch::Pair && config.splitting == Splitting::Two {
            return Err(BcdError::InvalidArchitecture(
                "two-layer residual branches (branch = pair) train with the three-splitting; \
                 the two-splitting takes single-layer branches"
                    .into(),
            ));
        }
        if !arch.is_convolutional() {
            return Ok(());
        }
        let unsupported = if config.splitting == Splitting::Two {
            Some("the two-splitting")
        } else if config.v_constraint != VConstraint::None {
            Some("a constraint on the hidden activations")
        } else {
            None
        };
        match unsupported {
            Some(what) => Err(BcdError::InvalidArchitecture(format!(
                "{what} is not available for networks with image layers; use the \
                 three-splitting without v_constraint"
            ))),
            None => Ok(()),
        }
    }

    /// The checks of this rank's rows: shapes, finite values, the weights' device.
    fn check_data(layers: &Network, x: &Tensor, y: &Tensor) -> Result<()> {
        let arch = layers.architecture();
        let (n, d0) = x.dims2().map_err(|_| BcdError::ShapeMismatch {
            name: "inputs".into(),
            expected: vec![0, arch.input_dim()],
            got: x.dims().to_vec(),
        })?;
        for (name, t, width) in [
            ("inputs", x, arch.input_dim()),
            ("targets", y, arch.output_dim()),
        ] {
            if t.dims() != [n, width] || n == 0 {
                return Err(BcdError::ShapeMismatch {
                    name: name.into(),
                    expected: vec![n.max(1), width],
                    got: t.dims().to_vec(),
                });
            }
            let bad = match kernels::fused(t) {
                true => kernels::sum_map([t], |[v]| if v.is_finite() { 0.0 } else { 1.0 })?,
                // 0·x is NaN exactly for NaN and infinite x, and NaN ≠ NaN.
                false => {
                    let d = t.affine(0.0, 0.0)?;
                    kernels::sum_f64(&d.ne(&d)?)?
                }
            };
            if bad > 0.0 {
                return Err(BcdError::InvalidData {
                    name: name.into(),
                    reason: format!("{bad} entries are NaN or infinite"),
                });
            }
        }
        debug_assert_eq!(d0, arch.input_dim());
        for (name, w) in layers.names().iter().zip(layers.weight_vars()) {
            if !w.device().same_device(x.device()) {
                return Err(BcdError::Device {
                    device: format!("{:?}", w.device().location()),
                    reason: format!(
                        "{name}.weight is not on the data's device {:?}",
                        x.device().location()
                    ),
                });
            }
        }
        Ok(())
    }

    /// Records `Z_l` as formed by a constructor, the way the configured formulation does.
    fn record_formed(&mut self, l: usize, z: Tensor) -> Result<()> {
        match self.config.splitting {
            Splitting::Three => self.record_three(l, z),
            Splitting::Two => self.record_product(l, z),
        }
    }

    /// `Ṽ W̃_lᵀ` for layer `l`'s current weights.
    pub(crate) fn affine(&self, l: usize, input: &Tensor) -> Result<Tensor> {
        let arch = self.layers.architecture();
        conv::affine(arch, l, input, self.layers.weight(l), self.layers.bias(l))
    }

    /// Input of layer `l`: `X` or `V_l` (0-based).
    pub(crate) fn input(&self, l: usize) -> &Tensor {
        if l == 0 {
            &self.x
        } else {
            &self.state.v[l - 1]
        }
    }

    /// The skip `S_l` of residual layer `l` (its input, or its branch's), `None` for others.
    pub(crate) fn skip(&self, l: usize) -> Option<&Tensor> {
        let j = self.layers.architecture().skip_source(l)?;
        Some(self.input(j))
    }

    /// Exact `W̃_l ← argmin λ/2‖W‖² + c/2‖T − Ṽ_{l−1}W̃ᵀ‖² + α/2‖W̃ − W̃^old‖²`, given the
    /// residual `T − Ṽ_{l−1}W̃^oldᵀ` of its target at the current weights (the normal equations
    /// are solved for the step, from the residual's sums: `blocks::solve_weights`); returns
    /// the step's `‖ΔW‖² + ‖Δb‖²`.
    pub(crate) fn exact_weights(
        &mut self,
        l: usize,
        residual: &Tensor,
        coupling: f64,
    ) -> Result<f64> {
        // An image layer's problem is posed on its input's patches (`crate::conv`).
        let (design, residual) =
            conv::weight_problem(self.layers.architecture(), l, self.input(l), residual)?;
        // The input Gram never changes: a copy of the cached one ((d_0+1)² floats).
        let gram = match l {
            0 => self.x_gram.clone(),
            _ => AugmentedGram::new(&design)?.summed(&*self.comm),
        };
        let pw = PenaltyWeights {
            coupling,
            alpha: self.config.alpha,
            lambda: self.config.lambda,
        };
        let (w_shape, b_old) = (self.layers.weight(l).shape().clone(), self.layers.bias(l));
        // A convolution's kernel `[out, C, k, k]` as the matrix `[out, C·k²]` (no copy).
        let w_old = &self.layers.weight(l).reshape((w_shape.dims()[0], ()))?;
        let block = format!("W_{}", l + 1);
        let mut sums = NormalSums::new(gram, &design, &residual)?;
        sums.sum_cross(&*self.comm);
        let prior = self.weight_prior.get(l).and_then(Option::as_ref);
        let old = blocks::augmented_old(w_old, b_old)?;
        let device = w_old.device();
        // Solved on rank 0 and broadcast: every rank holds the same weights.
        let solved = comm::from_root(&*self.comm, &[w_old, b_old], || {
            let (w, b) = match prior {
                // The memory holds sums of earlier targets: taken about the same weights.
                Some(prior) => {
                    let mut total = prior.about(&old);
                    total.decay_add(self.prior_scale, &sums);
                    blocks::solve_weights(&total, &old, pw, &block, device)?
                }
                None => blocks::solve_weights(&sums, &old, pw, &block, device)?,
            };
            Ok(vec![w, b])
        })?;
        let (w, b) = (solved[0].reshape(w_shape)?, solved[1].clone());
        if !self.weight_prior.is_empty() {
            self.last_sums[l] = Some(sums.absolute(&old));
        }
        self.set_layer(l, &w, &b)
    }

    /// `T − Z_l` for the target `T` a weight block is about to fit and `Z_l`, layer `l`'s
    /// product at the current weights: `z` where the caller still holds it, else formed anew.
    pub(crate) fn residual(&self, l: usize, target: &Tensor, z: Option<Tensor>) -> Result<Tensor> {
        match z {
            Some(z) => kernels::sub(target, &z),
            None => {
                let mut r = self.product_buffer(l)?;
                r.update([target], |z, [t]| t - z)?;
                Ok(r.into_tensor()?)
            }
        }
    }

    /// Adds `scale·prior[l]` (sums over earlier rows) to the normal equations of every exact
    /// weight block `l`, and records the sums of this data each such block solves.
    pub(crate) fn with_weight_prior(mut self, prior: Vec<Option<NormalSums>>, scale: f64) -> Self {
        self.last_sums = vec![None; prior.len()];
        self.weight_prior = prior;
        self.prior_scale = scale;
        self
    }

    /// Hands back the prior and, per layer, the normal sums of this data the last exact update
    /// of its weight block solved.
    pub(crate) fn take_weight_sums(
        &mut self,
    ) -> (Vec<Option<NormalSums>>, Vec<Option<NormalSums>>) {
        (
            std::mem::take(&mut self.weight_prior),
            std::mem::take(&mut self.last_sums),
        )
    }

    /// Writes new weights into layer `l`'s `Var`s; returns `‖ΔW‖² + ‖Δb‖²`.
    pub(crate) fn set_layer(&mut self, l: usize, w: &Tensor, b: &Tensor) -> Result<f64> {
        let (w_old, b_old) = (self.layers.weight(l), self.layers.bias(l));
        let dx = kernels::sq_dist(w, w_old)? + kernels::sq_dist(b, b_old)?;
        self.layers.weight_vars()[l].set(w)?;
        self.layers.bias_vars()[l].set(b)?;
        Ok(dx)
    }

    /// Replaces a lifted block and returns `‖new − old‖²`.
    pub(crate) fn replace(slot: &mut Tensor, new: Tensor) -> Result<f64> {
        let dx = kernels::sq_dist(&new, slot)?;
        *slot = new;
        Ok(dx)
    }

    /// Records the weights as the optimizer leaves them (see `seen`).
    fn remember_weights(&mut self) -> Result<()> {
        self.seen = (0..self.layers.len())
            .map(|l| Ok((self.layers.weight(l).copy()?, self.layers.bias(l).copy()?)))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// [`BcdError::WeightsChanged`] naming the first layer whose weight or bias differs from
    /// what the optimizer last left there.
    fn check_weights_unchanged(&self) -> Result<()> {
        let differs = |a: &Tensor, b: &Tensor| -> Result<bool> {
            Ok(a.ne(b)?.flatten_all()?.max(0)?.to_scalar::<u8>()? != 0)
        };
        for (l, (w, b)) in self.seen.iter().enumerate() {
            if differs(self.layers.weight(l), w)? || differs(self.layers.bias(l), b)? {
                return Err(BcdError::WeightsChanged {
                    layer: self.layers.names()[l].clone(),
                });
            }
        }
        Ok(())
    }

    /// One full backward Gauss–Seidel sweep over all blocks (of the configured splitting).
    ///
    /// The lifted state and the kept products were formed from the weights the optimizer last
    /// left in the network's `Var`s: if they were changed since (a `VarMap::load`, a head fit,
    /// another optimizer on the same `Var`s), it returns [`BcdError::WeightsChanged`] and
    /// changes nothing; build a new optimizer from the network then.
    pub fn step(&mut self) -> Result<StepReport> {
        let start = Instant::now();
        comm::agree(&*self.comm, self.check_weights_unchanged())?;
        self.cg_reports.clear();
        let change = match self.config.splitting {
            Splitting::Three => self.sweep_three()?,
            Splitting::Two => self.sweep_two()?,
        };
        self.state.iteration += 1;
        self.remember_weights()?;
        let [lifted] = comm::sum(&*self.comm, [change.lifted]);

        // The weights are those just remembered: no need to compare them again.
        let objective = self.current_objective()?;
        if let Some(part) = objective.non_finite_part() {
            return Err(BcdError::NonFinite {
                iteration: self.state.iteration,
                what: format!("the objective's {part}"),
            });
        }
        Ok(StepReport {
            iteration: self.state.iteration,
            objective,
            step_sq_norm: lifted + change.weights,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// `Φ` at the current blocks, by parts (`Φ₂` in the two-splitting). Errors like
    /// [`Self::step`] when the weights were changed outside the optimizer's steps.
    pub fn objective(&self) -> Result<ObjectiveParts> {
        comm::agree(&*self.comm, self.check_weights_unchanged())?;
        self.current_objective()
    }

    /// `Φ` at the current blocks, the weights known to be the optimizer's own.
    fn current_objective(&self) -> Result<ObjectiveParts> {
        let (weights, _) = self.layers.tensors();
        let lifted = Lifted {
            y: &self.y,
            x: &self.x,
            v: &self.state.v,
            weights: &weights,
            arch: self.layers.architecture(),
        };
        let mut parts = match self.config.splitting {
            Splitting::Three => three_split::objective::evaluate(
                &lifted,
                &self.state.u,
                &self.pre_sq,
                &self.config,
            )?,
            Splitting::Two => {
                let z = (0..self.kept_products.len())
                    .map(|l| self.product(l))
                    .collect::<Result<Vec<_>>>()?;
                two_split::objective::evaluate(&lifted, &z, &self.config)?
            }
        };
        // Every part but the regulariser is a sum over rows.
        [
            parts.loss,
            parts.activation_penalty,
            parts.preactivation_penalty,
        ] = comm::sum(
            &*self.comm,
            [
                parts.loss,
                parts.activation_penalty,
                parts.preactivation_penalty,
            ],
        );
        Ok(parts)
    }

    /// The conjugate-gradient solves of the last sweep (one per activation block under an image
    /// layer, from the output back; empty for a fully connected network).
    pub fn cg_reports(&self) -> &[CgReport] {
        &self.cg_reports
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
        self.layers.architecture()
    }

    /// Number of training samples `N` (over all ranks).
    pub fn num_samples(&self) -> usize {
        self.total_rows
    }

    /// The ranks that share the rows.
    pub fn communicator(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    /// The training inputs `X` of this rank's rows, `[N_r, d_0]`.
    pub fn inputs(&self) -> &Tensor {
        &self.x
    }

    /// The network's outputs (a plain forward pass with the current weights, not the lifted
    /// `V_L`) on the training inputs. The first layer's product `X̃W̃_1ᵀ` is the kept `Z_1`, so
    /// this costs one product fewer than [`Network::logits`](crate::Network::logits) on the same
    /// inputs, with the same result.
    pub fn training_logits(&self) -> Result<Tensor> {
        let (weights, biases) = self.layers.tensors();
        let h = layer_output(self.layers.architecture(), 0, &self.product(0)?, &self.x)?;
        crate::network::forward::forward_from(self.layers.architecture(), &weights, &biases, 1, h)
    }

    /// Accuracy of the network (plain forward pass) on the training inputs against `labels`
    /// (this rank's rows; the accuracy is over all ranks' rows), in blocks of rows, reusing the
    /// kept `Z_1` as [`Self::training_logits`] does.
    pub fn training_accuracy(&self, labels: &Tensor) -> Result<f64> {
        let (weights, biases) = self.layers.tensors();
        let correct = crate::network::forward::blocked_correct(
            self.layers.architecture(),
            &weights,
            &biases,
            &self.x,
            self.kept_products[0].as_ref(),
            labels,
        )?;
        let [correct] = comm::sum(&*self.comm, [correct]);
        Ok(correct / self.total_rows as f64)
    }

    /// The layers being trained (their `Var`s are updated in place by [`Self::step`]).
    pub fn layers(&self) -> &Network {
        &self.layers
    }

    /// The weight `Var`s `W_1 … W_L` (updated in place by [`Self::step`]).
    pub fn weight_vars(&self) -> &[Var] {
        self.layers.weight_vars()
    }

    /// The bias `Var`s `b_1 … b_L`.
    pub fn bias_vars(&self) -> &[Var] {
        self.layers.bias_vars()
    }
}
