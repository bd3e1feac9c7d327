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
    if inputs.iter().any(|t| !super::fused(t)) {
        super::device::count_round_trip();
    }
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

/// `out[i, j] = f([in_0[i, j], …], row[j])` for matrices with `row.len()` columns: a map with
/// one value per column (a bias, say) broadcast down the rows.
pub fn map_row<const K: usize>(
    inputs: [&Tensor; K],
    row: &[f64],
    f: impl Fn([f32; K], f64) -> f32 + Sync,
) -> Result<Tensor> {
    like(map_row_vec(inputs, row, f)?, inputs[0])
}

/// [`map_row`] into a host vector (row-major).
pub(super) fn map_row_vec<const K: usize>(
    inputs: [&Tensor; K],
    row: &[f64],
    f: impl Fn([f32; K], f64) -> f32 + Sync,
) -> Result<Vec<f32>> {
    let (_, cols) = inputs[0].dims2()?;
    if row.len() != cols {
        return Err(candle_core::Error::Msg(format!(
            "bcd-elementwise: a row of {} values for {cols} columns",
            row.len()
        ))
        .into());
    }
    Ok(fill_new(inputs, Pass::Row(row), f)?.0)
}

/// [`map`] that also returns `Σ_j (out[j] − in_step[j])²` (`f64`, reproducible): a block
/// update and the squared length of its step in one pass.
pub fn map_step<const K: usize>(
    inputs: [&Tensor; K],
    step: usize,
    f: impl Fn([f32; K]) -> f32 + Sync,
) -> Result<(Tensor, f64)> {
    let (out, sq) = fill_new(inputs, Pass::Step(step), |x, _| f(x))?;
    Ok((like(out, inputs[0])?, sq))
}

/// A new host vector `out[j] = f([in_0[j], …], value)` through [`fill`] (the value as `pass`
/// says), with [`fill`]'s sum.
fn fill_new<const K: usize>(
    inputs: [&Tensor; K],
    pass: Pass,
    f: impl Fn([f32; K], f64) -> f32 + Sync,
) -> Result<(Vec<f32>, f64)> {
    with_slices(inputs, |s| {
        let mut out = vec![0f32; s[0].len()];
        let sq = fill(&mut out, s, pass, |_, x, r| f(x, r));
        (out, sq)
    })
}

/// A host vector as a tensor of `t`'s shape on `t`'s device.
fn like(out: Vec<f32>, t: &Tensor) -> Result<Tensor> {
    Ok(Tensor::from_vec(out, t.shape(), &Device::Cpu)?.to_device(t.device())?)
}

/// `dst[j] ← f(dst[j], [in_0[j], …])` in place, in parallel; with `step = Some(k)` also
/// returns `Σ_j (dst_new[j] − in_k[j])²` (else 0).
pub(super) fn update_slice<const K: usize>(
    dst: &mut [f32],
    inputs: [&Tensor; K],
    step: Option<usize>,
    f: impl Fn(f32, [f32; K]) -> f32 + Sync,
) -> Result<f64> {
    with_slices_or_none(inputs, |s| {
        if s.iter().any(|x| x.len() != dst.len()) {
            return Err(candle_core::Error::Msg("bcd-update: operand sizes differ".into()).into());
        }
        let pass = step.map_or(Pass::Plain, Pass::Step);
        Ok(fill(dst, s, pass, |o, x, _| f(o, x)))
    })?
}

/// What [`fill`] passes to its function besides the operands, or computes beside the map.
#[derive(Clone, Copy)]
enum Pass<'a> {
    /// Nothing (the function gets 0).
    Plain,
    /// `row[j]` for an entry in column `j` (the matrix has `row.len()` columns).
    Row(&'a [f64]),
    /// `Σ_j (dst_new[j] − s_k[j])²` for operand `k` (the function gets 0).
    Step(usize),
}

/// The loop behind every elementwise kernel: `dst[j] ← f(dst[j], [s_0[j], …], value)` in
/// parallel chunks (the value as [`Pass`] says); with [`Pass::Step`] it returns the squared
/// step, the chunks' partial sums added in chunk order (reproducible whatever the scheduling),
/// else 0.
fn fill<const K: usize>(
    dst: &mut [f32],
    s: [&[f32]; K],
    pass: Pass,
    f: impl Fn(f32, [f32; K], f64) -> f32 + Sync,
) -> f64 {
    let partials: Vec<f64> = dst
        .par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(ci, chunk)| {
            let off = ci * CHUNK;
            // Operands cut to the chunk: no bounds checks inside the loops.
            let x: [&[f32]; K] = std::array::from_fn(|k| &s[k][off..off + chunk.len()]);
            match pass {
                Pass::Step(k) => fill_step(chunk, x, x[k], &f),
                Pass::Plain => {
                    fill_cols(chunk, x, None, 0, &f);
                    0.0
                }
                Pass::Row(row) => {
                    fill_cols(chunk, x, Some(row), off % row.len().max(1), &f);
                    0.0
                }
            }
        })
        .collect();
    partials.iter().sum()
}

/// Partial sums per chunk of a reduction ([`fill_step`], [`sum_chunk`]).
const LANES: usize = 8;

/// Groups of [`LANES`] entries whose squared steps are summed in `f32` before they are added to
/// the `f64` lane sums of [`fill_step`].
const GROUPS_PER_FLUSH: usize = 32;

/// One chunk of [`fill`] with a step and no column index, in groups of [`LANES`] entries with
/// one partial sum per lane, so that the loop can be vectorised (one running sum would
/// serialise it on its additions). Each lane sums the squares of [`GROUPS_PER_FLUSH`] entries
/// in `f32` and then adds that into its `f64` sum: converting every square to `f64` made the
/// `U` prox pass compute-bound (0.17–0.21 s against 0.07–0.10 s for 60,000 × 1,500 entries),
/// and a sum of 32 non-negative `f32` terms is within `32 ε ≈ 2·10⁻⁶` of the exact one. The
/// lanes are added in a fixed order: still reproducible.
fn fill_step<const K: usize>(
    dst: &mut [f32],
    x: [&[f32]; K],
    from: &[f32],
    f: &impl Fn(f32, [f32; K], f64) -> f32,
) -> f64 {
    let mut sq = [0f64; LANES];
    let block = LANES * GROUPS_PER_FLUSH;
    for start in (0..dst.len()).step_by(block) {
        let end = (start + block).min(dst.len());
        let whole = start + (end - start) / LANES * LANES;
        let mut part = [0f32; LANES];
        for g in (start..whole).step_by(LANES) {
            let out = &mut dst[g..g + LANES];
            let old = &from[g..g + LANES];
            let xg: [&[f32]; K] = std::array::from_fn(|i| &x[i][g..g + LANES]);
            for l in 0..LANES {
                let new = f(out[l], std::array::from_fn(|i| xg[i][l]), 0.0);
                let d = new - old[l];
                part[l] += d * d;
                out[l] = new;
            }
        }
        for j in whole..end {
            let new = f(dst[j], std::array::from_fn(|i| x[i][j]), 0.0);
            let d = new - from[j];
            part[j - whole] += d * d;
            dst[j] = new;
        }
        sq.iter_mut().zip(part).for_each(|(s, p)| *s += p as f64);
    }
    sq.iter().sum()
}

/// `Σ_j f([x_0[j], …])` over one chunk, in groups of [`LANES`] partial sums (vectorisable, and
/// added in a fixed order).
fn sum_chunk<const K: usize>(x: [&[f32]; K], f: &impl Fn([f32; K]) -> f64) -> f64 {
    let n = x.first().map_or(0, |s| s.len());
    let whole = n - n % LANES;
    let mut sq = [0f64; LANES];
    for g in (0..whole).step_by(LANES) {
        let xg: [&[f32]; K] = std::array::from_fn(|i| &x[i][g..g + LANES]);
        for (l, acc) in sq.iter_mut().enumerate() {
            *acc += f(std::array::from_fn(|i| xg[i][l]));
        }
    }
    for (j, acc) in (whole..n).zip(sq.iter_mut()) {
        *acc += f(std::array::from_fn(|i| x[i][j]));
    }
    sq.iter().sum()
}

/// One chunk of [`fill`] without a step: `f` gets `row[column]`, or 0 without a row. With a
/// row, one row segment at a time (the first and last may be partial, `col` is the first
/// entry's column), so the row is read in step with the entries with no wrap-around test.
/// Groups of [`LANES`] entries, as in [`fill_step`], need no bounds checks, so the loop can be
/// vectorised (entry by entry, with the column index passed to `f` to look the value up, a
/// 60,000 × 1,500 map ran at a third of the speed).
fn fill_cols<const K: usize>(
    dst: &mut [f32],
    x: [&[f32]; K],
    row: Option<&[f64]>,
    col: usize,
    f: &impl Fn(f32, [f32; K], f64) -> f32,
) {
    let cols = row.map_or(usize::MAX, |r| r.len().max(1));
    let (mut start, mut first_col) = (0, col);
    while start < dst.len() {
        let len = (cols - first_col).min(dst.len() - start);
        let r = row.map(|r| &r[first_col..first_col + len]);
        let value = |j: usize| r.map_or(0.0, |r| r[j]);
        let whole = start + len / LANES * LANES;
        for g in (start..whole).step_by(LANES) {
            let out = &mut dst[g..g + LANES];
            let xg: [&[f32]; K] = std::array::from_fn(|i| &x[i][g..g + LANES]);
            let rg: [f64; LANES] = match r {
                Some(r) => std::array::from_fn(|l| r[g - start..g - start + LANES][l]),
                None => [0.0; LANES],
            };
            for l in 0..LANES {
                out[l] = f(out[l], std::array::from_fn(|i| xg[i][l]), rg[l]);
            }
        }
        for j in whole..start + len {
            dst[j] = f(dst[j], std::array::from_fn(|i| x[i][j]), value(j - start));
        }
        start += len;
        first_col = 0;
    }
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
    like(fill_new(inputs, Pass::Plain, |x, _| f(x))?.0, inputs[0])
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
                let x: [&[f32]; K] = std::array::from_fn(|k| &s[k][ci * CHUNK..end]);
                sum_chunk(x, &f)
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
    like(out, inputs[0])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 3,001 × 7 spans two chunks whose boundary falls inside a row (16,384 is not a multiple
    /// of 7), and the last chunk (4,623 entries) ends in a partial group of lanes; 1,001 × 21
    /// has rows of two whole groups and a partial one, and a chunk boundary four entries into
    /// a row: the per-column values and the fused step must still be those of a plain loop.
    #[test]
    fn column_values_and_fused_step_match_a_plain_loop() {
        for (rows, cols) in [(3001, 7), (1001, 21)] {
            plain_loop_case(rows, cols);
        }
    }

    fn plain_loop_case(rows: usize, cols: usize) {
        assert_ne!((rows * cols - CHUNK) % LANES, 0);
        let a = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
        let av: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        let bv: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();

        let row: Vec<f64> = (0..cols).map(|j| j as f64).collect();
        let got: Vec<f32> = map_row([&a], &row, |[x], r| x + r as f32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (g, x)) in got.iter().zip(&av).enumerate() {
            assert_eq!(*g, x + (i % cols) as f32, "entry {i}");
        }

        let (out, step) = map_step([&a, &b], 1, |[x, y]| 2.0 * x - y).unwrap();
        let out: Vec<f32> = out.flatten_all().unwrap().to_vec1().unwrap();
        let mut want = 0f64;
        for i in 0..rows * cols {
            assert_eq!(out[i], 2.0 * av[i] - bv[i]);
            want += (out[i] as f64 - bv[i] as f64).powi(2);
        }
        // Squares summed in f32 over 32 entries per lane before f64: within
        // (2 + 31)·2⁻²⁴ ≈ 2·10⁻⁶ of the f64 sum (see `fill_step`).
        assert!((step - want).abs() <= 4e-6 * want, "{step} vs {want}");

        // f64 sums in another order: equal up to n·ε of the sum of magnitudes.
        let dot = sum_map([&a, &b], |[x, y]| x as f64 * y as f64).unwrap();
        let (want, scale) = (0..rows * cols).fold((0f64, 0f64), |(w, m), i| {
            let t = av[i] as f64 * bv[i] as f64;
            (w + t, m + t.abs())
        });
        assert!((dot - want).abs() <= 1e-10 * scale, "{dot} vs {want}");

        let mut dst = av.clone();
        let step = update_slice(&mut dst, [&b], Some(0), |d, [y]| d * y).unwrap();
        let want: f64 = (0..rows * cols)
            .map(|i| (av[i] as f64 * bv[i] as f64 - bv[i] as f64).powi(2))
            .sum();
        assert!((step - want).abs() <= 1e-6 * want, "{step} vs {want}");
    }
}
