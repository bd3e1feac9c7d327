//! Bad input gives a clear error naming the file, tensor or setting at fault, never a panic,
//! and (from the CLI) a non-zero exit that leaves existing files untouched.

mod common;

use std::io::{Read, Write};
use std::path::Path;

use candle_bcd::data::{self, IDX_FILES};
use candle_bcd::{
    Activation, Architecture, BcdConfig, BcdError, BcdOptimizer, Network, WeightInit,
};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::rand_m;

/// A valid tiny IDX dataset (4 train and 2 test images of 2×3 pixels, 3 classes).
fn write_tiny(dir: &Path) {
    let img = |n: u32| common::idx_bytes(&[n, 2, 3], &vec![128u8; n as usize * 6]);
    let lab = |n: u32| common::idx_bytes(&[n], &(0..n as u8).map(|i| i % 3).collect::<Vec<_>>());
    std::fs::write(dir.join(IDX_FILES[0]), img(4)).unwrap();
    std::fs::write(dir.join(IDX_FILES[1]), lab(4)).unwrap();
    std::fs::write(dir.join(IDX_FILES[2]), img(2)).unwrap();
    std::fs::write(dir.join(IDX_FILES[3]), lab(2)).unwrap();
}

fn data_err(dir: &Path) -> String {
    match data::load_idx_dir(dir) {
        Err(e @ BcdError::Data { .. }) | Err(e @ BcdError::Io { .. }) => e.to_string(),
        Err(other) => panic!("expected a data error, got {other:?}"),
        Ok(_) => panic!("bad dataset accepted"),
    }
}

#[test]
fn tiny_generic_idx_dataset_loads() {
    let dir = common::tempdir();
    write_tiny(&dir);
    let ds = data::load_idx_dir(&dir).unwrap();
    assert_eq!(ds.train_images.dims(), [4, 6]);
    assert_eq!(ds.labels, 3);
    let v = ds
        .train_images
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(v.iter().all(|&p| (p - 128.0 / 255.0).abs() < 1e-7));
}

#[test]
fn missing_corrupt_truncated_and_inconsistent_idx_files() {
    let dir = common::tempdir();
    // Missing: the error names the plain and the .gz path.
    let e = data_err(&dir);
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains(".gz") && e.contains("not found"),
        "{e}"
    );

    write_tiny(&dir);
    let labels = dir.join(IDX_FILES[1]);
    std::fs::write(&labels, b"GARBAGE!").unwrap();
    let e = data_err(&dir);
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("not an IDX"),
        "{e}"
    );

    // Truncated data section.
    std::fs::write(&labels, common::idx_bytes(&[4], &[0, 1])).unwrap();
    let e = data_err(&dir);
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("truncated"),
        "{e}"
    );

    // Counts that disagree between images and labels.
    std::fs::write(&labels, common::idx_bytes(&[3], &[0, 1, 2])).unwrap();
    let e = data_err(&dir);
    assert!(e.contains("3 labels for 4 images"), "{e}");

    // Images file with the wrong number of dimensions.
    write_tiny(&dir);
    std::fs::write(dir.join(IDX_FILES[2]), common::idx_bytes(&[2, 6], &[0; 12])).unwrap();
    let e = data_err(&dir);
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("dimensions"),
        "{e}"
    );
}

#[test]
fn truncated_real_gzip_file_is_named() {
    let dir = common::tempdir();
    let real = common::mnist_dir().join("train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&real).unwrap();
    // A valid gzip stream of a truncated IDX file, and a cut gzip stream.
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut plain)
        .unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&plain[..plain.len() - 100]).unwrap();
    let path = dir.join("train-labels-idx1-ubyte.gz");
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let e = data::idx::read(&path, 1).unwrap_err().to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("need 3000 data bytes"),
        "{e}"
    );
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = data::idx::read(&path, 1).unwrap_err().to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte.gz") && e.contains("gzip"),
        "{e}"
    );
}

#[test]
fn invalid_hyperparameters_are_named() {
    let cases = [
        ("gamma", BcdConfig::default().gamma(0.0)),
        ("gamma", BcdConfig::default().gamma(-1.0)),
        ("rho", BcdConfig::default().rho(f64::NAN)),
        ("alpha", BcdConfig::default().alpha(-0.5)),
        ("alpha", BcdConfig::default().alpha(f64::INFINITY)),
        ("lambda", BcdConfig::default().lambda(-1e-3)),
    ];
    let arch = Architecture::mlp(&[3, 4, 2], Activation::Relu).unwrap();
    for (name, cfg) in cases {
        let varmap = VarMap::new();
        Network::init(&arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
        let x = rand_m(5, 3, 1, 1.0).to_tensor();
        let y = rand_m(5, 2, 2, 1.0).to_tensor();
        match BcdOptimizer::new(
            &Network::of_architecture(&varmap, &arch).unwrap(),
            x,
            y,
            cfg,
        ) {
            Err(BcdError::InvalidHyperparameter { name: n, .. }) => assert_eq!(n, name),
            Err(e) => panic!("{name}: wrong error {e}"),
            Ok(_) => panic!("{name}: accepted"),
        }
    }
    assert!(matches!(
        Architecture::mlp(&[3, 4, 2], Activation::LeakyRelu { slope: 1.5 }),
        Err(BcdError::InvalidHyperparameter {
            name: "leaky_slope",
            ..
        })
    ));
}

#[test]
fn wrong_widths_and_non_finite_data_are_named() {
    assert!(
        matches!(Architecture::mlp(&[3, 0, 2], Activation::Relu), Err(BcdError::InvalidArchitecture(m)) if m.contains("d_1"))
    );
    assert!(matches!(
        Architecture::mlp(&[3], Activation::Relu),
        Err(BcdError::InvalidArchitecture(_))
    ));
    let arch = Architecture::mlp(&[3, 4, 2], Activation::Relu).unwrap();
    let varmap = VarMap::new();
    Network::init(&arch, &varmap, Default::default(), 0, &Device::Cpu).unwrap();
    let cfg = BcdConfig::default();
    let new = |x: Tensor, y: Tensor| {
        BcdOptimizer::new(
            &Network::of_architecture(&varmap, &arch).unwrap(),
            x,
            y,
            cfg.clone(),
        )
        .err()
        .map(|e| e.to_string())
    };
    let e = new(
        rand_m(5, 4, 1, 1.0).to_tensor(),
        rand_m(5, 2, 1, 1.0).to_tensor(),
    )
    .unwrap();
    assert!(e.contains("inputs") && e.contains("[5, 3]"), "{e}");
    let e = new(
        rand_m(5, 3, 1, 1.0).to_tensor(),
        rand_m(4, 2, 1, 1.0).to_tensor(),
    )
    .unwrap();
    assert!(e.contains("targets"), "{e}");
    let mut x = rand_m(5, 3, 1, 1.0);
    x.d[7] = f64::NAN;
    let e = new(x.to_tensor(), rand_m(5, 2, 1, 1.0).to_tensor()).unwrap();
    assert!(e.contains("inputs") && e.contains("NaN"), "{e}");
    assert!(!e.contains("diverged"), "{e}");
    // A VarMap with a layer of another shape.
    let other = VarMap::new();
    Network::init(
        &Architecture::mlp(&[3, 5, 2], Activation::Relu).unwrap(),
        &other,
        Default::default(),
        0,
        &Device::Cpu,
    )
    .unwrap();
    let e = Network::of_architecture(&other, &arch)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("layers.0.weight") && e.contains("[4, 3]") && e.contains("[5, 3]"),
        "{e}"
    );
}

#[test]
fn singular_weight_system_is_reported_not_panicked() {
    // All-zero inputs with α = λ = 0: ρX̃ᵀX̃ has zero rows, the W_1 system is singular.
    let arch = Architecture::mlp(&[3, 2], Activation::Relu).unwrap();
    let varmap = VarMap::new();
    Network::init(&arch, &varmap, Default::default(), 0, &Device::Cpu).unwrap();
    let mut cfg = BcdConfig::default();
    cfg.alpha = 0.0;
    let x = Tensor::zeros((6, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        x,
        rand_m(6, 2, 1, 1.0).to_tensor(),
        cfg,
    )
    .unwrap();
    match opt.step() {
        Err(BcdError::SingularSystem { block, .. }) => assert_eq!(block, "W_1"),
        other => panic!("expected a singular-system error, got {other:?}"),
    }
}

#[test]
fn cli_rejects_bad_input_with_nonzero_exit_and_keeps_files() {
    let dir = common::tempdir();
    let keep = dir.join("keep.safetensors");
    std::fs::write(&keep, b"precious").unwrap();
    let mnist = common::mnist_dir();
    let mnist = mnist.to_str().unwrap();
    let k = keep.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--gamma", "0"], "gamma"),
        (vec!["--alpha", "-1"], "alpha"),
        (vec!["--rho", "NaN"], "rho"),
        (vec!["--hidden", "8,0"], "width d_2 is zero"),
        (
            vec!["--data-dir", "/nonexistent-bcd"],
            "/nonexistent-bcd/train-images-idx3-ubyte",
        ),
        (vec!["--resume", k], "keep.safetensors"),
        (vec!["--device", "cuda"], "cuda"),
        (vec!["--residual-init", "zero"], "--residual-init"),
        (vec!["--branch", "pair"], "--branch"),
        (
            vec!["--arch", "resnet", "--branch", "triple"],
            "single, pair",
        ),
        (
            vec!["--arch", "resnet", "--branch", "pair", "--splitting", "two"],
            "two-splitting",
        ),
        // The stem convolution cannot open a block: its input has 1 channel, not 8.
        (
            vec![
                "--arch",
                "cnn",
                "--layers",
                "conv8,res8",
                "--branch",
                "pair",
            ],
            concat!(
                "cannot close a two-layer residual branch: ",
                "its branch reads 784 values and writes 6272"
            ),
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec![
            "train",
            "--train-limit",
            "50",
            "--iterations",
            "1",
            "--checkpoint",
            k,
        ];
        if !extra.contains(&"--data-dir") {
            args.extend(["--data-dir", mnist]);
        }
        // (A CNN takes its stages from --layers.)
        if !extra.contains(&"--hidden") && !extra.contains(&"cnn") {
            args.extend(["--hidden", "8"]);
        }
        args.extend(extra.iter());
        let out = common::cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(
            err.contains(needle),
            "{extra:?}: stderr does not name `{needle}`: {err}"
        );
        assert!(!err.contains("panicked"), "{extra:?} panicked: {err}");
        assert_eq!(
            std::fs::read(&keep).unwrap(),
            b"precious",
            "{extra:?} overwrote the checkpoint"
        );
    }
}

/// Without --data-dir the hub path runs (candle-datasets over hf-hub). Pointed at a closed
/// local port (`HF_ENDPOINT`, which hf-hub reads), it must fail quickly, without a panic, with a
/// message naming hf-hub and the offline remedy, on any machine.
#[test]
fn hub_path_without_data_dir_fails_clearly_when_unreachable() {
    let home = common::tempdir();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_candle-bcd"))
        .args([
            "train",
            "--train-limit",
            "20",
            "--hidden",
            "4",
            "--iterations",
            "1",
        ])
        .env_remove("BCD_DATA_DIR")
        .env("HF_HOME", home.as_os_str())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "trained without a reachable hub");
    assert!(
        err.contains("hf-hub") && err.contains("--data-dir"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}
