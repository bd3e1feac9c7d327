//! Network architecture descriptions.
//!
//! An MLP with widths `d_0 … d_L` has `L` affine layers `U_i = V_{i−1} W_iᵀ + 1 b_iᵀ` with
//! `W_i ∈ R^{d_i × d_{i−1}}` (Candle's `[out, in]` layout); hidden layers apply the
//! activation `σ`, the output layer is linear. Layer `i` (1-based in the math) is stored under
//! the candle-nn prefix `layers.{i−1}`, so `layers.0.weight` is `W_1`.
//!
//! A fully connected ResNet is a stem layer (input → width), `K` residual layers
//! `V_i = V_{i−1} + σ(U_i)` of constant width, and a linear head.
//!
//! A convolutional network ([`Architecture::cnn`]) has image layers: layer `i` reads its input
//! row as an image `[C, H, W]`, average-pools it and applies a convolution (weight
//! `[out, C, k, k]`, one bias per output channel) or, flattened, a linear map
//! ([`Spatial`]). Its lifted rows are the images flattened, so `d_i = C_i·H_i·W_i`.

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::conv::{Conv2d, Image, Spatial};
use crate::error::{BcdError, Result};

/// One stage of a convolutional network, from the input ([`Architecture::cnn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A convolution layer (then the activation, unless it is the last layer).
    Conv2d(Conv2d),
    /// Average pooling by `p × p` windows, stride `p`: part of the next layer's map, with no
    /// lifted variables of its own.
    AvgPool(usize),
    /// A linear layer with this many outputs on the flattened image (or on the previous
    /// linear layer's output).
    Linear(usize),
}

impl Stage {
    /// Stages from their short spelling, comma separated: `convC[kK][sS][pP]` (`C` channels, a
    /// `K × K` kernel (3), stride `S` (1), padding `P` (`K/2`)), `resC` (a residual 3×3
    /// convolution keeping `C` channels), `poolP` (`P × P` average pooling), `fcW` (linear, `W`
    /// outputs). Returns the stages and, per layer (poolings excluded), whether it is residual,
    /// for [`Architecture::cnn`] and [`Architecture::with_residual`].
    ///
    /// ```
    /// use candle_bcd::{Conv2d, Stage};
    /// let (stages, residual) = Stage::parse_list("conv16k5,pool2,res16,fc10").unwrap();
    /// assert_eq!(stages[0], Stage::Conv2d(Conv2d::same(16, 5)));
    /// assert_eq!(residual, [false, true, false]);
    /// ```
    pub fn parse_list(spec: &str) -> Result<(Vec<Stage>, Vec<bool>)> {
        let (mut stages, mut residual) = (Vec::new(), Vec::new());
        for item in spec.split(',').map(str::trim) {
            let bad = || {
                BcdError::InvalidArchitecture(format!(
                    "cannot read the stage {item:?} (convC[kK][sS][pP], resC, poolP, fcW)"
                ))
            };
            let number = |s: &str| s.parse::<usize>().map_err(|_| bad());
            if let Some(rest) = item.strip_prefix("pool") {
                stages.push(Stage::AvgPool(number(rest)?));
                continue;
            }
            let (stage, res) = if let Some(rest) = item.strip_prefix("fc") {
                (Stage::Linear(number(rest)?), false)
            } else if let Some(rest) = item.strip_prefix("res") {
                (Stage::Conv2d(Conv2d::same(number(rest)?, 3)), true)
            } else if let Some(rest) = item.strip_prefix("conv") {
                (Stage::Conv2d(parse_conv(rest).ok_or_else(bad)?), false)
            } else {
                return Err(bad());
            };
            stages.push(stage);
            residual.push(res);
        }
        Ok((stages, residual))
    }
}

/// `C[kK][sS][pP]` (the part of a `conv` stage after its name).
fn parse_conv(spec: &str) -> Option<Conv2d> {
    let mut numbers = spec.split(|c: char| c.is_ascii_alphabetic());
    let channels = numbers.next()?.parse().ok()?;
    let mut conv = Conv2d::same(channels, 3);
    let mut padding = None;
    for (letter, value) in spec.chars().filter(char::is_ascii_alphabetic).zip(numbers) {
        let value = value.parse().ok()?;
        match letter {
            'k' => conv.kernel = value,
            's' => conv.stride = value,
            'p' => padding = Some(value),
            _ => return None,
        }
    }
    conv.padding = padding.unwrap_or(conv.kernel / 2);
    Some(conv)
}

/// The form of the branch of every residual layer ([`Architecture::with_branch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Branch {
    /// `V_i = V_{i−1} + σ(U_i)`: the residual layer is the whole branch.
    #[default]
    Single,
    /// `V_i = V_{i−2} + U_i` after `V_{i−1} = σ(U_{i−1})`: the branch is the layer before the
    /// residual layer (activated) and the residual layer itself, linear — a ResNet's two-layer
    /// block `x + W₂σ(W₁x + b₁) + b₂` without an activation after the sum; in a convolutional
    /// network, two convolutions that keep their image (a basic block).
    Pair,
}

impl Branch {
    fn is_single(&self) -> bool {
        *self == Branch::Single
    }

    /// Layers per branch: 1 or 2.
    pub fn layers(self) -> usize {
        match self {
            Branch::Single => 1,
            Branch::Pair => 2,
        }
    }

    /// The residual flags of a stem, `k` residual branches of this form and a head.
    fn residual_flags(self, k: usize) -> Vec<bool> {
        let per = self.layers();
        (0..per * k + 2)
            .map(|l| l > 0 && l % per == 0 && l <= per * k)
            .collect()
    }
}

impl std::fmt::Display for Branch {
    /// The name [`FromStr`](std::str::FromStr) reads: `single` or `pair`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Branch::Single => "single",
            Branch::Pair => "pair",
        })
    }
}

impl std::str::FromStr for Branch {
    type Err = BcdError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "single" => Ok(Branch::Single),
            "pair" => Ok(Branch::Pair),
            _ => Err(BcdError::UnknownValue {
                setting: "branch",
                value: s.to_string(),
                expected: "single, pair",
            }),
        }
    }
}

/// A fully connected network: widths and hidden activation. Deserialisation validates like
/// [`Architecture::mlp`], so a corrupt description in a file is an error, not a panic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ArchitectureSpec")]
pub struct Architecture {
    widths: Vec<usize>,
    activation: Activation,
    /// `residual[l]`: layer index `l` computes `V = V_in + σ(U)`. Empty for an MLP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    residual: Vec<bool>,
    /// `spatial[l]`: layer index `l` is an image layer. Empty for a fully connected network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    spatial: Vec<Option<Spatial>>,
    /// The residual layers' branch form.
    #[serde(default, skip_serializing_if = "Branch::is_single")]
    branch: Branch,
}

/// Unvalidated serialised form of [`Architecture`].
#[derive(Deserialize)]
struct ArchitectureSpec {
    widths: Vec<usize>,
    activation: Activation,
    #[serde(default)]
    residual: Vec<bool>,
    #[serde(default)]
    spatial: Vec<Option<Spatial>>,
    #[serde(default)]
    branch: Branch,
}

impl TryFrom<ArchitectureSpec> for Architecture {
    type Error = BcdError;
    fn try_from(spec: ArchitectureSpec) -> Result<Self> {
        Architecture::mlp(&spec.widths, spec.activation)?
            .with_spatial(spec.spatial)?
            .with_branch(spec.branch)?
            .with_residual(spec.residual)
    }
}

impl Architecture {
    /// An MLP `d_0 → d_1 → … → d_L` with activation `σ` after every hidden layer.
    ///
    /// Errors if there are fewer than two widths, a width is zero, or the activation's
    /// parameters are invalid.
    pub fn mlp(widths: &[usize], activation: Activation) -> Result<Self> {
        if widths.len() < 2 {
            return Err(BcdError::InvalidArchitecture(format!(
                "an MLP needs at least an input and an output width, got {widths:?}"
            )));
        }
        if let Some(i) = widths.iter().position(|&w| w == 0) {
            return Err(BcdError::InvalidArchitecture(format!(
                "width d_{i} is zero in {widths:?}"
            )));
        }
        activation.validate()?;
        Ok(Self {
            widths: widths.to_vec(),
            activation,
            residual: Vec::new(),
            spatial: Vec::new(),
            branch: Branch::Single,
        })
    }

    /// A convolutional network on input images `input`: the `stages` in order, each
    /// [`Stage::Conv2d`] and [`Stage::Linear`] a layer, each [`Stage::AvgPool`] pooling the
    /// next layer's input. The activation follows every layer but the last, which must be a
    /// layer (not a pooling). The input rows are the images flattened (`C·H·W` wide).
    ///
    /// ```
    /// use candle_bcd::{Activation, Architecture, Conv2d, Image, Stage};
    /// # fn main() -> candle_bcd::Result<()> {
    /// let arch = Architecture::cnn(
    ///     Image::new(1, 28, 28),
    ///     &[
    ///         Stage::Conv2d(Conv2d::same(16, 3)),
    ///         Stage::AvgPool(2),
    ///         Stage::Conv2d(Conv2d::same(32, 3)),
    ///         Stage::AvgPool(2),
    ///         Stage::Linear(10),
    ///     ],
    ///     Activation::Relu,
    /// )?;
    /// assert_eq!(arch.widths(), [784, 16 * 28 * 28, 32 * 14 * 14, 10]);
    /// assert_eq!(arch.weight_shape(1), [32, 16, 3, 3]);
    /// # Ok(()) }
    /// ```
    ///
    /// Errors name the stage whose sizes do not fit (a kernel larger than its padded input, a
    /// pooling that does not divide the image, a convolution after a linear layer, a trailing
    /// pooling).
    pub fn cnn(input: Image, stages: &[Stage], activation: Activation) -> Result<Self> {
        let mut widths = vec![input.len()];
        let mut spatial = Vec::new();
        let mut image = Some(input);
        let mut pool = 1;
        for (k, stage) in stages.iter().enumerate() {
            let err = |reason: &str| {
                Err(BcdError::InvalidArchitecture(format!(
                    "stage {k} ({stage:?}): {reason}"
                )))
            };
            match (*stage, image) {
                (Stage::AvgPool(0), _) => return err("a pooling window must be > 0"),
                (Stage::AvgPool(p), Some(_)) => pool *= p,
                (Stage::AvgPool(_), None) => {
                    return err("pooling needs an image, not a linear layer's output")
                }
                (Stage::Conv2d(_), None) => {
                    return err("a convolution cannot follow a linear layer")
                }
                (Stage::Conv2d(conv), Some(img)) => {
                    let s = Spatial {
                        input: img,
                        pool,
                        conv: Some(conv),
                    };
                    s.validate(&format!("{}", spatial.len()))?;
                    let out = s.output().unwrap_or(img);
                    widths.push(out.len());
                    spatial.push(Some(s));
                    image = Some(out);
                    pool = 1;
                }
                (Stage::Linear(m), img) => {
                    let s = img.map(|img| Spatial {
                        input: img,
                        pool,
                        conv: None,
                    });
                    if let Some(s) = &s {
                        s.validate(&format!("{}", spatial.len()))?;
                    }
                    widths.push(m);
                    spatial.push(s);
                    image = None;
                    pool = 1;
                }
            }
        }
        if pool != 1 {
            return Err(BcdError::InvalidArchitecture(
                "the last stage is a pooling: a network ends with a layer".into(),
            ));
        }
        Self::mlp(&widths, activation)?.with_spatial(spatial)
    }

    /// A convolutional ResNet on input images `input`: a stem convolution to `channels`
    /// channels, `residual_layers` residual convolutions `V_i = V_{i−1} + σ(C_{W_i}(V_{i−1}) +
    /// b_i)` (all `3 × 3`, stride 1, padding 1, so every image keeps its size), average pooling
    /// by `pool`, and a linear head to `output` classes.
    pub fn conv_resnet(
        input: Image,
        channels: usize,
        residual_layers: usize,
        pool: usize,
        output: usize,
        activation: Activation,
    ) -> Result<Self> {
        let branch = Branch::Single;
        Self::conv_resnet_with(
            input,
            channels,
            residual_layers,
            branch,
            pool,
            output,
            activation,
        )
    }

    /// [`Self::conv_resnet`] with branches of the form `branch`: with [`Branch::Pair`] each
    /// residual layer is a basic block `V + C₂(σ(C₁(V) + b₁)) + b₂` of two `3 × 3` convolutions.
    ///
    /// ```
    /// use candle_bcd::{Activation, Architecture, Branch, Image};
    /// let image = Image::new(1, 28, 28);
    /// let arch =
    ///     Architecture::conv_resnet_with(image, 16, 2, Branch::Pair, 4, 10, Activation::Relu)
    ///         .unwrap();
    /// assert_eq!(arch.num_layers(), 6); // stem, two blocks of two, head
    /// assert_eq!(arch.weight_shape(2), [16, 16, 3, 3]);
    /// assert!(arch.is_residual(2) && arch.is_residual(4) && !arch.is_residual(3));
    /// ```
    pub fn conv_resnet_with(
        input: Image,
        channels: usize,
        residual_layers: usize,
        branch: Branch,
        pool: usize,
        output: usize,
        activation: Activation,
    ) -> Result<Self> {
        let convs = branch.layers() * residual_layers + 1;
        let mut stages = vec![Stage::Conv2d(Conv2d::same(channels, 3)); convs];
        stages.extend([Stage::AvgPool(pool), Stage::Linear(output)]);
        Self::cnn(input, &stages, activation)?
            .with_branch(branch)?
            .with_residual(branch.residual_flags(residual_layers))
    }

    /// Sets the image layers (see [`Spatial`]) and checks that they fit the widths and each
    /// other.
    fn with_spatial(mut self, spatial: Vec<Option<Spatial>>) -> Result<Self> {
        if spatial.iter().all(Option::is_none) {
            self.spatial = Vec::new();
            return Ok(self);
        }
        if spatial.len() != self.num_layers() {
            return Err(BcdError::InvalidArchitecture(format!(
                "{} image-layer entries for {} layers",
                spatial.len(),
                self.num_layers()
            )));
        }
        for (l, s) in spatial.iter().enumerate() {
            let Some(s) = s else { continue };
            s.validate(&l.to_string())?;
            let (n, m) = self.layer_dims(l);
            let out = s.output().map_or(m, |o| o.len());
            if s.input.len() != n || out != m {
                return Err(BcdError::InvalidArchitecture(format!(
                    "layer {l}: its image map {} → {out} does not fit the widths {n} → {m}",
                    s.input.len()
                )));
            }
            if let Some(prev) = l
                .checked_sub(1)
                .and_then(|k| spatial[k])
                .and_then(|p| p.output())
            {
                if prev != s.input {
                    return Err(BcdError::InvalidArchitecture(format!(
                        "layer {l} reads a {} image, layer {} writes {prev}",
                        s.input,
                        l - 1
                    )));
                }
            }
        }
        self.spatial = spatial;
        Ok(self)
    }

    /// The same network with hidden activation `activation`.
    pub fn with_activation(mut self, activation: Activation) -> Result<Self> {
        activation.validate()?;
        self.activation = activation;
        Ok(self)
    }

    /// A fully connected ResNet: stem `input → width`, `residual_layers` residual layers of
    /// width `width`, and a linear head `width → output`.
    pub fn resnet(
        input: usize,
        width: usize,
        residual_layers: usize,
        output: usize,
        activation: Activation,
    ) -> Result<Self> {
        Self::resnet_with(
            input,
            width,
            residual_layers,
            Branch::Single,
            output,
            activation,
        )
    }

    /// [`Self::resnet`] with branches of the form `branch`: with [`Branch::Pair`] each residual
    /// layer follows a hidden layer of width `width` that opens its branch.
    ///
    /// ```
    /// use candle_bcd::{Activation, Architecture, Branch};
    /// let arch = Architecture::resnet_with(784, 64, 2, Branch::Pair, 10, Activation::Relu).unwrap();
    /// assert_eq!(arch.widths(), [784, 64, 64, 64, 64, 64, 10]);
    /// assert!(arch.is_residual(2) && arch.is_residual(4) && !arch.is_residual(3));
    /// ```
    pub fn resnet_with(
        input: usize,
        width: usize,
        residual_layers: usize,
        branch: Branch,
        output: usize,
        activation: Activation,
    ) -> Result<Self> {
        let per = branch.layers();
        let mut widths = vec![input];
        widths.extend(std::iter::repeat_n(width, per * residual_layers + 1));
        widths.push(output);
        Self::mlp(&widths, activation)?
            .with_branch(branch)?
            .with_residual(branch.residual_flags(residual_layers))
    }

    /// The same network with residual branches of the form `branch` (the residual layers are
    /// checked again against it). In a convolutional network a two-layer branch is two image
    /// layers that keep their image, as in a ResNet's basic block `x + conv₂(σ(conv₁(x)))`.
    pub fn with_branch(mut self, branch: Branch) -> Result<Self> {
        self.branch = branch;
        let residual = std::mem::take(&mut self.residual);
        self.with_residual(residual)
    }

    /// Marks layers as residual (`residual[l]` for layer index `l`): `V = V_in + σ(U)`. Each
    /// must be hidden and keep its width; an image layer must also keep its image (no pooling,
    /// same channels and size).
    pub fn with_residual(self, residual: Vec<bool>) -> Result<Self> {
        self.with_residual_named(residual, |l| l.to_string())
    }

    /// [`Self::with_residual`], its errors calling layer index `l` by `name(l)`.
    pub(crate) fn with_residual_named(
        mut self,
        residual: Vec<bool>,
        name: impl Fn(usize) -> String,
    ) -> Result<Self> {
        if residual.is_empty() {
            return Ok(self);
        }
        if residual.len() != self.num_layers() {
            return Err(BcdError::InvalidArchitecture(format!(
                "{} residual flags for {} layers",
                residual.len(),
                self.num_layers()
            )));
        }
        for (l, &r) in residual.iter().enumerate() {
            let (n, m) = self.layer_dims(l);
            if r && (l + 1 == self.num_layers() || n != m) {
                return Err(BcdError::InvalidArchitecture(format!(
                    "layer {} ({n} → {m}) cannot be residual: residual layers are hidden and keep their width",
                    name(l)
                )));
            }
            if r && self.branch == Branch::Pair {
                self.check_pair(l, &residual, &name)?;
            }
            if let Some(s) = self.spatial(l).filter(|_| r) {
                if !s.keeps_image() {
                    return Err(BcdError::InvalidArchitecture(format!(
                        "layer {} cannot be residual: a residual image layer keeps its image \
                         ({} in, {:?} out, pooling {})",
                        name(l),
                        s.input,
                        s.output(),
                        s.pool
                    )));
                }
            }
        }
        self.residual = if residual.iter().any(|&r| r) {
            residual
        } else {
            Vec::new()
        };
        Ok(self)
    }

    /// With [`Branch::Pair`], residual layer `l` closes a branch opened by layer `l − 1`:
    /// that layer exists, is not residual, and its input is as wide as layer `l`'s output.
    fn check_pair(
        &self,
        l: usize,
        residual: &[bool],
        name: impl Fn(usize) -> String,
    ) -> Result<()> {
        let bad = |why: String| {
            Err(BcdError::InvalidArchitecture(format!(
                "layer {} cannot close a two-layer residual branch: {why}",
                name(l)
            )))
        };
        if l == 0 {
            return bad("no layer before it opens the branch".into());
        }
        if residual[l - 1] {
            return bad(format!(
                "the layer before it, {}, is residual too",
                name(l - 1)
            ));
        }
        let (skip, out) = (self.widths[l - 1], self.widths[l + 1]);
        if skip != out {
            return bad(format!("its branch reads {skip} values and writes {out}"));
        }
        // Layer l keeps its image (checked with the residual flags); so must the opening layer.
        if self.spatial(l).is_some() && !self.spatial(l - 1).is_some_and(Spatial::keeps_image) {
            return bad(format!(
                "the layer before it, {}, must be a convolution that keeps its image (no pooling)",
                name(l - 1)
            ));
        }
        Ok(())
    }

    /// Whether layer index `l` is residual (`V = V_in + σ(U)`, or the branch's own input plus
    /// `U` with [`Branch::Pair`]).
    pub fn is_residual(&self, l: usize) -> bool {
        self.residual.get(l).copied().unwrap_or(false)
    }

    /// The residual branches' form.
    pub fn branch(&self) -> Branch {
        self.branch
    }

    /// For a residual layer `l`, the layer whose input is its skip `S_l` (`l` itself, or
    /// `l − 1` with [`Branch::Pair`]); `None` for other layers.
    pub(crate) fn skip_source(&self, l: usize) -> Option<usize> {
        self.is_residual(l).then(|| l + 1 - self.branch.layers())
    }

    /// The residual layer that reads layer `l`'s output as its skip, if any.
    pub(crate) fn skip_reader(&self, l: usize) -> Option<usize> {
        let c = l + self.branch.layers();
        (self.skip_source(c) == Some(l + 1)).then_some(c)
    }

    /// The activation of hidden layer `l`: `σ`, or the identity for the residual layer that
    /// closes a [`Branch::Pair`].
    pub(crate) fn layer_activation(&self, l: usize) -> Activation {
        match self.branch {
            Branch::Pair if self.is_residual(l) => Activation::Identity,
            _ => self.activation,
        }
    }

    /// Whether any layer is residual.
    pub fn is_resnet(&self) -> bool {
        !self.residual.is_empty()
    }

    /// The image map of layer index `l`, if it is an image layer.
    pub fn spatial(&self, l: usize) -> Option<&Spatial> {
        self.spatial.get(l).and_then(Option::as_ref)
    }

    /// Whether any layer is an image layer.
    pub fn is_convolutional(&self) -> bool {
        !self.spatial.is_empty()
    }

    /// The shape of layer index `l`'s weight: `[out, in]` (linear, `in` after pooling and
    /// flattening) or `[out, C, k, k]` (convolution). Its bias has `weight_shape(l)[0]`
    /// entries.
    pub fn weight_shape(&self, l: usize) -> Vec<usize> {
        let (n, m) = self.layer_dims(l);
        match self.spatial(l) {
            None => vec![m, n],
            Some(s) => match s.conv {
                Some(c) => vec![c.out_channels, s.input.channels, c.kernel, c.kernel],
                None => vec![m, s.design_width()],
            },
        }
    }

    /// `(fan_in, fan_out)` of layer index `l`'s weight, as PyTorch counts them: a
    /// convolution's `C·k²` and `out·k²`.
    pub fn fans(&self, l: usize) -> (usize, usize) {
        let shape = self.weight_shape(l);
        let field: usize = shape[2..].iter().product();
        (shape[1] * field, shape[0] * field)
    }

    /// The widths `d_0 … d_L`.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Number of affine layers `L`.
    pub fn num_layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Input width `d_0`.
    pub fn input_dim(&self) -> usize {
        self.widths[0]
    }

    /// Output width `d_L`.
    pub fn output_dim(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }

    /// Hidden activation `σ`.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// What first tells this architecture from `other`, in words — e.g. `residual branches
    /// single against pair` — or `None` when they are the same network. For error messages
    /// that must say more than "mismatch" (a checkpoint resumed with other settings).
    pub fn difference(&self, other: &Architecture) -> Option<String> {
        let residual = |a: &Architecture| -> Vec<usize> {
            (0..a.num_layers()).filter(|&l| a.is_residual(l)).collect()
        };
        let first_image_layer = (0..self.num_layers().min(other.num_layers()))
            .find(|&l| self.spatial(l) != other.spatial(l));
        if self.widths != other.widths {
            Some(format!(
                "widths {:?} against {:?}",
                self.widths, other.widths
            ))
        } else if self.activation != other.activation {
            Some(format!(
                "activation {:?} against {:?}",
                self.activation, other.activation
            ))
        } else if self.branch != other.branch {
            Some(format!(
                "residual branches {} against {}",
                self.branch, other.branch
            ))
        } else if residual(self) != residual(other) {
            Some(format!(
                "residual layers (0-based) {:?} against {:?}",
                residual(self),
                residual(other)
            ))
        } else {
            first_image_layer.map(|l| {
                format!(
                    "layer {l} (0-based) {:?} against {:?}",
                    self.spatial(l),
                    other.spatial(l)
                )
            })
        }
    }

    /// `(d_{i−1}, d_i)` of layer index `l` (0-based, i.e. `W_{l+1}`).
    pub fn layer_dims(&self, l: usize) -> (usize, usize) {
        (self.widths[l], self.widths[l + 1])
    }

    /// candle-nn prefix of layer index `l` (0-based): `layers.{l}`.
    pub fn layer_prefix(l: usize) -> String {
        format!("layers.{l}")
    }

    /// Number of trainable parameters (weights and biases).
    pub fn num_parameters(&self) -> usize {
        (0..self.num_layers())
            .map(|l| {
                let shape = self.weight_shape(l);
                shape.iter().product::<usize>() + shape[0]
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<Architecture>) -> String {
        match r {
            Err(BcdError::InvalidArchitecture(m)) => m,
            other => panic!("expected an invalid architecture, got {other:?}"),
        }
    }

    /// Skips, readers and activations of a two-layer-branch ResNet, and the same for
    /// single-layer branches.
    #[test]
    fn pair_branches_skip_two_layers_and_end_linear() {
        let act = Activation::Relu;
        let pair = Architecture::resnet_with(5, 4, 2, Branch::Pair, 3, act).unwrap();
        // Layers: stem 0, branch (1, 2), branch (3, 4), head 5.
        assert_eq!(pair.num_layers(), 6);
        let skips: Vec<_> = (0..6).map(|l| pair.skip_source(l)).collect();
        assert_eq!(skips, [None, None, Some(1), None, Some(3), None]);
        let readers: Vec<_> = (0..6).map(|l| pair.skip_reader(l)).collect();
        assert_eq!(readers, [Some(2), None, Some(4), None, None, None]);
        assert_eq!(pair.layer_activation(2), Activation::Identity);
        assert_eq!(pair.layer_activation(1), act);

        let single = Architecture::resnet(5, 4, 2, 3, act).unwrap();
        let skips: Vec<_> = (0..4).map(|l| single.skip_source(l)).collect();
        assert_eq!(skips, [None, Some(1), Some(2), None]);
        let readers: Vec<_> = (0..4).map(|l| single.skip_reader(l)).collect();
        assert_eq!(readers, [Some(1), Some(2), None, None]);
        assert_eq!(single.layer_activation(1), act);
    }

    #[test]
    fn the_branch_form_survives_serialisation_and_parses_by_name() {
        let pair = Architecture::resnet_with(5, 4, 2, Branch::Pair, 3, Activation::Tanh).unwrap();
        let json = serde_json::to_string(&pair).unwrap();
        assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), pair);
        // A single-branch network is written as before, without the field.
        let single = Architecture::resnet(5, 4, 2, 3, Activation::Tanh).unwrap();
        assert!(!serde_json::to_string(&single).unwrap().contains("branch"));
        assert_eq!("pair".parse::<Branch>().unwrap(), Branch::Pair);
        assert!(matches!(
            "double".parse::<Branch>(),
            Err(BcdError::UnknownValue {
                setting: "branch",
                ..
            })
        ));
        // A description whose residual layers do not close two-layer branches is refused.
        let bad = json.replace(
            "[false,false,true,false,true,false]",
            "[false,true,true,false,true,false]",
        );
        assert_ne!(bad, json);
        assert!(serde_json::from_str::<Architecture>(&bad).is_err());
    }

    /// Each property that tells two networks apart is the one named, in that order.
    #[test]
    fn the_difference_names_what_tells_two_networks_apart() {
        let act = Activation::Relu;
        let single = Architecture::resnet(5, 4, 2, 3, act).unwrap();
        assert_eq!(single.difference(&single.clone()), None);
        let wider = Architecture::resnet(5, 6, 2, 3, act).unwrap();
        let d = single.difference(&wider).unwrap();
        assert!(d.starts_with("widths [5, 4, 4, 4, 3] against [5, 6"), "{d}");
        let tanh = Architecture::resnet(5, 4, 2, 3, Activation::Tanh).unwrap();
        assert_eq!(
            single.difference(&tanh).unwrap(),
            "activation Relu against Tanh"
        );
        // Same widths, residual layers 1 and 2 against 2 only.
        let mlp = Architecture::mlp(&[5, 4, 4, 4, 3], act).unwrap();
        let one = mlp
            .clone()
            .with_residual(vec![false, false, true, false])
            .unwrap();
        let d = single.difference(&one).unwrap();
        assert_eq!(d, "residual layers (0-based) [1, 2] against [2]");
        // Same residual layers, branches of one layer against two.
        let pair = mlp.with_branch(Branch::Pair).unwrap();
        let pair = pair.with_residual(vec![false, false, true, false]).unwrap();
        assert_eq!(
            one.difference(&pair).unwrap(),
            "residual branches single against pair"
        );
        // Same widths, one image layer's convolution against a linear map of its image.
        let image = Image::new(1, 2, 2);
        let conv = |last: Stage| {
            Architecture::cnn(image, &[Stage::Conv2d(Conv2d::same(1, 1)), last], act).unwrap()
        };
        let a = conv(Stage::Conv2d(Conv2d::same(1, 1)));
        let b = conv(Stage::Linear(4));
        assert_eq!(a.widths(), b.widths());
        let d = a.difference(&b).unwrap();
        assert!(d.starts_with("layer 1 (0-based) Some("), "{d}");
    }

    #[test]
    fn layers_that_cannot_close_a_pair_are_named() {
        let mlp = Architecture::mlp(&[4, 4, 4, 4, 2], Activation::Relu).unwrap();
        let pair = mlp.clone().with_branch(Branch::Pair).unwrap();
        let m = message(pair.clone().with_residual(vec![true, false, false, false]));
        assert!(
            m.contains("layer 0") && m.contains("no layer before"),
            "{m}"
        );
        let m = message(pair.clone().with_residual(vec![false, true, true, false]));
        assert!(m.contains("layer 2") && m.contains("residual too"), "{m}");
        let wide = Architecture::mlp(&[4, 6, 4, 4, 2], Activation::Relu).unwrap();
        let m = message(
            wide.with_branch(Branch::Pair)
                .unwrap()
                .with_residual(vec![false, false, true, false]),
        );
        assert!(m.contains("reads 6 values and writes 4"), "{m}");
        // Marking single-branch residual layers, then asking for pairs, checks them again.
        let single = mlp.with_residual(vec![false, true, true, false]).unwrap();
        assert!(message(single.with_branch(Branch::Pair)).contains("residual too"));
        // Image layers: a basic block of two convolutions that keep the image is a pair; an
        // opening convolution that strides is not, though its output is as wide as its input.
        let image = Image::new(2, 4, 4);
        let cnn = |opener: Conv2d| {
            let stages = [
                Stage::Conv2d(Conv2d::same(4, 3)),
                Stage::Conv2d(opener),
                Stage::Conv2d(Conv2d::same(opener.out_channels, 3)),
                Stage::AvgPool(2),
                Stage::Linear(3),
            ];
            Architecture::cnn(image, &stages, Activation::Relu)?.with_branch(Branch::Pair)
        };
        let block = cnn(Conv2d::same(4, 3)).unwrap();
        let block = block
            .with_residual(vec![false, false, true, false])
            .unwrap();
        assert_eq!(block.skip_source(2), Some(1));
        assert_eq!(block.layer_activation(2), Activation::Identity);
        let strided = Conv2d {
            out_channels: 16,
            kernel: 3,
            stride: 2,
            padding: 1,
        };
        // 4·4·4 = 16·2·2 values in and out of the strided convolution.
        let m = message(
            cnn(strided)
                .unwrap()
                .with_residual(vec![false, false, true, false]),
        );
        assert!(
            m.contains("layer 2") && m.contains("layer before it, 1"),
            "{m}"
        );
        assert!(m.contains("keeps its image"), "{m}");
    }
}
