//! Data-parallel runs under `mpirun` (feature `mpi`; needs an MPI library and `mpirun`).
//!
//! The tests start `mpirun -n P` on this test binary's `rank_worker` (ignored when run
//! directly) or on the `candle-bcd` binary, on the real MNIST slice, and check:
//!
//! - after 5 sweeps on 2 and 3 ranks (1,000 rows: 3 does not divide them) `Φ` after every sweep
//!   equals that of a one-process run to ≤ 1e-6 relative, and every weight matrix and bias to
//!   `‖ΔW‖/‖W‖ ≤ max(1e-5, 2·floor)`, for the three- and two-splitting and a ResNet. The floor
//!   is how far the same one-process run moves when only the order of its rows is reversed
//!   (the `f32` sums over rows are rounded differently, as they are when the rows are split):
//!   3e-5 to 1.3e-4 on these cases, so a split run cannot be asked to be closer. The
//!   one-process runs happen inside rank 0;
//! - after every sweep all ranks hold bit-identical weights (rank 0's bits are broadcast and
//!   compared on every rank);
//! - a checkpoint written by 2 ranks resumes on 2 ranks to the iterates of an uninterrupted
//!   run, and re-shards on 3 ranks and in one process (the next sweep's `Φ` as on 2 ranks); a
//!   missing rank file is named in the error;
//! - a truncated share of the data or a killed rank ends every rank with a non-zero exit;
//! - mini-batch BCD over 2 and 3 ranks: every batch's objective (summed over the ranks) does not
//!   increase, the batches of an epoch cover each row once, the weights stay bit-identical
//!   across ranks, and a 2-rank mini-batch checkpoint resumes bit for bit.
#![cfg(feature = "mpi")]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_bcd::comm::{Communicator, Mpi, SingleProcess};
use candle_bcd::data::{self, DatasetKind};
use candle_bcd::minibatch::{MiniBatchBcd, MiniBatchOptions};
use candle_bcd::{
    Activation, Architecture, BcdConfig, BcdOptimizer, Network, Splitting, WeightInit,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

/// Training rows of the comparisons (not divisible by 3).
const ROWS: usize = 1000;
/// Sweeps compared.
const SWEEPS: usize = 5;

/// `mpirun` with what Open MPI needs in a container (running as root, more ranks than cores).
fn mpirun(ranks: usize) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &ranks.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd` to its end, failing the test if it takes longer than `limit` (a hang).
fn finish(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .spawn()
        .expect("mpirun must be installed for the mpi tests");
    let pid = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("mpirun did not end within {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    waiter.join().unwrap().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The network of each compared case.
fn case(name: &str) -> (Architecture, BcdConfig) {
    let mlp = Architecture::mlp(&[784, 48, 32, 10], Activation::Relu).unwrap();
    match name {
        "three" => (mlp, BcdConfig::default()),
        "two" => (mlp, BcdConfig::default().splitting(Splitting::Two)),
        // With layer weights and unanchored lifted blocks.
        "resnet" => (
            Architecture::resnet(784, 40, 2, 10, Activation::Relu).unwrap(),
            BcdConfig::default()
                .penalty_growth(10.0)
                .alpha_lifted(Some(0.0)),
        ),
        "pair" => (
            Architecture::resnet_with(784, 40, 2, candle_bcd::Branch::Pair, 10, Activation::Relu)
                .unwrap(),
            BcdConfig::default().penalty_growth(10.0),
        ),
        "cnn" => (
            common::small_cnn(candle_bcd::Image::new(1, 28, 28), 10, Activation::Relu),
            BcdConfig::default(),
        ),
        // A basic block of two convolutions.
        "conv-pair" => (
            Architecture::conv_resnet_with(
                candle_bcd::Image::new(1, 28, 28),
                4,
                1,
                candle_bcd::Branch::Pair,
                4,
                10,
                Activation::Relu,
            )
            .unwrap(),
            BcdConfig::default().penalty_growth(10.0),
        ),
        other => panic!("unknown case {other}"),
    }
}

/// An optimizer for `arch` on `x`, `y` over `comm`, from the seed-0 initialisation.
fn optimizer(
    arch: &Architecture,
    cfg: &BcdConfig,
    x: Tensor,
    y: Tensor,
    comm: Arc<dyn Communicator>,
) -> BcdOptimizer {
    let varmap = VarMap::new();
    Network::init(arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
    let layers = Network::of_architecture(&varmap, arch).unwrap();
    BcdOptimizer::new_distributed(&layers, x, y, cfg.clone(), comm).unwrap()
}

/// One rank of a comparison (started by `distributed_sweeps_match_one_process`): the case
/// named by `BCD_MPI_CASE` on this rank's share of the slice; rank 0 also runs it in one
/// process and compares.
#[test]
#[ignore = "one rank of an MPI job; started under mpirun by the tests of this file"]
fn rank_worker() {
    let name = std::env::var("BCD_MPI_CASE").unwrap();
    let comm: Arc<dyn Communicator> = Arc::new(Mpi::init().unwrap());
    if name == "minibatch" {
        return minibatch_rank(comm);
    }
    let (arch, cfg) = case(&name);
    let dir = common::mnist_dir();
    // One process on all rows, in their order or reversed: the objectives and weights.
    let one_process = |reversed: bool| {
        let ds = data::take_train(&data::load_idx_dir(&dir).unwrap(), ROWS).unwrap();
        let (mut x, mut y) = (
            ds.train_images,
            data::one_hot(&ds.train_labels, 10).unwrap(),
        );
        if reversed {
            (x, y) = (common::reversed_rows(&x), common::reversed_rows(&y));
        }
        let mut opt = optimizer(&arch, &cfg, x, y, Arc::new(SingleProcess));
        let objectives: Vec<f64> = (0..SWEEPS)
            .map(|_| opt.step().unwrap().objective.total())
            .collect();
        (objectives, common::layer_weights(opt.layers()))
    };
    let reference = (comm.rank() == 0).then(|| {
        let (objectives, weights) = one_process(false);
        let floor = common::max_rel_diff(&one_process(true).1, &weights);
        (objectives, weights, floor)
    });

    let ds = data::load_share(DatasetKind::Mnist, Some(&dir), Some(ROWS), &*comm).unwrap();
    let share = candle_bcd::comm::share(ROWS, comm.rank(), comm.size());
    assert_eq!(ds.train_images.dim(0).unwrap(), share.len());
    let y = data::one_hot(&ds.train_labels, ds.labels).unwrap();
    let mut opt = optimizer(&arch, &cfg, ds.train_images, y, comm.clone());
    assert_eq!(opt.num_samples(), ROWS);
    let mut objectives = Vec::new();
    for sweep in 1..=SWEEPS {
        objectives.push(opt.step().unwrap().objective.total());
        assert_same_weights(opt.layers(), &*comm, &format!("sweep {sweep}"));
    }
    if let Some((ref_objectives, ref_weights, floor)) = reference {
        for (k, (a, b)) in objectives.iter().zip(&ref_objectives).enumerate() {
            let rel = (a - b).abs() / b.abs();
            assert!(
                rel <= 1e-6,
                "Φ after sweep {}: {a} vs {b} ({rel:.2e})",
                k + 1
            );
        }
        let rel = common::max_rel_diff(&common::layer_weights(opt.layers()), &ref_weights);
        let bound = f64::max(1e-5, 2.0 * floor);
        assert!(
            rel <= bound,
            "weights after {SWEEPS} sweeps: {rel:.2e} (rows reversed in one process: {floor:.2e})"
        );
        println!(
            "{} ranks: Φ {:.6e} (one process {:.6e}), weights {rel:.2e} relative \
             (rows reversed in one process: {floor:.2e})",
            comm.size(),
            objectives[SWEEPS - 1],
            ref_objectives[SWEEPS - 1]
        );
    }
}

/// Asserts that every rank holds rank 0's weights, bit for bit.
fn assert_same_weights(layers: &Network, comm: &dyn Communicator, when: &str) {
    let mine: Vec<f32> = common::layer_weights(layers).concat();
    let mut root = mine.clone();
    comm.broadcast_f32(&mut root);
    let differ = mine
        .iter()
        .zip(&root)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    let mut all = [differ as f64];
    comm.sum_f64(&mut all);
    assert_eq!(all[0], 0.0, "{when}: weights differ between ranks");
}

/// One rank of the mini-batch check: two epochs in batches of 150 of the 1,000 rows.
fn minibatch_rank(comm: Arc<dyn Communicator>) {
    let (arch, cfg) = case("three");
    let dir = common::mnist_dir();
    let ds = data::load_share(DatasetKind::Mnist, Some(&dir), Some(ROWS), &*comm).unwrap();
    let y = data::one_hot(&ds.train_labels, ds.labels).unwrap();
    let varmap = VarMap::new();
    // A different seed per rank: the run must start from rank 0's weights anyway.
    let seed = comm.rank() as u64;
    Network::init(&arch, &varmap, WeightInit::Official, seed, &Device::Cpu).unwrap();
    let layers = Network::of_architecture(&varmap, &arch).unwrap();
    // With inertia: every rank extrapolates its own copy of the weights, which must stay
    // identical.
    let mut options = MiniBatchOptions::default();
    options.batch_size = 150;
    options.inner_sweeps = 2;
    options.inertia = 0.8;
    let mut bcd = MiniBatchBcd::new(&layers, cfg, options)
        .unwrap()
        .with_communicator(comm.clone())
        .unwrap();
    for epoch in 0..2 {
        let mut rows = 0;
        bcd.epoch(&ds.train_images, &y, |r| {
            let (before, after) = (r.before.total(), r.after.total());
            assert!(
                after <= before * (1.0 + 1e-6),
                "batch {}: {before} -> {after}",
                r.batches
            );
            // Each of the batch's two sweeps too, not only the batch as a whole.
            assert!(
                r.least_decrease() >= -1e-6,
                "batch {}: {} -> {:?}",
                r.batches,
                r.before.total(),
                r.sweep_totals
            );
            rows += r.rows;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            rows, ROWS,
            "epoch {epoch}: the batches do not cover the rows once"
        );
        assert_same_weights(&layers, &*comm, &format!("epoch {epoch}"));
    }
    assert_eq!(bcd.batches_done(), 2 * ROWS.div_ceil(150));
    if comm.rank() == 0 {
        println!("{} ranks: mini-batch checked", comm.size());
    }
}

/// Runs `rank_worker` on `ranks` ranks for the case `name`; rank 0 prints `{ranks} ranks: …`.
fn run_worker(name: &str, ranks: usize) {
    let mut cmd = mpirun(ranks);
    cmd.env("BCD_MPI_CASE", name)
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "rank_worker", "--nocapture"]);
    let out = finish(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{name} on {ranks} ranks: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{ranks} ranks: ")),
        "{name} on {ranks} ranks: rank 0 did not finish its checks: {}",
        text(&out)
    );
}

#[test]
fn distributed_sweeps_match_one_process() {
    for ranks in [2, 3] {
        for name in ["three", "two", "resnet", "pair", "cnn", "conv-pair"] {
            run_worker(name, ranks);
        }
    }
}

#[test]
fn mini_batches_over_ranks_descend_and_stay_in_step() {
    for ranks in [2, 3] {
        run_worker("minibatch", ranks);
    }
}

#[test]
fn a_mini_batch_checkpoint_of_two_ranks_resumes_bit_for_bit() {
    let dir = common::tempdir();
    let ok = |out: Output| assert!(out.status.success(), "{}", text(&out));
    let base = [
        "--batch-size",
        "100",
        "--gram-decay",
        "0.5",
        "--inertia",
        "0.5",
        "--alpha",
        "0.5",
    ];
    let run = |extra: &[&str]| train_on(2, &dir, &[&base[..], extra].concat());
    ok(run(&[
        "--epochs",
        "2",
        "--checkpoint",
        "{dir}/straight.safetensors",
    ]));
    ok(run(&[
        "--epochs",
        "1",
        "--checkpoint",
        "{dir}/first.safetensors",
    ]));
    ok(run(&[
        "--epochs",
        "1",
        "--resume",
        "{dir}/first.safetensors",
        "--checkpoint",
        "{dir}/resumed.safetensors",
    ]));
    let (a, b) = (
        tensors(&dir.join("straight.safetensors")),
        tensors(&dir.join("resumed.safetensors")),
    );
    assert!(a.iter().any(|(k, _)| k.starts_with("memory.")));
    assert_eq!(a, b);
}

/// `candle-bcd train` on the first 600 rows of the slice, a small MLP, one thread per rank.
fn train_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        env!("CARGO_BIN_EXE_candle-bcd"),
        "train",
        "--data-dir",
        common::mnist_dir().to_str().unwrap(),
        "--train-limit",
        "600",
        "--hidden",
        "32,32",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(
        extra
            .iter()
            .map(|s| s.replace("{dir}", dir.to_str().unwrap())),
    );
    args
}

fn train_on(ranks: usize, dir: &Path, extra: &[&str]) -> Output {
    let mut cmd = mpirun(ranks);
    cmd.args(train_args(dir, extra));
    finish(cmd, Duration::from_secs(300))
}

/// The tensors of a safetensors file by name, as `f32` values.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut t: Vec<_> = candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let v = v.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
            (k, v.to_vec1::<f32>().unwrap())
        })
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn a_checkpoint_of_two_ranks_resumes_and_reshards() {
    let dir = common::tempdir();
    let ok = |out: Output| assert!(out.status.success(), "{}", text(&out));
    ok(train_on(
        2,
        &dir,
        &[
            "--iterations",
            "4",
            "--checkpoint",
            "{dir}/full.safetensors",
            "--metrics",
            "{dir}/full.jsonl",
        ],
    ));
    ok(train_on(
        2,
        &dir,
        &[
            "--iterations",
            "2",
            "--checkpoint",
            "{dir}/half.safetensors",
        ],
    ));
    ok(train_on(
        2,
        &dir,
        &[
            "--iterations",
            "2",
            "--resume",
            "{dir}/half.safetensors",
            "--checkpoint",
            "{dir}/resumed.safetensors",
        ],
    ));
    // Weights (main file) and each rank's lifted rows (rank files) match bit for bit.
    let pairs = [
        ("full.safetensors", "resumed.safetensors"),
        (
            "full.it4.rank0-of-2.safetensors",
            "resumed.it4.rank0-of-2.safetensors",
        ),
        (
            "full.it4.rank1-of-2.safetensors",
            "resumed.it4.rank1-of-2.safetensors",
        ),
    ];
    for (a, b) in pairs {
        let (a, b) = (tensors(&dir.join(a)), tensors(&dir.join(b)));
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }
    // 600 rows: 300 per rank.
    let v = tensors(&dir.join("full.it4.rank1-of-2.safetensors"));
    let v0 = v.iter().find(|(k, _)| k == "lifted.v.0").unwrap();
    assert_eq!(v0.1.len(), 300 * 32);
    // Metrics come from rank 0 only: one line per sweep.
    let metrics = std::fs::read_to_string(dir.join("full.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);

    // On another number of ranks, or in one process, the checkpoint is re-sharded: the next
    // sweep's objective is the 2-rank continuation's up to round-off.
    let next = |ranks: usize, name: &str, from: &str| -> f64 {
        let metrics = format!("{{dir}}/{name}.jsonl");
        let checkpoint = format!("{{dir}}/{from}.safetensors");
        let resume = [
            "--iterations",
            "1",
            "--resume",
            &checkpoint,
            "--metrics",
            &metrics,
        ];
        let out = match ranks {
            1 => {
                let args = train_args(&dir, &resume);
                Command::new(&args[0]).args(&args[1..]).output().unwrap()
            }
            _ => train_on(ranks, &dir, &resume),
        };
        assert!(out.status.success(), "{ranks} ranks: {}", text(&out));
        let line = std::fs::read_to_string(dir.join(format!("{name}.jsonl"))).unwrap();
        let line: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
        assert_eq!(line["iteration"], 5);
        line["objective"].as_f64().unwrap()
    };
    let two = next(2, "two", "full");
    for (ranks, name) in [(3, "three"), (1, "one")] {
        let phi = next(ranks, name, "full");
        assert!(
            (phi - two).abs() <= 1e-6 * two,
            "{ranks} ranks: Φ {phi} vs {two}"
        );
    }
    // And a one-process checkpoint on 2 ranks.
    let single = [
        "--iterations",
        "4",
        "--checkpoint",
        "{dir}/single.safetensors",
    ];
    let args = train_args(&dir, &single);
    let out = Command::new(&args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (one, two) = (
        next(1, "single-one", "single"),
        next(2, "single-two", "single"),
    );
    assert!(
        (one - two).abs() <= 1e-6 * one,
        "2 ranks from one process: Φ {two} vs {one}"
    );
    // A rank file that is gone is named in the error of every rank that needs it.
    std::fs::remove_file(dir.join("full.it4.rank1-of-2.safetensors")).unwrap();
    let resume = ["--iterations", "1", "--resume", "{dir}/full.safetensors"];
    let out = train_on(3, &dir, &resume);
    let err = String::from_utf8_lossy(&out.stderr);
    let named = err.contains("full.it4.rank1-of-2.safetensors");
    assert!(!out.status.success() && named, "{}", text(&out));
}

/// A copy of the slice whose training images end half-way through rank 1's share.
fn truncated_slice(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(common::mnist_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gz") {
            std::fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
        }
    }
    let gz = data.join("train-images-idx3-ubyte.gz");
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()),
        &mut raw,
    )
    .unwrap();
    std::fs::remove_file(&gz).unwrap();
    // Header (16 bytes), then 450 of the 600 rows used: rank 1 holds rows 300..600.
    raw.truncate(16 + 450 * 784);
    std::fs::write(data.join("train-images-idx3-ubyte"), raw).unwrap();
    data
}

#[test]
fn a_truncated_share_ends_every_rank() {
    let dir = common::tempdir();
    let data = truncated_slice(&dir);
    let mut args = train_args(&dir, &["--iterations", "2"]);
    args[3] = data.to_str().unwrap().to_string();
    let mut cmd = mpirun(2);
    cmd.args(&args);
    let out = finish(cmd, Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        err.contains("rank 1 of 2") && err.contains("train-images-idx3-ubyte"),
        "{}",
        text(&out)
    );
}

/// The pids of the `candle-bcd` ranks whose command line mentions `token`.
fn rank_pids(token: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_rank = args.first().is_some_and(|a| a.ends_with("candle-bcd"));
        if is_rank && args.iter().any(|a| a.contains(token)) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn a_killed_rank_ends_the_run() {
    let dir = common::tempdir();
    let metrics = dir.join("killed.jsonl");
    let mut cmd = mpirun(2);
    cmd.args(train_args(
        &dir,
        &["--iterations", "100000", "--metrics", "{dir}/killed.jsonl"],
    ));
    let start = Instant::now();
    let handle = std::thread::spawn(move || finish(cmd, Duration::from_secs(120)));
    // Wait until training runs, then kill one rank.
    while std::fs::read_to_string(&metrics).map_or(true, |m| m.lines().count() < 2) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "training did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = rank_pids(dir.to_str().unwrap());
    assert_eq!(pids.len(), 2, "{pids:?}");
    Command::new("kill")
        .args(["-9", &pids[1].to_string()])
        .status()
        .unwrap();
    let out = handle.join().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(rank_pids(dir.to_str().unwrap()).is_empty());
}
