//! Seconds and GFLOP/s of each kernel of a hidden-layer block update, at the paper's width
//! (1,500) on `N` random rows: the products (`Z = ṼW̃ᵀ`, `U_{i+1}W_{i+1}`, the Gram `ṼᵀṼ`,
//! `U_iᵀṼ`, also by faer for comparison), the `W̃` solve, the `V` solve's preparation and
//! in-place right multiplication, and the elementwise passes. Used to measure kernel changes
//! before and after (BENCHMARKS.md); the rates of the products are against `2·N·d²` flops
//! (`N·d²` for the Gram's triangle).
//! Each round first measures the 2048³ product rate (the benchmark's limit, best of three) and
//! prints every product's rate as a fraction of it, so shapes can be compared on this noisy host.
//!
//! An ignored test, since it measures rather than checks:
//!
//! ```sh
//! BCD_KERNEL_ROWS=20000 cargo test --release --lib kernel_timings -- --ignored --nocapture
//! ```

use std::time::Instant;

use candle_core::{Device, Tensor};
use faer::{Accum, MatMut, MatRef, Par};

use super::{Addend, Op, Work};
use crate::blocks::AugmentedGram;
use crate::kernels;
use crate::solve::RowSolve;
use crate::three_split::updates;
use crate::{Activation, BcdConfig};

/// The 2048³ `f32` product rate through the crate's kernels, best of three (GFLOP/s).
fn square_rate(a: &Tensor) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let s = Instant::now();
        kernels::matmul(Op::N(a), Op::N(a), 1.0, Addend::None)?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    Ok(2.0 * 2048f64.powi(3) / best / 1e9)
}

/// Runs `f`, prints its time, and for a product its rate and the rate's fraction of `limit`.
fn timed<R>(limit: f64, name: &str, flops: f64, f: impl FnOnce() -> R) -> R {
    let s = Instant::now();
    let r = f();
    let e = s.elapsed().as_secs_f64();
    if flops > 0.0 {
        let rate = flops / e / 1e9;
        println!(
            "{name:28} {e:7.3} s  {rate:6.1} GFLOP/s  {:.2} of the limit",
            rate / limit
        );
    } else {
        println!("{name:28} {e:7.3} s");
    }
    r
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn kernel_timings() -> anyhow::Result<()> {
    let n: usize = match std::env::var("BCD_KERNEL_ROWS") {
        Ok(s) => s.parse()?,
        Err(_) => 20_000,
    };
    let d = 1500;
    let dev = Device::Cpu;
    let v = Tensor::randn(0f32, 1.0, (n, d), &dev)?;
    let u = Tensor::randn(0f32, 1.0, (n, d), &dev)?;
    let w = (Tensor::randn(0f32, 1.0, (d, d), &dev)? * 0.03)?;
    let b = Tensor::randn(0f32, 1.0, d, &dev)?;
    let nd2 = (n * d * d) as f64;
    let cfg = BcdConfig::default();
    let square = Tensor::randn(0f32, 1.0, (2048, 2048), &dev)?;
    // Twice: the first round also pays for first-touch page faults.
    for _ in 0..2 {
        let limit = square_rate(&square)?;
        println!("limit: 2048³ product {limit:.1} GFLOP/s");
        let z = timed(limit, "Z = V W^T + b", 2.0 * nd2, || {
            kernels::linear(&v, &w, &b)
        })?;
        timed(limit, "U W (N x d . d x d)", 2.0 * nd2, || {
            kernels::matmul(Op::N(&u), Op::N(&w), 1.0, Addend::None)
        })?;
        let g = timed(limit, "AugmentedGram", nd2, || AugmentedGram::new(&v))?;
        timed(limit, "U^T V", 2.0 * nd2, || {
            kernels::matmul(Op::T(&u), Op::N(&v), 1.0, Addend::None)
        })?;
        // The same product by faer on the same row-major buffers (what the kernels do for the
        // other products), for comparison: `kernels::matmul` sends this shape to Candle.
        let (uh, vh) = (
            u.flatten_all()?.to_vec1::<f32>()?,
            v.flatten_all()?.to_vec1::<f32>()?,
        );
        let mut c = vec![0f32; d * d];
        timed(limit, "U^T V (faer)", 2.0 * nd2, || {
            faer::linalg::matmul::matmul(
                MatMut::from_row_major_slice_mut(&mut c, d, d),
                Accum::Replace,
                MatRef::from_row_major_slice(&uh, n, d).transpose(),
                MatRef::from_row_major_slice(&vh, n, d),
                1.0,
                Par::rayon(0),
            )
        });
        timed(limit, "weights_for (incl U^T V)", 2.0 * nd2, || {
            updates::weights(&g, &v, &u, &w, &b, &cfg, "W")
        })?;
        let rs = timed(limit, "RowSolve::new", 0.0, || {
            RowSolve::new(&w, 1.0, 1.0, "V")
        })?;
        let row: Vec<f64> = (0..d).map(|j| j as f64).collect();
        let mut work = timed(limit, "Work::map_row", 0.0, || {
            Work::map_row([&u], &row, |[x], r| (x as f64 * 0.5 + r) as f32)
        })?;
        timed(limit, "Work::add_matmul", 2.0 * nd2, || {
            work.add_matmul(Op::N(&u), Op::N(&w), 1.0)
        })?;
        timed(limit, "right_mul (apply_in_place)", 2.0 * nd2, || {
            rs.apply_in_place(&mut work)
        })?;
        let vt = timed(limit, "into_tensor", 0.0, || work.into_tensor())?;
        timed(limit, "sq_dist", 0.0, || kernels::sq_dist(&vt, &v))?;
        timed(limit, "hidden_preactivation", 0.0, || {
            updates::hidden_preactivation(&z, &u, &v, Activation::Relu, &cfg)
        })?;
        timed(limit, "map relu", 0.0, || {
            kernels::map([&z], |[x]| x.max(0.0))
        })?;
        timed(limit, "col_sums", 0.0, || kernels::col_sums(&u))?;
        println!();
    }
    Ok(())
}
