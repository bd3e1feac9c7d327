//! Hyperparameters of the BCD objective, and the weight initialisation schemes.
//!
//! The three-splitting objective (see the crate docs and `docs/algorithm.md`) is
//!
//! ```text
//! Φ = R(V_L; Y) + Σ_i λ/2 ‖W_i‖² + γ/2 Σ_i ‖V_i − σ_i(U_i)‖² + ρ/2 Σ_i ‖U_i − Ṽ_{i−1} W̃_iᵀ‖²
//! ```
//!
//! and every block update adds the proximal term `α/2 ‖x − x^old‖²` where the specification
//! says so.
//!
//! | Name | Default | Purpose | Range |
//! |---|---|---|---|
//! | `gamma` | 1.0 | weight of the activation penalties `‖V_i − σ(U_i)‖²` | `> 0`, finite |
//! | `rho` | 1.0 | weight of the pre-activation penalties `‖U_i − Ṽ_{i−1}W̃_iᵀ‖²` | `> 0`, finite |
//! | `alpha` | 5.0 | proximal weight of the `V_L`, `W̃_i` and `U_i` updates | `≥ 0`, finite (`> 0` for the descent guarantee) |
//! | `lambda` | 0.0 | ridge weight on `W_i` (never on biases) | `≥ 0`, finite |
//! | `loss` | `Squared` | loss on the lifted output | see [`Loss`] |
//! | `v_constraint` | `None` | constraint on hidden `V_i` | see [`VConstraint`] |
//! | `splitting` | `Three` | lifted formulation | see [`Splitting`] (two-splitting needs `α > 0`) |
//! | `cg_iterations` | 10 | most conjugate-gradient iterations of an activation block under an image layer | any (0 leaves the block unchanged) |
//! | `cg_tolerance` | 1e-3 | relative residual that ends those iterations early | `≥ 0`, finite |
//! | `penalty_growth` | 1.0 | ratio `q` of consecutive layers' weights in `Φ` (below) | `> 0`, finite; 1 with two-splitting |
//! | `alpha_lifted` | `None` (= `alpha`) | proximal weight of the lifted `V_L` and `U_i` updates alone | `≥ 0`, finite |
//!
//! **Layer weights.** With `penalty_growth = q` every term of layer `i` — its penalties, its
//! ridge and the proximal terms of its blocks — is weighted by `c_i = q^{i−L}` (1 at the output
//! layer), so `Φ = R + Σ_i c_i (λ/2‖W_i‖² + γ/2‖V_i − σ(U_i)‖² + ρ/2‖U_i − Ṽ_{i−1}W̃_iᵀ‖²)`.
//! The `W̃_i` and `U_i` blocks see one layer's terms only, so they do not change; a hidden
//! `V_i` block weighs fitting the next layer `q` times more than its own activation penalty
//! (`docs/algorithm.md`, "Depth").
//!
//! The defaults are the official code's MNIST configuration (`γ = ρ = 1, α = 5`). The weight
//! initialisation ([`WeightInit`] and its seed) is not an optimizer setting: it belongs where
//! the weights are created ([`Network::init`](crate::Network::init)).

use serde::{Deserialize, Serialize};

use crate::error::{BcdError, Result};
use crate::loss::Loss;

/// Declares a builder-style setter for each listed field of an options struct: `name(value)`
/// returns the struct with that field set, so `#[non_exhaustive]` options can still be written
/// in one expression (`BcdConfig::default().alpha(1.0)`).
macro_rules! setters {
    ($ty:ty { $($field:ident: $t:ty),* $(,)? }) => {
        impl $ty {
            $(
                #[doc = concat!("`self` with `", stringify!($field), "` set to `value`.")]
                #[must_use]
                pub fn $field(mut self, value: $t) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}
pub(crate) use setters;

setters!(BcdConfig {
    gamma: f64,
    rho: f64,
    alpha: f64,
    lambda: f64,
    loss: Loss,
    splitting: Splitting,
    v_constraint: VConstraint,
    cg_iterations: usize,
    cg_tolerance: f64,
    penalty_growth: f64,
    alpha_lifted: Option<f64>,
});

/// Which lifted formulation the sweep minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Splitting {
    /// Lifted `U_i` and `V_i`; every block update exact (the default).
    #[default]
    Three,
    /// Lifted `V_i` only; hidden blocks take prox-linear steps with backtracking (needs `α > 0`).
    Two,
}

/// Optional constraint `s_i` on the hidden activations `V_i` (an indicator: 0 on the set).
///
/// The `V_i` update minimises without it and projects onto the set, as `docs/algorithm.md` says.
/// **(choice)** Because the `V_i` subproblem is not isotropic (`sI + ρWᵀW`), the projected
/// point can be worse than the old one; it is kept only when the block objective does not
/// increase, otherwise `V_i` keeps its (feasible) old value, so `Φ` still never increases.
/// In the two-splitting the prox-linear step is isotropic, so projecting it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum VConstraint {
    /// No constraint.
    #[default]
    None,
    /// `V_i ≥ 0`.
    NonNegative,
    /// `lo ≤ V_i ≤ hi`.
    Box {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
}

impl VConstraint {
    /// Projection of one entry onto the set.
    #[inline]
    pub fn project(self, x: f64) -> f64 {
        match self {
            VConstraint::None => x,
            VConstraint::NonNegative => x.max(0.0),
            VConstraint::Box { lo, hi } => x.clamp(lo, hi),
        }
    }

    /// [`Self::project`] of every entry, through the fused CPU kernel or tensor operations
    /// (see `kernels::device`).
    pub(crate) fn project_all(self, t: &candle_core::Tensor) -> crate::Result<candle_core::Tensor> {
        if crate::kernels::fused(t) {
            return crate::kernels::map([t], |[x]| self.project(x as f64) as f32);
        }
        Ok(match self {
            VConstraint::None => t.clone(),
            VConstraint::NonNegative => t.relu()?,
            VConstraint::Box { lo, hi } => t.clamp(lo as f32, hi as f32)?,
        })
    }
}

/// Weight initialisation scheme. **(choice, documented)**: the default follows the official
/// code so that its published accuracy curve is the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WeightInit {
    /// The official code's scheme: `W ~ 0.01·N(0, 1)`, `b = 0.1`.
    #[default]
    Official,
    /// Kaiming/He normal: `W ~ N(0, 2/fan_in)`, `b = 0`.
    Kaiming,
    /// Glorot/Xavier normal: `W ~ N(0, 2/(fan_in + fan_out))`, `b = 0`.
    Glorot,
}

/// Looks `value` up in a table of names, the way every settings enum parses (the CLI's and
/// the presets' spelling); an unknown name is a [`BcdError::UnknownValue`] listing the names.
pub(crate) fn parse_name<T: Copy>(
    setting: &'static str,
    value: &str,
    table: &[(&'static str, T)],
    expected: &'static str,
) -> Result<T> {
    table
        .iter()
        .find(|(name, _)| *name == value)
        .map(|&(_, v)| v)
        .ok_or_else(|| BcdError::UnknownValue {
            setting,
            value: value.to_string(),
            expected,
        })
}

impl std::str::FromStr for WeightInit {
    type Err = BcdError;

    /// `official`, `kaiming` or `glorot`.
    fn from_str(s: &str) -> Result<Self> {
        let table = [
            ("official", WeightInit::Official),
            ("kaiming", WeightInit::Kaiming),
            ("glorot", WeightInit::Glorot),
        ];
        parse_name(
            "weight initialisation",
            s,
            &table,
            "official, kaiming, glorot",
        )
    }
}

impl std::str::FromStr for Splitting {
    type Err = BcdError;

    /// `three` or `two`.
    fn from_str(s: &str) -> Result<Self> {
        let table = [("three", Splitting::Three), ("two", Splitting::Two)];
        parse_name("splitting", s, &table, "three, two")
    }
}

impl WeightInit {
    /// Standard deviation of the weights and constant bias value for a layer `fan_in → fan_out`.
    pub fn std_and_bias(self, fan_in: usize, fan_out: usize) -> (f64, f64) {
        match self {
            WeightInit::Official => (0.01, 0.1),
            WeightInit::Kaiming => ((2.0 / fan_in as f64).sqrt(), 0.0),
            WeightInit::Glorot => ((2.0 / (fan_in + fan_out) as f64).sqrt(), 0.0),
        }
    }
}

/// Hyperparameters of [`crate::BcdOptimizer`]. Build with struct update syntax and check
/// with [`BcdConfig::validate`] (the optimizer does so before any work):
///
/// ```
/// use candle_bcd::BcdConfig;
/// let config = BcdConfig::default().alpha(1.0);
/// assert!(config.validate().is_ok());
/// assert!(config.gamma(0.0).validate().is_err());
/// ```
///
/// The type may gain fields: build it from [`BcdConfig::default`] and its setters (or by
/// assigning fields), not as a struct literal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BcdConfig {
    /// Weight `γ` of the activation penalties.
    pub gamma: f64,
    /// Weight `ρ` of the pre-activation penalties.
    pub rho: f64,
    /// Proximal weight `α`.
    pub alpha: f64,
    /// Ridge weight `λ` on the weights `W_i` (not on biases).
    pub lambda: f64,
    /// Loss on the lifted output `V_L`.
    #[serde(default)]
    pub loss: Loss,
    /// Three- or two-splitting formulation.
    #[serde(default)]
    pub splitting: Splitting,
    /// Constraint on the hidden activations `V_i`.
    #[serde(default)]
    pub v_constraint: VConstraint,
    /// Most conjugate-gradient iterations of an activation block under an image layer.
    #[serde(default = "default_cg_iterations")]
    pub cg_iterations: usize,
    /// Relative residual at which those conjugate-gradient solves stop early.
    #[serde(default = "default_cg_tolerance")]
    pub cg_tolerance: f64,
    /// Ratio `q` between the weights of consecutive layers' terms in `Φ`: layer `i` of `L` is
    /// weighted by `q^{i−L}` (see the module docs).
    #[serde(default = "default_penalty_growth")]
    pub penalty_growth: f64,
    /// Proximal weight of the lifted blocks `V_L` and `U_i`; `None` takes `alpha`. The weight
    /// blocks (and the two-splitting's prox-linear steps) keep `alpha`.
    #[serde(default)]
    pub alpha_lifted: Option<f64>,
}

fn default_penalty_growth() -> f64 {
    1.0
}

fn default_cg_iterations() -> usize {
    10
}

fn default_cg_tolerance() -> f64 {
    1e-3
}

impl Default for BcdConfig {
    fn default() -> Self {
        Self {
            gamma: 1.0,
            rho: 1.0,
            alpha: 5.0,
            lambda: 0.0,
            loss: Loss::Squared,
            splitting: Splitting::Three,
            v_constraint: VConstraint::None,
            cg_iterations: default_cg_iterations(),
            cg_tolerance: default_cg_tolerance(),
            penalty_growth: default_penalty_growth(),
            alpha_lifted: None,
        }
    }
}

/// Errors naming `name` unless `value` is finite and `≥ 0` (`> 0` when `strictly_positive`).
pub(crate) fn check(name: &'static str, value: f64, strictly_positive: bool) -> Result<()> {
    let ok = value.is_finite()
        && if strictly_positive {
            value > 0.0
        } else {
            value >= 0.0
        };
    if ok {
        Ok(())
    } else {
        Err(BcdError::InvalidHyperparameter {
            name,
            value,
            reason: if strictly_positive {
                "must be finite and > 0"
            } else {
                "must be finite and >= 0"
            },
        })
    }
}

impl BcdConfig {
    /// Checks every hyperparameter's range; the first offending one is named in the error.
    pub fn validate(&self) -> Result<()> {
        check("gamma", self.gamma, true)?;
        check("rho", self.rho, true)?;
        check("alpha", self.alpha, false)?;
        check("lambda", self.lambda, false)?;
        check("cg_tolerance", self.cg_tolerance, false)?;
        check("penalty_growth", self.penalty_growth, true)?;
        if let Some(a) = self.alpha_lifted {
            check("alpha_lifted", a, false)?;
        }
        if let VConstraint::Box { lo, hi } = self.v_constraint {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(BcdError::InvalidHyperparameter {
                    name: "v_constraint",
                    value: hi - lo,
                    reason: "a box needs finite bounds with lo <= hi",
                });
            }
        }
        if self.splitting == Splitting::Two {
            check("alpha", self.alpha, true)?;
            if self.penalty_growth != 1.0 {
                return Err(BcdError::InvalidHyperparameter {
                    name: "penalty_growth",
                    value: self.penalty_growth,
                    reason: "the two-splitting weighs every layer alike: must be 1",
                });
            }
        }
        Ok(())
    }

    /// The proximal weight of the lifted `V_L` and `U_i` blocks.
    pub(crate) fn lifted_prox(&self) -> f64 {
        self.alpha_lifted.unwrap_or(self.alpha)
    }

    /// The weight `c_l = q^{l−last}` of layer `l`'s terms in `Φ` (layers counted from 0).
    pub(crate) fn layer_weight(&self, l: usize, last: usize) -> f64 {
        self.penalty_growth.powf(l as f64 - last as f64)
    }

    /// The hidden `V_i` block's weights relative to its own activation penalty: `(γ, qρ)` for
    /// that penalty and the next layer's pre-activation penalty.
    pub(crate) fn hidden_weights(&self) -> (f64, f64) {
        (self.gamma, self.penalty_growth * self.rho)
    }

    /// The weight `q^d γ`, relative to layer `i`'s, of the activation penalty of the residual
    /// layer `i + d` that reads `V_i` as its skip.
    pub(crate) fn skip_weight(&self, d: usize) -> f64 {
        self.penalty_growth.powi(d as i32) * self.gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_weights_and_lifted_prox_are_checked_and_named() {
        let named = |c: BcdConfig| match c.validate() {
            Err(BcdError::InvalidHyperparameter { name, .. }) => name,
            other => panic!("{c:?} gave {other:?}"),
        };
        let base = BcdConfig::default();
        assert_eq!(named(base.clone().penalty_growth(0.0)), "penalty_growth");
        assert_eq!(
            named(base.clone().penalty_growth(f64::NAN)),
            "penalty_growth"
        );
        assert_eq!(named(base.clone().alpha_lifted(Some(-1.0))), "alpha_lifted");
        let two = base.clone().splitting(Splitting::Two).penalty_growth(2.0);
        assert_eq!(named(two), "penalty_growth");
        assert!(base
            .clone()
            .penalty_growth(100.0)
            .alpha_lifted(Some(0.0))
            .validate()
            .is_ok());
        // c_l = q^{l − last}; the lifted prox falls back on α.
        let q = base.clone().penalty_growth(10.0);
        assert!((q.layer_weight(1, 3) - 1e-2).abs() < 1e-15 && q.layer_weight(3, 3) == 1.0);
        assert_eq!(base.clone().alpha(3.0).lifted_prox(), 3.0);
        assert_eq!(base.alpha(3.0).alpha_lifted(Some(0.5)).lifted_prox(), 0.5);
    }

    #[test]
    fn weight_init_parses_its_names_and_rejects_others() {
        assert_eq!(
            "kaiming".parse::<WeightInit>().unwrap(),
            WeightInit::Kaiming
        );
        assert_eq!(
            "official".parse::<WeightInit>().unwrap(),
            WeightInit::Official
        );
        assert_eq!("glorot".parse::<WeightInit>().unwrap(), WeightInit::Glorot);
        let e = "he".parse::<WeightInit>().unwrap_err().to_string();
        assert!(e.contains("\"he\"") && e.contains("kaiming"), "{e}");
    }
}
