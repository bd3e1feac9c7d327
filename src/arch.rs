//! Network architecture descriptions.
//!
//! An MLP with widths `d_0 … d_L` has `L` affine layers `U_i = V_{i−1} W_iᵀ + 1 b_iᵀ` with
//! `W_i ∈ R^{d_i × d_{i−1}}` (Candle's `[out, in]` layout); hidden layers apply the
//! activation `σ`, the output layer is linear. Layer `i` (1-based in the math) is stored under
//! the candle-nn prefix `layers.{i−1}`, so `layers.0.weight` is `W_1`.
//!
//! A fully connected ResNet is a stem layer (input → width), `K` residual layers
//! `V_i = V_{i−1} + σ(U_i)` of constant width, and a linear head.

use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::error::{BcdError, Result};

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
}

/// Unvalidated serialised form of [`Architecture`].
#[derive(Deserialize)]
struct ArchitectureSpec {
    widths: Vec<usize>,
    activation: Activation,
    #[serde(default)]
    residual: Vec<bool>,
}

impl TryFrom<ArchitectureSpec> for Architecture {
    type Error = BcdError;
    fn try_from(spec: ArchitectureSpec) -> Result<Self> {
        Architecture::mlp(&spec.widths, spec.activation)?.with_residual(spec.residual)
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
        })
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

    /// Marks layers as residual; each must be hidden and keep its width.
    pub(crate) fn with_residual(self, residual: Vec<bool>) -> Result<Self> {
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
                let (n, m) = self.layer_dims(l);
                m * (n + 1)
            })
            .sum()
    }
}
