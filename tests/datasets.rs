//! CIFAR-10 and Fashion-MNIST loaders on small files in the real formats, made here; every way
//! a file can be wrong gives an error naming it; the CLI trains on them end to end.

mod common;

use std::path::Path;

use candle_bcd::data::{self, cifar, DatasetKind, IDX_FILES};
use candle_bcd::BcdError;

/// Writes CIFAR-10 binary batches: `per_batch` records per training batch, `test` in the test
/// batch; record `i` has label `i % 10` and pixel `j` = `(i + j) % 256`.
fn write_cifar(dir: &Path, per_batch: usize, test: usize) {
    let batch = |n: usize, offset: usize| {
        let mut out = Vec::new();
        for i in offset..offset + n {
            out.push((i % 10) as u8);
            out.extend((0..3072).map(|j| ((i + j) % 256) as u8));
        }
        out
    };
    for k in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{k}.bin")),
            batch(per_batch, (k - 1) * per_batch),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), batch(test, 1000)).unwrap();
}

#[test]
fn cifar10_binary_batches_load() {
    let dir = common::tempdir();
    write_cifar(&dir, 3, 4);
    let ds = data::load(DatasetKind::Cifar10, Some(&dir)).unwrap();
    assert_eq!(ds.train_images.dims(), [15, 3072]);
    assert_eq!(ds.test_images.dims(), [4, 3072]);
    assert_eq!(ds.labels, 10);
    let labels = ds.train_labels.to_vec1::<u8>().unwrap();
    assert_eq!(labels, (0..15).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    // Record 7 (batch 3, second record), red pixel 5 and blue pixel 1023 (file order kept).
    let row = ds.train_images.get(7).unwrap().to_vec1::<f32>().unwrap();
    assert!((row[5] - 12.0 / 255.0).abs() < 1e-7);
    assert!((row[3071] - ((7 + 3071) % 256) as f32 / 255.0).abs() < 1e-7);
}

#[test]
fn cifar10_bad_files_are_named() {
    let dir = common::tempdir();
    write_cifar(&dir, 2, 2);
    let err = |dir: &Path| match data::load(DatasetKind::Cifar10, Some(dir)) {
        Err(e @ (BcdError::Data { .. } | BcdError::Io { .. })) => e.to_string(),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("bad CIFAR-10 files accepted"),
    };
    let b3 = dir.join("data_batch_3.bin");
    let good = std::fs::read(&b3).unwrap();
    std::fs::write(&b3, &good[..good.len() - 10]).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("data_batch_3.bin") && e.contains("not a whole number"),
        "{e}"
    );
    let mut bad = good.clone();
    bad[cifar::RECORD] = 12;
    std::fs::write(&b3, &bad).unwrap();
    let e = err(&dir);
    assert!(
        e.contains("data_batch_3.bin") && e.contains("record 1 has label 12"),
        "{e}"
    );
    std::fs::write(&b3, &good).unwrap();
    std::fs::remove_file(dir.join("test_batch.bin")).unwrap();
    let e = err(&dir);
    assert!(e.contains("test_batch.bin"), "{e}");
}

/// Fashion-MNIST uses MNIST's IDX names; files gzipped here to cover that path too.
fn write_fashion(dir: &Path, train: u32, test: u32) {
    use std::io::Write;
    let gz = |bytes: Vec<u8>| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        e.finish().unwrap()
    };
    let img = |n: u32| {
        common::idx_bytes(
            &[n, 28, 28],
            &(0..n * 784).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
        )
    };
    let lab = |n: u32| common::idx_bytes(&[n], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    for (name, bytes) in IDX_FILES
        .iter()
        .zip([img(train), lab(train), img(test), lab(test)])
    {
        std::fs::write(dir.join(format!("{name}.gz")), gz(bytes)).unwrap();
    }
}

#[test]
fn cli_trains_on_cifar10_and_fashion_mnist_files() {
    let dir = common::tempdir();
    let cifar_dir = dir.join("cifar");
    let fashion_dir = dir.join("fashion");
    std::fs::create_dir_all(&cifar_dir).unwrap();
    std::fs::create_dir_all(&fashion_dir).unwrap();
    write_cifar(&cifar_dir, 8, 10);
    write_fashion(&fashion_dir, 40, 20);
    for (kind, d) in [("cifar10", &cifar_dir), ("fashion-mnist", &fashion_dir)] {
        let out = common::cli(&[
            "train",
            "--dataset",
            kind,
            "--data-dir",
            d.to_str().unwrap(),
            "--hidden",
            "16",
            "--iterations",
            "2",
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout
                .lines()
                .last()
                .unwrap()
                .starts_with("test accuracy: "),
            "{kind}: {stdout}"
        );
    }
}

#[test]
fn cli_predict_prints_one_class_per_image() {
    let dir = common::tempdir();
    let fashion = dir.join("fashion");
    std::fs::create_dir_all(&fashion).unwrap();
    write_fashion(&fashion, 30, 12);
    let ckpt = dir.join("c.safetensors");
    let f = fashion.to_str().unwrap();
    let out = common::cli(&[
        "train",
        "--data-dir",
        f,
        "--hidden",
        "8",
        "--iterations",
        "1",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let images = fashion.join("t10k-images-idx3-ubyte.gz");
    let out = common::cli(&[
        "predict",
        ckpt.to_str().unwrap(),
        "--images",
        images.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(lines.iter().all(|&c| c < 10));
    // A labels file is not an images file: clear error, non-zero exit.
    let labels = fashion.join("t10k-labels-idx1-ubyte.gz");
    let out = common::cli(&[
        "predict",
        ckpt.to_str().unwrap(),
        "--images",
        labels.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("t10k-labels-idx1-ubyte.gz"));
}

/// The shipped slice is the head of the real MNIST, byte for byte (images scaled alike), and
/// the full set has its standard sizes. Needs the full set (skips without it, see `common`).
#[test]
fn mnist_slice_is_the_head_of_mnist() {
    let Some(full) = common::full_mnist("mnist_slice_is_the_head_of_mnist") else {
        return;
    };
    let full = data::load_idx_dir(&full).unwrap();
    assert_eq!(full.train_images.dims(), [60000, 784]);
    assert_eq!(full.test_images.dims(), [10000, 784]);
    let slice = data::load_idx_dir(&common::mnist_dir()).unwrap();
    let head = |t: &candle_core::Tensor, n: usize| t.narrow(0, 0, n).unwrap();
    let same = |a: &candle_core::Tensor, b: &candle_core::Tensor| {
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let labels = |t: &candle_core::Tensor| t.to_vec1::<u8>().unwrap();
    assert!(same(&slice.train_images, &head(&full.train_images, 3000)));
    assert!(same(&slice.test_images, &head(&full.test_images, 1000)));
    assert_eq!(
        labels(&slice.train_labels),
        labels(&head(&full.train_labels, 3000))
    );
    assert_eq!(
        labels(&slice.test_labels),
        labels(&head(&full.test_labels, 1000))
    );
}
