//! Each closed-form block update is the exact minimiser of its subproblem: it agrees with an
//! independent f64 computation (naive products and Gaussian elimination, the reference code in
//! `tests/common` that the integration tests share) and the subproblem's gradient vanishes at
//! the returned point (first-order optimality).

use crate::blocks::{self, AugmentedGram};
use crate::comm::SingleProcess;
use crate::three_split::updates;
use crate::two_split::updates as two_split;
use crate::{Activation, BcdConfig};
use dense::{rand_m, M};
use reference::Hp;

#[path = "../tests/common/dense.rs"]
pub(crate) mod dense;
#[path = "../tests/common/reference.rs"]
#[allow(dead_code)] // the sweep-level reference serves the integration tests
pub(crate) mod reference;

fn cfg() -> BcdConfig {
    BcdConfig::default()
        .gamma(1.5)
        .rho(0.7)
        .alpha(2.0)
        .lambda(0.3)
}

fn hp(c: &BcdConfig) -> Hp {
    Hp {
        gamma: c.gamma,
        rho: c.rho,
        alpha: c.alpha,
        lambda: c.lambda,
        growth: c.penalty_growth,
        alpha_lifted: c.alpha_lifted.unwrap_or(c.alpha),
    }
}

/// `‖g‖ / scale` must be at f32 round-off level.
fn assert_stationary(name: &str, grad: &M, scale: f64) {
    let rel = grad.sq_norm().sqrt() / scale;
    assert!(
        rel < 1e-5,
        "{name}: gradient norm {rel:.3e} (relative) is not ~0"
    );
}

#[test]
fn output_activation_is_exact() {
    let c = cfg();
    let (y, u, v0) = (
        rand_m(20, 4, 1, 1.0),
        rand_m(20, 4, 2, 1.0),
        rand_m(20, 4, 3, 1.0),
    );
    let v = M::from_tensor(
        &blocks::output_activation(&y.to_tensor(), &u.to_tensor(), &v0.to_tensor(), &c).unwrap(),
    );
    // ∇ = (V − Y) + γ(V − U) + α(V − V0)
    let grad = M::from_fn(20, 4, |i, j| {
        let x = v.at(i, j);
        (x - y.at(i, j)) + c.gamma * (x - u.at(i, j)) + c.alpha * (x - v0.at(i, j))
    });
    assert_stationary("V_L", &grad, y.sq_norm().sqrt());
}

#[test]
fn cross_entropy_output_activation_is_exact() {
    let c = cfg().loss(crate::Loss::CrossEntropy);
    // One-hot targets, and large pre-activations that make the softmax saturate.
    let y = M::from_fn(20, 5, |i, j| if j == i % 5 { 1.0 } else { 0.0 });
    let (u, v0) = (rand_m(20, 5, 2, 8.0), rand_m(20, 5, 3, 1.0));
    let v = M::from_tensor(
        &blocks::output_activation(&y.to_tensor(), &u.to_tensor(), &v0.to_tensor(), &c).unwrap(),
    );
    // ∇ = softmax(V) − Y + γ(V − U) + α(V − V0), computed row by row in f64 here.
    let mut grad = M::zeros(20, 5);
    for i in 0..20 {
        let m = (0..5).map(|j| v.at(i, j)).fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..5).map(|j| (v.at(i, j) - m).exp()).sum();
        for j in 0..5 {
            let p = (v.at(i, j) - m).exp() / z;
            grad.d[i * 5 + j] = p - y.at(i, j)
                + c.gamma * (v.at(i, j) - u.at(i, j))
                + c.alpha * (v.at(i, j) - v0.at(i, j));
        }
    }
    // The row problems are (γ+α)-strongly convex, so a vanishing gradient means the minimiser.
    assert_stationary("V_L (cross-entropy)", &grad, u.sq_norm().sqrt());
}

#[test]
fn output_preactivation_is_exact() {
    let c = cfg();
    let (v, z) = (rand_m(20, 4, 4, 1.0), rand_m(20, 4, 5, 1.0));
    let u =
        M::from_tensor(&updates::output_preactivation(&v.to_tensor(), &z.to_tensor(), &c).unwrap());
    let grad = M::from_fn(20, 4, |i, j| {
        c.gamma * (u.at(i, j) - v.at(i, j)) + c.rho * (u.at(i, j) - z.at(i, j))
    });
    assert_stationary("U_L", &grad, v.sq_norm().sqrt());
}

#[test]
fn weights_are_exact() {
    let c = cfg();
    for (n_in, m) in [(6, 3), (3, 8)] {
        let vin = rand_m(30, n_in, 6, 1.0);
        let u = rand_m(30, m, 7, 2.0);
        let (w0, b0) = (rand_m(m, n_in, 8, 0.5), rand_m(1, m, 9, 0.5));
        let gram = AugmentedGram::new(&vin.to_tensor()).unwrap();
        let (w, b) = updates::weights(
            &gram,
            &vin.to_tensor(),
            &u.to_tensor(),
            &w0.to_tensor(),
            &b0.to_tensor().reshape(m).unwrap(),
            &c,
            "W_test",
        )
        .unwrap();
        let (w, b) = (M::from_tensor(&w), M::from_tensor(&b));
        let (w_ref, b_ref) = reference::weights(&vin, &u, &w0, &b0, hp(&c));
        assert!(
            w.rel_err(&w_ref) < 1e-5,
            "W vs reference: {:.3e}",
            w.rel_err(&w_ref)
        );
        assert!(
            b.rel_err(&b_ref) < 1e-4,
            "b vs reference: {:.3e}",
            b.rel_err(&b_ref)
        );
        // ∇_W = ρ(ṼW̃ᵀ − U)ᵀV + λW + α(W − W0); ∇_b = ρ(ṼW̃ᵀ − U)ᵀ1 + α(b − b0)
        let r = reference::affine(&vin, &w, &b).zip(&u, |a, b| a - b);
        let gw = r.t().mul(&vin);
        let gw = M::from_fn(m, n_in, |i, j| {
            c.rho * gw.at(i, j) + c.lambda * w.at(i, j) + c.alpha * (w.at(i, j) - w0.at(i, j))
        });
        let gb = M::from_fn(1, m, |_, j| {
            c.rho * (0..30).map(|i| r.at(i, j)).sum::<f64>() + c.alpha * (b.at(0, j) - b0.at(0, j))
        });
        assert_stationary("W", &gw, c.rho * u.t().mul(&vin).sq_norm().sqrt());
        assert_stationary("b", &gb, c.rho * u.sq_norm().sqrt());
    }
}

/// A weight block over many rows (a convolution's `N·H·W` patch rows) with a weak anchor `α`,
/// near its minimiser: the setting where normal equations formed from `f32` sums of the target
/// itself lose the step to the rounding of `ṼᵀṼ·W̃^old` and raised `Φ`. The block's objective,
/// evaluated in `f64` in the test, must fall by at least half of what an `f64` solve of the
/// same subproblem gains (the `f32` Gram's rounding still perturbs the step: 83 % of it here;
/// from sums of the target itself the block raised its objective by 1.6, 8 %).
#[test]
fn weights_solve_for_the_step_at_many_rows() {
    let (rows, n_in, m) = (100_000, 48, 12);
    let hp = Hp {
        gamma: 1.0,
        rho: 1.0,
        alpha: 0.1,
        lambda: 1e-3,
        growth: 1.0,
        alpha_lifted: 0.1,
    };
    // Non-negative, strongly correlated inputs (like neighbouring pixels of ReLU outputs): a
    // Gram with entries ~1e5 and many eigenvalues near 0, where only `α` holds the solve.
    let factors = rand_m(rows, 6, 31, 1.0).map(f64::abs);
    let vin = factors
        .mul(&rand_m(6, n_in, 35, 1.0).map(f64::abs))
        .zip(&rand_m(rows, n_in, 36, 3e-3), |v, e| v + e.abs());
    let (w0, b0) = (rand_m(m, n_in, 32, 0.5), rand_m(1, m, 33, 0.5));
    // Targets a little off the current weights' outputs: the step to find is small.
    let u = reference::affine(&vin, &w0, &b0).zip(&rand_m(rows, m, 34, 1e-2), |z, e| z + e);
    let block_objective = |w: &M, b: &M| {
        let fit = u
            .zip(&reference::affine(&vin, w, b), |t, z| t - z)
            .sq_norm();
        let prox = w.zip(&w0, |a, c| a - c).sq_norm() + b.zip(&b0, |a, c| a - c).sq_norm();
        hp.lambda / 2.0 * w.sq_norm() + hp.rho / 2.0 * fit + hp.alpha / 2.0 * prox
    };
    let (w0_t, b0_t) = (w0.to_tensor(), b0.to_tensor().reshape(m).unwrap());
    let gram = AugmentedGram::new(&vin.to_tensor()).unwrap();
    let pw = blocks::PenaltyWeights {
        coupling: hp.rho,
        alpha: hp.alpha,
        lambda: hp.lambda,
    };
    let (w, b) = blocks::weights_for(
        &gram,
        &vin.to_tensor(),
        &u.to_tensor(),
        &w0_t,
        &b0_t,
        pw,
        "W_test",
    )
    .unwrap();
    let (w_ref, b_ref) = reference::weights(&vin, &u, &w0, &b0, hp);
    let before = block_objective(&w0, &b0);
    let gain = before - block_objective(&M::from_tensor(&w), &M::from_tensor(&b));
    let best_gain = before - block_objective(&w_ref, &b_ref);
    assert!(best_gain > 0.0, "the f64 solve gains {best_gain:.3e}");
    assert!(
        gain >= 0.5 * best_gain,
        "the block gains {gain:.6e} of its objective {before:.6e}, an f64 solve {best_gain:.6e}"
    );
}

#[test]
fn hidden_activation_is_exact_dense_and_woodbury() {
    let c = cfg();
    // (d_i, d_{i+1}): 5 → 9 takes the dense inverse, 9 → 2 the Woodbury form.
    for (d, k) in [(5, 9), (9, 2)] {
        let u_i = rand_m(25, d, 10, 1.0);
        let u_next = rand_m(25, k, 11, 1.0);
        let (w, b) = (rand_m(k, d, 12, 0.8), rand_m(1, k, 13, 0.5));
        let (u_t, un_t, w_t, b_t) = (
            u_i.to_tensor(),
            u_next.to_tensor(),
            w.to_tensor(),
            b.to_tensor().reshape(k).unwrap(),
        );
        // The minimiser does not depend on the point it starts from (the step form's V_i).
        let v_t = rand_m(25, d, 14, 1.0).to_tensor();
        let nb = updates::HiddenNeighbours {
            v: &v_t,
            u_i: &u_t,
            skip: None,
            u_next: &un_t,
            w_next: &w_t,
            b_next: &b_t,
            reader: None,
        };
        let v = updates::hidden_activation(nb, Activation::Relu, &c, "V_test").unwrap();
        let v = M::from_tensor(&v);
        // ∇ = γ(V − relu(U_i)) − ρ(U_{i+1} − ṼW̃ᵀ)W
        let r = u_next
            .zip(&reference::affine(&v, &w, &b), |a, b| a - b)
            .mul(&w);
        let grad = M::from_fn(25, d, |i, j| {
            c.gamma * (v.at(i, j) - u_i.at(i, j).max(0.0)) - c.rho * r.at(i, j)
        });
        assert_stationary(
            &format!("V ({d}→{k})"),
            &grad,
            c.gamma * u_i.sq_norm().sqrt(),
        );
    }
}

/// `V_i` of a residual layer (skip `S_i`, activation `σ_i`) read as a skip by the residual layer
/// `c = i + distance` (activation `σ_c`; `U_c` is `U_{i+1}` when `c = i + 1`), under layer
/// weights growing by `q`: the gradient of
/// `γ/2‖V − S_i − σ_i(U_i)‖² + qρ/2‖U_{i+1} − ṼW̃ᵀ‖² + q^{distance}γ/2‖V_c − V − σ_c(U_c)‖²`,
/// formed in `f64` here, vanishes at the block's update.
fn check_residual_v(own: Activation, reader: Activation, distance: usize, q: f64) {
    let c = cfg().penalty_growth(q);
    let (n, d) = (25, 7);
    let (u_i, skip) = (rand_m(n, d, 20, 1.0), rand_m(n, d, 21, 1.0));
    let (u_next, v_c) = (rand_m(n, d, 22, 1.0), rand_m(n, d, 23, 1.0));
    let u_c = match distance {
        1 => u_next.clone(),
        _ => rand_m(n, d, 27, 1.0),
    };
    let (w, b) = (rand_m(d, d, 24, 0.6), rand_m(1, d, 25, 0.5));
    let t = |m: &M| m.to_tensor();
    let (u_t, s_t, un_t, uc_t, vc_t, w_t) =
        (t(&u_i), t(&skip), t(&u_next), t(&u_c), t(&v_c), t(&w));
    let b_t = b.to_tensor().reshape(d).unwrap();
    let v_t = t(&rand_m(n, d, 26, 1.0));
    let nb = updates::HiddenNeighbours {
        v: &v_t,
        u_i: &u_t,
        skip: Some(&s_t),
        u_next: &un_t,
        w_next: &w_t,
        b_next: &b_t,
        reader: Some(updates::SkipReader {
            v: &vc_t,
            u: &uc_t,
            act: reader,
            weight: c.skip_weight(distance),
        }),
    };
    let v = M::from_tensor(&updates::hidden_activation(nb, own, &c, "V_res").unwrap());
    let r = u_next
        .zip(&reference::affine(&v, &w, &b), |a, b| a - b)
        .mul(&w);
    let read = q.powi(distance as i32) * c.gamma;
    let grad = M::from_fn(n, d, |i, j| {
        c.gamma * (v.at(i, j) - skip.at(i, j) - own.apply(u_i.at(i, j)))
            - read * (v_c.at(i, j) - v.at(i, j) - reader.apply(u_c.at(i, j)))
            - q * c.rho * r.at(i, j)
    });
    assert_stationary(
        &format!("residual V ({own:?}, read by {reader:?} {distance} layers up, q = {q})"),
        &grad,
        read * v_c.sq_norm().sqrt(),
    );
}

#[test]
fn residual_hidden_activation_is_exact() {
    // Between two single-layer branches.
    for act in [Activation::Relu, Activation::Tanh] {
        check_residual_v(act, act, 1, 1.0);
    }
    // Closing a two-layer branch (linear), read by the next branch's closing layer.
    check_residual_v(Activation::Identity, Activation::Identity, 2, 3.0);
}

#[test]
fn hidden_preactivation_is_exact() {
    let c = cfg();
    let (z, u0, v) = (
        rand_m(30, 6, 14, 2.0),
        rand_m(30, 6, 15, 2.0),
        rand_m(30, 6, 16, 2.0),
    );
    for act in [
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.2 },
        Activation::Identity,
    ] {
        let (u, step) =
            updates::hidden_preactivation(&z.to_tensor(), &u0.to_tensor(), &v.to_tensor(), act, &c)
                .unwrap();
        let u = M::from_tensor(&u);
        // The fused step length against ‖U − U^old‖² summed here in f64.
        let mut want = 0.0;
        for i in 0..30 {
            for j in 0..6 {
                want += (u.at(i, j) - u0.at(i, j)).powi(2);
            }
        }
        assert!(
            (step - want).abs() <= 1e-5 * want,
            "{act:?}: step {step} vs {want}"
        );
        // Elementwise subproblem γ/2(σ(u) − v)² + ρ/2(u − z)² + α/2(u − u0)²: no perturbation
        // of the returned point does better (it is the global minimiser, not just stationary).
        let f = |x: f64, i: usize, j: usize| {
            0.5 * c.gamma * (act.apply(x) - v.at(i, j)).powi(2)
                + 0.5 * c.rho * (x - z.at(i, j)).powi(2)
                + 0.5 * c.alpha * (x - u0.at(i, j)).powi(2)
        };
        for i in 0..30 {
            for j in 0..6 {
                let best = f(u.at(i, j), i, j);
                for k in -2000..=2000 {
                    let x = k as f64 * 0.005;
                    assert!(
                        f(x, i, j) >= best - 1e-6,
                        "{act:?} ({i},{j}): u={} beaten by {x}",
                        u.at(i, j)
                    );
                }
                if act == Activation::Relu {
                    let a = (c.rho * z.at(i, j) + c.alpha * u0.at(i, j)) / (c.rho + c.alpha);
                    let r = reference::relu_prox(v.at(i, j), a, (c.rho + c.alpha) / c.gamma);
                    assert!((u.at(i, j) - r).abs() < 1e-5 * (1.0 + r.abs()));
                }
            }
        }
    }
}

/// Two-splitting `V_i`: the accepted point is the gradient step of size 1/(γ+α) written out
/// here in f64 from the formula (own fit γ/2‖V − own‖² + γ/2‖V_{i+1} − σ(ṼW̃ᵀ)‖² linearised at
/// V^old), and the block objective did not increase.
#[test]
fn two_splitting_activation_step_is_the_prox_linear_step() {
    let (g, a0) = (1.3, 0.05);
    for (act, residual) in [(Activation::Relu, false), (Activation::Tanh, true)] {
        let d = 6;
        let (own, v0, v_next) = (
            rand_m(20, d, 30, 1.0),
            rand_m(20, d, 31, 1.0),
            rand_m(20, d, 32, 1.0),
        );
        let (w, b) = (rand_m(d, d, 33, 0.7), rand_m(1, d, 34, 0.3));
        let z0 = reference::affine(&v0, &w, &b);
        let t = |m: &M| m.to_tensor();
        let (w_t, b_t, vn_t) = (t(&w), b.to_tensor().reshape(d).unwrap(), t(&v_next));
        let next = two_split::NextLayer {
            w: &w_t,
            b: &b_t,
            v: &vn_t,
            residual,
            act,
        };
        let step = two_split::hidden_activation(
            &t(&own),
            &t(&v0),
            &t(&z0),
            next,
            g,
            a0,
            Default::default(),
            &SingleProcess,
        )
        .unwrap();
        assert!(step.alpha.is_finite() && step.alpha >= a0);
        let block = |v: &M| {
            let z = reference::affine(v, &w, &b);
            let fit = M::from_fn(20, d, |i, j| {
                v_next.at(i, j) - if residual { v.at(i, j) } else { 0.0 } - act.apply(z.at(i, j))
            });
            0.5 * g * v.zip(&own, |a, b| a - b).sq_norm() + 0.5 * g * fit.sq_norm()
        };
        // ∇h(V0) = −γ (R ⊙ σ'(Z0)) W − γ R [residual], R = V_next − [V0] − σ(Z0).
        let r = M::from_fn(20, d, |i, j| {
            v_next.at(i, j) - if residual { v0.at(i, j) } else { 0.0 } - act.apply(z0.at(i, j))
        });
        let dm = M::from_fn(20, d, |i, j| r.at(i, j) * act.derivative(z0.at(i, j)));
        let dw = dm.mul(&w);
        let a = step.alpha;
        let expected = M::from_fn(20, d, |i, j| {
            let grad = -g * dw.at(i, j) - if residual { g * r.at(i, j) } else { 0.0 };
            (g * own.at(i, j) + a * v0.at(i, j) - grad) / (g + a)
        });
        let got = M::from_tensor(&step.value);
        assert!(
            got.rel_err(&expected) < 1e-5,
            "{act:?}: step differs by {:.3e}",
            got.rel_err(&expected)
        );
        assert!(
            block(&got) <= block(&v0) * (1.0 + 1e-7),
            "{act:?}: block objective rose"
        );
        assert!(M::from_tensor(&step.z).rel_err(&reference::affine(&got, &w, &b)) < 1e-5);
    }
}

/// Two-splitting `W̃_i`: the accepted point is the prox-linear step (ridge handled exactly) and
/// the block objective γ/2‖T − σ(ṼW̃ᵀ)‖² + λ/2‖W‖² did not increase.
#[test]
fn two_splitting_weight_step_is_the_prox_linear_step() {
    let (g, a0, lam) = (1.1, 0.01, 0.2);
    let act = Activation::Relu;
    let (n_in, m) = (5, 4);
    let (input, target) = (rand_m(30, n_in, 40, 1.0), rand_m(30, m, 41, 1.0));
    let (w0, b0) = (rand_m(m, n_in, 42, 0.5), rand_m(1, m, 43, 0.5));
    let z0 = reference::affine(&input, &w0, &b0);
    let t = |m: &M| m.to_tensor();
    let b0_t = b0.to_tensor().reshape(m).unwrap();
    let step = two_split::weights(
        &t(&input),
        &t(&target),
        &t(&z0),
        &t(&w0),
        &b0_t,
        act,
        g,
        a0,
        lam,
        &SingleProcess,
    )
    .unwrap();
    let a = step.alpha;
    assert!(a.is_finite() && a >= a0);
    let dm = M::from_fn(30, m, |i, j| {
        (target.at(i, j) - act.apply(z0.at(i, j))) * act.derivative(z0.at(i, j))
    });
    let dtv = dm.t().mul(&input);
    let w_exp = M::from_fn(m, n_in, |i, j| {
        (a * w0.at(i, j) + g * dtv.at(i, j)) / (a + lam)
    });
    let b_exp = M::from_fn(1, m, |_, j| {
        b0.at(0, j) + g * (0..30).map(|i| dm.at(i, j)).sum::<f64>() / a
    });
    let (w, b) = (M::from_tensor(&step.weight), M::from_tensor(&step.bias));
    assert!(w.rel_err(&w_exp) < 1e-5 && b.rel_err(&b_exp) < 1e-5);
    let obj = |w: &M, b: &M| {
        let z = reference::affine(&input, w, b);
        0.5 * g * target.zip(&z, |t, z| t - act.apply(z)).sq_norm() + 0.5 * lam * w.sq_norm()
    };
    assert!(obj(&w, &b) <= obj(&w0, &b0) * (1.0 + 1e-7));
}

/// `ridge_fit`: the gradient of ½‖T − HWᵀ − 1bᵀ‖² + λ/2‖W‖², written out here in f64, vanishes
/// at the returned head (relative to the gradient's size at the zero head).
#[test]
fn ridge_fit_satisfies_the_normal_equations() {
    let (h, t, lambda) = (rand_m(40, 5, 31, 1.0), rand_m(40, 3, 32, 1.0), 0.7);
    let (w, b) = blocks::ridge_fit(&h.to_tensor(), &t.to_tensor(), lambda, "head").unwrap();
    let (w, b) = (M::from_tensor(&w), M::from_tensor(&b.unsqueeze(0).unwrap()));
    let (mut worst, mut scale) = (0f64, 0f64);
    for k in 0..3 {
        let resid = |i: usize, with_head: bool| {
            let fit: f64 = (0..5).map(|j| h.at(i, j) * w.at(k, j)).sum::<f64>() + b.at(0, k);
            (if with_head { fit } else { 0.0 }) - t.at(i, k)
        };
        for j in 0..=5 {
            let (mut g, mut g0) = (0.0, 0.0);
            for i in 0..40 {
                let x = if j < 5 { h.at(i, j) } else { 1.0 };
                g += x * resid(i, true);
                g0 += x * resid(i, false);
            }
            if j < 5 {
                g += lambda * w.at(k, j);
            }
            worst = worst.max(g.abs());
            scale = scale.max(g0.abs());
        }
    }
    assert!(worst <= 1e-4 * scale, "gradient {worst} vs {scale}");
}

/// The hidden `V_i` block before a narrow layer (the head) with a large `rWᵀW` and a large
/// residual stream, near its minimiser: the setting where the system for `V` itself, in `f32`,
/// loses the step to the rounding of its right-hand side (in a 10-residual-layer ResNet it raised
/// `Φ` in every sweep). The block's objective, evaluated in `f64` in the test, must fall by at
/// least half of what an `f64` solve of the same subproblem (Gaussian elimination) gains.
#[test]
fn hidden_activation_before_a_narrow_layer_solves_for_the_step() {
    let (n, d, k) = (1024, 200, 10);
    let c = BcdConfig::default()
        .gamma(1.0)
        .rho(1.0)
        .penalty_growth(100.0);
    let (g, r) = (c.gamma, c.penalty_growth * c.rho);
    // A residual stream of entries ~10–30, and its targets a little off the current point.
    let v0 = rand_m(n, d, 40, 10.0).map(|x| 20.0 + x);
    let u_i = rand_m(n, d, 41, 1.0);
    let skip = v0
        .zip(&u_i, |v, u| v - u.max(0.0))
        .zip(&rand_m(n, d, 42, 1e-2), |s, e| s + e);
    let (w, b) = (rand_m(k, d, 43, 1.0), rand_m(1, k, 44, 0.5));
    let u_next = reference::affine(&v0, &w, &b).zip(&rand_m(n, k, 45, 1e-2), |z, e| z + e);
    let target = skip.zip(&u_i, |s, u| s + u.max(0.0));
    let block_objective = |v: &M| {
        let own = v.zip(&target, |a, t| a - t).sq_norm();
        let coupling = u_next
            .zip(&reference::affine(v, &w, &b), |a, z| a - z)
            .sq_norm();
        g / 2.0 * own + r / 2.0 * coupling
    };
    // f64: (γI + rWᵀW)Vᵀ = (γT + r(U_{i+1} − 1bᵀ)W)ᵀ.
    let system = w.t().mul(&w).map(|x| r * x).zip(
        &M::from_fn(d, d, |i, j| f64::from(u8::from(i == j))),
        |a, e| a + g * e,
    );
    let shifted = M::from_fn(n, k, |i, j| u_next.at(i, j) - b.at(0, j));
    let rhs = target
        .map(|t| g * t)
        .zip(&shifted.mul(&w).map(|x| r * x), |a, c| a + c);
    let v_ref = system.solve(&rhs.t()).t();

    let t = |m: &M| m.to_tensor();
    let (v_t, u_t, s_t, un_t, w_t) = (t(&v0), t(&u_i), t(&skip), t(&u_next), t(&w));
    let b_t = b.to_tensor().reshape(k).unwrap();
    let nb = updates::HiddenNeighbours {
        v: &v_t,
        u_i: &u_t,
        skip: Some(&s_t),
        u_next: &un_t,
        w_next: &w_t,
        b_next: &b_t,
        reader: None,
    };
    let v = updates::hidden_activation(nb, Activation::Relu, &c, "V_test").unwrap();
    let before = block_objective(&v0);
    let best_gain = before - block_objective(&v_ref);
    let gain = before - block_objective(&M::from_tensor(&v));
    assert!(best_gain > 0.0, "the f64 solve gains {best_gain:.3e}");
    assert!(
        gain >= 0.5 * best_gain,
        "the block gains {gain:.6e} of its objective {before:.6e}, an f64 solve {best_gain:.6e}"
    );
}
