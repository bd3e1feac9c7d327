//! Resume a BCD run from a checkpoint through the library API and continue for a few sweeps.
//!
//! ```sh
//! cargo run --release -- train --data-dir path/to/mnist --train-limit 5000 \
//!     --hidden 300 --iterations 3 --checkpoint ckpt.safetensors
//! cargo run --release --example resume -- ckpt.safetensors path/to/mnist 5000 2
//! ```

use anyhow::Result;
use candle_bcd::{checkpoint, data, BcdOptimizer};
use candle_core::Device;
use candle_nn::VarMap;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("ckpt.safetensors", String::as_str);
    let dir = args.get(1).map_or("tests/data/mnist-slice", String::as_str);
    let limit: usize = args.get(2).map_or(Ok(5000), |s| s.parse())?;
    let sweeps: usize = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let device = Device::Cpu;

    let checkpoint::Checkpoint::FullBatch(ckpt) = checkpoint::load(path.as_ref(), &device)? else {
        anyhow::bail!(
            "{path}: a mini-batch run's checkpoint; resume it with `candle-bcd train --resume`"
        );
    };
    let ds = data::take_train(&data::load_idx_dir(dir.as_ref())?, limit)?;
    let arch = ckpt.model.architecture.clone();
    ckpt.check_compatible(&arch, ds.train_images.dim(0)?, path.as_ref())?;
    // The network as the checkpoint describes it: its layer names, activation and residual
    // layers (a model of your own reading `varmap` would see the same weights).
    let model = ckpt.model.network(&VarMap::new())?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?;
    let mut opt = BcdOptimizer::from_state(
        &model,
        ds.train_images.clone(),
        y,
        ckpt.model.config.clone(),
        ckpt.state,
    )?;
    println!(
        "resumed at sweep {}: Φ = {:.5e}",
        opt.iteration(),
        opt.objective()?.total()
    );
    for _ in 0..sweeps {
        let r = opt.step()?;
        println!("sweep {}: Φ = {:.5e}", r.iteration, r.objective.total());
    }
    println!(
        "test accuracy: {:.4}",
        model.accuracy(&ds.test_images, &ds.test_labels)?
    );
    checkpoint::save(path.as_ref(), &opt)?;
    Ok(())
}
