//! Datasets from the Hugging Face hub (feature `hub`), through candle-datasets and hf-hub.

use super::{Dataset, DatasetKind};
use crate::error::{BcdError, Result};

/// `kind` from the Hugging Face hub through candle-datasets.
#[cfg(feature = "hub")]
pub(super) fn download(kind: DatasetKind) -> Result<Dataset> {
    use candle_core::Tensor;
    use candle_datasets::vision;
    let loaded = match kind {
        DatasetKind::Mnist => vision::mnist::load(),
        DatasetKind::FashionMnist => vision::fashion_mnist::load(),
        // candle-datasets' hub loader returns [N, 3, W, H]: transpose to the binary files'
        // [N, 3, H, W] before flattening.
        DatasetKind::Cifar10 => vision::cifar::load().and_then(|mut d| {
            let flat = |t: &Tensor| t.permute((0, 1, 3, 2))?.contiguous()?.flatten_from(1);
            d.train_images = flat(&d.train_images)?;
            d.test_images = flat(&d.test_images)?;
            Ok(d)
        }),
    };
    let d = loaded.map_err(|e| BcdError::Data {
        path: format!("hf-hub:{kind:?}").into(),
        reason: format!(
            "download through hf-hub failed ({e}); offline, pass --data-dir with the local files"
        ),
    })?;
    Ok(Dataset {
        train_images: d.train_images,
        train_labels: d.train_labels,
        test_images: d.test_images,
        test_labels: d.test_labels,
        labels: d.labels,
    })
}

/// Without the `hub` feature nothing is downloaded.
#[cfg(not(feature = "hub"))]
pub(super) fn download(kind: DatasetKind) -> Result<Dataset> {
    Err(BcdError::Data {
        path: format!("hf-hub:{kind:?}").into(),
        reason: "this build has no `hub` feature to download it; pass the directory with the \
                 local files"
            .into(),
    })
}
