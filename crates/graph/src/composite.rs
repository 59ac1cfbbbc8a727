//! Composite ops: methods built from primitives. They need no kernel and no backward rule.

use crate::op::DType;
use crate::tensor::Tensor;

impl Tensor {
    /// `log(Σ exp(x))` along `axis`, shifted by the maximum so large inputs do not overflow.
    #[track_caller]
    pub fn logsumexp(&self, axis: isize, keepdim: bool) -> Tensor {
        // The shift cancels in the derivative, so it is taken as a constant.
        let m = self.max(&[axis], true).detach();
        let lse = (self - &m).exp().sum(&[axis], true).log() + m;
        if keepdim {
            lse
        } else {
            let mut shape = self.shape().to_vec();
            shape.remove(crate::shape::normalize_axis(axis, self.rank()).expect("axis checked"));
            lse.reshape(&shape)
        }
    }

    /// `x - logsumexp(x)` along `axis` (numerically stable).
    #[track_caller]
    pub fn log_softmax(&self, axis: isize) -> Tensor {
        let m = self.max(&[axis], true).detach();
        let shifted = self - &m;
        let lse = shifted.exp().sum(&[axis], true).log();
        shifted - lse
    }

    /// `exp(x) / Σ exp(x)` along `axis` (numerically stable).
    #[track_caller]
    pub fn softmax(&self, axis: isize) -> Tensor {
        let m = self.max(&[axis], true).detach();
        let e = (self - &m).exp();
        let total = e.sum(&[axis], true);
        e / total
    }
}

/// Mean squared error between two tensors of the same shape.
#[track_caller]
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Tensor {
    assert_eq!(
        pred.shape(),
        target.shape(),
        "mse_loss: prediction {:?} and target {:?} differ",
        pred.shape(),
        target.shape()
    );
    let d = pred - target;
    (&d * &d).mean_all()
}

/// Mean cross-entropy of logits `[n, classes]` against `u32` class labels `[n]`.
/// A label outside `0..classes` contributes zero loss.
#[track_caller]
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    assert!(
        logits.rank() == 2 && labels.rank() == 1 && labels.shape()[0] == logits.shape()[0],
        "cross_entropy: expects logits [n, classes] and labels [n], got {:?} and {:?}",
        logits.shape(),
        labels.shape()
    );
    assert_eq!(
        labels.dtype(),
        DType::U32,
        "cross_entropy: labels must be u32 class indices"
    );
    let classes = logits.shape()[1];
    let picked = (logits.log_softmax(-1) * labels.one_hot(classes)).sum(&[-1], false);
    -picked.mean_all()
}

/// Mean binary cross-entropy of logits against targets in `[0, 1]`, computed as
/// `max(x, 0) - x·y + log(1 + exp(-|x|))` so large logits do not overflow.
#[track_caller]
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Tensor {
    assert_eq!(
        logits.shape(),
        targets.shape(),
        "bce_with_logits: logits {:?} and targets {:?} differ",
        logits.shape(),
        targets.shape()
    );
    let softplus = logits.abs().neg().exp().add_scalar(1.0).log();
    (logits.relu() - logits * targets + softplus).mean_all()
}
