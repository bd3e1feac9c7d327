//! The closed-form block updates of the three-splitting sweep that only it has, one function
//! per block: the output pre-activation `U_L`, the weight block with coupling `ρ`, the hidden
//! activations `V_i` (one row solve) and the hidden pre-activations `U_i` (an elementwise
//! prox). The output activation and the weight solve itself are in `crate::blocks`.
//!
//! `Z_i = Ṽ_{i−1}W̃_iᵀ` is the layer's affine map applied to the current lifted input. Every
//! function returns the exact minimiser of its block's subproblem (up to floating-point
//! round-off), taking the newest values of all other blocks as arguments.

use candle_core::Tensor;

use crate::activation::{with_sigma, Activation, ScalarProx};
#[cfg(test)]
use crate::blocks::{weights_for, AugmentedGram, PenaltyWeights};
use crate::config::BcdConfig;
use crate::error::Result;
use crate::kernels::{self, Addend, Op, Work};
use crate::solve::{self, RowSolve};

/// `U_L ← argmin γ/2‖V_L − U‖² + ρ/2‖U − Z_L‖² = (γV_L + ρZ_L)/(γ + ρ)`.
pub fn output_preactivation(v_l: &Tensor, z_l: &Tensor, cfg: &BcdConfig) -> Result<Tensor> {
    let (g, r) = (cfg.gamma, cfg.rho);
    if !kernels::fused(v_l) {
        return Ok((v_l.affine(g / (g + r), 0.0)? + z_l.affine(r / (g + r), 0.0)?)?);
    }
    kernels::map([v_l, z_l], |[v, z]| {
        ((g * v as f64 + r * z as f64) / (g + r)) as f32
    })
}

/// `W̃_i ← argmin λ/2‖W‖² + ρ/2‖U_i − Ṽ_{i−1}W̃ᵀ‖² + α/2‖W̃ − W̃_i^old‖²`, i.e. the SPD system
/// `(ρṼᵀṼ + D) W̃ᵀ = ρṼᵀU_i + αW̃^oldᵀ` with `D = diag(α+λ, …, α+λ, α)` (no ridge on the bias),
/// solved by Cholesky in `f64`. Returns `(W, b)`. (The optimizer's own weight block builds the
/// same system from sums over the ranks; see `BcdOptimizer::exact_weights`.)
#[cfg(test)]
pub fn weights(
    gram: &AugmentedGram,
    v_prev: &Tensor,
    u: &Tensor,
    w_old: &Tensor,
    b_old: &Tensor,
    cfg: &BcdConfig,
    block: &str,
) -> Result<(Tensor, Tensor)> {
    let weights = PenaltyWeights {
        coupling: cfg.rho,
        alpha: cfg.alpha,
        lambda: cfg.lambda,
    };
    weights_for(gram, v_prev, u, w_old, b_old, weights, block)
}

/// The neighbours of a hidden activation block `V_i` in the objective.
#[derive(Debug, Clone, Copy)]
pub struct HiddenNeighbours<'a> {
    /// `V_i` itself, the point a step is taken from (see [`hidden_activation`]).
    pub v: &'a Tensor,
    /// `U_i`.
    pub u_i: &'a Tensor,
    /// `V_{i−1}` when layer `i` is residual (`V_i = V_{i−1} + σ(U_i)`), else `None`.
    pub skip: Option<&'a Tensor>,
    /// `U_{i+1}`.
    pub u_next: &'a Tensor,
    /// `W_{i+1}`, `[d_{i+1}, d_i]`.
    pub w_next: &'a Tensor,
    /// `b_{i+1}`.
    pub b_next: &'a Tensor,
    /// The residual layer that reads `V_i` as its skip, if any.
    pub reader: Option<SkipReader<'a>>,
}

/// The residual layer `c` that reads `V_i` as its skip (`c = i + 1`, or `i + 2` with
/// [`Branch::Pair`](crate::Branch::Pair)), as `V_i`'s block sees its term
/// `w/2‖V_c − V_i − σ_c(U_c)‖²`.
#[derive(Debug, Clone, Copy)]
pub struct SkipReader<'a> {
    /// `V_c`.
    pub v: &'a Tensor,
    /// `U_c`.
    pub u: &'a Tensor,
    /// `σ_c`.
    pub act: Activation,
    /// `w = q^{c−i}γ`, the term's weight relative to layer `i`'s ([`BcdConfig::skip_weight`]).
    pub weight: f64,
}

impl SkipReader<'_> {
    /// `V_c − σ_c(U_c)`, what the term fits `V_i` to, by tensor operations.
    pub(crate) fn target_tensor(&self) -> Result<Tensor> {
        Ok((self.v - self.act.apply_tensor(self.u)?)?)
    }
}

/// Hidden `V_i ← argmin γ/2‖V − S_i − σ_i(U_i)‖² + qρ/2‖U_{i+1} − [V 1]W̃_{i+1}ᵀ‖²
///                      [+ w/2‖V_c − V − σ_c(U_c)‖² if residual layer c reads V_i as its skip]`
/// (`S_i` the skip of layer `i` if it is residual, else 0; `q` the ratio of layer `i+1`'s weight
/// in `Φ` to layer `i`'s, `BcdConfig::penalty_growth`; `w` = [`SkipReader::weight`]), i.e. with
/// `r = qρ`
/// `V = (γ(S_i + σ_i(U_i)) [+ w(V_c − σ_c(U_c))] + r(U_{i+1} − 1b_{i+1}ᵀ)W_{i+1}) (sI + rWᵀW)⁻¹`
/// with `s = γ`, or `γ + w` when a residual layer reads `V_i`.
///
/// **(choice)** When layer `i+1` is narrower than layer `i` (the head, as a rule; such a layer
/// is never residual) the system is solved for the step `Δ = V − V_i` from the residuals at the
/// current point, `Δ(γI + rWᵀW) = γ(S_i + σ(U_i) − V_i) + r(U_{i+1} − Z_{i+1})W` with
/// `Z_{i+1} = [V_i 1]W̃_{i+1}ᵀ`: the same minimiser, but its `f32` rounding is relative to the
/// residuals rather than to `V` itself. There the Woodbury form cancels two terms of the size of
/// the right-hand side, and with a large `rWᵀW` (a ResNet's wide residual stream under `q = 100`,
/// `ρ = 1`) the direct form raised `Φ` in every sweep. The extra product `Z_{i+1}` costs
/// `N·d_i·d_{i+1}`: little beside the block's own work for a narrow next layer, a fifth more for
/// a square one, where no rise has been measured.
pub fn hidden_activation(
    nb: HiddenNeighbours,
    act: Activation,
    cfg: &BcdConfig,
    block: &str,
) -> Result<Tensor> {
    let (rows, cols) = nb.w_next.dims2()?;
    // (A residual layer keeps its width, so a narrower next layer never makes a skip's reader.)
    if rows < cols && nb.reader.is_none() {
        return hidden_activation_step(nb, act, cfg, block);
    }
    let (g, r) = cfg.hidden_weights();
    // c = W_{i+1}ᵀ b_{i+1}, so that (U − 1bᵀ)W = UW − 1cᵀ.
    let c = row_times_matrix(&solve::host_f32(nb.b_next)?, nb.w_next, r)?;
    if !kernels::fused(nb.u_i) {
        return hidden_activation_tensors(nb, act, cfg, &c, block);
    }
    // One N × d_i buffer: the right-hand side is built in it and then solved in place.
    let mut rhs = with_sigma!(act, |sigma| Work::map_row([nb.u_i], &c, |[u], c| {
        (g * sigma.apply(u as f64) - c) as f32
    }))?;
    if let Some(skip) = nb.skip {
        rhs.update([skip], |s, [v]| (s as f64 + g * v as f64) as f32)?;
    }
    let mut shift = g;
    if let Some(c) = nb.reader {
        let w = c.weight;
        with_sigma!(c.act, |sigma| rhs.update([c.v, c.u], |s, [v, u]| {
            (s as f64 + w * (v as f64 - sigma.apply(u as f64))) as f32
        }))?;
        shift = g + w;
    }
    rhs.add_matmul(Op::N(nb.u_next), Op::N(nb.w_next), r as f32)?;
    RowSolve::new(nb.w_next, shift, r, block)?.apply_in_place(&mut rhs)?;
    rhs.into_tensor()
}

/// [`hidden_activation`] solved for its step from the residuals at `V_i` (see there).
fn hidden_activation_step(
    nb: HiddenNeighbours,
    act: Activation,
    cfg: &BcdConfig,
    block: &str,
) -> Result<Tensor> {
    // Only reached when no residual layer reads V_i: the shift is γ.
    let (g, r) = cfg.hidden_weights();
    let solve = RowSolve::new(nb.w_next, g, r, block)?;
    // The next layer's pre-activation residual U_{i+1} − Z_{i+1} at the current V_i.
    let residual_next = kernels::sub(nb.u_next, &kernels::linear(nb.v, nb.w_next, nb.b_next)?)?;
    if !kernels::fused(nb.v) {
        let rhs = (act.output_tensor(nb.u_i, nb.skip)? - nb.v)?.affine(g, 0.0)?;
        let rhs = kernels::matmul(
            Op::N(&residual_next),
            Op::N(nb.w_next),
            r as f32,
            Addend::Matrix(&rhs),
        )?;
        return Ok((nb.v + solve.apply(&rhs)?)?);
    }
    // γ(S_i + σ(U_i) − V_i), the residual of V_i's own activation penalty.
    let own = with_sigma!(act, |sigma| match nb.skip {
        Some(skip) => kernels::map([nb.u_i, skip, nb.v], |[u, s, v]| {
            (g * (s as f64 + sigma.apply(u as f64) - v as f64)) as f32
        }),
        None => kernels::map([nb.u_i, nb.v], |[u, v]| {
            (g * (sigma.apply(u as f64) - v as f64)) as f32
        }),
    })?;
    let mut rhs = Work::from_tensor(own)?;
    rhs.add_matmul(Op::N(&residual_next), Op::N(nb.w_next), r as f32)?;
    solve.apply_in_place(&mut rhs)?;
    rhs.update([nb.v], |step, [v]| v + step)?;
    rhs.into_tensor()
}

/// [`hidden_activation`] by tensor operations (the device path), `c = rW_{i+1}ᵀb_{i+1}`.
fn hidden_activation_tensors(
    nb: HiddenNeighbours,
    act: Activation,
    cfg: &BcdConfig,
    c: &[f64],
    block: &str,
) -> Result<Tensor> {
    let (g, r) = cfg.hidden_weights();
    let c: Vec<f32> = c.iter().map(|&x| x as f32).collect();
    let c = Tensor::from_vec(c, (1, nb.u_i.dim(1)?), nb.u_i.device())?;
    let mut rhs = act
        .output_tensor(nb.u_i, nb.skip)?
        .affine(g, 0.0)?
        .broadcast_sub(&c)?;
    let mut shift = g;
    if let Some(reader) = nb.reader {
        rhs = (rhs + reader.target_tensor()?.affine(reader.weight, 0.0)?)?;
        shift = g + reader.weight;
    }
    let rhs = kernels::matmul(
        Op::N(nb.u_next),
        Op::N(nb.w_next),
        r as f32,
        Addend::Matrix(&rhs),
    )?;
    RowSolve::new(nb.w_next, shift, r, block)?.apply(&rhs)
}

/// `s · bᵀW` in `f64` for `W` of shape `[k, d]` (rows of `W` read in memory order).
fn row_times_matrix(b: &[f32], w: &Tensor, s: f64) -> Result<Vec<f64>> {
    let d = w.dim(1)?;
    let w = solve::host_f32(w)?;
    let mut c = vec![0f64; d];
    for (row, &bi) in w.chunks(d.max(1)).zip(b) {
        c.iter_mut()
            .zip(row)
            .for_each(|(c, &x)| *c += bi as f64 * x as f64);
    }
    c.iter_mut().for_each(|c| *c *= s);
    Ok(c)
}

/// Value of the hidden `V_i` subproblem of [`hidden_activation`] at `v`, in units of layer
/// `i`'s weight in `Φ` (used to safeguard the projection onto a
/// [`VConstraint`](crate::VConstraint)).
pub fn hidden_activation_value(
    v: &Tensor,
    nb: HiddenNeighbours,
    act: Activation,
    cfg: &BcdConfig,
) -> Result<f64> {
    let (g, r) = cfg.hidden_weights();
    if !kernels::fused(v) {
        let own = act.fit_sq_tensor(v, nb.skip, nb.u_i)?;
        let z = kernels::linear(v, nb.w_next, nb.b_next)?;
        let coupling = kernels::sq_dist(nb.u_next, &z)?;
        let read = match nb.reader {
            Some(c) => c.weight * c.act.fit_sq_tensor(c.v, Some(v), c.u)?,
            None => 0.0,
        };
        return Ok(0.5 * (g * own + read) + 0.5 * r * coupling);
    }
    let own = with_sigma!(act, |sigma| match nb.skip {
        Some(skip) => kernels::sum_map([v, skip, nb.u_i], |[v, s, u]| {
            (v as f64 - s as f64 - sigma.apply(u as f64)).powi(2)
        })?,
        None => kernels::sum_map([v, nb.u_i], |[v, u]| {
            (v as f64 - sigma.apply(u as f64)).powi(2)
        })?,
    });
    let z = kernels::linear(v, nb.w_next, nb.b_next)?;
    let coupling = kernels::sq_dist(nb.u_next, &z)?;
    let read = match nb.reader {
        Some(c) => {
            c.weight
                * with_sigma!(c.act, |sigma| kernels::sum_map(
                    [c.v, v, c.u],
                    |[n, v, u]| (n as f64 - v as f64 - sigma.apply(u as f64)).powi(2)
                ))?
        }
        None => 0.0,
    };
    Ok(0.5 * (g * own + read) + 0.5 * r * coupling)
}

/// Hidden `U_i ← argmin γ/2‖V_i − σ(U)‖² + ρ/2‖U − Z_i‖² + α/2‖U − U_i^old‖²`, elementwise
/// by [`Activation::prox`] with `a = (ρz + αu^old)/(ρ + α)` and `c = (ρ + α)/γ` (`α` the lifted
/// blocks' proximal weight, `BcdConfig::alpha_lifted`). Returns the new
/// `U_i` and `‖U_i − U_i^old‖²` (computed in the same pass).
pub fn hidden_preactivation(
    z: &Tensor,
    u_old: &Tensor,
    v: &Tensor,
    act: Activation,
    cfg: &BcdConfig,
) -> Result<(Tensor, f64)> {
    let (prox, weights) = preactivation_prox(act, cfg);
    if !kernels::fused(z) {
        return preactivation_tensors(z, u_old, v, prox, weights);
    }
    // The piecewise-linear prox gets its own loop (no per-entry dispatch, `f32` arithmetic:
    // vectorisable).
    if prox.is_piecewise_linear() {
        kernels::map_step([z, u_old, v], 1, move |[z, u, v]| {
            prox.eval_piecewise_f32(v, weights.a_f32(z, u))
        })
    } else {
        kernels::map_step([z, u_old, v], 1, move |[z, u, v]| {
            prox.eval(v as f64, weights.a(z, u)) as f32
        })
    }
}

/// [`hidden_preactivation`] computed in the buffer that holds `Z_i` (which it consumes).
pub fn hidden_preactivation_in_place(
    mut z: Work,
    u_old: &Tensor,
    v: &Tensor,
    act: Activation,
    cfg: &BcdConfig,
) -> Result<(Tensor, f64)> {
    let (prox, weights) = preactivation_prox(act, cfg);
    if let Work::Device(z) = &z {
        return preactivation_tensors(z, u_old, v, prox, weights);
    }
    // Two closures as in `hidden_preactivation`: one generic closure with the activation
    // dispatched per entry ran the pass at half the speed (0.18-0.23 s vs 0.11-0.14 s).
    let sq = if prox.is_piecewise_linear() {
        z.update_step([u_old, v], 0, move |z, [u, v]| {
            prox.eval_piecewise_f32(v, weights.a_f32(z, u))
        })?
    } else {
        z.update_step([u_old, v], 0, move |z, [u, v]| {
            prox.eval(v as f64, weights.a(z, u)) as f32
        })?
    };
    Ok((z.into_tensor()?, sq))
}

/// [`hidden_preactivation`] by tensor operations (the device path).
fn preactivation_tensors(
    z: &Tensor,
    u_old: &Tensor,
    v: &Tensor,
    prox: ScalarProx,
    weights: CentreWeights,
) -> Result<(Tensor, f64)> {
    let a = (z.affine(weights.z, 0.0)? + u_old.affine(weights.u, 0.0)?)?;
    let u = prox.eval_tensor(v, &a)?;
    let step = kernels::sq_dist(&u, u_old)?;
    Ok((u, step))
}

/// The prox of [`hidden_preactivation`] and the weights of its centre `a`.
fn preactivation_prox(act: Activation, cfg: &BcdConfig) -> (ScalarProx, CentreWeights) {
    let (g, r, a) = (cfg.gamma, cfg.rho, cfg.lifted_prox());
    let weights = CentreWeights {
        z: r / (r + a),
        u: a / (r + a),
    };
    (ScalarProx::new(act, (r + a) / g), weights)
}

/// `a = (ρz + αu^old)/(ρ + α)` as `z·wz + u·wu`.
#[derive(Debug, Clone, Copy)]
struct CentreWeights {
    z: f64,
    u: f64,
}

impl CentreWeights {
    #[inline]
    fn a(self, z: f32, u: f32) -> f64 {
        self.z * z as f64 + self.u * u as f64
    }

    /// [`Self::a`] in `f32` (for [`ScalarProx::eval_piecewise_f32`]).
    #[inline]
    fn a_f32(self, z: f32, u: f32) -> f32 {
        self.z as f32 * z + self.u as f32 * u
    }
}
