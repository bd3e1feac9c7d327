//! Fused elementwise maps and `f64` reductions over same-shaped tensors.
//!
//! Work is split into fixed-size chunks processed in parallel; reductions combine the chunks'
//! partial sums in chunk order, so results are reproducible bit for bit whatever the thread
//! scheduling.

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

use crate::error::Result;

const CHUNK: usize = 1 << 14;

/// Host copies of the inputs as contiguous `f32` (no copy for contiguous CPU `f32` tensors).
fn hosts<const K: usize>(inputs: [&Tensor; K]) -> Result<Vec<Tensor>> {
    let shape = inputs[0].shape();
    inputs
        .iter()
        .map(|t| {
            if t.shape() != shape {
                return Err(candle_core::Error::ShapeMismatchBinaryOp {
                    lhs: shape.clone(),
                    rhs: t.shape().clone(),
                    op: "bcd-elementwise",
                }
                .into());
            }
            Ok(t.to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?
                .contiguous()?)
        })
        .collect()
}

/// Runs `f` on the `K` host slices of `inputs`.
fn with_slices<const K: usize, R>(
    inputs: [&Tensor; K],
    f: impl FnOnce([&[f32]; K]) -> R,
) -> Result<R> {
    let hosts = hosts(inputs)?;
    let guards: Vec<_> = hosts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(K);
    for (storage, layout) in &guards {
        let Storage::Cpu(cpu) = &**storage else {
            unreachable!("hosts() moved every tensor to the CPU")
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("non-contiguous tensor".into()))?;
        slices.push(&cpu.as_slice::<f32>()?[start..end]);
    }
    let slices: [&[f32]; K] = slices
        .try_into()
        .map_err(|_| candle_core::Error::Msg("slice count".into()))?;
    Ok(f(slices))
}

/// `out[j] = f([in_0[j], …], column of j)` for matrices (or the flat index for other ranks).
pub fn map_cols<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([f32; K], usize) -> f32 + Sync,
) -> Result<Tensor> {
    let shape = inputs[0].shape().clone();
    let out = map_cols_vec(inputs, f)?;
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?.to_device(inputs[0].device())?)
}

/// [`map_cols`] into a host vector (row-major).
pub(super) fn map_cols_vec<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([f32; K], usize) -> f32 + Sync,
) -> Result<Vec<f32>> {
    let cols = match inputs[0].shape().dims() {
        [_, c] => (*c).max(1),
        _ => usize::MAX,
    };
    with_slices(inputs, |s| {
        let len = s[0].len();
        let mut out = vec![0f32; len];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, chunk)| {
                let off = ci * CHUNK;
                for (j, o) in chunk.iter_mut().enumerate() {
                    let idx = off + j;
                    *o = f(std::array::from_fn(|k| s[k][idx]), idx % cols);
                }
            });
        out
    })
}

/// `dst[j] ← f(dst[j], [in_0[j], …])` in place, in parallel.
pub(super) fn update_slice<const K: usize>(
    dst: &mut [f32],
    inputs: [&Tensor; K],
    f: impl Fn(f32, [f32; K]) -> f32 + Sync,
) -> Result<()> {
    with_slices_or_none(inputs, |s| {
        if s.iter().any(|x| x.len() != dst.len()) {
            return Err(candle_core::Error::Msg("bcd-update: operand sizes differ".into()).into());
        }
        dst.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, chunk)| {
                let off = ci * CHUNK;
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = f(*o, std::array::from_fn(|k| s[k][off + j]));
                }
            });
        Ok(())
    })?
}

/// [`with_slices`], also for `K = 0`.
fn with_slices_or_none<const K: usize, R>(
    inputs: [&Tensor; K],
    f: impl FnOnce([&[f32]; K]) -> R,
) -> Result<R> {
    if K == 0 {
        return Ok(f(std::array::from_fn(|_| &[][..])));
    }
    with_slices(inputs, f)
}

/// `out[j] = f([in_0[j], in_1[j], …])`, on the device of the first input.
pub fn map<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([f32; K]) -> f32 + Sync,
) -> Result<Tensor> {
    map_cols(inputs, |x, _| f(x))
}

/// `Σ_j f([in_0[j], in_1[j], …])` accumulated in `f64`, reproducibly.
pub fn sum_map<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([f32; K]) -> f64 + Sync,
) -> Result<f64> {
    with_slices(inputs, |s| {
        let partials: Vec<f64> = (0..s[0].len().div_ceil(CHUNK))
            .into_par_iter()
            .map(|ci| {
                let end = ((ci + 1) * CHUNK).min(s[0].len());
                (ci * CHUNK..end)
                    .map(|idx| f(std::array::from_fn(|k| s[k][idx])))
                    .sum::<f64>()
            })
            .collect();
        partials.iter().sum()
    })
}

/// Row-wise map of matrices: `f(rows of the inputs, output row)` for every row, in parallel.
/// The output has the shape of the first input and lives on its device.
pub fn map_rows<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([&[f32]; K], &mut [f32]) + Sync,
) -> Result<Tensor> {
    let shape = inputs[0].shape().clone();
    let (_, cols) = inputs[0].dims2()?;
    let cols = cols.max(1);
    let out = with_slices(inputs, |s| {
        let mut out = vec![0f32; s[0].len()];
        out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
            f(
                std::array::from_fn(|k| &s[k][r * cols..(r + 1) * cols]),
                row,
            );
        });
        out
    })?;
    Ok(Tensor::from_vec(out, shape, &Device::Cpu)?.to_device(inputs[0].device())?)
}

/// `Σ_rows f(rows of the inputs)` accumulated in `f64`, reproducibly.
pub fn sum_rows<const K: usize>(
    inputs: [&Tensor; K],
    f: impl Fn([&[f32]; K]) -> f64 + Sync,
) -> Result<f64> {
    let (_, cols) = inputs[0].dims2()?;
    let cols = cols.max(1);
    with_slices(inputs, |s| {
        let rows = s[0].len() / cols;
        let block = (CHUNK / cols).max(1);
        let partials: Vec<f64> = (0..rows.div_ceil(block))
            .into_par_iter()
            .map(|b| {
                (b * block..((b + 1) * block).min(rows))
                    .map(|r| f(std::array::from_fn(|k| &s[k][r * cols..(r + 1) * cols])))
                    .sum::<f64>()
            })
            .collect();
        partials.iter().sum()
    })
}
