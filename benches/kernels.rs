use candle_bcd::kernels::{self, Addend, Op};
use candle_core::{Device, Tensor};
use std::time::Instant;
fn main() -> anyhow::Result<()> {
    let d = Device::Cpu;
    let n = 60000;
    let a = Tensor::randn(0f32, 1.0, (n, 1500), &d)?;
    let w = Tensor::randn(0f32, 1.0, (1500, 1500), &d)?;
    let b = Tensor::randn(0f32, 1.0, 1500, &d)?;
    for _ in 0..2 {
        let t = Instant::now();
        let _ = kernels::matmul(Op::N(&a), Op::T(&w), 1.0, Addend::None)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "nt   {:.3}s {:.0} GF/s",
            s,
            2.0 * n as f64 * 1500.0 * 1500.0 / s / 1e9
        );
        let t = Instant::now();
        let _ = kernels::matmul(Op::N(&a), Op::N(&w), 1.0, Addend::Matrix(&a))?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "nn+C {:.3}s {:.0} GF/s",
            s,
            2.0 * n as f64 * 1500.0 * 1500.0 / s / 1e9
        );
        let t = Instant::now();
        let _ = kernels::linear(&a, &w, &b)?;
        println!("linear {:.3}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = kernels::matmul(Op::T(&a), Op::N(&a), 1.0, Addend::None)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "tn   {:.3}s {:.0} GF/s",
            s,
            2.0 * n as f64 * 1500.0 * 1500.0 / s / 1e9
        );
        let t = Instant::now();
        let _ = kernels::gram(&a)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "gram {:.3}s {:.0} GF/s eff",
            s,
            2.0 * n as f64 * 1500.0 * 1500.0 / s / 1e9
        );
        let t = Instant::now();
        let _ = kernels::map([&a, &a, &a], |[x, y, z]| x + y * z)?;
        println!("map3 {:.3}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = kernels::sq_dist(&a, &a)?;
        println!("sqdist {:.3}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = kernels::col_sums(&a)?;
        println!("colsums {:.3}s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let _ = a.matmul(&w.t()?)?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "candle nt {:.3}s {:.0} GF/s",
            s,
            2.0 * n as f64 * 1500.0 * 1500.0 / s / 1e9
        );
    }
    Ok(())
}
