//! The forward pass `U_i = V_{i−1}W_iᵀ + 1b_iᵀ`, `V_i = σ(U_i)` (`V_{i−1} + σ(U_i)` for a
//! residual layer, `U_L` for the linear head), shared by [`Network`](super::Network) and the
//! optimizers, which pass the products they already hold.

use candle_core::Tensor;

use crate::activation::with_sigma;
use crate::arch::Architecture;
use crate::error::Result;
use crate::kernels;

/// Output `V` of layer `l` from its pre-activation `u` and input `x`: `σ(u)`, `x + σ(u)` for a
/// residual layer, `u` for the linear head.
pub(crate) fn layer_output(
    arch: &Architecture,
    l: usize,
    u: &Tensor,
    x: &Tensor,
) -> Result<Tensor> {
    let act = arch.activation();
    if l + 1 == arch.num_layers() {
        Ok(u.clone())
    } else if !kernels::fused(u) {
        act.output_tensor(u, arch.is_residual(l).then_some(x))
    } else if arch.is_residual(l) {
        with_sigma!(act, |sigma| kernels::map([u, x], |[u, x]| {
            (x as f64 + sigma.apply(u as f64)) as f32
        }))
    } else {
        with_sigma!(act, |sigma| kernels::map([u], |[u]| sigma.apply(u as f64)
            as f32))
    }
}

/// The forward pass from layer `from` on, `h` being that layer's input.
pub(crate) fn forward_from(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    from: usize,
    h: Tensor,
) -> Result<Tensor> {
    forward_range(arch, weights, biases, from..arch.num_layers(), h)
}

/// The forward pass through `layers`, `h` being the first one's input.
pub(crate) fn forward_range(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    layers: std::ops::Range<usize>,
    mut h: Tensor,
) -> Result<Tensor> {
    for l in layers {
        let u = crate::conv::affine(arch, l, &h, &weights[l], &biases[l])?;
        h = layer_output(arch, l, &u, &h)?;
    }
    Ok(h)
}

/// Accuracy of the network on `x`, a block of rows at a time; `first`, when given, is the
/// first layer's pre-activation `X̃W̃_1ᵀ` for the same rows (then not recomputed).
pub(crate) fn blocked_correct(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    x: &Tensor,
    first: Option<&Tensor>,
    labels: &Tensor,
) -> Result<f64> {
    crate::metrics::correct_in_blocks(labels, x.dim(0)?, |start, len| {
        let xb = x.narrow(0, start, len)?;
        match first {
            Some(z) => {
                let h = layer_output(arch, 0, &z.narrow(0, start, len)?, &xb)?;
                forward_from(arch, weights, biases, 1, h)
            }
            None => forward_from(arch, weights, biases, 0, xb),
        }
    })
}
