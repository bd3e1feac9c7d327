//! Where a deep MLP's mini-batch BCD loses: per layer, every few batches, on fixed probe rows.
//!
//! Trains 784-W×L-10 (default 600×10) by mini-batch BCD with uniform layer weights (Kaiming init,
//! ridge head, cross-entropy, γ = ρ = 0.1, α = 1 on every block, λ = 0.001, inertia 0.9,
//! B = 1024) and, at the start and every `P` batches, prints for each layer `i`:
//!
//! - `probe`: test accuracy of a ridge head (λ = 1) fitted on the layer's forward output `h_i`
//!   (4,096 training rows, tested on 2,000 test rows): what the forward pass still carries
//!   at that depth;
//! - `dead`: the fraction of units of `h_i` that are zero on every probe row;
//! - `cond`: the condition number of the layer's weight system `ρṼᵀṼ/B + (α/B)I` on the probe
//!   rows (`Ṽ` = `[h_{i−1} 1]`, scaled to one batch of `B` rows);
//! - `moved`: `‖W_i − W_i^prev‖/‖W_i‖` since the last probe;
//! - for one sweep run on a copy of the network over one batch of probe rows (as the training
//!   does for every batch): `sweep`, that sweep's `‖ΔW_i‖/‖W_i‖`; `gapV`, the lifted
//!   `‖V_i − σ(U_i)‖/‖V_i‖` after it; `fwd`, `‖V_i − h'_i‖/‖V_i‖` with `h'` the forward pass of
//!   the updated copy (how far the network's own pass is from what the sweep fitted).
//!
//! ```sh
//! cargo run --release --example depth_diagnosis -- path/to/mnist [width] [layers] [P] [epochs]
//! ```

use anyhow::Result;
use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{data, Activation, Architecture, BcdConfig, BcdOptimizer, Loss, Network};
use candle_bcd::{Tensor, WeightInit};
use candle_core::{DType, Device, Var};
use candle_nn::{Module, VarMap};

/// `‖t‖`, accumulated in `f64`.
fn norm(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// `‖a − b‖/‖b‖`.
fn rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(norm(&(a - b)?)? / norm(b)?.max(1e-30))
}

/// The forward outputs `h_1 … h_L` of `net` on `x`.
fn forward_outputs(net: &Network, x: &Tensor) -> Result<Vec<Tensor>> {
    let last = net.len() - 1;
    let mut h = x.clone();
    let mut outs = Vec::new();
    for l in 0..=last {
        let layer = candle_nn::Linear::new(net.weight(l).clone(), Some(net.bias(l).clone()));
        let u = layer.forward(&h)?;
        h = if l == last { u } else { u.relu()? };
        outs.push(h.clone());
    }
    Ok(outs)
}

/// Test accuracy of a ridge head fitted on features `h` (train rows) for labels `y`.
fn probe(h: &Tensor, y: &Tensor, h_test: &Tensor, labels: &Tensor) -> Result<f64> {
    let arch = Architecture::mlp(&[h.dim(1)?, y.dim(1)?], Activation::Relu)?;
    let head = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 0, h.device())?;
    head.fit_head(h, y, 1.0)?;
    Ok(head.accuracy(h_test, labels)?)
}

/// Condition number of `ρṼᵀṼ·(B/n) + αI` for `Ṽ = [h 1]` over `n` rows.
fn condition(h: &Tensor, rho: f64, alpha: f64, batch: usize) -> Result<f64> {
    let (n, d) = h.dims2()?;
    let ones = Tensor::ones((n, 1), DType::F32, h.device())?;
    let v = Tensor::cat(&[h, &ones], 1)?.to_dtype(DType::F64)?;
    let g = v.t()?.matmul(&v)?.to_vec2::<f64>()?;
    let scale = rho * batch as f64 / n as f64;
    let m = faer::Mat::<f64>::from_fn(d + 1, d + 1, |i, j| {
        scale * g[i][j] + if i == j { alpha } else { 0.0 }
    });
    let eig = m
        .self_adjoint_eigenvalues(faer::Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigenvalues: {e:?}"))?;
    Ok(eig[eig.len() - 1] / eig[0])
}

/// A copy of `net` in fresh `Var`s (so a sweep on it leaves the trained network alone).
fn copy_of(net: &Network) -> Result<Network> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("a fresh VarMap");
        for (name, t) in net.named_tensors() {
            data.insert(name, Var::from_tensor(&t.copy()?)?);
        }
    }
    Ok(Network::from_varmap(&varmap, net.names())?.activation(Activation::Relu)?)
}

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| a.get(i).cloned().unwrap_or_else(|| default.into());
    let dir = arg(0, "tests/data/mnist-slice");
    let width: usize = arg(1, "600").parse()?;
    let depth: usize = arg(2, "10").parse()?;
    let every: usize = arg(3, "20").parse()?;
    let epochs: usize = arg(4, "1").parse()?;

    let ds = data::load_idx_dir(dir.as_ref())?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?;
    let mut widths = vec![ds.train_images.dim(1)?];
    widths.extend(std::iter::repeat_n(width, depth));
    widths.push(ds.labels);
    let arch = Architecture::mlp(&widths, Activation::Relu)?;
    let net = Network::init(&arch, &VarMap::new(), WeightInit::Kaiming, 0, &Device::Cpu)?;
    net.fit_head(&ds.train_images, &y, 1.0)?;
    let config = BcdConfig::default()
        .loss(Loss::CrossEntropy)
        .gamma(0.1)
        .rho(0.1)
        .alpha(1.0)
        .lambda(0.001);
    let options = MiniBatchOptions::default().batch_size(1024).inertia(0.9);

    let n_probe = 4096.min(ds.train_images.dim(0)?);
    let (xp, yp) = (
        ds.train_images.narrow(0, 0, n_probe)?,
        y.narrow(0, 0, n_probe)?,
    );
    let n_test = 2000.min(ds.test_images.dim(0)?);
    let (xt, lt) = (
        ds.test_images.narrow(0, 0, n_test)?,
        ds.test_labels.narrow(0, 0, n_test)?,
    );
    let (xb, yb) = (xp.narrow(0, 0, 1024)?, yp.narrow(0, 0, 1024)?);

    let report = |net: &Network, prev: &[Tensor], batches: usize| -> Result<Vec<Tensor>> {
        let hs = forward_outputs(net, &xp)?;
        let hts = forward_outputs(net, &xt)?;
        let copy = copy_of(net)?;
        let mut opt = BcdOptimizer::new(&copy, xb.clone(), yb.clone(), config.clone())?;
        let before: Vec<Tensor> = (0..net.len())
            .map(|l| Ok(copy.weight(l).copy()?))
            .collect::<Result<_>>()?;
        opt.step()?;
        let after = forward_outputs(&copy, &xb)?;
        println!(
            "after {batches} batches: test {:.4}, train (probe rows) {:.4}",
            net.accuracy(&xt, &lt)?,
            net.accuracy(&xp, &ds.train_labels.narrow(0, 0, n_probe)?)?
        );
        println!("layer  probe   dead   cond       moved    sweep    gapV     fwd");
        for l in 0..net.len() {
            let last = l + 1 == net.len();
            let input = if l == 0 { &xp } else { &hs[l - 1] };
            let state = opt.state();
            let v = &state.v[l];
            let gap_v = match last {
                true => 0.0,
                false => rel(&state.u[l].relu()?, v)?,
            };
            let dead = if last {
                0.0
            } else {
                let alive = hs[l].max(0)?.gt(0f32)?.to_dtype(DType::F32)?;
                1.0 - alive.mean_all()?.to_scalar::<f32>()? as f64
            };
            let moved = match prev.get(l) {
                Some(p) => rel(net.weight(l), p)?,
                None => f64::NAN,
            };
            println!(
                "{:>5}  {:.4}  {:.3}  {:9.3e}  {:.2e}  {:.2e}  {:.2e}  {:.2e}",
                l + 1,
                probe(&hs[l], &yp, &hts[l], &lt)?,
                dead,
                condition(input, config.rho, config.alpha, 1024)?,
                moved,
                rel(copy.weight(l), &before[l])?,
                gap_v,
                rel(&after[l], v)?,
            );
        }
        (0..net.len())
            .map(|l| Ok(net.weight(l).copy()?))
            .collect::<Result<_>>()
    };

    let mut prev = report(&net, &[], 0)?;
    let mut bcd = MiniBatchBcd::new(&net, config.clone(), options)?;
    for _ in 0..epochs {
        bcd.epoch(&ds.train_images, &y, |r| {
            if r.batches % every == 0 {
                prev = report(&net, &prev, r.batches).map_err(|e| {
                    candle_bcd::BcdError::Candle(candle_core::Error::Msg(e.to_string()))
                })?;
            }
            Ok(())
        })?;
    }
    report(&net, &prev, bcd.batches_done())?;
    Ok(())
}
