//! Train an MLP on MNIST with BCD through the library API (no CLI), then export it.
//!
//! ```sh
//! cargo run --release --example train_mnist -- path/to/mnist 10000 10 mlp.safetensors
//! ```
//! Arguments: data directory, training samples, sweeps, export path (all optional).

use anyhow::Result;
use candle_bcd::trainer::{self, EvalSet, Evaluation, IterationRecord, Observer, TrainOptions};
use candle_bcd::{
    data, export, Activation, Architecture, BcdConfig, BcdOptimizer, Network, WeightInit,
};
use candle_core::Device;
use candle_nn::VarMap;

/// Prints one line per sweep.
struct Print;
impl Observer for Print {
    fn observe_iter(&mut self, r: &IterationRecord) -> candle_bcd::Result<()> {
        println!(
            "sweep {:>3}  Φ {:.5e}  test {:?}  {:.2}s",
            r.step.iteration,
            r.step.objective.total(),
            r.test_accuracy,
            r.step.seconds
        );
        Ok(())
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .map_or("tests/data/mnist-slice", String::as_str);
    let limit: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let sweeps: usize = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let out = args.get(3).map_or("mlp.safetensors", String::as_str);

    let device = Device::Cpu;
    let ds = data::take_train(&data::load_idx_dir(dir.as_ref())?, limit)?;
    let y = data::one_hot(&ds.train_labels, ds.labels)?;
    let arch = Architecture::mlp(&[784, 500, 500, ds.labels], Activation::Relu)?;
    let config = BcdConfig::default();
    let varmap = VarMap::new();
    let model = Network::init(&arch, &varmap, WeightInit::Official, 0, &device)?;
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch)?,
        ds.train_images.clone(),
        y,
        config,
    )?;
    let test = EvalSet {
        x: ds.test_images.clone(),
        labels: ds.test_labels.clone(),
    };
    let mut opts = TrainOptions::default();
    opts.max_iterations = sweeps;
    let eval = Evaluation {
        train_labels: None,
        test: Some(&test),
    };
    let summary = trainer::train(&mut opt, &model, eval, &opts, &mut Print)?;
    export::save(out.as_ref(), &model)?;
    println!(
        "test accuracy {:?}; exported to {out}",
        summary.test_accuracy
    );
    Ok(())
}
