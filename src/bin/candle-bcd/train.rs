//! `candle-bcd train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_bcd::data::{self, DatasetKind};
use candle_bcd::trainer::{self, EvalSet, Evaluation, TrainOptions};
use candle_bcd::{
    checkpoint, Activation, Architecture, BcdConfig, BcdNet, BcdOptimizer, Layers, Loss,
    ProductCache, Splitting, VConstraint, WeightInit,
};
use candle_core::DType;
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};

use crate::preset;
use crate::progress::Progress;
use crate::ranks::Ranks;
use crate::{open_device, set_threads, DeviceArg};

/// Network family.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchArg {
    /// Fully connected layers with --hidden widths.
    Mlp,
    /// Stem to --hidden width, --residual-layers residual layers, linear head.
    Resnet,
}

/// How the linear head starts.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadInitArg {
    /// Like the other layers (--init).
    Random,
    /// Ridge least squares of the one-hot targets on the initial hidden features (--head-lambda).
    Ridge,
}

/// Declares [`Settings`] once: each field is a `train` flag and a preset key of the same name
/// (every one optional), and [`Settings::or`] fills the fields not given from another source.
macro_rules! settings {
    ($($(#[$attr:meta])* $field:ident: $ty:ty,)*) => {
        /// The settings of `train` that a preset may also give.
        #[derive(Args, Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $($(#[$attr])* pub $field: Option<$ty>,)*
        }

        impl Settings {
            /// `self`, with every field it does not set taken from `base`.
            pub fn or(self, base: Settings) -> Settings {
                Settings { $($field: self.$field.or(base.$field),)* }
            }
        }
    };
}

settings! {
    /// Directory with the dataset files (MNIST-like: train-images-idx3-ubyte[.gz], ...); without
    /// it the dataset is downloaded from the Hugging Face hub.
    #[arg(long, env = "BCD_DATA_DIR")]
    data_dir: PathBuf,
    /// Dataset to train on: mnist, fashion-mnist or cifar10 [default: mnist].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    dataset: DatasetKind,
    /// Hidden widths, comma separated [default: 1500,1500,1500, or the checkpoint's].
    #[arg(long, value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Network family [default: mlp, or the checkpoint's].
    #[arg(long, value_enum)]
    arch: ArchArg,
    /// Residual layers of --arch resnet [default: 2].
    #[arg(long)]
    residual_layers: usize,
    /// Hidden activation: relu, leaky-relu, identity, sigmoid or tanh [default: relu].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    activation: Activation,
    /// Negative slope of --activation leaky-relu [default: 0.01].
    #[arg(long)]
    leaky_slope: f64,
    /// Loss on the network output: squared or cross-entropy [default: squared].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    loss: Loss,
    /// Lifted formulation: three (U and V lifted, every block exact) or two (V lifted,
    /// prox-linear hidden blocks) [default: three].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    splitting: Splitting,
    /// Most BCD sweeps to run [default: 50].
    #[arg(long)]
    iterations: usize,
    /// Stop once a sweep lowers the objective by less than this fraction of its value.
    #[arg(long)]
    tolerance: f64,
    /// Stop after the first sweep that ends past this many seconds.
    #[arg(long, value_name = "SECONDS")]
    time_limit: f64,
    /// Activation penalty weight γ [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    gamma: f64,
    /// Pre-activation penalty weight ρ [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    rho: f64,
    /// Proximal weight α [default: 5].
    #[arg(long, allow_negative_numbers = true)]
    alpha: f64,
    /// Ridge weight λ on the weights [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    lambda: f64,
    /// Seed of the weight initialisation [default: 0].
    #[arg(long)]
    seed: u64,
    /// Weight initialisation: official (W ~ 0.01·N(0,1), b = 0.1), kaiming or glorot
    /// [default: official].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    init: WeightInit,
    /// Head initialisation on a fresh start [default: random]; `ridge` fits the head in closed
    /// form to the initial network's features before the lifted state is set.
    #[arg(long, value_enum)]
    head_init: HeadInitArg,
    /// Ridge weight of --head-init ridge [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    head_lambda: f64,
    /// Use only the first N training samples.
    #[arg(long)]
    train_limit: usize,
    /// Evaluate train/test accuracy every K iterations, 0 = only after the last [default: 1];
    /// with --batch-size: test accuracy every K batches, 0 = at the end of each epoch
    /// [default: 0].
    #[arg(long)]
    eval_every: usize,
    /// Mini-batch BCD: exact sweeps on batches of this many rows, each batch's lifted state set
    /// by a forward pass (memory independent of the number of rows) [default: full batch].
    #[arg(long)]
    batch_size: usize,
    /// Epochs of mini-batch BCD (with --batch-size) [default: 1].
    #[arg(long)]
    epochs: usize,
    /// Exact sweeps on each batch (with --batch-size) [default: 1].
    #[arg(long)]
    inner_sweeps: usize,
    /// Decay β in [0, 1) of the weight blocks' memory of earlier batches (with --batch-size):
    /// their normal equations add β-decayed sums of earlier batches [default: 0, none].
    #[arg(long)]
    gram_decay: f64,
    /// Inertia μ in [0, 1) (with --batch-size): each batch starts from the weights extrapolated
    /// by μ times the last batch's move [default: 0, none].
    #[arg(long)]
    inertia: f64,
}

/// Reads a preset value through the library's `FromStr`, so presets and flags share spelling.
fn parsed<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let name: Option<String> = serde::Deserialize::deserialize(d)?;
    name.map(|s| s.parse().map_err(serde::de::Error::custom))
        .transpose()
}

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

impl Settings {
    fn activation(&self) -> Activation {
        match self.activation.unwrap_or_default() {
            Activation::LeakyRelu { slope } => Activation::LeakyRelu {
                slope: self.leaky_slope.unwrap_or(slope),
            },
            other => other,
        }
    }

    /// `base` with every hyperparameter given here replacing its value.
    fn config(&self, base: BcdConfig, v_constraint: Option<VConstraint>) -> BcdConfig {
        BcdConfig {
            gamma: self.gamma.unwrap_or(base.gamma),
            rho: self.rho.unwrap_or(base.rho),
            alpha: self.alpha.unwrap_or(base.alpha),
            lambda: self.lambda.unwrap_or(base.lambda),
            v_constraint: v_constraint.unwrap_or(base.v_constraint),
            splitting: self.splitting.unwrap_or(base.splitting),
            loss: self.loss.unwrap_or(base.loss),
        }
    }

    /// The architecture from the flags; when resuming without --hidden/--arch, the checkpoint's.
    fn architecture(
        &self,
        input: usize,
        output: usize,
        checkpoint: Option<&Architecture>,
    ) -> Result<Architecture> {
        if let (Some(arch), None, None) = (checkpoint, &self.hidden, self.arch) {
            return Ok(arch.clone());
        }
        let hidden = self
            .hidden
            .clone()
            .unwrap_or_else(|| vec![1500, 1500, 1500]);
        match self.arch.unwrap_or(ArchArg::Mlp) {
            ArchArg::Mlp => {
                let widths: Vec<usize> = std::iter::once(input)
                    .chain(hidden)
                    .chain(std::iter::once(output))
                    .collect();
                Ok(Architecture::mlp(&widths, self.activation())?)
            }
            ArchArg::Resnet => {
                let [width] = hidden[..] else {
                    anyhow::bail!("--arch resnet takes one --hidden width, got {hidden:?}");
                };
                let k = self.residual_layers.unwrap_or(2);
                Ok(Architecture::resnet(
                    input,
                    width,
                    k,
                    output,
                    self.activation(),
                )?)
            }
        }
    }
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
    /// The network (its weights are the `Var`s of `layers`).
    pub model: BcdNet,
    /// The layers the optimizer updates.
    pub layers: Layers,
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
        let d0 = x.dim(1)?;
        let varmap = VarMap::new();
        let arch = set.architecture(d0, classes, ckpt.map(|c| &c.architecture))?;
        let (model, config) =
            match ckpt {
                Some(ckpt) => {
                    if ckpt.architecture != arch {
                        anyhow::bail!(
                        "{}: architecture mismatch: the checkpoint has widths {:?}, requested {:?}",
                        args.resume.as_ref().map_or(String::new(), |p| p.display().to_string()),
                        ckpt.architecture.widths(),
                        arch.widths()
                    );
                    }
                    ckpt.load_weights_into(&varmap)?;
                    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
                    let config = set.config(ckpt.config.clone(), args.v_constraint());
                    (BcdNet::new(&arch, vb)?, config)
                }
                None => {
                    let config = set.config(BcdConfig::default(), args.v_constraint());
                    config.validate()?;
                    let init = set.init.unwrap_or_default();
                    let model = BcdNet::init(&arch, &varmap, init, set.seed.unwrap_or(0), device)?;
                    if set.head_init == Some(HeadInitArg::Ridge) {
                        let lambda = set.head_lambda.unwrap_or(1.0);
                        model.fit_head_distributed(&varmap, x, y, lambda, &*ranks.comm())?;
                    }
                    (model, config)
                }
            };
        let layers = Layers::of_architecture(&varmap, &arch)?;
        Ok(Self {
            model,
            layers,
            config,
        })
    }
}

/// Runs `candle-bcd train`.
pub fn run(mut args: TrainArgs, ranks: &Ranks) -> Result<()> {
    if let Some(path) = &args.preset {
        args.settings = std::mem::take(&mut args.settings).or(preset::load(path)?);
    }
    let set = &args.settings;
    set_threads(args.threads)?;
    let device = open_device(args.device)?;
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
    let (rows, d0) = ds.train_images.dims2()?;
    // The training rows over all ranks.
    let mut n = [rows as f64];
    comm.sum_f64(&mut n);
    let n = n[0] as usize;
    let x = ds.train_images.to_device(&device)?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?.to_device(&device)?;
    let ckpt = match &args.resume {
        Some(path) => Some(checkpoint::load(path, &device)?),
        None => None,
    };
    let minibatch =
        set.batch_size.is_some() || ckpt.as_ref().is_some_and(|c| c.minibatch.is_some());
    if let (Some(path), Some(c)) = (&args.resume, &ckpt) {
        if c.minibatch.is_some() != minibatch {
            anyhow::bail!(
                "{}: written by a full-batch run; resume it without --batch-size",
                path.display()
            );
        }
        if !minibatch {
            c.check_compatible(
                &set.architecture(d0, ds.labels, Some(&c.architecture))?,
                n,
                path,
            )?;
        }
    }
    let setup = ModelSetup::new(&args, ds.labels, &x, &y, ckpt.as_ref(), &device, ranks)?;
    if minibatch {
        let progress = ckpt.and_then(|c| c.minibatch);
        return crate::minibatch::run(&args, setup, &ds, x, y, progress, ranks);
    }
    let model = setup.model;
    let opt = match (ckpt, &args.resume) {
        (Some(ckpt), Some(path)) => {
            let state = checkpoint::load_rank_state(path, &ckpt, &*comm, rows, &device)?;
            BcdOptimizer::from_state_distributed(&setup.layers, x, y, setup.config, state, comm)
                .with_context(|| format!("resuming from {}", path.display()))?
        }
        _ => BcdOptimizer::new_distributed(&setup.layers, x, y, setup.config, comm)?,
    };
    crate::alloc::reuse_freed_memory(!args.low_memory);
    let mut opt = opt.with_product_cache(match args.low_memory {
        true => ProductCache::KeepFirst,
        false => ProductCache::Keep,
    });
    let test_set = EvalSet {
        x: ds.test_images.to_device(&device)?,
        labels: ds.test_labels.clone(),
    };
    let defaults = TrainOptions::default();
    let opts = TrainOptions {
        max_sweeps: set.iterations.unwrap_or(defaults.max_sweeps),
        tolerance: set.tolerance,
        time_limit: set.time_limit.map(std::time::Duration::from_secs_f64),
        eval_every: set.eval_every.unwrap_or(defaults.eval_every),
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
    };
    let reported = match ranks.is_root() {
        true => [&args.metrics, &args.checkpoint],
        false => [&None, &args.checkpoint],
    };
    for file in reported.into_iter().flatten() {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the directory of {}", file.display()))?;
        }
    }
    let eval = Evaluation {
        train_labels: Some(&ds.train_labels),
        test: Some(&test_set),
    };
    // Only rank 0 reports: progress, metrics, plots and the result.
    if !ranks.is_root() {
        let summary = trainer::train(&mut opt, &model, eval, &opts, &mut trainer::NoObserver)?;
        if let trainer::TerminationReason::Diverged(why) = &summary.reason {
            anyhow::bail!("training stopped: {why}");
        }
        return Ok(());
    }
    let mut progress = Progress::new(args.metrics.as_deref(), args.resume.is_some())?;
    let (summed, start) = (ranks.bytes_summed(), opt.iteration());
    let summary = trainer::train(&mut opt, &model, eval, &opts, &mut progress)?;
    if ranks.size() > 1 && summary.iterations > start {
        let per_sweep = (ranks.bytes_summed() - summed) / (summary.iterations - start) as u64;
        println!(
            "{} ranks: {:.3} MB summed over ranks per sweep (with its evaluation)",
            ranks.size(),
            per_sweep as f64 / 1e6
        );
    }
    if let Some(dir) = &args.plot {
        crate::plot::write(dir, &progress.records)?;
    }
    if let trainer::TerminationReason::Diverged(why) = &summary.reason {
        anyhow::bail!("training stopped: {why}");
    }
    match summary.test_accuracy {
        Some(acc) => println!("test accuracy: {acc:.4}"),
        None => println!("test accuracy: not evaluated"),
    }
    Ok(())
}
