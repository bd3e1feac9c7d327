//! The cost model of `docs/algorithm.md`: floating-point operations of one sweep as implemented
//! (a multiply-add counts 2; a Gram matrix counts only its lower triangle).
//!
//! Per layer `l` with input width `n` and output width `m`, over `N` samples:
//!
//! | work | flops |
//! |---|---|
//! | `Z_l = Ṽ W̃ᵀ` (shared by the objective and the next `U_l` update) | `2Nnm` |
//! | `W̃_l`: Gram `ṼᵀṼ` (not for `l = 0`: `X̃ᵀX̃` is cached) and `UᵀṼ` | `Nn² + 2Nnm` |
//! | hidden `V_l` with next width `k`: `U_{l+1}W_{l+1}` and the row solve | `2Nmk + 2Nm²` (Woodbury when `k < m`: `4Nmk`) |
//!
//! The small SPD factorisations are `O(d³)` and independent of `N`; they are not counted.
//!
//! **Data-parallel sweeps** (`crate::comm`): each exact weight block sums its normal equations
//! over the ranks, `(n+1)·m` `f64` for `ṼᵀU` plus `(n+1)²` for `ṼᵀṼ` (not for `l = 0`, whose
//! Gram is summed once), and rank 0 broadcasts the solved `W̃` (`(n+1)·m` `f32`); the objective
//! adds a few scalars. With `S` bytes summed per sweep, a ring all-reduce over `P` ranks moves
//! `2(P−1)/P · S` bytes per rank ([`ring_allreduce_seconds`]).

use crate::arch::Architecture;

/// Floating-point operations of one three-splitting sweep over `n_samples` samples.
pub fn sweep_flops(arch: &Architecture, n_samples: usize) -> f64 {
    let nf = n_samples as f64;
    let last = arch.num_layers() - 1;
    let mut flops = 0.0;
    for l in 0..=last {
        let (n, m) = arch.layer_dims(l);
        let (n, m) = (n as f64, m as f64);
        flops += 2.0 * nf * n * m; // Z_l
        flops += 2.0 * nf * n * m + if l > 0 { nf * n * n } else { 0.0 }; // W̃_l
        if l < last {
            let k = arch.layer_dims(l + 1).1 as f64;
            flops += 2.0 * nf * m * k
                + if k < m {
                    4.0 * nf * m * k
                } else {
                    2.0 * nf * m * m
                };
        }
    }
    flops
}

/// Floating-point operations of a forward pass over `n_samples` samples (products only).
pub fn forward_flops(arch: &Architecture, n_samples: usize) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (n, m) = arch.layer_dims(l);
            2.0 * n_samples as f64 * n as f64 * m as f64
        })
        .sum()
}

/// Bytes one three-splitting sweep sums over ranks (the weight blocks' normal equations, in
/// `f64`; the few scalars of the objective are left out).
pub fn sweep_bytes_summed(arch: &Architecture) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (n, m) = arch.layer_dims(l);
            let n1 = (n + 1) as f64;
            8.0 * (n1 * m as f64 + if l > 0 { n1 * n1 } else { 0.0 })
        })
        .sum()
}

/// Bytes of the solved weights rank 0 broadcasts in one sweep (`f32`).
pub fn sweep_bytes_broadcast(arch: &Architecture) -> f64 {
    (0..arch.num_layers())
        .map(|l| {
            let (n, m) = arch.layer_dims(l);
            4.0 * ((n + 1) * m) as f64
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
        assert!((sweep_flops(&arch, 60_000) - expected).abs() < 1e-6 * expected);
        assert!((expected - 2.856e12).abs() < 1e9);
        let fwd = 2.0 * 1000.0 * (784.0 * 1500.0 + 2.0 * 1500.0 * 1500.0 + 1500.0 * 10.0);
        assert_eq!(forward_flops(&arch, 1000), fwd);
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
