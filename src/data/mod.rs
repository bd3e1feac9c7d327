//! Datasets: MNIST-like IDX files (gzipped or not) or CIFAR-10 binary batches from a local
//! directory, or the Hugging Face hub through candle-datasets when no directory is given.
//!
//! Images become `[N, pixels]` `f32` rows scaled to `[0, 1]`; labels stay `[N]` `u8` class ids
//! ([`one_hot`] makes the `[N, C]` targets of the squared loss).

pub mod cifar;
mod hub;
pub mod idx;

use std::ops::Range;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
/// A labelled image dataset: flattened images and class ids for a training and a test split.
/// The same fields as `candle_datasets::vision::Dataset`.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training images `[N, d_0]` (`f32` in `[0, 1]`).
    pub train_images: Tensor,
    /// Training class ids `[N]`.
    pub train_labels: Tensor,
    /// Test images `[N_test, d_0]`.
    pub test_images: Tensor,
    /// Test class ids `[N_test]`.
    pub test_labels: Tensor,
    /// Number of classes.
    pub labels: usize,
}

use crate::comm::{self, share, Communicator};
use crate::error::{BcdError, Result};

/// A supported public dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// MNIST handwritten digits (28×28, 10 classes).
    Mnist,
    /// Fashion-MNIST (28×28, 10 classes, same IDX file names).
    FashionMnist,
    /// CIFAR-10 (3×32×32, 10 classes, binary batches).
    Cifar10,
}

impl DatasetKind {
    /// The shape of one image: `1×28×28` (MNIST, Fashion-MNIST) or `3×32×32` (CIFAR-10); the
    /// loaded rows hold it in channel, row, column order.
    pub fn image(self) -> crate::conv::Image {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => crate::conv::Image::new(1, 28, 28),
            DatasetKind::Cifar10 => crate::conv::Image::new(3, 32, 32),
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = BcdError;

    /// `mnist`, `fashion-mnist` or `cifar10`.
    fn from_str(s: &str) -> Result<Self> {
        let table = [
            ("mnist", DatasetKind::Mnist),
            ("fashion-mnist", DatasetKind::FashionMnist),
            ("cifar10", DatasetKind::Cifar10),
        ];
        crate::config::parse_name("dataset", s, &table, "mnist, fashion-mnist, cifar10")
    }
}

/// The four standard IDX file names (each may carry a `.gz` suffix).
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Loads `kind` from `dir` when given, otherwise from the Hugging Face hub (needs network and
/// the `hub` feature).
pub fn load(kind: DatasetKind, dir: Option<&Path>) -> Result<Dataset> {
    match (dir, kind) {
        (Some(dir), DatasetKind::Cifar10) => cifar::load_dir(dir),
        (Some(dir), _) => load_idx_dir(dir),
        (None, _) => hub::download(kind),
    }
}

/// Bytes `0..=255` as `f32` in `[0, 1]` (`b · f32(1/255)`, as Candle's `to_dtype` then `/ 255`
/// computes them), in one pass: the two tensor operations would hold a second `f32` copy of
/// the images at the peak.
pub(crate) fn scaled_pixels(bytes: &[u8]) -> Vec<f32> {
    let scale = (1.0f64 / 255.0) as f32;
    bytes.iter().map(|&b| b as f32 * scale).collect()
}

/// Reads the rows `rows(n)` of one images/labels pair (`n` the number in the files), checking
/// that the counts agree.
fn load_split(
    dir: &Path,
    images: &str,
    labels: &str,
    rows: impl Fn(usize) -> Range<usize>,
) -> Result<(Tensor, Tensor)> {
    let ipath = idx::find(dir, images)?;
    let lpath = idx::find(dir, labels)?;
    let (img, n_img) = idx::read_rows(&ipath, 3, &rows)?;
    let (lab, n_lab) = idx::read_rows(&lpath, 1, &rows)?;
    if n_img != n_lab {
        return Err(BcdError::data(
            &lpath,
            format!("{n_lab} labels for {n_img} images in {}", ipath.display()),
        ));
    }
    let (n, pixels) = (img.dims[0], img.dims[1] * img.dims[2]);
    let images = Tensor::from_vec(scaled_pixels(&img.data), (n, pixels), &Device::Cpu)?;
    let labels = Tensor::from_vec(lab.data, n, &Device::Cpu)?;
    Ok((images, labels))
}

/// The rows `train_rows(n)` and `test_rows(n)` of the four IDX files in `dir`, the class count
/// left 0.
fn load_idx_rows(
    dir: &Path,
    train_rows: impl Fn(usize) -> Range<usize>,
    test_rows: impl Fn(usize) -> Range<usize>,
) -> Result<Dataset> {
    let (train_images, train_labels) = load_split(dir, IDX_FILES[0], IDX_FILES[1], train_rows)?;
    let (test_images, test_labels) = load_split(dir, IDX_FILES[2], IDX_FILES[3], test_rows)?;
    if train_images.dim(1)? != test_images.dim(1)? {
        return Err(BcdError::data(
            dir.join(IDX_FILES[2]),
            format!(
                "test images have {} pixels, training images {}",
                test_images.dim(1)?,
                train_images.dim(1)?
            ),
        ));
    }
    Ok(Dataset {
        train_images,
        train_labels,
        test_images,
        test_labels,
        labels: 0,
    })
}

/// Loads an MNIST-like dataset from the four IDX files in `dir` (any image size and class
/// count; the class count is the largest label plus one).
pub fn load_idx_dir(dir: &Path) -> Result<Dataset> {
    let mut ds = load_idx_rows(dir, |n| 0..n, |n| 0..n)?;
    let max = |t: &Tensor| -> Result<usize> { Ok(t.max(0)?.to_scalar::<u8>()? as usize) };
    ds.labels = max(&ds.train_labels)?.max(max(&ds.test_labels)?) + 1;
    Ok(ds)
}

/// This rank's share of a dataset for a data-parallel run: the contiguous shares
/// ([`comm::share`]) of the first `train_limit` training rows (all when `None`) and of the test
/// rows. Every rank calls it. From IDX files a rank reads only its own rows; other sources are
/// loaded whole and then cut. The class count is agreed over all ranks' labels, and a file
/// one rank cannot read ends every rank with an error (that rank's names the file).
pub fn load_share(
    kind: DatasetKind,
    dir: Option<&Path>,
    train_limit: Option<usize>,
    comm: &dyn Communicator,
) -> Result<Dataset> {
    let local = match (dir, kind) {
        (Some(dir), DatasetKind::Mnist | DatasetKind::FashionMnist) => {
            let (rank, size) = (comm.rank(), comm.size());
            let limit = train_limit.unwrap_or(usize::MAX);
            load_idx_rows(
                dir,
                |n| share(n.min(limit), rank, size),
                |n| share(n, rank, size),
            )
        }
        _ => load(kind, dir).and_then(|ds| {
            let ds = take_train(&ds, train_limit.unwrap_or(usize::MAX))?;
            let cut = |t: &Tensor| -> Result<Tensor> {
                let rows = share(t.dim(0)?, comm.rank(), comm.size());
                Ok(t.narrow(0, rows.start, rows.len())?)
            };
            Ok(Dataset {
                train_images: cut(&ds.train_images)?,
                train_labels: cut(&ds.train_labels)?,
                test_images: cut(&ds.test_images)?,
                test_labels: cut(&ds.test_labels)?,
                labels: ds.labels,
            })
        }),
    };
    let mut ds = comm::agree(comm, local)?;
    // The class count: the largest label any rank holds, plus one.
    let mut seen = vec![0f64; 256];
    for labels in [&ds.train_labels, &ds.test_labels] {
        for id in labels.to_vec1::<u8>()? {
            seen[id as usize] = 1.0;
        }
    }
    comm.sum_f64(&mut seen);
    ds.labels = seen.iter().rposition(|&c| c > 0.0).map_or(0, |c| c + 1);
    Ok(ds)
}

/// `[N, classes]` one-hot `f32` targets from `[N]` integer labels.
pub fn one_hot(labels: &Tensor, classes: usize) -> Result<Tensor> {
    let ids = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let n = ids.len();
    let mut data = vec![0f32; n * classes];
    for (i, &c) in ids.iter().enumerate() {
        let c = c as usize;
        if c >= classes {
            return Err(BcdError::ShapeMismatch {
                name: format!("label {c} of sample {i}"),
                expected: vec![classes],
                got: vec![c + 1],
            });
        }
        data[i * classes + c] = 1.0;
    }
    Ok(Tensor::from_vec(data, (n, classes), labels.device())?)
}

/// The first `n` training samples (all of them when `n` is larger).
pub fn take_train(ds: &Dataset, n: usize) -> Result<Dataset> {
    let n = n.min(ds.train_images.dim(0)?);
    Ok(Dataset {
        train_images: ds.train_images.narrow(0, 0, n)?,
        train_labels: ds.train_labels.narrow(0, 0, n)?,
        test_images: ds.test_images.clone(),
        test_labels: ds.test_labels.clone(),
        labels: ds.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass scaling gives Candle's `to_dtype(F32) / 255` to the bit, for every byte.
    #[test]
    fn scaled_pixels_match_candle_bit_for_bit() {
        let bytes: Vec<u8> = (0..=255).collect();
        let candle = (Tensor::from_vec(bytes.clone(), 256, &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            / 255.0)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ours = scaled_pixels(&bytes);
        assert!(ours
            .iter()
            .zip(&candle)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
