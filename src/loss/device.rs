//! The losses' value and proximal map on whole `[N, d_L]` tensors: the device path of
//! `crate::kernels` (see `kernels::device`). In `f64`, by the same steps as the row-by-row
//! versions of the parent module: the squared loss in closed form, the cross-entropy prox by
//! Newton's method with Sherman–Morrison and backtracking on every row at once (each row frozen
//! once its gradient is at round-off; full steps below the same Newton decrement).

use candle_core::{DType, Tensor, D};

use super::{Loss, FULL_STEP_DECREMENT, MAX_NEWTON, MIN_ALPHA};
use crate::error::Result;

impl Loss {
    /// `R(V; Y)` summed over the rows.
    pub(crate) fn value_tensor(self, v: &Tensor, y: &Tensor) -> Result<f64> {
        let (v, y) = (v.to_dtype(DType::F64)?, y.to_dtype(DType::F64)?);
        let total = match self {
            Loss::Squared => ((&v - &y)?.sqr()?.sum_all()? * 0.5)?,
            Loss::CrossEntropy => row_values(&v, &y)?.sum_all()?,
        };
        Ok(total.to_scalar::<f64>()?)
    }

    /// `argmin_V R(V; Y) + κ/2 ‖V − T‖²`, row by row, in `t`'s dtype.
    pub(crate) fn prox_tensor(self, y: &Tensor, t: &Tensor, kappa: f64) -> Result<Tensor> {
        let dtype = t.dtype();
        let (y, t) = (y.to_dtype(DType::F64)?, t.to_dtype(DType::F64)?);
        let v = match self {
            Loss::Squared => ((&y + t.affine(kappa, 0.0)?)? / (1.0 + kappa))?,
            Loss::CrossEntropy => cross_entropy_prox(&y, &t, kappa)?,
        };
        Ok(v.to_dtype(dtype)?)
    }
}

/// `[N, 1]` log-sum-exp of the rows.
fn logsumexp(v: &Tensor) -> Result<Tensor> {
    let m = v.max_keepdim(D::Minus1)?;
    Ok((v.broadcast_sub(&m)?.exp()?.sum_keepdim(D::Minus1)?.log()? + m)?)
}

/// `[N, 1]` cross-entropy of each row, `(Σ_j y_j)·logsumexp(v) − ⟨y, v⟩`.
fn row_values(v: &Tensor, y: &Tensor) -> Result<Tensor> {
    let s = y.sum_keepdim(D::Minus1)?;
    Ok(((s * logsumexp(v)?)? - (v * y)?.sum_keepdim(D::Minus1)?)?)
}

/// `[N, 1]` row sums.
fn rows(t: &Tensor) -> Result<Tensor> {
    Ok(t.sum_keepdim(D::Minus1)?)
}

/// The cross-entropy prox of every row (`f64` tensors).
fn cross_entropy_prox(y: &Tensor, t: &Tensor, kappa: f64) -> Result<Tensor> {
    let s = rows(y)?;
    let obj = |v: &Tensor| -> Result<Tensor> {
        Ok((row_values(v, y)? + rows(&(v - t)?.sqr()?)?.affine(0.5 * kappa, 0.0)?)?)
    };
    let mut v = t.clone();
    let mut done = s.zeros_like()?.ne(0.0)?;
    let y_abs = rows(&y.abs()?)?;
    for _ in 0..MAX_NEWTON {
        let p = v.broadcast_sub(&logsumexp(&v)?)?.exp()?;
        let g = ((p.broadcast_mul(&s)? - y)? + (&v - t)?.affine(kappa, 0.0)?)?;
        let scale = ((rows(&v.sqr()?)?.sqrt()? + &y_abs)? + 1.0)?;
        let small = rows(&g.sqr()?)?.sqrt()?.le(&scale.affine(1e-13, 0.0)?)?;
        done = done.maximum(&small)?;
        if sum(&done)? == done.elem_count() as f64 {
            break;
        }
        // H = D − s p pᵀ, D = diag(s p + κ): H⁻¹g = D⁻¹g + s D⁻¹p (pᵀD⁻¹g)/(1 − s pᵀD⁻¹p).
        let dinv = (p.broadcast_mul(&s)? + kappa)?.recip()?;
        let dp = (&dinv * &p)?;
        let pdg = rows(&(&dp * &g)?)?;
        let pdp = rows(&(&dp * &p)?)?;
        let coef = ((&s * pdg)? / (1.0 - (&s * pdp)?)?)?;
        let step = ((&dinv * &g)? + dp.broadcast_mul(&coef)?)?;
        let f0 = obj(&v)?;
        let slope = rows(&(&g * &step)?)?;
        let full = slope.le(&(f0.abs()? + 1.0)?.affine(FULL_STEP_DECREMENT, 0.0)?)?;
        // Backtracking on every row: α halves on the rows whose trial is not yet accepted.
        let mut alpha = s.ones_like()?;
        let mut accepted = done.clone();
        let mut trial = v.clone();
        // α halves from 1: below `MIN_ALPHA` after 34 halvings, when every row has taken a step.
        for _ in 0..64 {
            let candidate = (&v - step.broadcast_mul(&alpha)?)?;
            let enough = obj(&candidate)?.le(&(&f0 - (&alpha * &slope)?.affine(1e-4, 0.0)?)?)?;
            let take = enough.maximum(&alpha.lt(MIN_ALPHA)?)?.maximum(&full)?;
            let newly = take.minimum(&accepted.eq(0.0)?)?;
            trial = newly
                .broadcast_as(v.shape())?
                .where_cond(&candidate, &trial)?;
            accepted = accepted.maximum(&newly)?;
            if sum(&accepted)? == accepted.elem_count() as f64 {
                break;
            }
            alpha = accepted.where_cond(&alpha, &alpha.affine(0.5, 0.0)?)?;
        }
        v = done.broadcast_as(v.shape())?.where_cond(&v, &trial)?;
    }
    Ok(v)
}

/// Number of set entries of a `u8` mask.
fn sum(mask: &Tensor) -> Result<f64> {
    crate::kernels::sum_f64(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The whole-tensor value and prox equal the row versions (themselves checked against the
    /// optimality conditions in the parent module), for one-hot and soft targets.
    #[test]
    fn tensor_loss_is_the_row_loss() {
        let (n, d) = (6, 4);
        let t: Vec<f64> = (0..n * d)
            .map(|k| ((k * 7) % 11) as f64 * 0.9 - 4.0)
            .collect();
        let y: Vec<f64> = (0..n * d)
            .map(|k| match k / d {
                0..=2 => f64::from(k % d == (k / d) % d),
                _ => ((k % 3) as f64 + 1.0) * 0.25,
            })
            .collect();
        let tt = Tensor::from_vec(t.clone(), (n, d), &Device::Cpu).unwrap();
        let yt = Tensor::from_vec(y.clone(), (n, d), &Device::Cpu).unwrap();
        for loss in [Loss::Squared, Loss::CrossEntropy] {
            let kappa = 0.7;
            let got = loss.prox_tensor(&yt, &tt, kappa).unwrap();
            let got: Vec<f64> = got.flatten_all().unwrap().to_vec1().unwrap();
            let mut want = vec![0.0; n * d];
            let mut value = 0.0;
            for r in 0..n {
                let row = r * d..(r + 1) * d;
                loss.row_prox(
                    &y[row.clone()],
                    &t[row.clone()],
                    kappa,
                    &mut want[row.clone()],
                );
                value += loss.row_value(&t[row.clone()], &y[row]);
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-10, "{loss:?}: {g} vs {w}");
            }
            let v = loss.value_tensor(&tt, &yt).unwrap();
            assert!(
                (v - value).abs() < 1e-10 * value.abs().max(1.0),
                "{loss:?}: {v} vs {value}"
            );
        }
    }
}
