//! Exports: the trained weights alone, loadable by plain candle-nn and PyTorch.
//!
//! An export holds `layers.{l}.weight` (`[out, in]`) and `layers.{l}.bias` (`[out]`) in `f32`,
//! exactly what `candle_nn::linear(in, out, vb.pp(format!("layers.{l}")))` reads, plus metadata
//! `format = candle-bcd-export`, `format_version = 1` and `architecture` (JSON: widths and
//! activation). PyTorch's `nn.Linear` uses the same layout, so the state-dict keys map one to one
//! (`layers.{l}.weight` ↔ `layers[l].weight` of an `nn.ModuleList`, or
//! `net.{2l}.weight` of an `nn.Sequential` that interleaves activation modules).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use crate::arch::Architecture;
use crate::checkpoint;
use crate::error::{BcdError, Result};
use crate::model::BcdNet;

/// Value of the `format` metadata key of an export.
pub const FORMAT: &str = "candle-bcd-export";

/// Writes `model`'s weights and architecture to `path` (atomically).
pub fn save(path: &Path, model: &BcdNet) -> Result<()> {
    let arch = model.architecture();
    let mut tensors = Vec::new();
    for l in 0..arch.num_layers() {
        let prefix = Architecture::layer_prefix(l);
        tensors.push((
            format!("{prefix}.weight"),
            model.weight(l).to_dtype(DType::F32)?,
        ));
        tensors.push((
            format!("{prefix}.bias"),
            model.bias(l).to_dtype(DType::F32)?,
        ));
    }
    let arch_json = checkpoint::to_json(arch)?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), "1".to_string()),
        ("architecture".to_string(), arch_json),
    ]);
    checkpoint::write_atomic(path, tensors, metadata)
}

/// Loads the network of an export or a checkpoint (both carry the architecture).
pub fn load_model(path: &Path, device: &Device) -> Result<BcdNet> {
    let meta = checkpoint::read_metadata(path)?;
    match meta.get("format").map(String::as_str) {
        Some(FORMAT) | Some(checkpoint::FORMAT) => {}
        other => {
            return Err(BcdError::checkpoint(
                path,
                format!(
                    "format {other:?} is neither `{FORMAT}` nor `{}`",
                    checkpoint::FORMAT
                ),
            ))
        }
    }
    let arch: Architecture = checkpoint::json(&meta, "architecture", path)?;
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| BcdError::checkpoint(path, format!("cannot read tensors: {e}")))?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    BcdNet::new(&arch, vb).map_err(|e| BcdError::checkpoint(path, e.to_string()))
}
