//! Network architecture descriptions.
//!
//! An MLP with widths `d_0 … d_L` has `L` affine layers `U_i = V_{i−1} W_iᵀ + 1 b_iᵀ` with
//! `W_i ∈ R^{d_i × d_{i−1}}` (Candle's `[out, in]` layout); hidden layers apply the
//! activation `σ`, the output layer is linear. Layer `i` (1-based in the math) is stored under
//! the candle-nn prefix `layers.{i−1}`, so `layers.0.weight` is `W_1`.

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
}

/// Unvalidated serialised form of [`Architecture`].
#[derive(Deserialize)]
struct ArchitectureSpec {
    widths: Vec<usize>,
    activation: Activation,
}

impl TryFrom<ArchitectureSpec> for Architecture {
    type Error = BcdError;
    fn try_from(spec: ArchitectureSpec) -> Result<Self> {
        Architecture::mlp(&spec.widths, spec.activation)
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
        })
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
