//! Composite ops: methods built from primitives. They need no kernel and no backward rule.

use crate::device::Device;
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

impl Tensor {
    /// Samples of N(0, 1) drawn from `seed`, with the same bits on every backend: the
    /// Irwin–Hall approximation, the sum of 12 uniforms minus 6 (mean 0, variance 1, tails
    /// cut at ±6). Each uniform is cut to 20 bits first, so every sum is exact in `f32`,
    /// whatever order a device adds in.
    #[track_caller]
    pub fn randn(device: &Device, shape: &[usize], seed: u64) -> Tensor {
        const BITS: f32 = (1u32 << 20) as f32;
        crate::tensor::no_grad(|| {
            let mut sum: Option<Tensor> = None;
            for k in 0..12u64 {
                let stream = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(k + 1);
                let u = Tensor::rand(device, shape, stream).mul_scalar(BITS);
                // Truncation by a round trip through u32: exact for these values.
                let whole = u.cast(DType::U32).cast(DType::F32);
                sum = Some(match sum {
                    Some(s) => s + whole,
                    None => whole,
                });
            }
            let sum = sum.expect("twelve terms");
            sum.mul_scalar(1.0 / BITS).add_scalar(-6.0)
        })
    }
}
