//! The three-splitting objective and its parts.
//!
//! ```text
//! Φ = R(V_L; Y)       (loss: ½‖V_L − Y‖² or cross-entropy)
//!   + λ/2 Σ_i ‖W_i‖²                                      (regulariser, no bias)
//!   + γ/2 Σ_{i<L} ‖V_i − S_i − σ(U_i)‖² + γ/2 ‖V_L − U_L‖²  (activation penalty)
//!   + ρ/2 Σ_i ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²                        (pre-activation penalty)
//! ```
//!
//! with `S_i = V_{i−1}` for a residual layer and `0` otherwise.
//!
//! All sums are accumulated in `f64`. The paper's sufficient-descent property says `Φ` never
//! increases from one sweep to the next.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::activation::with_sigma;
use crate::arch::Architecture;
use crate::config::BcdConfig;
use crate::error::Result;
use crate::kernels;

/// `Φ` split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ObjectiveParts {
    /// `R(V_L; Y)`.
    pub loss: f64,
    /// `Σ r_i(W̃_i)`.
    pub regularizer: f64,
    /// `γ/2 Σ ‖V_i − σ(U_i)‖²` including the output tie `γ/2‖V_L − U_L‖²`.
    pub activation_penalty: f64,
    /// `ρ/2 Σ ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²`.
    pub preactivation_penalty: f64,
}

impl ObjectiveParts {
    /// `Φ`, the sum of the parts.
    pub fn total(&self) -> f64 {
        self.loss + self.regularizer + self.activation_penalty + self.preactivation_penalty
    }

    /// The name of the first part that is NaN or infinite, if any.
    pub fn non_finite_part(&self) -> Option<&'static str> {
        [
            ("loss", self.loss),
            ("regularizer", self.regularizer),
            ("activation penalty", self.activation_penalty),
            ("pre-activation penalty", self.preactivation_penalty),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(n, _)| n)
    }
}

/// Everything `Φ` reads.
pub struct ObjectiveInputs<'a> {
    /// Targets `Y`.
    pub y: &'a Tensor,
    /// `U_1 … U_L`.
    pub u: &'a [Tensor],
    /// `V_1 … V_L`.
    pub v: &'a [Tensor],
    /// `‖U_i − Ṽ_{i−1}W̃_iᵀ‖²` for the current blocks, one per layer (computed by the
    /// optimizer where it forms the products).
    pub preactivation_sq: &'a [f64],
    /// `W_1 … W_L`.
    pub weights: &'a [Tensor],
    /// Inputs `X` (`V_0`).
    pub x: &'a Tensor,
    /// The architecture (activation, residual layers).
    pub arch: &'a Architecture,
}

/// Evaluates `Φ`'s parts.
pub fn evaluate(inp: &ObjectiveInputs, cfg: &BcdConfig) -> Result<ObjectiveParts> {
    let last = inp.u.len() - 1;
    let act = inp.arch.activation();
    let mut act_pen = kernels::sq_dist(&inp.v[last], &inp.u[last])?;
    for l in 0..last {
        act_pen += with_sigma!(act, |sigma| if inp.arch.is_residual(l) {
            let skip = if l == 0 { inp.x } else { &inp.v[l - 1] };
            kernels::sum_map([&inp.v[l], skip, &inp.u[l]], |[v, s, u]| {
                let d = v as f64 - s as f64 - sigma.apply(u as f64);
                d * d
            })?
        } else {
            kernels::sum_map([&inp.v[l], &inp.u[l]], |[v, u]| {
                let d = v as f64 - sigma.apply(u as f64);
                d * d
            })?
        });
    }
    let pre_pen: f64 = inp.preactivation_sq.iter().sum();
    let mut reg = 0.0;
    if cfg.lambda > 0.0 {
        for w in inp.weights {
            reg += kernels::sq_norm(w)?;
        }
    }
    Ok(ObjectiveParts {
        loss: kernels::sum_rows([&inp.v[last], inp.y], |[v, y]| {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let y: Vec<f64> = y.iter().map(|&x| x as f64).collect();
            cfg.loss.row_value(&v, &y)
        })?,
        regularizer: 0.5 * cfg.lambda * reg,
        activation_penalty: 0.5 * cfg.gamma * act_pen,
        preactivation_penalty: 0.5 * cfg.rho * pre_pen,
    })
}
