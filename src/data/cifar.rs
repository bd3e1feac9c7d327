//! Reader for the CIFAR-10 binary format.
//!
//! Each record is one label byte (0–9) followed by 3072 pixel bytes: the 1024 red, then green,
//! then blue values of a 32×32 image, row-major. The training set is `data_batch_1.bin` …
//! `data_batch_5.bin`, the test set `test_batch.bin`. Images become `[N, 3072]` `f32` rows in
//! `[0, 1]` (channel-major, as in the file and in `candle_datasets::vision::cifar::load_dir`).

use std::path::Path;

use candle_core::{Device, Tensor};

use super::Dataset;
use crate::error::{BcdError, Result};

/// Bytes per record: label plus 3×32×32 pixels.
pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Classes of CIFAR-10.
pub const CLASSES: usize = 10;

/// Reads one batch file into images `[n, 3072]` (f32) and labels `[n]` (u8).
pub fn read_batch(path: &Path) -> Result<(Tensor, Tensor)> {
    let bytes = std::fs::read(path).map_err(|e| BcdError::io(path, e))?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(BcdError::data(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not a CIFAR-10 binary batch)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES {
            return Err(BcdError::data(
                path,
                format!("record {i} has label {} (CIFAR-10 labels are 0–9)", rec[0]),
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    let images = Tensor::from_vec(super::scaled_pixels(&pixels), (n, RECORD - 1), &Device::Cpu)?;
    Ok((images, Tensor::from_vec(labels, n, &Device::Cpu)?))
}

/// Loads CIFAR-10 from the binary batches in `dir`.
pub fn load_dir(dir: &Path) -> Result<Dataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for k in 1..=5 {
        let (x, y) = read_batch(&dir.join(format!("data_batch_{k}.bin")))?;
        images.push(x);
        labels.push(y);
    }
    let (test_images, test_labels) = read_batch(&dir.join("test_batch.bin"))?;
    Ok(Dataset {
        train_images: Tensor::cat(&images, 0)?,
        train_labels: Tensor::cat(&labels, 0)?,
        test_images,
        test_labels,
        labels: CLASSES,
    })
}
