//! Experiment: start BCD from the closed-form head on the initial features.
//!
//! `examples/frozen_features.rs` shows that a ResNet's initial hidden layers, frozen, with a
//! ridge least-squares head beat what BCD reaches from a random head (0.9594 against 0.9427
//! test accuracy at width 2048). This sets the head of the initial network to that closed
//! form (through the library's `W̃` solve, `α = 0`, ridge `λ`) before the optimiser takes its
//! forward pass, then runs BCD sweeps and prints train and test accuracy after each: do the
//! sweeps add to the frozen features or erode them? Weight initialisation is a documented
//! choice of ALGORITHM.md; this is not (yet) a CLI option.
//!
//! ```sh
//! cargo run --release --example warm_head -- ../shared/data/mnist 10000 20 2048 kaiming 1 1
//! ```
//! Arguments: data directory, training samples, sweeps, ResNet width (784 → W, two residual
//! layers), initialisation (`official|kaiming|glorot`), α, head ridge λ.

use anyhow::Result;
use candle_bcd::updates;
use candle_bcd::{data, Activation, Architecture, BcdConfig, BcdNet, BcdOptimizer, WeightInit};
use candle_core::Device;
use candle_nn::VarMap;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| a.get(i).cloned().unwrap_or_else(|| default.into());
    let dir = arg(0, "../shared/data/mnist");
    let samples: usize = arg(1, "10000").parse()?;
    let sweeps: usize = arg(2, "20").parse()?;
    let width: usize = arg(3, "2048").parse()?;
    let init: WeightInit = arg(4, "kaiming").parse()?;
    let alpha: f64 = arg(5, "1").parse()?;
    let lambda: f64 = arg(6, "1").parse()?;

    let ds = data::take_train(&data::load_idx_dir(dir.as_ref())?, samples)?;
    let arch = Architecture::resnet(784, width, 2, 10, Activation::Relu)?;
    let config = BcdConfig {
        alpha,
        init,
        ..BcdConfig::default()
    };
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let net = BcdNet::init(&arch, &varmap, init, config.seed, &device)?;
    let y = data::one_hot(&ds.train_labels, 10)?;

    // The head's closed form on the frozen initial features, written into its Vars.
    let h = net.features(&ds.train_images)?;
    let head = arch.num_layers() - 1;
    let (w, b) = updates::ridge_fit(&h, &y, lambda, "head")?;
    {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let prefix = Architecture::layer_prefix(head);
        vars[&format!("{prefix}.weight")].set(&w)?;
        vars[&format!("{prefix}.bias")].set(&b)?;
    }
    let report = |k: usize, phi: f64| -> Result<()> {
        println!(
            "sweep {k:3}  objective {phi:.4e}  train {:.4}  test {:.4}",
            net.accuracy(&ds.train_images, &ds.train_labels)?,
            net.accuracy(&ds.test_images, &ds.test_labels)?
        );
        Ok(())
    };
    let mut opt = BcdOptimizer::new(&varmap, &arch, ds.train_images.clone(), y, config)?;
    report(0, opt.objective()?.total())?;
    for k in 1..=sweeps {
        let r = opt.step()?;
        report(k, r.objective.total())?;
    }
    Ok(())
}
