//! Classification metrics computed from network outputs.

use candle_core::{DType, Tensor};

use crate::error::{BcdError, Result};

/// Fraction of rows whose arg-max of `logits` (`[N, C]`) equals `labels` (`[N]`, integer ids).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    let (n, _c) = logits.dims2()?;
    if labels.dims() != [n] {
        return Err(BcdError::ShapeMismatch {
            name: "labels".into(),
            expected: vec![n],
            got: labels.dims().to_vec(),
        });
    }
    if n == 0 {
        return Ok(0.0);
    }
    let pred = logits.argmax(1)?.to_dtype(DType::U32)?;
    let labels = labels.to_dtype(DType::U32)?;
    let correct = pred
        .eq(&labels)?
        .to_dtype(DType::F64)?
        .sum_all()?
        .to_scalar::<f64>()?;
    Ok(correct / n as f64)
}
