//! `candle-bcd train`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_bcd::data::{self, DatasetKind};
use candle_bcd::trainer::{self, EvalSet, TrainOptions};
use candle_bcd::{
    checkpoint, Activation, Architecture, BcdConfig, BcdNet, BcdOptimizer, Loss, ProductCache,
    Splitting, VConstraint, WeightInit,
};
use candle_core::DType;
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, ValueEnum};

use crate::preset::Preset;
use crate::progress::Progress;
use crate::{open_device, set_threads, DeviceArg};

/// Hidden activation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationArg {
    /// max(0, u).
    Relu,
    /// u for u ≥ 0, slope·u otherwise (see --leaky-slope).
    LeakyRelu,
    /// u (a linear network).
    Identity,
    /// 1/(1 + e^(−u)).
    Sigmoid,
    /// tanh(u).
    Tanh,
}

/// Network family.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchArg {
    /// Fully connected layers with --hidden widths.
    Mlp,
    /// Stem to --hidden width, --residual-layers residual layers, linear head.
    Resnet,
}

/// Lifted formulation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplittingArg {
    /// U and V lifted, every block exact.
    Three,
    /// V lifted, prox-linear hidden blocks.
    Two,
}

/// Loss on the network output.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossArg {
    /// ½‖V_L − Y‖² against one-hot targets.
    Squared,
    /// Softmax cross-entropy.
    CrossEntropy,
}

/// Dataset.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetArg {
    /// MNIST digits.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
    /// CIFAR-10 (binary batches data_batch_{1..5}.bin, test_batch.bin).
    Cifar10,
}

impl DatasetArg {
    /// The library's dataset kind.
    pub fn kind(self) -> DatasetKind {
        match self {
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
        }
    }
}

/// Weight initialisation.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitArg {
    /// W ~ 0.01·N(0,1), b = 0.1 (the official code).
    Official,
    /// W ~ N(0, 2/fan_in), b = 0.
    Kaiming,
    /// W ~ N(0, 2/(fan_in+fan_out)), b = 0.
    Glorot,
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

/// Options of `candle-bcd train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Directory with the IDX files (train-images-idx3-ubyte[.gz], ...); without it the
    /// dataset is downloaded from the Hugging Face hub.
    #[arg(long, env = "BCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Dataset to train on [default: mnist].
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetArg>,
    /// Hidden widths, comma separated [default: 1500,1500,1500, or the checkpoint's].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Network family [default: mlp, or the checkpoint's].
    #[arg(long, value_enum)]
    pub arch: Option<ArchArg>,
    /// Residual layers of --arch resnet [default: 2].
    #[arg(long)]
    pub residual_layers: Option<usize>,
    /// Hidden activation [default: relu].
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// Negative slope of --activation leaky-relu [default: 0.01].
    #[arg(long)]
    pub leaky_slope: Option<f64>,
    /// Number of BCD sweeps to run [default: 50].
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Activation penalty weight γ [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// Pre-activation penalty weight ρ [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub rho: Option<f64>,
    /// Proximal weight α [default: 5].
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Ridge weight λ on the weights [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Seed of the weight initialisation [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Weight initialisation [default: official].
    #[arg(long, value_enum)]
    pub init: Option<InitArg>,
    /// Head initialisation on a fresh start [default: random]; `ridge` fits the head in closed
    /// form to the initial network's features before the lifted state is set.
    #[arg(long, value_enum)]
    pub head_init: Option<HeadInitArg>,
    /// Ridge weight of --head-init ridge [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    pub head_lambda: Option<f64>,
    /// Lifted formulation [default: three].
    #[arg(long, value_enum)]
    pub splitting: Option<SplittingArg>,
    /// Constrain the hidden activations V_i ≥ 0.
    #[arg(long, conflicts_with = "v_box")]
    pub v_nonnegative: bool,
    /// Constrain the hidden activations to LO ≤ V_i ≤ HI.
    #[arg(long, num_args = 2, allow_negative_numbers = true, value_names = ["LO", "HI"])]
    pub v_box: Option<Vec<f64>>,
    /// Loss on the network output [default: squared].
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Use only the first N training samples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Evaluate train/test accuracy every K iterations, 0 = only after the last [default: 1].
    #[arg(long)]
    pub eval_every: Option<usize>,
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
    fn activation(&self) -> Activation {
        match self.activation.unwrap_or(ActivationArg::Relu) {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::LeakyRelu => Activation::LeakyRelu {
                slope: self.leaky_slope.unwrap_or(0.01),
            },
            ActivationArg::Identity => Activation::Identity,
            ActivationArg::Sigmoid => Activation::Sigmoid,
            ActivationArg::Tanh => Activation::Tanh,
        }
    }

    /// `base` with every hyperparameter given on the command line replacing its value.
    fn config(&self, base: BcdConfig) -> BcdConfig {
        BcdConfig {
            gamma: self.gamma.unwrap_or(base.gamma),
            rho: self.rho.unwrap_or(base.rho),
            alpha: self.alpha.unwrap_or(base.alpha),
            lambda: self.lambda.unwrap_or(base.lambda),
            seed: self.seed.unwrap_or(base.seed),
            init: match self.init {
                Some(InitArg::Official) => WeightInit::Official,
                Some(InitArg::Kaiming) => WeightInit::Kaiming,
                Some(InitArg::Glorot) => WeightInit::Glorot,
                None => base.init,
            },
            v_constraint: match (&self.v_box, self.v_nonnegative) {
                (Some(b), _) if b.len() == 2 => VConstraint::Box { lo: b[0], hi: b[1] },
                (_, true) => VConstraint::NonNegative,
                _ => base.v_constraint,
            },
            splitting: match self.splitting {
                Some(SplittingArg::Three) => Splitting::Three,
                Some(SplittingArg::Two) => Splitting::Two,
                None => base.splitting,
            },
            loss: match self.loss {
                Some(LossArg::Squared) => Loss::Squared,
                Some(LossArg::CrossEntropy) => Loss::CrossEntropy,
                None => base.loss,
            },
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

/// Runs `candle-bcd train`.
pub fn run(mut args: TrainArgs) -> Result<()> {
    if let Some(path) = args.preset.clone() {
        Preset::load(&path)?.apply(&mut args);
    }
    set_threads(args.threads)?;
    let device = open_device(args.device)?;
    let dataset = args.dataset.unwrap_or(DatasetArg::Mnist);
    let mut ds = data::load(dataset.kind(), args.data_dir.as_deref())?;
    if let Some(n) = args.train_limit {
        ds = data::take_train(&ds, n)?;
    }
    let (n, d0) = ds.train_images.dims2()?;
    let x = ds.train_images.to_device(&device)?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?.to_device(&device)?;
    let varmap = VarMap::new();
    let (model, opt) = match &args.resume {
        Some(path) => {
            let ckpt = checkpoint::load(path, &device)?;
            let arch = args.architecture(d0, ds.labels, Some(&ckpt.architecture))?;
            ckpt.check_compatible(&arch, n, path)?;
            ckpt.load_weights_into(&varmap)?;
            let model = BcdNet::new(&arch, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
            let config = args.config(ckpt.config.clone());
            let opt = BcdOptimizer::from_state(&varmap, &arch, x, y, config, ckpt.state)
                .with_context(|| format!("resuming from {}", path.display()))?;
            (model, opt)
        }
        None => {
            let arch = args.architecture(d0, ds.labels, None)?;
            let config = args.config(BcdConfig::default());
            config.validate()?;
            let model = BcdNet::init(&arch, &varmap, config.init, config.seed, &device)?;
            if args.head_init == Some(HeadInitArg::Ridge) {
                model.fit_head(&varmap, &x, &y, args.head_lambda.unwrap_or(1.0))?;
            }
            let opt = BcdOptimizer::new(&varmap, &arch, x, y, config)?;
            (model, opt)
        }
    };
    crate::alloc::reuse_freed_memory(!args.low_memory);
    let mut opt = opt.with_product_cache(match args.low_memory {
        true => ProductCache::KeepFirst,
        false => ProductCache::Keep,
    });
    let train_set = EvalSet {
        x: ds.train_images.to_device(&device)?,
        labels: ds.train_labels.clone(),
    };
    let test_set = EvalSet {
        x: ds.test_images.to_device(&device)?,
        labels: ds.test_labels.clone(),
    };
    let opts = TrainOptions {
        iterations: args.iterations.unwrap_or(50),
        eval_every: args.eval_every.unwrap_or(1),
        checkpoint: args.checkpoint.clone(),
        checkpoint_every: args.checkpoint_every,
    };
    for file in [&args.metrics, &args.checkpoint].into_iter().flatten() {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the directory of {}", file.display()))?;
        }
    }
    let mut progress = Progress::new(args.metrics.as_deref(), args.resume.is_some())?;
    let summary = trainer::train(
        &mut opt,
        &model,
        Some(&train_set),
        Some(&test_set),
        &opts,
        &mut progress,
    )?;
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
