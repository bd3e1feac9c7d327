//! Checkpoints are written atomically: an interrupted or failed save leaves the previous file
//! loadable and unchanged, and a diverging run stops with its reason without overwriting it.

mod common;

use std::time::{Duration, Instant};

use candle_bcd::trainer::{self, NoObserver, TerminationReason, TrainOptions};
use candle_bcd::{checkpoint, Activation, Architecture, BcdConfig, BcdOptimizer, Network};
use candle_core::Device;
use candle_nn::VarMap;
use common::rand_m;

fn small_optimizer(scale: f64) -> (Network, BcdOptimizer) {
    let arch = Architecture::mlp(&[5, 8, 3], Activation::Relu).unwrap();
    let varmap = VarMap::new();
    let model = Network::init(&arch, &varmap, Default::default(), 0, &Device::Cpu).unwrap();
    let x = rand_m(20, 5, 1, scale).to_tensor();
    let y = rand_m(20, 3, 2, 1.0).to_tensor();
    (
        model,
        BcdOptimizer::new(
            &Network::of_architecture(&varmap, &arch).unwrap(),
            x,
            y,
            BcdConfig::default(),
        )
        .unwrap(),
    )
}

#[test]
fn failed_save_keeps_the_previous_checkpoint() {
    let dir = common::tempdir();
    let path = dir.join("ckpt.safetensors");
    let (_, mut opt) = small_optimizer(1.0);
    opt.step().unwrap();
    checkpoint::save(&path, &opt).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Inject a failure: the temporary file's name is taken by a directory.
    let tmp = dir.join(format!(".ckpt.safetensors.tmp.{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    opt.step().unwrap();
    assert!(checkpoint::save(&path, &opt).is_err());
    assert_eq!(before, std::fs::read(&path).unwrap());
    match checkpoint::load(&path, &Device::Cpu).unwrap() {
        checkpoint::Checkpoint::FullBatch(c) => assert_eq!(c.state.iteration, 1),
        other => panic!("expected a full-batch checkpoint, got {other:?}"),
    }
}

#[test]
fn diverging_run_stops_with_reason_and_keeps_checkpoint() {
    let dir = common::tempdir();
    let path = dir.join("good.safetensors");
    std::fs::write(&path, b"last good checkpoint").unwrap();
    // Inputs of 1e25 overflow f32 products: a weight system cannot be factorised.
    let (model, mut opt) = small_optimizer(1e25);
    let mut opts = TrainOptions::default();
    opts.max_iterations = 3;
    opts.eval_every = 0;
    opts.checkpoint = Some(path.clone());
    opts.checkpoint_every = 1;
    let eval = trainer::Evaluation::default();
    let summary = trainer::train(&mut opt, &model, eval, &opts, &mut NoObserver).unwrap();
    match &summary.reason {
        TerminationReason::Diverged(why) => {
            assert!(
                why.contains("singular") || why.contains("not finite"),
                "{why}"
            )
        }
        other => panic!("expected divergence, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"last good checkpoint");
}

#[test]
fn killed_writer_never_leaves_a_broken_checkpoint() {
    let dir = common::tempdir();
    let mnist = common::mnist_dir();
    let ckpt = dir.join("ckpt.safetensors");
    // Saving every sweep, several MB each time: kill -9 the writer at arbitrary moments.
    for round in 0..4u64 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_candle-bcd"))
            .args([
                "train",
                "--data-dir",
                mnist.to_str().unwrap(),
                "--train-limit",
                "3000",
                "--hidden",
                "200,200",
            ])
            .args([
                "--iterations",
                "1000",
                "--eval-every",
                "0",
                "--checkpoint-every",
                "1",
            ])
            .arg("--checkpoint")
            .arg(&ckpt)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !ckpt.exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(150 + 97 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let loaded =
            checkpoint::load(&ckpt, &Device::Cpu).unwrap_or_else(|e| panic!("round {round}: {e}"));
        match loaded {
            checkpoint::Checkpoint::FullBatch(c) => assert!(c.state.iteration >= 1),
            other => panic!("round {round}: expected a full-batch checkpoint, got {other:?}"),
        }
        std::fs::remove_file(&ckpt).unwrap();
    }
}
