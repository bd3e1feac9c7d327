//! The hidden activation block `V_i` under an image layer `i+1` (a convolution, or pooling
//! before a linear layer): with `A` that layer's linear map (`crate::conv::ops`),
//!
//! ```text
//! V_i ← argmin_V γ/2‖V − S_i − σ(U_i)‖² + r/2‖U_{i+1} − A(V) − b_{i+1}‖²
//!                [+ qγ/2‖V_{i+1} − V − σ(U_{i+1})‖² if layer i+1 is residual]
//!  ⇔  (sI + rAᵀA) V = γ(S_i + σ(U_i)) [+ qγ(V_{i+1} − σ(U_{i+1}))] + rAᵀ(U_{i+1} − b_{i+1}),
//! ```
//!
//! `r = qρ` with `q` the layer-weight ratio (`BcdConfig::penalty_growth`, 1 by default),
//! `s = γ` (or `(1 + q)γ` when layer `i+1` is residual). `AᵀA` is no longer a small dense matrix
//! acting on rows, so the system is solved by conjugate gradients through `A` and `Aᵀ`
//! (`crate::conv::cg`), warm-started at the current `V_i`: every iterate lowers the block's
//! strongly convex quadratic, so the block never raises `Φ`.

use candle_core::Tensor;

use super::cg::{self, CgStop};
use super::geometry::Spatial;
use super::ops;
use crate::activation::Activation;
use crate::comm::Communicator;
use crate::config::BcdConfig;
use crate::error::Result;
use crate::three_split::updates::HiddenNeighbours;

/// The minimiser above from the current `V_i` (`nb.v`), with the CG iterations and the largest
/// relative residual.
pub(crate) fn hidden_activation(
    nb: HiddenNeighbours,
    next: &Spatial,
    act: Activation,
    cfg: &BcdConfig,
    comm: &dyn Communicator,
) -> Result<(Tensor, usize, f64)> {
    let (g, r) = cfg.hidden_weights();
    // Detached from their `Var`s, so that no operation here is recorded for backprop.
    let (w, b) = (&nb.w_next.detach(), &nb.b_next.detach());
    let mut rhs = act.output_tensor(nb.u_i, nb.skip)?.affine(g, 0.0)?;
    let mut shift = g;
    if let Some(reader) = nb.reader {
        rhs = (rhs + reader.target_tensor()?.affine(reader.weight, 0.0)?)?;
        shift = g + reader.weight;
    }
    let coupled = ops::adjoint(next, &ops::sub_bias(next, nb.u_next, b)?, w)?;
    let rhs = (rhs + coupled.affine(r, 0.0)?)?;
    let apply = |v: &Tensor| -> Result<Tensor> {
        let av = ops::forward(next, v, w, None)?;
        Ok((v.affine(shift, 0.0)? + ops::adjoint(next, &av, w)?.affine(r, 0.0)?)?)
    };
    let stop = CgStop {
        max_iterations: cfg.cg_iterations,
        tolerance: cfg.cg_tolerance,
    };
    cg::solve_rows(apply, &rhs, nb.v, stop, comm)
}
