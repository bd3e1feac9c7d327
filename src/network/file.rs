//! A [`Network`] rebuilt from the file of a checkpoint or an export: both carry the
//! architecture (widths, activation, residual layers) and the layers' names as metadata.

use std::path::Path;

use candle_core::Device;
use candle_nn::VarMap;

use super::Network;
use crate::arch::Architecture;
use crate::checkpoint;
use crate::error::{BcdError, Result};
use crate::export;

impl Network {
    /// The network of a checkpoint or an export at `path`, under its own layer names, with its
    /// activation and residual layers, its weights in fresh `Var`s on `device`.
    ///
    /// Errors name the file: not a safetensors file, of another format, metadata or a weight
    /// missing or of the wrong shape.
    pub fn from_file(path: &Path, device: &Device) -> Result<Self> {
        let meta = checkpoint::read_metadata(path)?;
        match meta.get("format").map(String::as_str) {
            Some(export::FORMAT) | Some(checkpoint::FORMAT) => {}
            other => {
                return Err(BcdError::checkpoint(
                    path,
                    format!(
                        "format {other:?} is neither `{}` nor `{}`",
                        export::FORMAT,
                        checkpoint::FORMAT
                    ),
                ))
            }
        }
        let arch: Architecture = checkpoint::json(&meta, "architecture", path)?;
        let names = checkpoint::layer_names(&meta, &arch, path)?;
        let mut tensors = candle_core::safetensors::load(path, device)
            .map_err(|e| BcdError::checkpoint(path, format!("cannot read tensors: {e}")))?;
        let mut weights = Vec::new();
        for name in &names {
            for key in [format!("{name}.weight"), format!("{name}.bias")] {
                let t = tensors.remove(&key).ok_or_else(|| {
                    BcdError::checkpoint(path, format!("tensor `{key}` is missing"))
                })?;
                weights.push((key, t));
            }
        }
        let varmap = VarMap::new();
        super::init::set_or_insert(&varmap, weights)?;
        Self::from_varmap_as(&varmap, &names, &arch)
            .map_err(|e| BcdError::checkpoint(path, e.to_string()))
    }
}
