//! The three-splitting objective
//!
//! ```text
//! Φ = R(V_L; Y) + λ/2 Σ_i c_i ‖W_i‖²
//!   + γ/2 Σ_{i<L} c_i ‖V_i − S_i − σ(U_i)‖² + γ/2 ‖V_L − U_L‖²
//!   + ρ/2 Σ_i c_i ‖U_i − Z_i‖²,          Z_i = Ṽ_{i−1}W̃_iᵀ,
//! ```
//!
//! `S_i = V_{i−1}` in a residual layer, else 0; `c_i = q^{i−L}` the layer weights
//! (`BcdConfig::penalty_growth`). The pre-activation sums `‖U_i − Z_i‖²` are taken
//! ([`preactivation_sq`]) wherever the sweep forms `Z_i` anyway, so that `Φ` costs no product.

use candle_core::Tensor;

use crate::config::BcdConfig;
use crate::error::Result;
use crate::kernels;
use crate::objective::{fit_parts, Lifted, ObjectiveParts};

/// `‖U_i − Z_i‖²`, the pre-activation penalty of layer `i` before its weight `ρ/2`.
pub(crate) fn preactivation_sq(u: &Tensor, z: &Tensor) -> Result<f64> {
    kernels::sq_dist(u, z)
}

/// `Φ`'s parts from the blocks, the `U_i` and the sums `‖U_i − Z_i‖²` of every layer.
pub(crate) fn evaluate(
    blocks: &Lifted,
    u: &[Tensor],
    preactivation_sq: &[f64],
    cfg: &BcdConfig,
) -> Result<ObjectiveParts> {
    let mut parts = fit_parts(blocks, u, cfg)?;
    let last = preactivation_sq.len() - 1;
    let weighted: f64 = (preactivation_sq.iter().enumerate())
        .map(|(l, sq)| cfg.layer_weight(l, last) * sq)
        .sum();
    parts.preactivation_penalty = 0.5 * cfg.rho * weighted;
    Ok(parts)
}
