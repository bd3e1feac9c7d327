//! The two-splitting formulation: lifted activations `V_i` only (`U_i` is replaced by
//! `Z_i = Ṽ_{i−1}W̃_iᵀ`); the output blocks are exact, the hidden ones prox-linear steps.
//!
//! ```text
//! Φ₂ = R(V_L; Y) + λ/2 Σ_i ‖W_i‖² + γ/2 Σ_{i<L} ‖V_i − S_i − σ(Z_i)‖² + γ/2 ‖V_L − Z_L‖²
//! ```
//!
//! A sweep updates `V_L` and `W̃_L` exactly, then for `i = L−1 … 1` takes prox-linear steps on
//! `V_i` and `W̃_i` (`docs/algorithm.md`, "Two-splitting"). [`updates`] holds the prox-linear
//! steps, `objective` its `Φ₂`, `sweep` the order of the blocks.

pub(crate) mod objective;
mod sweep;
pub(crate) mod updates;
