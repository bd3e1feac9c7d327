//! How far the network's own forward pass is from the lifted variables BCD optimises.
//!
//! BCD fits the lifted `U_i`, `V_i`; predictions come from a plain forward pass. This prints,
//! every 5 sweeps, the relative gap `‖h_i − V_i‖/‖V_i‖` per layer (`h_i`: the forward pass's
//! output of layer `i` on the training inputs), the Frobenius norm of each `W_i`, and the
//! training accuracy of the lifted output `V_L` beside that of the network.
//!
//! ```sh
//! cargo run --release --example lifted_gap -- path/to/mnist 10000 20 resnet 1 5 official
//! ```
//! Arguments: data directory, training samples, sweeps, `mlp` (784-1500-1500-1500-10) or
//! `resnet` (784 → 1024, two residual layers), γ = ρ, α, initialisation
//! (`official|kaiming|glorot`).

use anyhow::{bail, Result};
use candle_bcd::WeightInit;
use candle_bcd::{data, metrics, Activation, Architecture, BcdConfig, BcdOptimizer, Network};
use candle_core::Device;
use candle_nn::{Module, VarMap};

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| a.get(i).cloned().unwrap_or_else(|| default.into());
    let dir = arg(0, "tests/data/mnist-slice");
    let samples: usize = arg(1, "10000").parse()?;
    let sweeps: usize = arg(2, "20").parse()?;
    let arch = match arg(3, "resnet").as_str() {
        "mlp" => Architecture::mlp(&[784, 1500, 1500, 1500, 10], Activation::Relu)?,
        "resnet" => Architecture::resnet(784, 1024, 2, 10, Activation::Relu)?,
        other => bail!("unknown architecture {other:?} (mlp or resnet)"),
    };
    let gamma: f64 = arg(4, "1").parse()?;
    let init: WeightInit = arg(6, "official").parse()?;
    let mut config = BcdConfig::default();
    config.gamma = gamma;
    config.rho = gamma;
    config.alpha = arg(5, "5").parse()?;

    let ds = data::take_train(&data::load_idx_dir(dir.as_ref())?, samples)?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?;
    let varmap = VarMap::new();
    let model = Network::init(&arch, &varmap, init, 0, &Device::Cpu)?;
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch)?,
        ds.train_images.clone(),
        y,
        config,
    )?;
    let last = arch.num_layers() - 1;
    for k in 1..=sweeps {
        let report = opt.step()?;
        if k % 5 != 0 && k != sweeps {
            continue;
        }
        let mut line = String::new();
        let mut h = ds.train_images.clone();
        for l in 0..=last {
            let u = candle_nn::Linear::new(model.weight(l).clone(), Some(model.bias(l).clone()))
                .forward(&h)?;
            h = if l == last {
                u
            } else if arch.is_residual(l) {
                (h + u.relu()?)?
            } else {
                u.relu()?
            };
            let v = &opt.state().v[l];
            let gap = (sq_norm(&(&h - v)?)? / sq_norm(v)?).sqrt();
            let w = sq_norm(model.weight(l))?.sqrt();
            line += &format!("  layer {}: gap {gap:.2e}, ‖W‖ {w:.1}", l + 1);
        }
        let lifted = metrics::accuracy(&opt.state().v[last], &ds.train_labels)?;
        let network = metrics::accuracy(&h, &ds.train_labels)?;
        let test = model.accuracy(&ds.test_images, &ds.test_labels)?;
        println!(
            "sweep {k}: Φ {:.4e}, train accuracy lifted {lifted:.4} / network {network:.4}, test {test:.4}\n{line}",
            report.objective.total()
        );
    }
    Ok(())
}

/// `‖t‖²`, accumulated in `f64`.
fn sq_norm(t: &candle_core::Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}
