//! The cost model of `docs/algorithm.md`: floating-point operations of one sweep as implemented
//! (a multiply-add counts 2; a Gram matrix counts only its lower triangle).
//!
//! Per layer `l` with input width `n` and output width `m`, over `N` samples:
//!
//! | work | flops |
//! |---|---|
//! | `Z_l = Ṽ W̃ᵀ` (shared by the objective and the next `U_l` update) | `2Nnm` |
//! | `W̃_l`: Gram `ṼᵀṼ` (not for `l = 0`: `X̃ᵀX̃` is cached) and `(U − Z)ᵀṼ` | `Nn² + 2Nnm` |
//! | hidden `V_l` with next width `k`: `U_{l+1}W_{l+1}` and the row solve | `2Nmk + 2Nm²` (Woodbury when `k < m`: `4Nmk`) |
//!
//! An image layer is counted as the linear layer of its design matrix: `N·r` rows (`r` output
//! positions per sample), `n = C·k²` columns, `m` output channels, so its product, Gram and
//! cross product cost `2Nrnm`, `Nrn²`, `2Nrnm`. An activation block under an image layer
//! costs `2Nr'n'k'` per application of the next layer's map `A` or its adjoint: one for the
//! right-hand side and two per conjugate-gradient iteration.
//!
//! The small SPD factorisations are `O(d³)` and independent of `N`; they are not counted.
//!
//! **Data-parallel sweeps** (`crate::comm`): each exact weight block sums its normal equations
//! over the ranks, `(n+1)·m` `f64` for `ṼᵀU` plus `(n+1)²` for `ṼᵀṼ` (not for `l = 0`, whose
//! Gram is summed once), and rank 0 broadcasts the solved `W̃` (`(n+1)·m` `f32`); the objective
//! adds a few scalars. With `S` bytes summed per sweep, a ring all-reduce over `P` ranks moves
//! `2(P−1)/P · S` bytes per rank ([`ring_allreduce_seconds`]).

use crate::arch::Architecture;

/// The shape of layer index `l`'s products: design rows per sample `r` (output positions of
/// a convolution, 1 for a linear layer), design width `n` (`C·k²`, or the input width) and
/// outputs per row `m` (channels, or the output width).
fn shape(arch: &Architecture, l: usize) -> (f64, f64, f64) {
    let w = arch.weight_shape(l);
    let n: usize = w[1..].iter().product();
    let r = arch.spatial(l).map_or(1, |s| s.positions());
    (r as f64, n as f64, w[0] as f64)
}

/// Floating-point operations of one three-splitting sweep over `n_samples` samples, counting
/// `cg_iterations` conjugate-gradient iterations per activation block under an image layer
/// (their most; a solve that meets its tolerance early costs less).
pub fn sweep_flops(arch: &Architecture, n_samples: usize, cg_iterations: usize) -> f64 {
    let nf = n_samples as f64;
    let last = arch.num_layers() - 1;
    let mut flops = 0.0;
    for l in 0..=last {
        let (r, n, m) = shape(arch, l);
        let rows = nf * r;
        flops += 2.0 * rows * n * m; // Z_l
        flops += 2.0 * rows * n * m + if l > 0 { rows * n * n } else { 0.0 }; // W̃_l
        if l == last {
            continue;
        }
        let width = arch.layer_dims(l).1 as f64;
        let (r1, n1, k) = shape(arch, l + 1);
        flops += match arch.spatial(l + 1) {
            // The right-hand side's Aᵀ, then A and Aᵀ per iteration.
            Some(_) => 2.0 * nf * r1 * n1 * k * (1.0 + 2.0 * cg_iterations as f64),
            None => {
                2.0 * nf * width * k
                    + if k < width {
                        4.0 * nf * width * k
                    } else {
                        2.0 * nf * width * width
                    }
            }
        };
    }
    flops
}

/// Floating-point operations of a forward pass over `n_samples` samples (products only).
pub fn forward_flops(arch: &Architecture, n_samples: usize) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (r, n, m) = shape(arch, l);
            2.0 * n_samples as f64 * r * n * m
        })
        .sum()
}

/// Bytes one three-splitting sweep sums over ranks (the weight blocks' normal equations, in
/// `f64`; the few scalars of the objective are left out).
pub fn sweep_bytes_summed(arch: &Architecture) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (_, n, m) = shape(arch, l);
            8.0 * ((n + 1.0) * m + if l > 0 { (n + 1.0) * (n + 1.0) } else { 0.0 })
        })
        .sum()
}

/// Bytes of the solved weights rank 0 broadcasts in one sweep (`f32`).
pub fn sweep_bytes_broadcast(arch: &Architecture) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (_, n, m) = shape(arch, l);
            4.0 * (n + 1.0) * m
        })
        .sum()
}

/// Seconds of a ring all-reduce of `bytes` over `ranks` ranks at `bandwidth` bytes/s per link
/// and `latency` seconds per message: `2(P−1)(latency + bytes/(P·bandwidth))`.
pub fn ring_allreduce_seconds(bytes: f64, ranks: usize, bandwidth: f64, latency: f64) -> f64 {
    let p = ranks as f64;
    2.0 * (p - 1.0) * (latency + bytes / (p * bandwidth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    #[test]
    fn paper_sweep_flops_by_hand() {
        // 784-1500-1500-1500-10 on 60,000 samples, counted layer by layer from the table.
        let arch = Architecture::mlp(&[784, 1500, 1500, 1500, 10], Activation::Relu).unwrap();
        let n = 60_000f64;
        let z = 2.0 * n * (784.0 * 1500.0 + 2.0 * 1500.0 * 1500.0 + 1500.0 * 10.0);
        let w = z + n * 1500.0 * 1500.0 * 3.0;
        let v =
            2.0 * (2.0 * n * 1500.0 * 1500.0 + 2.0 * n * 1500.0 * 1500.0) + 6.0 * n * 1500.0 * 10.0;
        let expected = z + w + v;
        assert!((sweep_flops(&arch, 60_000, 0) - expected).abs() < 1e-6 * expected);
        assert!((expected - 2.856e12).abs() < 1e9);
        let fwd = 2.0 * 1000.0 * (784.0 * 1500.0 + 2.0 * 1500.0 * 1500.0 + 1500.0 * 10.0);
        assert_eq!(forward_flops(&arch, 1000), fwd);
    }

    #[test]
    fn conv_sweep_flops_by_hand() {
        // 1×4×4 → 3×3 convolution to 2 channels (same size) → linear to 3, 10 samples, 5 CG
        // iterations: the convolution is a linear layer of 16 rows per sample, 9 columns.
        let arch = Architecture::cnn(
            crate::Image::new(1, 4, 4),
            &[
                crate::Stage::Conv2d(crate::Conv2d::same(2, 3)),
                crate::Stage::Linear(3),
            ],
            Activation::Relu,
        )
        .unwrap();
        let n = 10.0;
        let conv = 2.0 * (2.0 * n * 16.0 * 9.0 * 2.0); // Z_1 and the cross product (Gram cached)
        let head = 2.0 * (2.0 * n * 32.0 * 3.0) + n * 32.0 * 32.0;
        let cg = 2.0 * n * 32.0 * 3.0 * (1.0 + 2.0 * 5.0);
        assert_eq!(sweep_flops(&arch, 10, 5), conv + head + cg);
        assert_eq!(
            forward_flops(&arch, 10),
            2.0 * n * (16.0 * 9.0 * 2.0 + 32.0 * 3.0)
        );
    }

    #[test]
    fn paper_sweep_traffic_by_hand() {
        let arch = Architecture::mlp(&[784, 1500, 1500, 1500, 10], Activation::Relu).unwrap();
        // Crosses (n+1)m of every layer, Grams (n+1)² of layers 2-4, in f64.
        let cross = 785.0 * 1500.0 + 2.0 * 1501.0 * 1500.0 + 1501.0 * 10.0;
        let grams = 3.0 * 1501.0 * 1501.0;
        assert_eq!(sweep_bytes_summed(&arch), 8.0 * (cross + grams));
        assert!((sweep_bytes_summed(&arch) - 99.6e6).abs() < 0.1e6);
        assert_eq!(sweep_bytes_broadcast(&arch), 4.0 * cross);
        // One rank moves nothing; two move the buffer once each way.
        assert_eq!(ring_allreduce_seconds(1e6, 1, 1e9, 1e-6), 0.0);
        assert!((ring_allreduce_seconds(1e6, 2, 1e9, 0.0) - 1e-3).abs() < 1e-12);
    }
}
