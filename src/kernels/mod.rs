//! The few tensor kernels a BCD sweep is made of: matrix products, Gram matrices and fused
//! elementwise maps and reductions.
//!
//! Products run on the tensors' device. On the CPU, `f32` products go through faer's matmul on
//! zero-copy views of Candle's buffers (measured 1.5–1.8× faster than Candle's own CPU matmul
//! on this machine, see `FACTS.md`), and Gram matrices `AᵀA` compute only their lower
//! triangle. On other devices Candle's matmul (cuBLAS, MPS) is used. Both paths compute the
//! same product; they differ by floating-point round-off only.
//!
//! Elementwise maps and reductions are scalar closures evaluated in parallel (rayon) over host
//! memory: zero-copy for CPU tensors; for GPU tensors the operands make a round trip through
//! host memory (a documented limitation of this version). Reductions accumulate in `f64`.

mod cpu;
mod elementwise;
mod work;

pub use elementwise::{map, map_cols, map_rows, map_step, sum_map, sum_rows};
pub use work::Work;

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// A matrix operand, plain or transposed.
#[derive(Clone, Copy, Debug)]
pub enum Op<'a> {
    /// `A`.
    N(&'a Tensor),
    /// `Aᵀ`.
    T(&'a Tensor),
}

impl<'a> Op<'a> {
    pub(crate) fn tensor(self) -> &'a Tensor {
        match self {
            Op::N(t) | Op::T(t) => t,
        }
    }

    /// `(rows, cols)` of the operand as used (after transposition).
    pub(crate) fn dims(self) -> Result<(usize, usize)> {
        let (r, c) = self.tensor().dims2()?;
        Ok(match self {
            Op::N(_) => (r, c),
            Op::T(_) => (c, r),
        })
    }

    fn materialize(self) -> Result<Tensor> {
        Ok(match self {
            Op::N(t) => t.clone(),
            Op::T(t) => t.t()?,
        })
    }
}

/// What a product is added to.
#[derive(Clone, Copy, Debug)]
pub enum Addend<'a> {
    /// Nothing: `α·op(A)·op(B)`.
    None,
    /// A matrix of the result's shape: `C + α·op(A)·op(B)`.
    Matrix(&'a Tensor),
    /// A row vector broadcast over rows: `1cᵀ + α·op(A)·op(B)`.
    Row(&'a Tensor),
}

/// `addend + alpha · op(a) · op(b)`, with an `[m, n]` result.
pub fn matmul(a: Op, b: Op, alpha: f32, addend: Addend) -> Result<Tensor> {
    let (m, k) = a.dims()?;
    let (k2, n) = b.dims()?;
    if k != k2 {
        return Err(candle_core::Error::ShapeMismatchBinaryOp {
            lhs: a.tensor().shape().clone(),
            rhs: b.tensor().shape().clone(),
            op: "bcd-matmul",
        }
        .into());
    }
    if is_cpu_f32(a.tensor()) && is_cpu_f32(b.tensor()) {
        return cpu::matmul(a, b, (m, k, n), alpha, addend);
    }
    let mut prod = a.materialize()?.matmul(&b.materialize()?)?;
    if alpha != 1.0 {
        prod = prod.affine(alpha as f64, 0.0)?;
    }
    Ok(match addend {
        Addend::None => prod,
        Addend::Matrix(c) => (prod + c)?,
        Addend::Row(c) => prod.broadcast_add(c)?,
    })
}

/// The affine map of a linear layer: `x Wᵀ + 1 bᵀ`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul(Op::N(x), Op::T(w), 1.0, Addend::Row(b))
}

/// The Gram matrix `AᵀA` (symmetric, `[n, n]` for `A` of shape `[N, n]`).
pub fn gram(a: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(a) {
        return cpu::gram(a);
    }
    Ok(a.t()?.matmul(a)?)
}

/// Column sums of a matrix, accumulated in `f64`.
pub fn col_sums(a: &Tensor) -> Result<Vec<f64>> {
    if is_cpu_f32(a) {
        return cpu::col_sums(a);
    }
    Ok(a.to_dtype(DType::F64)?.sum(0)?.to_vec1::<f64>()?)
}

/// `‖a − b‖²` accumulated in `f64`.
pub fn sq_dist(a: &Tensor, b: &Tensor) -> Result<f64> {
    sum_map([a, b], |[x, y]| {
        let d = x as f64 - y as f64;
        d * d
    })
}

/// `‖a‖²` accumulated in `f64`.
pub fn sq_norm(a: &Tensor) -> Result<f64> {
    sum_map([a], |[x]| (x as f64) * (x as f64))
}

fn is_cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// Largest `|a − b|` over all entries (for tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("same-shaped f32 tensors")
}
