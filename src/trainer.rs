//! The training loop around [`BcdOptimizer::step`]: evaluation, checkpoints, observers and
//! termination, kept apart from the solver as in argmin's `Executor`.
//!
//! The library never prints: progress reaches the caller through an [`Observer`].

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use crate::checkpoint;
use crate::error::{BcdError, Result};
use crate::model::BcdNet;
use crate::objective::ObjectiveParts;
use crate::optimizer::{BcdOptimizer, StepReport};

/// Inputs and integer labels to measure accuracy on.
#[derive(Debug, Clone)]
pub struct EvalSet {
    /// Inputs `[N, d_0]`.
    pub x: Tensor,
    /// Class ids `[N]`.
    pub labels: Tensor,
}

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Number of sweeps to run (in addition to those already done).
    pub iterations: usize,
    /// Evaluate accuracy every this many sweeps (and always after the last); 0 = only at the end.
    pub eval_every: usize,
    /// Where to save the checkpoint (at the end and every `checkpoint_every` sweeps).
    pub checkpoint: Option<PathBuf>,
    /// Save every this many sweeps (0 = only at the end).
    pub checkpoint_every: usize,
}

/// One sweep as seen by an observer.
#[derive(Debug, Clone, Serialize)]
pub struct IterationRecord {
    /// The optimizer's report.
    #[serde(flatten)]
    pub step: StepReport,
    /// Accuracy of the network on the training set, when evaluated.
    pub train_accuracy: Option<f64>,
    /// Accuracy of the network on the test set, when evaluated.
    pub test_accuracy: Option<f64>,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TerminationReason {
    /// The requested number of sweeps was done.
    MaxIterationsReached,
    /// A block or the objective became NaN/Inf; the last good checkpoint was kept.
    Diverged(String),
}

/// Outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Why it ended.
    pub reason: TerminationReason,
    /// Completed sweeps (total, including resumed ones).
    pub iterations: usize,
    /// Last measured test accuracy.
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// Receives progress; every method has a no-op default.
pub trait Observer {
    /// Called once before the first sweep with the starting objective and sweep count.
    fn observe_init(
        &mut self,
        _objective: &ObjectiveParts,
        _start: usize,
        _iterations: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// Called after every sweep.
    fn observe_iter(&mut self, _record: &IterationRecord) -> Result<()> {
        Ok(())
    }
    /// Called when a checkpoint was written.
    fn observe_checkpoint(&mut self, _path: &std::path::Path, _iteration: usize) -> Result<()> {
        Ok(())
    }
    /// Called once at the end, also after divergence.
    fn observe_final(&mut self, _summary: &TrainSummary) -> Result<()> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}

/// Runs `opts.iterations` sweeps of `opt`, evaluating `model` (which reads the same `Var`s)
/// on `train` and `test` and saving checkpoints as asked. When `train.x` is the optimizer's
/// own input tensor (the same [`Tensor::id`]), its accuracy comes from
/// [`BcdOptimizer::training_accuracy`], which saves the first layer's product.
pub fn train(
    opt: &mut BcdOptimizer,
    model: &BcdNet,
    train: Option<&EvalSet>,
    test: Option<&EvalSet>,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    let start = Instant::now();
    observer.observe_init(&opt.objective()?, opt.iteration(), opts.iterations)?;
    let mut test_accuracy = None;
    let mut reason = TerminationReason::MaxIterationsReached;
    for k in 1..=opts.iterations {
        let step = match opt.step() {
            Ok(step) => step,
            Err(e @ BcdError::NonFinite { .. }) | Err(e @ BcdError::SingularSystem { .. }) => {
                reason = TerminationReason::Diverged(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
        let eval_now = k == opts.iterations || (opts.eval_every > 0 && k % opts.eval_every == 0);
        let eval_start = Instant::now();
        let acc = |set: Option<&EvalSet>| -> Result<Option<f64>> {
            match set {
                // The optimizer's own inputs: reuse its kept first-layer product.
                Some(s) if eval_now && s.x.id() == opt.inputs().id() => {
                    Ok(Some(opt.training_accuracy(&s.labels)?))
                }
                Some(s) if eval_now => Ok(Some(model.accuracy(&s.x, &s.labels)?)),
                _ => Ok(None),
            }
        };
        let record = IterationRecord {
            step,
            train_accuracy: acc(train)?,
            test_accuracy: acc(test)?,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
        };
        test_accuracy = record.test_accuracy.or(test_accuracy);
        observer.observe_iter(&record)?;
        let save_now =
            k == opts.iterations || (opts.checkpoint_every > 0 && k % opts.checkpoint_every == 0);
        if let (Some(path), true) = (&opts.checkpoint, save_now) {
            checkpoint::save(path, opt)?;
            observer.observe_checkpoint(path, opt.iteration())?;
        }
    }
    let summary = TrainSummary {
        reason,
        iterations: opt.iteration(),
        test_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    observer.observe_final(&summary)?;
    Ok(summary)
}
