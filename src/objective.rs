//! The objective's parts, and the terms both formulations' objectives are made of.
//!
//! ```text
//! R(V_L; Y)                         loss: ½‖V_L − Y‖² or softmax cross-entropy
//! λ/2 Σ_i c_i ‖W_i‖²                regulariser (never on biases)
//! Σ c_i ‖V_i − S_i − σ(A_i)‖²        an activation fit, A_i = U_i (three-splitting) or Z_i (two)
//! ```
//!
//! with `S_i = V_{i−1}` for a residual layer and `0` otherwise, and `c_i = q^{i−L}` the weight
//! of layer `i` (`BcdConfig::penalty_growth`; 1 for every layer by default). Each formulation assembles its
//! `Φ` from these in its own module (`three_split::objective`, `two_split::objective`). All
//! sums are accumulated in `f64`. The paper's sufficient-descent property says `Φ` never
//! increases from one sweep to the next.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::activation::{with_sigma, Activation};
use crate::arch::Architecture;
use crate::config::BcdConfig;
use crate::error::Result;
use crate::kernels;

/// `Φ` split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ObjectiveParts {
    /// `R(V_L; Y)`.
    pub loss: f64,
    /// `Σ c_i r_i(W̃_i)`.
    pub regularizer: f64,
    /// `γ/2 Σ c_i ‖V_i − S_i − σ(U_i)‖²` including the output tie `γ/2‖V_L − U_L‖²`
    /// (two-splitting: with `Z_i` in place of `U_i`); `c_i` the layer weights
    /// ([`BcdConfig::penalty_growth`](crate::BcdConfig::penalty_growth)).
    pub activation_penalty: f64,
    /// `ρ/2 Σ c_i ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²` (zero in the two-splitting, which has no `U_i`).
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

/// The blocks every formulation's objective reads.
pub(crate) struct Lifted<'a> {
    /// Targets `Y`.
    pub y: &'a Tensor,
    /// Inputs `X` (`V_0`).
    pub x: &'a Tensor,
    /// `V_1 … V_L`.
    pub v: &'a [Tensor],
    /// `W_1 … W_L`.
    pub weights: &'a [Tensor],
    /// The architecture (activation, residual layers).
    pub arch: &'a Architecture,
}

/// The parts both formulations share, with `A_i` the argument of each layer's activation
/// (`U_i`, or `Z_i` in the two-splitting): the loss, the regulariser and
/// `γ/2 (Σ_{i<L} c_i ‖V_i − S_i − σ(A_i)‖² + ‖V_L − A_L‖²)`. The pre-activation part is left 0.
pub(crate) fn fit_parts(b: &Lifted, a: &[Tensor], cfg: &BcdConfig) -> Result<ObjectiveParts> {
    let last = b.v.len() - 1;
    let mut act_pen = kernels::sq_dist(&b.v[last], &a[last])?;
    for (l, (v, a)) in b.v.iter().zip(a).take(last).enumerate() {
        let skip = b.arch.skip_source(l).map(|j| match j {
            0 => b.x,
            _ => &b.v[j - 1],
        });
        let act = b.arch.layer_activation(l);
        act_pen += cfg.layer_weight(l, last) * activation_fit(v, skip, a, act)?;
    }
    let mut reg = 0.0;
    if cfg.lambda > 0.0 {
        for (l, w) in b.weights.iter().enumerate() {
            reg += cfg.layer_weight(l, last) * kernels::sq_norm(w)?;
        }
    }
    let loss = match kernels::fused(b.y) {
        false => cfg.loss.value_tensor(&b.v[last], b.y)?,
        true => kernels::sum_rows([&b.v[last], b.y], |[v, y]| {
            let v: Vec<f64> = v.iter().map(|&x| x as f64).collect();
            let y: Vec<f64> = y.iter().map(|&x| x as f64).collect();
            cfg.loss.row_value(&v, &y)
        })?,
    };
    Ok(ObjectiveParts {
        loss,
        regularizer: 0.5 * cfg.lambda * reg,
        activation_penalty: 0.5 * cfg.gamma * act_pen,
        preactivation_penalty: 0.0,
    })
}

/// `‖V − S − σ(A)‖²` of a hidden layer, `S` the skip input of a residual layer.
fn activation_fit(v: &Tensor, skip: Option<&Tensor>, a: &Tensor, act: Activation) -> Result<f64> {
    if !kernels::fused(v) {
        return act.fit_sq_tensor(v, skip, a);
    }
    with_sigma!(act, |sigma| match skip {
        Some(s) => kernels::sum_map([v, s, a], |[v, s, a]| {
            let d = v as f64 - s as f64 - sigma.apply(a as f64);
            d * d
        }),
        None => kernels::sum_map([v, a], |[v, a]| {
            let d = v as f64 - sigma.apply(a as f64);
            d * d
        }),
    })
}
