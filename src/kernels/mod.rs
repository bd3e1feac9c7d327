//! The few tensor kernels a BCD sweep is made of: matrix products, Gram matrices and fused
//! elementwise maps and reductions.
//!
//! Products run on the tensors' device. On the CPU, `f32` products go through faer's matmul on
//! zero-copy views of Candle's buffers (measured 1.5–1.8× faster than Candle's own CPU matmul
//! on the benchmark machine, see `docs/algorithm.md`), and Gram matrices `AᵀA` compute only their lower
//! triangle. **(choice)** The one exception is `AᵀB` with a long inner dimension and a wide
//! result (the weight updates' `UᵀṼ`), where Candle's own CPU matmul measured faster
//! ([`matmul`]). On other devices Candle's matmul (cuBLAS, MPS) is used. All paths compute
//! the same product; they differ by floating-point round-off only.
//!
//! Elementwise maps and reductions are scalar closures evaluated in parallel (rayon) over host
//! memory, zero-copy, for CPU tensors. Tensors elsewhere take the device path: every block
//! update has a version built from Candle tensor operations, chosen by `fused` (see
//! `device`); a closure kernel given such tensors would copy them to the host and back, which
//! [`host_round_trips`] counts. Reductions accumulate in `f64`.

pub(crate) mod cpu;
mod device;
mod elementwise;
#[cfg(test)]
mod timings;
mod work;

pub(crate) use device::{fused, sum_f64};
pub use device::{host_round_trips, with_device_path};

pub use elementwise::{map, map_rows, map_step, sum_map, sum_rows};
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
///
/// CPU `f32` products run on faer, except `AᵀB` with both result dimensions ≥ 256 and an inner
/// dimension ≥ 8× the wider one (the weight updates' `UᵀṼ`), for which Candle's own CPU matmul
/// measured faster.
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
    if fused(a.tensor()) && fused(b.tensor()) && !candle_is_faster(a, b, (m, k, n)) {
        return cpu::matmul(a, b, (m, k, n), alpha, addend);
    }
    let mut prod = match (a, b) {
        (Op::T(x), Op::N(y)) if cpu::is_tall(k, m, n) => tall_on_device(x, y)?,
        _ => a.materialize()?.matmul(&b.materialize()?)?,
    };
    if alpha != 1.0 {
        prod = prod.affine(alpha as f64, 0.0)?;
    }
    Ok(match addend {
        Addend::None => prod,
        Addend::Matrix(c) => (prod + c)?,
        Addend::Row(c) => prod.broadcast_add(c)?,
    })
}

/// Whether a CPU product `op(a)·op(b)` of shape `(m, k, n)` runs faster through Candle's own
/// matmul (the `gemm` crate) than through faer. Measured only for
/// `AᵀB` with both operands row-major `[k, ·]`, a long inner dimension and a wide result — the
/// `UᵀṼ` of every weight update — where Candle won about two alternated pairs in three
/// (median 3–14 % faster per batch at 1500 × 1500 and 1500 × 784 results over 60,000 rows;
/// 500 × 500 over 10,000 rows: 14 %). For a 10-wide result faer is much faster (Candle at 0.64×),
/// and for every other product the sweep uses faer measured faster (`docs/algorithm.md`).
pub(crate) fn candle_is_faster(a: Op, b: Op, (m, k, n): (usize, usize, usize)) -> bool {
    matches!((a, b), (Op::T(_), Op::N(_))) && m.min(n) >= 256 && k >= 8 * m.max(n)
}

/// The affine map of a linear layer: `x Wᵀ + 1 bᵀ`.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul(Op::N(x), Op::T(w), 1.0, Addend::Row(b))
}

/// The Gram matrix `AᵀA` (symmetric, `[n, n]` for `A` of shape `[N, n]`).
pub fn gram(a: &Tensor) -> Result<Tensor> {
    if fused(a) {
        return cpu::gram(a);
    }
    let (k, n) = a.dims2()?;
    if cpu::is_tall(k, n, n) {
        return tall_on_device(a, a);
    }
    Ok(a.t()?.matmul(a)?)
}

/// `XᵀY` off the CPU for a tall product (see `cpu::is_tall`): the `f32` products of blocks of
/// rows on the device, summed in `f64` on the host (a few small matrices; Metal has no `f64`),
/// as the CPU path sums its blocks. One `f32` product over all rows rounded a convolution's
/// patch Gram enough to move a residual kernel by 15 % where the blocks' sums agree.
fn tall_on_device(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let (k, m) = x.dims2()?;
    let n = y.dim(1)?;
    let mut total = vec![0f64; m * n];
    for start in (0..k).step_by(cpu::TALL_BLOCK) {
        let rows = cpu::TALL_BLOCK.min(k - start);
        let part = x
            .narrow(0, start, rows)?
            .t()?
            .matmul(&y.narrow(0, start, rows)?)?;
        let part = part.flatten_all()?.to_vec1::<f32>()?;
        total
            .iter_mut()
            .zip(&part)
            .for_each(|(t, &p)| *t += p as f64);
    }
    let total: Vec<f32> = total.into_iter().map(|t| t as f32).collect();
    Ok(Tensor::from_vec(total, (m, n), &Device::Cpu)?.to_device(x.device())?)
}

/// Column sums of a matrix, accumulated in `f64`.
pub fn col_sums(a: &Tensor) -> Result<Vec<f64>> {
    if fused(a) {
        return cpu::col_sums(a);
    }
    Ok(a.to_dtype(DType::F64)?.sum(0)?.to_vec1::<f64>()?)
}

/// `a − b` (same shapes), by the fused kernel on the CPU.
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !fused(a) {
        return Ok((a - b)?);
    }
    map([a, b], |[x, y]| x - y)
}

/// `‖a − b‖²` accumulated in `f64`.
pub fn sq_dist(a: &Tensor, b: &Tensor) -> Result<f64> {
    if !fused(a) {
        return sum_f64(&(a - b)?.sqr()?);
    }
    sum_map([a, b], |[x, y]| {
        let d = x as f64 - y as f64;
        d * d
    })
}

/// `‖a‖²` accumulated in `f64`.
pub fn sq_norm(a: &Tensor) -> Result<f64> {
    if !fused(a) {
        return sum_f64(&a.sqr()?);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `op(a)·op(b)` in `f64` from the tensors' entries (`a: [k, m]` used transposed, `b: [k, n]`).
    fn reference_tn(a: &Tensor, b: &Tensor) -> Vec<f64> {
        let (k, m) = a.dims2().unwrap();
        let n = b.dim(1).unwrap();
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut c = vec![0f64; m * n];
        for r in 0..k {
            for i in 0..m {
                let x = a[r * m + i] as f64;
                for j in 0..n {
                    c[i * n + j] += x * b[r * n + j] as f64;
                }
            }
        }
        c
    }

    #[test]
    fn both_cpu_paths_of_transposed_products_match_f64() {
        let dev = Device::Cpu;
        // (m, n, k): Candle's path (wide result, long inner dimension), then faer's (narrow).
        for (m, n, k, candle) in [(256, 264, 2112, true), (10, 300, 2112, false)] {
            let a = Tensor::randn(0f32, 1.0, (k, m), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (k, n), &dev).unwrap();
            assert_eq!(candle_is_faster(Op::T(&a), Op::N(&b), (m, k, n)), candle);
            let got = matmul(Op::T(&a), Op::N(&b), 1.0, Addend::None).unwrap();
            assert_eq!(got.dims2().unwrap(), (m, n));
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want = reference_tn(&a, &b);
            // Entries are sums of k products of N(0,1) pairs (size ~√k ≈ 46); f32 round-off.
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&g, &w)| (g as f64 - w).abs())
                .fold(0f64, f64::max);
            assert!(worst < 2e-3, "({m}, {n}, {k}): max error {worst}");
        }
    }

    #[test]
    fn only_long_wide_transposed_products_go_to_candle() {
        let t = Tensor::zeros((1, 1), DType::F32, &Device::Cpu).unwrap();
        // The paper network's products over 60,000 rows.
        assert!(candle_is_faster(Op::T(&t), Op::N(&t), (1500, 60_000, 1500)));
        assert!(candle_is_faster(Op::T(&t), Op::N(&t), (1500, 60_000, 784)));
        assert!(!candle_is_faster(Op::T(&t), Op::N(&t), (10, 60_000, 1500)));
        assert!(!candle_is_faster(
            Op::N(&t),
            Op::T(&t),
            (60_000, 1500, 1500)
        ));
        assert!(!candle_is_faster(
            Op::N(&t),
            Op::N(&t),
            (60_000, 1500, 1500)
        ));
        // A short inner dimension stays on faer.
        assert!(!candle_is_faster(Op::T(&t), Op::N(&t), (1500, 4000, 1500)));
    }
}
