//! Rendering of training progress: a progress bar on a terminal, plain lines otherwise, and
//! the JSON Lines metrics file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};

use candle_bcd::trainer::{IterationRecord, Observer, TerminationReason, TrainSummary};
use candle_bcd::{BcdError, ObjectiveParts, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// One line of the metrics file: one per sweep, or one per batch of a mini-batch run (with its
/// epoch and the batches done; `iteration` counts batches there, and the objective is the
/// batch's `Φ_b` after its sweeps).
#[derive(Serialize)]
struct MetricsLine {
    iteration: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batches: Option<usize>,
    objective: f64,
    loss: f64,
    regularizer: f64,
    activation_penalty: f64,
    preactivation_penalty: f64,
    step_sq_norm: f64,
    train_accuracy: Option<f64>,
    test_accuracy: Option<f64>,
    seconds: f64,
    /// Seconds of training since the run started (evaluation excluded).
    training_seconds: f64,
    eval_seconds: f64,
}

/// A JSON Lines file: one serialised object per line, flushed after each.
pub struct JsonLines {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonLines {
    /// Creates `path` (truncating it), or appends to it when `append`.
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .map_err(|e| BcdError::Io {
                path: path.into(),
                error: e,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    /// Writes `line` as one JSON object and flushes.
    pub fn write<T: Serialize>(&mut self, line: &T) -> Result<()> {
        let json =
            serde_json::to_string(line).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        writeln!(self.out, "{json}")
            .and_then(|_| self.out.flush())
            .map_err(|e| BcdError::Io {
                path: self.path.clone(),
                error: e,
            })
    }
}

/// A progress bar on stderr when it is a terminal, `None` otherwise.
pub fn bar(len: usize) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    })
}

/// The CLI's observer.
pub struct Progress {
    bar: Option<ProgressBar>,
    metrics: Option<JsonLines>,
    /// Every record, kept for the plots.
    pub records: Vec<IterationRecord>,
}

fn fmt_acc(a: Option<f64>) -> String {
    a.map_or_else(|| "-".into(), |a| format!("{a:.4}"))
}

impl Progress {
    /// Opens the metrics file (appending when resuming) and decides how to render.
    pub fn new(metrics: Option<&Path>, append: bool) -> Result<Self> {
        let metrics = match metrics {
            Some(p) => Some(JsonLines::open(p, append)?),
            None => None,
        };
        Ok(Self {
            bar: None,
            metrics,
            records: Vec::new(),
        })
    }

    fn line(&self, msg: String) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None => println!("{msg}"),
        }
    }
}

impl Observer for Progress {
    fn observe_init(
        &mut self,
        objective: Option<&ObjectiveParts>,
        start: usize,
        steps: usize,
    ) -> Result<()> {
        self.bar = bar(steps);
        if let Some(objective) = objective {
            self.line(format!(
                "start at iteration {start}: objective {:.6e}",
                objective.total()
            ));
        }
        Ok(())
    }

    fn observe_iter(&mut self, r: &IterationRecord) -> Result<()> {
        self.records.push(r.clone());
        let o = &r.step.objective;
        // Image layers: the most CG iterations and the largest relative residual of the step.
        let cg = match r.cg.iter().map(|c| c.iterations).max() {
            Some(iterations) => {
                let residual = r.cg.iter().map(|c| c.relative_residual).fold(0.0, f64::max);
                format!("  cg {iterations} it, residual {residual:.1e}")
            }
            None => String::new(),
        };
        // A mini-batch run reports the batches it evaluated after; a full-batch run every sweep.
        let msg = match r.batch {
            None => Some(format!(
                "iter {:>4}  objective {:.6e}  step² {:.3e}{cg}  train {}  test {}  {:.2}s (+{:.2}s eval)",
                r.step.iteration,
                o.total(),
                r.step.step_sq_norm,
                fmt_acc(r.train_accuracy),
                fmt_acc(r.test_accuracy),
                r.step.seconds,
                r.eval_seconds
            )),
            Some(b) => r.test_accuracy.map(|test| {
                let train = r
                    .train_accuracy
                    .map_or(String::new(), |a| format!("  train {a:.4}"));
                format!(
                    "epoch {:>3}  batches {:>6}  batch objective {:.4e}{cg}{train}  test {test:.4}  {:.1}s",
                    b.epoch,
                    b.batches,
                    o.total(),
                    r.training_seconds
                )
            }),
        };
        match (&self.bar, msg) {
            (Some(bar), msg) => {
                bar.inc(1);
                bar.set_message(format!(
                    "Φ {:.4e} test {}",
                    o.total(),
                    fmt_acc(r.test_accuracy)
                ));
                if let Some(msg) = msg {
                    bar.println(msg);
                }
            }
            (None, Some(msg)) => println!("{msg}"),
            (None, None) => {}
        }
        if let Some(file) = &mut self.metrics {
            file.write(&MetricsLine {
                iteration: r.step.iteration,
                epoch: r.batch.map(|b| b.epoch),
                batches: r.batch.map(|b| b.batches),
                objective: o.total(),
                loss: o.loss,
                regularizer: o.regularizer,
                activation_penalty: o.activation_penalty,
                preactivation_penalty: o.preactivation_penalty,
                step_sq_norm: r.step.step_sq_norm,
                train_accuracy: r.train_accuracy,
                test_accuracy: r.test_accuracy,
                seconds: r.step.seconds,
                training_seconds: r.training_seconds,
                eval_seconds: r.eval_seconds,
            })?;
        }
        Ok(())
    }

    fn observe_checkpoint(&mut self, path: &Path, iteration: usize) -> Result<()> {
        self.line(format!(
            "checkpoint after iteration {iteration}: {}",
            path.display()
        ));
        Ok(())
    }

    fn observe_final(&mut self, summary: &TrainSummary) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        match &summary.reason {
            TerminationReason::MaxIterationsReached => {}
            reason if reason.is_failure() => eprintln!("{reason}"),
            reason => println!("{reason}"),
        }
        let minibatch = self.records.last().is_some_and(|r| r.batch.is_some());
        match minibatch {
            true => println!(
                "finished {} epochs ({} batches) in {:.1}s",
                summary.iterations, summary.steps, summary.seconds
            ),
            false => println!(
                "finished {} iterations in {:.1}s",
                summary.iterations, summary.seconds
            ),
        }
        Ok(())
    }
}
