//! The commands that use a trained model: `candle-bcd export`, `eval` and `predict`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_bcd::data::DatasetKind;
use candle_bcd::{data, export, Network};
use clap::Args;

use crate::{open_device, DeviceArg};

/// Options of `candle-bcd export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint written by `train --checkpoint`.
    pub checkpoint: PathBuf,
    /// Where to write the weights-only safetensors file.
    #[arg(long)]
    pub out: PathBuf,
}

/// Options of `candle-bcd eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A checkpoint or an export.
    pub model: PathBuf,
    /// Directory with the IDX files; without it the dataset is downloaded from the hub.
    #[arg(long, env = "BCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Dataset to evaluate on (its test split): mnist, fashion-mnist or cifar10.
    #[arg(long, default_value = "mnist")]
    pub dataset: DatasetKind,
    /// Compute device.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

/// Runs `candle-bcd export`.
pub fn run_export(args: ExportArgs) -> Result<()> {
    let model = Network::from_file(&args.checkpoint, &candle_core::Device::Cpu)?;
    export::save(&args.out, &model)
        .with_context(|| format!("exporting to {}", args.out.display()))?;
    let widths = model.architecture().widths();
    println!(
        "exported {widths:?} ({} parameters) to {}",
        model.architecture().num_parameters(),
        args.out.display()
    );
    Ok(())
}

/// Runs `candle-bcd eval`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let device = open_device(args.device)?;
    let model = Network::from_file(&args.model, &device)?;
    let ds = data::load(args.dataset, args.data_dir.as_deref())?;
    let x = ds.test_images.to_device(&device)?;
    let acc = model.accuracy(&x, &ds.test_labels)?;
    println!("test accuracy: {acc:.4}");
    Ok(())
}

/// Options of `candle-bcd predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A checkpoint or an export.
    pub model: PathBuf,
    /// An IDX images file (`…-idx3-ubyte`, gzipped or not).
    #[arg(long)]
    pub images: PathBuf,
}

/// Runs `candle-bcd predict`: one predicted class per line, in file order.
pub fn run_predict(args: PredictArgs) -> Result<()> {
    let model = Network::from_file(&args.model, &candle_core::Device::Cpu)?;
    let images = data::idx::read(&args.images, 3)?;
    let (n, pixels) = (images.dims[0], images.dims[1] * images.dims[2]);
    let expected = model.architecture().input_dim();
    if pixels != expected {
        anyhow::bail!(
            "{}: images have {pixels} pixels, the model expects {expected} inputs",
            args.images.display()
        );
    }
    let x = (candle_core::Tensor::from_vec(images.data, (n, pixels), &candle_core::Device::Cpu)?
        .to_dtype(candle_core::DType::F32)?
        / 255.0)?;
    let classes = model.logits(&x)?.argmax(1)?.to_vec1::<u32>()?;
    let mut out = String::with_capacity(2 * n);
    for c in classes {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    print!("{out}");
    Ok(())
}
