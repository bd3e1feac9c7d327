//! `candle-bcd train --batch-size B`: mini-batch BCD, evaluated and checkpointed by epoch.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_bcd::checkpoint::{self, MiniBatchProgress};
use candle_bcd::data::Dataset;
use candle_bcd::minibatch::{BatchReport, MiniBatchBcd, MiniBatchOptions};
use candle_core::Tensor;
use serde::Serialize;

use crate::progress::{bar, JsonLines};
use crate::ranks::Ranks;
use crate::train::{ModelSetup, TrainArgs};

/// One line of the metrics file of a mini-batch run.
#[derive(Serialize)]
struct MetricsLine {
    epoch: usize,
    batches: usize,
    /// `Φ_b` of the last batch after its sweeps.
    batch_objective: f64,
    train_accuracy: Option<f64>,
    test_accuracy: f64,
    /// Training seconds since the start of this run (evaluation excluded).
    seconds: f64,
    eval_seconds: f64,
}

/// Runs mini-batch BCD for `--epochs` epochs from `progress` (a checkpoint's) or the start.
pub fn run(
    args: &TrainArgs,
    setup: ModelSetup,
    ds: &Dataset,
    x: Tensor,
    y: Tensor,
    progress: Option<MiniBatchProgress>,
    ranks: &Ranks,
) -> Result<()> {
    let set = &args.settings;
    // Mini-batch runs are for memory-bound data: freed batch buffers go back to the OS at once.
    crate::alloc::reuse_freed_memory(false);
    let saved = progress.as_ref().map(|p| p.options.clone());
    let base = saved.clone().unwrap_or_default();
    let options = MiniBatchOptions {
        batch_size: set.batch_size.unwrap_or(base.batch_size),
        inner_sweeps: set.inner_sweeps.unwrap_or(base.inner_sweeps),
        // The order of the batches is part of the run: a resumed run keeps its seed.
        seed: saved.map_or(set.seed.unwrap_or(0), |o| o.seed),
        gram_decay: set.gram_decay.unwrap_or(base.gram_decay),
        inertia: set.inertia.unwrap_or(base.inertia),
    };
    let (epochs_done, batches_done) = progress.as_ref().map_or((0, 0), |p| (p.epochs, p.batches));
    let comm = ranks.comm();
    let mut bcd = MiniBatchBcd::new(&setup.layers, setup.config, options)?
        .resume_at(epochs_done, batches_done)
        .with_communicator(comm.clone())?;
    if let Some(p) = progress {
        if !p.memory.is_empty() {
            bcd = bcd.with_memory(p.memory)?;
        }
        if !p.previous.is_empty() {
            bcd = bcd.with_previous_weights(p.previous)?;
        }
    }
    let model = &setup.model;
    let test_x = ds.test_images.to_device(x.device())?;
    let eval_every = set.eval_every.unwrap_or(0);
    // Only rank 0 reports.
    let root = ranks.is_root();
    let say = |msg: String| {
        if root {
            println!("{msg}");
        }
    };
    let mut metrics = match (&args.metrics, root) {
        (Some(path), true) => Some(JsonLines::open(path, args.resume.is_some())?),
        _ => None,
    };
    let mut n = [x.dim(0)? as f64];
    comm.sum_f64(&mut n);
    let n = n[0] as usize;
    let accuracy = |x: &Tensor, labels: &Tensor| {
        candle_bcd::metrics::model_accuracy_distributed(model, x, labels, &*comm)
    };
    let per_epoch = n.div_ceil(bcd.options().batch_size);
    let (mut train_seconds, mut last_accuracy) = (0.0, None);
    say(format!(
        "mini-batch BCD: {n} rows in batches of {}, {} sweeps per batch, Gram decay {}, inertia {}, from epoch {epochs_done}",
        bcd.options().batch_size,
        bcd.options().inner_sweeps,
        bcd.options().gram_decay,
        bcd.options().inertia
    ));
    for _ in 0..set.epochs.unwrap_or(1) {
        let epoch = bcd.epochs_done();
        let bar = bar(per_epoch).filter(|_| root);
        let mut clock = Instant::now();
        let mut in_epoch = 0;
        bcd.epoch(&x, &y, |r: &BatchReport| {
            in_epoch += 1;
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            if in_epoch == per_epoch || (eval_every > 0 && r.batches % eval_every == 0) {
                train_seconds += clock.elapsed().as_secs_f64();
                let eval_start = Instant::now();
                let test = accuracy(&test_x, &ds.test_labels)?;
                // The training accuracy costs a forward pass over all N rows: at epoch ends only.
                let train = match in_epoch == per_epoch {
                    true => Some(accuracy(&x, &ds.train_labels)?),
                    false => None,
                };
                let line = MetricsLine {
                    epoch: epoch + 1,
                    batches: r.batches,
                    batch_objective: r.after.total(),
                    train_accuracy: train,
                    test_accuracy: test,
                    seconds: train_seconds,
                    eval_seconds: eval_start.elapsed().as_secs_f64(),
                };
                let train = train.map_or(String::new(), |a| format!("  train {a:.4}"));
                let msg = format!(
                    "epoch {:>3}  batches {:>6}  batch objective {:.4e}{train}  test {test:.4}  {:.1}s",
                    line.epoch, line.batches, line.batch_objective, line.seconds
                );
                match &bar {
                    Some(bar) => bar.println(msg),
                    None => say(msg),
                }
                if let Some(file) = &mut metrics {
                    file.write(&line)?;
                }
                last_accuracy = Some(test);
                clock = Instant::now();
            }
            Ok(())
        })
        .with_context(|| format!("epoch {}", epoch + 1))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if let Some(path) = &args.checkpoint {
            checkpoint::save_minibatch(path, &bcd)?;
            say(format!(
                "checkpoint after epoch {}: {}",
                bcd.epochs_done(),
                path.display()
            ));
        }
    }
    say(format!(
        "finished {} epochs ({} batches) in {train_seconds:.1}s of training",
        bcd.epochs_done(),
        bcd.batches_done()
    ));
    say(match last_accuracy {
        Some(acc) => format!("test accuracy: {acc:.4}"),
        None => "test accuracy: not evaluated".into(),
    });
    Ok(())
}
