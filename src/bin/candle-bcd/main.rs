//! `candle-bcd`: train fully connected and convolutional networks on Candle by block
//! coordinate descent.

mod alloc;
mod model_commands;
mod plot;
mod preset;
mod progress;
mod ranks;
mod settings;
mod train;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::{Parser, Subcommand, ValueEnum};

/// Backprop-free training by block coordinate descent on lifted variables (Zeng et al., 2019).
#[derive(Parser, Debug)]
#[command(name = "candle-bcd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train an MLP with BCD and report train/test accuracy every iteration.
    Train(Box<train::TrainArgs>),
    /// Write the weights of a checkpoint as a plain candle-nn/PyTorch safetensors file.
    Export(model_commands::ExportArgs),
    /// Test accuracy of a checkpoint or an export.
    Eval(model_commands::EvalArgs),
    /// Predicted classes (one per line) of the images in an IDX file.
    Predict(model_commands::PredictArgs),
}

/// Compute device.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    /// The CPU (products by faer and Candle, all cores unless --threads).
    Cpu,
    /// The first CUDA GPU (build with `--features cuda`).
    Cuda,
    /// The Metal GPU (build with `--features metal`, Apple only).
    Metal,
}

/// Opens the requested device, with a hint when the build lacks its feature.
pub fn open_device(arg: DeviceArg) -> Result<Device> {
    let (device, feature) = match arg {
        DeviceArg::Cpu => return Ok(Device::Cpu),
        DeviceArg::Cuda => (Device::new_cuda(0), "cuda"),
        DeviceArg::Metal => (Device::new_metal(0), "metal"),
    };
    match device {
        Ok(d) => Ok(d),
        Err(e) => bail!(
            "device {feature} is not available: {e} (build with `cargo build --release --features {feature}` on a machine that has it)"
        ),
    }
}

/// Sizes the thread pools of faer/rayon and Candle's CPU kernels.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        // Candle's CPU matmul sizes its parallelism from this one.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| anyhow::anyhow!("--threads {n}: {e}"))?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let ranks = match ranks::Ranks::init() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Train(args) => train::run(*args, &ranks),
        Command::Export(args) => model_commands::run_export(args),
        Command::Eval(args) => model_commands::run_eval(args),
        Command::Predict(args) => model_commands::run_predict(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => ranks.fail(&e),
    }
}
