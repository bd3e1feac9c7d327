//! The two-splitting objective
//!
//! ```text
//! Φ₂ = R(V_L; Y) + λ/2 Σ_i ‖W_i‖² + γ/2 Σ_{i<L} ‖V_i − S_i − σ(Z_i)‖² + γ/2 ‖V_L − Z_L‖²,
//! ```
//!
//! `Z_i = Ṽ_{i−1}W̃_iᵀ`, `S_i = V_{i−1}` in a residual layer, else 0: the three-splitting `Φ` at
//! `U_i = Z_i`, so its pre-activation part is zero.

use candle_core::Tensor;

use crate::config::BcdConfig;
use crate::error::Result;
use crate::objective::{fit_parts, Lifted, ObjectiveParts};

/// `Φ₂`'s parts from the blocks and the current products `Z_1 … Z_L`.
pub(crate) fn evaluate(blocks: &Lifted, z: &[Tensor], cfg: &BcdConfig) -> Result<ObjectiveParts> {
    fit_parts(blocks, z, cfg)
}
