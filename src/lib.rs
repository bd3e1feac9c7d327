//! # candle-bcd
//!
//! Backprop-free training of fully connected networks on [Candle](https://github.com/huggingface/candle)
//! by **block coordinate descent (BCD) on lifted variables**, after Zeng, Lau, Lin and Yao,
//! *Global Convergence of Block Coordinate Descent in Deep Learning* (ICML 2019).
//!
//! The network `U_i = V_{i−1}W_iᵀ + 1b_iᵀ`, `V_i = σ(U_i)` is relaxed into the objective
//!
//! ```text
//! Φ(W, U, V) = ½‖V_L − Y‖² + Σ_i λ/2‖W_i‖²
//!            + γ/2 Σ_{i<L} ‖V_i − σ(U_i)‖² + γ/2 ‖V_L − U_L‖²
//!            + ρ/2 Σ_i ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²
//! ```
//!
//! over the weights and the lifted pre-activations `U_i` and activations `V_i`, and each
//! [`BcdOptimizer::step`] minimises it exactly over one block at a time, from the output
//! layer back to the input (see [`updates`] for every closed form). `Φ` never increases from
//! one sweep to the next; [`StepReport`] exposes it with its parts.
//!
//! Also covered: fully connected ResNets ([`Architecture::resnet`]), the two-splitting
//! formulation ([`Splitting::Two`], prox-linear hidden blocks, see [`two_split`]), softmax
//! cross-entropy ([`Loss::CrossEntropy`]), leaky ReLU, identity, sigmoid and tanh activations
//! ([`Activation`]), ridge regularisation of the weights, and a closed-form head
//! initialisation ([`BcdNet::fit_head`]: ridge least squares on the initial features, which
//! the ResNet preset starts from). [`cost`] counts a sweep's work.
//!
//! The trained network is an ordinary candle-nn model ([`BcdNet`] implements
//! [`candle_nn::Module`], its weights are `Var`s of a [`candle_nn::VarMap`] named like
//! `candle_nn::linear` layers).

#![warn(missing_docs)]

pub mod activation;
pub mod arch;
pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod data;
pub mod error;
pub mod export;
pub mod kernels;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod optimizer;
pub mod solve;
pub mod state;
pub mod trainer;
pub mod two_split;
pub mod updates;

pub use activation::{Activation, ScalarProx};
pub use arch::Architecture;
pub use candle_core::Tensor;
pub use config::{BcdConfig, Splitting, VConstraint, WeightInit};
pub use error::{BcdError, Result};
pub use loss::Loss;
pub use model::BcdNet;
pub use objective::ObjectiveParts;
pub use optimizer::{BcdOptimizer, ProductCache, StepReport};
pub use state::LiftedState;
