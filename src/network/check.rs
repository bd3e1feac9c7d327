//! Does a [`Network`] describe the model the user runs? Both forward passes on the same few
//! rows must agree to `f32` round-off:
//! `max |f_net(x) − f_model(x)| ≤ 1e-4 · (1 + max |f_model(x)|)`.
//! A model with a layer between its linear layers that the description lacks (a GELU where
//! ReLU was said, a LayerNorm, a residual connection not marked, a bias-free layer) fails it.

use candle_core::{DType, Tensor};
use candle_nn::Module;

use super::Network;
use crate::error::{BcdError, Result};

/// Rows [`Network::check_against`] compares on.
pub(crate) const CHECK_ROWS: usize = 16;

/// Relative tolerance of the comparison (a few hundred `f32` round-offs of the products).
const TOLERANCE: f64 = 1e-4;

impl Network {
    /// Checks that `model` computes what this network describes, on the first rows of `x`
    /// (at most 16): [`BcdError::ModelMismatch`] when their outputs differ beyond round-off
    /// or have different shapes. [`crate::trainer::train`] runs it before the first sweep.
    pub fn check_against(&self, model: &dyn Module, x: &Tensor) -> Result<()> {
        let rows = x.dim(0)?.min(CHECK_ROWS);
        if rows == 0 {
            return Ok(());
        }
        let x = x.narrow(0, 0, rows)?;
        let ours = self.logits(&x)?;
        let theirs = model.forward(&x).map_err(|e| BcdError::ModelMismatch {
            rows,
            reason: format!("the model's forward pass failed: {e}"),
        })?;
        if theirs.dims() != ours.dims() {
            return Err(BcdError::ModelMismatch {
                rows,
                reason: format!(
                    "the model outputs shape {:?}, the network {:?}",
                    theirs.dims(),
                    ours.dims()
                ),
            });
        }
        let to64 = |t: &Tensor| -> Result<Vec<f64>> {
            Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
        };
        let (a, b) = (to64(&ours)?, to64(&theirs)?);
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        // A NaN on either side counts as an infinite difference.
        let diff = a
            .iter()
            .zip(&b)
            .map(|(p, q)| match (p - q).abs() {
                d if d.is_nan() => f64::INFINITY,
                d => d,
            })
            .fold(0f64, f64::max);
        if diff > TOLERANCE * (1.0 + scale) {
            return Err(BcdError::ModelMismatch {
                rows,
                reason: format!(
                    "outputs differ by up to {diff:.3e} (model outputs up to {scale:.3e}); \
                     check the activation, the residual layers and any layer between the named \
                     linear layers, which BCD does not train"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use candle_core::Device;
    use candle_nn::{VarBuilder, VarMap};

    /// A model with a GELU, a LayerNorm or an unmarked residual connection fails the check;
    /// the same model described as it is passes.
    #[test]
    fn a_model_that_differs_from_its_description_is_refused() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let fc1 = candle_nn::linear(6, 8, vb.pp("fc1")).unwrap();
        let fc2 = candle_nn::linear(8, 8, vb.pp("fc2")).unwrap();
        let fc3 = candle_nn::linear(8, 3, vb.pp("fc3")).unwrap();
        let norm = candle_nn::layer_norm(8, 1e-5, vb.pp("norm")).unwrap();
        let x = Tensor::randn(0f32, 1.0, (40, 6), &dev).unwrap();
        let relu = || candle_nn::Activation::Relu;
        let plain = candle_nn::seq()
            .add(fc1.clone())
            .add(relu())
            .add(fc2.clone())
            .add(relu())
            .add(fc3.clone());
        let gelu = candle_nn::seq()
            .add(fc1.clone())
            .add(candle_nn::Activation::Gelu)
            .add(fc2.clone())
            .add(relu())
            .add(fc3.clone());
        let normed = candle_nn::seq()
            .add(fc1.clone())
            .add(relu())
            .add(norm)
            .add(fc2.clone())
            .add(relu())
            .add(fc3.clone());
        let residual = candle_nn::seq()
            .add(fc1.clone())
            .add(relu())
            .add_fn(move |h| h + fc2.forward(h)?.relu()?)
            .add(fc3.clone());
        let net = Network::from_varmap(&varmap, ["fc1", "fc2", "fc3"])
            .unwrap()
            .activation(Activation::Relu)
            .unwrap();
        net.check_against(&plain, &x).unwrap();
        for (what, model) in [
            ("gelu", &gelu),
            ("layer norm", &normed),
            ("residual", &residual),
        ] {
            match net.check_against(model, &x) {
                Err(BcdError::ModelMismatch { rows, .. }) => assert_eq!(rows, CHECK_ROWS),
                other => panic!("{what}: expected ModelMismatch, got {other:?}"),
            }
        }
        let marked = net.residual(["fc2"]).unwrap();
        marked.check_against(&residual, &x).unwrap();
        assert!(marked.check_against(&plain, &x).is_err());
    }
}
