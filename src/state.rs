//! The optimizer's state as plain data: the lifted variables and the iteration count.
//!
//! The weights are not part of it: they live in the model's `VarMap`. Together the two are
//! everything a sweep reads, so saving both and reloading them continues a run exactly.

use candle_core::Tensor;

/// Lifted variables `U_i` (pre-activations) and `V_i` (activations) of every layer, each of
/// shape `[N, d_i]`, indexed by the 0-based layer index (`u[l]` is `U_{l+1}`), and the number of
/// completed sweeps.
#[derive(Debug, Clone)]
pub struct LiftedState {
    /// Completed sweeps.
    pub iteration: usize,
    /// Pre-activations `U_1 … U_L`.
    pub u: Vec<Tensor>,
    /// Activations `V_1 … V_L` (`V_L` is the lifted output).
    pub v: Vec<Tensor>,
}

impl LiftedState {
    /// Checkpoint name of `U_{l+1}`.
    pub fn u_name(l: usize) -> String {
        format!("lifted.u.{l}")
    }

    /// Checkpoint name of `V_{l+1}`.
    pub fn v_name(l: usize) -> String {
        format!("lifted.v.{l}")
    }

    /// Bytes held by the lifted variables.
    pub fn size_bytes(&self) -> usize {
        self.u
            .iter()
            .chain(&self.v)
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }
}
