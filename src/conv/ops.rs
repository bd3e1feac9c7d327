//! The linear maps of an image layer on lifted rows, by Candle tensor operations on every
//! device (on the CPU the patch matrix and the adjoint by the loops of `cpu`): with `P` the
//! average pooling, `C_W` the convolution and `b` the per-channel bias,
//!
//! ```text
//! forward   Z = C_W(P(V)) + b            (or W·flatten(P(V)) + b for a linear layer)
//! adjoint   Aᵀ(G) = Pᵀ(C_Wᵀ(G)),         Pᵀ(G) = upsample(G)/p²,  C_Wᵀ = transposed convolution
//! design    D = im2col(P(V))             rows (sample, output position), columns (c, k_h, k_w)
//! ```
//!
//! so that `Z` read as rows of `(sample, position)` is `D·W̃ᵀ` with `W` reshaped to
//! `[out, C·k²]` ([`target_rows`] reads `U` that way). The weight block is then the linear
//! layer's least-squares problem on `D`.

use candle_core::{DType, Tensor};

use super::geometry::Spatial;
use crate::error::Result;
use crate::kernels::{self, Addend, Op};

/// `P(V)` as images `[N, C, H_p, W_p]` from rows `[N, C·H·W]`.
fn pooled(s: &Spatial, v: &Tensor) -> Result<Tensor> {
    let x = v.reshape(s.input.batch(v.dim(0)?))?;
    Ok(match s.pool {
        0 | 1 => x,
        p => x.avg_pool2d(p)?,
    })
}

/// `A(V) + b` (`b` omitted when `None`), rows `[N, d_out]`.
pub(crate) fn forward(s: &Spatial, v: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let n = v.dim(0)?;
    let x = pooled(s, v)?;
    let Some(c) = s.conv else {
        let x = x.reshape((n, s.pooled().len()))?.contiguous()?;
        return match b {
            Some(b) => kernels::linear(&x, w, b),
            None => kernels::matmul(Op::N(&x), Op::T(w), 1.0, Addend::None),
        };
    };
    let z = x.contiguous()?.conv2d(w, c.padding, c.stride, 1, 1)?;
    let z = match b {
        Some(b) => z.broadcast_add(&b.reshape((1, c.out_channels, 1, 1))?)?,
        None => z,
    };
    Ok(z.reshape((n, ()))?)
}

/// `Aᵀ(G)` for `G` of rows `[N, d_out]`: rows `[N, C·H·W]`.
pub(crate) fn adjoint(s: &Spatial, g: &Tensor, w: &Tensor) -> Result<Tensor> {
    let n = g.dim(0)?;
    let pooled_img = s.pooled();
    let x = match (s.conv, s.output()) {
        (Some(c), Some(out)) if kernels::fused(g) => {
            // CPU: Aᵀ as the patch rows' product with the kernel, summed back (`col2im`).
            let w2d = w.reshape((c.out_channels, ()))?;
            let cols = kernels::matmul(Op::N(&target_rows(s, g)?), Op::N(&w2d), 1.0, Addend::None)?;
            super::cpu::col2im(&cols, c, pooled_img, out)?
        }
        (Some(c), Some(out)) => {
            let g = g.reshape(out.batch(n))?;
            // The transposed convolution's output covers `(H_o − 1)s + k − 2q` rows; the
            // output padding extends it to the pooled image (taps of the far edge included).
            let covered = |size: usize| (size - 1) * c.stride + c.kernel - 2 * c.padding;
            let extra = (pooled_img.height - covered(out.height))
                .max(pooled_img.width - covered(out.width));
            g.conv_transpose2d(w, c.padding, extra, c.stride, 1)?
                .narrow(2, 0, pooled_img.height)?
                .narrow(3, 0, pooled_img.width)?
        }
        _ => {
            kernels::matmul(Op::N(g), Op::N(w), 1.0, Addend::None)?.reshape(pooled_img.batch(n))?
        }
    };
    let x = match s.pool {
        0 | 1 => x,
        p => (x.upsample_nearest2d(s.input.height, s.input.width)? / (p * p) as f64)?,
    };
    Ok(x.reshape((n, s.input.len()))?)
}

/// The design matrix `D` of the layer's weight block: `[N·H_o·W_o, C·k²]` patches of the
/// pooled, padded images (a linear layer: the flattened pooled images `[N, C·H_p·W_p]`).
pub(crate) fn design(s: &Spatial, v: &Tensor) -> Result<Tensor> {
    let n = v.dim(0)?;
    let x = pooled(s, v)?;
    let (Some(c), Some(out)) = (s.conv, s.output()) else {
        return Ok(x.reshape((n, s.pooled().len()))?.contiguous()?);
    };
    if kernels::fused(v) {
        return super::cpu::im2col(&x.contiguous()?, c, s.pooled(), out);
    }
    let q = c.padding;
    let x = x.pad_with_zeros(2, q, q)?.pad_with_zeros(3, q, q)?;
    // Rows ki, ki + s, …, ki + (H_o − 1)s of the padded image.
    let take = |x: &Tensor, dim: usize, start: usize, len: usize| -> Result<Tensor> {
        if c.stride == 1 {
            return Ok(x.narrow(dim, start, len)?);
        }
        let idx: Vec<u32> = (0..len).map(|t| (start + t * c.stride) as u32).collect();
        let idx = Tensor::from_vec(idx, len, x.device())?;
        Ok(x.index_select(&idx, dim)?)
    };
    let mut patches = Vec::with_capacity(c.kernel * c.kernel);
    for ki in 0..c.kernel {
        let rows = take(&x, 2, ki, out.height)?;
        for kj in 0..c.kernel {
            patches.push(take(&rows, 3, kj, out.width)?);
        }
    }
    // [N, C, k², H_o, W_o] → [N, H_o, W_o, C, k²]: columns in the weight's (c, k_h, k_w) order.
    let d = Tensor::stack(&patches, 2)?
        .permute((0, 3, 4, 1, 2))?
        .contiguous()?;
    Ok(d.reshape((n * out.height * out.width, s.design_width()))?)
}

/// `U` (rows `[N, out·H_o·W_o]`) as the targets of the design rows: `[N·H_o·W_o, out]`.
pub(crate) fn target_rows(s: &Spatial, u: &Tensor) -> Result<Tensor> {
    let Some(out) = s.output() else {
        return Ok(u.clone());
    };
    let n = u.dim(0)?;
    let t = u
        .reshape((n, out.channels, out.height * out.width))?
        .transpose(1, 2)?
        .contiguous()?;
    Ok(t.reshape((n * out.height * out.width, out.channels))?)
}

/// `U − b`, the bias broadcast over the output positions.
pub(crate) fn sub_bias(s: &Spatial, u: &Tensor, b: &Tensor) -> Result<Tensor> {
    let Some(out) = s.output() else {
        return Ok(u.broadcast_sub(b)?);
    };
    let n = u.dim(0)?;
    let u = u.reshape((n, out.channels, out.height * out.width))?;
    Ok(u.broadcast_sub(&b.reshape((1, out.channels, 1))?)?
        .reshape((n, out.len()))?)
}

/// Per-row sums `Σ_j a_ij b_ij` as `[N, 1]`, accumulated in `f64`.
pub(crate) fn row_dots(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a.to_dtype(DType::F64)? * b.to_dtype(DType::F64)?)?.sum_keepdim(1)?)
}
