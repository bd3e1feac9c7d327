//! Conjugate gradients, one independent system per row: `M v_n = r_n` for a symmetric positive
//! definite `M` that acts on each row alone (here `sI + ρAᵀA` of an image layer, which couples
//! the entries of one sample's image but never two samples).
//!
//! Each row runs its own CG recurrences (its own step lengths `α_n = ‖r_n‖²/p_nᵀMp_n` and
//! `β_n`), so a row's iterates do not depend on which other rows share the batch or the rank;
//! only the number of iterations is common, and the stopping test (the largest relative
//! residual `‖r_n‖/‖b_n‖` below the tolerance) is agreed over the ranks. Started at `v⁰`, every
//! iterate lowers the row's quadratic `½vᵀMv − bᵀv` (CG minimises it over a growing Krylov
//! space that contains the previous iterate), so the block never raises `Φ`, whatever the
//! iteration count.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::ops::row_dots;
use crate::comm::{self, Communicator};
use crate::error::Result;

/// How an inner conjugate-gradient solve ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CgReport {
    /// The layer index `l` of the block `V_{l+1}` it solved.
    pub layer: usize,
    /// Iterations run.
    pub iterations: usize,
    /// The largest relative residual `‖b_n − Mv_n‖/‖b_n‖` over the rows (over all ranks).
    pub relative_residual: f64,
}

/// Stopping rule of the inner solves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgStop {
    pub max_iterations: usize,
    pub tolerance: f64,
}

/// Solves `M v_n = b_n` row by row from `v0` (see the module documentation); `apply` computes
/// `M` on rows. Returns the iterate and `(iterations, largest relative residual)`.
pub(crate) fn solve_rows(
    apply: impl Fn(&Tensor) -> Result<Tensor>,
    b: &Tensor,
    v0: &Tensor,
    stop: CgStop,
    comm: &dyn Communicator,
) -> Result<(Tensor, usize, f64)> {
    let b_sq = row_dots(b, b)?;
    let mut v = v0.clone();
    let mut r = (b - apply(&v)?)?;
    let mut rr = row_dots(&r, &r)?;
    let mut p = r.clone();
    let mut iterations = 0;
    loop {
        let residual = largest_relative(&rr, &b_sq, comm)?;
        if residual <= stop.tolerance || iterations == stop.max_iterations {
            return Ok((v, iterations, residual));
        }
        let mp = apply(&p)?;
        let pmp = row_dots(&p, &mp)?;
        // A row already solved has r = p = 0: its step is 0, not 0/0.
        let alpha = safe_ratio(&rr, &pmp)?;
        v = (v + p.broadcast_mul(&alpha)?)?;
        r = (r - mp.broadcast_mul(&alpha)?)?;
        let rr_new = row_dots(&r, &r)?;
        let beta = safe_ratio(&rr_new, &rr)?;
        p = (&r + p.broadcast_mul(&beta)?)?;
        rr = rr_new;
        iterations += 1;
    }
}

/// `a/b` per row in `f32`, 0 where `b` is 0.
fn safe_ratio(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let positive = b.gt(0.0)?;
    let safe_b = positive.where_cond(b, &b.ones_like()?)?;
    Ok(positive
        .where_cond(&(a / safe_b)?, &a.zeros_like()?)?
        .to_dtype(DType::F32)?)
}

/// `max_n √(rr_n / bb_n)` over this rank's rows, then over the ranks (a row with `b_n = 0`
/// counts its absolute residual).
fn largest_relative(rr: &Tensor, bb: &Tensor, comm: &dyn Communicator) -> Result<f64> {
    let rr = rr.flatten_all()?.to_vec1::<f64>()?;
    let bb = bb.flatten_all()?.to_vec1::<f64>()?;
    let local = rr
        .iter()
        .zip(&bb)
        .map(|(&r, &b)| (r / if b > 0.0 { b } else { 1.0 }).sqrt())
        .fold(0.0f64, f64::max);
    Ok(comm::max(comm, local))
}
