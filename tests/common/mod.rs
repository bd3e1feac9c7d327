//! Shared test helpers: a tiny independent f64 dense-matrix toolkit (no faer, no Candle
//! kernels), random problems, and the location of the real MNIST files.
#![allow(dead_code)]

pub mod dense;
pub mod reference;

#[allow(unused_imports)] // not every test binary uses both
pub use dense::{rand_m, M};

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// The real MNIST slice shipped with the crate (`tests/data/mnist-slice`: the first 3,000
/// training and 1,000 test images, see its README): always present. `BCD_TEST_SLICE_DIR`
/// points elsewhere (a test binary run away from its checkout, as `scripts/gpu-check.sh` does).
pub fn mnist_dir() -> PathBuf {
    match std::env::var_os("BCD_TEST_SLICE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mnist-slice"),
    }
}

/// The full MNIST (60,000 + 10,000 images): `$BCD_MNIST_DIR`, else `../shared/data/mnist`
/// beside the crate. `None`, with a line on stderr saying the test skips, when absent; under
/// `BCD_REQUIRE_FULL_MNIST=1` (set by `.ci/run`) an absent set fails the test instead.
pub fn full_mnist(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BCD_MNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"));
    let found = ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"]
        .iter()
        .any(|f| dir.join(f).is_file());
    let required = std::env::var("BCD_REQUIRE_FULL_MNIST").is_ok_and(|v| v == "1");
    match (found, required) {
        (true, _) => Some(dir),
        (false, true) => panic!(
            "{test}: the full MNIST is required (BCD_REQUIRE_FULL_MNIST=1) but not found in {} \
             (set BCD_MNIST_DIR to a directory with the four IDX files)",
            dir.display()
        ),
        (false, false) => {
            // Written to the stream itself, not through eprintln!, which the test harness
            // captures: the skip must show in a normal `cargo test` run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "{test}: SKIPPED, the full MNIST is not in {} (set BCD_MNIST_DIR to run it)",
                dir.display()
            );
            None
        }
    }
}

/// A fresh, empty temporary directory for one test, removed with everything in it when dropped
/// (a failing test's panic drops it too). It derefs to its [`Path`].
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

/// A new [`TestDir`] under the system's temporary directory.
pub fn tempdir() -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix("candle-bcd-test-")
            .tempdir()
            .unwrap(),
    )
}

/// Runs the `candle-bcd` binary.
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_candle-bcd"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs the `candle-bcd` binary with `base` then `extra` arguments, asserts that it succeeded
/// (showing its stderr otherwise) and returns its stdout.
pub fn cli_ok(base: &[&str], extra: &[&str]) -> String {
    let out = cli(&[base, extra].concat());
    assert!(
        out.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bytes of an IDX file of unsigned bytes with the given dimensions.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// The weight matrices and bias vectors of `layers`, each flattened (copied to the host).
pub fn layer_weights(layers: &candle_bcd::Network) -> Vec<Vec<f32>> {
    let vars = layers.weight_vars().iter().chain(layers.bias_vars());
    vars.map(|v| {
        let v = v.as_tensor().to_device(&Device::Cpu).unwrap();
        v.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    })
    .collect()
}

/// The largest `‖a_i − b_i‖ / ‖b_i‖` over the matrices (and bias vectors) `i`, in `f64`.
pub fn max_rel_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let diff = norm(&mut a.iter().zip(b).map(|(&x, &y)| x as f64 - y as f64));
            diff / norm(&mut b.iter().map(|&y| y as f64)).max(1e-30)
        })
        .fold(0.0, f64::max)
}

/// The rows of `t` in reverse order: the same problem, its sums over rows rounded otherwise.
pub fn reversed_rows(t: &Tensor) -> Tensor {
    let n = t.dim(0).unwrap() as u32;
    let order = Tensor::from_vec((0..n).rev().collect(), n as usize, t.device()).unwrap();
    t.index_select(&order, 0).unwrap()
}

/// The small CNN the convolutional tests share: a 3×3 convolution to 4 channels, 2×2 average
/// pooling, a strided 3×3 convolution to 6 channels (stride 2, padding 1), a linear head.
pub fn small_cnn(
    image: candle_bcd::Image,
    classes: usize,
    act: candle_bcd::Activation,
) -> candle_bcd::Architecture {
    use candle_bcd::{Conv2d, Stage};
    let strided = Conv2d {
        out_channels: 6,
        kernel: 3,
        stride: 2,
        padding: 1,
    };
    let stages = [
        Stage::Conv2d(Conv2d::same(4, 3)),
        Stage::AvgPool(2),
        Stage::Conv2d(strided),
        Stage::Linear(classes),
    ];
    candle_bcd::Architecture::cnn(image, &stages, act).unwrap()
}

/// `max |a − b|` over all entries.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
