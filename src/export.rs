//! Exports: the trained weights alone, loadable by plain candle-nn and PyTorch.
//!
//! An export holds `{name}.weight` (`[out, in]`, or `[out, C, k, k]` for a convolution) and
//! `{name}.bias` (`[out]`) in `f32` for every layer of the [`Network`], under the network's own
//! layer names (`layers.{l}` for the crate's own constructors), exactly what
//! `candle_nn::linear(in, out, vb.pp(name))` and `candle_nn::conv2d(C, out, k, cfg, vb.pp(name))`
//! read, plus
//! metadata `format = candle-bcd-export`, `format_version = 1`, `architecture` (JSON: widths,
//! activation and residual layers) and `layers` (JSON list of the names, from the input).
//! PyTorch's `nn.Linear` and `nn.Conv2d` use the same layouts, so the state-dict keys map one to one
//! (`layers.{l}.weight` ↔ `layers[l].weight` of an `nn.ModuleList`, or `net.{2l}.weight` of an
//! `nn.Sequential` that interleaves activation modules). [`Network::from_file`] reads it back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::DType;

use crate::checkpoint;
use crate::error::Result;
use crate::network::Network;

/// Value of the `format` metadata key of an export.
pub const FORMAT: &str = "candle-bcd-export";

/// Writes `network`'s weights, architecture and layer names to `path` (atomically).
pub fn save(path: &Path, network: &Network) -> Result<()> {
    let tensors = network
        .named_tensors()
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), "1".to_string()),
        (
            "architecture".to_string(),
            checkpoint::to_json(network.architecture())?,
        ),
        ("layers".to_string(), checkpoint::to_json(&network.names())?),
    ]);
    checkpoint::write_atomic(path, tensors, metadata)
}
