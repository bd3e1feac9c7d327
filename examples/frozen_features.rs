//! The baseline a BCD run must beat: the network at initialisation with its hidden layers
//! frozen and only the linear head fitted, in closed form.
//!
//! The head solves the same `W̃` subproblem as a BCD weight block (`Network::fit_head`) with
//! target `Y` (one-hot), coupling 1 and no proximal term: ridge least squares
//! `min_W̃ ½‖Y − H̃W̃ᵀ‖² + λ/2‖W‖²` on the frozen features `H` (the last hidden layer's forward
//! output). If BCD's test accuracy is no better than this, its hidden blocks have not learned
//! features that generalise (see BENCHMARKS.md, FC-ResNet).
//!
//! ```sh
//! cargo run --release --example frozen_features -- path/to/mnist resnet 2048 kaiming 1
//! ```
//! Arguments: data directory (any IDX images; `d` pixels, `C` classes), `mlp` (d-W-W-W-C) or
//! `mlpK` (K hidden layers of width W, e.g. `mlp10`) or
//! `resnet` (d → W, two residual layers, → C) or `cnn:STAGES` (a CNN on 1×28×28 images, the
//! stages as `--layers` spells them, e.g. `cnn:conv32,pool2,conv64,pool2`), width `W` (not
//! used by a CNN), initialisation
//! (`official|kaiming|glorot`), ridge `λ`. Seed 0, as the CLI's default, so the frozen layers
//! are those a BCD run with the same flags starts from.

use anyhow::{bail, Context, Result};
use candle_bcd::{data, Activation, Architecture, Image, Network, Stage, WeightInit};
use candle_core::Device;
use candle_nn::VarMap;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| a.get(i).cloned().unwrap_or_else(|| default.into());
    let dir = arg(0, "tests/data/mnist-slice");
    let width: usize = arg(2, "1024").parse()?;
    let init: WeightInit = arg(3, "official").parse()?;
    let lambda: f64 = arg(4, "1").parse()?;

    let ds = data::load_idx_dir(dir.as_ref())?;
    let (d, classes) = (ds.train_images.dim(1)?, ds.labels);
    let arch = match arg(1, "resnet").as_str() {
        "mlp" => Architecture::mlp(&[d, width, width, width, classes], Activation::Relu)?,
        "resnet" => Architecture::resnet(d, width, 2, classes, Activation::Relu)?,
        other => match (other.strip_prefix("cnn:"), other.strip_prefix("mlp")) {
            (None, Some(depth)) => {
                let mut widths = vec![d];
                let depth: usize = depth.parse().with_context(|| {
                    format!("architecture {other:?}: mlpK needs a layer count K")
                })?;
                widths.extend(std::iter::repeat_n(width, depth));
                widths.push(classes);
                Architecture::mlp(&widths, Activation::Relu)?
            }
            // A CNN on MNIST-sized images: the stages as `--layers` spells them.
            (Some(spec), _) => {
                let (mut stages, mut residual) = Stage::parse_list(spec)?;
                stages.push(Stage::Linear(classes));
                residual.push(false);
                Architecture::cnn(Image::new(1, 28, 28), &stages, Activation::Relu)?
                    .with_residual(residual)?
            }
            (None, None) => {
                bail!("unknown architecture {other:?} (mlp, mlpK, resnet or cnn:STAGES)")
            }
        },
    };
    let varmap = VarMap::new();
    let net = Network::init(&arch, &varmap, init, 0, &Device::Cpu)?;
    let y = data::one_hot(&ds.train_labels, classes)?;
    net.fit_head(&ds.train_images, &y, lambda)?;
    println!(
        "frozen {} features of width {} ({init:?} init), ridge head λ = {lambda}: train {:.4}, test {:.4}",
        arg(1, "resnet"),
        arch.layer_dims(arch.num_layers() - 1).0,
        net.accuracy(&ds.train_images, &ds.train_labels)?,
        net.accuracy(&ds.test_images, &ds.test_labels)?
    );
    Ok(())
}
