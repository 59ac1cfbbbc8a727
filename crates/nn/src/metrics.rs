//! Classification metrics computed on the device where the predictions already are.

use wgrad_graph::{DType, Result, Tensor};

/// Number of rows of `logits` `[n, classes]` whose largest entry is at the `u32` label.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let hits = logits
        .argmax(-1, false)
        .cast(DType::F32)
        .eq(&labels.cast(DType::F32))
        .sum_all();
    Ok(hits.item()?.round() as usize)
}

/// Fraction of rows classified correctly.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32> {
    let n = labels.numel();
    if n == 0 {
        return Ok(0.0);
    }
    Ok(correct(logits, labels)? as f32 / n as f32)
}
