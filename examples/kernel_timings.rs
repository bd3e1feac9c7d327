//! Seconds and GFLOP/s of each kernel of a hidden-layer block update, at the paper's width
//! (1,500) on `N` random rows: the products (`Z = ṼW̃ᵀ`, `U_{i+1}W_{i+1}`, the Gram `ṼᵀṼ`,
//! `U_iᵀṼ`), the `W̃` solve, the `V` solve's preparation and in-place right multiplication, and
//! the elementwise passes. Used to measure kernel changes before and after (BENCHMARKS.md);
//! the rates of the products are against `2·N·d²` flops (`N·d²` for the Gram's triangle).
//!
//! ```sh
//! cargo run --release --example kernel_timings -- 20000
//! ```

use candle_bcd::kernels::{self, Addend, Op, Work};
use candle_bcd::solve::RowSolve;
use candle_bcd::updates::{self, AugmentedGram};
use candle_bcd::{Activation, BcdConfig};
use candle_core::{Device, Tensor};
use std::time::Instant;

/// Runs `f`, prints its time and rate.
fn t<R>(name: &str, flops: f64, f: impl FnOnce() -> R) -> R {
    let s = Instant::now();
    let r = f();
    let e = s.elapsed().as_secs_f64();
    if flops > 0.0 {
        println!("{name:28} {e:7.3} s  {:6.1} GFLOP/s", flops / e / 1e9);
    } else {
        println!("{name:28} {e:7.3} s");
    }
    r
}

fn main() -> anyhow::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 20_000,
    };
    let d = 1500;
    let dev = Device::Cpu;
    let v = Tensor::randn(0f32, 1.0, (n, d), &dev)?;
    let u = Tensor::randn(0f32, 1.0, (n, d), &dev)?;
    let w = (Tensor::randn(0f32, 1.0, (d, d), &dev)? * 0.03)?;
    let b = Tensor::randn(0f32, 1.0, d, &dev)?;
    let nd2 = (n * d * d) as f64;
    let cfg = BcdConfig::default();
    // Twice: the first round also pays for first-touch page faults.
    for _ in 0..2 {
        let z = t("Z = V W^T + b", 2.0 * nd2, || kernels::linear(&v, &w, &b))?;
        t("U W (N x d . d x d)", 2.0 * nd2, || {
            kernels::matmul(Op::N(&u), Op::N(&w), 1.0, Addend::None)
        })?;
        let g = t("AugmentedGram", nd2, || AugmentedGram::new(&v))?;
        t("U^T V", 2.0 * nd2, || {
            kernels::matmul(Op::T(&u), Op::N(&v), 1.0, Addend::None)
        })?;
        t("weights_for (incl U^T V)", 2.0 * nd2, || {
            updates::weights(&g, &v, &u, &w, &b, &cfg, "W")
        })?;
        let rs = t("RowSolve::new", 0.0, || RowSolve::new(&w, 1.0, 1.0, "V"))?;
        let mut work = t("Work::map_cols", 0.0, || {
            Work::map_cols([&u], |[x], j| x * 0.5 + j as f32)
        })?;
        t("Work::add_matmul", 2.0 * nd2, || {
            work.add_matmul(Op::N(&u), Op::N(&w), 1.0)
        })?;
        t("right_mul (apply_in_place)", 2.0 * nd2, || {
            rs.apply_in_place(&mut work)
        })?;
        let vt = t("into_tensor", 0.0, || work.into_tensor())?;
        t("sq_dist", 0.0, || kernels::sq_dist(&vt, &v))?;
        t("hidden_preactivation", 0.0, || {
            updates::hidden_preactivation(&z, &u, &v, Activation::Relu, &cfg)
        })?;
        t("map relu", 0.0, || kernels::map([&z], |[x]| x.max(0.0)))?;
        t("col_sums", 0.0, || kernels::col_sums(&u))?;
        println!();
    }
    Ok(())
}
