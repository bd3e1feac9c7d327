//! BCD sweep speed against the machine's matrix-product rate and against backprop, in one run.
//!
//! ```sh
//! cargo bench --bench bcd                                  # 10k samples, 784-500-500-500-10
//! BCD_BENCH_SAMPLES=60000 BCD_BENCH_HIDDEN=1500,1500,1500 cargo bench --bench bcd   # paper
//! ```
//! Environment: `BCD_MNIST_DIR` (default ../shared/data/mnist), `BCD_BENCH_SAMPLES`,
//! `BCD_BENCH_HIDDEN`, `BCD_BENCH_SWEEPS` (max sweeps, default 5), `BCD_BENCH_EPOCHS` (max AdamW
//! epochs, default 3). Prints a Markdown table; figures go to BENCHMARKS.md by hand with the
//! command that made them.
//!
//! The product-rate limit is measured at the start and again right before and right after every
//! sweep; each sweep's rate is also reported against the mean of the two limits around it, so
//! that a drift of the shared host between the start and the sweeps does not decide the ratio.
//! The median of those per-sweep ratios is printed over all sweeps and over the sweeps after
//! the first, which alone also pays for faulting in the buffers it allocates (a training run
//! pays that once, in its first sweep).

use std::time::Instant;

/// The command-line tool's allocator setup, so that the benchmark measures what it runs.
#[path = "../src/bin/candle-bcd/alloc.rs"]
mod alloc;
mod support;

use anyhow::Result;
use candle_bcd::data::Dataset;
use candle_bcd::{
    cost, data, Activation, Architecture, BcdConfig, BcdOptimizer, Network, ProductCache,
    WeightInit,
};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{loss, AdamW, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use support::{env, peak_rss};

/// Best of three: GFLOP/s of the product `a · b` by `f`.
fn rate(a: &Tensor, b: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<f64> {
    let (m, k) = a.dims2()?;
    let n = b.dim(1)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        f(a, b)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (m * k * n) as f64 / best / 1e9)
}

/// The machine's f32 matrix-product rate on 2048³ products, measured on demand: at the start
/// of the run, and again right before and right after every sweep, because this shared
/// host's speed drifts by tens of percent within minutes (BENCHMARKS.md).
struct ProductRate {
    a: Tensor,
    b: Tensor,
    /// The same operands as row-major host buffers, for faer.
    host: (Vec<f32>, Vec<f32>),
}

impl ProductRate {
    fn new() -> Result<Self> {
        let s = 2048;
        let a = Tensor::randn(0f32, 1.0, (s, s), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (s, s), &Device::Cpu)?;
        let host = (a.flatten_all()?.to_vec1()?, b.flatten_all()?.to_vec1()?);
        Ok(Self { a, b, host })
    }

    /// `(Candle, faer)` GFLOP/s, each the best of three products.
    fn both(&self) -> Result<(f64, f64)> {
        let candle = rate(&self.a, &self.b, |a, b| Ok(a.matmul(b)?))?;
        let s = 2048;
        let mut c = vec![0f32; s * s];
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            faer::linalg::matmul::matmul(
                faer::MatMut::from_row_major_slice_mut(&mut c, s, s),
                faer::Accum::Replace,
                faer::MatRef::from_row_major_slice(&self.host.0, s, s),
                faer::MatRef::from_row_major_slice(&self.host.1, s, s),
                1.0,
                faer::Par::rayon(0),
            );
            best = best.min(t.elapsed().as_secs_f64());
        }
        let faer = 2.0 * (s as f64).powi(3) / best / 1e9;
        Ok((candle, faer))
    }

    /// The limit: the faster library's rate.
    fn limit(&self) -> Result<f64> {
        let (candle, faer) = self.both()?;
        Ok(candle.max(faer))
    }
}

/// What one BCD phase of the benchmark measured.
struct Phase {
    median_sweep: f64,
    /// Median over sweeps of (the sweep's rate) / (mean of the limits measured right before
    /// and right after it).
    median_adjacent_ratio: f64,
    /// The same median over the sweeps after the first (which also pays for first-touch page
    /// faults of the buffers it allocates); `None` with a single sweep.
    steady_adjacent_ratio: Option<f64>,
    /// Lowest and highest limit measured around the sweeps.
    limit_range: (f64, f64),
    median_iteration: f64,
    to_target: Option<f64>,
    lifted_bytes: f64,
}

/// Up to `max_iterations` sweeps with train and test accuracy after each (what the official code
/// does every epoch); stops early at 0.95 test accuracy.
fn bcd_phase(
    ds: &Dataset,
    arch: &Architecture,
    cache: ProductCache,
    max_iterations: usize,
    reference: &ProductRate,
) -> Result<Phase> {
    let flops = cost::sweep_flops(arch, ds.train_images.dim(0)?, 0);
    let cfg = BcdConfig::default();
    let varmap = VarMap::new();
    let model = Network::init(arch, &varmap, WeightInit::Official, 0, &Device::Cpu)?;
    let y = data::one_hot(&ds.train_labels, 10)?;
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, arch)?,
        ds.train_images.clone(),
        y,
        cfg,
    )?
    .with_product_cache(cache);
    let (mut sweeps, mut iterations, mut clock, mut to_target) = (vec![], vec![], 0.0, None);
    let (mut ratios, mut limits) = (vec![], vec![]);
    for k in 1..=max_iterations {
        let before = reference.limit()?;
        let r = opt.step()?;
        let after = reference.limit()?;
        let adjacent = 0.5 * (before + after);
        ratios.push(flops / r.seconds / 1e9 / adjacent);
        limits.extend([before, after]);
        let t = Instant::now();
        let train = opt.training_accuracy(&ds.train_labels)?;
        let test = model.accuracy(&ds.test_images, &ds.test_labels)?;
        let eval = t.elapsed().as_secs_f64();
        clock += r.seconds + eval;
        sweeps.push(r.seconds);
        iterations.push(r.seconds + eval);
        println!(
            "| {cache:?} sweep {k} | {:.2} s + eval {eval:.2} s | train {train:.4} | test {test:.4} | limit before/after {before:.0}/{after:.0} GFLOP/s, sweep at {:.2} of their mean |",
            r.seconds,
            ratios[k - 1]
        );
        if test >= 0.95 {
            to_target = Some(clock);
            break;
        }
    }
    // The mean of the two middle values for an even count (the upper one alone, used before,
    // biased four-sweep medians upwards).
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let h = v.len() / 2;
        if v.len() % 2 == 0 {
            0.5 * (v[h - 1] + v[h])
        } else {
            v[h]
        }
    };
    let limit_range = limits
        .iter()
        .fold((f64::INFINITY, 0f64), |(lo, hi), &l| (lo.min(l), hi.max(l)));
    Ok(Phase {
        median_sweep: median(sweeps),
        steady_adjacent_ratio: (ratios.len() > 1).then(|| median(ratios[1..].to_vec())),
        median_adjacent_ratio: median(ratios),
        limit_range,
        median_iteration: median(iterations),
        to_target,
        lifted_bytes: opt.state().size_bytes() as f64,
    })
}

fn main() -> Result<()> {
    let dir = std::env::var("BCD_MNIST_DIR").unwrap_or_else(|_| "../shared/data/mnist".into());
    let samples: usize = env("BCD_BENCH_SAMPLES", 10_000);
    let hidden: String = env("BCD_BENCH_HIDDEN", "500,500,500".to_string());
    let hidden: Vec<usize> = hidden
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let max_iterations: usize = env("BCD_BENCH_SWEEPS", 5);
    let max_epochs: usize = env("BCD_BENCH_EPOCHS", 3);
    let threads = rayon::current_num_threads();

    // 1. The machine's f32 product rate, both libraries (again around every sweep below).
    let reference = ProductRate::new()?;
    let (candle, faer) = reference.both()?;
    let limit = candle.max(faer);
    println!("| matmul 2048³ f32 ({threads} threads) | Candle {candle:.0} GFLOP/s | faer {faer:.0} GFLOP/s | limit {limit:.0} |");

    // 2. BCD sweeps, low-memory mode first so that the peak RSS read after it is its own.
    let ds = data::take_train(&data::load_idx_dir(dir.as_ref())?, samples)?;
    let mut widths = vec![784];
    widths.extend(&hidden);
    widths.push(10);
    let arch = Architecture::mlp(&widths, Activation::Relu)?;
    let flops = cost::sweep_flops(&arch, samples, 0);
    let data_bytes =
        (ds.train_images.elem_count() + ds.test_images.elem_count() + samples * 10) as f64 * 4.0;
    println!(
        "| BCD {widths:?}, N = {samples} | {:.3} TFLOP/sweep (kept products) | limit {limit:.0} GFLOP/s |",
        flops / 1e12
    );
    let mut bcd_to_target = None;
    for cache in [ProductCache::KeepFirst, ProductCache::Keep] {
        // As the CLI does: freed memory kept for reuse, except in low-memory mode.
        alloc::reuse_freed_memory(cache == ProductCache::Keep);
        let run = bcd_phase(&ds, &arch, cache, max_iterations, &reference)?;
        let peak = peak_rss();
        let achieved = flops / run.median_sweep / 1e9;
        let steady = run
            .steady_adjacent_ratio
            .map_or("-".to_string(), |r| format!("{r:.2}"));
        println!(
            "| {cache:?} | sweep median {:.2} s | {achieved:.0} GFLOP/s (kept-products count) | ratio to the start's limit {:.2} | median ratio to the limit around each sweep {:.2}, after the first sweep {steady} (limits {:.0}-{:.0}) | iteration (sweep + train/test eval) median {:.2} s |",
            run.median_sweep,
            achieved / limit,
            run.median_adjacent_ratio,
            run.limit_range.0,
            run.limit_range.1,
            run.median_iteration
        );
        println!(
            "| {cache:?} memory | peak RSS so far {:.2} GB | lifted state {:.2} GB + data {:.2} GB | ratio {:.2} |",
            peak / 1e9,
            run.lifted_bytes / 1e9,
            data_bytes / 1e9,
            peak / (run.lifted_bytes + data_bytes)
        );
        if cache == ProductCache::Keep {
            bcd_to_target = run.to_target;
        }
    }

    // 3. Backprop baseline: the same MLP, AdamW, batch 128, cross-entropy.
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let layers: Vec<candle_nn::Linear> = (0..widths.len() - 1)
        .map(|l| candle_nn::linear(widths[l], widths[l + 1], vb.pp(format!("l{l}"))))
        .collect::<Result<_, _>>()?;
    let forward = |x: &Tensor| -> Result<Tensor> {
        let mut h = x.clone();
        for (l, layer) in layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if l + 1 < layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    };
    let mut adam = AdamW::new(
        vm.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let labels = ds.train_labels.to_dtype(DType::U32)?;
    let (mut adam_clock, mut adam_to_target) = (0.0, None);
    for epoch in 1..=max_epochs {
        let t = Instant::now();
        for start in (0..samples).step_by(128) {
            let len = 128.min(samples - start);
            let logits = forward(&ds.train_images.narrow(0, start, len)?)?;
            let l = loss::cross_entropy(&logits, &labels.narrow(0, start, len)?)?;
            adam.backward_step(&l)?;
        }
        let logits = forward(&ds.test_images)?;
        let pred = logits.argmax(D::Minus1)?;
        let acc = pred
            .eq(&ds.test_labels.to_dtype(DType::U32)?)?
            .to_dtype(DType::F64)?
            .mean_all()?
            .to_scalar::<f64>()?;
        adam_clock += t.elapsed().as_secs_f64();
        println!(
            "| AdamW epoch {epoch} | {:.2} s | test {acc:.4} |",
            t.elapsed().as_secs_f64()
        );
        if acc >= 0.95 {
            adam_to_target = Some(adam_clock);
            break;
        }
    }
    let show = |t: Option<f64>| t.map_or("not reached".to_string(), |t| format!("{t:.1} s"));
    println!(
        "| time to 0.95 test accuracy | BCD {} | AdamW {} | ratio {} |",
        show(bcd_to_target),
        show(adam_to_target),
        match (bcd_to_target, adam_to_target) {
            (Some(b), Some(a)) => format!("{:.1}", b / a),
            _ => "-".into(),
        }
    );
    Ok(())
}
