//! CPU fast path: faer products on zero-copy views of Candle's `f32` buffers.

use candle_core::{Device, Storage, Tensor};
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{Addend, Op};
use crate::error::Result;

/// Runs `f` on the contiguous `f32` buffer of a CPU tensor (copying only if it is strided).
pub(crate) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg("cpu kernel on a non-cpu tensor".into()).into());
    };
    let data = cpu.as_slice::<f32>()?;
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("non-contiguous tensor".into()))?;
    Ok(f(&data[start..end]))
}

pub(super) fn view<'a>(op: Op, data: &'a [f32]) -> Result<MatRef<'a, f32>> {
    let (r, c) = op.tensor().dims2()?;
    let m = MatRef::from_row_major_slice(data, r, c);
    Ok(match op {
        Op::N(_) => m,
        Op::T(_) => m.transpose(),
    })
}

fn par() -> Par {
    Par::rayon(0)
}

/// Initial contents of the output buffer for an addend.
fn init_out(addend: Addend, m: usize, n: usize) -> Result<(Vec<f32>, Accum)> {
    Ok(match addend {
        Addend::None => (vec![0f32; m * n], Accum::Replace),
        Addend::Matrix(c) => {
            let (cm, cn) = c.dims2()?;
            if (cm, cn) != (m, n) {
                return Err(candle_core::Error::ShapeMismatchBinaryOp {
                    lhs: (m, n).into(),
                    rhs: c.shape().clone(),
                    op: "bcd-matmul-add",
                }
                .into());
            }
            (with_slice(c, |s| s.to_vec())?, Accum::Add)
        }
        Addend::Row(c) => {
            let row = with_slice(c, |s| s.to_vec())?;
            if row.len() != n {
                return Err(candle_core::Error::ShapeMismatchBinaryOp {
                    lhs: (m, n).into(),
                    rhs: c.shape().clone(),
                    op: "bcd-matmul-add-row",
                }
                .into());
            }
            let mut out = vec![0f32; m * n];
            out.par_chunks_mut(n.max(1))
                .for_each(|r| r.copy_from_slice(&row));
            (out, Accum::Add)
        }
    })
}

/// `addend + alpha · op(a) · op(b)` by faer.
pub(super) fn matmul(
    a: Op,
    b: Op,
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    addend: Addend,
) -> Result<Tensor> {
    let (mut out, accum) = init_out(addend, m, n)?;
    match (a, b) {
        (Op::T(x), Op::N(y)) if is_tall(k, m, n) => {
            let prod = tall_product(x, y, false)?;
            out.iter_mut().zip(&prod).for_each(|(o, p)| match accum {
                Accum::Add => *o += alpha * p,
                Accum::Replace => *o = alpha * p,
            });
        }
        _ => gemm(&mut out, accum, a, b, alpha)?,
    }
    Ok(Tensor::from_vec(out, (m, n), &Device::Cpu)?)
}

/// Rows per block of a tall product.
pub(super) const TALL_BLOCK: usize = 8192;

/// Whether `XᵀY` (`k` rows, an `m × n` result) is tall: a small result over many rows (the
/// Gram and cross products of a convolution's patches, `N·H_o·W_o` rows of `C·k²` columns).
/// faer's parallel product spent its time with its threads waiting on each other there (on 2
/// cores, 2.3 s for one 784,000 × 36 Gram); such products are summed from sequential products
/// of row blocks run in parallel instead, which took a 4-channel conv ResNet's sweep on 1,000
/// images from 10.8 s to 1.7 s.
pub(super) fn is_tall(k: usize, m: usize, n: usize) -> bool {
    m * n <= 1 << 16 && k > TALL_BLOCK && k >= 64 * m.max(n)
}

/// `XᵀY` for row-major `X [k, m]`, `Y [k, n]` (`XᵀX` when `gram`), as the sum of the products
/// of blocks of [`TALL_BLOCK`] rows, each sequential, the blocks in parallel and their sum
/// taken in `f64` in block order (so the result does not depend on thread scheduling, and the
/// rounding of one `f32` sum over all rows is not paid).
fn tall_product(x: &Tensor, y: &Tensor, gram: bool) -> Result<Vec<f32>> {
    let (k, m) = x.dims2()?;
    let n = y.dim(1)?;
    with_slice(x, |sx| {
        with_slice(y, |sy| {
            let starts: Vec<usize> = (0..k).step_by(TALL_BLOCK).collect();
            let partials: Vec<Vec<f32>> = starts
                .par_iter()
                .map(|&start| {
                    let rows = TALL_BLOCK.min(k - start);
                    let xb = MatRef::from_row_major_slice(&sx[start * m..][..rows * m], rows, m);
                    let yb = MatRef::from_row_major_slice(&sy[start * n..][..rows * n], rows, n);
                    let mut part = vec![0f32; m * n];
                    let dst = MatMut::from_row_major_slice_mut(&mut part, m, n);
                    let rhs = if gram { xb } else { yb };
                    faer::linalg::matmul::matmul(
                        dst,
                        Accum::Replace,
                        xb.transpose(),
                        rhs,
                        1.0f32,
                        Par::Seq,
                    );
                    part
                })
                .collect();
            let total = partials.into_iter().fold(vec![0f64; m * n], |mut acc, p| {
                acc.iter_mut().zip(&p).for_each(|(a, &x)| *a += x as f64);
                acc
            });
            total.into_iter().map(|x| x as f32).collect()
        })
    })?
}

/// `dst ← alpha · op(a) · op(b)` (`Accum::Replace`) or `dst += …` (`Accum::Add`), `dst`
/// row-major with the product's shape.
pub(super) fn gemm(dst: &mut [f32], accum: Accum, a: Op, b: Op, alpha: f32) -> Result<()> {
    with_slice(a.tensor(), |sa| {
        with_slice(b.tensor(), |sb| -> Result<()> {
            let lhs = view(a, sa)?;
            let rhs = view(b, sb)?;
            gemm_views(dst, accum, lhs, rhs, alpha)
        })
    })??
}

/// [`gemm`] on faer views; checks `dst`'s length.
pub(super) fn gemm_views(
    dst: &mut [f32],
    accum: Accum,
    lhs: MatRef<f32>,
    rhs: MatRef<f32>,
    alpha: f32,
) -> Result<()> {
    let (m, n) = (lhs.nrows(), rhs.ncols());
    if dst.len() != m * n || lhs.ncols() != rhs.nrows() {
        return Err(candle_core::Error::Msg(format!(
            "bcd-gemm: [{m}, {}] · [{}, {n}] into {} elements",
            lhs.ncols(),
            rhs.nrows(),
            dst.len()
        ))
        .into());
    }
    let dst = MatMut::from_row_major_slice_mut(dst, m, n);
    faer::linalg::matmul::matmul(dst, accum, lhs, rhs, alpha, par());
    Ok(())
}

/// `AᵀA`: faer computes the lower triangle only, which is then mirrored.
pub(super) fn gram(a: &Tensor) -> Result<Tensor> {
    let (rows, n) = a.dims2()?;
    if is_tall(rows, n, n) {
        return Ok(Tensor::from_vec(
            tall_product(a, a, true)?,
            (n, n),
            &Device::Cpu,
        )?);
    }
    let mut out = vec![0f32; n * n];
    with_slice(a, |sa| -> Result<()> {
        let x = view(Op::N(a), sa)?;
        let dst = MatMut::from_row_major_slice_mut(&mut out, n, n);
        triangular::matmul(
            dst,
            BlockStructure::TriangularLower,
            Accum::Replace,
            x.transpose(),
            BlockStructure::Rectangular,
            x,
            BlockStructure::Rectangular,
            1.0f32,
            par(),
        );
        Ok(())
    })??;
    for i in 0..n {
        for j in 0..i {
            out[j * n + i] = out[i * n + j];
        }
    }
    Ok(Tensor::from_vec(out, (n, n), &Device::Cpu)?)
}

/// Column sums accumulated in `f64`. Blocks of rows are summed in parallel and the partial
/// sums combined in a fixed order, so the result does not depend on thread scheduling.
pub(super) fn col_sums(a: &Tensor) -> Result<Vec<f64>> {
    let (_rows, n) = a.dims2()?;
    with_slice(a, |s| {
        let partials: Vec<Vec<f64>> = s
            .par_chunks(n.max(1) * 512)
            .map(|block| {
                let mut acc = vec![0f64; n];
                for row in block.chunks(n) {
                    acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
                }
                acc
            })
            .collect();
        partials.into_iter().fold(vec![0f64; n], |mut acc, p| {
            acc.iter_mut().zip(&p).for_each(|(a, x)| *a += x);
            acc
        })
    })
}
