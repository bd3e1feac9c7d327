//! The settings of `train` that a preset may also give: each is a flag and a preset key of the
//! same name, and what they build (the architecture, the hyperparameters).

use std::path::PathBuf;

use anyhow::Result;
use candle_bcd::data::DatasetKind;
use candle_bcd::{
    Activation, Architecture, BcdConfig, Branch, Image, Loss, Splitting, Stage, VConstraint,
    WeightInit,
};
use clap::{Args, ValueEnum};

/// Network family.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchArg {
    /// Fully connected layers with --hidden widths.
    Mlp,
    /// Stem to --hidden width, --residual-layers residual layers, linear head.
    Resnet,
    /// Convolutional: the --layers stages on the dataset's images, then a linear head.
    Cnn,
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

/// How the residual branches start.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResidualInitArg {
    /// As --init gives them.
    Plain,
    /// Weights scaled by 1/√K (K residual layers).
    Depth,
    /// Weights zero: each branch starts at its bias.
    Zero,
}

impl ResidualInitArg {
    /// The factor for a network of `k` residual layers.
    pub fn factor(self, k: usize) -> f64 {
        match self {
            ResidualInitArg::Plain => 1.0,
            ResidualInitArg::Depth => 1.0 / (k.max(1) as f64).sqrt(),
            ResidualInitArg::Zero => 0.0,
        }
    }
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
    /// Branch of each residual layer of --arch resnet or cnn: single (V + σ(VWᵀ + b)) or pair (a
    /// hidden layer, then a linear one: V + σ(VW₁ᵀ + b₁)W₂ᵀ + b₂; with --arch cnn each resC
    /// closes a block opened by the convolution before it) [default: single].
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    branch: Branch,
    /// Stages of --arch cnn, comma separated, from the input: convC[kK][sS][pP] (C channels,
    /// K×K kernel [3], stride S [1], padding P [K/2]), resC (a residual 3×3 convolution keeping
    /// C channels), poolP (P×P average pooling), fcW (linear, W outputs); the linear head to
    /// the classes is added [default: conv32,pool2,conv64,pool2].
    #[arg(long)]
    layers: String,
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
    /// Most conjugate-gradient iterations of an activation block under an image layer
    /// [default: 10].
    #[arg(long)]
    cg_iterations: usize,
    /// Relative residual that ends those iterations early [default: 0.001].
    #[arg(long)]
    cg_tolerance: f64,
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
    /// Ratio q of consecutive layers' weights in the objective: layer i of L weighs q^(i−L), so
    /// a hidden activation block follows the next layer q times more than its own activation
    /// [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    penalty_growth: f64,
    /// Proximal weight of the lifted blocks (output V, pre-activations U) alone; the weight
    /// blocks keep --alpha [default: --alpha].
    #[arg(long, allow_negative_numbers = true)]
    alpha_lifted: f64,
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
    /// Residual branches on a fresh start: plain (as --init gives them), depth (scaled by
    /// 1/√K for K residual layers, so deep ResNets start at a moderate scale) or zero
    /// [default: plain].
    #[arg(long, value_enum)]
    residual_init: ResidualInitArg,
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
    /// Growth g > 0 of --alpha per epoch (with --batch-size): epoch e uses α·g^e for the weight
    /// blocks, a decaying step; the lifted blocks keep --alpha-lifted [default: 1, none].
    #[arg(long)]
    alpha_growth: f64,
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

impl Settings {
    pub fn activation(&self) -> Activation {
        match self.activation.unwrap_or_default() {
            Activation::LeakyRelu { slope } => Activation::LeakyRelu {
                slope: self.leaky_slope.unwrap_or(slope),
            },
            other => other,
        }
    }

    /// `base` with every hyperparameter given here replacing its value.
    pub fn config(&self, base: BcdConfig, v_constraint: Option<VConstraint>) -> BcdConfig {
        let v_constraint = v_constraint.unwrap_or(base.v_constraint);
        BcdConfig::default()
            .gamma(self.gamma.unwrap_or(base.gamma))
            .rho(self.rho.unwrap_or(base.rho))
            .alpha(self.alpha.unwrap_or(base.alpha))
            .lambda(self.lambda.unwrap_or(base.lambda))
            .v_constraint(v_constraint)
            .splitting(self.splitting.unwrap_or(base.splitting))
            .loss(self.loss.unwrap_or(base.loss))
            .cg_iterations(self.cg_iterations.unwrap_or(base.cg_iterations))
            .cg_tolerance(self.cg_tolerance.unwrap_or(base.cg_tolerance))
            .penalty_growth(self.penalty_growth.unwrap_or(base.penalty_growth))
            .alpha_lifted(self.alpha_lifted.or(base.alpha_lifted))
    }

    /// The architecture from the flags; when resuming without --hidden/--arch/--layers, the
    /// checkpoint's. `image` is the shape of one input row's image (`input` entries).
    pub fn architecture(
        &self,
        image: Image,
        output: usize,
        checkpoint: Option<&Architecture>,
    ) -> Result<Architecture> {
        if let (Some(arch), None, None, None, None) = (
            checkpoint,
            &self.hidden,
            self.arch,
            &self.layers,
            self.branch,
        ) {
            return Ok(arch.clone());
        }
        let input = image.len();
        if self.layers.is_some() && self.arch != Some(ArchArg::Cnn) {
            anyhow::bail!("--layers describes the stages of --arch cnn");
        }
        if self.branch.is_some() && !matches!(self.arch, Some(ArchArg::Resnet | ArchArg::Cnn)) {
            anyhow::bail!("--branch shapes the residual layers of --arch resnet or --arch cnn");
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
                let branch = self.branch.unwrap_or_default();
                Ok(Architecture::resnet_with(
                    input,
                    width,
                    k,
                    branch,
                    output,
                    self.activation(),
                )?)
            }
            ArchArg::Cnn => {
                if self.hidden.is_some() {
                    anyhow::bail!("--arch cnn takes its stages from --layers, not --hidden");
                }
                let spec = self
                    .layers
                    .as_deref()
                    .unwrap_or("conv32,pool2,conv64,pool2");
                let (mut stages, mut residual) = Stage::parse_list(spec)?;
                stages.push(Stage::Linear(output));
                residual.push(false);
                Ok(Architecture::cnn(image, &stages, self.activation())?
                    .with_branch(self.branch.unwrap_or_default())?
                    .with_residual(residual)?)
            }
        }
    }
}
