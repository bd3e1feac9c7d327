//! Elementwise activations `σ` and the exact scalar proximal step of the `U_i` update.
//!
//! The `U_i` block update (`docs/algorithm.md`) decouples into independent scalar problems
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

mod device;

use num_traits::Float;
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

impl std::str::FromStr for Activation {
    type Err = crate::BcdError;

    /// `relu`, `leaky-relu` (slope 0.01; set another with the variant itself), `identity`,
    /// `sigmoid` or `tanh`.
    fn from_str(s: &str) -> crate::Result<Self> {
        let table = [
            ("relu", Activation::Relu),
            ("leaky-relu", Activation::LeakyRelu { slope: 0.01 }),
            ("identity", Activation::Identity),
            ("sigmoid", Activation::Sigmoid),
            ("tanh", Activation::Tanh),
        ];
        let expected = "relu, leaky-relu, identity, sigmoid, tanh";
        crate::config::parse_name("activation", s, &table, expected)
    }
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

    /// The activation as a [`PiecewiseLinear`], if it is one (ReLU, leaky ReLU, identity).
    pub fn piecewise_linear(self) -> Option<PiecewiseLinear> {
        match self {
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => {
                Some(self.as_piecewise())
            }
            Activation::Sigmoid | Activation::Tanh => None,
        }
    }

    /// The piecewise-linear form with this activation's negative slope (meaningful for the
    /// piecewise-linear kinds only).
    fn as_piecewise(self) -> PiecewiseLinear {
        PiecewiseLinear {
            slope: self.negative_slope(),
        }
    }

    /// `σ(u)`.
    #[inline]
    pub fn apply(self, u: f64) -> f64 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-u).exp()),
            Activation::Tanh => u.tanh(),
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => {
                self.as_piecewise().apply(u)
            }
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
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => {
                self.as_piecewise().derivative(u)
            }
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
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => 0.0,
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
            Activation::LeakyRelu { .. }
            | Activation::Relu
            | Activation::Identity
            | Activation::Sigmoid
            | Activation::Tanh => Ok(()),
        }
    }
}

/// `if cond { a } else { b }` for two computed values, as a bitwise select: the compiler keeps
/// it branch-free, so loops over it vectorise and do not mispredict. Written as an `if`, the
/// choice on the sign of `u` compiled to a branch, which on data of random sign ran an
/// elementwise pass ten times slower (60,000 × 1,500 entries: 0.31 s against 0.037 s).
#[inline]
fn select(cond: bool, a: f64, b: f64) -> f64 {
    let mask = (cond as u64).wrapping_neg();
    f64::from_bits((a.to_bits() & mask) | (b.to_bits() & !mask))
}

/// A piecewise-linear activation (ReLU, leaky ReLU, identity) as its slope on the negative
/// half-line: `σ(u) = u` for `u ≥ 0`, `s·u` below. Its methods do not dispatch on the kind of
/// activation, so a loop over them can be vectorised; through [`Activation`] the same loop ran
/// ten times slower (60,000 × 1,500 entries: 0.33 s against 0.035 s). The crate's kernels pick
/// it through the `with_sigma!` macro.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PiecewiseLinear {
    /// `s`: 0 for ReLU, the leak for leaky ReLU, 1 for the identity.
    pub slope: f64,
}

impl PiecewiseLinear {
    /// `σ(u)`, as [`Activation::apply`].
    #[inline]
    pub fn apply(self, u: f64) -> f64 {
        select(u >= 0.0, u, self.slope * u)
    }

    /// `σ'(u)`, as [`Activation::derivative`].
    #[inline]
    pub fn derivative(self, u: f64) -> f64 {
        select(u >= 0.0, 1.0, self.slope)
    }
}

/// Evaluates `$body` with `$s` bound to the activation `$act` as a [`PiecewiseLinear`] when it
/// is one, else as the [`Activation`] itself: the body (typically an elementwise kernel calling
/// `$s.apply(…)` or `$s.derivative(…)`) is compiled once for each, and the piecewise-linear
/// copy runs without a per-entry dispatch.
macro_rules! with_sigma {
    ($act:expr, |$s:ident| $body:expr) => {{
        let act: $crate::activation::Activation = $act;
        match act.piecewise_linear() {
            Some($s) => $body,
            None => {
                let $s = act;
                $body
            }
        }
    }};
}
pub(crate) use with_sigma;

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
            Activation::Relu | Activation::LeakyRelu { .. } | Activation::Identity => None,
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
        piecewise_prox(v, a, self.c, self.slope, self.inv_pos, self.inv_neg)
    }

    /// [`Self::eval_piecewise`] in `f32` arithmetic, for the `U_i` update's pass over `N·d_i`
    /// `f32` entries: the `f64` version made that pass compute-bound (0.15–0.17 s against
    /// 0.08–0.10 s for 60,000 × 1,500 entries, which is the pass's memory traffic). The result
    /// is stored in `f32` either way; the two differ by round-off (within a few `f32` ulps, or
    /// in which of two candidates with `f32`-equal values is taken).
    #[inline]
    pub fn eval_piecewise_f32(&self, v: f32, a: f32) -> f32 {
        let k = |x: f64| x as f32;
        piecewise_prox(
            v,
            a,
            k(self.c),
            k(self.slope),
            k(self.inv_pos),
            k(self.inv_neg),
        )
    }
}

/// `argmin_u ½ (σ(u) − v)² + c/2 (u − a)²` for `σ(u) = u` on `u ≥ 0`, `s·u` below (`s = 1`: the
/// identity), with `inv_pos = 1/(1 + c)` and `inv_neg = 1/(s² + c)`: the minimiser on each
/// half-line in closed form, then the better of the two.
#[inline]
fn piecewise_prox<T: Float>(v: T, a: T, c: T, s: T, inv_pos: T, inv_neg: T) -> T {
    let zero = T::zero();
    let u_plus = (v + c * a) * inv_pos;
    if s == T::one() {
        return u_plus;
    }
    let u_plus = u_plus.max(zero);
    let u_minus = ((s * v + c * a) * inv_neg).min(zero);
    // σ(u₊) = u₊ and σ(u₋) = s·u₋ on their half-lines; f(u₋) < f(u₊) iff
    // (s·u₋ − v)² + c(u₋ − a)² < (u₊ − v)² + c(u₊ − a)².
    let (rm, dm) = (s * u_minus - v, u_minus - a);
    let (rp, dp) = (u_plus - v, u_plus - a);
    // Both candidates are computed, so this compiles to a select, not a branch (which side
    // wins is data-dependent and unpredictable).
    if rm * rm + c * dm * dm < rp * rp + c * dp * dp {
        u_minus
    } else {
        u_plus
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

    /// The `f32` prox against the `f64` one on a grid of `(v, a)` around the kink, for each
    /// piecewise-linear activation and three weights `c`: the `f64` objective at the `f32`
    /// minimiser is within round-off of its value at the `f64` one (a tie between the two
    /// candidates may be broken either way, so the minimisers themselves are not compared).
    #[test]
    fn f32_piecewise_prox_is_the_f64_one_up_to_round_off() {
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.1 },
            Activation::Identity,
        ];
        for act in acts {
            for c in [0.05, 1.0, 6.0] {
                let prox = ScalarProx::new(act, c);
                for i in -40..=40 {
                    for j in -40..=40 {
                        let (v, a) = (i as f32 * 0.07, j as f32 * 0.05);
                        let (v64, a64) = (v as f64, a as f64);
                        let f = |u: f64| {
                            0.5 * (act.apply(u) - v64).powi(2) + 0.5 * c * (u - a64).powi(2)
                        };
                        let u64 = prox.eval_piecewise(v64, a64);
                        let u32 = prox.eval_piecewise_f32(v, a) as f64;
                        let scale = 1.0 + f(u64) + v64 * v64 + c * a64 * a64;
                        assert!(
                            f(u32) - f(u64) <= 1e-6 * scale,
                            "{act:?} c={c} v={v} a={a}: f32 {u32} vs f64 {u64}"
                        );
                    }
                }
            }
        }
    }
}
