//! End to end on real MNIST: a small MLP trained by BCD on the 3,000 training images of the
//! shipped slice reaches a useful test accuracy on its 1,000 test images within a few sweeps.
//!
//! Threshold: this exact configuration (784-128-10, official init, γ = ρ = 1, α = 5, seed 0,
//! 8 sweeps) measured 0.8060 test accuracy on the slice (0.8441 on the full 10,000 test images
//! when trained on the same 3,000); 0.75 leaves room for platform round-off while still failing
//! for a broken sweep (the untrained network scores 0.08, chance is 0.10).

mod common;

use candle_bcd::data;
use candle_bcd::{Activation, Architecture, BcdConfig, BcdOptimizer, Loss, Network, WeightInit};
use candle_core::Device;
use candle_nn::{Module, VarMap};

fn train_small(loss: Loss, sweeps: usize) -> (f64, f64) {
    train_arch(
        Architecture::mlp(&[784, 128, 10], Activation::Relu).unwrap(),
        loss,
        sweeps,
    )
}

fn train_arch(arch: Architecture, loss: Loss, sweeps: usize) -> (f64, f64) {
    let mut cfg = BcdConfig::default();
    cfg.loss = loss;
    train_with(
        &common::mnist_dir(),
        arch,
        cfg,
        WeightInit::Official,
        None,
        sweeps,
    )
}

/// Trains `arch` with `cfg` on the first 3,000 MNIST images for `sweeps` sweeps, checking that
/// Φ never rises; `head_lambda` = `Some(λ)` first fits the head by ridge least squares.
/// Returns the test accuracy before the first sweep and after the last, and asserts that the
/// sweeps moved every layer's weights and lowered Φ by at least 1 % (a `step` that did nothing
/// fails here whatever the accuracies).
fn train_with(
    dir: &std::path::Path,
    arch: Architecture,
    cfg: BcdConfig,
    init: WeightInit,
    head_lambda: Option<f64>,
    sweeps: usize,
) -> (f64, f64) {
    let loss = cfg.loss;
    let ds = data::load_idx_dir(dir).unwrap();
    let varmap = VarMap::new();
    let model = Network::init(&arch, &varmap, init, 0, &Device::Cpu).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    if let Some(lambda) = head_lambda {
        model.fit_head(&ds.train_images, &y, lambda).unwrap();
    }
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        ds.train_images.clone(),
        y,
        cfg,
    )
    .unwrap();
    let before = model.accuracy(&ds.test_images, &ds.test_labels).unwrap();
    let start: Vec<candle_core::Tensor> = (0..arch.num_layers())
        .map(|l| model.weight(l).copy().unwrap())
        .collect();
    let phi_start = opt.objective().unwrap().total();
    let mut prev = phi_start;
    for _ in 0..sweeps {
        let phi = opt.step().unwrap().objective.total();
        assert!(
            phi <= prev * (1.0 + 1e-6),
            "{loss:?}: Φ rose from {prev} to {phi}"
        );
        prev = phi;
    }
    assert!(prev < 0.99 * phi_start, "{loss:?}: Φ {phi_start} → {prev}");
    for (l, w0) in start.iter().enumerate() {
        let moved = common::M::from_tensor(model.weight(l)).rel_err(&common::M::from_tensor(w0));
        assert!(moved > 1e-4, "{loss:?}: W_{} moved by {moved}", l + 1);
    }
    // The model reads the optimizer's Vars: a plain Module::forward sees the trained weights.
    let logits = model.forward(&ds.test_images).unwrap();
    let after = candle_bcd::metrics::accuracy(&logits, &ds.test_labels).unwrap();
    eprintln!(
        "{loss:?}, widths {:?}: test accuracy {before:.4} → {after:.4}",
        arch.widths()
    );
    (before, after)
}

/// Cross-entropy, same network and sweeps: measured 0.8080; same 0.75 threshold.
#[test]
fn small_mlp_learns_mnist_with_cross_entropy() {
    let (_, acc) = train_small(Loss::CrossEntropy, 8);
    assert!(
        acc > 0.75,
        "cross-entropy test accuracy {acc} after 8 sweeps"
    );
}

/// FC-ResNet: stem 784 → 128, two residual layers, head; 8 sweeps measured 0.7880 (untrained
/// 0.1090).
#[test]
fn small_resnet_learns_mnist() {
    let arch = Architecture::resnet(784, 128, 2, 10, Activation::Relu).unwrap();
    let (_, acc) = train_arch(arch, Loss::Squared, 8);
    assert!(acc > 0.72, "ResNet test accuracy {acc} after 8 sweeps");
}

/// The preset `models/mnist-resnet.toml` in small (stem 784 → 256 instead of 2048): Kaiming
/// init, head fitted by ridge least squares (λ = 1), γ = ρ = 10. Measured: test accuracy
/// 0.8190 at the start (the closed-form head on the initial features; the same network's
/// random head scores about 0.1) and 0.8180 after 8 sweeps. The checks: the fitted head is far
/// above chance (0.75), and the sweeps (Φ non-increasing, checked in `train_with`) keep it
/// within a point.
#[test]
fn small_resnet_from_a_ridge_head_keeps_its_accuracy() {
    let arch = Architecture::resnet(784, 256, 2, 10, Activation::Relu).unwrap();
    let mut cfg = BcdConfig::default();
    cfg.gamma = 10.0;
    cfg.rho = 10.0;
    let (before, after) = train_with(
        &common::mnist_dir(),
        arch,
        cfg,
        WeightInit::Kaiming,
        Some(1.0),
        8,
    );
    eprintln!("ridge head: test accuracy {before:.4} at the start, {after:.4} after 8 sweeps");
    assert!(before > 0.75, "ridge head scored {before}");
    assert!(after > before - 0.01, "sweeps eroded {before} to {after}");
}

#[test]
fn small_mlp_learns_mnist() {
    let ds = data::load_idx_dir(&common::mnist_dir()).unwrap();
    assert_eq!(ds.train_images.dims(), [3000, 784]);
    assert_eq!(ds.test_images.dims(), [1000, 784]);
    assert_eq!(ds.labels, 10);
    let (before, acc) = train_small(Loss::Squared, 8);
    eprintln!("test accuracy before {before:.4}, after 8 sweeps {acc:.4}");
    assert!(
        before < 0.3,
        "untrained accuracy {before} is suspiciously high"
    );
    assert!(acc > 0.75, "test accuracy {acc} after 8 sweeps");
}

/// The full MNIST (60,000 training, 10,000 test images; skipped without it, see `common`):
/// 784-128-10 measured 0.8457 test accuracy after 5 sweeps (0.8346 after 2); the objective never
/// rises (checked in `train_with`).
#[test]
fn small_mlp_learns_full_mnist() {
    let Some(dir) = common::full_mnist("small_mlp_learns_full_mnist") else {
        return;
    };
    let arch = Architecture::mlp(&[784, 128, 10], Activation::Relu).unwrap();
    let (before, acc) = train_with(
        &dir,
        arch,
        BcdConfig::default(),
        WeightInit::Official,
        None,
        5,
    );
    assert!(before < 0.3, "untrained accuracy {before}");
    assert!(
        acc > 0.80,
        "test accuracy {acc} after 5 sweeps on the full MNIST"
    );
}
