//! The three-splitting formulation: lifted pre-activations `U_i` and activations `V_i`, every
//! block an exact minimiser.
//!
//! ```text
//! Φ = R(V_L; Y) + λ/2 Σ_i ‖W_i‖² + γ/2 Σ_{i<L} ‖V_i − S_i − σ(U_i)‖² + γ/2 ‖V_L − U_L‖²
//!   + ρ/2 Σ_i ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²
//! ```
//!
//! A sweep updates `V_L`, `U_L`, `W̃_L`, then for `i = L−1 … 1`: `V_i`, `U_i`, `W̃_i`
//! (`docs/algorithm.md`, "One sweep"). [`updates`] holds the closed forms only this formulation
//! has, `objective` its `Φ`, `sweep` the order of the blocks.

pub(crate) mod objective;
mod sweep;
pub(crate) mod updates;
