//! The device path (Candle tensor operations, what a sweep runs on a GPU), forced on the CPU,
//! against the fused CPU path: the same iterates after 5 sweeps on the real MNIST slice for
//! every formulation, loss, activation and architecture (convolutional ones included), and not one `N`-row operand handed to
//! a closure kernel (which on a GPU would be a host round trip).
//!
//! With `BCD_TEST_DEVICE=cuda` (or `metal`) the device path runs on that device instead, with
//! the same checks (`scripts/gpu-check.sh`).
//!
//! The two paths round differently (other products, other orders of the `f32` sums), so the
//! weights are compared to `‖ΔW‖/‖W‖ ≤ max(5e-5, 2·floor)`, the floor being how far the CPU
//! path itself moves when only the order of the rows is reversed; `Φ` to 1e-6 relative. The
//! absolute part covers what reversing rows does not move: each row's products, which the two
//! paths form with different kernels (the two-splitting ResNet's prox-linear steps: 3.7e-5
//! between the paths, 1.2e-5 with the rows reversed).

mod common;

use candle_bcd::device_path::{host_round_trips, with_device_path};
use candle_bcd::{
    data, Activation, Architecture, BcdConfig, BcdOptimizer, Branch, Image, Loss, Network,
    Splitting, VConstraint, WeightInit,
};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

const ROWS: usize = 1000;
const SWEEPS: usize = 5;

/// The device named by `BCD_TEST_DEVICE` (`cuda`, `metal`), if any.
fn device_under_test() -> Option<Device> {
    match std::env::var("BCD_TEST_DEVICE").as_deref() {
        Ok("cuda") => {
            Some(Device::new_cuda(0).expect("BCD_TEST_DEVICE=cuda needs a CUDA build and GPU"))
        }
        Ok("metal") => {
            Some(Device::new_metal(0).expect("BCD_TEST_DEVICE=metal needs a Metal build"))
        }
        Ok("cpu") | Err(_) => None,
        Ok(other) => panic!("BCD_TEST_DEVICE={other}: expected cuda, metal or cpu"),
    }
}

/// Objectives after each sweep and the final weights (each matrix and bias flattened), with
/// the data and weights on `x`'s device.
fn run(arch: &Architecture, cfg: &BcdConfig, x: Tensor, y: Tensor) -> (Vec<f64>, Vec<Vec<f32>>) {
    let varmap = VarMap::new();
    Network::init(arch, &varmap, WeightInit::Official, 0, x.device()).unwrap();
    let layers = Network::of_architecture(&varmap, arch).unwrap();
    let mut opt = BcdOptimizer::new(&layers, x, y, cfg.clone()).unwrap();
    let objectives = (0..SWEEPS)
        .map(|_| opt.step().unwrap().objective.total())
        .collect();
    let weights = common::layer_weights(&layers);
    (objectives, weights)
}

#[test]
fn forced_device_path_gives_the_cpu_iterates_without_host_round_trips() {
    let gpu = device_under_test();
    let ds = data::take_train(&data::load_idx_dir(&common::mnist_dir()).unwrap(), ROWS).unwrap();
    let x = ds.train_images.clone();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let (x_rev, y_rev) = (common::reversed_rows(&x), common::reversed_rows(&y));

    let mlp = |act| Architecture::mlp(&[784, 48, 32, 10], act).unwrap();
    let resnet = |act| Architecture::resnet(784, 40, 2, 10, act).unwrap();
    let pair = Architecture::resnet_with(784, 40, 2, Branch::Pair, 10, Activation::Relu).unwrap();
    let image = Image::new(1, 28, 28);
    let cnn = |act| common::small_cnn(image, 10, act);
    let conv_resnet = |act| Architecture::conv_resnet(image, 4, 2, 4, 10, act).unwrap();
    let conv_pair =
        Architecture::conv_resnet_with(image, 4, 1, Branch::Pair, 4, 10, Activation::Relu).unwrap();
    let leaky = Activation::LeakyRelu { slope: 0.1 };
    let cfg = |splitting, loss| BcdConfig::default().splitting(splitting).loss(loss);
    let (three, two) = (Splitting::Three, Splitting::Two);
    let (sq, ce) = (Loss::Squared, Loss::CrossEntropy);
    let mut boxed = BcdConfig::default();
    boxed.v_constraint = VConstraint::Box { lo: 0.0, hi: 1.0 };
    let cases = [
        (
            "three relu squared mlp",
            mlp(Activation::Relu),
            cfg(three, sq),
        ),
        // Layer weights and unanchored lifted blocks on both paths.
        (
            "three leaky cross-entropy resnet, q = 10",
            resnet(leaky),
            cfg(three, ce).penalty_growth(10.0).alpha_lifted(Some(0.0)),
        ),
        (
            "three identity squared mlp",
            mlp(Activation::Identity),
            cfg(three, sq),
        ),
        (
            "three sigmoid squared mlp",
            mlp(Activation::Sigmoid),
            cfg(three, sq),
        ),
        (
            "three relu cross-entropy pair-branch resnet, q = 10",
            pair,
            cfg(three, ce).penalty_growth(10.0).alpha_lifted(Some(0.0)),
        ),
        (
            "three tanh cross-entropy resnet",
            resnet(Activation::Tanh),
            cfg(three, ce),
        ),
        (
            "three relu box-constrained mlp",
            mlp(Activation::Relu),
            boxed,
        ),
        (
            "two relu squared resnet",
            resnet(Activation::Relu),
            cfg(two, sq),
        ),
        (
            "two tanh cross-entropy mlp",
            mlp(Activation::Tanh),
            cfg(two, ce),
        ),
        (
            "two sigmoid squared mlp",
            mlp(Activation::Sigmoid),
            cfg(two, sq),
        ),
        ("two leaky cross-entropy mlp", mlp(leaky), cfg(two, ce)),
        // A fixed number of CG iterations: a tolerance met on one path and just missed on the
        // other would change the iterates beyond round-off.
        (
            "three relu cross-entropy cnn",
            cnn(Activation::Relu),
            cfg(three, ce).cg_tolerance(0.0).cg_iterations(4),
        ),
        (
            "three relu cross-entropy conv resnet, q = 10",
            conv_resnet(Activation::Relu),
            cfg(three, ce)
                .cg_tolerance(0.0)
                .cg_iterations(4)
                .penalty_growth(10.0)
                .alpha_lifted(Some(0.0)),
        ),
        (
            "three relu cross-entropy conv resnet of a basic block, q = 10",
            conv_pair,
            cfg(three, ce)
                .cg_tolerance(0.0)
                .cg_iterations(4)
                .penalty_growth(10.0),
        ),
    ];
    for (name, arch, cfg) in cases {
        let (cpu_phi, cpu_w) = run(&arch, &cfg, x.clone(), y.clone());
        let (_, rev_w) = run(&arch, &cfg, x_rev.clone(), y_rev.clone());
        let floor = common::max_rel_diff(&rev_w, &cpu_w);
        let trips = host_round_trips();
        let (dev_phi, dev_w) = match &gpu {
            Some(d) => run(
                &arch,
                &cfg,
                x.to_device(d).unwrap(),
                y.to_device(d).unwrap(),
            ),
            None => with_device_path(|| run(&arch, &cfg, x.clone(), y.clone())),
        };
        assert_eq!(
            host_round_trips(),
            trips,
            "{name}: host round trips on the device path"
        );
        for (k, (a, b)) in dev_phi.iter().zip(&cpu_phi).enumerate() {
            let rel = (a - b).abs() / b.abs();
            assert!(rel <= 1e-6, "{name}: Φ after sweep {}: {a} vs {b}", k + 1);
        }
        let rel = common::max_rel_diff(&dev_w, &cpu_w);
        println!("{name}: weights {rel:.2e} (rows reversed on the CPU path: {floor:.2e})");
        assert!(
            rel <= f64::max(5e-5, 2.0 * floor),
            "{name}: weights {rel:.2e} (rows reversed on the CPU path: {floor:.2e})"
        );
    }
}
