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
//! For the identity `u* = (v + c a)/(1 + c)`. All arithmetic is done in `f64`.

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
}

impl Activation {
    /// Slope on the negative half-line of the piecewise-linear activations.
    fn negative_slope(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::LeakyRelu { slope } => slope,
            Activation::Identity => 1.0,
        }
    }

    /// `σ(u)`.
    #[inline]
    pub fn apply(self, u: f64) -> f64 {
        if u >= 0.0 {
            u
        } else {
            self.negative_slope() * u
        }
    }

    /// Exact minimiser of `½ (σ(u) − v)² + c/2 (u − a)²` for `c > 0`.
    #[inline]
    pub fn prox(self, v: f64, a: f64, c: f64) -> f64 {
        let s = self.negative_slope();
        let u_plus = ((v + c * a) / (1.0 + c)).max(0.0);
        if s == 1.0 {
            return (v + c * a) / (1.0 + c);
        }
        let u_minus = ((s * v + c * a) / (s * s + c)).min(0.0);
        let f = |u: f64| {
            let r = self.apply(u) - v;
            let d = u - a;
            0.5 * r * r + 0.5 * c * d * d
        };
        if f(u_minus) < f(u_plus) {
            u_minus
        } else {
            u_plus
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force minimum of f on a fine grid around the candidates.
    fn grid_min(act: Activation, v: f64, a: f64, c: f64) -> f64 {
        let f = |u: f64| 0.5 * (act.apply(u) - v).powi(2) + 0.5 * c * (u - a).powi(2);
        (-400_000..=400_000)
            .map(|k| f(k as f64 * 1e-5))
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn prox_beats_grid_search() {
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.1 },
            Activation::Identity,
        ];
        let cases = [
            (1.0, -0.5, 0.3),
            (-1.0, 0.7, 2.0),
            (0.2, -0.2, 0.05),
            (2.5, 1.5, 6.0),
            (-0.3, -1.2, 1.0),
            (0.0, 0.0, 1.0),
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
