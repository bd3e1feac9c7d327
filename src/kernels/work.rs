//! [`Work`]: an `N × d` intermediate built up in place, so that a block update holds one such
//! buffer instead of one per step (the `V_i` update's right-hand side becomes its solution;
//! the `U_i` update's product `Z_i` becomes the new `U_i`; a forward pass's pre-activation
//! becomes the layer's output).
//!
//! On the CPU the buffer is a host vector updated in place: products accumulate into it
//! (faer), the right multiplication by a `d × d` matrix runs in blocks of rows (one band of
//! rows per thread) through a small scratch buffer, and elementwise updates overwrite it. On
//! other devices every step is an ordinary tensor operation (no memory saving, same results).

use candle_core::{Device, Tensor};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use super::{cpu, elementwise, fused, Addend, Op};
use crate::error::Result;

/// Rows per block of [`Work::right_mul`]: large enough for full-speed products, small enough
/// that the scratch buffer stays a few megabytes.
const ROW_BLOCK: usize = 2048;

/// An `N × d` `f32` matrix under construction.
pub enum Work {
    /// Row-major host buffer (inputs on the CPU).
    Host {
        /// The entries.
        data: Vec<f32>,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// A tensor on another device.
    Device(Tensor),
}

impl Work {
    /// `f([in_0[i, j], …], row[j])` elementwise over same-shaped matrices with `row.len()`
    /// columns (see [`super::map_row`]).
    pub fn map_row<const K: usize>(
        inputs: [&Tensor; K],
        row: &[f64],
        f: impl Fn([f32; K], f64) -> f32 + Sync,
    ) -> Result<Self> {
        if inputs.iter().all(|t| fused(t)) {
            let (rows, cols) = inputs[0].dims2()?;
            let data = elementwise::map_row_vec(inputs, row, f)?;
            return Ok(Work::Host { data, rows, cols });
        }
        Ok(Work::Device(elementwise::map_row(inputs, row, f)?))
    }

    /// A finished `N × d` matrix as a buffer to update in place (copied to host memory on
    /// the CPU).
    pub fn from_tensor(t: Tensor) -> Result<Self> {
        if fused(&t) {
            let (rows, cols) = t.dims2()?;
            let data = t.flatten_all()?.to_vec1::<f32>()?;
            return Ok(Work::Host { data, rows, cols });
        }
        Ok(Work::Device(t))
    }

    /// The affine map of a layer, `x Wᵀ + 1bᵀ`.
    pub fn affine(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Self> {
        if [x, w, b].iter().all(|t| fused(t)) {
            let rows = x.dim(0)?;
            let bias = b.flatten_all()?.to_vec1::<f32>()?;
            let cols = bias.len();
            let mut data = Vec::with_capacity(rows * cols);
            for _ in 0..rows {
                data.extend_from_slice(&bias);
            }
            cpu::gemm(&mut data, Accum::Add, Op::N(x), Op::T(w), 1.0)?;
            return Ok(Work::Host { data, rows, cols });
        }
        Ok(Work::Device(super::linear(x, w, b)?))
    }

    /// `self += alpha · op(a) · op(b)`.
    pub fn add_matmul(&mut self, a: Op, b: Op, alpha: f32) -> Result<()> {
        match self {
            Work::Host { data, .. } if fused(a.tensor()) && fused(b.tensor()) => {
                cpu::gemm(data, Accum::Add, a, b, alpha)
            }
            Work::Host { .. } => Err(candle_core::Error::Msg(
                "bcd-work: a host buffer takes products of CPU f32 tensors only".into(),
            )
            .into()),
            Work::Device(t) => {
                *t = super::matmul(a, b, alpha, Addend::Matrix(t))?;
                Ok(())
            }
        }
    }

    /// `self · op(b)` as a new tensor (the buffer is unchanged).
    pub fn matmul(&self, b: Op, alpha: f32) -> Result<Tensor> {
        match self {
            Work::Host { data, rows, cols } if fused(b.tensor()) => {
                let (k, n) = b.dims()?;
                if k != *cols {
                    return Err(candle_core::Error::Msg(format!(
                        "bcd-work: [{rows}, {cols}] · [{k}, {n}]"
                    ))
                    .into());
                }
                let lhs = MatRef::from_row_major_slice(data, *rows, *cols);
                let mut out = vec![0f32; rows * n];
                cpu::with_slice(b.tensor(), |sb| -> Result<()> {
                    let rhs = cpu::view(b, sb)?;
                    cpu::gemm_views(&mut out, Accum::Replace, lhs, rhs, alpha)
                })??;
                Ok(Tensor::from_vec(out, (*rows, n), &Device::Cpu)?)
            }
            _ => super::matmul(Op::N(&self.to_tensor()?), b, alpha, Addend::None),
        }
    }

    /// `self ← self · p` for a square `p`, in place: blocks of rows go through a scratch
    /// buffer of `ROW_BLOCK × d` floats.
    pub fn right_mul(&mut self, p: &Tensor) -> Result<()> {
        match self {
            Work::Host { data, rows, cols } if fused(p) => {
                let (pr, pc) = p.dims2()?;
                if (pr, pc) != (*cols, *cols) {
                    return Err(candle_core::Error::Msg(format!(
                        "bcd-work: [{rows}, {cols}] · [{pr}, {pc}] in place"
                    ))
                    .into());
                }
                let cols = (*cols).max(1);
                // One band of rows per thread, each walked in blocks by a sequential product:
                // 104–106 GFLOP/s against 92–103 for blocks in turn through faer's parallel
                // product (20,000 × 1,500 rows, paired runs).
                let threads = rayon::current_num_threads().max(1);
                let band = rows.div_ceil(threads).max(1) * cols;
                cpu::with_slice(p, |sp| {
                    let rhs = MatRef::from_row_major_slice(sp, cols, cols);
                    data.par_chunks_mut(band).for_each(|band| {
                        let mut scratch = vec![0f32; ROW_BLOCK.min(band.len() / cols) * cols];
                        for block in band.chunks_mut(ROW_BLOCK * cols) {
                            let r = block.len() / cols;
                            let out = &mut scratch[..r * cols];
                            let lhs = MatRef::from_row_major_slice(block, r, cols);
                            let dst = MatMut::from_row_major_slice_mut(out, r, cols);
                            faer::linalg::matmul::matmul(
                                dst,
                                Accum::Replace,
                                lhs,
                                rhs,
                                1.0,
                                Par::Seq,
                            );
                            block.copy_from_slice(out);
                        }
                    });
                })
            }
            _ => {
                let t = self.to_tensor()?;
                *self = Work::Device(super::matmul(Op::N(&t), Op::N(p), 1.0, Addend::None)?);
                Ok(())
            }
        }
    }

    /// `self ← factor · self`.
    pub fn scale(&mut self, factor: f32) -> Result<()> {
        match self {
            Work::Host { .. } => self.update([], |v, []| v * factor),
            Work::Device(t) => {
                *t = t.affine(factor as f64, 0.0)?;
                Ok(())
            }
        }
    }

    /// `self[j] ← f(self[j], [in_0[j], …])` in place.
    pub fn update<const K: usize>(
        &mut self,
        inputs: [&Tensor; K],
        f: impl Fn(f32, [f32; K]) -> f32 + Sync,
    ) -> Result<()> {
        self.update_with(inputs, None, f).map(|_| ())
    }

    /// [`Work::update`] that also returns `Σ_j (self_new[j] − in_step[j])²`, the squared length
    /// of a block step whose old value is input `step`, in the same pass.
    pub fn update_step<const K: usize>(
        &mut self,
        inputs: [&Tensor; K],
        step: usize,
        f: impl Fn(f32, [f32; K]) -> f32 + Sync,
    ) -> Result<f64> {
        self.update_with(inputs, Some(step), f)
    }

    fn update_with<const K: usize>(
        &mut self,
        inputs: [&Tensor; K],
        step: Option<usize>,
        f: impl Fn(f32, [f32; K]) -> f32 + Sync,
    ) -> Result<f64> {
        match self {
            Work::Host { data, .. } => elementwise::update_slice(data, inputs, step, f),
            Work::Device(t) => {
                super::device::count_round_trip();
                let device = t.device().clone();
                let (rows, cols) = t.dims2()?;
                let mut data = t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
                let sq = elementwise::update_slice(&mut data, inputs, step, f)?;
                *t = Tensor::from_vec(data, (rows, cols), &Device::Cpu)?.to_device(&device)?;
                Ok(sq)
            }
        }
    }

    /// A tensor with the current contents (copies a host buffer).
    fn to_tensor(&self) -> Result<Tensor> {
        Ok(match self {
            Work::Host { data, rows, cols } => {
                Tensor::from_slice(data, (*rows, *cols), &Device::Cpu)?
            }
            Work::Device(t) => t.clone(),
        })
    }

    /// The finished matrix (no copy).
    pub fn into_tensor(self) -> Result<Tensor> {
        Ok(match self {
            Work::Host { data, rows, cols } => Tensor::from_vec(data, (rows, cols), &Device::Cpu)?,
            Work::Device(t) => t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::max_abs_diff;

    /// Three row blocks, the last one partial, against Candle's own product.
    #[test]
    fn right_mul_in_row_blocks_matches_a_plain_product() {
        let x = Tensor::randn(0f32, 1.0, (2 * ROW_BLOCK + 37, 9), &Device::Cpu).unwrap();
        let p = Tensor::randn(0f32, 1.0, (9, 9), &Device::Cpu).unwrap();
        let expected = x.matmul(&p).unwrap();
        let mut w = Work::map_row([&x], &[0.0; 9], |[v], _| v).unwrap();
        w.right_mul(&p).unwrap();
        let got = w.into_tensor().unwrap();
        assert!(max_abs_diff(&got, &expected) < 1e-4);
    }

    /// `affine`, `add_matmul`, `matmul` and `update` against the same steps on tensors.
    #[test]
    fn host_steps_match_tensor_operations() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (50, 6), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, (4, 6), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 4, &dev).unwrap();
        let a = Tensor::randn(0f32, 1.0, (50, 3), &dev).unwrap();
        let c = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let mut work = Work::affine(&x, &w, &b).unwrap();
        work.add_matmul(Op::N(&a), Op::N(&c), 0.5).unwrap();
        work.update(
            [&a.narrow(1, 0, 1)
                .unwrap()
                .broadcast_as((50, 4))
                .unwrap()
                .contiguous()
                .unwrap()],
            |v, [s]| v - s,
        )
        .unwrap();
        let side = work.matmul(Op::N(&w), 1.0).unwrap();
        let got = work.into_tensor().unwrap();
        let shift = a.narrow(1, 0, 1).unwrap().broadcast_as((50, 4)).unwrap();
        let expected = ((x
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&b)
            .unwrap()
            + (a.matmul(&c).unwrap() * 0.5).unwrap())
        .unwrap()
            - shift)
            .unwrap();
        assert!(max_abs_diff(&got, &expected) < 1e-4);
        let expected_side = expected.matmul(&w).unwrap();
        assert!(max_abs_diff(&side, &expected_side) < 1e-3);
    }
}
