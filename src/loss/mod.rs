//! Losses `R(V_L; Y)` and the exact proximal step of the output block.
//!
//! The `V_L` update minimises `R(V; Y) + κ/2 ‖V − T‖²` with `κ = γ + α` and
//! `T = (γU_L + αV_L^old)/κ`. Both losses are sums over samples (rows), so the problem splits
//! into one `d_L`-sized problem per row.
//!
//! * Squared `R = ½‖V − Y‖²`: `V = (Y + κT)/(1 + κ)`.
//! * Softmax cross-entropy `R = Σ_rows (Σ_j y_j)·logsumexp(v) − ⟨y, v⟩` (`= −Σ y_j log softmax(v)_j`):
//!   each row problem is smooth and `κ`-strongly convex with gradient `s·softmax(v) − y + κ(v − t)`
//!   (`s = Σ_j y_j`) and Hessian `s(diag p − ppᵀ) + κI`. **(choice)** It is solved exactly by
//!   Newton's method (the Hessian is a diagonal minus a rank-one term, inverted by
//!   Sherman–Morrison) with backtracking, from `v = t`, until the gradient is at `f64` round-off.
//!   Once the Newton decrement `gᵀH⁻¹g` is below `10⁻¹⁰(1 + |f|)` the full step is taken without
//!   a backtracking test: the decrease it predicts is then within the round-off of `f`, where a
//!   test on `f` would refuse every step, and so close to the minimiser the full Newton step
//!   converges quadratically.

mod device;

use serde::{Deserialize, Serialize};

/// Newton iterations of the cross-entropy prox at most.
const MAX_NEWTON: usize = 100;
/// A backtracking step is taken once its `α` is below this, decrease or not.
const MIN_ALPHA: f64 = 1e-10;
/// Newton decrement `gᵀH⁻¹g`, relative to `1 + |f|`, below which the full step is taken.
const FULL_STEP_DECREMENT: f64 = 1e-10;

/// The loss on the lifted output `V_L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// `½‖V_L − Y‖²`.
    #[default]
    Squared,
    /// Softmax cross-entropy summed over samples.
    CrossEntropy,
}

impl std::str::FromStr for Loss {
    type Err = crate::BcdError;

    /// `squared` or `cross-entropy`.
    fn from_str(s: &str) -> crate::Result<Self> {
        let table = [
            ("squared", Loss::Squared),
            ("cross-entropy", Loss::CrossEntropy),
        ];
        crate::config::parse_name("loss", s, &table, "squared, cross-entropy")
    }
}

fn logsumexp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Loss {
    /// `R` of one row.
    pub fn row_value(self, v: &[f64], y: &[f64]) -> f64 {
        match self {
            Loss::Squared => 0.5 * v.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(),
            Loss::CrossEntropy => {
                let s: f64 = y.iter().sum();
                s * logsumexp(v) - v.iter().zip(y).map(|(a, b)| a * b).sum::<f64>()
            }
        }
    }

    /// `argmin_v R(v; y) + κ/2 ‖v − t‖²` for one row, written into `out`.
    pub fn row_prox(self, y: &[f64], t: &[f64], kappa: f64, out: &mut [f64]) {
        match self {
            Loss::Squared => {
                for ((o, y), t) in out.iter_mut().zip(y).zip(t) {
                    *o = (y + kappa * t) / (1.0 + kappa);
                }
            }
            Loss::CrossEntropy => cross_entropy_prox(y, t, kappa, out),
        }
    }
}

fn cross_entropy_prox(y: &[f64], t: &[f64], kappa: f64, v: &mut [f64]) {
    let d = y.len();
    let s: f64 = y.iter().sum();
    let obj = |v: &[f64]| {
        Loss::CrossEntropy.row_value(v, y)
            + 0.5 * kappa * v.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
    };
    v.copy_from_slice(t);
    let (mut p, mut g, mut step, mut trial) =
        (vec![0.0; d], vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    for _ in 0..MAX_NEWTON {
        let lse = logsumexp(v);
        for j in 0..d {
            p[j] = (v[j] - lse).exp();
            g[j] = s * p[j] - y[j] + kappa * (v[j] - t[j]);
        }
        let gnorm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = 1.0
            + v.iter().map(|x| x * x).sum::<f64>().sqrt()
            + y.iter().map(|x| x.abs()).sum::<f64>();
        if gnorm <= 1e-13 * scale {
            return;
        }
        // H = D − s p pᵀ with D = diag(s p + κ): H⁻¹g = D⁻¹g + s D⁻¹p (pᵀD⁻¹g)/(1 − s pᵀD⁻¹p).
        let dinv: Vec<f64> = p.iter().map(|pj| 1.0 / (s * pj + kappa)).collect();
        let pdg: f64 = (0..d).map(|j| p[j] * dinv[j] * g[j]).sum();
        let pdp: f64 = (0..d).map(|j| p[j] * dinv[j] * p[j]).sum();
        let coef = s * pdg / (1.0 - s * pdp);
        for j in 0..d {
            step[j] = dinv[j] * g[j] + coef * dinv[j] * p[j];
        }
        let f0 = obj(v);
        let slope: f64 = g.iter().zip(&step).map(|(a, b)| a * b).sum();
        let full = slope <= FULL_STEP_DECREMENT * (1.0 + f0.abs());
        let mut alpha = 1.0;
        loop {
            for j in 0..d {
                trial[j] = v[j] - alpha * step[j];
            }
            if full || obj(&trial) <= f0 - 1e-4 * alpha * slope || alpha < MIN_ALPHA {
                break;
            }
            alpha *= 0.5;
        }
        v.copy_from_slice(&trial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `‖∇‖` of the row prox problem at `v`: `s·softmax(v) − y + κ(v − t)`.
    fn gradient_norm(y: &[f64], t: &[f64], kappa: f64, v: &[f64]) -> f64 {
        let (s, lse) = (y.iter().sum::<f64>(), logsumexp(v));
        (0..v.len())
            .map(|j| s * (v[j] - lse).exp() - y[j] + kappa * (v[j] - t[j]))
            .map(|g| g * g)
            .sum::<f64>()
            .sqrt()
    }

    /// The cross-entropy prox reaches the minimiser to `f64` round-off (its gradient below 1e-12
    /// of the size of its terms) on rows like those of training — confident logits up to ±15,
    /// one-hot and soft targets, the `κ` of the presets and smaller. The first row is one of a
    /// trained network's output rows (10 classes, `κ = 2`).
    #[test]
    fn cross_entropy_prox_reaches_round_off() {
        let trained = [
            1.0859465599060059,
            -2.852768659591675,
            -0.9540857076644897,
            0.5394563674926758,
            -2.103564739227295,
            5.756979942321777,
            -1.9519681930541992,
            1.3995845317840576,
            2.1093249320983887,
            -2.028740644454956,
        ];
        let mut rows = vec![(trained.to_vec(), 5usize, 2.0)];
        for r in 0..200u64 {
            let t: Vec<f64> = (0..10u64)
                .map(|j| (((r * 31 + j * 17) % 97) as f64 / 97.0 - 0.5) * 30.0)
                .collect();
            rows.push((
                t,
                (r % 10) as usize,
                [0.1, 1.0, 2.0, 10.0][(r % 4) as usize],
            ));
        }
        let mut worst: f64 = 0.0;
        for (t, label, kappa) in &rows {
            for soft in [false, true] {
                let y: Vec<f64> = (0..t.len())
                    .map(|j| match soft {
                        false => f64::from(j == *label),
                        true => 0.05 + 0.5 * f64::from(j == *label),
                    })
                    .collect();
                let mut v = vec![0.0; t.len()];
                Loss::CrossEntropy.row_prox(&y, t, *kappa, &mut v);
                // The size of the gradient's terms `s·p`, `y` and `κ(v − t)`.
                let t_norm = t.iter().map(|x| x * x).sum::<f64>().sqrt();
                let scale = 1.0 + kappa * t_norm + y.iter().sum::<f64>();
                worst = worst.max(gradient_norm(&y, t, *kappa, &v) / scale);
            }
        }
        assert!(
            worst <= 1e-12,
            "largest relative gradient at the prox: {worst:e}"
        );
    }
}
