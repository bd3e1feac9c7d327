//! Projected data-parallel sweep time of the paper MLP (784-1500×3-10) for `P` ranks, from
//! figures measured on one machine:
//!
//! ```text
//! cargo run --release --example scaling_model -- SWEEP_SECONDS ROWS SERIAL_SECONDS
//! ```
//!
//! `SWEEP_SECONDS` is a measured sweep over `ROWS` rows in one process; `SERIAL_SECONDS` the
//! part of it that does not shrink with the rows (the `f64` weight solves on rank 0 and the
//! factorisations every rank repeats). Each rank is taken to compute as fast as the measured
//! machine. A sweep on `P` ranks over `N` rows is modelled as
//!
//! ```text
//! T(P) = c·N/P + T_serial + ring all-reduce of S bytes + broadcast of B bytes,
//! c = (SWEEP_SECONDS − SERIAL_SECONDS)/ROWS,
//! ```
//!
//! with `S`, `B` from `candle_bcd::cost` and the ring model at 10 and 100 Gb/s (5 µs per
//! message, 12 messages per sweep). Efficiency is `T(1)/(P·T(P))`.

use anyhow::{Context, Result};
use candle_bcd::cost::{ring_allreduce_seconds, sweep_bytes_broadcast, sweep_bytes_summed};
use candle_bcd::{Activation, Architecture};

fn main() -> Result<()> {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse::<f64>()
                .with_context(|| format!("not a number: {a}"))
        })
        .collect::<Result<_>>()?;
    let [sweep, rows, serial] = args[..] else {
        anyhow::bail!("usage: scaling_model SWEEP_SECONDS ROWS SERIAL_SECONDS");
    };
    let arch = Architecture::mlp(&[784, 1500, 1500, 1500, 10], Activation::Relu)?;
    let (summed, broadcast) = (sweep_bytes_summed(&arch), sweep_bytes_broadcast(&arch));
    let per_row = (sweep - serial) / rows;
    let n = 1.2e6;
    println!(
        "per row {:.3} ms, serial {serial:.2} s; summed {:.1} MB, broadcast {:.1} MB per sweep",
        per_row * 1e3,
        summed / 1e6,
        broadcast / 1e6
    );
    println!("| P | Gb/s | compute s | comm s | sweep s | efficiency |");
    println!("|---|---|---|---|---|---|");
    let t1 = per_row * n + serial;
    for gbps in [10.0, 100.0] {
        let bw = gbps * 1e9 / 8.0;
        for p in [1usize, 8, 64, 512] {
            let comm = match p {
                1 => 0.0,
                _ => ring_allreduce_seconds(summed, p, bw, 5e-6 * 12.0) + broadcast / bw,
            };
            let compute = per_row * n / p as f64;
            let total = compute + serial + comm;
            println!(
                "| {p} | {gbps} | {compute:.2} | {comm:.3} | {total:.2} | {:.2} |",
                t1 / (p as f64 * total)
            );
        }
    }
    Ok(())
}
