//! The exact block updates both formulations share, one function per block: the output
//! activation `V_L` (the loss's proximal map, row by row) and the weight block `W̃` (one
//! symmetric positive definite solve), with the ridge fit of a linear head built on it.
//!
//! Notation as in `docs/algorithm.md`: `Ṽ = [V 1]`, `W̃ = [W b]`. Every function returns the
//! exact minimiser of its block's subproblem (up to floating-point round-off), taking the newest
//! values of all other blocks as arguments.

use candle_core::Tensor;
use faer::Mat;

#[cfg(test)]
use crate::comm::SingleProcess;
use crate::comm::{self, Communicator};
use crate::config::BcdConfig;
use crate::error::{BcdError, Result};
use crate::kernels::{self, Addend, Op};
use crate::solve;

/// `V_L ← argmin R(V; Y) + γ/2‖V − U_L‖² + α/2‖V − V_L^old‖²`, row by row through
/// [`Loss::row_prox`](crate::loss::Loss::row_prox) with `κ = γ + α`, `T = (γU_L + αV_L^old)/κ`
/// (squared loss: `(Y + γU_L + αV_L^old)/(1 + γ + α)`); `α` is the lifted blocks' proximal
/// weight (`BcdConfig::alpha_lifted`).
pub fn output_activation(
    y: &Tensor,
    u_l: &Tensor,
    v_old: &Tensor,
    cfg: &BcdConfig,
) -> Result<Tensor> {
    let (g, a) = (cfg.gamma, cfg.lifted_prox());
    let kappa = g + a;
    let loss = cfg.loss;
    if !kernels::fused(u_l) {
        let f64 = |t: &Tensor| t.to_dtype(candle_core::DType::F64);
        let t = (f64(u_l)?.affine(g / kappa, 0.0)? + f64(v_old)?.affine(a / kappa, 0.0)?)?;
        return Ok(loss.prox_tensor(y, &t, kappa)?.to_dtype(u_l.dtype())?);
    }
    kernels::map_rows([y, u_l, v_old], |[y, u, v], out| {
        let y: Vec<f64> = y.iter().map(|&x| x as f64).collect();
        let t: Vec<f64> = u
            .iter()
            .zip(v)
            .map(|(&u, &v)| (g * u as f64 + a * v as f64) / kappa)
            .collect();
        let mut o = vec![0f64; y.len()];
        loss.row_prox(&y, &t, kappa, &mut o);
        out.iter_mut().zip(&o).for_each(|(d, s)| *d = *s as f32);
    })
}

/// The augmented Gram matrix `ṼᵀṼ = [[VᵀV, Vᵀ1], [1ᵀV, N]]` of a layer's input, in `f64`.
#[derive(Debug, Clone)]
pub struct AugmentedGram(Mat<f64>);

impl AugmentedGram {
    /// Computes `ṼᵀṼ` for `V` of shape `[N, n]` (one symmetric product plus column sums).
    pub fn new(v: &Tensor) -> Result<Self> {
        let (rows, n) = v.dims2()?;
        // The Gram is symmetric, so its transpose (read in memory order) is the same matrix.
        let g = solve::to_mat_t(&kernels::gram(v)?)?;
        let sums = kernels::col_sums(v)?;
        Ok(Self(Mat::from_fn(n + 1, n + 1, |i, j| {
            match (i < n, j < n) {
                (true, true) => g[(i, j)],
                (true, false) => sums[i],
                (false, true) => sums[j],
                (false, false) => rows as f64,
            }
        })))
    }

    /// The Gram over all ranks' rows (each rank holds that of its own rows).
    pub(crate) fn summed(mut self, comm: &dyn Communicator) -> Self {
        sum_mat(comm, &mut self.0);
        self
    }
}

/// Sums the entries of `m` over all ranks, in place.
fn sum_mat(comm: &dyn Communicator, m: &mut Mat<f64>) {
    if comm.size() == 1 {
        return;
    }
    let mut flat: Vec<f64> = (0..m.ncols())
        .flat_map(|j| (0..m.nrows()).map(move |i| (i, j)))
        .map(|(i, j)| m[(i, j)])
        .collect();
    comm.sum_f64(&mut flat);
    let rows = m.nrows();
    for (k, v) in flat.into_iter().enumerate() {
        m[(k % rows, k / rows)] = v;
    }
}

/// The weights of a `W̃` subproblem `λ/2‖W‖² + c/2‖T − ṼW̃ᵀ‖² + α/2‖W̃ − W̃^old‖²`.
#[derive(Debug, Clone, Copy)]
pub struct PenaltyWeights {
    /// `c`: `ρ` in the three-splitting, `γ` for the two-splitting output layer.
    pub coupling: f64,
    /// `α`.
    pub alpha: f64,
    /// `λ`.
    pub lambda: f64,
}

/// `W̃ ← argmin λ/2‖W‖² + c/2‖T − ṼW̃ᵀ‖² + α/2‖W̃ − W̃^old‖²`, i.e. the SPD system
/// `(cṼᵀṼ + D) W̃ᵀ = cṼᵀT + αW̃^oldᵀ` with `D = diag(α+λ, …, α+λ, α)` (no ridge on the bias),
/// solved by Cholesky in `f64`; the target `T` is `U_i` (three-splitting, `c = ρ`) or `V_L`
/// (two-splitting output layer, `c = γ`). Returns `(W, b)`. The optimizer composes the same
/// steps itself (adding sums over ranks and the mini-batch memory); the tests check them
/// through this function.
#[cfg(test)]
pub fn weights_for(
    gram: &AugmentedGram,
    v_prev: &Tensor,
    u: &Tensor,
    w_old: &Tensor,
    b_old: &Tensor,
    pw: PenaltyWeights,
    block: &str,
) -> Result<(Tensor, Tensor)> {
    let residual = crate::kernels::sub(u, &crate::kernels::linear(v_prev, w_old, b_old)?)?;
    solve_weights(
        &NormalSums::new(gram.clone(), v_prev, &residual)?,
        &augmented_old(w_old, b_old)?,
        pw,
        block,
        w_old.device(),
    )
}

/// `[W^oldᵀ; b^oldᵀ]` (`[n+1, m]`, `f64`): the point a weight block's sums are taken about.
pub(crate) fn augmented_old(w_old: &Tensor, b_old: &Tensor) -> Result<Mat<f64>> {
    let (m, n) = w_old.dims2()?;
    let w0t = solve::to_mat_t(w_old)?;
    let b0 = solve::host_f32(b_old)?;
    Ok(Mat::from_fn(n + 1, m, |i, j| match i < n {
        true => w0t[(i, j)],
        false => b0[j] as f64,
    }))
}

/// The sums a weight block's normal equations are made of, over some rows: the augmented
/// Gram `ṼᵀṼ` and cross product `ṼᵀT` (`Ṽ = [V 1]`), in `f64`. Mini-batch BCD keeps decayed
/// sums of earlier batches in this form; a weight block solves from the cross product of its
/// residual `T − ṼW̃^oldᵀ` instead (docs/algorithm.md, "Weights").
#[derive(Debug, Clone, PartialEq)]
pub struct NormalSums {
    gram: Mat<f64>,
    cross: Mat<f64>,
}

impl NormalSums {
    /// The sums over the rows of `v_prev` (whose augmented Gram is `gram`, taken over) and
    /// target `t`.
    pub(crate) fn new(gram: AugmentedGram, v_prev: &Tensor, t: &Tensor) -> Result<Self> {
        // `TᵀṼ` read in memory order is `ṼᵀT`.
        let vtu = solve::to_mat_t(&kernels::matmul(
            Op::T(t),
            Op::N(v_prev),
            1.0,
            Addend::None,
        )?)?;
        let tsum = kernels::col_sums(t)?;
        let n = vtu.nrows();
        let cross = Mat::from_fn(n + 1, tsum.len(), |i, j| match i < n {
            true => vtu[(i, j)],
            false => tsum[j],
        });
        Ok(Self {
            gram: gram.0,
            cross,
        })
    }

    /// Sums the cross product over all ranks' rows (the Gram it was built with already is).
    pub(crate) fn sum_cross(&mut self, comm: &dyn Communicator) {
        sum_mat(comm, &mut self.cross);
    }

    /// The same rows' sums about `W̃₀` (`old = [W₀ᵀ; b₀ᵀ]`): the cross product becomes
    /// `Ṽᵀ(T − ṼW̃₀ᵀ) = ṼᵀT − ṼᵀṼ·old`.
    pub(crate) fn about(&self, old: &Mat<f64>) -> NormalSums {
        NormalSums {
            gram: self.gram.clone(),
            cross: &self.cross - &self.gram * old,
        }
    }

    /// The inverse of [`Self::about`]: sums about `W̃₀` back to the sums of `T` itself.
    pub(crate) fn absolute(&self, old: &Mat<f64>) -> NormalSums {
        NormalSums {
            gram: self.gram.clone(),
            cross: &self.cross + &self.gram * old,
        }
    }

    /// `self ← β·self + other`, in place.
    pub fn decay_add(&mut self, beta: f64, other: &NormalSums) {
        for (a, b) in [
            (&mut self.gram, &other.gram),
            (&mut self.cross, &other.cross),
        ] {
            for j in 0..a.ncols() {
                for i in 0..a.nrows() {
                    a[(i, j)] = beta * a[(i, j)] + b[(i, j)];
                }
            }
        }
    }

    /// The two matrices as `f64` tensors `[n+1, n+1]` and `[n+1, m]` (for checkpoints).
    pub fn to_tensors(&self) -> Result<(Tensor, Tensor)> {
        let t = |m: &Mat<f64>| -> Result<Tensor> {
            let data: Vec<f64> = (0..m.nrows())
                .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
                .collect();
            Ok(Tensor::from_vec(
                data,
                (m.nrows(), m.ncols()),
                &candle_core::Device::Cpu,
            )?)
        };
        Ok((t(&self.gram)?, t(&self.cross)?))
    }

    /// Sums from the tensors [`Self::to_tensors`] made; errors name a shape that does not fit.
    pub fn from_tensors(gram: &Tensor, cross: &Tensor, name: &str) -> Result<Self> {
        let (n1, n2) = gram.dims2()?;
        let (c1, _) = cross.dims2()?;
        if n1 != n2 || c1 != n1 {
            return Err(BcdError::ShapeMismatch {
                name: name.to_string(),
                expected: vec![n1, n1],
                got: vec![n2, c1],
            });
        }
        let m = |t: &Tensor| -> Result<Mat<f64>> {
            let rows = t.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
            Ok(Mat::from_fn(rows.len(), rows[0].len(), |i, j| rows[i][j]))
        };
        Ok(Self {
            gram: m(gram)?,
            cross: m(cross)?,
        })
    }
}

/// The [`weights_for`] subproblem solved for its step `Δ = W̃ − W̃^old` from sums taken about
/// `W̃^old` (`sums.cross = Ṽᵀ(T − ṼW̃^oldᵀ)`, [`NormalSums::about`]):
/// `(cṼᵀṼ + D) Δᵀ = cṼᵀ(T − ṼW̃^oldᵀ) − λ[W^oldᵀ; 0]`, by Cholesky in `f64`; returns
/// `W̃^old + Δ` as `(W, b)` on `device` (`old = [W^oldᵀ; b^oldᵀ]`, [`augmented_old`]). The same
/// minimiser as the system in `W̃` itself, but its
/// right-hand side is formed from the residual `T − ṼW̃^oldᵀ`, whose rounding is relative to
/// the residual: in `W̃` itself, `cṼᵀT + αW̃^old` cancels against `(cṼᵀṼ + D)W̃^old` up to the
/// rounding of the `f32` sums times `‖W̃‖`, which the solve amplifies by up to `1/α`
/// (docs/algorithm.md, "Weights").
pub(crate) fn solve_weights(
    sums: &NormalSums,
    old: &Mat<f64>,
    pw: PenaltyWeights,
    block: &str,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    let (n, m) = (old.nrows() - 1, old.ncols());
    let (r, a, l) = (pw.coupling, pw.alpha, pw.lambda);
    let lhs = Mat::from_fn(n + 1, n + 1, |i, j| {
        let diag = match (i == j, i < n) {
            (true, true) => a + l,
            (true, false) => a,
            _ => 0.0,
        };
        r * sums.gram[(i, j)] + diag
    });
    let rhs = Mat::from_fn(n + 1, m, |i, j| {
        let ridge = if i < n { l * old[(i, j)] } else { 0.0 };
        r * sums.cross[(i, j)] - ridge
    });
    let step = solve::solve_spd(&lhs, rhs, block)?;
    let x = Mat::from_fn(n + 1, m, |i, j| old[(i, j)] + step[(i, j)]);
    // x = W̃ᵀ: its first n rows are Wᵀ, its last row is bᵀ.
    let w = solve::to_tensor_t(x.subrows(0, n), device)?;
    let b = solve::to_tensor_t(x.subrows(n, 1), device)?.reshape(m)?;
    Ok((w, b))
}

/// Ridge least squares `min_W̃ ½‖T − H̃W̃ᵀ‖² + λ/2‖W‖²` (bias not penalised): the [`weights_for`]
/// subproblem with coupling 1 and no proximal term. Fits a linear head `[d_T, d_H]` to targets
/// `T` on features `H` in closed form. `λ` must be finite and `≥ 0` (else
/// [`BcdError::InvalidHyperparameter`] naming `head_lambda`).
#[cfg(test)]
pub fn ridge_fit(h: &Tensor, t: &Tensor, lambda: f64, block: &str) -> Result<(Tensor, Tensor)> {
    let sums = NormalSums::new(AugmentedGram::new(h)?, h, t)?;
    ridge_solve(sums, lambda, block, &SingleProcess, h.device())
}

/// The ridge fit of [`ridge_fit`] from this rank's normal sums `[H 1]ᵀ[H 1]`, `[H 1]ᵀT` (summed
/// over the ranks here); solved on rank 0, so every rank receives the same `(W, b)`.
pub(crate) fn ridge_solve(
    mut sums: NormalSums,
    lambda: f64,
    block: &str,
    comm: &dyn Communicator,
    device: &candle_core::Device,
) -> Result<(Tensor, Tensor)> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(BcdError::InvalidHyperparameter {
            name: "head_lambda",
            value: lambda,
            reason: "must be finite and >= 0",
        });
    }
    let (n, m) = (sums.cross.nrows() - 1, sums.cross.ncols());
    let zeros_w = Tensor::zeros((m, n), candle_core::DType::F32, device)?;
    let zeros_b = Tensor::zeros(m, candle_core::DType::F32, device)?;
    let pw = PenaltyWeights {
        coupling: 1.0,
        alpha: 0.0,
        lambda,
    };
    sum_mat(comm, &mut sums.gram);
    sums.sum_cross(comm);
    let solved = comm::from_root(comm, &[&zeros_w, &zeros_b], || {
        let (w, b) = solve_weights(&sums, &Mat::zeros(n + 1, m), pw, block, device)?;
        Ok(vec![w, b])
    })?;
    Ok((solved[0].clone(), solved[1].clone()))
}
