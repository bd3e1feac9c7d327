//! The prox-linear block updates of the two-splitting formulation.
//!
//! The output block `V_L` and the output weights `W̃_L` are the exact closed forms of
//! `crate::blocks` with `U_L` replaced by `Z_L = Ṽ_{L−1}W̃_Lᵀ` and `ρ` by `γ`. A hidden `V_i` or `W̃_i` sits inside `σ`, so it takes a
//! prox-linear step: the coupling term is linearised at the old value and `α/2‖· − ·^old‖²` is
//! added, which is a gradient step of size `1/α` on that term (ReLU uses its a.e. derivative).
//! **(choice)** `α` starts at the configured value and doubles until the block's objective does
//! not increase; after 60 doublings the old value is kept, so descent always holds.

use candle_core::Tensor;

use crate::activation::{with_sigma, Activation};
use crate::comm::{self, Communicator};
use crate::config::VConstraint;
use crate::error::Result;
use crate::kernels::{self, Addend, Op};

/// Doublings of `α` before a prox-linear block keeps its old value.
const MAX_DOUBLINGS: usize = 60;

/// The next layer's penalty `γ/2‖V_{i+1} − [V] − σ(ṼW̃_{i+1}ᵀ)‖²` as a function of `V = V_i`.
#[derive(Debug, Clone, Copy)]
pub struct NextLayer<'a> {
    /// `W_{i+1}`.
    pub w: &'a Tensor,
    /// `b_{i+1}`.
    pub b: &'a Tensor,
    /// `V_{i+1}`.
    pub v: &'a Tensor,
    /// Whether layer `i+1` is residual (`S_{i+1} = V_i`).
    pub residual: bool,
    /// `σ_{i+1}` (the identity for the output layer).
    pub act: Activation,
}

/// Result of a prox-linear `V_i` step.
#[derive(Debug, Clone)]
pub struct ActivationStep {
    /// The new `V_i` (the old one when no step decreased the objective).
    pub value: Tensor,
    /// The next layer's product at the new value, `Ṽ_iW̃_{i+1}ᵀ`.
    pub z: Tensor,
    /// The `α` that was accepted (`∞` when the old value was kept); read by the exactness
    /// tests, which check the step against it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub alpha: f64,
}

/// Result of a prox-linear `W̃_i` step.
#[derive(Debug, Clone)]
pub struct WeightStep {
    /// The new `W_i` (the old one when no step decreased the objective).
    pub weight: Tensor,
    /// The new `b_i`.
    pub bias: Tensor,
    /// The layer's product at the new weights, `Ṽ_{i−1}W̃_iᵀ`.
    pub z: Tensor,
    /// The `α` that was accepted (`∞` when the old value was kept); read by the exactness
    /// tests, which check the step against it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub alpha: f64,
}

/// `γ/2‖T − σ(z)‖²`.
fn fit(t: &Tensor, z: &Tensor, act: Activation, gamma: f64) -> Result<f64> {
    if !kernels::fused(t) {
        return Ok(0.5 * gamma * act.fit_sq_tensor(t, None, z)?);
    }
    let s = with_sigma!(act, |sigma| kernels::sum_map([t, z], |[t, z]| {
        (t as f64 - sigma.apply(z as f64)).powi(2)
    }))?;
    Ok(0.5 * gamma * s)
}

/// `D = (T − σ(z)) ⊙ σ'(z)`, the fit's negative gradient with respect to `z` over `γ`.
fn fit_gradient(t: &Tensor, z: &Tensor, act: Activation) -> Result<Tensor> {
    if !kernels::fused(t) {
        return Ok(((t - act.apply_tensor(z)?)? * act.derivative_tensor(z)?)?);
    }
    with_sigma!(act, |sigma| kernels::map([t, z], |[t, z]| {
        ((t as f64 - sigma.apply(z as f64)) * sigma.derivative(z as f64)) as f32
    }))
}

/// The target of layer `i+1`'s fit given `V_i = v`: `V_{i+1} − [v]`.
fn next_target(next: &NextLayer, v: &Tensor) -> Result<Tensor> {
    if next.residual {
        kernels::sub(next.v, v)
    } else {
        Ok(next.v.clone())
    }
}

/// Hidden `V_i` prox-linear step (projected onto `constraint`) on `γ/2‖V − own‖² + γ/2‖V_{i+1} − [V] − σ(ṼW̃_{i+1}ᵀ)‖²`,
/// where `own = S_i + σ(Z_i)`: `V = (γ·own + αV^old − ∇h(V^old))/(γ + α)` with
/// `∇h = −γ (D W_{i+1} [+ R])`, `R = V_{i+1} − [V^old] − σ(Z_{i+1})`, `D = R ⊙ σ'(Z_{i+1})`.
/// The step is on this rank's rows; the objective it compares is summed over all ranks, so every
/// rank accepts the same `α`.
#[allow(clippy::too_many_arguments)]
pub fn hidden_activation(
    own: &Tensor,
    v_old: &Tensor,
    z_next_old: &Tensor,
    next: NextLayer,
    gamma: f64,
    alpha0: f64,
    constraint: VConstraint,
    comm: &dyn Communicator,
) -> Result<ActivationStep> {
    let act = next.act;
    let t_old = next_target(&next, v_old)?;
    let [f_old] = comm::sum(
        comm,
        [0.5 * gamma * kernels::sq_dist(v_old, own)? + fit(&t_old, z_next_old, act, gamma)?],
    );
    let d = fit_gradient(&t_old, z_next_old, act)?;
    // −∇h/γ = D W [+ R]
    let neg_grad = if next.residual {
        let r = match kernels::fused(&t_old) {
            true => with_sigma!(act, |sigma| kernels::map([&t_old, z_next_old], |[t, z]| {
                (t as f64 - sigma.apply(z as f64)) as f32
            }))?,
            false => (&t_old - act.apply_tensor(z_next_old)?)?,
        };
        kernels::matmul(Op::N(&d), Op::N(next.w), 1.0, Addend::Matrix(&r))?
    } else {
        kernels::matmul(Op::N(&d), Op::N(next.w), 1.0, Addend::None)?
    };
    let mut alpha = alpha0;
    for _ in 0..MAX_DOUBLINGS {
        // The linearised subproblem is isotropic, so projecting its minimiser is exact.
        let v = match kernels::fused(own) {
            true => kernels::map([own, v_old, &neg_grad], |[o, v, g]| {
                let x = (gamma * o as f64 + alpha * v as f64 + gamma * g as f64) / (gamma + alpha);
                constraint.project(x) as f32
            })?,
            false => {
                let k = 1.0 / (gamma + alpha);
                let x =
                    ((own + &neg_grad)?.affine(gamma * k, 0.0)? + v_old.affine(alpha * k, 0.0)?)?;
                constraint.project_all(&x)?
            }
        };
        let z = kernels::linear(&v, next.w, next.b)?;
        let [f] = comm::sum(
            comm,
            [0.5 * gamma * kernels::sq_dist(&v, own)?
                + fit(&next_target(&next, &v)?, &z, act, gamma)?],
        );
        if f <= f_old {
            return Ok(ActivationStep { value: v, z, alpha });
        }
        alpha *= 2.0;
    }
    Ok(ActivationStep {
        value: v_old.clone(),
        z: z_next_old.clone(),
        alpha: f64::INFINITY,
    })
}

/// Hidden `W̃_i` prox-linear step on `γ/2‖T − σ(Ṽ_{i−1}W̃ᵀ)‖² + λ/2‖W‖²` with `T = V_i − S_i`:
/// `W = (αW^old + γDᵀV_{i−1})/(α + λ)`, `b = b^old + γ(1ᵀD)/α`, `D = (T − σ(Z_i)) ⊙ σ'(Z_i)`.
/// `DᵀV_{i−1}`, `1ᵀD` and the fit are summed over all ranks' rows, so every rank takes the same
/// step.
#[allow(clippy::too_many_arguments)]
pub fn weights(
    input: &Tensor,
    target: &Tensor,
    z_old: &Tensor,
    w_old: &Tensor,
    b_old: &Tensor,
    act: Activation,
    gamma: f64,
    alpha0: f64,
    lambda: f64,
    comm: &dyn Communicator,
) -> Result<WeightStep> {
    let ridge = |w: &Tensor| -> Result<f64> { Ok(0.5 * lambda * kernels::sq_norm(w)?) };
    let [g_old] = comm::sum(comm, [fit(target, z_old, act, gamma)?]);
    let g_old = g_old + ridge(w_old)?;
    let d = fit_gradient(target, z_old, act)?;
    let dtv = comm::sum_tensor(
        comm,
        &kernels::matmul(Op::T(&d), Op::N(input), 1.0, Addend::None)?,
    )?;
    let mut dsum = kernels::col_sums(&d)?;
    comm.sum_f64(&mut dsum);
    let dsum = Tensor::from_vec(
        dsum.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        b_old.dims1()?,
        b_old.device(),
    )?;
    let mut alpha = alpha0;
    for _ in 0..MAX_DOUBLINGS {
        let (w, b) = match kernels::fused(w_old) {
            true => (
                kernels::map([w_old, &dtv], |[w, g]| {
                    ((alpha * w as f64 + gamma * g as f64) / (alpha + lambda)) as f32
                })?,
                kernels::map([b_old, &dsum], |[b, g]| {
                    (b as f64 + gamma * g as f64 / alpha) as f32
                })?,
            ),
            false => {
                let k = 1.0 / (alpha + lambda);
                let w = (w_old.affine(alpha * k, 0.0)? + dtv.affine(gamma * k, 0.0)?)?;
                (w, (b_old + dsum.affine(gamma / alpha, 0.0)?)?)
            }
        };
        let z = kernels::linear(input, &w, &b)?;
        let [g] = comm::sum(comm, [fit(target, &z, act, gamma)?]);
        if g + ridge(&w)? <= g_old {
            return Ok(WeightStep {
                weight: w,
                bias: b,
                z,
                alpha,
            });
        }
        alpha *= 2.0;
    }
    Ok(WeightStep {
        weight: w_old.clone(),
        bias: b_old.clone(),
        z: z_old.clone(),
        alpha: f64::INFINITY,
    })
}
