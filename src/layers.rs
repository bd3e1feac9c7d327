//! The layers BCD trains, taken from any candle-nn model.
//!
//! A network is a chain of affine layers `U_i = V_{i−1}W_iᵀ + 1b_iᵀ` (`i = 1 … L`), each stored
//! the way `candle_nn::linear` creates it: `{prefix}.weight` of shape `[d_i, d_{i−1}]` and
//! `{prefix}.bias` of shape `[d_i]`. [`Layers::from_varmap`] takes the prefixes of such a model in
//! order, reads the widths `d_0 … d_L` from the weights' shapes and holds the `Var`s themselves,
//! so the optimizer updates the model's own parameters in place. What the weights cannot tell
//! (the hidden activation `σ`, applied after every layer but the last, and which layers are
//! residual, `V_i = V_{i−1} + σ(U_i)`) is given with [`Layers::activation`] and
//! [`Layers::residual`].

use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use crate::activation::Activation;
use crate::arch::Architecture;
use crate::error::{BcdError, Result};

/// The ordered affine layers of a model, their `Var`s and the [`Architecture`] they form.
///
/// ```
/// use candle_bcd::{Activation, Layers};
/// use candle_core::{DType, Device};
/// use candle_nn::{VarBuilder, VarMap};
/// # fn main() -> candle_bcd::Result<()> {
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _model = candle_nn::seq()
///     .add(candle_nn::linear(784, 64, vb.pp("fc1"))?)
///     .add(candle_nn::Activation::Relu)
///     .add(candle_nn::linear(64, 10, vb.pp("fc2"))?);
/// let layers = Layers::from_varmap(&varmap, ["fc1", "fc2"])?.activation(Activation::Relu)?;
/// assert_eq!(layers.architecture().widths(), [784, 64, 10]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Layers {
    names: Vec<String>,
    weights: Vec<Var>,
    biases: Vec<Var>,
    arch: Architecture,
}

impl Layers {
    /// The layers under `prefixes`, in order from the input: each prefix must hold
    /// `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]` in `varmap`, and each layer's
    /// input width must be the previous layer's output width. The hidden activation is ReLU
    /// until [`Self::activation`] says otherwise; no layer is residual.
    ///
    /// Errors ([`BcdError::MissingTensor`], [`BcdError::ShapeMismatch`],
    /// [`BcdError::InvalidArchitecture`]) name the prefix at fault.
    pub fn from_varmap<I, S>(varmap: &VarMap, prefixes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<String> = prefixes
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        if names.is_empty() {
            return Err(BcdError::InvalidArchitecture(
                "no layers given: name at least one linear layer".into(),
            ));
        }
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
        let get = |name: String| -> Result<Var> {
            data.get(&name)
                .cloned()
                .ok_or(BcdError::MissingTensor(name))
        };
        let (mut weights, mut biases, mut widths) = (Vec::new(), Vec::new(), Vec::new());
        for name in &names {
            let w = get(format!("{name}.weight"))?;
            let b = get(format!("{name}.bias"))?;
            let &[out, inp] = w.dims() else {
                return Err(BcdError::ShapeMismatch {
                    name: format!("{name}.weight"),
                    expected: vec![0, widths.last().copied().unwrap_or(0)],
                    got: w.dims().to_vec(),
                });
            };
            if let Some(&prev) = widths.last() {
                if inp != prev {
                    return Err(BcdError::ShapeMismatch {
                        name: format!("{name}.weight"),
                        expected: vec![out, prev],
                        got: w.dims().to_vec(),
                    });
                }
            } else {
                widths.push(inp);
            }
            if b.dims() != [out] {
                return Err(BcdError::ShapeMismatch {
                    name: format!("{name}.bias"),
                    expected: vec![out],
                    got: b.dims().to_vec(),
                });
            }
            for (what, var) in [("weight", &w), ("bias", &b)] {
                if !var.device().same_device(w.device()) {
                    return Err(BcdError::Device {
                        device: format!("{:?}", var.device().location()),
                        reason: format!("{name}.{what} is not on {name}.weight's device"),
                    });
                }
            }
            widths.push(out);
            weights.push(w);
            biases.push(b);
        }
        drop(data);
        let arch = Architecture::mlp(&widths, Activation::Relu)
            .map_err(|e| BcdError::InvalidArchitecture(format!("layers {names:?}: {e}")))?;
        Ok(Self {
            names,
            weights,
            biases,
            arch,
        })
    }

    /// The layers of `arch` under the names [`Architecture::layer_prefix`] gives
    /// (`layers.{l}`, the names [`BcdNet`](crate::BcdNet) uses), with its activation and
    /// residual layers. Errors if `varmap` does not hold them with `arch`'s shapes.
    pub fn of_architecture(varmap: &VarMap, arch: &Architecture) -> Result<Self> {
        let names = (0..arch.num_layers()).map(Architecture::layer_prefix);
        let layers = Self::from_varmap(varmap, names)?;
        if layers.len() != arch.num_layers() {
            return Err(BcdError::InvalidArchitecture(format!(
                "{} layers for an architecture of {}",
                layers.len(),
                arch.num_layers()
            )));
        }
        for l in 0..arch.num_layers() {
            let (n, m) = arch.layer_dims(l);
            let got = layers.weights[l].dims();
            if got != [m, n] {
                return Err(BcdError::ShapeMismatch {
                    name: format!("{}.weight", layers.names[l]),
                    expected: vec![m, n],
                    got: got.to_vec(),
                });
            }
        }
        Ok(Self {
            arch: arch.clone(),
            ..layers
        })
    }

    /// Sets the hidden activation `σ` (applied after every layer but the last).
    pub fn activation(mut self, activation: Activation) -> Result<Self> {
        let residual = self.residual_flags();
        self.arch = Architecture::mlp(self.arch.widths(), activation)?.with_residual(residual)?;
        Ok(self)
    }

    /// Marks the layers under `prefixes` as residual: `V_i = V_{i−1} + σ(U_i)`. Each must be
    /// one of the layers, hidden (not the last) and keep its width; the error names the
    /// prefix that is not.
    pub fn residual<I, S>(mut self, prefixes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut flags = vec![false; self.names.len()];
        for prefix in prefixes {
            let prefix = prefix.as_ref();
            let l = self.names.iter().position(|n| n == prefix).ok_or_else(|| {
                BcdError::InvalidArchitecture(format!(
                    "residual layer {prefix:?} is not one of the layers {:?}",
                    self.names
                ))
            })?;
            let (n, m) = self.arch.layer_dims(l);
            if l + 1 == self.names.len() || n != m {
                return Err(BcdError::InvalidArchitecture(format!(
                    "layer {prefix} ({n} → {m}) cannot be residual: residual layers are hidden \
                     and keep their width"
                )));
            }
            flags[l] = true;
        }
        let arch = Architecture::mlp(self.arch.widths(), self.arch.activation())?;
        self.arch = arch.with_residual(flags)?;
        Ok(self)
    }

    /// The network these layers form: widths, activation, residual layers.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The layers' prefixes, from the input.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of layers `L`.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always `false`: a [`Layers`] holds at least one layer.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The weight `Var`s `W_1 … W_L` (updated in place by the optimizer).
    pub fn weight_vars(&self) -> &[Var] {
        &self.weights
    }

    /// The bias `Var`s `b_1 … b_L`.
    pub fn bias_vars(&self) -> &[Var] {
        &self.biases
    }

    /// `W_{l+1}` (0-based layer index `l`) as a tensor.
    pub(crate) fn weight(&self, l: usize) -> &Tensor {
        self.weights[l].as_tensor()
    }

    /// `b_{l+1}` (0-based layer index `l`) as a tensor.
    pub(crate) fn bias(&self, l: usize) -> &Tensor {
        self.biases[l].as_tensor()
    }

    /// The residual flag of every layer.
    fn residual_flags(&self) -> Vec<bool> {
        (0..self.names.len())
            .map(|l| self.arch.is_residual(l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    fn varmap_with(layers: &[(&str, usize, usize)]) -> VarMap {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        for &(name, i, o) in layers {
            candle_nn::linear(i, o, vb.pp(name)).unwrap();
        }
        varmap
    }

    #[test]
    fn widths_come_from_the_shapes() {
        let vm = varmap_with(&[("ln1", 6, 5), ("ln2", 5, 5), ("ln3", 5, 2)]);
        let layers = Layers::from_varmap(&vm, ["ln1", "ln2", "ln3"])
            .unwrap()
            .activation(Activation::Tanh)
            .unwrap()
            .residual(["ln2"])
            .unwrap();
        let arch = layers.architecture();
        assert_eq!(arch.widths(), [6, 5, 5, 2]);
        assert_eq!(arch.activation(), Activation::Tanh);
        assert!(arch.is_residual(1) && !arch.is_residual(0) && !arch.is_residual(2));
        // The activation set after the residual layout keeps it.
        let again = layers.activation(Activation::Relu).unwrap();
        assert!(again.architecture().is_residual(1));
    }

    #[test]
    fn errors_name_the_prefix() {
        let vm = varmap_with(&[("fc1", 6, 5), ("fc2", 4, 3), ("fc3", 5, 5)]);
        let err = |r: Result<Layers>| r.unwrap_err().to_string();
        let e = err(Layers::from_varmap(&vm, ["fc1", "nope"]));
        assert!(e.contains("nope.weight"), "{e}");
        let e = err(Layers::from_varmap(&vm, ["fc1", "fc2"]));
        assert!(e.contains("fc2.weight") && e.contains("[3, 5]"), "{e}");
        let e = err(Layers::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["fc1"])));
        assert!(e.contains("fc1") && e.contains("6 → 5"), "{e}");
        let e = err(Layers::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["fc3"])));
        assert!(e.contains("fc3"), "{e}");
        let e = err(Layers::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["x"])));
        assert!(e.contains("\"x\""), "{e}");
        let e = err(Layers::from_varmap(&vm, Vec::<String>::new()));
        assert!(e.contains("no layers"), "{e}");
        let arch = Architecture::mlp(&[6, 5], Activation::Relu).unwrap();
        let e = err(Layers::of_architecture(&vm, &arch));
        assert!(e.contains("layers.0.weight"), "{e}");
    }
}
