//! CPU paths of the patch matrix (`im2col`) and its adjoint (`col2im`): one pass over each
//! sample's image, samples in parallel (rayon), where the tensor-operation path builds `k²`
//! strided slices, stacks and transposes them. **(choice)** Measured on 2 cores, 1,024 images
//! of 64 × 14 × 14 and a 3 × 3 kernel (`conv_cpu_timings` below): `im2col` 0.38 s by these
//! loops against 1.40 s by tensor operations; the adjoint (patch rows times the kernel, then
//! `col2im`) 0.69 s against 1.84 s by Candle's `conv_transpose2d`. Other devices keep the
//! tensor operations and `conv_transpose2d`.
//!
//! Layouts: images `[N, C, H, W]`, patch rows `(n, o_y, o_x)`, patch columns `(c, i, j)`; the
//! entry is `x[n, c, o_y·s + i − q, o_x·s + j − q]`, 0 in the padding.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::geometry::{Conv2d, Image};
use crate::error::Result;
use crate::kernels::cpu::with_slice;

/// The input pixel `(y, x)` a patch entry reads, if inside the image.
#[inline]
fn source(o: usize, tap: usize, c: Conv2d, size: usize) -> Option<usize> {
    (o * c.stride + tap)
        .checked_sub(c.padding)
        .filter(|&p| p < size)
}

/// The patch matrix `[N·H_o·W_o, C·k²]` of images `x` of shape `input`.
pub(crate) fn im2col(x: &Tensor, c: Conv2d, input: Image, out: Image) -> Result<Tensor> {
    let n = x.dim(0)?;
    let (k, positions) = (c.kernel, out.height * out.width);
    let cols = input.channels * k * k;
    let mut d = vec![0f32; n * positions * cols];
    with_slice(x, |x| {
        d.par_chunks_mut(positions * cols)
            .zip(x.par_chunks(input.len()))
            .for_each(|(rows, img)| {
                for oy in 0..out.height {
                    for ox in 0..out.width {
                        let row = &mut rows[(oy * out.width + ox) * cols..][..cols];
                        for ch in 0..input.channels {
                            let plane = &img[ch * input.height * input.width..];
                            for i in 0..k {
                                let Some(y) = source(oy, i, c, input.height) else {
                                    continue;
                                };
                                for j in 0..k {
                                    if let Some(xx) = source(ox, j, c, input.width) {
                                        row[(ch * k + i) * k + j] = plane[y * input.width + xx];
                                    }
                                }
                            }
                        }
                    }
                }
            });
    })?;
    Ok(Tensor::from_vec(d, (n * positions, cols), &Device::Cpu)?)
}

/// The adjoint of [`im2col`]: patch rows `[N·H_o·W_o, C·k²]` summed back into images
/// `[N, C, H, W]` of shape `input`.
pub(crate) fn col2im(d: &Tensor, c: Conv2d, input: Image, out: Image) -> Result<Tensor> {
    let (k, positions) = (c.kernel, out.height * out.width);
    let cols = input.channels * k * k;
    let n = d.dim(0)? / positions;
    let mut x = vec![0f32; n * input.len()];
    with_slice(d, |d| {
        x.par_chunks_mut(input.len())
            .zip(d.par_chunks(positions * cols))
            .for_each(|(img, rows)| {
                for oy in 0..out.height {
                    for ox in 0..out.width {
                        let row = &rows[(oy * out.width + ox) * cols..][..cols];
                        for ch in 0..input.channels {
                            let plane = &mut img[ch * input.height * input.width..];
                            for i in 0..k {
                                let Some(y) = source(oy, i, c, input.height) else {
                                    continue;
                                };
                                for j in 0..k {
                                    if let Some(xx) = source(ox, j, c, input.width) {
                                        plane[y * input.width + xx] += row[(ch * k + i) * k + j];
                                    }
                                }
                            }
                        }
                    }
                }
            });
    })?;
    Ok(Tensor::from_vec(
        x,
        (n, input.channels, input.height, input.width),
        &Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::geometry::Spatial;
    use crate::conv::ops;
    use crate::kernels::with_device_path;
    use std::time::Instant;

    /// Seconds of the patch matrix and of the adjoint, by these loops and by tensor operations
    /// (the device path, forced), on 1,024 images of 64 × 14 × 14 and a 3 × 3 kernel. Run with
    /// `cargo test --release --lib conv_cpu_timings -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, not a check"]
    fn conv_cpu_timings() {
        let s = Spatial {
            input: Image::new(64, 14, 14),
            pool: 1,
            conv: Some(Conv2d::same(64, 3)),
        };
        let v = Tensor::randn(0f32, 1.0, (1024, s.input.len()), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (64, 64, 3, 3), &Device::Cpu).unwrap();
        let time = |f: &dyn Fn() -> Tensor| {
            (0..3)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let design = || ops::design(&s, &v).unwrap();
        let adjoint = || ops::adjoint(&s, &v, &w).unwrap();
        println!(
            "im2col: loops {:.3} s, tensor operations {:.3} s",
            time(&design),
            with_device_path(|| time(&design))
        );
        println!(
            "adjoint: patches and col2im {:.3} s, conv_transpose2d {:.3} s",
            time(&adjoint),
            with_device_path(|| time(&adjoint))
        );
    }
}
