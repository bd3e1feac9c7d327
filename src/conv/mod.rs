//! Image layers: convolutions and average pooling, trained by the same exact lifted BCD.
//!
//! Layer `i` of a convolutional network computes `U_i = C_{W_i}(P(V_{i−1})) + b_i`: average
//! pooling `P`, then a 2-D convolution with stride and padding and one bias per output
//! channel, or a linear map of the flattened pooled image. The lifted `U_i`, `V_i` are the
//! images flattened (`[N, C_i·H_i·W_i]`), and `Φ` is the objective of the fully connected
//! network with its norms over all channels and positions. What changes:
//!
//! - **Kernel block**: the convolution is linear in its kernel, `Z_i = D_i W̃_iᵀ` with `D_i` the
//!   patches of the pooled input (`im2col`, one row per sample and output position, `C·k²`
//!   columns) and `U_i` read as one row of `out` channels per sample and position. The block is
//!   the linear layer's ridge least-squares problem on `D_i`: one SPD solve of size
//!   `C·k² + 1` from the Gram `D̃ᵀD̃`, summed over the rows (and the ranks).
//! - **Activation block under an image layer**: `(sI + ρAᵀA)V = rhs` with `A` the next layer's
//!   map couples the entries of one sample's image; it is solved per sample by conjugate
//!   gradients through `A` and its adjoint ([`activation`](self) and `cg`), warm-started, so it
//!   never raises `Φ`.
//! - The pre-activation and output blocks are elementwise or row-wise and unchanged.
//!
//! Pooling has no lifted variables: it is part of the next layer's map (its adjoint spreads
//! each pooled value evenly over its window). A linear layer after an image flattens it in
//! `C, H, W` order, as `Tensor::flatten` and PyTorch do.

mod activation;
pub(crate) mod cg;
mod cpu;
mod geometry;
pub(crate) mod ops;

pub(crate) use activation::hidden_activation;
pub use cg::CgReport;
pub use geometry::{Conv2d, Image, Spatial};

use candle_core::Tensor;

use crate::arch::Architecture;
use crate::error::Result;
use crate::kernels;

/// `U = A_l(V) + b_l`, layer index `l`'s map of its input rows `v` with weight `w`, bias `b`.
/// The weights are detached from their `Var`s first: a product with a `Var` would record the
/// operation for backprop and keep every intermediate of the blocks built on it alive.
pub(crate) fn affine(
    arch: &Architecture,
    l: usize,
    v: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
    let (w, b) = (&w.detach(), &b.detach());
    match arch.spatial(l) {
        None => kernels::linear(v, w, b),
        Some(s) => ops::forward(s, v, w, Some(b)),
    }
}

/// The weight block's least-squares problem of layer index `l`: design rows `D` from its input
/// rows `v`, and the matching target rows from `t` (`[N, d_{l+1}]`).
pub(crate) fn weight_problem(
    arch: &Architecture,
    l: usize,
    v: &Tensor,
    t: &Tensor,
) -> Result<(Tensor, Tensor)> {
    match arch.spatial(l) {
        None => Ok((v.clone(), t.clone())),
        Some(s) => Ok((ops::design(s, v)?, ops::target_rows(s, t)?)),
    }
}

/// The design rows of layer index `l` alone (see [`weight_problem`]).
pub(crate) fn design(arch: &Architecture, l: usize, v: &Tensor) -> Result<Tensor> {
    match arch.spatial(l) {
        None => Ok(v.clone()),
        Some(s) => ops::design(s, v),
    }
}

#[cfg(test)]
mod tests;
