//! Mini-batch BCD against backprop (candle-nn AdamW) on the same MLP, same data, same threads,
//! in one run: test accuracy against training time (evaluation excluded) and the time each
//! reaches 0.95 and 0.97; and the peak memory of the BCD phase.
//!
//! ```sh
//! BCD_MNIST_DIR=path/to/mnist cargo bench --bench minibatch
//! ```
//! `BCD_MNIST_DIR` may name any directory of the four IDX files: the input width and the class
//! count come from the data.
//! Environment: `BCD_BENCH_HIDDEN` (default 1500,1500,1500), `BCD_BENCH_LAYERS` (the stages of a
//! CNN instead, as `--layers` spells them, e.g. `conv32,pool2,conv64,pool2`; the linear head is
//! added), `BCD_BENCH_RESIDUAL` (`K`: an FC-ResNet instead, the stem to the first hidden width, `K`
//! residual layers of that width, the head; both methods' residual branches start scaled by
//! `BCD_BENCH_RESIDUAL_SCALE`, default `1/√K` as `--residual-init depth`), `BCD_BENCH_BRANCH`
//! (the residual branches of either, `single` or `pair` as `--branch` spells it, default
//! single), `BCD_MB_CG` (CG
//! iterations, 10), `BCD_MB_BATCH` (1024), `BCD_MB_SWEEPS` (inner sweeps, 1), `BCD_MB_ALPHA` (0.1),
//! `BCD_MB_GAMMA` (γ = ρ, 1), `BCD_MB_DECAY` (Gram memory β, 0), `BCD_MB_LAMBDA` (ridge λ, 0),
//! `BCD_MB_LOSS` (squared or cross-entropy), `BCD_MB_INIT` (official), `BCD_MB_HEAD_LAMBDA` (ridge
//! λ of an initial head fit, 0: none), `BCD_MB_RHO` (γ), `BCD_MB_INERTIA` (μ, 0),
//! `BCD_MB_ALPHA_GROWTH` (growth of α per epoch, 1), `BCD_MB_GROWTH` (layer-weight ratio q, 1),
//! `BCD_MB_ALPHA_LIFTED` (proximal weight of the lifted blocks; default α), `BCD_MB_EPOCHS` (2),
//! `BCD_MB_EVAL_EVERY` (batches between evaluations, 10), `BCD_ADAM_EPOCHS` (2),
//! `BCD_ADAM_EVAL_ROWS` (rows between AdamW's evaluations; as many as between BCD's). BCD runs
//! first, so the peak RSS read after it is its own.

use std::time::Instant;

/// The command-line tool's allocator setup, so that the benchmark measures what it runs.
#[path = "../src/bin/candle-bcd/alloc.rs"]
mod alloc;
#[path = "support/plain.rs"]
mod plain;
mod support;

use anyhow::Result;
use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{
    data, metrics, Activation, Architecture, BcdConfig, Branch, Image, Loss, Network, Stage,
    WeightInit,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::{loss, AdamW, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use support::{env, peak_rss};

/// Training seconds at which each target accuracy was first reached.
#[derive(Default)]
struct Curve {
    points: Vec<(f64, f64)>,
}

impl Curve {
    fn push(&mut self, name: &str, epoch: usize, batches: usize, seconds: f64, acc: f64) {
        println!("| {name} | epoch {epoch} | batches {batches} | {seconds:.1} s | test {acc:.4} |");
        self.points.push((seconds, acc));
    }

    fn time_to(&self, target: f64) -> Option<f64> {
        self.points.iter().find(|p| p.1 >= target).map(|p| p.0)
    }
}

fn main() -> Result<()> {
    let dir = std::env::var("BCD_MNIST_DIR").unwrap_or_else(|_| "../shared/data/mnist".into());
    let hidden: String = env("BCD_BENCH_HIDDEN", "1500,1500,1500".to_string());
    let hidden: Vec<usize> = hidden
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let eval_every: usize = env("BCD_MB_EVAL_EVERY", 10);
    let ds = data::load_idx_dir(dir.as_ref())?;
    let classes = ds.labels;
    let d0 = ds.train_images.dim(1)?;
    // The FC-ResNet's branch scale; CNNs (residual or not) keep their initialisation as it is.
    let mut branch_scale = None;
    let branch: Branch = env("BCD_BENCH_BRANCH", "single".to_string()).parse()?;
    let arch = match std::env::var("BCD_BENCH_LAYERS") {
        Ok(spec) => {
            let (mut stages, mut residual) = Stage::parse_list(&spec)?;
            stages.push(Stage::Linear(classes));
            residual.push(false);
            let image = match d0 {
                784 => Image::new(1, 28, 28),
                _ => Image::new(3, 32, 32),
            };
            Architecture::cnn(image, &stages, Activation::Relu)?
                .with_branch(branch)?
                .with_residual(residual)?
        }
        Err(_) => match env("BCD_BENCH_RESIDUAL", 0) {
            0 => {
                let mut widths = vec![d0];
                widths.extend(&hidden);
                widths.push(classes);
                Architecture::mlp(&widths, Activation::Relu)?
            }
            k => {
                branch_scale = Some(env("BCD_BENCH_RESIDUAL_SCALE", 1.0 / (k as f64).sqrt()));
                Architecture::resnet_with(d0, hidden[0], k, branch, classes, Activation::Relu)?
            }
        },
    };
    let widths = arch.widths().to_vec();
    let threads = rayon::current_num_threads();
    let data_bytes = (ds.train_images.elem_count() + ds.test_images.elem_count()) as f64 * 4.0;

    // 1. Mini-batch BCD.
    alloc::reuse_freed_memory(true);
    let options = MiniBatchOptions::default()
        .batch_size(env("BCD_MB_BATCH", 1024))
        .inner_sweeps(env("BCD_MB_SWEEPS", 1))
        .gram_decay(env("BCD_MB_DECAY", 0.0))
        .inertia(env("BCD_MB_INERTIA", 0.0))
        .alpha_growth(env("BCD_MB_ALPHA_GROWTH", 1.0));
    let gamma: f64 = env("BCD_MB_GAMMA", 1.0);
    let init: WeightInit = env::<String>("BCD_MB_INIT", "official".into()).parse()?;
    // λ of a ridge fit of the head to the initial features (its time counts as training); 0: none.
    let head_lambda: f64 = env("BCD_MB_HEAD_LAMBDA", 0.0);
    let mut config = BcdConfig::default();
    config.alpha = env("BCD_MB_ALPHA", 0.1);
    config.gamma = gamma;
    config.rho = env("BCD_MB_RHO", gamma);
    config.lambda = env("BCD_MB_LAMBDA", 0.0);
    config.loss = env::<String>("BCD_MB_LOSS", "squared".into()).parse::<Loss>()?;
    config.cg_iterations = env("BCD_MB_CG", config.cg_iterations);
    config.penalty_growth = env("BCD_MB_GROWTH", 1.0);
    config.alpha_lifted = std::env::var("BCD_MB_ALPHA_LIFTED")
        .ok()
        .map(|a| a.parse())
        .transpose()?;
    println!(
        "| mini-batch BCD {widths:?}, residual branches scaled by {branch_scale:?}, {threads} threads | {options:?} | α = {}, γ = {gamma}, ρ = {}, λ = {}, q = {}, lifted α = {:?}, {:?} loss, {init:?} init, head ridge λ = {head_lambda} |",
        config.alpha, config.rho, config.lambda, config.penalty_growth, config.alpha_lifted, config.loss
    );
    let varmap = VarMap::new();
    let net = Network::init(&arch, &varmap, init, 0, &Device::Cpu)?;
    if let Some(scale) = branch_scale {
        net.scale_residual_branches(scale)?;
    }
    let layers = Network::of_architecture(&varmap, &arch)?;
    let y = data::one_hot(&ds.train_labels, classes)?;
    let (mut bcd_curve, mut clock, mut trained) = (Curve::default(), Instant::now(), 0.0);
    if head_lambda > 0.0 {
        net.fit_head(&ds.train_images, &y, head_lambda)?;
        trained += clock.elapsed().as_secs_f64();
        let acc = net.accuracy(&ds.test_images, &ds.test_labels)?;
        bcd_curve.push("BCD", 0, 0, trained, acc);
        clock = Instant::now();
    }
    let mut bcd = MiniBatchBcd::new(&layers, config, options)?;
    let mut worse = 0;
    for epoch in 1..=env("BCD_MB_EPOCHS", 2) {
        bcd.epoch(&ds.train_images, &y, |r| {
            worse += usize::from(r.least_decrease() < -1e-6);
            if r.batches % eval_every == 0 {
                trained += clock.elapsed().as_secs_f64();
                let acc = net.accuracy(&ds.test_images, &ds.test_labels)?;
                bcd_curve.push("BCD", epoch, r.batches, trained, acc);
                clock = Instant::now();
            }
            Ok(())
        })?;
    }
    trained += clock.elapsed().as_secs_f64();
    let acc = net.accuracy(&ds.test_images, &ds.test_labels)?;
    bcd_curve.push("BCD", bcd.epochs_done(), bcd.batches_done(), trained, acc);
    let bcd_peak = peak_rss();
    println!(
        "| BCD memory | peak RSS {:.2} GB | data {:.2} GB | peak − data {:.2} GB | batches with a sweep that raised Φ_b: {worse} |",
        bcd_peak / 1e9,
        data_bytes / 1e9,
        (bcd_peak - data_bytes) / 1e9
    );

    // 2. Backprop: the same network, AdamW (lr 1e-3), batch 128, cross-entropy. An FC-ResNet's
    // branches start scaled as BCD's: at candle-nn's initialisation each branch about doubles
    // the stream's variance, ten start the logits some thirty times too large, and AdamW's
    // first epoch loses up to four points.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let model = plain::Plain::new(&arch, vb)?;
    if let Some(scale) = branch_scale {
        model.scale_residual_branches(&vm, scale)?;
    }
    let params = ParamsAdamW {
        lr: 1e-3,
        ..Default::default()
    };
    let mut adam = AdamW::new(vm.all_vars(), params)?;
    let labels = ds.train_labels.to_dtype(DType::U32)?;
    let n = ds.train_images.dim(0)?;
    let (mut adam_curve, mut trained) = (Curve::default(), 0.0);
    // Evaluated as often as BCD, in rows seen, unless told otherwise (a time to a target is read
    // at the first evaluation past it, so a large batch should not coarsen AdamW's reading).
    let eval_rows: usize = env("BCD_ADAM_EVAL_ROWS", eval_every * bcd.options().batch_size);
    let (mut step, mut seen) = (0, 0);
    for epoch in 1..=env("BCD_ADAM_EPOCHS", 2) {
        let mut clock = Instant::now();
        for start in (0..n).step_by(128) {
            let len = 128.min(n - start);
            let x: Tensor = ds.train_images.narrow(0, start, len)?;
            let l = loss::cross_entropy(&model.forward(&x)?, &labels.narrow(0, start, len)?)?;
            adam.backward_step(&l)?;
            step += 1;
            let before = seen;
            seen += len;
            if seen / eval_rows > before / eval_rows || start + len == n {
                trained += clock.elapsed().as_secs_f64();
                let acc = metrics::model_accuracy(&model, &ds.test_images, &ds.test_labels)?;
                adam_curve.push("AdamW", epoch, step, trained, acc);
                clock = Instant::now();
            }
        }
    }

    let show = |t: Option<f64>| t.map_or("not reached".to_string(), |t| format!("{t:.1} s"));
    for target in [0.95, 0.97, 0.98, 0.99] {
        let (b, a) = (bcd_curve.time_to(target), adam_curve.time_to(target));
        println!(
            "| time to {target} test accuracy | BCD {} | AdamW {} | ratio {} |",
            show(b),
            show(a),
            match (b, a) {
                (Some(b), Some(a)) => format!("{:.2}", b / a),
                _ => "-".into(),
            }
        );
    }
    Ok(())
}
