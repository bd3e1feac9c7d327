//! The training loop: it stops on the tolerance and on the time limit with that reason, measures
//! the training accuracy only when asked, and evaluates any candle-nn model it is given.

mod common;

use std::time::Duration;

use candle_bcd::trainer::TerminationReason;
use candle_bcd::trainer::{self, EvalSet, Evaluation, IterationRecord, Observer, TrainOptions};
use candle_bcd::{data, Activation, Architecture, BcdConfig, BcdOptimizer, Network};
use candle_core::Device;
use candle_nn::VarMap;

/// Keeps every record.
#[derive(Default)]
struct Keep(Vec<IterationRecord>);
impl Observer for Keep {
    fn observe_iter(&mut self, r: &IterationRecord) -> candle_bcd::Result<()> {
        self.0.push(r.clone());
        Ok(())
    }
}

/// A small MLP on 500 images of the MNIST slice, and its test set.
fn setup() -> (Network, BcdOptimizer, EvalSet, candle_core::Tensor) {
    let ds = data::load_idx_dir(&common::mnist_dir()).unwrap();
    let ds = data::take_train(&ds, 500).unwrap();
    let arch = Architecture::mlp(&[784, 32, 10], Activation::Relu).unwrap();
    let net = Network::init(&arch, &VarMap::new(), Default::default(), 0, &Device::Cpu).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let opt = BcdOptimizer::new(&net, ds.train_images.clone(), y, BcdConfig::default()).unwrap();
    let test = EvalSet {
        x: ds.test_images.clone(),
        labels: ds.test_labels.clone(),
    };
    (net, opt, test, ds.train_labels)
}

#[test]
fn stops_on_the_tolerance_at_the_first_small_decrease() {
    let (net, mut opt, _, _) = setup();
    let tol = 1e-2;
    let mut opts = TrainOptions::default();
    opts.max_iterations = 500;
    opts.tolerance = Some(tol);
    opts.eval_every = 0;
    let mut keep = Keep::default();
    let start = opt.objective().unwrap().total();
    let summary = trainer::train(&mut opt, &net, Evaluation::default(), &opts, &mut keep).unwrap();
    let phis: Vec<f64> = std::iter::once(start)
        .chain(keep.0.iter().map(|r| r.step.objective.total()))
        .collect();
    let decrease = |k: usize| (phis[k - 1] - phis[k]) / phis[k - 1];
    let last = phis.len() - 1;
    assert!(last < 500, "never converged");
    match summary.reason {
        TerminationReason::Converged { relative_decrease } => {
            assert!((relative_decrease - decrease(last)).abs() < 1e-12);
            assert!(relative_decrease <= tol);
        }
        other => panic!("expected convergence, got {other:?}"),
    }
    // Every earlier sweep decreased Φ by more than the tolerance.
    assert!((1..last).all(|k| decrease(k) > tol));
    assert_eq!(summary.iterations, last);
}

#[test]
fn stops_at_the_time_limit_and_evaluates_only_what_is_asked() {
    let (net, mut opt, test, train_labels) = setup();
    let mut opts = TrainOptions::default();
    opts.max_iterations = 50;
    opts.time_limit = Some(Duration::ZERO);
    opts.eval_every = 0;
    let mut keep = Keep::default();
    let eval = Evaluation {
        train_labels: None,
        test: Some(&test),
    };
    let summary = trainer::train(&mut opt, &net, eval, &opts, &mut keep).unwrap();
    assert_eq!(summary.reason, TerminationReason::TimeLimit);
    assert_eq!(keep.0.len(), 1);
    // The last sweep is evaluated on the test set, and the training accuracy was not asked for.
    let r = &keep.0[0];
    assert!(r.train_accuracy.is_none());
    let direct = net.accuracy(&test.x, &test.labels).unwrap();
    assert_eq!(r.test_accuracy, Some(direct));

    // Asked for, the training accuracy equals the model's own on the training rows.
    let mut keep = Keep::default();
    let eval = Evaluation {
        train_labels: Some(&train_labels),
        test: None,
    };
    let mut opts = TrainOptions::default();
    opts.max_iterations = 1;
    trainer::train(&mut opt, &net, eval, &opts, &mut keep).unwrap();
    let train_acc = keep.0[0].train_accuracy.unwrap();
    let direct = net.accuracy(opt.inputs(), &train_labels).unwrap();
    assert!(
        (train_acc - direct).abs() < 1e-12,
        "{train_acc} vs {direct}"
    );
}

#[test]
fn cli_stops_on_its_time_limit_and_tolerance() {
    let mnist = common::mnist_dir();
    let base = [
        "train",
        "--data-dir",
        mnist.to_str().unwrap(),
        "--train-limit",
        "200",
        "--hidden",
        "16",
        "--iterations",
        "40",
    ];
    let run = |extra: &[&str]| common::cli_ok(&base, extra);
    let out = run(&["--time-limit", "0"]);
    assert!(
        out.contains("time limit") && out.contains("finished 1 iterations"),
        "{out}"
    );
    let out = run(&["--tolerance", "0.5"]);
    assert!(
        out.contains("converged") && out.contains("finished 1 iterations"),
        "{out}"
    );
}

/// A model that computes something other than the optimizer's network (here a GELU where
/// the network says ReLU) is refused before the first sweep, and nothing is trained.
#[test]
fn a_model_unlike_the_network_is_refused() {
    let (net, mut opt, test, _) = setup();
    let w0 = net.weight(0).copy().unwrap();
    let fc = |l: usize| candle_nn::Linear::new(net.weight(l).clone(), Some(net.bias(l).clone()));
    let gelu = candle_nn::seq()
        .add(fc(0))
        .add(candle_nn::Activation::Gelu)
        .add(fc(1));
    let eval = Evaluation {
        train_labels: None,
        test: Some(&test),
    };
    let opts = TrainOptions::default();
    match trainer::train(&mut opt, &gelu, eval, &opts, &mut Keep::default()) {
        Err(candle_bcd::BcdError::ModelMismatch { .. }) => {}
        other => panic!("expected ModelMismatch, got {other:?}"),
    }
    assert_eq!(opt.iteration(), 0);
    assert_eq!(
        common::M::from_tensor(net.weight(0)).rel_err(&common::M::from_tensor(&w0)),
        0.0
    );
}

/// Weights changed between steps by something else than the optimizer (a head fit here) are
/// detected: `step` and `objective` refuse with the layer's name and change nothing; an
/// optimizer built afresh from the network trains on.
#[test]
fn weights_changed_outside_a_step_are_detected() {
    let (net, mut opt, _, train_labels) = setup();
    opt.step().unwrap();
    let y = data::one_hot(&train_labels, 10).unwrap();
    net.fit_head(opt.inputs(), &y, 1.0).unwrap();
    let head = net.weight(1).copy().unwrap();
    for result in [opt.step().map(|_| ()), opt.objective().map(|_| ())] {
        match result {
            Err(candle_bcd::BcdError::WeightsChanged { layer }) => assert_eq!(layer, "layers.1"),
            other => panic!("expected WeightsChanged, got {other:?}"),
        }
    }
    assert_eq!(opt.iteration(), 1);
    assert_eq!(
        common::M::from_tensor(net.weight(1)).rel_err(&common::M::from_tensor(&head)),
        0.0
    );
    let mut fresh = BcdOptimizer::new(&net, opt.inputs().clone(), y, BcdConfig::default()).unwrap();
    let before = fresh.objective().unwrap().total();
    assert!(fresh.step().unwrap().objective.total() <= before);
}
