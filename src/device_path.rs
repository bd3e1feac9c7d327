//! Checking the device path without a device.
//!
//! On the CPU a sweep's elementwise maps and reductions run as fused closures over host memory;
//! on a GPU (any tensor that is not a CPU `f32` tensor) every block update runs as Candle tensor
//! operations instead. [`with_device_path`] forces the second path on the CPU for the calls
//! made inside it, so that the GPU's code path can be run and compared with the CPU's on a
//! machine without a GPU; [`host_round_trips`] counts the times a closure kernel received
//! operands while on that path (on a GPU, each would copy its operands to the host and back).
//! `tests/device_path.rs` compares the two paths this way.

pub use crate::kernels::{host_round_trips, with_device_path};
