//! Train your own candle-nn CNN with BCD: convolution → ReLU → average pooling → convolution
//! → ReLU → average pooling → linear, built the ordinary way (`candle_nn::conv2d` and
//! `candle_nn::linear` in a `VarMap`), trained by mini-batch BCD without backpropagation and
//! evaluated with its own `forward`.
//!
//! ```sh
//! cargo run --release --example own_candle_cnn -- path/to/mnist [epochs] [out.safetensors]
//! ```
//! The directory holds the four MNIST IDX files (gzipped or not; default: the shipped slice);
//! default 1 epoch. The weights
//! cannot tell the input size, paddings or poolings, so the network is described once with
//! [`Architecture::cnn`], and the description is checked against the model's own forward
//! pass before training.

use anyhow::Result;
use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{
    data, metrics, Activation, Architecture, BcdConfig, Conv2d, Image, Loss, Network, Stage,
};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};

/// The model, exactly as candle-nn users write it.
struct Cnn {
    conv1: candle_nn::Conv2d,
    conv2: candle_nn::Conv2d,
    fc: candle_nn::Linear,
}

impl Module for Cnn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.reshape((x.dim(0)?, 1, 28, 28))?;
        let h = x.apply(&self.conv1)?.relu()?.avg_pool2d(2)?;
        let h = h.apply(&self.conv2)?.relu()?.avg_pool2d(2)?;
        h.flatten_from(1)?.apply(&self.fc)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Without a directory: the MNIST slice the repository ships.
    let dir = args.first().cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/mnist-slice").to_owned()
    });
    let epochs: usize = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let out = args.get(2).map_or("own_cnn.safetensors", String::as_str);
    let device = Device::Cpu;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    let model = Cnn {
        conv1: candle_nn::conv2d(1, 16, 3, same, vb.pp("conv1"))?,
        conv2: candle_nn::conv2d(16, 32, 3, same, vb.pp("conv2"))?,
        fc: candle_nn::linear(32 * 7 * 7, 10, vb.pp("fc"))?,
    };

    // What the weights cannot tell: the image, the paddings and the poolings.
    let arch = Architecture::cnn(
        Image::new(1, 28, 28),
        &[
            Stage::Conv2d(Conv2d::same(16, 3)),
            Stage::AvgPool(2),
            Stage::Conv2d(Conv2d::same(32, 3)),
            Stage::AvgPool(2),
            Stage::Linear(10),
        ],
        Activation::Relu,
    )?;
    let names = ["conv1", "conv2", "fc"].map(String::from);
    let network = Network::from_varmap_as(&varmap, &names, &arch)?;

    let ds = data::load_idx_dir(dir.as_ref())?;
    network.check_against(&model, &ds.train_images.narrow(0, 0, 64)?)?;
    let targets = data::one_hot(&ds.train_labels, ds.labels)?;
    // The head starts from the ridge fit on the initial features; the settings are those of
    // the crate's MNIST CNN preset.
    network.fit_head(&ds.train_images, &targets, 1.0)?;
    let config = BcdConfig::default()
        .loss(Loss::CrossEntropy)
        .gamma(1.0)
        .rho(1.0)
        .alpha(0.1)
        .lambda(0.001)
        .cg_iterations(3);
    let options = MiniBatchOptions::default().batch_size(512).inertia(0.9);
    let mut bcd = MiniBatchBcd::new(&network, config, options)?;
    for epoch in 1..=epochs {
        bcd.epoch(&ds.train_images, &targets, |_| Ok(()))?;
        let acc = metrics::model_accuracy(&model, &ds.test_images, &ds.test_labels)?;
        println!("epoch {epoch}  test {acc:.4} (model's own forward)");
    }
    varmap.save(out)?;
    println!("weights saved to {out}");
    Ok(())
}
