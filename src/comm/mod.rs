//! Data-parallel runs: the collective operations a sweep needs, behind one small interface.
//!
//! Every `U_i`, `V_i` update is row-local given the weights, so the training rows can be split
//! between processes (ranks), each holding a contiguous share of `X`, `Y`, `U_i`, `V_i`. What
//! couples the rows are sums over them, and only those cross between ranks:
//!
//! ```text
//! weight block W̃_i     ṼᵀṼ = Σ_r Ṽ_rᵀṼ_r,  ṼᵀT = Σ_r Ṽ_rᵀT_r     (d_{i−1}+1)·(d_{i−1}+1+d_i) f64
//! objective, ‖Δx‖²     Σ_r (loss_r, fit_r, ...)                     a few f64
//! accuracy             Σ_r correct_r                                one f64
//! ```
//!
//! A [`Communicator`] provides them: [`SingleProcess`] (the default; every operation is a
//! no-op) or, with the `mpi` feature, `Mpi` over the system's MPI library. The exact weight
//! solve runs on rank 0, which broadcasts the result, so every rank holds
//! bit-identical weights; sums are reduced on rank 0 and broadcast, so every rank also sees the
//! same bits of every sum and takes the same decisions (line searches, safeguards).

#[cfg(feature = "mpi")]
mod mpi;

use std::fmt::Debug;
use std::ops::Range;

use candle_core::Tensor;

use crate::error::{BcdError, Result};

#[cfg(feature = "mpi")]
pub use self::mpi::Mpi;

/// The collectives a data-parallel sweep needs. Every rank must call the same operations in the
/// same order with buffers of the same length (as in MPI).
pub trait Communicator: Send + Sync + Debug {
    /// This process's rank, `0 ≤ rank < size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Sums `buf` over all ranks, in place; every rank receives the same bits.
    fn sum_f64(&self, buf: &mut [f64]);
    /// Overwrites `buf` on every rank with rank 0's values.
    fn broadcast_f32(&self, buf: &mut [f32]);
    /// Overwrites `buf` on every rank with rank 0's bytes.
    fn broadcast_bytes(&self, buf: &mut [u8]);
    /// Returns once every rank has called it.
    fn barrier(&self);
}

/// One process holding all rows: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f64(&self, _buf: &mut [f64]) {}
    fn broadcast_f32(&self, _buf: &mut [f32]) {}
    fn broadcast_bytes(&self, _buf: &mut [u8]) {}
    fn barrier(&self) {}
}

/// The contiguous rows `rank` holds of `n` rows split over `size` ranks: the first `n mod size`
/// ranks hold `⌈n/size⌉` rows, the others `⌊n/size⌋`.
pub fn share(n: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Sums the values of `parts` over all ranks.
pub(crate) fn sum<const K: usize>(comm: &dyn Communicator, mut parts: [f64; K]) -> [f64; K] {
    comm.sum_f64(&mut parts);
    parts
}

/// The largest of every rank's `local` (each rank's value summed into its own slot).
pub(crate) fn max(comm: &dyn Communicator, local: f64) -> f64 {
    if comm.size() == 1 {
        return local;
    }
    let mut all = vec![0f64; comm.size()];
    all[comm.rank()] = local;
    comm.sum_f64(&mut all);
    all.into_iter().fold(f64::NEG_INFINITY, f64::max)
}

/// Makes every rank learn whether any rank's `local` failed: a failed rank keeps its own error,
/// the others get [`BcdError::Distributed`] naming the first failed rank. Call it where ranks
/// check their own data before a collective, so that one bad share ends every rank instead of
/// leaving the others waiting.
pub(crate) fn agree<T>(comm: &dyn Communicator, local: Result<T>) -> Result<T> {
    if comm.size() == 1 {
        return local;
    }
    let mut failed = vec![0f64; comm.size()];
    failed[comm.rank()] = f64::from(u8::from(local.is_err()));
    comm.sum_f64(&mut failed);
    match (local, failed.iter().position(|&f| f > 0.0)) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(rank)) => Err(BcdError::Distributed {
            rank,
            reason: "failed on its share of the data (its error is reported there)".into(),
        }),
        (Ok(v), None) => Ok(v),
    }
}

/// Runs `compute` on rank 0 only and gives every rank its tensors, which have the shapes,
/// dtype and device of `like` (`f32`). When `compute` fails on rank 0 every rank fails: rank 0
/// with its error, the others with [`BcdError::Distributed`] carrying its message.
pub(crate) fn from_root(
    comm: &dyn Communicator,
    like: &[&Tensor],
    compute: impl FnOnce() -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    if comm.size() == 1 {
        return compute();
    }
    let result = match comm.rank() {
        0 => Some(compute()),
        _ => None,
    };
    // The outcome first: 0 for success, else the length of rank 0's message.
    let message = match &result {
        Some(Err(e)) => e.to_string().into_bytes(),
        _ => Vec::new(),
    };
    let mut len = (message.len() as u64).to_le_bytes();
    comm.broadcast_bytes(&mut len);
    let len = u64::from_le_bytes(len) as usize;
    if len > 0 {
        let mut buf = message;
        buf.resize(len, 0);
        comm.broadcast_bytes(&mut buf);
        return match result {
            Some(Err(e)) => Err(e),
            _ => Err(BcdError::Distributed {
                rank: 0,
                reason: String::from_utf8_lossy(&buf).into_owned(),
            }),
        };
    }
    let mut flat = match result {
        Some(Ok(tensors)) => {
            let mut flat = Vec::new();
            for t in &tensors {
                flat.extend(t.flatten_all()?.to_vec1::<f32>()?);
            }
            flat
        }
        _ => vec![0f32; like.iter().map(|t| t.elem_count()).sum()],
    };
    comm.broadcast_f32(&mut flat);
    let mut offset = 0;
    like.iter()
        .map(|t| {
            let n = t.elem_count();
            let part = Tensor::from_slice(&flat[offset..offset + n], t.dims(), t.device())?;
            offset += n;
            Ok(part)
        })
        .collect()
}

/// `t` (a small `f32` tensor, e.g. `Dᵀ V`) summed over all ranks, accumulated in `f64`.
pub(crate) fn sum_tensor(comm: &dyn Communicator, t: &Tensor) -> Result<Tensor> {
    if comm.size() == 1 {
        return Ok(t.clone());
    }
    let mut buf: Vec<f64> = t
        .flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1()?;
    comm.sum_f64(&mut buf);
    let buf: Vec<f32> = buf.into_iter().map(|x| x as f32).collect();
    Ok(Tensor::from_vec(buf, t.dims(), t.device())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shares are contiguous, cover `0..n` once and differ in size by at most one row.
    #[test]
    fn shares_partition_the_rows() {
        for n in [0, 1, 5, 999, 1000] {
            for size in 1..=7 {
                let shares: Vec<_> = (0..size).map(|r| share(n, r, size)).collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[size - 1].end, n);
                for w in shares.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<_> = shares.iter().map(|s| s.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1, "n={n} size={size}: {lens:?}");
            }
        }
    }
}
