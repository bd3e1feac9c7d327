//! The one training loop, for full-batch and mini-batch BCD alike: evaluation, checkpoints,
//! observers and termination, kept apart from the solvers as in argmin's `Executor`.
//!
//! [`train`] drives a [`Method`] (a [`BcdOptimizer`](crate::BcdOptimizer), one sweep a step, or
//! a [`MiniBatchRun`], one batch a step and one epoch an iteration) and stops at the first of:
//! the iterations asked for, a relative decrease of `Φ` below the tolerance (full batch), the
//! time limit, a rise of a monotone objective ([`TerminationReason::ObjectiveRose`]), or a
//! non-finite block. The library never prints: progress reaches the caller through an
//! [`Observer`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use candle_nn::Module;
use serde::Serialize;

use crate::error::{BcdError, Result};
use crate::metrics;
use crate::objective::ObjectiveParts;
use crate::optimizer::StepReport;

mod method;

pub use method::{Advance, BatchPosition, Method, MiniBatchRun};

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
/// let opts = TrainOptions::default().max_iterations(20).tolerance(Some(1e-4));
/// assert_eq!(opts.eval_every, 1);
/// ```
///
/// An iteration is a sweep (full batch) or an epoch (mini-batch); a step is a sweep or a
/// batch.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrainOptions {
    /// Most iterations to run (in addition to those already done). Default 50.
    pub max_iterations: usize,
    /// Stop once a sweep lowers `Φ` by less than this fraction of its value,
    /// `(Φ_{k−1} − Φ_k) ≤ tol·Φ_{k−1}`. Default `None` (never). Full batch only: a mini-batch
    /// run has no objective over all rows, and refuses it.
    pub tolerance: Option<f64>,
    /// Stop after the first step that ends past this much wall-clock time. Default `None`.
    /// A mini-batch run stopped inside an epoch keeps the checkpoint of the last epoch end.
    pub time_limit: Option<Duration>,
    /// Measure the test accuracy (and, full batch, the training accuracy) every this many
    /// steps, counted from the start of training, and always after the last; a mini-batch run
    /// also measures both at every epoch end. 0 = only at those. Default 1.
    pub eval_every: usize,
    /// Where to save the checkpoint (at the end and every `checkpoint_every` iterations; a
    /// mini-batch run saves at epoch ends only).
    pub checkpoint: Option<PathBuf>,
    /// Save every this many iterations (0 = only at the end).
    pub checkpoint_every: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            max_iterations: 50,
            tolerance: None,
            time_limit: None,
            eval_every: 1,
            checkpoint: None,
            checkpoint_every: 0,
        }
    }
}

crate::config::setters!(TrainOptions {
    max_iterations: usize,
    tolerance: Option<f64>,
    time_limit: Option<Duration>,
    eval_every: usize,
    checkpoint: Option<PathBuf>,
    checkpoint_every: usize,
});

/// What the trainer measures accuracy on, besides training.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evaluation<'a> {
    /// Class ids `[N]` of the method's own training rows (this rank's, in a data-parallel run;
    /// the accuracy is over all ranks' rows): when given, the training accuracy is measured
    /// ([`Method::training_accuracy`]; a full-batch optimizer reuses a kept product).
    pub train_labels: Option<&'a Tensor>,
    /// A held-out set to measure the model on (this rank's share of it, in a data-parallel run;
    /// the accuracy is over all ranks' rows).
    pub test: Option<&'a EvalSet>,
}

/// One step (a sweep or a batch) as seen by an observer.
#[derive(Debug, Clone, Serialize)]
pub struct IterationRecord {
    /// The step's report (`iteration` counts sweeps or batches since the start of training;
    /// for a batch, `objective` is its `Φ_b` after its sweeps).
    #[serde(flatten)]
    pub step: StepReport,
    /// The batch, for a mini-batch step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchPosition>,
    /// Seconds of training (steps, evaluation excluded) since this run started.
    pub training_seconds: f64,
    /// Accuracy of the network on the training set, when evaluated.
    pub train_accuracy: Option<f64>,
    /// Accuracy of the network on the test set, when evaluated.
    pub test_accuracy: Option<f64>,
    /// Seconds spent evaluating.
    pub eval_seconds: f64,
    /// The conjugate-gradient solves of the step's (last) sweep: iterations and largest
    /// relative residual per activation block under an image layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cg: Vec<crate::conv::CgReport>,
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
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
    /// A sweep raised `Φ` (relative rise beyond round-off), which an exact sweep never does:
    /// the weights were changed from outside, or a block lost accuracy. The run stops there.
    ObjectiveRose {
        /// `(Φ_k − Φ_{k−1})/Φ_{k−1}` of the last sweep.
        relative_increase: f64,
    },
    /// A block or the objective became NaN/Inf; the last good checkpoint was kept.
    Diverged(String),
}

impl std::fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxIterationsReached => write!(f, "ran the sweeps asked for"),
            Self::Converged { relative_decrease } => write!(
                f,
                "converged: the last sweep lowered the objective by {relative_decrease:.3e} of it"
            ),
            Self::TimeLimit => write!(f, "stopped at the time limit"),
            Self::ObjectiveRose { relative_increase } => write!(
                f,
                "stopped: the last sweep raised the objective by {relative_increase:.3e} of it, \
                 which an exact sweep never does"
            ),
            Self::Diverged(why) => write!(f, "diverged: {why}"),
        }
    }
}

impl TerminationReason {
    /// Whether the run ended on a failure (divergence, a rising objective) rather than by a
    /// limit or convergence.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Diverged(_) | Self::ObjectiveRose { .. })
    }
}

/// Outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Why it ended.
    pub reason: TerminationReason,
    /// Completed iterations, sweeps or epochs (total, including resumed ones).
    pub iterations: usize,
    /// Steps (sweeps or batches) this run took.
    pub steps: usize,
    /// Last measured test accuracy.
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// Receives progress; every method has a no-op default.
pub trait Observer {
    /// Called once before the first step with the starting objective over all rows (full
    /// batch), the iterations already done and the most steps this run may take.
    fn observe_init(
        &mut self,
        _objective: Option<&ObjectiveParts>,
        _start: usize,
        _steps: usize,
    ) -> Result<()> {
        Ok(())
    }
    /// Called after every step.
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

/// Relative rise of `Φ` over one sweep that counts as round-off rather than a rise: `Φ` is
/// summed in `f64` from `f32` blocks, whose last bits change with the order of the sums.
const OBJECTIVE_ROUND_OFF: f64 = 1e-6;

/// Why the run stops after a step that lowered its objective by `decrease` (relative; negative
/// for a rise; `None` when the step's objective need not fall) once `elapsed` has passed, if
/// it does: a rise beyond round-off first, then the tolerance, then the time limit.
fn stop_reason(
    decrease: Option<f64>,
    opts: &TrainOptions,
    elapsed: Duration,
) -> Option<TerminationReason> {
    match decrease {
        Some(d) if d < -OBJECTIVE_ROUND_OFF => Some(TerminationReason::ObjectiveRose {
            relative_increase: -d,
        }),
        Some(d) if opts.tolerance.is_some_and(|tol| d <= tol) => {
            Some(TerminationReason::Converged {
                relative_decrease: d,
            })
        }
        _ if opts.time_limit.is_some_and(|t| elapsed >= t) => Some(TerminationReason::TimeLimit),
        _ => None,
    }
}

/// Runs up to `opts.max_iterations` iterations of `method`, measuring `model` (any candle-nn
/// model that reads the method's `Var`s) on `eval.test` and the training accuracy when
/// `eval.train_labels` is given, saving checkpoints as asked, and stopping early on the
/// tolerance, the time limit or a rise of a monotone objective.
///
/// Before the first step it checks that `model` computes what the method's network describes
/// on the first rows of the training inputs ([`crate::Network::check_against`]), and that the
/// options fit the method (a tolerance needs a full-batch objective).
pub fn train(
    method: &mut dyn Method,
    model: &dyn Module,
    eval: Evaluation,
    opts: &TrainOptions,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    let start = Instant::now();
    let comm = method.communicator().clone();
    if let (Some(tol), false) = (opts.tolerance, method.has_global_objective()) {
        return Err(BcdError::InvalidHyperparameter {
            name: "tolerance",
            value: tol,
            reason: "a mini-batch run has no objective over all rows to converge on",
        });
    }
    let check = method.network().check_against(model, method.inputs());
    crate::comm::agree(&*comm, check)?;
    let mut prev = method.objective()?;
    let steps_per_iteration = method.steps_per_iteration()?;
    let first = method.iterations_done();
    let target = first + opts.max_iterations;
    observer.observe_init(
        prev.as_ref(),
        first,
        opts.max_iterations * steps_per_iteration,
    )?;
    let (mut test_accuracy, mut steps, mut training_seconds) = (None, 0, 0.0);
    let mut reason = TerminationReason::MaxIterationsReached;
    while method.iterations_done() < target {
        let step_start = Instant::now();
        let adv = match method.advance() {
            Ok(adv) => adv,
            Err(e @ BcdError::NonFinite { .. }) | Err(e @ BcdError::SingularSystem { .. }) => {
                reason = TerminationReason::Diverged(e.to_string());
                break;
            }
            Err(e) => return Err(e),
        };
        steps += 1;
        training_seconds += step_start.elapsed().as_secs_f64();
        let before = adv.before.or(prev);
        prev = Some(adv.step.objective);
        let decrease = adv
            .least_decrease
            .or_else(|| {
                before
                    .map(|b| (b.total() - adv.step.objective.total()) / b.total().abs().max(1e-300))
            })
            .filter(|_| adv.monotone);
        if let Some(stop) = stop_reason(decrease, opts, start.elapsed()) {
            reason = stop;
        }
        let done = adv.iteration_end && method.iterations_done() >= target;
        let last = done || reason != TerminationReason::MaxIterationsReached;
        let minibatch = adv.batch.is_some();
        let eval_now = last
            || (minibatch && adv.iteration_end)
            || (opts.eval_every > 0 && adv.step.iteration % opts.eval_every == 0);
        // Over all rows, the training accuracy is a forward pass of its own in a mini-batch run:
        // at epoch ends and at the end only.
        let train_now = eval_now && (!minibatch || adv.iteration_end || last);
        let eval_start = Instant::now();
        let record = IterationRecord {
            step: adv.step,
            batch: adv.batch,
            training_seconds,
            train_accuracy: match eval.train_labels {
                Some(labels) if train_now => Some(method.training_accuracy(labels)?),
                _ => None,
            },
            test_accuracy: match eval.test {
                Some(s) if eval_now => Some(metrics::model_accuracy_distributed(
                    model, &s.x, &s.labels, &*comm,
                )?),
                _ => None,
            },
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            cg: adv.cg.clone(),
        };
        test_accuracy = record.test_accuracy.or(test_accuracy);
        observer.observe_iter(&record)?;
        let k = method.iterations_done();
        let save_now = adv.iteration_end
            && (last || (opts.checkpoint_every > 0 && k % opts.checkpoint_every == 0));
        if let (Some(path), true) = (&opts.checkpoint, save_now) {
            method.save(path)?;
            observer.observe_checkpoint(path, k)?;
        }
        if last {
            break;
        }
    }
    let summary = TrainSummary {
        reason,
        iterations: method.iterations_done(),
        steps,
        test_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    observer.observe_final(&summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rise of `Φ` is its own reason, even where the tolerance (which a negative decrease
    /// always meets) or the time limit would also stop the run; round-off is not a rise.
    #[test]
    fn a_rising_objective_is_not_convergence() {
        let opts = TrainOptions {
            tolerance: Some(1e-2),
            time_limit: Some(Duration::ZERO),
            ..Default::default()
        };
        let late = Duration::from_secs(1);
        assert_eq!(
            stop_reason(Some(-1e-3), &opts, late),
            Some(TerminationReason::ObjectiveRose {
                relative_increase: 1e-3
            })
        );
        assert_eq!(
            stop_reason(Some(-1e-9), &opts, late),
            Some(TerminationReason::Converged {
                relative_decrease: -1e-9
            })
        );
        assert_eq!(
            stop_reason(Some(0.5), &opts, late),
            Some(TerminationReason::TimeLimit)
        );
        assert_eq!(stop_reason(Some(0.5), &TrainOptions::default(), late), None);
        assert!(stop_reason(Some(-1e-3), &opts, late).unwrap().is_failure());
        // A step whose objective may rise (a batch with Gram memory) is only timed.
        assert_eq!(
            stop_reason(None, &opts, late),
            Some(TerminationReason::TimeLimit)
        );
    }
}
