//! Elementwise activations `σ` and the exact scalar proximal step of the `U_i` update.
//!
//! The `U_i` block update of `ALGORITHM.md` decouples into independent scalar problems
//!
//! ```text
//! u* = argmin_u  f(u) = ½ (σ(u) − v)² + c/2 (u − a)²,   c > 0,
//! ```
//!
//! with `a = (ρ z + α u^old)/(ρ + α)` and `c = (ρ + α)/γ`. For a piecewise-linear `σ` with
//! slope 1 on `u ≥ 0` and slope `s` on `u < 0` (ReLU: `s = 0`, leaky ReLU: `0 < s`), `f` is a
//! convex quadratic on each half-line, so the minimiser is the better of the two clamped
//! branch minimisers
//!
//! ```text
//! u₊ = max(0, (v + c a)/(1 + c)),      u₋ = min(0, (s v + c a)/(s² + c)),
//! ```
//!
//! choosing `u₋` only when `f(u₋) < f(u₊)` (ties go to `u₊`). For ReLU `u₋ = min(0, a)`.
//! For the identity `u* = (v + c a)/(1 + c)`.
//!
//! For the smooth bounded activations (sigmoid, tanh) there is no closed form. Every
//! stationary point satisfies `|u − a| ≤ B/c` with `B = (s_max + |v|)·σ'_max` (`s_max` the
//! bound of `|σ|`), and `f'' ≥ c − (s_max + |v|)·|σ''|_max`. When that bound is positive
//! (always for the default `c = (ρ+α)/γ = 6` and `|v| < 61` with sigmoid) `f` is strictly convex
//! and its unique minimiser is found by Newton's method safeguarded by bisection on that
//! bracket, to machine precision. Otherwise the bracket is scanned on a grid for sign changes of
//! `f'`, each is refined the same way, and the best point is kept. All arithmetic is `f64`.

use serde::{Deserialize, Serialize};

/// Hidden-layer activation `σ`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, u)`.
    #[default]
    Relu,
    /// `u` for `u ≥ 0`, `slope·u` otherwise (`0 ≤ slope < 1`).
    LeakyRelu {
        /// Slope on the negative half-line.
        slope: f64,
    },
    /// `u` (a linear network).
    Identity,
    /// `1/(1 + e^{−u})`.
    Sigmoid,
    /// `tanh(u)`.
    Tanh,
}

/// Bounds of a smooth bounded activation: `|σ| ≤ s_max`, `σ' ≤ d1_max`, `|σ''| ≤ d2_max`.
#[derive(Debug, Clone, Copy)]
struct SmoothBounds {
    s_max: f64,
    d1_max: f64,
    d2_max: f64,
}

/// Minimises `f(u) = ½(σ(u) − v)² + c/2 (u − a)²` for smooth bounded `σ` (see the module docs).
fn smooth_prox(act: Activation, v: f64, a: f64, c: f64, b: SmoothBounds) -> f64 {
    let f = |u: f64| 0.5 * (act.apply(u) - v).powi(2) + 0.5 * c * (u - a).powi(2);
    let df = |u: f64| (act.apply(u) - v) * act.derivative(u) + c * (u - a);
    let radius = (b.s_max + v.abs()) * b.d1_max / c;
    let (lo, hi) = (a - radius, a + radius);
    let convex = c > (b.s_max + v.abs()) * b.d2_max;
    if convex {
        return newton_bisect(act, v, c, a, lo, hi);
    }
    const GRID: usize = 256;
    let mut best = (f(a), a);
    let step = (hi - lo) / GRID as f64;
    let mut prev = (lo, df(lo));
    for k in 1..=GRID {
        let x = lo + k as f64 * step;
        let d = df(x);
        if prev.1 <= 0.0 && d >= 0.0 {
            let u = newton_bisect(act, v, c, a, prev.0, x);
            if f(u) < best.0 {
                best = (f(u), u);
            }
        }
        prev = (x, d);
    }
    best.1
}

/// Root of `f'` in `[lo, hi]` (with `f'(lo) ≤ 0 ≤ f'(hi)`) by Newton steps kept inside a
/// shrinking bisection bracket.
fn newton_bisect(act: Activation, v: f64, c: f64, a: f64, mut lo: f64, mut hi: f64) -> f64 {
    let df = |u: f64| (act.apply(u) - v) * act.derivative(u) + c * (u - a);
    let mut u = a.clamp(lo, hi);
    for _ in 0..100 {
        let g = df(u);
        if g == 0.0 {
            return u;
        }
        if g < 0.0 {
            lo = u;
        } else {
            hi = u;
        }
        let (s, d1, d2) = (act.apply(u), act.derivative(u), act.second_derivative(u));
        let h = d1 * d1 + (s - v) * d2 + c;
        let newton = u - g / h;
        if h > 0.0 && (g / h).abs() <= 1e-14 * (1.0 + u.abs()) {
            return newton.clamp(lo, hi);
        }
        u = if h > 0.0 && newton >= lo && newton <= hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if hi - lo <= 1e-15 * (1.0 + u.abs()) {
            break;
        }
    }
    u
}

impl Activation {
    /// Slope on the negative half-line of the piecewise-linear activations.
    fn negative_slope(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::LeakyRelu { slope } => slope,
            Activation::Identity | Activation::Sigmoid | Activation::Tanh => 1.0,
        }
    }

    /// `σ(u)`.
    #[inline]
    pub fn apply(self, u: f64) -> f64 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-u).exp()),
            Activation::Tanh => u.tanh(),
            _ if u >= 0.0 => u,
            _ => self.negative_slope() * u,
        }
    }

    /// `σ'(u)` (for the piecewise-linear activations, the right derivative at 0).
    #[inline]
    pub fn derivative(self, u: f64) -> f64 {
        match self {
            Activation::Sigmoid => {
                let s = self.apply(u);
                s * (1.0 - s)
            }
            Activation::Tanh => 1.0 - u.tanh().powi(2),
            _ if u >= 0.0 => 1.0,
            _ => self.negative_slope(),
        }
    }

    /// `σ''(u)` (zero for the piecewise-linear activations away from 0).
    #[inline]
    pub fn second_derivative(self, u: f64) -> f64 {
        match self {
            Activation::Sigmoid => {
                let s = self.apply(u);
                s * (1.0 - s) * (1.0 - 2.0 * s)
            }
            Activation::Tanh => {
                let t = u.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            _ => 0.0,
        }
    }

    /// Exact minimiser of `½ (σ(u) − v)² + c/2 (u − a)²` for `c > 0`.
    #[inline]
    pub fn prox(self, v: f64, a: f64, c: f64) -> f64 {
        ScalarProx::new(self, c).eval(v, a)
    }

    /// Checks the activation's own parameters (the leaky slope must be in `[0, 1)`).
    pub fn validate(self) -> crate::Result<()> {
        match self {
            Activation::LeakyRelu { slope } if !(0.0..1.0).contains(&slope) => {
                Err(crate::BcdError::InvalidHyperparameter {
                    name: "leaky_slope",
                    value: slope,
                    reason: "must be in [0, 1)",
                })
            }
            _ => Ok(()),
        }
    }
}

/// [`Activation::prox`] for one fixed `c`, with its constants computed once: the `U_i` update
/// evaluates it `N·d_i` times with the same `c`.
#[derive(Debug, Clone, Copy)]
pub struct ScalarProx {
    act: Activation,
    c: f64,
    slope: f64,
    /// `1/(1 + c)`: the `u ≥ 0` branch.
    inv_pos: f64,
    /// `1/(s² + c)`: the `u < 0` branch.
    inv_neg: f64,
    /// Bounds of the smooth activations (sigmoid, tanh); `None` for the piecewise-linear ones.
    smooth: Option<SmoothBounds>,
}

impl ScalarProx {
    /// The prox of `act` with weight `c > 0`.
    pub fn new(act: Activation, c: f64) -> Self {
        let slope = act.negative_slope();
        // |σ''| maxima: sigmoid 1/(6√3), tanh 4/(3√3).
        let smooth = match act {
            Activation::Sigmoid => Some(SmoothBounds {
                s_max: 1.0,
                d1_max: 0.25,
                d2_max: 0.0963,
            }),
            Activation::Tanh => Some(SmoothBounds {
                s_max: 1.0,
                d1_max: 1.0,
                d2_max: 0.7699,
            }),
            _ => None,
        };
        Self {
            act,
            c,
            slope,
            inv_pos: 1.0 / (1.0 + c),
            inv_neg: 1.0 / (slope * slope + c),
            smooth,
        }
    }

    /// `argmin_u ½ (σ(u) − v)² + c/2 (u − a)²`.
    #[inline]
    pub fn eval(&self, v: f64, a: f64) -> f64 {
        match self.smooth {
            Some(b) => smooth_prox(self.act, v, a, self.c, b),
            None => self.eval_piecewise(v, a),
        }
    }

    /// Whether [`Self::eval_piecewise`] is this prox (ReLU, leaky ReLU, identity).
    pub fn is_piecewise_linear(&self) -> bool {
        self.smooth.is_none()
    }

    /// [`Self::eval`] for a piecewise-linear activation: two candidates in closed form and a
    /// branch-free choice, so that a loop over it can be vectorised.
    #[inline]
    pub fn eval_piecewise(&self, v: f64, a: f64) -> f64 {
        let (c, s) = (self.c, self.slope);
        let u_plus = (v + c * a) * self.inv_pos;
        if s == 1.0 {
            return u_plus;
        }
        let u_plus = u_plus.max(0.0);
        let u_minus = ((s * v + c * a) * self.inv_neg).min(0.0);
        // σ(u₊) = u₊ and σ(u₋) = s·u₋ on their half-lines; f(u₋) < f(u₊) iff
        // (s·u₋ − v)² + c(u₋ − a)² < (u₊ − v)² + c(u₊ − a)².
        let (rm, dm) = (s * u_minus - v, u_minus - a);
        let (rp, dp) = (u_plus - v, u_plus - a);
        let take_minus = rm * rm + c * dm * dm < rp * rp + c * dp * dp;
        // A select, not a branch: which side wins is data-dependent and unpredictable.
        f64::from_bits(
            (u_minus.to_bits() & (take_minus as u64).wrapping_neg())
                | (u_plus.to_bits() & (!take_minus as u64).wrapping_neg()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force minimum of f on a grid of step 1e-4 over [-60, 60], which contains every
    /// minimiser of the cases below (|u − a| ≤ (1 + |v|)/c ≤ 60 for the smooth activations).
    fn grid_min(act: Activation, v: f64, a: f64, c: f64) -> f64 {
        let f = |u: f64| 0.5 * (act.apply(u) - v).powi(2) + 0.5 * c * (u - a).powi(2);
        (-600_000..=600_000)
            .map(|k| f(k as f64 * 1e-4))
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn prox_beats_grid_search() {
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.1 },
            Activation::Identity,
            Activation::Sigmoid,
            Activation::Tanh,
        ];
        let cases = [
            (1.0, -0.5, 0.3),
            (-1.0, 0.7, 2.0),
            (0.2, -0.2, 0.05),
            (2.5, 1.5, 6.0),
            (-0.3, -1.2, 1.0),
            (0.0, 0.0, 1.0),
            // Small c with a far target: the non-convex branch of the smooth activations.
            (0.9, -2.0, 0.01),
            (-0.95, 1.0, 0.02),
            (3.0, -0.5, 0.05),
        ];
        for act in acts {
            for &(v, a, c) in &cases {
                let u = act.prox(v, a, c);
                let f = |u: f64| 0.5 * (act.apply(u) - v).powi(2) + 0.5 * c * (u - a).powi(2);
                let best = grid_min(act, v, a, c);
                assert!(
                    f(u) <= best + 1e-9,
                    "{act:?} v={v} a={a} c={c}: f(prox)={} > grid {best}",
                    f(u)
                );
            }
        }
    }
}
