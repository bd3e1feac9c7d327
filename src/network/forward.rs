//! The forward pass `U_i = V_{i−1}W_iᵀ + 1b_iᵀ`, `V_i = σ(U_i)` (`S_i + σ_i(U_i)` for a
//! residual layer with skip `S_i`, `U_L` for the linear head), shared by
//! [`Network`](super::Network) and the optimizers, which pass the products they already hold.
//! The skip is the layer's input `V_{i−1}`, or with [`Branch::Pair`](crate::Branch::Pair) the
//! branch's input `V_{i−2}`, and `σ_i` is then the identity.

use candle_core::Tensor;

use crate::activation::with_sigma;
use crate::arch::Architecture;
use crate::error::Result;
use crate::kernels;

/// Output `V` of layer `l` from its pre-activation `u` and its skip `s` (read only by a residual
/// layer): `σ(u)`, `s + σ_l(u)` for a residual layer, `u` for the linear head.
pub(crate) fn layer_output(
    arch: &Architecture,
    l: usize,
    u: &Tensor,
    s: &Tensor,
) -> Result<Tensor> {
    let act = arch.layer_activation(l);
    if l + 1 == arch.num_layers() {
        Ok(u.clone())
    } else if !kernels::fused(u) {
        act.output_tensor(u, arch.is_residual(l).then_some(s))
    } else if arch.is_residual(l) {
        with_sigma!(act, |sigma| kernels::map([u, s], |[u, s]| {
            (s as f64 + sigma.apply(u as f64)) as f32
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

/// The forward pass through `layers`, `h` being the first one's input (which must not be
/// inside a two-layer branch: its skip would come from before `layers`).
pub(crate) fn forward_range(
    arch: &Architecture,
    weights: &[Tensor],
    biases: &[Tensor],
    layers: std::ops::Range<usize>,
    mut h: Tensor,
) -> Result<Tensor> {
    // The input of the layer before, the skip of a two-layer branch's residual layer.
    let mut before = h.clone();
    for l in layers {
        let u = crate::conv::affine(arch, l, &h, &weights[l], &biases[l])?;
        let s = match arch.skip_source(l) {
            Some(j) if j < l => &before,
            _ => &h,
        };
        let v = layer_output(arch, l, &u, s)?;
        before = std::mem::replace(&mut h, v);
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};
    use candle_nn::VarMap;

    use crate::arch::{Architecture, Branch};
    use crate::config::WeightInit;
    use crate::{Activation, Network};

    /// A two-layer-branch ResNet's output against the blocks written out by tensor operations:
    /// `h = relu(xW₀ᵀ + b₀)`, then per block `h + relu(hW₁ᵀ + b₁)W₂ᵀ + b₂`, then the head.
    #[test]
    fn pair_branches_add_a_linear_layer_to_their_input() {
        let dev = Device::Cpu;
        let arch = Architecture::resnet_with(5, 4, 2, Branch::Pair, 3, Activation::Relu).unwrap();
        let net = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 3, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (7, 5), &dev).unwrap();
        let affine = |h: &Tensor, l: usize| {
            h.matmul(&net.weight(l).t().unwrap())
                .unwrap()
                .broadcast_add(net.bias(l))
                .unwrap()
        };
        let mut h = affine(&x, 0).relu().unwrap();
        for block in 0..2 {
            let inner = affine(&h, 1 + 2 * block).relu().unwrap();
            h = (&h + affine(&inner, 2 + 2 * block)).unwrap();
        }
        let expected = affine(&h, 5);
        let diff = crate::kernels::max_abs_diff(&net.logits(&x).unwrap(), &expected);
        assert!(diff < 1e-5, "{diff}");
    }
}
