//! An independent f64 implementation of docs/algorithm.md (tests/common/reference.rs), started from
//! the same weights and lifted variables, reproduces `BcdOptimizer::step` to 1e-4 relative
//! error in every block, and the optimizer's objective matches the reference objective.

mod common;

use candle_bcd::{Activation, Architecture, BcdConfig, BcdOptimizer, Branch, Network};
use candle_core::Device;
use candle_nn::VarMap;
use common::reference::{self, Blocks, Hp, Residual};
use common::{rand_m, M};

fn blocks_of(opt: &BcdOptimizer) -> Blocks {
    Blocks {
        w: opt
            .weight_vars()
            .iter()
            .map(|v| M::from_tensor(v.as_tensor()))
            .collect(),
        b: opt
            .bias_vars()
            .iter()
            .map(|v| M::from_tensor(v.as_tensor()))
            .collect(),
        u: opt.state().u.iter().map(M::from_tensor).collect(),
        v: opt.state().v.iter().map(M::from_tensor).collect(),
    }
}

fn check(widths: &[usize], n: usize, cfg: BcdConfig, sweeps_before: usize) {
    check_arch(
        Architecture::mlp(widths, Activation::Relu).unwrap(),
        &[],
        n,
        cfg,
        sweeps_before,
    );
}

fn check_arch(arch: Architecture, res: &[bool], n: usize, cfg: BcdConfig, sweeps_before: usize) {
    let res = Residual {
        flags: res,
        span: arch.branch().layers(),
    };
    let device = Device::Cpu;
    let widths = arch.widths().to_vec();
    let x = rand_m(n, widths[0], 11, 1.0);
    let y = rand_m(n, *widths.last().unwrap(), 12, 1.0);
    let varmap = VarMap::new();
    Network::init(&arch, &varmap, candle_bcd::WeightInit::Kaiming, 3, &device).unwrap();
    let mut opt = BcdOptimizer::new(
        &Network::of_architecture(&varmap, &arch).unwrap(),
        x.to_tensor(),
        y.to_tensor(),
        cfg.clone(),
    )
    .unwrap();
    for _ in 0..sweeps_before {
        opt.step().unwrap();
    }
    let hp = Hp {
        gamma: cfg.gamma,
        rho: cfg.rho,
        alpha: cfg.alpha,
        lambda: cfg.lambda,
        growth: cfg.penalty_growth,
        alpha_lifted: cfg.alpha_lifted.unwrap_or(cfg.alpha),
    };
    let start = blocks_of(&opt);
    let expected = reference::sweep(&x, &y, &start, hp, res);
    let report = opt.step().unwrap();
    let got = blocks_of(&opt);
    // W̃ = [W b] is one block: compare it as one (a bias near zero has no meaningful
    // relative error of its own).
    let joint = |b: &Blocks, l: usize| {
        let (w, bias) = (&b.w[l], &b.b[l]);
        M::from_fn(w.r, w.c + 1, |i, j| {
            if j < w.c {
                w.at(i, j)
            } else {
                bias.at(0, i)
            }
        })
    };
    for l in 0..arch.num_layers() {
        for (name, g, e) in [
            ("W̃", joint(&got, l), joint(&expected, l)),
            ("U", got.u[l].clone(), expected.u[l].clone()),
            ("V", got.v[l].clone(), expected.v[l].clone()),
        ] {
            let err = g.rel_err(&e);
            assert!(
                err < 1e-4,
                "{widths:?}: {name}_{} relative error {err:.3e}",
                l + 1
            );
        }
    }
    let phi_ref = reference::objective(&x, &y, &expected, hp, res);
    let phi = report.objective.total();
    assert!(
        (phi - phi_ref).abs() <= 1e-4 * phi_ref.abs(),
        "{widths:?}: objective {phi} vs reference {phi_ref}"
    );
}

#[test]
fn one_sweep_matches_reference_deep_narrow_head() {
    // d_L = 3 < d_{L-1} = 12: the optimizer takes the Woodbury path for V_{L-1}.
    check(&[6, 12, 9, 12, 3], 40, BcdConfig::default(), 0);
}

#[test]
fn one_sweep_matches_reference_wide_head_after_some_sweeps() {
    // d_{i+1} >= d_i everywhere: dense inverse path; also from a non-initial state, with ridge.
    let mut cfg = BcdConfig::default();
    cfg.gamma = 2.0;
    cfg.rho = 0.5;
    cfg.alpha = 1.0;
    cfg.lambda = 0.1;
    check(&[5, 4, 7, 8], 30, cfg, 3);
}

#[test]
fn one_sweep_matches_reference_resnet() {
    // Stem 6 → 9, three residual layers of width 9, head 9 → 3.
    let arch = Architecture::resnet(6, 9, 3, 3, Activation::Relu).unwrap();
    let res = [false, true, true, true, false];
    check_arch(arch.clone(), &res, 40, BcdConfig::default(), 0);
    check_arch(
        arch.clone(),
        &res,
        40,
        BcdConfig::default().lambda(0.05).alpha(1.0),
        2,
    );
    // Layer weights q^{i−L} (the residual V blocks weigh the next layer's two penalties by q).
    check_arch(arch, &res, 40, layer_weighted(), 1);
}

/// Layer weights growing by 3, lifted blocks with their own proximal weight, and ridge.
fn layer_weighted() -> BcdConfig {
    BcdConfig::default()
        .penalty_growth(3.0)
        .alpha_lifted(Some(0.5))
        .lambda(0.05)
}

#[test]
fn one_sweep_matches_reference_pair_branch_resnet() {
    // Stem 6 → 9, two branches (a ReLU layer, then a linear one) of width 9, head 9 → 3: the
    // skip comes from two layers down, and V of a branch's last layer is read by the next
    // branch's residual layer with weight q²γ.
    let arch = Architecture::resnet_with(6, 9, 2, Branch::Pair, 3, Activation::Relu).unwrap();
    let res = [false, false, true, false, true, false];
    check_arch(arch.clone(), &res, 40, BcdConfig::default(), 0);
    check_arch(arch, &res, 40, layer_weighted(), 1);
}

#[test]
fn one_sweep_matches_reference_with_layer_weights() {
    // Growing and shrinking layer weights, lifted blocks with and without a proximal term.
    let base = BcdConfig::default().gamma(1.0).rho(0.3).lambda(0.02);
    for (growth, lifted) in [(10.0, Some(0.0)), (0.25, None), (1.0, Some(0.0))] {
        let cfg = base.clone().penalty_growth(growth).alpha_lifted(lifted);
        check(&[6, 12, 9, 12, 3], 40, cfg.clone(), 0);
        check(&[5, 4, 7, 8], 30, cfg, 2);
    }
}

#[test]
fn one_sweep_matches_reference_single_layer() {
    check(&[7, 4], 25, BcdConfig::default(), 1);
}
