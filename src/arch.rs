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
}

impl TryFrom<ArchitectureSpec> for Architecture {
    type Error = BcdError;
    fn try_from(spec: ArchitectureSpec) -> Result<Self> {
        Architecture::mlp(&spec.widths, spec.activation)?
            .with_spatial(spec.spatial)?
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
        let mut stages = vec![Stage::Conv2d(Conv2d::same(channels, 3)); residual_layers + 1];
        stages.extend([Stage::AvgPool(pool), Stage::Linear(output)]);
        let mut residual = vec![true; residual_layers + 2];
        residual[0] = false;
        residual[residual_layers + 1] = false;
        Self::cnn(input, &stages, activation)?.with_residual(residual)
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
        let mut widths = vec![input];
        widths.extend(std::iter::repeat_n(width, residual_layers + 1));
        widths.push(output);
        let mut residual = vec![false; residual_layers + 2];
        residual[1..=residual_layers]
            .iter_mut()
            .for_each(|r| *r = true);
        Self::mlp(&widths, activation)?.with_residual(residual)
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
            if let Some(s) = self.spatial(l).filter(|_| r) {
                if s.pool > 1 || s.output() != Some(s.input) {
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

    /// Whether layer index `l` is residual (`V = V_in + σ(U)`).
    pub fn is_residual(&self, l: usize) -> bool {
        self.residual.get(l).copied().unwrap_or(false)
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
