//! Which path a kernel takes, and a count of the `N`-row host round trips the other path makes.
//!
//! The fused CPU path (scalar closures over host memory) is taken for CPU `f32` tensors; any
//! other tensor takes the device path, built from Candle tensor operations that run where the
//! tensors are. The device path can be forced on the CPU ([`with_device_path`]), so that it is
//! tested on machines without a GPU: a sweep on that path must never hand an `N`-row operand to
//! a closure kernel, which on a GPU would copy it to the host and back; such hand-overs are
//! counted ([`host_round_trips`]).

use std::cell::Cell;

use candle_core::{DType, Tensor};

use crate::error::Result;

thread_local! {
    static FORCED: Cell<bool> = const { Cell::new(false) };
    static ROUND_TRIPS: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` with the device path forced on this thread (also for CPU tensors).
pub fn with_device_path<R>(f: impl FnOnce() -> R) -> R {
    let before = FORCED.with(|c| c.replace(true));
    let out = f();
    FORCED.with(|c| c.set(before));
    out
}

/// How many times on this thread a closure kernel received operands on the device path (each
/// a host round trip of its operands on a GPU).
pub fn host_round_trips() -> usize {
    ROUND_TRIPS.with(Cell::get)
}

/// Whether `t` takes the fused CPU path.
pub(crate) fn fused(t: &Tensor) -> bool {
    super::is_cpu_f32(t) && !FORCED.with(Cell::get)
}

/// Records that a closure kernel ran on operands of the device path.
pub(super) fn count_round_trip() {
    ROUND_TRIPS.with(|c| c.set(c.get() + 1));
}

/// The sum of all entries of `t`, accumulated in `f64` on its device.
pub(crate) fn sum_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}
