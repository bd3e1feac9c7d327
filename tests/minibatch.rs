//! Mini-batch BCD: every batch problem is an instance of the paper's objective, so its exact
//! sweeps never increase it (every formulation, loss, activation and architecture); a run
//! resumed from an epoch-boundary checkpoint continues bit for bit; bad settings are named.

mod common;

use candle_bcd::checkpoint;
use candle_bcd::minibatch::{BatchReport, MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{
    data, Activation, Architecture, BcdConfig, BcdError, Branch, Loss, Network, Splitting,
    WeightInit,
};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

/// Relative increase of `Φ_b` attributed to `f32` round-off (as in `tests/descent.rs`).
const ROUND_OFF: f64 = 1e-6;

/// 600 rows of the MNIST slice, one-hot targets.
fn slice(rows: usize) -> (Tensor, Tensor) {
    let ds = data::take_train(&data::load_idx_dir(&common::mnist_dir()).unwrap(), rows).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    (ds.train_images, y)
}

/// The bits of every weight and bias of `l`.
fn weight_bits(l: &Network) -> Vec<u32> {
    l.weight_vars()
        .iter()
        .chain(l.bias_vars())
        .flat_map(|v| {
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .map(f32::to_bits)
        .collect()
}

/// Asserts that no sweep of a batch raised `Φ_b` beyond round-off (`what` names the run): the
/// batch as a whole and each of its inner sweeps (a later sweep could make up for an earlier
/// rise).
fn assert_batch_fell(r: &BatchReport, what: &str) {
    let (before, after) = (r.before.total(), r.after.total());
    assert!(
        after <= before * (1.0 + ROUND_OFF),
        "{what}: batch {} Φ_b rose from {before} to {after}",
        r.batches
    );
    assert_eq!(r.sweep_totals.last(), Some(&after), "{what}");
    assert!(
        r.least_decrease() >= -ROUND_OFF,
        "{what}: batch {}: a sweep raised Φ_b (before {before}, after each sweep {:?})",
        r.batches,
        r.sweep_totals
    );
}

fn layers(arch: &Architecture, init: WeightInit) -> Network {
    let varmap = VarMap::new();
    Network::init(arch, &varmap, init, 0, &Device::Cpu).unwrap();
    Network::of_architecture(&varmap, arch).unwrap()
}

#[test]
fn batch_objective_never_increases_in_any_formulation() {
    let (x, y) = slice(600);
    let mlp = |act| Architecture::mlp(&[784, 32, 24, 10], act).unwrap();
    let resnet = |act| Architecture::resnet(784, 24, 2, 10, act).unwrap();
    let pair = Architecture::resnet_with(784, 24, 2, Branch::Pair, 10, Activation::Relu).unwrap();
    let three = BcdConfig::default();
    let mut two = BcdConfig::default();
    two.splitting = Splitting::Two;
    let ce = |c: &BcdConfig| c.clone().loss(Loss::CrossEntropy);
    // Ridge on the weights, as the mini-batch preset uses it.
    let ridge = |c: &BcdConfig| c.clone().lambda(0.01);
    let cases = [
        (mlp(Activation::Relu), three.clone()),
        (mlp(Activation::Tanh), ce(&three)),
        (mlp(Activation::Sigmoid), three.clone()),
        (resnet(Activation::Relu), three.clone()),
        (resnet(Activation::LeakyRelu { slope: 0.1 }), ce(&three)),
        (mlp(Activation::Relu), two.clone()),
        (mlp(Activation::Tanh), ce(&two)),
        (resnet(Activation::Relu), two.clone()),
        (mlp(Activation::Relu), ridge(&ce(&three))),
        (resnet(Activation::Relu), ridge(&two)),
        (pair.clone(), ce(&three).penalty_growth(10.0)),
        (pair, ridge(&three)),
    ];
    for (i, (arch, cfg)) in cases.into_iter().enumerate() {
        // Every other case extrapolates: its batches start from moved weights.
        let options = MiniBatchOptions::default()
            .batch_size(200)
            .inner_sweeps(3)
            .seed(i as u64)
            .inertia(if i % 2 == 1 { 0.8 } else { 0.0 });
        let mut bcd =
            MiniBatchBcd::new(&layers(&arch, WeightInit::Kaiming), cfg.clone(), options).unwrap();
        let mut seen = 0;
        bcd.epoch(&x, &y, |r| {
            seen += 1;
            assert_eq!(r.rows, 200);
            assert_eq!(r.sweep_totals.len(), 3, "case {i}");
            assert_batch_fell(r, &format!("case {i} {cfg:?}"));
            assert!(
                r.after.total() < r.before.total(),
                "case {i}: batch {} made no progress",
                r.batches
            );
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, 3, "case {i}");
    }
}

#[test]
fn batches_follow_a_seeded_order_and_resume_bit_for_bit() {
    let (x, y) = slice(500);
    let arch = Architecture::mlp(&[784, 24, 10], Activation::Relu).unwrap();
    // With Gram memory and inertia, so that the checkpoint must carry the decayed normal sums
    // and the previous weights too.
    let options = MiniBatchOptions::default()
        .batch_size(128)
        .inner_sweeps(2)
        .seed(7)
        .gram_decay(0.5)
        .inertia(0.7);
    let cfg = BcdConfig::default();

    // Two epochs in one go.
    let straight = layers(&arch, WeightInit::Official);
    let mut a = MiniBatchBcd::new(&straight, cfg.clone(), options.clone()).unwrap();
    assert_eq!(a.row_order(0, 500), a.row_order(0, 500));
    assert_ne!(a.row_order(0, 500), a.row_order(1, 500));
    for _ in 0..2 {
        a.epoch(&x, &y, |_| Ok(())).unwrap();
    }
    assert_eq!((a.epochs_done(), a.batches_done()), (2, 8));

    // One epoch, a checkpoint, a fresh VarMap, the second epoch.
    let first = layers(&arch, WeightInit::Official);
    let mut b = MiniBatchBcd::new(&first, cfg, options).unwrap();
    b.epoch(&x, &y, |_| Ok(())).unwrap();
    let dir = common::tempdir();
    let path = dir.join("mb.safetensors");
    checkpoint::save_minibatch(&path, &b).unwrap();
    let checkpoint::Checkpoint::MiniBatch(ckpt) = checkpoint::load(&path, &Device::Cpu).unwrap()
    else {
        panic!("a mini-batch checkpoint loaded as another kind");
    };
    let progress = ckpt.progress.clone();
    assert_eq!((progress.epochs, progress.batches), (1, 4));
    let resumed = ckpt.model.network(&VarMap::new()).unwrap();
    assert_eq!(resumed.architecture(), &arch);
    assert_eq!(progress.memory.len(), 2, "one memory entry per layer");
    assert!(
        progress.memory == b.memory(),
        "memory changed through the checkpoint"
    );
    assert_eq!(
        progress.previous.len(),
        2,
        "one previous weight pair per layer"
    );
    let mut c = MiniBatchBcd::new(&resumed, ckpt.model.config.clone(), progress.options)
        .unwrap()
        .resume_at(progress.epochs, progress.batches)
        .with_memory(progress.memory)
        .unwrap()
        .with_previous_weights(progress.previous)
        .unwrap();
    c.epoch(&x, &y, |_| Ok(())).unwrap();
    assert_eq!(c.batches_done(), 8);
    assert!(
        weight_bits(&straight) == weight_bits(&resumed),
        "resumed weights differ"
    );
}

#[test]
fn invalid_settings_are_named() {
    let arch = Architecture::mlp(&[4, 3, 2], Activation::Relu).unwrap();
    let l = layers(&arch, WeightInit::Official);
    for (options, name) in [
        (MiniBatchOptions::default().batch_size(0), "batch_size"),
        (MiniBatchOptions::default().inner_sweeps(0), "inner_sweeps"),
        (MiniBatchOptions::default().gram_decay(1.0), "gram_decay"),
        (MiniBatchOptions::default().inertia(-0.1), "inertia"),
        (
            MiniBatchOptions::default().alpha_growth(0.0),
            "alpha_growth",
        ),
        (
            MiniBatchOptions::default().alpha_growth(f64::NAN),
            "alpha_growth",
        ),
    ] {
        match MiniBatchBcd::new(&l, BcdConfig::default(), options) {
            Err(BcdError::InvalidHyperparameter { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: expected an invalid-setting error, got {other:?}"),
        }
    }
}

#[test]
fn cli_minibatch_trains_resumes_exactly_and_refuses_mixed_checkpoints() {
    let dir = common::tempdir();
    let mnist = common::mnist_dir();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let base = [
        "train",
        "--data-dir",
        mnist.to_str().unwrap(),
        "--train-limit",
        "600",
        "--hidden",
        "32",
        "--batch-size",
        "150",
        "--inner-sweeps",
        "2",
        "--inertia",
        "0.5",
        "--alpha-growth",
        "3",
    ];
    let run = |extra: &[&str]| common::cli_ok(&base, extra);
    let straight = run(&["--epochs", "2", "--checkpoint", &p("a.safetensors")]);
    let metrics = p("m.jsonl");
    run(&["--epochs", "1", "--checkpoint", &p("b.safetensors")]);
    run(&[
        "--epochs",
        "1",
        "--checkpoint",
        &p("m.safetensors"),
        "--metrics",
        &metrics,
    ]);
    let resumed = run(&[
        "--epochs",
        "1",
        "--resume",
        &p("b.safetensors"),
        "--checkpoint",
        &p("b.safetensors"),
    ]);
    let last = |s: &str| s.lines().last().unwrap().to_string();
    assert_eq!(last(&straight), last(&resumed));
    assert!(
        last(&straight).starts_with("test accuracy: 0."),
        "{straight}"
    );
    let weights = |n: &str| {
        let path = p(n);
        let checkpoint::Checkpoint::MiniBatch(c) =
            checkpoint::load(path.as_ref(), &Device::Cpu).unwrap()
        else {
            panic!("{n}: not a mini-batch checkpoint");
        };
        let mut w: Vec<(String, Vec<u32>)> = c
            .model
            .weights
            .iter()
            .map(|(k, t)| {
                let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                (k.clone(), v.into_iter().map(f32::to_bits).collect())
            })
            .collect();
        w.sort();
        (w, c.progress)
    };
    assert!(
        weights("a.safetensors") == weights("b.safetensors"),
        "checkpoints differ"
    );
    // The metrics file has one line per batch with its epoch and the batches done; the last
    // batch of the epoch carries the test and training accuracies, which are those of the
    // weights the epoch's checkpoint holds (the metrics run wrote `m.safetensors`).
    let text = std::fs::read_to_string(&metrics).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (b, line) in lines.iter().enumerate() {
        assert_eq!(line["epoch"], 1);
        assert_eq!(line["batches"], b + 1);
    }
    let end = &lines[3];
    let net = candle_bcd::Network::from_file(p("m.safetensors").as_ref(), &Device::Cpu).unwrap();
    let ds = data::take_train(&data::load_idx_dir(&mnist).unwrap(), 600).unwrap();
    let test = net.accuracy(&ds.test_images, &ds.test_labels).unwrap();
    let train = net.accuracy(&ds.train_images, &ds.train_labels).unwrap();
    assert!(
        (end["test_accuracy"].as_f64().unwrap() - test).abs() < 1e-12,
        "{end}"
    );
    assert!(
        (end["train_accuracy"].as_f64().unwrap() - train).abs() < 1e-12,
        "{end}"
    );
    // One epoch of 4 batches of 150 rows lifts the 784-32-10 network well above chance
    // (measured 0.522 test; chance is 0.1, the official initialisation scores about that).
    assert!(test > 0.35, "test accuracy {test} after one epoch");

    // A full-batch checkpoint is not resumed as a mini-batch run.
    // The same data and network as `base`, without its mini-batch flags.
    let full_batch = &base[..7];
    let full = p("full.safetensors");
    common::cli_ok(full_batch, &["--iterations", "1", "--checkpoint", &full]);
    let out = common::cli(&[&base[..], &["--resume", &full]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("full.safetensors") && err.contains("full-batch"),
        "{err}"
    );
}

/// The weight blocks add `β·G` of the memory `G`: decay 0.5 with memory `S` and decay 0.25 with
/// memory `2S` give bit-identical weights on the next batch (both priors are exactly `0.5·S`),
/// and a run without memory gives other weights.
#[test]
fn gram_memory_enters_the_weight_blocks_scaled_by_its_decay() {
    let (x, y) = slice(400);
    let arch = Architecture::mlp(&[784, 24, 10], Activation::Relu).unwrap();
    let rows = |from: usize| {
        (
            x.narrow(0, from, 200).unwrap(),
            y.narrow(0, from, 200).unwrap(),
        )
    };
    let run = |decay: f64, double_memory: bool| -> Vec<u32> {
        let l = layers(&arch, WeightInit::Official);
        let mut options = MiniBatchOptions::default();
        options.gram_decay = decay;
        let mut bcd = MiniBatchBcd::new(&l, BcdConfig::default(), options).unwrap();
        let (xa, ya) = rows(0);
        bcd.step_batch(xa, ya).unwrap();
        if double_memory {
            let mut memory = bcd.memory().to_vec();
            for m in memory.iter_mut().flatten() {
                let copy = m.clone();
                m.decay_add(1.0, &copy);
            }
            bcd = bcd.with_memory(memory).unwrap();
        }
        let (xb, yb) = rows(200);
        bcd.step_batch(xb, yb).unwrap();
        weight_bits(&l)
    };
    let half = run(0.5, false);
    assert!(half == run(0.25, true), "the prior is not β·memory");
    assert!(half != run(0.0, false), "the memory changed nothing");
}

/// With `alpha_growth = g` the second epoch is the first's run continued with the weight blocks'
/// `α` times `g` and the lifted blocks' proximal weight at the first's: a run built that way
/// by hand (resumed at the epoch boundary with the inertia's record) ends with the same bits,
/// every batch's `Φ_b` falls, and a run without the growth ends elsewhere.
#[test]
fn alpha_growth_runs_each_epoch_with_its_own_alpha() {
    let (x, y) = slice(600);
    let arch = Architecture::mlp(&[784, 24, 10], Activation::Relu).unwrap();
    let (alpha, g) = (0.5, 8.0);
    let config = BcdConfig::default()
        .alpha(alpha)
        .loss(Loss::CrossEntropy)
        .lambda(0.01);
    let options = MiniBatchOptions::default().batch_size(200).inertia(0.5);
    let check = |r: &BatchReport| {
        assert_batch_fell(r, "step decay");
        Ok(())
    };
    let grown = layers(&arch, WeightInit::Kaiming);
    let mut a = MiniBatchBcd::new(&grown, config.clone(), options.clone().alpha_growth(g)).unwrap();
    assert_eq!(a.epoch_config().alpha, alpha);
    a.epoch(&x, &y, check).unwrap();
    assert_eq!(a.epoch_config().alpha, alpha * g);
    assert_eq!(a.epoch_config().alpha_lifted, Some(alpha));
    a.epoch(&x, &y, check).unwrap();

    let by_hand = layers(&arch, WeightInit::Kaiming);
    let mut first = MiniBatchBcd::new(&by_hand, config.clone(), options.clone()).unwrap();
    first.epoch(&x, &y, check).unwrap();
    let second_config = config.clone().alpha(alpha * g).alpha_lifted(Some(alpha));
    let previous = first.previous_weights().unwrap().to_vec();
    let mut second = MiniBatchBcd::new(&by_hand, second_config, options.clone())
        .unwrap()
        .resume_at(first.epochs_done(), first.batches_done())
        .with_previous_weights(previous)
        .unwrap();
    second.epoch(&x, &y, check).unwrap();
    assert!(
        weight_bits(&grown) == weight_bits(&by_hand),
        "growth run differs from the hand-built one"
    );

    let plain = layers(&arch, WeightInit::Kaiming);
    let mut c = MiniBatchBcd::new(&plain, config, options).unwrap();
    c.epoch(&x, &y, check).unwrap();
    c.epoch(&x, &y, check).unwrap();
    assert!(
        weight_bits(&grown) != weight_bits(&plain),
        "the growth changed nothing"
    );

    // Grown past the range of an f64 by the third epoch: the batch is refused, naming α.
    let huge = MiniBatchOptions::default().alpha_growth(1e300);
    let mut d = MiniBatchBcd::new(&plain, BcdConfig::default(), huge)
        .unwrap()
        .resume_at(2, 0);
    let before = weight_bits(&plain);
    match d.step_batch(x.narrow(0, 0, 200).unwrap(), y.narrow(0, 0, 200).unwrap()) {
        Err(BcdError::InvalidHyperparameter { name, .. }) => assert_eq!(name, "alpha"),
        other => panic!("expected an invalid-setting error, got {other:?}"),
    }
    assert!(
        weight_bits(&plain) == before,
        "a refused batch moved the weights"
    );
}

/// With inertia `μ` the third batch starts from `W₂ + μ(W₂ − W₁)`: the same three batches run
/// without inertia, the weights moved by hand (in `f64`) before the second and third, end at
/// the same weights to round-off; without the move they end elsewhere.
#[test]
fn inertia_starts_each_batch_from_the_extrapolated_weights() {
    let (x, y) = slice(600);
    let arch = Architecture::mlp(&[784, 24, 10], Activation::Relu).unwrap();
    let batch = |b: usize| {
        (
            x.narrow(0, 200 * b, 200).unwrap(),
            y.narrow(0, 200 * b, 200).unwrap(),
        )
    };
    let mu = 0.6;
    let all = |l: &Network| -> Vec<Vec<f64>> {
        let params = l.weight_vars().iter().chain(l.bias_vars());
        params
            .map(|v| {
                let t = v.as_tensor().flatten_all().unwrap();
                let t = t.to_dtype(candle_core::DType::F64).unwrap();
                t.to_vec1::<f64>().unwrap()
            })
            .collect()
    };
    let inertial = layers(&arch, WeightInit::Kaiming);
    let mut options = MiniBatchOptions::default();
    options.inertia = mu;
    let mut a = MiniBatchBcd::new(&inertial, BcdConfig::default(), options).unwrap();
    for b in 0..3 {
        let (xb, yb) = batch(b);
        a.step_batch(xb, yb).unwrap();
    }

    let run_by_hand = |extrapolate: bool| -> Vec<Vec<f64>> {
        let l = layers(&arch, WeightInit::Kaiming);
        let mut bcd =
            MiniBatchBcd::new(&l, BcdConfig::default(), MiniBatchOptions::default()).unwrap();
        let mut previous = all(&l);
        for b in 0..3 {
            let current = all(&l);
            if extrapolate && b > 0 {
                let params = l.weight_vars().iter().chain(l.bias_vars());
                for ((var, now), before) in params.zip(&current).zip(&previous) {
                    let moved: Vec<f32> = now
                        .iter()
                        .zip(before)
                        .map(|(n, p)| (n + mu * (n - p)) as f32)
                        .collect();
                    let t = Tensor::from_vec(moved, var.as_tensor().dims(), &Device::Cpu).unwrap();
                    var.set(&t).unwrap();
                }
            }
            previous = current;
            let (xb, yb) = batch(b);
            bcd.step_batch(xb, yb).unwrap();
        }
        all(&l)
    };
    let gap = |p: &[Vec<f64>], q: &[Vec<f64>]| -> f64 {
        let (mut d, mut n) = (0.0, 0.0);
        for (u, v) in p.iter().zip(q) {
            for (a, b) in u.iter().zip(v) {
                d += (a - b) * (a - b);
                n += b * b;
            }
        }
        (d / n).sqrt()
    };
    let got = all(&inertial);
    let by_hand = gap(&got, &run_by_hand(true));
    let without = gap(&got, &run_by_hand(false));
    assert!(by_hand < 1e-5, "inertial run vs hand-moved run: {by_hand}");
    assert!(without > 1e-3, "inertia changed little: {without}");
    assert!(a.previous_weights().is_some());
}

/// On the full MNIST (skipped without it, see `common`), inertia is what lets one epoch of
/// mini-batch BCD improve on its start: 784-100-100-10, Kaiming initialisation, head fitted by
/// ridge least squares, the mini-batch preset's settings (cross-entropy, γ = ρ = 0.1, α = 1,
/// B = 1024). Measured: 0.8447 test accuracy with μ = 0.9 against 0.8032 without; no batch's
/// `Φ_b` rose in either.
#[test]
fn inertia_lets_one_epoch_learn_on_full_mnist() {
    let Some(dir) = common::full_mnist("inertia_lets_one_epoch_learn_on_full_mnist") else {
        return;
    };
    let ds = data::load_idx_dir(&dir).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let arch = Architecture::mlp(&[784, 100, 100, 10], Activation::Relu).unwrap();
    let mut config = BcdConfig::default();
    config.loss = Loss::CrossEntropy;
    config.gamma = 0.1;
    config.rho = 0.1;
    config.alpha = 1.0;
    let accuracy_after_one_epoch = |inertia: f64| -> f64 {
        let varmap = VarMap::new();
        let net = Network::init(&arch, &varmap, WeightInit::Kaiming, 0, &Device::Cpu).unwrap();
        net.fit_head(&ds.train_images, &y, 1.0).unwrap();
        let layers = Network::of_architecture(&varmap, &arch).unwrap();
        let mut options = MiniBatchOptions::default();
        options.batch_size = 1024;
        options.inertia = inertia;
        let mut bcd = MiniBatchBcd::new(&layers, config.clone(), options).unwrap();
        bcd.epoch(&ds.train_images, &y, |r| {
            assert_batch_fell(r, &format!("μ = {inertia}"));
            Ok(())
        })
        .unwrap();
        net.accuracy(&ds.test_images, &ds.test_labels).unwrap()
    };
    let (without, with) = (accuracy_after_one_epoch(0.0), accuracy_after_one_epoch(0.9));
    assert!(with > 0.83, "test accuracy {with} with inertia 0.9");
    assert!(
        with > without + 0.02,
        "inertia 0.9 gave {with}, none {without}"
    );
}

/// The mini-batch CLI runs through the same training loop as full-batch runs: its metrics file
/// goes into a directory made for it, `--time-limit` stops it after the step that passes the
/// limit, `--plot` draws its curves, and a flag only full-batch runs honour is refused by name
/// (and the other way round) instead of being ignored.
#[test]
fn cli_minibatch_honours_the_loop_flags_and_refuses_the_others() {
    let dir = common::tempdir();
    let mnist = common::mnist_dir();
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let base = [
        "train",
        "--data-dir",
        mnist.to_str().unwrap(),
        "--train-limit",
        "300",
        "--hidden",
        "16",
    ];
    let metrics = p("new/sub/m.jsonl");
    let out = common::cli_ok(
        &base,
        &[
            "--batch-size",
            "100",
            "--epochs",
            "2",
            "--metrics",
            &metrics,
            "--plot",
            &p("plots"),
            "--time-limit",
            "0",
        ],
    );
    assert!(out.contains("stopped at the time limit"), "{out}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(text.lines().count(), 1, "one batch ran: {text}");
    let svgs = std::fs::read_dir(p("plots"))
        .unwrap()
        .filter(|e| {
            let path = e.as_ref().unwrap().path();
            path.extension().is_some_and(|x| x == "svg")
        })
        .count();
    assert!(svgs > 0, "no plots written");
    let refused = |extra: &[&str], flag: &str| {
        let out = common::cli(&[&base[..], extra].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(err.contains(flag), "{extra:?}: {err}");
    };
    refused(
        &["--batch-size", "100", "--iterations", "3"],
        "--iterations",
    );
    refused(
        &["--batch-size", "100", "--tolerance", "0.1"],
        "--tolerance",
    );
    refused(&["--batch-size", "100", "--low-memory"], "--low-memory");
    refused(&["--epochs", "2"], "--epochs");
    refused(&["--inertia", "0.5"], "--inertia");
    refused(&["--alpha-growth", "10"], "--alpha-growth");
}
