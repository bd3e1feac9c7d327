//! What [`train`](super::train) drives: a [`Method`] advances the training one step at a time.
//!
//! | method | step | iteration | objective it reports |
//! |---|---|---|---|
//! | [`BcdOptimizer`] (full batch) | one sweep | one sweep | `Φ` over all rows |
//! | [`MiniBatchRun`] | one batch's sweeps | one epoch | `Φ_b` of the batch, before and after each sweep |
//!
//! Both report monotone objectives: `Φ` never rises from sweep to sweep, `Φ_b` never rises over
//! any of a batch's sweeps (without Gram memory, whose weight blocks minimise `Φ_b` plus a fixed
//! quadratic).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use candle_core::Tensor;
use serde::Serialize;

use crate::checkpoint;
use crate::comm::Communicator;
use crate::conv::CgReport;
use crate::error::Result;
use crate::minibatch::MiniBatchBcd;
use crate::network::Network;
use crate::objective::ObjectiveParts;
use crate::optimizer::{BcdOptimizer, StepReport};

/// Where a mini-batch step stands.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BatchPosition {
    /// The epoch the batch belongs to (1-based).
    pub epoch: usize,
    /// Batches done since the start of training, this one included.
    pub batches: usize,
    /// Rows in the batch (over all ranks).
    pub rows: usize,
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct Advance {
    /// The step's report: `iteration` counts steps (sweeps or batches), `objective` is after
    /// the step.
    pub step: StepReport,
    /// The objective the step started from when it is not the previous step's (a batch's `Φ_b`
    /// after its forward pass); `None` for a sweep.
    pub before: Option<ObjectiveParts>,
    /// The least relative decrease over the step's sweeps when it reports them one by one (a
    /// batch's inner sweeps); `None` where the step is one sweep, measured by `before`.
    pub least_decrease: Option<f64>,
    /// Whether the step's objective must not rise (see the module documentation).
    pub monotone: bool,
    /// The batch, for a mini-batch step.
    pub batch: Option<BatchPosition>,
    /// Whether this step completed an iteration (every sweep; the last batch of an epoch).
    pub iteration_end: bool,
    /// The conjugate-gradient solves of the step's (last) sweep (image layers only).
    pub cg: Vec<CgReport>,
}

/// A training method that [`train`](super::train) drives one step at a time.
pub trait Method {
    /// The network being trained (its `Var`s are updated in place).
    fn network(&self) -> &Network;
    /// The ranks that share the rows.
    fn communicator(&self) -> &Arc<dyn Communicator>;
    /// This rank's training inputs.
    fn inputs(&self) -> &Tensor;
    /// `Φ` over all rows before the next step, when the method keeps it (full batch).
    fn objective(&self) -> Result<Option<ObjectiveParts>>;
    /// Completed iterations (sweeps or epochs).
    fn iterations_done(&self) -> usize;
    /// Steps per iteration (1, or the batches of an epoch).
    fn steps_per_iteration(&self) -> Result<usize>;
    /// Runs one step.
    fn advance(&mut self) -> Result<Advance>;
    /// Accuracy of the network on all training rows (this rank's `labels`, over all ranks).
    fn training_accuracy(&self, labels: &Tensor) -> Result<f64>;
    /// Writes a checkpoint of the run at the end of an iteration.
    fn save(&self, path: &Path) -> Result<()>;
    /// Whether a sweep's relative decrease of `Φ` over all rows exists to test a tolerance on.
    fn has_global_objective(&self) -> bool;
}

impl Method for BcdOptimizer {
    fn network(&self) -> &Network {
        self.layers()
    }
    fn communicator(&self) -> &Arc<dyn Communicator> {
        BcdOptimizer::communicator(self)
    }
    fn inputs(&self) -> &Tensor {
        BcdOptimizer::inputs(self)
    }
    fn objective(&self) -> Result<Option<ObjectiveParts>> {
        BcdOptimizer::objective(self).map(Some)
    }
    fn iterations_done(&self) -> usize {
        self.iteration()
    }
    fn steps_per_iteration(&self) -> Result<usize> {
        Ok(1)
    }
    fn advance(&mut self) -> Result<Advance> {
        let step = self.step()?;
        Ok(Advance {
            step,
            before: None,
            least_decrease: None,
            monotone: true,
            batch: None,
            iteration_end: true,
            cg: self.cg_reports().to_vec(),
        })
    }
    fn training_accuracy(&self, labels: &Tensor) -> Result<f64> {
        BcdOptimizer::training_accuracy(self, labels)
    }
    fn save(&self, path: &Path) -> Result<()> {
        checkpoint::save(path, self)
    }
    fn has_global_objective(&self) -> bool {
        true
    }
}

/// Mini-batch BCD over a data set, as a [`Method`]: each step runs one batch of the current
/// epoch (the epochs' batches as [`MiniBatchBcd::epoch`] draws them), each iteration one epoch.
pub struct MiniBatchRun<'a> {
    bcd: &'a mut MiniBatchBcd,
    x: &'a Tensor,
    y: &'a Tensor,
    /// The rows of the current epoch's batches not yet run.
    pending: VecDeque<Vec<u32>>,
}

impl<'a> MiniBatchRun<'a> {
    /// Mini-batch BCD `bcd` on this rank's inputs `x` (`[N, d_0]`) and targets `y`
    /// (`[N, d_L]`), from the epoch it stands at.
    pub fn new(bcd: &'a mut MiniBatchBcd, x: &'a Tensor, y: &'a Tensor) -> Result<Self> {
        bcd.check_targets(x, y)?;
        Ok(Self {
            bcd,
            x,
            y,
            pending: VecDeque::new(),
        })
    }
}

impl Method for MiniBatchRun<'_> {
    fn network(&self) -> &Network {
        self.bcd.layers()
    }
    fn communicator(&self) -> &Arc<dyn Communicator> {
        self.bcd.communicator()
    }
    fn inputs(&self) -> &Tensor {
        self.x
    }
    fn objective(&self) -> Result<Option<ObjectiveParts>> {
        Ok(None)
    }
    fn iterations_done(&self) -> usize {
        self.bcd.epochs_done()
    }
    fn steps_per_iteration(&self) -> Result<usize> {
        self.bcd.batches_per_epoch(self.x.dim(0)?)
    }
    fn advance(&mut self) -> Result<Advance> {
        let (report, iteration_end) = self.bcd.next_batch(self.x, self.y, &mut self.pending)?;
        Ok(Advance {
            step: StepReport {
                iteration: report.batches,
                objective: report.after,
                step_sq_norm: report.step_sq_norm,
                seconds: report.seconds,
            },
            before: Some(report.before),
            least_decrease: Some(report.least_decrease()),
            monotone: self.bcd.options().gram_decay == 0.0,
            batch: Some(BatchPosition {
                epoch: report.epoch + 1,
                batches: report.batches,
                rows: report.rows,
            }),
            iteration_end,
            cg: report.cg,
        })
    }
    fn training_accuracy(&self, labels: &Tensor) -> Result<f64> {
        crate::metrics::model_accuracy_distributed(
            self.bcd.layers(),
            self.x,
            labels,
            &**self.bcd.communicator(),
        )
    }
    fn save(&self, path: &Path) -> Result<()> {
        checkpoint::save_minibatch(path, self.bcd)
    }
    fn has_global_objective(&self) -> bool {
        false
    }
}
