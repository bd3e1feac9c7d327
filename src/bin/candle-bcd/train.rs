//! `candle-bcd train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_bcd::data::{self, DatasetKind};
use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::trainer::{self, EvalSet, Evaluation, MiniBatchRun, TrainOptions};
use candle_bcd::{
    checkpoint, BcdConfig, BcdOptimizer, Image, LiftedState, Network, ProductCache, Tensor,
    VConstraint,
};
use candle_nn::VarMap;
use clap::Args;

use crate::preset;
use crate::progress::Progress;
use crate::ranks::Ranks;
use crate::settings::{HeadInitArg, Settings};
use crate::{open_device, set_threads, DeviceArg};

/// Options of `candle-bcd train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The settings a preset may also give.
    #[command(flatten)]
    pub settings: Settings,
    /// Constrain the hidden activations V_i ≥ 0.
    #[arg(long, conflicts_with = "v_box")]
    pub v_nonnegative: bool,
    /// Constrain the hidden activations to LO ≤ V_i ≤ HI.
    #[arg(long, num_args = 2, allow_negative_numbers = true, value_names = ["LO", "HI"])]
    pub v_box: Option<Vec<f64>>,
    /// A preset (TOML, see models/): its fields are the defaults, flags given here override them.
    #[arg(long)]
    pub preset: Option<PathBuf>,
    /// Write one JSON object per iteration to FILE (JSON Lines; appended to when resuming).
    #[arg(long)]
    pub metrics: Option<PathBuf>,
    /// Write SVG plots of the objective, its parts and the accuracies into DIR at the end.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Save the whole optimizer state to FILE at the end (safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Also save the checkpoint every K iterations.
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Continue from a checkpoint written by --checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Compute device.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// CPU threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep only the first layer's product Z_1 = X W_1^T between sweeps and recompute the
    /// others where needed: less memory, one more product per deeper layer and sweep
    /// (three-splitting).
    #[arg(long)]
    pub low_memory: bool,
}

impl TrainArgs {
    /// The constraint on the hidden activations, when a flag sets one.
    fn v_constraint(&self) -> Option<VConstraint> {
        match (&self.v_box, self.v_nonnegative) {
            (Some(b), _) if b.len() == 2 => Some(VConstraint::Box { lo: b[0], hi: b[1] }),
            (_, true) => Some(VConstraint::NonNegative),
            _ => None,
        }
    }
}

/// The network a run trains, fresh or from a checkpoint, and its hyperparameters.
pub struct ModelSetup {
    /// The network, whose `Var`s the optimizer updates.
    pub network: Network,
    /// The hyperparameters: the checkpoint's or the defaults, with the flags' values over them.
    pub config: BcdConfig,
}

impl ModelSetup {
    /// Builds the network: the checkpoint's weights, or fresh ones (`--init`, `--seed`, and the
    /// ridge head of `--head-init ridge` fitted to `x`, `y`).
    fn new(
        args: &TrainArgs,
        classes: usize,
        x: &candle_core::Tensor,
        y: &candle_core::Tensor,
        ckpt: Option<&checkpoint::Checkpoint>,
        device: &candle_core::Device,
        ranks: &Ranks,
    ) -> Result<Self> {
        let set = &args.settings;
        let varmap = VarMap::new();
        let arch = set.architecture(image_of(set, x)?, classes, ckpt.map(|c| c.architecture()))?;
        match ckpt {
            Some(ckpt) => {
                if let Some(path) = &args.resume {
                    ckpt.model().check_architecture(&arch, path)?;
                }
                let config = set.config(ckpt.config().clone(), args.v_constraint());
                let network = ckpt.network(&varmap)?;
                Ok(Self { network, config })
            }
            None => {
                let config = set.config(BcdConfig::default(), args.v_constraint());
                config.validate()?;
                let init = set.init.unwrap_or_default();
                let network = Network::init(&arch, &varmap, init, set.seed.unwrap_or(0), device)?;
                if let Some(residual) = set.residual_init {
                    let k = network.residual_layers();
                    if k == 0 {
                        anyhow::bail!("--residual-init applies to networks with residual layers (--arch resnet)");
                    }
                    network.scale_residual_branches(residual.factor(k))?;
                }
                if set.head_init == Some(HeadInitArg::Ridge) {
                    let lambda = set.head_lambda.unwrap_or(1.0);
                    network.fit_head_distributed(x, y, lambda, &*ranks.comm())?;
                }
                Ok(Self { network, config })
            }
        }
    }
}

/// The flags that only one mode honours, and whether each is given (by a flag or the preset).
fn mode_flags(set: &Settings, args: &TrainArgs) -> [(&'static str, bool, bool); 8] {
    // (flag, given, honoured by mini-batch runs); full-batch runs honour the others.
    [
        ("--iterations", set.iterations.is_some(), false),
        ("--tolerance", set.tolerance.is_some(), false),
        ("--low-memory", args.low_memory, false),
        ("--epochs", set.epochs.is_some(), true),
        ("--inner-sweeps", set.inner_sweeps.is_some(), true),
        ("--gram-decay", set.gram_decay.is_some(), true),
        ("--inertia", set.inertia.is_some(), true),
        ("--alpha-growth", set.alpha_growth.is_some(), true),
    ]
}

/// Refuses a flag (or preset key) the run's mode cannot honour.
fn check_mode_flags(set: &Settings, args: &TrainArgs, minibatch: bool) -> Result<()> {
    for (flag, given, for_minibatch) in mode_flags(set, args) {
        if given && for_minibatch != minibatch {
            let (mode, instead) = match minibatch {
                true => ("a mini-batch run (--batch-size)", "it counts --epochs"),
                false => ("a full-batch run", "give --batch-size for mini-batch BCD"),
            };
            anyhow::bail!("{flag} does not apply to {mode}; {instead}");
        }
    }
    Ok(())
}

/// The mini-batch settings: the flags', over a resumed run's, over the defaults. A resumed run
/// keeps its seed, which fixes the order of its batches.
fn minibatch_options(set: &Settings, saved: Option<&MiniBatchOptions>) -> MiniBatchOptions {
    let base = saved.cloned().unwrap_or_default();
    MiniBatchOptions::default()
        .batch_size(set.batch_size.unwrap_or(base.batch_size))
        .inner_sweeps(set.inner_sweeps.unwrap_or(base.inner_sweeps))
        .seed(saved.map_or(set.seed.unwrap_or(0), |o| o.seed))
        .gram_decay(set.gram_decay.unwrap_or(base.gram_decay))
        .inertia(set.inertia.unwrap_or(base.inertia))
        .alpha_growth(set.alpha_growth.unwrap_or(base.alpha_growth))
}

/// Mini-batch BCD on `setup`'s network, resumed from `progress` when given.
fn minibatch_bcd(
    set: &Settings,
    setup: ModelSetup,
    progress: Option<checkpoint::MiniBatchProgress>,
    ranks: &Ranks,
    n: usize,
) -> Result<MiniBatchBcd> {
    // Mini-batch runs are for memory-bound data: freed buffers go back to the OS at once.
    crate::alloc::reuse_freed_memory(false);
    let options = minibatch_options(set, progress.as_ref().map(|p| &p.options));
    let mut bcd = MiniBatchBcd::new(&setup.network, setup.config, options)?
        .with_communicator(ranks.comm())?;
    if let Some(p) = progress {
        bcd = bcd.resume_at(p.epochs, p.batches);
        if !p.memory.is_empty() {
            bcd = bcd.with_memory(p.memory)?;
        }
        if !p.previous.is_empty() {
            bcd = bcd.with_previous_weights(p.previous)?;
        }
    }
    if ranks.is_root() {
        let o = bcd.options();
        println!(
            "mini-batch BCD: {n} rows in batches of {}, {} sweeps per batch, Gram decay {}, inertia {}, α growth {} per epoch, from epoch {}",
            o.batch_size, o.inner_sweeps, o.gram_decay, o.inertia, o.alpha_growth, bcd.epochs_done()
        );
    }
    Ok(bcd)
}

/// The full-batch optimizer on `setup`'s network: from a forward pass, or from the lifted
/// `state` of the checkpoint at the given path.
fn full_batch_optimizer(
    setup: ModelSetup,
    x: &Tensor,
    y: &Tensor,
    state: Option<(LiftedState, &PathBuf)>,
    low_memory: bool,
    ranks: &Ranks,
) -> Result<BcdOptimizer> {
    let (net, config, comm) = (&setup.network, setup.config, ranks.comm());
    let opt = match state {
        Some((state, path)) => {
            BcdOptimizer::from_state_distributed(net, x.clone(), y.clone(), config, state, comm)
                .with_context(|| format!("resuming from {}", path.display()))?
        }
        None => BcdOptimizer::new_distributed(net, x.clone(), y.clone(), config, comm)?,
    };
    crate::alloc::reuse_freed_memory(!low_memory);
    Ok(opt.with_product_cache(match low_memory {
        true => ProductCache::KeepFirst,
        false => ProductCache::Keep,
    }))
}

/// Runs `candle-bcd train`: full-batch or mini-batch BCD through the library's one training
/// loop.
pub fn run(mut args: TrainArgs, ranks: &Ranks) -> Result<()> {
    if let Some(path) = &args.preset {
        args.settings = std::mem::take(&mut args.settings).or(preset::load(path)?);
    }
    let set = &args.settings;
    set_threads(args.threads)?;
    let device = open_device(args.device)?;
    let ckpt = match &args.resume {
        Some(path) => Some(checkpoint::load(path, &device)?),
        None => None,
    };
    let minibatch =
        set.batch_size.is_some() || matches!(ckpt, Some(checkpoint::Checkpoint::MiniBatch(_)));
    check_mode_flags(set, &args, minibatch)?;
    // Output directories exist before any training starts.
    let outputs = [&args.metrics, &args.checkpoint];
    for file in outputs.into_iter().flatten() {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the directory of {}", file.display()))?;
        }
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the plot directory {}", dir.display()))?;
    }
    let dataset = set.dataset.unwrap_or(DatasetKind::Mnist);
    let comm = ranks.comm();
    let ds = match ranks.size() {
        1 => {
            let ds = data::load(dataset, set.data_dir.as_deref())?;
            match set.train_limit {
                Some(n) => data::take_train(&ds, n)?,
                None => ds,
            }
        }
        _ => data::load_share(dataset, set.data_dir.as_deref(), set.train_limit, &*comm)?,
    };
    let rows = ds.train_images.dim(0)?;
    // The training rows over all ranks.
    let mut n = [rows as f64];
    comm.sum_f64(&mut n);
    let n = n[0] as usize;
    let x = ds.train_images.to_device(&device)?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?.to_device(&device)?;
    if let (Some(path), Some(c)) = (&args.resume, &ckpt) {
        match c {
            checkpoint::Checkpoint::FullBatch(c) if !minibatch => c.check_compatible(
                &set.architecture(
                    image_of(set, &ds.train_images)?,
                    ds.labels,
                    Some(&c.model.architecture),
                )?,
                n,
                path,
            )?,
            checkpoint::Checkpoint::FullBatch(_) => anyhow::bail!(
                "{}: written by a full-batch run; resume it without --batch-size",
                path.display()
            ),
            _ => {}
        }
    }
    let setup = ModelSetup::new(&args, ds.labels, &x, &y, ckpt.as_ref(), &device, ranks)?;
    let model = setup.network.clone();
    let test_set = EvalSet {
        x: ds.test_images.to_device(&device)?,
        labels: ds.test_labels.clone(),
    };
    let eval = Evaluation {
        train_labels: Some(&ds.train_labels),
        test: Some(&test_set),
    };
    let defaults = TrainOptions::default();
    let opts = TrainOptions::default()
        .max_iterations(match minibatch {
            true => set.epochs.unwrap_or(1),
            false => set.iterations.unwrap_or(defaults.max_iterations),
        })
        .tolerance(set.tolerance)
        .time_limit(set.time_limit.map(std::time::Duration::from_secs_f64))
        .eval_every(
            set.eval_every
                .unwrap_or(if minibatch { 0 } else { defaults.eval_every }),
        )
        .checkpoint(args.checkpoint.clone())
        .checkpoint_every(args.checkpoint_every);
    // One of the two methods, built and borrowed for the run.
    let (mut opt, mut bcd, mut run);
    let method: &mut dyn trainer::Method = match minibatch {
        true => {
            let progress = match ckpt {
                Some(checkpoint::Checkpoint::MiniBatch(c)) => Some(c.progress),
                _ => None,
            };
            bcd = minibatch_bcd(set, setup, progress, ranks, n)?;
            run = MiniBatchRun::new(&mut bcd, &x, &y)?;
            &mut run
        }
        false => {
            let state = match (ckpt, &args.resume) {
                (Some(checkpoint::Checkpoint::FullBatch(ckpt)), Some(path)) => Some((
                    checkpoint::load_rank_state(path, &ckpt, &*comm, rows, &device)?,
                    path,
                )),
                _ => None,
            };
            opt = full_batch_optimizer(setup, &x, &y, state, args.low_memory, ranks)?;
            &mut opt
        }
    };
    // Only rank 0 reports: progress, metrics, plots and the result.
    if !ranks.is_root() {
        let summary = trainer::train(method, &model, eval, &opts, &mut trainer::NoObserver)?;
        if summary.reason.is_failure() {
            anyhow::bail!("training stopped: {}", summary.reason);
        }
        return Ok(());
    }
    let mut progress = Progress::new(args.metrics.as_deref(), args.resume.is_some())?;
    let summed = ranks.bytes_summed();
    let summary = trainer::train(method, &model, eval, &opts, &mut progress)?;
    if ranks.size() > 1 && summary.steps > 0 {
        let per_step = (ranks.bytes_summed() - summed) / summary.steps as u64;
        println!(
            "{} ranks: {:.3} MB summed over ranks per step (with its evaluation)",
            ranks.size(),
            per_step as f64 / 1e6
        );
    }
    if let Some(dir) = &args.plot {
        crate::plot::write(dir, &progress.records)?;
    }
    if summary.reason.is_failure() {
        anyhow::bail!("training stopped: {}", summary.reason);
    }
    match summary.test_accuracy {
        Some(acc) => println!("test accuracy: {acc:.4}"),
        None => println!("test accuracy: not evaluated"),
    }
    Ok(())
}

/// The shape of one training row's image: the dataset's (checked against the rows' width).
fn image_of(set: &Settings, x: &candle_core::Tensor) -> Result<Image> {
    let dataset = set.dataset.unwrap_or(DatasetKind::Mnist);
    let image = dataset.image();
    let d0 = x.dim(1)?;
    if image.len() != d0 {
        anyhow::bail!(
            "the training rows have {d0} entries, a {dataset:?} image ({image}) has {}",
            image.len()
        );
    }
    Ok(image)
}
