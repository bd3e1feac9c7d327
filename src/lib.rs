//! # candle-bcd
//!
//! Backprop-free training of fully connected and convolutional networks on [Candle](https://github.com/huggingface/candle)
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
//! layer back to the input. `Φ` never increases from one sweep to the next; [`StepReport`]
//! exposes it with its parts. The repository's `docs/algorithm.md` states every closed form
//! and each choice the crate made.
//!
//! ## Your model
//!
//! Any candle-nn model whose layers are `candle_nn::linear` layers in a [`candle_nn::VarMap`]
//! trains as it is: [`Network::from_varmap`] takes the layers' names in order and reads the
//! widths from the weights; the optimizer updates those `Var`s in place, so the model's own
//! `forward` computes with the trained weights.
//!
//! ```
//! use candle_bcd::{Activation, BcdConfig, BcdOptimizer, Network};
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{Module, VarBuilder, VarMap};
//! # fn main() -> anyhow::Result<()> {
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
//! let model = candle_nn::seq()
//!     .add(candle_nn::linear(4, 8, vb.pp("fc1"))?)
//!     .add(candle_nn::Activation::Relu)
//!     .add(candle_nn::linear(8, 3, vb.pp("fc2"))?);
//! let layers = Network::from_varmap(&varmap, ["fc1", "fc2"])?.activation(Activation::Relu)?;
//! let x = Tensor::randn(0f32, 1.0, (32, 4), &dev)?;
//! let y = Tensor::randn(0f32, 1.0, (32, 3), &dev)?;
//! let mut opt = BcdOptimizer::new(&layers, x.clone(), y, BcdConfig::default())?;
//! let before = opt.objective()?.total();
//! let report = opt.step()?;
//! assert!(report.objective.total() <= before);
//! let _logits = model.forward(&x)?; // computed with the updated weights
//! # Ok(()) }
//! ```
//!
//! The same [`Network`] type is the crate's own ready-made network ([`Network::init`] of an
//! [`Architecture`]: MLPs and fully connected ResNets, [`Architecture::resnet`]) and what
//! [`Network::from_file`] rebuilds from a checkpoint or an export. Convolutional networks
//! (convolutions with stride and padding, average pooling, linear layers: [`Architecture::cnn`],
//! [`Architecture::conv_resnet`]; a candle-nn CNN of your own through
//! [`Network::from_varmap_as`]) train by the same exact blocks ([`conv`]). Also covered: the two-splitting formulation ([`Splitting::Two`],
//! prox-linear hidden blocks), softmax cross-entropy ([`Loss::CrossEntropy`]), leaky ReLU,
//! identity, sigmoid and tanh activations ([`Activation`]), ridge regularisation, constraints
//! on the hidden activations ([`VConstraint`]), a closed-form head initialisation
//! ([`Network::fit_head`]), atomic checkpoints with exact resume ([`checkpoint`]), and a training
//! loop with observers, tolerance and time limit ([`trainer`]). [`cost`] counts a sweep's work.

#![warn(missing_docs)]

pub mod activation;
pub mod arch;
pub(crate) mod blocks;
pub mod checkpoint;
pub mod comm;
pub mod config;
pub mod conv;
pub mod cost;
pub mod data;
pub mod device_path;
pub mod error;
pub mod export;
pub(crate) mod kernels;
pub mod loss;
pub mod metrics;
pub mod minibatch;
pub mod network;
pub mod objective;
pub mod optimizer;
pub(crate) mod solve;
pub mod state;
pub(crate) mod three_split;
pub mod trainer;
pub(crate) mod two_split;

#[cfg(test)]
mod exactness_tests;

pub use activation::{Activation, ScalarProx};
pub use arch::{Architecture, Branch, Stage};
pub use candle_core::Tensor;
pub use config::{BcdConfig, Splitting, VConstraint, WeightInit};
pub use conv::{Conv2d, Image};
pub use error::{BcdError, Result};
pub use loss::Loss;
pub use network::Network;
pub use objective::ObjectiveParts;
pub use optimizer::{BcdOptimizer, ProductCache, StepReport};
pub use state::LiftedState;
