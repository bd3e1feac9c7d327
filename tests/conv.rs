//! Convolutional networks by exact lifted BCD: `Φ` never rises (per sweep and per batch) for a
//! CNN and conv ResNets (single-layer branches and two-convolution blocks) under both losses and
//! a non-smooth and a smooth activation (the device path is compared in `tests/device_path.rs`);
//! a candle-nn CNN and a basic-block ResNet of one's own train in place; and bad descriptions
//! are refused with the layer named.

mod common;

use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{
    Activation, Architecture, BcdConfig, BcdError, BcdOptimizer, Branch, Conv2d, Image, Loss,
    Network, Stage, WeightInit,
};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder, VarMap};
use common::rand_m;

const IMAGE: Image = Image {
    channels: 1,
    height: 8,
    width: 8,
};

fn cnn(act: Activation) -> Architecture {
    common::small_cnn(IMAGE, 3, act)
}

fn conv_resnet(act: Activation) -> Architecture {
    Architecture::conv_resnet(IMAGE, 4, 2, 2, 3, act).unwrap()
}

/// A conv ResNet of two basic blocks `x + conv₂(σ(conv₁(x)))` (stem, two blocks of two 3×3
/// convolutions keeping 4 channels at 8×8, pooling, head).
fn conv_pairs(act: Activation) -> Architecture {
    Architecture::conv_resnet_with(IMAGE, 4, 2, Branch::Pair, 2, 3, act).unwrap()
}

/// `n` random images and one-hot targets of 3 classes.
fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let x = rand_m(n, IMAGE.len(), seed, 1.0).to_tensor();
    let y = common::M::from_fn(n, 3, |i, j| f64::from(u8::from(j == (i * 7 + 1) % 3))).to_tensor();
    (x, y)
}

fn config(loss: Loss) -> BcdConfig {
    BcdConfig::default().loss(loss).alpha(1.0).lambda(0.01)
}

fn cases() -> Vec<(String, Architecture, BcdConfig)> {
    let mut cases = Vec::new();
    for act in [Activation::Relu, Activation::Tanh] {
        for loss in [Loss::Squared, Loss::CrossEntropy] {
            cases.push((format!("cnn {act:?} {loss:?}"), cnn(act), config(loss)));
            let name = format!("resnet {act:?} {loss:?}");
            cases.push((name, conv_resnet(act), config(loss)));
            let name = format!("two-layer blocks {act:?} {loss:?}");
            cases.push((name, conv_pairs(act), config(loss)));
        }
    }
    // Layer weights growing towards the output, no proximal term on the lifted blocks.
    let deep = config(Loss::CrossEntropy)
        .penalty_growth(10.0)
        .alpha_lifted(Some(0.0));
    cases.push(("cnn, q = 10".into(), cnn(Activation::Relu), deep.clone()));
    cases.push((
        "resnet, q = 10".into(),
        conv_resnet(Activation::Relu),
        deep.clone(),
    ));
    let pairs = conv_pairs(Activation::Relu);
    cases.push(("two-layer blocks, q = 10".into(), pairs, deep));
    cases
}

/// Rise allowed by `f32` round-off in a sweep: relative `1e-6`, as the trainer's own check.
fn assert_no_rise(what: &str, before: f64, after: f64) {
    assert!(
        after <= before * (1.0 + 1e-6),
        "{what}: Φ rose from {before} to {after}"
    );
}

#[test]
fn phi_never_rises_per_sweep() {
    for (name, arch, config) in cases() {
        let varmap = VarMap::new();
        let net = Network::init(&arch, &varmap, WeightInit::Kaiming, 1, &Device::Cpu).unwrap();
        let (x, y) = data(24, 2);
        let mut opt = BcdOptimizer::new(&net, x, y, config).unwrap();
        let first = opt.objective().unwrap().total();
        let mut prev = first;
        for k in 0..4 {
            let report = opt.step().unwrap();
            assert_no_rise(
                &format!("{name}, sweep {k}"),
                prev,
                report.objective.total(),
            );
            prev = report.objective.total();
            // One CG solve per activation block under an image layer.
            assert_eq!(opt.cg_reports().len(), arch.num_layers() - 1, "{name}");
        }
        assert!(prev < 0.9 * first, "{name}: Φ {first} → {prev} barely fell");
    }
}

#[test]
fn phi_b_never_rises_per_batch() {
    for (name, arch, config) in cases() {
        let varmap = VarMap::new();
        let net = Network::init(&arch, &varmap, WeightInit::Kaiming, 3, &Device::Cpu).unwrap();
        let (x, y) = data(40, 4);
        let options = MiniBatchOptions::default().batch_size(16).seed(5);
        let mut mb = MiniBatchBcd::new(&net, config, options).unwrap();
        for batch in 0..3 {
            let rows = x.narrow(0, batch * 12, 12).unwrap();
            let targets = y.narrow(0, batch * 12, 12).unwrap();
            let r = mb.step_batch(rows, targets).unwrap();
            assert_no_rise(
                &format!("{name}, batch {batch}"),
                r.before.total(),
                r.after.total(),
            );
        }
    }
}

/// A user's candle-nn CNN: conv → ReLU → avg-pool → conv → ReLU → flatten → linear.
struct UserCnn {
    conv1: candle_nn::Conv2d,
    conv2: candle_nn::Conv2d,
    fc: candle_nn::Linear,
}

impl UserCnn {
    /// The model's layers under `names` in `vb` (created, or read from a file).
    fn new(vb: &VarBuilder, names: &[String; 3]) -> Self {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let strided = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        Self {
            conv1: candle_nn::conv2d(1, 4, 3, same, vb.pp(&names[0])).unwrap(),
            conv2: candle_nn::conv2d(4, 6, 3, strided, vb.pp(&names[1])).unwrap(),
            fc: candle_nn::linear(6 * 2 * 2, 3, vb.pp(&names[2])).unwrap(),
        }
    }
}

impl Module for UserCnn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let h = x.reshape((n, 1, 8, 8))?.apply(&self.conv1)?.relu()?;
        let h = h.avg_pool2d(2)?.apply(&self.conv2)?.relu()?;
        h.flatten_from(1)?.apply(&self.fc)
    }
}

#[test]
fn a_users_candle_nn_cnn_trains_in_place() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let names = ["conv1", "conv2", "fc"].map(String::from);
    let model = UserCnn::new(&vb, &names);
    let net = Network::from_varmap_as(&varmap, &names, &cnn(Activation::Relu)).unwrap();
    let (x, y) = data(30, 9);
    net.check_against(&model, &x).unwrap();
    let before = model.forward(&x).unwrap();
    let mut opt = BcdOptimizer::new(&net, x.clone(), y, config(Loss::Squared)).unwrap();
    opt.step().unwrap();
    // The user's own forward pass computes with the trained weights.
    let after = model.forward(&x).unwrap();
    let ours = net.logits(&x).unwrap();
    assert!(common::max_abs_diff(&after, &before) > 1e-3);
    assert!(common::max_abs_diff(&after, &ours) < 1e-4);

    // Described with the wrong stride, the description no longer matches the model.
    let wrong = Architecture::cnn(
        IMAGE,
        &[
            Stage::Conv2d(Conv2d::same(4, 3)),
            Stage::AvgPool(2),
            Stage::Conv2d(Conv2d::same(6, 3)),
            Stage::AvgPool(2),
            Stage::Linear(3),
        ],
        Activation::Relu,
    )
    .unwrap();
    let net = Network::from_varmap_as(&varmap, &names, &wrong).unwrap();
    let e = net.check_against(&model, &x).unwrap_err();
    assert!(matches!(e, BcdError::ModelMismatch { .. }), "{e}");
}

/// A user's candle-nn ResNet of one basic block: a stem conv → ReLU, then
/// `h + conv₂(ReLU(conv₁(h)))`, average pooling, a linear head.
struct UserResNet {
    convs: [candle_nn::Conv2d; 3],
    fc: candle_nn::Linear,
}

impl UserResNet {
    fn new(vb: &VarBuilder) -> Self {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv = |c_in, name| candle_nn::conv2d(c_in, 4, 3, same, vb.pp(name)).unwrap();
        Self {
            convs: [
                conv(1, "stem"),
                conv(4, "block.conv1"),
                conv(4, "block.conv2"),
            ],
            fc: candle_nn::linear(4 * 4 * 4, 3, vb.pp("fc")).unwrap(),
        }
    }
}

impl Module for UserResNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let [stem, conv1, conv2] = &self.convs;
        let h = x.reshape((n, 1, 8, 8))?.apply(stem)?.relu()?;
        let h = (&h + h.apply(conv1)?.relu()?.apply(conv2)?)?;
        h.avg_pool2d(2)?.flatten_from(1)?.apply(&self.fc)
    }
}

/// A candle-nn basic block is a two-layer residual block (`Network::residual_pairs`): the
/// description matches the model's forward pass, BCD trains it in place, and described with a
/// single-layer branch instead it is refused as a mismatch.
#[test]
fn a_users_candle_nn_basic_block_trains_in_place() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = UserResNet::new(&vb);
    let names = ["stem", "block.conv1", "block.conv2", "fc"].map(String::from);
    let conv = Stage::Conv2d(Conv2d::same(4, 3));
    let stages = [conv, conv, conv, Stage::AvgPool(2), Stage::Linear(3)];
    let plain = Architecture::cnn(IMAGE, &stages, Activation::Relu).unwrap();
    let net = Network::from_varmap_as(&varmap, &names, &plain).unwrap();
    let net = net.residual_pairs(["block.conv2"]).unwrap();
    let (x, y) = data(30, 11);
    net.check_against(&model, &x).unwrap();
    let before = model.forward(&x).unwrap();
    let mut opt = BcdOptimizer::new(&net, x.clone(), y, config(Loss::CrossEntropy)).unwrap();
    let start = opt.objective().unwrap().total();
    let report = opt.step().unwrap();
    assert_no_rise("basic block", start, report.objective.total());
    let after = model.forward(&x).unwrap();
    assert!(common::max_abs_diff(&after, &before) > 1e-3);
    assert!(common::max_abs_diff(&after, &net.logits(&x).unwrap()) < 1e-4);

    let single = Network::from_varmap_as(&varmap, &names, &plain).unwrap();
    let single = single.residual(["block.conv2"]).unwrap();
    let e = single.check_against(&model, &x).unwrap_err();
    assert!(matches!(e, BcdError::ModelMismatch { .. }), "{e}");
}

/// An export of a trained CNN loads into a plain candle-nn model (`candle_nn::conv2d`,
/// `candle_nn::linear` reading the file) and computes the network's logits; `Network::from_file`
/// rebuilds the same network, image layers included.
#[test]
fn an_exported_cnn_loads_into_plain_candle_nn() {
    let arch = cnn(Activation::Relu);
    let varmap = VarMap::new();
    let net = Network::init(&arch, &varmap, WeightInit::Kaiming, 2, &Device::Cpu).unwrap();
    let (x, y) = data(20, 3);
    let mut opt = BcdOptimizer::new(&net, x.clone(), y, config(Loss::CrossEntropy)).unwrap();
    opt.step().unwrap();
    let dir = common::tempdir();
    let path = dir.join("cnn.safetensors");
    candle_bcd::export::save(&path, &net).unwrap();

    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu).unwrap() };
    let plain = UserCnn::new(&vb, &["layers.0", "layers.1", "layers.2"].map(String::from));
    let ours = net.logits(&x).unwrap();
    assert!(common::max_abs_diff(&plain.forward(&x).unwrap(), &ours) < 1e-4);
    let back = Network::from_file(&path, &Device::Cpu).unwrap();
    assert_eq!(back.architecture(), &arch);
    assert!(common::max_abs_diff(&back.logits(&x).unwrap(), &ours) < 1e-6);
}

#[test]
fn bad_descriptions_are_refused_naming_the_layer() {
    let conv = |out, kernel, stride, padding| {
        Stage::Conv2d(Conv2d {
            out_channels: out,
            kernel,
            stride,
            padding,
        })
    };
    let refuse = |stages: &[Stage], what: &str| {
        let e = Architecture::cnn(IMAGE, stages, Activation::Relu)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
    };
    // A kernel larger than its (padded) input.
    refuse(
        &[conv(2, 9, 1, 0), Stage::Linear(3)],
        "larger than the padded image",
    );
    // A pooling that does not divide the image.
    refuse(&[Stage::AvgPool(3), Stage::Linear(3)], "does not divide");
    // A stride of zero.
    refuse(&[conv(2, 3, 0, 1), Stage::Linear(3)], "stride");
    // A convolution after a linear layer; a network ending in a pooling.
    refuse(
        &[Stage::Linear(4), conv(2, 3, 1, 1)],
        "cannot follow a linear layer",
    );
    refuse(&[conv(2, 3, 1, 1), Stage::AvgPool(2)], "ends with a layer");

    // A VarMap whose channels do not chain: the tensor is named.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    candle_nn::conv2d(1, 4, 3, same, vb.pp("conv1")).unwrap();
    candle_nn::conv2d(5, 6, 3, same, vb.pp("conv2")).unwrap();
    candle_nn::linear(6 * 2 * 2, 3, vb.pp("fc")).unwrap();
    let names = ["conv1", "conv2", "fc"].map(String::from);
    let e = Network::from_varmap_as(&varmap, &names, &cnn(Activation::Relu)).unwrap_err();
    assert!(
        matches!(&e, BcdError::ShapeMismatch { name, .. } if name == "conv2.weight"),
        "{e}"
    );
    // A 4-D weight read as a linear layer is named, with the way to describe it.
    let e = Network::from_varmap(&varmap, ["conv1"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv1") && e.contains("Architecture::cnn"),
        "{e}"
    );
    // A residual image layer must keep its image.
    let e = Architecture::cnn(
        IMAGE,
        &[conv(4, 3, 1, 1), conv(16, 3, 2, 1), Stage::Linear(3)],
        Activation::Relu,
    )
    .unwrap()
    .with_residual(vec![false, true, false])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("layer 1") && e.contains("keeps its image"),
        "{e}"
    );
}
