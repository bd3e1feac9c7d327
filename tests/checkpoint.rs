//! Checkpoint round trip: k sweeps, save, load into a fresh optimizer (and a fresh process),
//! one more sweep — bit for bit the same as k+1 uninterrupted sweeps on the CPU.

mod common;

use std::path::Path;

use candle_bcd::{
    checkpoint, Activation, Architecture, BcdConfig, BcdOptimizer, Network, WeightInit,
};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::rand_m;

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn assert_same_checkpoints(a: &Path, b: &Path) {
    let ta = candle_core::safetensors::load(a, &Device::Cpu).unwrap();
    let tb = candle_core::safetensors::load(b, &Device::Cpu).unwrap();
    assert_eq!(ta.len(), tb.len());
    for (name, t) in &ta {
        assert!(
            bits(t) == bits(&tb[name]),
            "tensor {name} differs between {a:?} and {b:?}"
        );
    }
    let (ma, mb) = (
        checkpoint::read_metadata(a).unwrap(),
        checkpoint::read_metadata(b).unwrap(),
    );
    assert_eq!(ma, mb);
}

#[test]
fn resume_in_a_fresh_optimizer_is_bit_identical() {
    resume_round_trip(BcdConfig::default().lambda(0.01));
}

#[test]
fn two_splitting_resnet_resumes_bit_identically() {
    resume_round_trip(
        BcdConfig::default()
            .splitting(candle_bcd::Splitting::Two)
            .loss(candle_bcd::Loss::CrossEntropy),
    );
}

#[test]
fn conv_resnet_resumes_bit_identically() {
    let image = candle_bcd::Image::new(2, 6, 6);
    let arch = Architecture::conv_resnet(image, 3, 2, 2, 3, Activation::Tanh).unwrap();
    resume_round_trip_of(
        &arch,
        BcdConfig::default().loss(candle_bcd::Loss::CrossEntropy),
    );
}

fn resume_round_trip(cfg: BcdConfig) {
    let arch = match cfg.splitting {
        candle_bcd::Splitting::Three => {
            Architecture::mlp(&[6, 10, 10, 3], Activation::Relu).unwrap()
        }
        candle_bcd::Splitting::Two => Architecture::resnet(6, 10, 2, 3, Activation::Relu).unwrap(),
    };
    resume_round_trip_of(&arch, cfg);
}

fn resume_round_trip_of(arch: &Architecture, cfg: BcdConfig) {
    let dir = common::tempdir();
    let arch = arch.clone();
    let (x, y) = (
        rand_m(50, arch.input_dim(), 1, 1.0).to_tensor(),
        rand_m(50, 3, 2, 1.0).to_tensor(),
    );
    let varmap = VarMap::new();
    Network::init(&arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
    let y = match cfg.loss {
        candle_bcd::Loss::CrossEntropy => {
            common::M::from_fn(50, 3, |i, j| if j == i % 3 { 1.0 } else { 0.0 }).to_tensor()
        }
        candle_bcd::Loss::Squared => y,
    };
    let mut a = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        x.clone(),
        y.clone(),
        cfg,
    )
    .unwrap();
    for _ in 0..3 {
        a.step().unwrap();
    }
    let path = dir.join("k3.safetensors");
    checkpoint::save(&path, &a).unwrap();
    let ra = a.step().unwrap();

    let checkpoint::Checkpoint::FullBatch(ckpt) = checkpoint::load(&path, &Device::Cpu).unwrap()
    else {
        panic!("a full-batch run's checkpoint loaded as another kind");
    };
    assert_eq!(ckpt.state.iteration, 3);
    ckpt.check_compatible(&arch, 50, &path).unwrap();
    let fresh = VarMap::new();
    let model = ckpt.model.network(&fresh).unwrap();
    assert_eq!(model.architecture(), &arch);
    let mut b =
        BcdOptimizer::from_state(&model, x.clone(), y, ckpt.model.config.clone(), ckpt.state)
            .unwrap();
    let rb = b.step().unwrap();
    assert_eq!(ra.iteration, rb.iteration);
    assert_eq!(
        ra.objective.total().to_bits(),
        rb.objective.total().to_bits()
    );
    for l in 0..arch.num_layers() {
        assert!(
            bits(a.weight_vars()[l].as_tensor()) == bits(b.weight_vars()[l].as_tensor()),
            "W_{l}"
        );
        assert!(
            bits(a.bias_vars()[l].as_tensor()) == bits(b.bias_vars()[l].as_tensor()),
            "b_{l}"
        );
        if let (Some(ua), Some(ub)) = (a.state().u.get(l), b.state().u.get(l)) {
            assert!(bits(ua) == bits(ub), "U_{l}");
        }
        assert!(bits(&a.state().v[l]) == bits(&b.state().v[l]), "V_{l}");
    }
    // The model built from the fresh VarMap sees the resumed optimizer's updates.
    let out = candle_nn::Module::forward(&model, &x).unwrap();
    let out_a = Network::of_architecture(&varmap, &arch)
        .unwrap()
        .logits(&x)
        .unwrap();
    assert!(bits(&out) == bits(&out_a));
}

#[test]
fn resume_in_a_fresh_process_is_bit_identical_and_checks_architecture() {
    let dir = common::tempdir();
    let data = common::mnist_dir();
    let data = data.to_str().unwrap();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let base = [
        "train",
        "--data-dir",
        data,
        "--train-limit",
        "300",
        "--hidden",
        "16,12",
        "--eval-every",
        "0",
    ];
    let run = |extra: &[&str]| {
        let out = common::cli(&[&base[..], extra].concat());
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&["--iterations", "3", "--checkpoint", &p("k3.st")]);
    run(&["--iterations", "4", "--checkpoint", &p("k4.st")]);
    run(&[
        "--iterations",
        "1",
        "--resume",
        &p("k3.st"),
        "--checkpoint",
        &p("k3p1.st"),
    ]);
    assert_same_checkpoints(&dir.join("k4.st"), &dir.join("k3p1.st"));

    // A checkpoint of another architecture is refused with a message naming the mismatch,
    // and the file is left untouched.
    let before = std::fs::read(dir.join("k3.st")).unwrap();
    let out = common::cli(&[
        "train",
        "--data-dir",
        data,
        "--train-limit",
        "300",
        "--hidden",
        "16,13",
        "--iterations",
        "1",
        "--resume",
        &p("k3.st"),
        "--checkpoint",
        &p("k3.st"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("architecture mismatch")
            && err.contains("k3.st")
            && err.contains("widths [784, 16, 12, 10] against [784, 16, 13, 10]"),
        "{err}"
    );
    assert_eq!(before, std::fs::read(dir.join("k3.st")).unwrap());

    // Same widths (two blocks of two layers against four single-layer branches): the message
    // names the branches.
    let resnet = |branch: &str, blocks: &str, extra: &[&str]| {
        let args = [
            "train",
            "--data-dir",
            data,
            "--train-limit",
            "300",
            "--arch",
            "resnet",
            "--hidden",
            "8",
            "--residual-layers",
            blocks,
            "--branch",
            branch,
            "--iterations",
            "1",
        ];
        common::cli(&[&args[..], extra].concat())
    };
    let out = resnet("pair", "2", &["--checkpoint", &p("pair.st")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = resnet("single", "4", &["--resume", &p("pair.st")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pair.st") && err.contains("residual branches pair against single"),
        "{err}"
    );

    // So is a lifted state of another sample count.
    let out = common::cli(&[
        "train",
        "--data-dir",
        data,
        "--train-limit",
        "200",
        "--hidden",
        "16,12",
        "--iterations",
        "1",
        "--resume",
        &p("k3.st"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("300 training samples"));
}
