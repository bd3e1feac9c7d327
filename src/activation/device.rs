//! The activations and the `U_i` prox as Candle tensor operations: the device path of
//! `crate::kernels` (see `kernels::device`). Each function computes what its scalar
//! counterpart in the parent module computes, entry by entry, up to round-off: the
//! piecewise-linear prox in `f32` as the CPU path does, the smooth prox in `f64` by the same
//! safeguarded Newton iteration, run on all entries at once.

use candle_core::{DType, Tensor};

use super::{Activation, ScalarProx, SmoothBounds};
use crate::error::Result;

/// Iterations of the safeguarded Newton method (as the scalar one).
const MAX_NEWTON: usize = 100;
/// Iterations between checks whether every entry has converged (each check reads one scalar).
const CHECK_EVERY: usize = 4;
/// Grid cells scanned for the minimisers of a non-convex prox (as the scalar one).
const GRID: usize = 256;

impl Activation {
    /// `σ(u)` elementwise, on `u`'s device.
    pub(crate) fn apply_tensor(self, u: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Sigmoid => (u.neg()?.exp()? + 1.0)?.recip()?,
            Activation::Tanh => u.tanh()?,
            Activation::Relu => u.relu()?,
            Activation::LeakyRelu { slope } => u.maximum(&u.affine(slope, 0.0)?)?,
            Activation::Identity => u.clone(),
        })
    }

    /// `σ'(u)` elementwise (the right derivative at 0 for the piecewise-linear ones).
    pub(crate) fn derivative_tensor(self, u: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Sigmoid => {
                let s = self.apply_tensor(u)?;
                (&s * (1.0 - &s)?)?
            }
            Activation::Tanh => (1.0 - u.tanh()?.sqr()?)?,
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => {
                let s = self.negative_slope();
                // 1 on u ≥ 0, s below.
                u.ge(0.0)?.to_dtype(u.dtype())?.affine(1.0 - s, s)?
            }
        })
    }

    /// `S + σ(u)` (`σ(u)` without `skip`): a layer's output, or the target of its activation.
    pub(crate) fn output_tensor(self, u: &Tensor, skip: Option<&Tensor>) -> Result<Tensor> {
        let out = self.apply_tensor(u)?;
        Ok(match skip {
            Some(s) => (out + s)?,
            None => out,
        })
    }

    /// `‖V − S − σ(A)‖²` (`S` = `skip` or 0), accumulated in `f64`.
    pub(crate) fn fit_sq_tensor(
        self,
        v: &Tensor,
        skip: Option<&Tensor>,
        a: &Tensor,
    ) -> Result<f64> {
        sum(&(v - self.output_tensor(a, skip)?)?.sqr()?)
    }

    /// `σ''(u)` elementwise (zero for the piecewise-linear ones).
    fn second_derivative_tensor(self, u: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Sigmoid => {
                let s = self.apply_tensor(u)?;
                ((&s * (1.0 - &s)?)? * (1.0 - (&s * 2.0)?)?)?
            }
            Activation::Tanh => {
                let t = u.tanh()?;
                ((&t * -2.0)? * (1.0 - t.sqr()?)?)?
            }
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => {
                u.zeros_like()?
            }
        })
    }
}

impl ScalarProx {
    /// [`ScalarProx::eval`] for every entry of `v` and `a` (same shape), on their device.
    pub(crate) fn eval_tensor(&self, v: &Tensor, a: &Tensor) -> Result<Tensor> {
        match self.smooth {
            Some(b) => {
                let dtype = v.dtype();
                let (v, a) = (v.to_dtype(DType::F64)?, a.to_dtype(DType::F64)?);
                Ok(self.smooth_tensor(&v, &a, b)?.to_dtype(dtype)?)
            }
            None => self.piecewise_tensor(v, a),
        }
    }

    /// The piecewise-linear prox: both clamped branch minimisers, then the better one (ties to
    /// `u₊`), in the tensors' own precision.
    fn piecewise_tensor(&self, v: &Tensor, a: &Tensor) -> Result<Tensor> {
        let (c, s) = (self.c, self.slope);
        let ca = a.affine(c, 0.0)?;
        let u_plus = (v + &ca)?.affine(self.inv_pos, 0.0)?;
        if s == 1.0 {
            return Ok(u_plus);
        }
        let u_plus = u_plus.relu()?;
        let u_minus = (v.affine(s, 0.0)? + &ca)?
            .affine(self.inv_neg, 0.0)?
            .neg()?
            .relu()?
            .neg()?;
        let cost = |u: &Tensor, su: &Tensor| -> Result<Tensor> {
            Ok(((su - v)?.sqr()? + (u - a)?.sqr()?.affine(c, 0.0)?)?)
        };
        let minus_wins = cost(&u_minus, &u_minus.affine(s, 0.0)?)?.lt(&cost(&u_plus, &u_plus)?)?;
        Ok(minus_wins.where_cond(&u_minus, &u_plus)?)
    }

    /// The smooth prox (`f64` tensors): safeguarded Newton on the bracket where `f` is convex;
    /// where it may not be, the bracket's grid scan of the scalar version, on all entries.
    fn smooth_tensor(&self, v: &Tensor, a: &Tensor, b: SmoothBounds) -> Result<Tensor> {
        let c = self.c;
        let reach = v.abs()?.affine(1.0, b.s_max)?;
        let radius = reach.affine(b.d1_max / c, 0.0)?;
        let (lo, hi) = ((a - &radius)?, (a + &radius)?);
        let convex = reach.affine(b.d2_max, 0.0)?.lt(c)?;
        let u = self.newton_bisect_tensor(v, a, &lo, &hi)?;
        let nonconvex = sum(&convex.to_dtype(DType::F64)?.affine(-1.0, 1.0)?)?;
        if nonconvex == 0.0 {
            return Ok(u);
        }
        let f = |u: &Tensor| -> Result<Tensor> {
            let fit = (self.act.apply_tensor(u)? - v)?.sqr()?;
            Ok(((fit + (u - a)?.sqr()?.affine(c, 0.0)?)? * 0.5)?)
        };
        let (mut best_u, mut best_f) = (a.clone(), f(a)?);
        let step = ((&hi - &lo)? / GRID as f64)?;
        let (mut prev_x, mut prev_d) = (lo.clone(), self.df(&lo, v, a)?);
        for k in 1..=GRID {
            let x = (&lo + step.affine(k as f64, 0.0)?)?;
            let d = self.df(&x, v, a)?;
            let cell =
                (prev_d.le(0.0)?.to_dtype(DType::F64)? * d.ge(0.0)?.to_dtype(DType::F64)?)?;
            if sum(&cell)? > 0.0 {
                let root = self.newton_bisect_tensor(v, a, &prev_x, &x)?;
                let fr = f(&root)?;
                let take = (cell.ne(0.0)?.to_dtype(DType::F64)?
                    * fr.lt(&best_f)?.to_dtype(DType::F64)?)?
                .ne(0.0)?;
                best_u = take.where_cond(&root, &best_u)?;
                best_f = take.where_cond(&fr, &best_f)?;
            }
            (prev_x, prev_d) = (x, d);
        }
        Ok(convex.where_cond(&u, &best_u)?)
    }

    /// `f'(u) = (σ(u) − v)σ'(u) + c(u − a)`.
    fn df(&self, u: &Tensor, v: &Tensor, a: &Tensor) -> Result<Tensor> {
        let fit = ((self.act.apply_tensor(u)? - v)? * self.act.derivative_tensor(u)?)?;
        Ok((fit + (u - a)?.affine(self.c, 0.0)?)?)
    }

    /// The scalar `newton_bisect` on every entry: the root of `f'` in `[lo, hi]`, Newton steps
    /// kept inside a shrinking bisection bracket, each entry frozen once it has converged.
    fn newton_bisect_tensor(
        &self,
        v: &Tensor,
        a: &Tensor,
        lo: &Tensor,
        hi: &Tensor,
    ) -> Result<Tensor> {
        let (act, c) = (self.act, self.c);
        let (mut lo, mut hi) = (lo.clone(), hi.clone());
        let mut u = a.maximum(&lo)?.minimum(&hi)?;
        let mut done = u.zeros_like()?.ne(0.0)?;
        for iter in 0..MAX_NEWTON {
            let g = self.df(&u, v, a)?;
            let root = g.eq(0.0)?;
            lo = g.lt(0.0)?.where_cond(&u, &lo)?;
            hi = g.gt(0.0)?.where_cond(&u, &hi)?;
            let (s, d1, d2) = (
                act.apply_tensor(&u)?,
                act.derivative_tensor(&u)?,
                act.second_derivative_tensor(&u)?,
            );
            let h = ((d1.sqr()? + ((s - v)? * d2)?)? + c)?;
            let ratio = (&g / &h)?;
            let newton = (&u - &ratio)?;
            let positive = h.gt(0.0)?;
            let tol = u.abs()?.affine(1e-14, 1e-14)?;
            let converged = and(&positive, &ratio.abs()?.le(&tol)?)?;
            let clamped = newton.maximum(&lo)?.minimum(&hi)?;
            let inside = and(&positive, &and(&newton.ge(&lo)?, &newton.le(&hi)?)?)?;
            let mid = ((&lo + &hi)? * 0.5)?;
            let next = inside.where_cond(&newton, &mid)?;
            let narrow = (&hi - &lo)?.le(&next.abs()?.affine(1e-15, 1e-15)?)?;
            // Entries finish as the scalar loop returns: at a root, converged (the clamped
            // Newton point) or with a collapsed bracket (the next point).
            let finished = converged.where_cond(&clamped, &next)?;
            let finished = root.where_cond(&u, &finished)?;
            let stop = or(&root, &or(&converged, &narrow)?)?;
            u = done.where_cond(&u, &stop.where_cond(&finished, &next)?)?;
            done = or(&done, &stop)?;
            if iter % CHECK_EVERY == CHECK_EVERY - 1
                && sum(&done.to_dtype(DType::F64)?)? == done.elem_count() as f64
            {
                break;
            }
        }
        Ok(u)
    }
}

/// `Σ` of all entries in `f64`.
fn sum(t: &Tensor) -> Result<f64> {
    crate::kernels::sum_f64(t)
}

/// Elementwise `a ∧ b` of two `u8` masks.
fn and(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.minimum(b)?)
}

/// Elementwise `a ∨ b` of two `u8` masks.
fn or(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.maximum(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Every activation's tensor prox equals the scalar one entry by entry (the scalar one is
    /// checked against a grid search in the parent module), including weights `c` small enough
    /// that the smooth ones are not convex and take the grid scan.
    #[test]
    fn tensor_prox_is_the_scalar_prox() {
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.2 },
            Activation::Identity,
            Activation::Sigmoid,
            Activation::Tanh,
        ];
        let vs: Vec<f64> = (0..41).map(|k| -4.0 + 0.2 * k as f64).collect();
        let pairs: Vec<(f64, f64)> = vs
            .iter()
            .flat_map(|&v| vs.iter().map(move |&a| (v, 0.7 * a - 0.3)))
            .collect();
        let t = |x: Vec<f64>| Tensor::from_vec(x, pairs.len(), &Device::Cpu).unwrap();
        let v = t(pairs.iter().map(|p| p.0).collect());
        let a = t(pairs.iter().map(|p| p.1).collect());
        for act in acts {
            for c in [0.05, 0.3, 6.0] {
                let prox = ScalarProx::new(act, c);
                let got: Vec<f64> = prox.eval_tensor(&v, &a).unwrap().to_vec1().unwrap();
                for (&(vi, ai), g) in pairs.iter().zip(got) {
                    let want = prox.eval(vi, ai);
                    assert!(
                        (g - want).abs() <= 1e-9 * (1.0 + want.abs()),
                        "{act:?} c={c} v={vi} a={ai}: {g} vs {want}"
                    );
                }
            }
        }
    }

    /// `σ`, `σ'` and `σ''` on tensors are the scalar ones.
    #[test]
    fn tensor_activation_is_the_scalar_one() {
        let u: Vec<f64> = (0..81).map(|k| -4.0 + 0.1 * k as f64).collect();
        let ut = Tensor::from_vec(u.clone(), u.len(), &Device::Cpu).unwrap();
        for act in [
            Activation::LeakyRelu { slope: 0.2 },
            Activation::Sigmoid,
            Activation::Tanh,
        ] {
            let apply: Vec<f64> = act.apply_tensor(&ut).unwrap().to_vec1().unwrap();
            let d1: Vec<f64> = act.derivative_tensor(&ut).unwrap().to_vec1().unwrap();
            let d2: Vec<f64> = act
                .second_derivative_tensor(&ut)
                .unwrap()
                .to_vec1()
                .unwrap();
            for (i, &x) in u.iter().enumerate() {
                assert!((apply[i] - act.apply(x)).abs() < 1e-12);
                assert!((d1[i] - act.derivative(x)).abs() < 1e-12);
                assert!((d2[i] - act.second_derivative(x)).abs() < 1e-12);
            }
        }
    }
}
