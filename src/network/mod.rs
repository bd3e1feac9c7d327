//! The one network type of the crate: [`Network`].
//!
//! A network is a chain of affine layers `U_i = V_{i−1}W_iᵀ + 1b_iᵀ` (`i = 1 … L`), each stored
//! the way `candle_nn::linear` creates it: `{name}.weight` of shape `[d_i, d_{i−1}]` and
//! `{name}.bias` of shape `[d_i]`, with `V_i = σ(U_i)` (or `V_{i−1} + σ(U_i)` for a residual
//! layer) after every layer but the last, whose output is linear. An image layer stores its
//! weight the way `candle_nn::conv2d` does, `[out, C, k, k]`, and computes a convolution of its
//! pooled input image (`crate::conv`). A [`Network`] holds the
//! layers' names, their `Var`s and the [`Architecture`] they form, so
//!
//! - the optimizers update the model's own parameters in place,
//! - it evaluates itself ([`candle_nn::Module`]), and
//! - checkpoints and exports carry its names, activation and residual layers, from which
//!   [`Network::from_file`] rebuilds it.
//!
//! It comes from a user's `VarMap` ([`Network::from_varmap`], with what the weights cannot
//! tell given by [`Network::activation`] and [`Network::residual`]), from the crate's own
//! initialisations ([`Network::init`]) or from a file ([`Network::from_file`],
//! [`Checkpoint::network`](crate::checkpoint::Checkpoint::network)).
//! [`Network::check_against`] verifies that it computes what the user's own model computes.

use candle_core::{DType, Tensor, Var};
use candle_nn::{Module, VarMap};

use crate::activation::Activation;
use crate::arch::Architecture;
use crate::error::{BcdError, Result};

mod check;
mod file;
pub(crate) mod forward;
mod init;

pub(crate) use init::set_or_insert;

/// The ordered affine layers of a model, their `Var`s and the [`Architecture`] they form.
///
/// ```
/// use candle_bcd::{Activation, Network};
/// use candle_core::{DType, Device};
/// use candle_nn::{VarBuilder, VarMap};
/// # fn main() -> candle_bcd::Result<()> {
/// let varmap = VarMap::new();
/// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
/// let _model = candle_nn::seq()
///     .add(candle_nn::linear(784, 64, vb.pp("fc1"))?)
///     .add(candle_nn::Activation::Relu)
///     .add(candle_nn::linear(64, 10, vb.pp("fc2"))?);
/// let net = Network::from_varmap(&varmap, ["fc1", "fc2"])?.activation(Activation::Relu)?;
/// assert_eq!(net.architecture().widths(), [784, 64, 10]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Network {
    names: Vec<String>,
    weights: Vec<Var>,
    biases: Vec<Var>,
    arch: Architecture,
}

impl Network {
    /// The layers under `prefixes`, in order from the input: each prefix must hold
    /// `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]` in `varmap`, both `f32`, and
    /// each layer's input width must be the previous layer's output width. The hidden
    /// activation is ReLU until [`Self::activation`] says otherwise; no layer is residual.
    ///
    /// Errors ([`BcdError::MissingTensor`], [`BcdError::ShapeMismatch`],
    /// [`BcdError::UnsupportedLayer`], [`BcdError::InvalidArchitecture`]) name the prefix at
    /// fault.
    pub fn from_varmap<I, S>(varmap: &VarMap, prefixes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names: Vec<String> = prefixes
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        let (weights, biases) = fetch_layers(varmap, &names)?;
        let mut widths = Vec::new();
        for ((name, w), b) in names.iter().zip(&weights).zip(&biases) {
            let &[out, inp] = w.dims() else {
                return Err(unsupported(
                    name,
                    format!(
                        "its weight has shape {:?}; Network::from_varmap reads linear layers \
                         (2-D weights [out, in]); describe a convolutional network with \
                         Architecture::cnn and use Network::from_varmap_as",
                        w.dims()
                    ),
                ));
            };
            match widths.last() {
                Some(&prev) if inp != prev => {
                    return Err(BcdError::ShapeMismatch {
                        name: format!("{name}.weight"),
                        expected: vec![out, prev],
                        got: w.dims().to_vec(),
                    })
                }
                Some(_) => {}
                None => widths.push(inp),
            }
            check_shape(&format!("{name}.bias"), b, &[out])?;
            widths.push(out);
        }
        let arch = Architecture::mlp(&widths, Activation::Relu)
            .map_err(|e| BcdError::InvalidArchitecture(format!("layers {names:?}: {e}")))?;
        Ok(Self {
            names,
            weights,
            biases,
            arch,
        })
    }

    /// The layers `names` of `varmap` forming `arch` (its activation, residual and image layers
    /// included): the way to train a convolutional model of one's own, whose weights cannot
    /// tell its input size, strides, paddings or pooling. `names[l]` is layer index `l`
    /// (pooling stages have no name). Errors name the tensor whose shape is not
    /// [`Architecture::weight_shape`] (or `[out]` for a bias), and a layer whose weights are
    /// missing, not `f32` or without a bias.
    ///
    /// ```
    /// use candle_bcd::{Activation, Architecture, Conv2d, Image, Network, Stage};
    /// use candle_core::{DType, Device};
    /// use candle_nn::{Conv2dConfig, VarBuilder, VarMap};
    /// # fn main() -> candle_bcd::Result<()> {
    /// let varmap = VarMap::new();
    /// let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    /// let same = Conv2dConfig { padding: 1, ..Default::default() };
    /// candle_nn::conv2d(1, 8, 3, same, vb.pp("conv1"))?;
    /// candle_nn::linear(8 * 14 * 14, 10, vb.pp("fc"))?;
    /// let arch = Architecture::cnn(
    ///     Image::new(1, 28, 28),
    ///     &[Stage::Conv2d(Conv2d::same(8, 3)), Stage::AvgPool(2), Stage::Linear(10)],
    ///     Activation::Relu,
    /// )?;
    /// let net = Network::from_varmap_as(&varmap, &["conv1".into(), "fc".into()], &arch)?;
    /// assert_eq!(net.weight(0).dims(), [8, 1, 3, 3]);
    /// # Ok(()) }
    /// ```
    pub fn from_varmap_as(varmap: &VarMap, names: &[String], arch: &Architecture) -> Result<Self> {
        if names.len() != arch.num_layers() {
            return Err(BcdError::InvalidArchitecture(format!(
                "{} layer names for an architecture of {} layers",
                names.len(),
                arch.num_layers()
            )));
        }
        let (weights, biases) = fetch_layers(varmap, names)?;
        for (l, name) in names.iter().enumerate() {
            let shape = arch.weight_shape(l);
            check_shape(&format!("{name}.weight"), &weights[l], &shape)?;
            check_shape(&format!("{name}.bias"), &biases[l], &shape[..1])?;
        }
        Ok(Self {
            names: names.to_vec(),
            weights,
            biases,
            arch: arch.clone(),
        })
    }

    /// The layers of `arch` in `varmap` under the names the crate's own constructors give
    /// ([`Architecture::layer_prefix`]: `layers.{l}`), with its activation and residual layers.
    pub fn of_architecture(varmap: &VarMap, arch: &Architecture) -> Result<Self> {
        let names: Vec<String> = (0..arch.num_layers())
            .map(Architecture::layer_prefix)
            .collect();
        Self::from_varmap_as(varmap, &names, arch)
    }

    /// Sets the hidden activation `σ` (applied after every layer but the last).
    pub fn activation(mut self, activation: Activation) -> Result<Self> {
        self.arch = self.arch.clone().with_activation(activation)?;
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
            flags[l] = true;
        }
        let arch = self.arch.clone();
        self.arch = arch.with_residual_named(flags, |l| self.names[l].clone())?;
        Ok(self)
    }

    /// Marks the layers under `prefixes` as closing two-layer residual branches
    /// ([`Branch::Pair`](crate::Branch::Pair)): `V_i = V_{i−2} + U_i`, the layer before each
    /// opening the branch with `σ`, as in a block `x + fc2(σ(fc1(x)))`. Each must follow a
    /// non-residual layer whose input is as wide as its output; the error names the prefix that
    /// does not.
    pub fn residual_pairs<I, S>(mut self, prefixes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let arch = self.arch.clone().with_residual(Vec::new())?;
        self.arch = arch.with_branch(crate::Branch::Pair)?;
        self.residual(prefixes)
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

    /// Always `false`: a [`Network`] holds at least one layer.
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

    /// `W_{l+1}` (0-based layer index `l`), `[d_{l+1}, d_l]`.
    pub fn weight(&self, l: usize) -> &Tensor {
        self.weights[l].as_tensor()
    }

    /// `b_{l+1}` (0-based layer index `l`), `[d_{l+1}]`.
    pub fn bias(&self, l: usize) -> &Tensor {
        self.biases[l].as_tensor()
    }

    /// The weights and biases as tensors, from the input.
    pub(crate) fn tensors(&self) -> (Vec<Tensor>, Vec<Tensor>) {
        (
            self.weights.iter().map(|v| v.as_tensor().clone()).collect(),
            self.biases.iter().map(|v| v.as_tensor().clone()).collect(),
        )
    }

    /// The weights and biases under their own names (`{name}.weight`, `{name}.bias`).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let params = self.weights.iter().zip(&self.biases);
        self.names
            .iter()
            .zip(params)
            .flat_map(|(prefix, (w, b))| {
                [
                    (format!("{prefix}.weight"), w.as_tensor().clone()),
                    (format!("{prefix}.bias"), b.as_tensor().clone()),
                ]
            })
            .collect()
    }

    /// The network's outputs (logits) for inputs `x` of shape `[N, d_0]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.tensors();
        forward::forward_from(&self.arch, &w, &b, 0, x.clone())
    }

    /// The head's input for inputs `x`: the output of the last hidden layer, i.e. the
    /// features the linear head classifies (`logits = features · W_Lᵀ + 1b_Lᵀ`).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let (w, b) = self.tensors();
        let head = self.arch.num_layers() - 1;
        forward::forward_range(&self.arch, &w, &b, 0..head, x.clone())
    }

    /// Fraction of rows of `x` whose arg-max output equals `labels` (integer class ids),
    /// computed in blocks of rows so that it needs only a few megabytes beyond `x`.
    pub fn accuracy(&self, x: &Tensor, labels: &Tensor) -> Result<f64> {
        let (w, b) = self.tensors();
        let correct = forward::blocked_correct(&self.arch, &w, &b, x, None, labels)?;
        Ok(correct / x.dim(0)?.max(1) as f64)
    }
}

impl Module for Network {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.logits(xs).map_err(candle_core::Error::wrap)
    }
}

/// The weight and bias `Var`s under each of `names`: present, `f32`, on one device. Errors
/// name the layer at fault.
fn fetch_layers(varmap: &VarMap, names: &[String]) -> Result<(Vec<Var>, Vec<Var>)> {
    if names.is_empty() {
        return Err(BcdError::InvalidArchitecture(
            "no layers given: name at least one layer".into(),
        ));
    }
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap mutex poisoned".into()))?;
    let (mut weights, mut biases) = (Vec::new(), Vec::new());
    for name in names {
        let w = data
            .get(&format!("{name}.weight"))
            .cloned()
            .ok_or_else(|| BcdError::MissingTensor(format!("{name}.weight")))?;
        let b = data.get(&format!("{name}.bias")).cloned().ok_or_else(|| {
            unsupported(
                name,
                format!("it has no {name}.bias; layers without a bias do not train"),
            )
        })?;
        for (what, var) in [("weight", &w), ("bias", &b)] {
            if var.dtype() != DType::F32 {
                return Err(unsupported(
                    name,
                    format!("{name}.{what} is {:?}; BCD trains f32 weights", var.dtype()),
                ));
            }
            if !var.device().same_device(w.device()) {
                return Err(BcdError::Device {
                    device: format!("{:?}", var.device().location()),
                    reason: format!("{name}.{what} is not on {name}.weight's device"),
                });
            }
        }
        weights.push(w);
        biases.push(b);
    }
    Ok((weights, biases))
}

/// [`BcdError::ShapeMismatch`] naming `name` unless `t` has shape `expected`.
fn check_shape(name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dims() == expected {
        return Ok(());
    }
    Err(BcdError::ShapeMismatch {
        name: name.to_owned(),
        expected: expected.to_vec(),
        got: t.dims().to_vec(),
    })
}

/// A [`BcdError::UnsupportedLayer`] for layer `name`.
fn unsupported(name: &str, reason: String) -> BcdError {
    BcdError::UnsupportedLayer {
        layer: name.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
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
        let net = Network::from_varmap(&vm, ["ln1", "ln2", "ln3"])
            .unwrap()
            .activation(Activation::Tanh)
            .unwrap()
            .residual(["ln2"])
            .unwrap();
        let arch = net.architecture();
        assert_eq!(arch.widths(), [6, 5, 5, 2]);
        assert_eq!(arch.activation(), Activation::Tanh);
        assert!(arch.is_residual(1) && !arch.is_residual(0) && !arch.is_residual(2));
        // The activation set after the residual layout keeps it.
        let again = net.activation(Activation::Relu).unwrap();
        assert!(again.architecture().is_residual(1));
    }

    #[test]
    fn errors_name_the_prefix() {
        let vm = varmap_with(&[("fc1", 6, 5), ("fc2", 4, 3), ("fc3", 5, 5)]);
        let err = |r: Result<Network>| r.unwrap_err().to_string();
        let e = err(Network::from_varmap(&vm, ["fc1", "nope"]));
        assert!(e.contains("nope.weight"), "{e}");
        let e = err(Network::from_varmap(&vm, ["fc1", "fc2"]));
        assert!(e.contains("fc2.weight") && e.contains("[3, 5]"), "{e}");
        let e = err(Network::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["fc1"])));
        assert!(e.contains("layer fc1 ") && e.contains("6 → 5"), "{e}");
        let e = err(Network::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["fc3"])));
        assert!(e.contains("layer fc3 "), "{e}");
        let e = err(Network::from_varmap(&vm, ["fc1", "fc3"]).and_then(|l| l.residual(["x"])));
        assert!(e.contains("\"x\""), "{e}");
        let e = err(Network::from_varmap(&vm, Vec::<String>::new()));
        assert!(e.contains("no layers"), "{e}");
        let arch = Architecture::mlp(&[6, 5], Activation::Relu).unwrap();
        let e = err(Network::of_architecture(&vm, &arch));
        assert!(e.contains("layers.0.weight"), "{e}");
    }

    /// A block `x + fc2(relu(fc1(x)))` of a user's model, described by naming `fc2`.
    #[test]
    fn pair_branches_are_named_by_their_closing_layer() {
        let vm = varmap_with(&[("stem", 6, 5), ("fc1", 5, 5), ("fc2", 5, 5), ("head", 5, 2)]);
        let names = ["stem", "fc1", "fc2", "head"];
        let net = Network::from_varmap(&vm, names)
            .unwrap()
            .residual_pairs(["fc2"])
            .unwrap();
        let arch = net.architecture();
        assert_eq!(arch.branch(), crate::Branch::Pair);
        assert!(arch.is_residual(2) && !arch.is_residual(1));
        let e = Network::from_varmap(&vm, names)
            .and_then(|n| n.residual_pairs(["stem"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer stem ") && e.contains("6 → 5"), "{e}");
        // fc1's branch would read the stem's 6 inputs and write 5.
        let e = Network::from_varmap(&vm, names)
            .and_then(|n| n.residual_pairs(["fc1"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("layer fc1 ") && e.contains("reads 6 values"),
            "{e}"
        );
    }

    /// A convolution's 4-D weight, a layer without a bias and an `f64` layer are each refused
    /// with an [`BcdError::UnsupportedLayer`] naming the layer.
    #[test]
    fn layers_it_cannot_train_are_named() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        candle_nn::conv2d(1, 4, 3, Default::default(), vb.pp("conv")).unwrap();
        candle_nn::linear_no_bias(6, 5, vb.pp("nobias")).unwrap();
        candle_nn::linear(5, 3, vb.pp("head")).unwrap();
        let vb64 = VarBuilder::from_varmap(&varmap, DType::F64, &dev);
        candle_nn::linear(6, 5, vb64.pp("double")).unwrap();
        for (name, what) in [
            ("conv", "[4, 1, 3, 3]"),
            ("nobias", "no nobias.bias"),
            ("double", "F64"),
        ] {
            match Network::from_varmap(&varmap, [name, "head"]) {
                Err(BcdError::UnsupportedLayer { layer, reason }) => {
                    assert_eq!(layer, name);
                    assert!(reason.contains(what), "{name}: {reason}");
                }
                other => panic!("{name}: expected UnsupportedLayer, got {other:?}"),
            }
        }
    }
}
