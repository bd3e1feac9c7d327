//! `ProductCache::Recompute` and `KeepFirst` (less memory) must give the same iterates and
//! objective as the default `Keep`, and the objective's pre-activation penalty, which the
//! optimizer accumulates where it forms the products, must equal a direct f64 computation from
//! the final blocks.

mod common;

use candle_bcd::{
    Activation, Architecture, BcdConfig, BcdOptimizer, Network, ProductCache, Splitting, WeightInit,
};
use candle_core::Device;
use candle_nn::VarMap;
use common::{rand_m, M};

/// Runs `sweeps` sweeps from the same initialisation; returns the optimizer and Φ per sweep.
fn run(
    arch: &Architecture,
    cfg: &BcdConfig,
    cache: ProductCache,
    sweeps: usize,
) -> (BcdOptimizer, Network, Vec<f64>) {
    let x = rand_m(40, arch.input_dim(), 1, 1.0).to_tensor();
    let y = rand_m(40, arch.output_dim(), 2, 1.0).to_tensor();
    let varmap = VarMap::new();
    let net = Network::init(arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
    // The trainer recognises the training set by tensor id (to reuse Z_1), also after a
    // same-device `to_device` as the CLI does.
    let x_id = x.to_device(&Device::Cpu).unwrap().id();
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, arch).unwrap(),
        x,
        y,
        cfg.clone(),
    )
    .unwrap()
    .with_product_cache(cache);
    assert_eq!(
        opt.inputs().id(),
        x_id,
        "the optimizer must keep the caller's input tensor"
    );
    assert_eq!(opt.product_cache(), cache);
    let phi = (0..sweeps)
        .map(|_| opt.step().unwrap().objective.total())
        .collect();
    (opt, net, phi)
}

/// `ρ/2 Σ_i ‖U_i − Ṽ_{i−1}W̃_iᵀ‖²` in f64 from the optimizer's blocks.
fn preactivation_penalty(opt: &BcdOptimizer, x: &M) -> f64 {
    let s = opt.state();
    let mut sum = 0.0;
    for l in 0..s.u.len() {
        let input = if l == 0 {
            x.clone()
        } else {
            M::from_tensor(&s.v[l - 1])
        };
        let w = M::from_tensor(opt.weight_vars()[l].as_tensor());
        let b = M::from_tensor(&opt.bias_vars()[l].as_tensor().unsqueeze(0).unwrap());
        let z = input.mul(&w.t());
        let z = M::from_fn(z.r, z.c, |i, j| z.at(i, j) + b.at(0, j));
        sum += M::from_tensor(&s.u[l]).zip(&z, |a, b| a - b).sq_norm();
    }
    0.5 * opt.config().rho * sum
}

#[test]
fn every_cache_mode_matches_keep_and_the_direct_objective() {
    let cases = [
        (
            Architecture::mlp(&[8, 16, 12, 3], Activation::Relu).unwrap(),
            BcdConfig::default(),
        ),
        (
            Architecture::resnet(8, 10, 2, 3, Activation::Tanh).unwrap(),
            BcdConfig::default().alpha(1.0),
        ),
        (
            Architecture::mlp(&[8, 16, 3], Activation::Relu).unwrap(),
            BcdConfig::default().splitting(Splitting::Two),
        ),
    ];
    for (arch, cfg) in cases {
        let (keep, keep_net, phi_keep) = run(&arch, &cfg, ProductCache::Keep, 6);
        for mode in [ProductCache::Recompute, ProductCache::KeepFirst] {
            let (low, low_net, phi_low) = run(&arch, &cfg, mode, 6);
            for (k, (a, b)) in phi_keep.iter().zip(&phi_low).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * a.abs(),
                    "{:?} sweep {}: Φ {a} (keep) vs {b} ({mode:?})",
                    arch.widths(),
                    k + 1
                );
            }
            for (a, b) in keep.state().v.iter().zip(&low.state().v) {
                let err = M::from_tensor(a).rel_err(&M::from_tensor(b));
                assert!(err < 1e-5, "{:?}: V differs by {err}", arch.widths());
            }
            for (a, b) in keep.weight_vars().iter().zip(low.weight_vars()) {
                let err = M::from_tensor(a.as_tensor()).rel_err(&M::from_tensor(b.as_tensor()));
                assert!(err < 1e-5, "{:?}: W differs by {err}", arch.widths());
            }
            for (opt, net) in [(&keep, &keep_net), (&low, &low_net)] {
                let lifted_path = M::from_tensor(&opt.training_logits().unwrap());
                let plain = M::from_tensor(&net.logits(opt.inputs()).unwrap());
                let err = lifted_path.rel_err(&plain);
                assert!(
                    err < 1e-6,
                    "{:?}: training_logits differ by {err}",
                    arch.widths()
                );
            }
            if cfg.splitting == Splitting::Three {
                let x = rand_m(40, arch.input_dim(), 1, 1.0);
                for opt in [&keep, &low] {
                    let direct = preactivation_penalty(opt, &x);
                    let reported = opt.objective().unwrap().preactivation_penalty;
                    assert!(
                        (direct - reported).abs() <= 1e-4 * direct.max(1e-6),
                        "{:?} {:?}: pre-activation penalty {reported} vs direct f64 {direct}",
                        arch.widths(),
                        opt.product_cache()
                    );
                }
            }
        }
    }
}

/// Accuracy is computed 4,096 rows at a time (and, on the training set, from the kept `Z_1`);
/// on 17,000 rows (four full blocks and a partial one) it must agree with the arg-max of one full
/// forward pass (up to a tie flipped by round-off).
#[test]
fn blocked_accuracy_matches_one_full_forward_pass() {
    let arch = Architecture::mlp(&[8, 16, 3], Activation::Relu).unwrap();
    let n = 17_000;
    let x = rand_m(n, 8, 5, 1.0).to_tensor();
    let y = rand_m(n, 3, 6, 1.0).to_tensor();
    let labels = y.argmax(1).unwrap();
    let cfg = BcdConfig::default();
    let varmap = VarMap::new();
    let net = Network::init(&arch, &varmap, WeightInit::Official, 0, &Device::Cpu).unwrap();
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        x.clone(),
        y,
        cfg,
    )
    .unwrap();
    opt.step().unwrap();
    let full = candle_bcd::metrics::accuracy(&net.logits(&x).unwrap(), &labels).unwrap();
    let blocked = net.accuracy(&x, &labels).unwrap();
    let training = opt.training_accuracy(&labels).unwrap();
    for (name, got) in [
        ("Network::accuracy", blocked),
        ("training_accuracy", training),
    ] {
        assert!(
            (got - full).abs() <= 2.0 / n as f64,
            "{name}: {got} vs {full} from one forward pass"
        );
    }
}
