//! Exactness of the image-layer blocks against an independent `f64` reference built by plain
//! loops over samples, channels, positions and kernel taps (no im2col, no Candle convolution):
//! the operator as a dense matrix, the kernel block as a dense least-squares solve, the
//! activation block as a dense linear solve.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use super::*;
use crate::comm::SingleProcess;
use crate::exactness_tests::dense::{rand_m, M};
use crate::exactness_tests::reference::{self, Hp};
use crate::three_split::updates::{HiddenNeighbours, SkipReader};
use crate::{Activation, BcdConfig, BcdOptimizer, Network, Stage, WeightInit};

/// The pooled input value `(c, py, px)` of sample row `v` (0 outside the image: padding).
fn pooled_at(s: &Spatial, v: &[f64], c: usize, py: isize, px: isize) -> f64 {
    let p = s.pool.max(1);
    let pooled = s.pooled();
    if py < 0 || px < 0 || py as usize >= pooled.height || px as usize >= pooled.width {
        return 0.0;
    }
    let (h, w) = (s.input.height, s.input.width);
    let mut sum = 0.0;
    for a in 0..p {
        for b in 0..p {
            sum += v[c * h * w + (py as usize * p + a) * w + px as usize * p + b];
        }
    }
    sum / (p * p) as f64
}

/// The layer's linear map as a dense `d_out × d_in` matrix (`w` its weight, row-major),
/// column by column: the map of each unit input.
fn operator(s: &Spatial, w: &[f64], d_out: usize) -> M {
    let d_in = s.input.len();
    let mut a = M::zeros(d_out, d_in);
    for col in 0..d_in {
        let mut e = vec![0.0; d_in];
        e[col] = 1.0;
        let z = apply(s, w, &e, d_out);
        for (row, zr) in z.iter().enumerate() {
            a.d[row * d_in + col] = *zr;
        }
    }
    a
}

/// The patch rows of one sample: `[H_o·W_o, C·k²]` (a linear layer: its pooled image).
fn patches(s: &Spatial, v: &[f64]) -> Vec<Vec<f64>> {
    let pooled = s.pooled();
    let Some(c) = s.conv else {
        let mut row = Vec::new();
        for ch in 0..pooled.channels {
            for y in 0..pooled.height {
                for x in 0..pooled.width {
                    row.push(pooled_at(s, v, ch, y as isize, x as isize));
                }
            }
        }
        return vec![row];
    };
    let out = s.output().unwrap();
    let mut rows = Vec::new();
    for y in 0..out.height {
        for x in 0..out.width {
            let mut row = Vec::new();
            for ch in 0..pooled.channels {
                for i in 0..c.kernel {
                    for j in 0..c.kernel {
                        let py = (y * c.stride + i) as isize - c.padding as isize;
                        let px = (x * c.stride + j) as isize - c.padding as isize;
                        row.push(pooled_at(s, v, ch, py, px));
                    }
                }
            }
            rows.push(row);
        }
    }
    rows
}

/// The map (no bias) of one sample: output channel-major, as the lifted rows hold it.
fn apply(s: &Spatial, w: &[f64], v: &[f64], d_out: usize) -> Vec<f64> {
    let rows = patches(s, v);
    let n = s.design_width();
    let m = d_out / rows.len();
    let mut z = vec![0.0; d_out];
    for (pos, row) in rows.iter().enumerate() {
        for o in 0..m {
            let dot: f64 = (0..n).map(|k| w[o * n + k] * row[k]).sum();
            z[o * rows.len() + pos] = dot;
        }
    }
    z
}

fn spatials() -> Vec<(Spatial, usize)> {
    let conv = |out, kernel, stride, padding| Conv2d {
        out_channels: out,
        kernel,
        stride,
        padding,
    };
    let s1 = Spatial {
        input: Image::new(2, 6, 6),
        pool: 1,
        conv: Some(conv(3, 3, 2, 1)),
    };
    let s2 = Spatial {
        input: Image::new(2, 8, 6),
        pool: 2,
        conv: Some(conv(3, 3, 1, 1)),
    };
    let s3 = Spatial {
        input: Image::new(3, 4, 4),
        pool: 2,
        conv: None,
    };
    vec![
        (s1, s1.output().unwrap().len()),
        (s2, s2.output().unwrap().len()),
        (s3, 5),
    ]
}

fn weight_len(s: &Spatial, d_out: usize) -> usize {
    s.design_width() * s.conv.map_or(d_out, |c| c.out_channels)
}

fn weight_tensor(s: &Spatial, w: &M, d_out: usize) -> Tensor {
    let t = w.to_tensor();
    match s.conv {
        Some(c) => t
            .reshape((c.out_channels, s.input.channels, c.kernel, c.kernel))
            .unwrap(),
        None => t.reshape((d_out, s.design_width())).unwrap(),
    }
}

#[test]
fn forward_and_adjoint_match_the_dense_operator() {
    for (s, d_out) in spatials() {
        let w = rand_m(1, weight_len(&s, d_out), 7, 0.5);
        let a = operator(&s, &w.d, d_out);
        let v = rand_m(4, s.input.len(), 8, 1.0);
        let g = rand_m(4, d_out, 9, 1.0);
        let wt = weight_tensor(&s, &w, d_out);
        let z = M::from_tensor(&ops::forward(&s, &v.to_tensor(), &wt, None).unwrap());
        assert!(z.rel_err(&v.mul(&a.t())) < 1e-5, "{s:?}");
        let back = M::from_tensor(&ops::adjoint(&s, &g.to_tensor(), &wt).unwrap());
        assert!(back.rel_err(&g.mul(&a)) < 1e-5, "{s:?}");
    }
}

/// The weight block equals the dense least-squares solve on loop-built patches, and the
/// block's gradient in `W̃` vanishes there.
#[test]
fn kernel_block_is_the_dense_least_squares_solve() {
    let cfg = BcdConfig::default()
        .gamma(1.5)
        .rho(0.7)
        .alpha(2.0)
        .lambda(0.3);
    let hp = Hp {
        gamma: cfg.gamma,
        rho: cfg.rho,
        alpha: cfg.alpha,
        lambda: cfg.lambda,
        growth: cfg.penalty_growth,
        alpha_lifted: cfg.alpha_lifted.unwrap_or(cfg.alpha),
    };
    for (s, d_out) in spatials() {
        let stage = match s.conv {
            Some(c) => Stage::Conv2d(c),
            None => Stage::Linear(d_out),
        };
        let arch =
            crate::Architecture::cnn(s.input, &[Stage::AvgPool(s.pool), stage], Activation::Relu)
                .unwrap();
        let varmap = VarMap::new();
        let net = Network::init(&arch, &varmap, WeightInit::Glorot, 3, &Device::Cpu).unwrap();
        let n = 5;
        let x = rand_m(n, s.input.len(), 11, 1.0);
        let y = rand_m(n, d_out, 12, 1.0);
        let mut opt = BcdOptimizer::new(&net, x.to_tensor(), y.to_tensor(), cfg.clone()).unwrap();
        let w_old = M::from_tensor(&net.weight(0).flatten_from(1).unwrap());
        let b_old = M::from_tensor(net.bias(0));
        let target = rand_m(n, d_out, 13, 1.0);
        let residual = opt.residual(0, &target.to_tensor(), None).unwrap();
        opt.exact_weights(0, &residual, cfg.rho).unwrap();

        // Reference: patch rows and their target rows, by loops.
        let positions = s.positions();
        let m = d_out / positions;
        let mut design = Vec::new();
        let mut targets = Vec::new();
        for i in 0..n {
            for (pos, row) in patches(&s, &x.d[i * x.c..(i + 1) * x.c])
                .into_iter()
                .enumerate()
            {
                design.extend(row);
                targets.extend((0..m).map(|o| target.at(i, o * positions + pos)));
            }
        }
        let rows = n * positions;
        let design = M {
            r: rows,
            c: s.design_width(),
            d: design,
        };
        let targets = M {
            r: rows,
            c: m,
            d: targets,
        };
        let (w_ref, b_ref) = reference::weights(&design, &targets, &w_old, &b_old, hp);
        let w = M::from_tensor(&net.weight(0).flatten_from(1).unwrap());
        let b = M::from_tensor(net.bias(0));
        assert!(
            w.rel_err(&w_ref) < 1e-4,
            "{s:?}: W {:.3e}",
            w.rel_err(&w_ref)
        );
        assert!(
            b.rel_err(&b_ref) < 1e-4,
            "{s:?}: b {:.3e}",
            b.rel_err(&b_ref)
        );
        // ∇_W = λW − ρ Dᵀ(T − D̃W̃ᵀ) + α(W − W_old), relative to the size of ρDᵀT.
        let resid = targets.zip(
            &design.aug().mul(&M::from_fn(w.c + 1, m, |k, o| {
                if k < w.c {
                    w.at(o, k)
                } else {
                    b.at(0, o)
                }
            })),
            |t, z| t - z,
        );
        let dt_r = design.t().mul(&resid);
        let grad = M::from_fn(m, w.c, |o, k| {
            cfg.lambda * w.at(o, k) - cfg.rho * dt_r.at(k, o)
                + cfg.alpha * (w.at(o, k) - w_old.at(o, k))
        });
        let scale = design.t().mul(&targets).sq_norm().sqrt() * cfg.rho;
        let rel = grad.sq_norm().sqrt() / scale;
        assert!(rel < 1e-5, "{s:?}: gradient {rel:.3e}");
    }
}

/// The activation block under an image layer equals the dense solve of
/// `(sI + qρAᵀA)V = γσ(U_i) [+ w(V_c − U_c)] + qρAᵀ(U_{i+1} − b)` to the CG tolerance, `s = γ`
/// or `γ + w` where the linear closing layer `c = i + 2` of a two-layer block reads `V_i` as its
/// skip with weight `w = q²γ`.
#[test]
fn activation_block_matches_the_dense_solve() {
    let cfg = BcdConfig::default()
        .gamma(1.5)
        .rho(0.7)
        .cg_iterations(500)
        .cg_tolerance(1e-6);
    // q: layer i+1's weight in Φ relative to layer i's (1, or growing towards the output).
    for (act, q, read) in [
        (Activation::Relu, 1.0, false),
        (Activation::Tanh, 1.0, false),
        (Activation::Relu, 8.0, false),
        (Activation::Relu, 1.0, true),
        (Activation::Tanh, 3.0, true),
    ] {
        let cfg = cfg.clone().penalty_growth(q);
        for (s, d_out) in spatials() {
            let n = 3;
            let w = rand_m(1, weight_len(&s, d_out), 21, 0.5);
            let bias_len = s.conv.map_or(d_out, |c| c.out_channels);
            let b = rand_m(1, bias_len, 22, 0.5);
            let u_i = rand_m(n, s.input.len(), 23, 1.0);
            let u_next = rand_m(n, d_out, 24, 1.0);
            let v_old = rand_m(n, s.input.len(), 25, 1.0);
            let (wt, bt) = (
                weight_tensor(&s, &w, d_out),
                b.to_tensor().reshape(bias_len).unwrap(),
            );
            let (u_t, un_t, v_t) = (u_i.to_tensor(), u_next.to_tensor(), v_old.to_tensor());
            // The closing layer's V_c, U_c (the identity is its activation).
            let (v_c, u_c) = (
                rand_m(n, s.input.len(), 26, 1.0),
                rand_m(n, s.input.len(), 27, 1.0),
            );
            let (vc_t, uc_t) = (v_c.to_tensor(), u_c.to_tensor());
            let w_read = if read { q * q * cfg.gamma } else { 0.0 };
            let reader = read.then(|| SkipReader {
                v: &vc_t,
                u: &uc_t,
                act: Activation::Identity,
                weight: cfg.skip_weight(2),
            });
            let nb = HiddenNeighbours {
                v: &v_t,
                u_i: &u_t,
                skip: None,
                u_next: &un_t,
                w_next: &wt,
                b_next: &bt,
                reader,
            };
            let (v, iterations, residual) =
                hidden_activation(nb, &s, act, &cfg, &SingleProcess).unwrap();
            assert!(
                residual <= 1e-6 && iterations < 500,
                "{iterations} {residual:.3e}"
            );
            let a = operator(&s, &w.d, d_out);
            let positions = s.positions();
            let lhs = a.t().mul(&a).zip(
                &M::from_fn(a.c, a.c, |i, j| f64::from(u8::from(i == j))),
                |x, e| q * cfg.rho * x + (cfg.gamma + w_read) * e,
            );
            let sigma = |x: f64| match act {
                Activation::Tanh => x.tanh(),
                _ => x.max(0.0),
            };
            let shifted = M::from_fn(n, d_out, |i, j| u_next.at(i, j) - b.d[j / positions]);
            let read_target = v_c.zip(&u_c, |v, u| w_read * (v - u));
            let rhs = u_i
                .map(sigma)
                .zip(&shifted.mul(&a), |s, c| cfg.gamma * s + q * cfg.rho * c)
                .zip(&read_target, |r, t| r + t);
            let v_ref = lhs.solve(&rhs.t()).t();
            let err = M::from_tensor(&v).rel_err(&v_ref);
            assert!(err < 1e-5, "{s:?} {act:?} q = {q}, read {read}: {err:.3e}");
        }
    }
}
