//! Mini-batch BCD: the same exact sweeps, on one batch of rows at a time.
//!
//! Each epoch visits the training rows in a fresh order (a permutation drawn from the seed and
//! the epoch number alone, so that a run resumed at an epoch boundary draws the same batches).
//! For each batch `(X_b, Y_b)` of `B` rows the lifted `U_i`, `V_i` are set by a forward pass
//! with the current weights, and `k` sweeps of the configured formulation run on the batch
//! problem
//!
//! ```text
//! Φ_b(W, U, V) = the objective of docs/algorithm.md over the rows of the batch,
//! ```
//!
//! with the closed forms of the full-batch method unchanged. The first sweep's proximal terms
//! `α/2‖W̃_i − W̃_i^old‖²` anchor the weights at those the batch started from, so what earlier
//! batches taught is kept unless this batch pays for changing it. Each batch problem is an
//! instance of the paper's objective, so its exact sweeps never increase it: every
//! [`BatchReport`] carries `Φ_b` before and after its sweeps.
//!
//! **Gram memory** (optional, `gram_decay = β ∈ (0, 1)`): an exact weight block then also sees
//! the rows of earlier batches through decayed sums of its normal equations,
//!
//! ```text
//! (ρ(β·G + ṼᵀṼ) + D) W̃ᵀ = ρ(β·C + ṼᵀT) + αW̃^oldᵀ,    G ← β·G + ṼᵀṼ,  C ← β·C + ṼᵀT after each batch,
//! ```
//!
//! a recursive least-squares fit over roughly the last `1/(1 − β)` batches. The weight blocks
//! then minimise `Φ_b` plus that fixed quadratic in `W̃`, so it is their sum that never
//! increases; `Φ_b` alone may. The two-splitting's hidden weight blocks (prox-linear steps) do
//! not use it.
//!
//! **Inertia** (optional, `inertia = μ ∈ [0, 1)`): each batch after the first starts from the
//! weights extrapolated along the last batch's move,
//!
//! ```text
//! W̃ ← W̃_k + μ(W̃_k − W̃_{k−1}),     W̃_k the weights after batch k,
//! ```
//!
//! as inertial block coordinate methods do (iPALM, Pock & Sabach, 2016). The batch's forward
//! pass, its `Φ_b` before the sweeps and the proximal anchors all start from the extrapolated
//! weights, so every batch's sweeps still never increase `Φ_b`. One sweep from a forward pass
//! moves the hidden layers little (each weight block fits targets that the penalties have
//! moved only part of the way), and over successive batches those moves point the same way;
//! the extrapolation lets them add up. It costs one copy of the weights.
//!
//! **Step decay** (optional, `alpha_growth = g > 0`): the proximal weight `α` of the weight
//! blocks (`BcdConfig::alpha`; the two-splitting's activation steps use it too) grows by `g` at
//! every epoch, epoch `e` (from 0) using `α_e = α·g^e`, while the lifted blocks keep theirs
//! (`BcdConfig::alpha_lifted`, or the initial `α`). `α` is the inverse of a step size
//! here: each batch problem is still an instance of the objective (with `α_e`), so its sweeps
//! never increase `Φ_b`; later batches move the weights less, and the fit stops following the
//! batch to batch noise of the first epochs, as a decaying learning rate does for SGD.
//!
//! **Over ranks** (`crate::comm`): each rank holds its own rows. Epoch `e` has
//! `K = ⌈N/B⌉` batches; rank `r` visits its rows in the order the epoch's permutation of all
//! `N` rows gives them and puts the `b`-th of `K` near-equal consecutive parts of that order in
//! batch `b`. A batch thus has about `B` rows, about `B·N_r/N` of them from rank `r`, and every
//! rank has rows in every batch (which needs `N_r ≥ K`). Sums over the batch are taken over the
//! ranks as in full-batch sweeps; with one rank the batches are the permutation's consecutive
//! runs of `B` rows.
//!
//! Nothing of size `N × d_i` is allocated beside the data: the lifted state, the kept products
//! and the solves are those of one batch, `O(B·Σd_i + Σd_i·d_{i−1})` (the memory adds
//! `Σ(d_{i−1}+1)(d_{i−1}+1+d_i)` `f64`s).

use std::time::Instant;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

/// The sums of a weight block's normal equations (`ṼᵀṼ` and `ṼᵀT`, `f64`): the form in which
/// the Gram memory keeps earlier batches.
pub use crate::blocks::NormalSums;
use crate::comm::{self, Communicator, SingleProcess};
use crate::config::BcdConfig;
use crate::conv::CgReport;
use crate::error::{BcdError, Result};
use crate::network::Network;
use crate::objective::ObjectiveParts;
use crate::optimizer::{sync_weights, BcdOptimizer};

/// Settings of the mini-batch mode: [`MiniBatchOptions::default`] and its setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MiniBatchOptions {
    /// Rows per batch `B` (the last batch of an epoch may be smaller). Default 1024.
    pub batch_size: usize,
    /// Exact sweeps `k` on each batch. Default 1.
    pub inner_sweeps: usize,
    /// Seed of the order in which each epoch visits the rows. Default 0.
    pub seed: u64,
    /// Decay `β` of the weight blocks' memory of earlier batches, in `[0, 1)`; 0 (the default)
    /// keeps none.
    #[serde(default)]
    pub gram_decay: f64,
    /// Extrapolation `μ` of the weights along the previous batch's move, in `[0, 1)`; 0 (the
    /// default) starts each batch from the weights the last one ended with.
    #[serde(default)]
    pub inertia: f64,
    /// Growth `g` of the weight blocks' proximal weight per epoch (epoch `e` uses `α·g^e`);
    /// 1 (the default) keeps `α`.
    #[serde(default = "unit")]
    pub alpha_growth: f64,
}

/// The default of [`MiniBatchOptions::alpha_growth`] (also for checkpoints written before it).
fn unit() -> f64 {
    1.0
}

impl Default for MiniBatchOptions {
    fn default() -> Self {
        Self {
            batch_size: 1024,
            inner_sweeps: 1,
            seed: 0,
            gram_decay: 0.0,
            inertia: 0.0,
            alpha_growth: 1.0,
        }
    }
}

crate::config::setters!(MiniBatchOptions {
    batch_size: usize,
    inner_sweeps: usize,
    seed: u64,
    gram_decay: f64,
    inertia: f64,
    alpha_growth: f64,
});

/// What the sweeps on one batch did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    /// The epoch this batch belongs to (0-based).
    pub epoch: usize,
    /// Batches done since the start of training, this one included.
    pub batches: usize,
    /// Rows in the batch (over all ranks).
    pub rows: usize,
    /// `Φ_b` after the forward pass that set the batch's lifted state.
    pub before: ObjectiveParts,
    /// `Φ_b` after the batch's sweeps.
    pub after: ObjectiveParts,
    /// `Φ_b`'s total after each of the batch's sweeps, in order (the last is `after`'s).
    pub sweep_totals: Vec<f64>,
    /// `‖x^k − x^{k−1}‖²` summed over the batch's sweeps.
    pub step_sq_norm: f64,
    /// Wall-clock seconds for the batch (forward pass and sweeps).
    pub seconds: f64,
    /// The conjugate-gradient solves of the batch's last sweep (image layers only).
    pub cg: Vec<CgReport>,
}

impl BatchReport {
    /// The least relative decrease of `Φ_b` over any one of the batch's sweeps,
    /// `(Φ_before − Φ_after)/|Φ_before|` (negative where a sweep raised it). Exact sweeps never
    /// raise `Φ_b`, so anything below round-off signals a fault, even when the batch's later
    /// sweeps made up for it.
    pub fn least_decrease(&self) -> f64 {
        let mut previous = self.before.total();
        let mut least = f64::INFINITY;
        for &total in &self.sweep_totals {
            least = least.min((previous - total) / previous.abs().max(f64::MIN_POSITIVE));
            previous = total;
        }
        least
    }
}

/// Mini-batch BCD over the `Var`s of a model's [`Network`], which it updates in place.
///
/// ```
/// use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
/// use candle_bcd::{Activation, Architecture, BcdConfig, Network, WeightInit};
/// use candle_core::{Device, Tensor};
/// use candle_nn::VarMap;
/// # fn main() -> candle_bcd::Result<()> {
/// let arch = Architecture::mlp(&[4, 8, 3], Activation::Relu)?;
/// let varmap = VarMap::new();
/// Network::init(&arch, &varmap, WeightInit::Official, 0, &Device::Cpu)?;
/// let layers = Network::of_architecture(&varmap, &arch)?;
/// let options = MiniBatchOptions::default().batch_size(16);
/// let mut bcd = MiniBatchBcd::new(&layers, BcdConfig::default(), options)?;
/// let x = Tensor::randn(0f32, 1.0, (40, 4), &Device::Cpu)?;
/// let y = Tensor::randn(0f32, 1.0, (40, 3), &Device::Cpu)?;
/// bcd.epoch(&x, &y, |batch| {
///     assert!(batch.after.total() <= batch.before.total() * (1.0 + 1e-6));
///     Ok(())
/// })?;
/// assert_eq!((bcd.epochs_done(), bcd.batches_done()), (1, 3));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MiniBatchBcd {
    layers: Network,
    config: BcdConfig,
    options: MiniBatchOptions,
    epochs: usize,
    batches: usize,
    /// The decayed normal sums of every layer's exact weight block (with `gram_decay > 0`).
    memory: Vec<Option<NormalSums>>,
    /// The weights and biases the last batch started from, before extrapolation (with
    /// `inertia > 0`, once a batch is done).
    previous: Option<Vec<(Tensor, Tensor)>>,
    /// The ranks that share the rows.
    comm: Arc<dyn Communicator>,
}

impl MiniBatchBcd {
    /// Mini-batch BCD on `layers` with the hyperparameters `config`; errors name an invalid
    /// setting.
    pub fn new(layers: &Network, config: BcdConfig, options: MiniBatchOptions) -> Result<Self> {
        config.validate()?;
        for (name, value) in [
            ("batch_size", options.batch_size),
            ("inner_sweeps", options.inner_sweeps),
        ] {
            if value == 0 {
                return Err(BcdError::InvalidHyperparameter {
                    name,
                    value: 0.0,
                    reason: "must be at least 1",
                });
            }
        }
        for (name, value) in [
            ("gram_decay", options.gram_decay),
            ("inertia", options.inertia),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(BcdError::InvalidHyperparameter {
                    name,
                    value,
                    reason: "must be in [0, 1)",
                });
            }
        }
        crate::config::check("alpha_growth", options.alpha_growth, true)?;
        Ok(Self {
            memory: vec![None; layers.len()],
            previous: None,
            layers: layers.clone(),
            config,
            options,
            epochs: 0,
            batches: 0,
            comm: Arc::new(SingleProcess),
        })
    }

    /// Runs as one rank of a data-parallel run (every rank calls it, and then [`Self::epoch`]
    /// with its own rows): the weights are set to rank 0's.
    pub fn with_communicator(mut self, comm: Arc<dyn Communicator>) -> Result<Self> {
        sync_weights(&self.layers, &*comm)?;
        self.comm = comm;
        Ok(self)
    }

    /// The ranks that share the rows.
    pub fn communicator(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    /// Continues a run after `epochs` completed epochs of `batches` batches in all (from a
    /// checkpoint): the next epoch draws the order an uninterrupted run would.
    pub fn resume_at(mut self, epochs: usize, batches: usize) -> Self {
        self.epochs = epochs;
        self.batches = batches;
        self
    }

    /// Continues with the weight blocks' memory of earlier batches (from a checkpoint); one
    /// entry per layer.
    pub fn with_memory(mut self, memory: Vec<Option<NormalSums>>) -> Result<Self> {
        if memory.len() != self.layers.len() {
            return Err(BcdError::StateMismatch(format!(
                "{} layers of Gram memory for {} layers",
                memory.len(),
                self.layers.len()
            )));
        }
        self.memory = memory;
        Ok(self)
    }

    /// Continues with the inertia's record of the weights the last batch started from (from a
    /// checkpoint): one `(weight, bias)` pair per layer, shaped as the layers'.
    pub fn with_previous_weights(mut self, previous: Vec<(Tensor, Tensor)>) -> Result<Self> {
        let (weights, biases) = (self.layers.weight_vars(), self.layers.bias_vars());
        if previous.len() != weights.len() {
            return Err(BcdError::StateMismatch(format!(
                "{} layers of previous weights for {} layers",
                previous.len(),
                weights.len()
            )));
        }
        for (l, ((w, b), (wv, bv))) in previous.iter().zip(weights.iter().zip(biases)).enumerate() {
            if w.dims() != wv.dims() || b.dims() != bv.dims() {
                return Err(BcdError::StateMismatch(format!(
                    "previous weights of layer {l}: shapes {:?} and {:?}, the layer's {:?} and {:?}",
                    w.dims(),
                    b.dims(),
                    wv.dims(),
                    bv.dims()
                )));
            }
        }
        self.previous = Some(previous);
        Ok(self)
    }

    /// The weights and biases the last batch started from, before extrapolation (`None`
    /// without inertia or before the first batch).
    pub fn previous_weights(&self) -> Option<&[(Tensor, Tensor)]> {
        self.previous.as_deref()
    }

    /// The weight blocks' memory of earlier batches, one entry per layer.
    pub fn memory(&self) -> &[Option<NormalSums>] {
        &self.memory
    }

    /// Completed epochs.
    pub fn epochs_done(&self) -> usize {
        self.epochs
    }

    /// Batches done since the start of training.
    pub fn batches_done(&self) -> usize {
        self.batches
    }

    /// The hyperparameters.
    pub fn config(&self) -> &BcdConfig {
        &self.config
    }

    /// The mini-batch settings.
    pub fn options(&self) -> &MiniBatchOptions {
        &self.options
    }

    /// The layers being trained.
    pub fn layers(&self) -> &Network {
        &self.layers
    }

    /// The order in which epoch `epoch` visits `n` rows: a permutation drawn from the seed and
    /// the epoch number only.
    pub fn row_order(&self, epoch: usize, n: usize) -> Vec<u32> {
        let mix = (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.options.seed ^ mix);
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut rng);
        order
    }

    /// `k` exact sweeps on one batch (inputs `[B, d_0]`, targets `[B, d_L]`), its lifted state
    /// set by a forward pass with the current weights.
    pub fn step_batch(&mut self, x: Tensor, y: Tensor) -> Result<BatchReport> {
        let start = Instant::now();
        // A growth over many epochs may take α past the range of an `f64`: named, not run.
        let config = self.epoch_config();
        config.validate()?;
        if self.options.inertia > 0.0 {
            self.extrapolate()?;
        }
        let (layers, comm) = (&self.layers, self.comm.clone());
        // Every rank already holds the same weights (the extrapolation is the same on each).
        let mut opt = BcdOptimizer::from_forward_pass(layers, x, y, config, comm, false)?;
        let rows = opt.num_samples();
        let beta = self.options.gram_decay;
        if beta > 0.0 {
            let memory = std::mem::replace(&mut self.memory, vec![None; self.layers.len()]);
            opt = opt.with_weight_prior(memory, beta);
        }
        let before = opt.objective()?;
        let mut after = before;
        let mut step_sq_norm = 0.0;
        let mut sweep_totals = Vec::with_capacity(self.options.inner_sweeps);
        for _ in 0..self.options.inner_sweeps {
            let report = opt.step()?;
            after = report.objective;
            sweep_totals.push(after.total());
            step_sq_norm += report.step_sq_norm;
        }
        if beta > 0.0 {
            let (memory, batch) = opt.take_weight_sums();
            self.memory = memory
                .into_iter()
                .zip(batch)
                .map(|(m, b)| match (m, b) {
                    (Some(mut m), Some(b)) => {
                        m.decay_add(beta, &b);
                        Some(m)
                    }
                    (m, b) => b.or(m),
                })
                .collect();
        }
        self.batches += 1;
        Ok(BatchReport {
            epoch: self.epochs,
            batches: self.batches,
            rows,
            before,
            after,
            sweep_totals,
            step_sq_norm,
            seconds: start.elapsed().as_secs_f64(),
            cg: opt.cg_reports().to_vec(),
        })
    }

    /// The hyperparameters of the current epoch's batches: the weight blocks' `α` grown by
    /// `alpha_growth` per epoch, the lifted blocks' proximal weight kept.
    pub fn epoch_config(&self) -> BcdConfig {
        let mut config = self.config.clone();
        let growth = self.options.alpha_growth;
        if growth != 1.0 {
            config.alpha_lifted = Some(config.lifted_prox());
            config.alpha *= growth.powf(self.epochs as f64);
        }
        config
    }

    /// Moves the weights `W̃_k` to `W̃_k + μ(W̃_k − W̃_{k−1})` and records `W̃_k`.
    fn extrapolate(&mut self) -> Result<()> {
        let mu = self.options.inertia;
        let params = self
            .layers
            .weight_vars()
            .iter()
            .zip(self.layers.bias_vars());
        // `copy`: a `Var`'s tensor shares its storage, which `set` overwrites.
        let current = params
            .clone()
            .map(|(w, b)| Ok((w.as_tensor().copy()?, b.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        if let Some(previous) = &self.previous {
            for ((wv, bv), ((w, b), (w_old, b_old))) in params.zip(current.iter().zip(previous)) {
                wv.set(&(w + ((w - w_old)? * mu)?)?)?;
                bv.set(&(b + ((b - b_old)? * mu)?)?)?;
            }
        }
        self.previous = Some(current);
        Ok(())
    }

    /// One epoch over inputs `x` (`[N, d_0]`) and targets `y` (`[N, d_L]`) in shuffled batches
    /// (this rank's rows, over ranks); `on_batch` sees every batch's report (and may stop the
    /// epoch with an error). [`crate::trainer::train`] runs the same batches through
    /// [`MiniBatchRun`](crate::trainer::MiniBatchRun), with evaluation, checkpoints and limits.
    pub fn epoch(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        mut on_batch: impl FnMut(&BatchReport) -> Result<()>,
    ) -> Result<()> {
        self.check_targets(x, y)?;
        let mut pending = std::collections::VecDeque::new();
        loop {
            let (report, epoch_end) = self.next_batch(x, y, &mut pending)?;
            on_batch(&report)?;
            if epoch_end {
                return Ok(());
            }
        }
    }

    /// Checks that targets `y` have a row for every row of inputs `x`.
    pub(crate) fn check_targets(&self, x: &Tensor, y: &Tensor) -> Result<()> {
        let n = x.dim(0)?;
        if y.dim(0)? != n {
            return Err(BcdError::ShapeMismatch {
                name: "targets".into(),
                expected: vec![n, self.layers.architecture().output_dim()],
                got: y.dims().to_vec(),
            });
        }
        Ok(())
    }

    /// Runs the next batch of the current epoch (`pending` holds the epoch's batches not yet
    /// run; an empty one starts the epoch); returns its report and whether it ended the epoch.
    pub(crate) fn next_batch(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        pending: &mut std::collections::VecDeque<Vec<u32>>,
    ) -> Result<(BatchReport, bool)> {
        if pending.is_empty() {
            *pending = self.batches_of_epoch(x.dim(0)?)?.into();
        }
        let rows = pending.pop_front().unwrap_or_default();
        let idx = Tensor::new(rows.as_slice(), x.device())?;
        let report = self.step_batch(x.index_select(&idx, 0)?, y.index_select(&idx, 0)?)?;
        let epoch_end = pending.is_empty();
        if epoch_end {
            self.epochs += 1;
        }
        Ok((report, epoch_end))
    }

    /// The batches of an epoch over this rank's `n` rows (`⌈N/B⌉` over all ranks' `N`).
    pub(crate) fn batches_per_epoch(&self, n: usize) -> Result<usize> {
        let [total] = comm::sum(&*self.comm, [n as f64]);
        Ok((total as usize).div_ceil(self.options.batch_size))
    }

    /// The rows (of this rank's `n`) of each batch of the next epoch (see the module
    /// documentation).
    fn batches_of_epoch(&self, n: usize) -> Result<Vec<Vec<u32>>> {
        let b = self.options.batch_size;
        let (rank, size) = (self.comm.rank(), self.comm.size());
        if size == 1 {
            let order = self.row_order(self.epochs, n);
            return Ok(order.chunks(b).map(<[u32]>::to_vec).collect());
        }
        let mut counts = vec![0f64; size];
        counts[rank] = n as f64;
        self.comm.sum_f64(&mut counts);
        let counts: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
        let (total, first): (usize, usize) = (counts.iter().sum(), counts[..rank].iter().sum());
        let k = total.div_ceil(b);
        if counts.iter().any(|&c| c < k) {
            return Err(BcdError::InvalidHyperparameter {
                name: "batch_size",
                value: b as f64,
                reason: "too small for the ranks: every rank needs a row in each of the epoch's ⌈N/B⌉ batches",
            });
        }
        let mine = first as u32..(first + n) as u32;
        let order: Vec<u32> = self
            .row_order(self.epochs, total)
            .into_iter()
            .filter(|i| mine.contains(i))
            .map(|i| i - mine.start)
            .collect();
        Ok((0..k)
            .map(|batch| order[comm::share(n, batch, k)].to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(before: f64, sweep_totals: Vec<f64>) -> BatchReport {
        let parts = |loss| ObjectiveParts {
            loss,
            regularizer: 0.0,
            activation_penalty: 0.0,
            preactivation_penalty: 0.0,
        };
        BatchReport {
            epoch: 0,
            batches: 1,
            rows: 1,
            before: parts(before),
            after: parts(*sweep_totals.last().unwrap()),
            sweep_totals,
            step_sq_norm: 0.0,
            seconds: 0.0,
            cg: Vec::new(),
        }
    }

    /// A rise in an inner sweep shows even when the batch as a whole fell; the least decrease
    /// is that of the worst sweep, relative to where it started.
    #[test]
    fn least_decrease_names_the_worst_sweep() {
        let r = report(10.0, vec![11.0, 8.0]);
        assert!(r.after.total() < r.before.total());
        assert!((r.least_decrease() + 0.1).abs() < 1e-12);
        let r = report(10.0, vec![8.0, 6.0]);
        assert!((r.least_decrease() - 0.2).abs() < 1e-12);
    }
}
