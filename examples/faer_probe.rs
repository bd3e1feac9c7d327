use faer::{Accum, Mat, Par};
use std::time::Instant;
fn main() {
    let n = 60000;
    for par in [Par::rayon(0), Par::Seq] {
        let a = Mat::<f32>::from_fn(n, 1500, |i, j| ((i * 7 + j * 3) % 13) as f32 * 0.1);
        let w = Mat::<f32>::from_fn(1500, 1500, |i, j| ((i + j) % 7) as f32 * 0.1);
        let mut c = Mat::<f32>::zeros(n, 1500);
        for _ in 0..2 {
            let t = Instant::now();
            faer::linalg::matmul::matmul(&mut c, Accum::Replace, &a, &w, 1.0, par);
            let s = t.elapsed().as_secs_f64();
            println!(
                "{par:?} colmajor nn {:.3}s {:.0} GF/s",
                s,
                2.0 * n as f64 * 2.25e6 / s / 1e9
            );
            let t = Instant::now();
            faer::linalg::matmul::matmul(
                c.as_mut().transpose_mut(),
                Accum::Replace,
                w.transpose(),
                a.transpose(),
                1.0,
                par,
            );
            let s = t.elapsed().as_secs_f64();
            println!(
                "{par:?} rowmajor-like {:.3}s {:.0} GF/s",
                s,
                2.0 * n as f64 * 2.25e6 / s / 1e9
            );
        }
    }
}
