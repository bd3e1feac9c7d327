//! Exports load into a plain candle-nn model (no candle-bcd types on the inference side) that
//! reproduces the BCD network's logits on real MNIST test images, and the CLI's
//! train → export → eval path agrees with itself.

mod common;

use candle_bcd::{
    data, export, Activation, Architecture, BcdConfig, BcdOptimizer, Network, WeightInit,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder, VarMap};

/// A plain candle-nn MLP: `candle_nn::linear` layers under `layers.{l}` with ReLU between.
struct PlainMlp(Vec<candle_nn::Linear>);

impl PlainMlp {
    fn load(path: &std::path::Path, widths: &[usize]) -> PlainMlp {
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[path], DType::F32, &Device::Cpu).unwrap()
        };
        PlainMlp(
            (0..widths.len() - 1)
                .map(|l| {
                    candle_nn::linear(widths[l], widths[l + 1], vb.pp(format!("layers.{l}")))
                        .unwrap()
                })
                .collect(),
        )
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        for (l, layer) in self.0.iter().enumerate() {
            h = layer.forward(&h).unwrap();
            if l + 1 < self.0.len() {
                h = h.relu().unwrap();
            }
        }
        h
    }
}

#[test]
fn plain_candle_nn_model_reproduces_bcd_logits() {
    let ds = data::take_train(&data::load_idx_dir(&common::mnist_dir()).unwrap(), 1000).unwrap();
    let widths = [784, 64, 32, 10];
    let arch = Architecture::mlp(&widths, Activation::Relu).unwrap();
    let varmap = VarMap::new();
    let cfg = BcdConfig::default();
    let model = Network::init(&arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        ds.train_images.clone(),
        y,
        cfg,
    )
    .unwrap();
    for _ in 0..3 {
        opt.step().unwrap();
    }
    let dir = common::tempdir();
    let path = dir.join("model.safetensors");
    export::save(&path, &model).unwrap();

    let plain = PlainMlp::load(&path, &widths);
    let x = ds.test_images.clone();
    let diff = common::max_abs_diff(&plain.forward(&x), &model.forward(&x).unwrap());
    assert!(diff <= 1e-5, "max |Δlogit| = {diff}");

    // The export also loads back as a Network with the architecture from its metadata.
    let back = Network::from_file(&path, &Device::Cpu).unwrap();
    assert_eq!(back.architecture(), &arch);
}

#[test]
fn cli_train_export_eval_round_trip() {
    let dir = common::tempdir();
    let data = common::mnist_dir();
    let data = data.to_str().unwrap();
    let ckpt = dir.join("c.safetensors");
    let out = dir.join("e.safetensors");
    let run = |args: &[&str]| {
        let o = common::cli(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plots = dir.join("plots");
    let train = run(&[
        "train",
        "--data-dir",
        data,
        "--train-limit",
        "500",
        "--hidden",
        "32",
        "--iterations",
        "2",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--plot",
        plots.to_str().unwrap(),
    ]);
    // The plots are SVG files with one polyline per curve.
    for name in ["objective.svg", "accuracy.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("<polyline"),
            "{name}"
        );
    }
    run(&[
        "export",
        ckpt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let last = |s: &str| s.lines().last().unwrap().to_string();
    let eval_ckpt = run(&["eval", ckpt.to_str().unwrap(), "--data-dir", data]);
    let eval_export = run(&["eval", out.to_str().unwrap(), "--data-dir", data]);
    assert!(last(&train).starts_with("test accuracy: "), "{train}");
    assert_eq!(last(&train), last(&eval_ckpt));
    assert_eq!(last(&eval_ckpt), last(&eval_export));
    // The export holds the weights only.
    let tensors = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let mut names: Vec<_> = tensors.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "layers.0.bias",
            "layers.0.weight",
            "layers.1.bias",
            "layers.1.weight"
        ]
    );
}

/// A user's own candle-nn model (layers `fc1`–`fc3`, tanh, `fc2` residual) trained through the
/// library: its checkpoint opens with `candle-bcd eval`, which prints the model's own test
/// accuracy, and `candle-bcd export`, whose file keeps the names, the activation and the
/// residual layer (`Network::from_file` gives the same logits as the user's model).
#[test]
fn cli_opens_the_checkpoint_of_a_users_own_model() {
    let dev = Device::Cpu;
    let mnist = common::mnist_dir();
    let ds = data::take_train(&data::load_idx_dir(&mnist).unwrap(), 500).unwrap();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let fc1 = candle_nn::linear(784, 24, vb.pp("fc1")).unwrap();
    let fc2 = candle_nn::linear(24, 24, vb.pp("fc2")).unwrap();
    let fc3 = candle_nn::linear(24, 10, vb.pp("fc3")).unwrap();
    let model = candle_nn::seq()
        .add(fc1)
        .add_fn(|h| h.tanh())
        .add_fn(move |h| h + fc2.forward(h)?.tanh()?)
        .add(fc3);
    let net = Network::from_varmap(&varmap, ["fc1", "fc2", "fc3"])
        .unwrap()
        .activation(Activation::Tanh)
        .unwrap()
        .residual(["fc2"])
        .unwrap();
    net.check_against(&model, &ds.train_images).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let cfg = BcdConfig::default();
    let mut opt = BcdOptimizer::new(&net, ds.train_images.clone(), y, cfg).unwrap();
    opt.step().unwrap();
    let dir = common::tempdir();
    let ckpt = dir.join("own.safetensors");
    candle_bcd::checkpoint::save(&ckpt, &opt).unwrap();
    let logits = model.forward(&ds.test_images).unwrap();
    let own = candle_bcd::metrics::accuracy(&logits, &ds.test_labels).unwrap();

    let data = mnist.to_str().unwrap();
    let eval = common::cli_ok(&["eval", ckpt.to_str().unwrap(), "--data-dir", data], &[]);
    assert_eq!(
        eval.lines().last().unwrap(),
        format!("test accuracy: {own:.4}"),
        "{eval}"
    );
    let out = dir.join("own-export.safetensors");
    common::cli_ok(
        &[
            "export",
            ckpt.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let back = Network::from_file(&out, &dev).unwrap();
    assert_eq!(back.names(), ["fc1", "fc2", "fc3"]);
    assert_eq!(back.architecture(), net.architecture());
    let diff = common::max_abs_diff(&back.forward(&ds.test_images).unwrap(), &logits);
    assert!(diff <= 1e-5, "max |Δlogit| = {diff}");
}
