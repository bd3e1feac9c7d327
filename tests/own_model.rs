//! A model built the ordinary candle-nn way (`candle_nn::seq()` of `candle_nn::linear` layers
//! named `fc1`, `fc2`, `fc3`) trains through [`Network::from_varmap`] exactly as the crate's own
//! [`Network`] with the same weights: the same iterates for 3 sweeps on the real MNIST slice.

mod common;

use candle_bcd::{data, Activation, BcdConfig, BcdOptimizer, Network};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};

const NAMES: [&str; 3] = ["fc1", "fc2", "fc3"];

/// `max |a − b| / max(max |b|, 1e-12)`, computed in f64.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let f = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    let (a, b) = (f(a), f(b));
    let scale = b.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-12);
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn candle_nn_model_and_bcd_net_give_the_same_iterates() {
    let dev = Device::Cpu;
    let ds = data::load_idx_dir(&common::mnist_dir()).unwrap();
    let ds = data::take_train(&ds, 1000).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();

    let own_vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&own_vars, DType::F32, &dev);
    let own = candle_nn::seq()
        .add(candle_nn::linear(784, 512, vb.pp("fc1")).unwrap())
        .add(candle_nn::Activation::Relu)
        .add(candle_nn::linear(512, 512, vb.pp("fc2")).unwrap())
        .add(candle_nn::Activation::Relu)
        .add(candle_nn::linear(512, 10, vb.pp("fc3")).unwrap());
    let own_layers = Network::from_varmap(&own_vars, NAMES)
        .unwrap()
        .activation(Activation::Relu)
        .unwrap();
    let arch = own_layers.architecture().clone();
    assert_eq!(arch.widths(), [784, 512, 512, 10]);

    // The same weights, copied into Network's own layout (layers.{l}).
    let net_vars = VarMap::new();
    {
        let mut data = net_vars.data().lock().unwrap();
        for (l, name) in NAMES.iter().enumerate() {
            for part in ["weight", "bias"] {
                let t = own_vars.data().lock().unwrap()[&format!("{name}.{part}")]
                    .as_tensor()
                    .copy()
                    .unwrap();
                data.insert(format!("layers.{l}.{part}"), Var::from_tensor(&t).unwrap());
            }
        }
    }
    let net = Network::of_architecture(&net_vars, &arch).unwrap();
    let net_layers = net.clone();
    let x_test = ds.test_images.clone();
    assert!(
        rel_diff(
            &own.forward(&x_test).unwrap(),
            &net.forward(&x_test).unwrap()
        ) < 1e-6
    );

    let w0 = own_layers.weight_vars()[0].as_tensor().copy().unwrap();
    let cfg = BcdConfig::default();
    let x = ds.train_images.clone();
    let mut a = BcdOptimizer::new(&own_layers, x.clone(), y.clone(), cfg.clone()).unwrap();
    let mut b = BcdOptimizer::new(&net_layers, x, y, cfg).unwrap();
    for sweep in 1..=3 {
        let (ra, rb) = (a.step().unwrap(), b.step().unwrap());
        let (pa, pb) = (ra.objective.total(), rb.objective.total());
        assert!(
            (pa - pb).abs() <= 1e-9 * pb.abs(),
            "sweep {sweep}: Φ {pa} vs {pb}"
        );
        for (l, name) in NAMES.iter().enumerate() {
            let wa = a.weight_vars()[l].as_tensor();
            let wb = b.weight_vars()[l].as_tensor();
            let ba = a.bias_vars()[l].as_tensor();
            let bb = b.bias_vars()[l].as_tensor();
            let d = rel_diff(wa, wb).max(rel_diff(ba, bb));
            assert!(d <= 1e-6, "sweep {sweep}, {name}: relative difference {d}");
            let dv = rel_diff(&a.state().v[l], &b.state().v[l]);
            assert!(
                dv <= 1e-6,
                "sweep {sweep}, V_{}: relative difference {dv}",
                l + 1
            );
        }
    }
    // Both models compute with their trained weights, and agree.
    let (fa, fb) = (own.forward(&x_test).unwrap(), net.forward(&x_test).unwrap());
    assert!(rel_diff(&fa, &fb) < 1e-5);
    // The optimizer trained the model's own Vars: fc1.weight is the optimizer's weight, bit
    // for bit, and no longer what it was. Three sweeps move its largest entry by about 1e-4 of
    // max |W₁| (9.9e-5 to 1.5e-4 over random inits); f32 rounding is below 1e-7.
    let fc1 = own_vars.data().lock().unwrap()["fc1.weight"]
        .as_tensor()
        .clone();
    assert_eq!(rel_diff(&fc1, a.weight_vars()[0].as_tensor()), 0.0);
    let moved = rel_diff(&fc1, &w0);
    assert!(
        moved > 1e-5,
        "fc1.weight moved by only {moved} of its scale"
    );
}

/// A checkpoint of an own model keeps its layer names: it loads back into a fresh `VarMap`
/// under `fc1`, `fc2`, resumes to the same next sweep bit for bit, and a lifted state of
/// another data size is refused as such.
#[test]
fn own_model_checkpoint_keeps_names_and_resumes_exactly() {
    use candle_bcd::{checkpoint, BcdError};
    let dev = Device::Cpu;
    let ds = data::take_train(&data::load_idx_dir(&common::mnist_dir()).unwrap(), 300).unwrap();
    let y = data::one_hot(&ds.train_labels, 10).unwrap();
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &dev);
    candle_nn::linear(784, 32, vb.pp("fc1")).unwrap();
    candle_nn::linear(32, 10, vb.pp("fc2")).unwrap();
    let layers = Network::from_varmap(&vars, ["fc1", "fc2"]).unwrap();
    let x = ds.train_images.clone();
    let cfg = BcdConfig::default();
    let mut a = BcdOptimizer::new(&layers, x.clone(), y.clone(), cfg).unwrap();
    a.step().unwrap();
    let dir = common::tempdir();
    let path = dir.join("own.safetensors");
    checkpoint::save(&path, &a).unwrap();
    let next = a.step().unwrap();

    let checkpoint::Checkpoint::FullBatch(ckpt) = checkpoint::load(&path, &dev).unwrap() else {
        panic!("a full-batch run's checkpoint loaded as another kind");
    };
    assert_eq!(ckpt.model.layer_names, ["fc1", "fc2"]);
    let resumed = ckpt.model.network(&VarMap::new()).unwrap();
    assert_eq!(resumed.names(), ["fc1", "fc2"]);
    let state = ckpt.state.clone();
    let mut b = BcdOptimizer::from_state(&resumed, x, y, ckpt.model.config.clone(), state).unwrap();
    let again = b.step().unwrap();
    assert_eq!(
        next.objective.total().to_bits(),
        again.objective.total().to_bits()
    );
    assert_eq!(
        rel_diff(
            a.weight_vars()[1].as_tensor(),
            b.weight_vars()[1].as_tensor()
        ),
        0.0
    );

    // The same state against 100 rows: refused, naming the block and both shapes.
    let short = ds.train_images.narrow(0, 0, 100).unwrap();
    let short_y = data::one_hot(&ds.train_labels.narrow(0, 0, 100).unwrap(), 10).unwrap();
    match BcdOptimizer::from_state(&resumed, short, short_y, ckpt.model.config, ckpt.state) {
        Err(BcdError::StateMismatch(why)) => {
            assert!(why.contains("lifted.u.0") && why.contains("300"), "{why}")
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a lifted state of 300 rows was accepted for 100"),
    }
}
