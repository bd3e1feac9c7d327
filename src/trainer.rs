//! The training loop around [`BcdOptimizer::step`]: evaluation, checkpoints, observers and
//! termination, kept apart from the solver as in argmin's `Executor`.
//!
//! The library never prints: progress reaches the caller through an [`Observer`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_nn::Module;
use serde::Serialize;

use crate::checkpoint;
use crate::error::{BcdError, Result};
use crate::metrics;
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

/// Settings of a training run. Start from [`TrainOptions::default`] and change what differs:
///
/// ```
/// use candle_bcd::trainer::TrainOptions;
/// let opts = TrainOptions {
///     max_sweeps: 20,
///     tolerance: Some(1e-4),
///     ..Default::default()
/// };
/// assert_eq!(opts.eval_every, 1);
/// ```
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Most sweeps to run (in addition to those already done). Default 50.
    pub max_sweeps: usize,
    /// Stop once a sweep lowers `Φ` by less than this fraction of its value,
    /// `(Φ_{k−1} − Φ_k) ≤ tol·Φ_{k−1}`. Default `None` (never).
    pub tolerance: Option<f64>,
    /// Stop after the first sweep that ends past this much wall-clock time. Default `None`.
    pub time_limit: Option<Duration>,
    /// Evaluate accuracy every this many sweeps (and always after the last); 0 = only at the
    /// end. Default 1.
    pub eval_every: usize,
    /// Where to save the checkpoint (at the end and every `checkpoint_every` sweeps).
    pub checkpoint: Option<PathBuf>,
    /// Save every this many sweeps (0 = only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            max_sweeps: 50,
            tolerance: None,
            time_limit: None,
            eval_every: 1,
            checkpoint: None,
            checkpoint_every: 0,
        }
    }
}

/// What the trainer measures accuracy on, besides training.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evaluation<'a> {
    /// Class ids `[N]` of the optimizer's own training rows (this rank's, in a data-parallel
    /// run; the accuracy is over all ranks' rows): when given, the training accuracy
    /// is measured (through [`BcdOptimizer::training_accuracy`], which reuses a kept product).
    pub train_labels: Option<&'a Tensor>,
    /// A held-out set to measure the model on (this rank's share of it, in a data-parallel run;
    /// the accuracy is over all ranks' rows).
    pub test: Option<&'a EvalSet>,
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
    /// A sweep lowered `Φ` by less than the tolerance (relative).
    Converged {
        /// `(Φ_{k−1} − Φ_k)/Φ_{k−1}` of the last sweep.
        relative_decrease: f64,
    },
    /// The time limit was reached.
    TimeLimit,
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
    /// Called once before the first sweep with the starting objective, the sweeps already done
    /// and the most sweeps this run may add.
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

/// Runs up to `opts.max_sweeps` sweeps of `opt`, measuring `model` (any candle-nn model that
/// reads the optimizer's `Var`s) on `eval.test` and the training accuracy when
/// `eval.train_labels` is given, saving checkpoints as asked, and stopping early on the
/// tolerance or the time limit.
pub fn train(
    opt: &mut BcdOptimizer,
    model: &dyn Module,
    eval: Evaluation,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    let start = Instant::now();
    let mut prev = opt.objective()?;
    observer.observe_init(&prev, opt.iteration(), opts.max_sweeps)?;
    let mut test_accuracy = None;
    let mut reason = TerminationReason::MaxIterationsReached;
    for k in 1..=opts.max_sweeps {
        let step = match opt.step() {
            Ok(step) => step,
            Err(e @ BcdError::NonFinite { .. }) | Err(e @ BcdError::SingularSystem { .. }) => {
                reason = TerminationReason::Diverged(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
        let decrease = (prev.total() - step.objective.total()) / prev.total().abs().max(1e-300);
        prev = step.objective;
        if opts.tolerance.is_some_and(|tol| decrease <= tol) {
            reason = TerminationReason::Converged {
                relative_decrease: decrease,
            };
        } else if opts.time_limit.is_some_and(|t| start.elapsed() >= t) {
            reason = TerminationReason::TimeLimit;
        }
        let last = k == opts.max_sweeps || reason != TerminationReason::MaxIterationsReached;
        let eval_now = last || (opts.eval_every > 0 && k % opts.eval_every == 0);
        let eval_start = Instant::now();
        let record = IterationRecord {
            step,
            train_accuracy: match eval.train_labels {
                Some(labels) if eval_now => Some(opt.training_accuracy(labels)?),
                _ => None,
            },
            test_accuracy: match eval.test {
                Some(s) if eval_now => Some(metrics::model_accuracy_distributed(
                    model,
                    &s.x,
                    &s.labels,
                    &**opt.communicator(),
                )?),
                _ => None,
            },
            eval_seconds: eval_start.elapsed().as_secs_f64(),
        };
        test_accuracy = record.test_accuracy.or(test_accuracy);
        observer.observe_iter(&record)?;
        let save_now = last || (opts.checkpoint_every > 0 && k % opts.checkpoint_every == 0);
        if let (Some(path), true) = (&opts.checkpoint, save_now) {
            checkpoint::save(path, opt)?;
            observer.observe_checkpoint(path, opt.iteration())?;
        }
        if last {
            break;
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
