//! Inference with plain candle-nn on an export: no candle-bcd type is used here, only
//! `candle_nn::linear` layers read from the safetensors file, joined the way the export's
//! metadata says: `layers` (the layer names, from the input) and `architecture` (JSON with the
//! hidden `activation` and, for a ResNet, the `residual` flags: `V = V_in + σ(U)`, or with
//! `"branch": "pair"` the input of the layer before plus `U`, the block `x + fc2(σ(fc1(x)))`).
//!
//! ```sh
//! cargo run --release --example infer_plain_candle -- mlp.safetensors path/to/mnist
//! ```

use std::io::Read;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};

/// Reads an IDX file (gzipped or not) into its dimensions and bytes.
fn read_idx(path: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let mut bytes = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut bytes)?;
    } else {
        bytes = raw;
    }
    let ndims = bytes[3] as usize;
    let dims = (0..ndims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    Ok((dims, bytes[4 + 4 * ndims..].to_vec()))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("mlp.safetensors", String::as_str);
    let dir = args.get(1).map_or("tests/data/mnist-slice", String::as_str);
    let device = Device::Cpu;

    // The layer names, activation and residual layers come from the export's metadata.
    let bytes = std::fs::read(model).with_context(|| format!("reading {model}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let arch: serde_json::Value = serde_json::from_str(
        meta.get("architecture")
            .with_context(|| format!("{model} has no architecture metadata"))?,
    )?;
    let names: Vec<String> = match meta.get("layers") {
        Some(json) => serde_json::from_str(json)?,
        None => (0..arch["widths"].as_array().map_or(1, Vec::len) - 1)
            .map(|l| format!("layers.{l}"))
            .collect(),
    };
    let residual = |l: usize| arch["residual"][l].as_bool().unwrap_or(false);
    let pairs = match arch["branch"].as_str() {
        None | Some("single") => false,
        Some("pair") => true,
        Some(other) => bail!("{model}: unknown residual branch {other:?}"),
    };
    let activation = arch["activation"].clone();
    let sigma = move |u: &Tensor| -> Result<Tensor> {
        Ok(match &activation {
            serde_json::Value::String(s) if s == "relu" => u.relu()?,
            serde_json::Value::String(s) if s == "identity" => u.clone(),
            serde_json::Value::String(s) if s == "sigmoid" => candle_nn::ops::sigmoid(u)?,
            serde_json::Value::String(s) if s == "tanh" => u.tanh()?,
            serde_json::Value::Object(o) if o.contains_key("leaky-relu") => {
                let slope = o["leaky-relu"]["slope"].as_f64().unwrap_or(0.0);
                u.maximum(&u.affine(slope, 0.0)?)?
            }
            other => bail!("{model}: unknown activation {other}"),
        })
    };
    let tensors = candle_core::safetensors::load(model, &device)?;
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &device);
    let mut layers: Vec<Linear> = Vec::new();
    for name in &names {
        let w = tensors
            .get(&format!("{name}.weight"))
            .with_context(|| format!("{model} has no {name}.weight"))?;
        let (out, inp) = w.dims2()?;
        layers.push(candle_nn::linear(inp, out, vb.pp(name))?);
    }
    if layers.is_empty() {
        bail!("{model} has no layers");
    }

    let (dims, pixels) = read_idx(&format!("{dir}/t10k-images-idx3-ubyte.gz"))?;
    let (_, labels) = read_idx(&format!("{dir}/t10k-labels-idx1-ubyte.gz"))?;
    let x = (Tensor::from_vec(pixels, (dims[0], dims[1] * dims[2]), &device)?
        .to_dtype(DType::F32)?
        / 255.0)?;
    let mut h = x;
    // The input of the layer before: the skip of a two-layer block.
    let mut before = h.clone();
    for (l, layer) in layers.iter().enumerate() {
        let u = layer.forward(&h)?;
        let v = match (l + 1 < layers.len(), residual(l), pairs) {
            (false, _, _) => u,
            (true, false, _) => sigma(&u)?,
            (true, true, false) => (&h + sigma(&u)?)?,
            (true, true, true) => (&before + u)?,
        };
        before = std::mem::replace(&mut h, v);
    }
    let pred = h.argmax(1)?.to_vec1::<u32>()?;
    let correct = pred
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p == **l as u32)
        .count();
    println!("first predictions: {:?}", &pred[..10]);
    println!("test accuracy: {:.4}", correct as f64 / pred.len() as f64);
    Ok(())
}
