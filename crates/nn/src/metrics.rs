//! Classification metrics. Counts are accumulated on the device where the predictions already
//! are (a confusion matrix is `one_hot(labels)ᵀ · one_hot(predictions)`); only the small
//! matrix is read back.

use std::fmt;

use wgrad_graph::{DType, Result, Tensor};

/// Number of rows of `logits` `[n, classes]` whose largest entry is at the `u32` label.
pub fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(correct_lazy(logits, labels).item()?.round() as usize)
}

/// The count of correct predictions as a lazy 0-d tensor, to be realised with other work.
pub fn correct_lazy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits
        .argmax(-1, false)
        .cast(DType::F32)
        .eq(&labels.cast(DType::F32))
        .sum_all()
}

/// Fraction of rows classified correctly.
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<f32> {
    let n = labels.numel();
    if n == 0 {
        return Ok(0.0);
    }
    Ok(correct(logits, labels)? as f32 / n as f32)
}

/// Lazy `[classes, classes]` counts: row = true class, column = predicted class.
pub fn confusion_lazy(logits: &Tensor, labels: &Tensor, classes: usize) -> Tensor {
    let truth = labels.one_hot(classes);
    let predicted = logits.argmax(-1, false).one_hot(classes);
    truth.t().matmul(&predicted)
}

/// Counts of (true class, predicted class) pairs, and the metrics derived from them.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfusionMatrix {
    /// Row-major `classes × classes` counts: row = true class, column = predicted.
    pub counts: Vec<u64>,
    /// Number of classes (rows and columns).
    pub classes: usize,
}

/// Per-class and macro-averaged precision, recall and F1.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassReport {
    /// Of the samples predicted as each class, the fraction that belong to it.
    pub precision: Vec<f64>,
    /// Of the samples of each class, the fraction predicted as it.
    pub recall: Vec<f64>,
    /// Harmonic mean of precision and recall, per class.
    pub f1: Vec<f64>,
    /// Number of samples of each class.
    pub support: Vec<u64>,
}

impl ClassReport {
    /// Unweighted mean of the per-class precisions.
    pub fn macro_precision(&self) -> f64 {
        mean(&self.precision)
    }

    /// Unweighted mean of the per-class recalls.
    pub fn macro_recall(&self) -> f64 {
        mean(&self.recall)
    }

    /// Unweighted mean of the per-class F1 scores.
    pub fn macro_f1(&self) -> f64 {
        mean(&self.f1)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl ConfusionMatrix {
    /// Reads a `[classes, classes]` count tensor (see [`confusion_lazy`]).
    pub fn from_tensor(t: &Tensor) -> Result<Self> {
        let classes = t.shape()[0];
        let counts = t.to_vec()?.iter().map(|&v| v.round() as u64).collect();
        Ok(ConfusionMatrix { counts, classes })
    }

    /// Count of samples of class `truth` predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Fraction of samples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let hits: u64 = (0..self.classes).map(|c| self.get(c, c)).sum();
        hits as f64 / self.total().max(1) as f64
    }

    /// Precision, recall and F1 per class; a class never predicted (or never present) scores 0,
    /// as scikit-learn's `zero_division=0`.
    pub fn report(&self) -> ClassReport {
        let k = self.classes;
        let mut r = ClassReport {
            precision: vec![0.0; k],
            recall: vec![0.0; k],
            f1: vec![0.0; k],
            support: vec![0; k],
        };
        for c in 0..k {
            let tp = self.get(c, c) as f64;
            let predicted: u64 = (0..k).map(|t| self.get(t, c)).sum();
            let actual: u64 = (0..k).map(|p| self.get(c, p)).sum();
            r.support[c] = actual;
            r.precision[c] = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            r.recall[c] = if actual > 0 { tp / actual as f64 } else { 0.0 };
            let (p, q) = (r.precision[c], r.recall[c]);
            r.f1[c] = if p + q > 0.0 {
                2.0 * p * q / (p + q)
            } else {
                0.0
            };
        }
        r
    }
}

impl fmt::Display for ConfusionMatrix {
    /// A table with true classes as rows and predicted classes as columns, then per-class
    /// precision, recall and F1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.classes;
        let width = self
            .counts
            .iter()
            .max()
            .map_or(1, |m| m.to_string().len())
            .max(3);
        write!(f, "{:>10}", "true\\pred")?;
        for c in 0..k {
            write!(f, " {c:>width$}")?;
        }
        writeln!(f, " | precision recall     f1")?;
        let r = self.report();
        for t in 0..k {
            write!(f, "{t:>10}")?;
            for p in 0..k {
                write!(f, " {:>width$}", self.get(t, p))?;
            }
            writeln!(
                f,
                " | {:>9.3} {:>6.3} {:>6.3}",
                r.precision[t], r.recall[t], r.f1[t]
            )?;
        }
        write!(
            f,
            "macro avg: precision {:.3}  recall {:.3}  f1 {:.3}  accuracy {:.3}",
            r.macro_precision(),
            r.macro_recall(),
            r.macro_f1(),
            self.accuracy()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_hand_computed_values() {
        // true 0: predicted 0 twice, 1 once; true 1: predicted 1 once; true 2: predicted 0 once.
        let m = ConfusionMatrix {
            counts: vec![2, 1, 0, 0, 1, 0, 1, 0, 0],
            classes: 3,
        };
        let r = m.report();
        assert_eq!(r.precision, vec![2.0 / 3.0, 0.5, 0.0]);
        assert_eq!(r.recall, vec![2.0 / 3.0, 1.0, 0.0]);
        assert!((r.f1[1] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.support, vec![3, 1, 1]);
        assert!((m.accuracy() - 0.6).abs() < 1e-12);
        let table = m.to_string();
        assert!(
            table.contains("true\\pred") && table.contains("macro avg"),
            "{table}"
        );
    }
}

/// Counts of a binary classifier's predictions at a threshold of 0.5 on the probability (0 on
/// the logit), against 0/1 targets, and the metrics derived from them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BinaryCounts {
    /// Predicted 1, target 1.
    pub true_positive: u64,
    /// Predicted 1, target 0.
    pub false_positive: u64,
    /// Predicted 0, target 0.
    pub true_negative: u64,
    /// Predicted 0, target 1.
    pub false_negative: u64,
}

impl BinaryCounts {
    /// Adds the predictions `logits` against `targets` (0 or 1, as many as the logits; `[n, 1]`
    /// logits are read as `[n]`), counted on the device; four numbers are read back.
    pub fn add(&mut self, logits: &Tensor, targets: &Tensor) -> Result<()> {
        if logits.numel() != targets.numel() {
            return Err(wgrad_graph::Error::Data(format!(
                "binary counts: {:?} logits for {:?} targets",
                logits.shape(),
                targets.shape()
            )));
        }
        let logits = logits.reshape(targets.shape());
        let predicted = logits.gt(&logits.scalar_like(0.0));
        let truth = targets.gt(&targets.scalar_like(0.5));
        let count = |a: &Tensor, b: &Tensor| (a * b).sum_all().reshape(&[1]);
        let (not_p, not_t) = (
            predicted.scalar_like(1.0) - &predicted,
            truth.scalar_like(1.0) - &truth,
        );
        let all = Tensor::concat(
            &[
                &count(&predicted, &truth),
                &count(&predicted, &not_t),
                &count(&not_p, &not_t),
                &count(&not_p, &truth),
            ],
            0,
        );
        let v = all.to_vec()?;
        self.true_positive += v[0].round() as u64;
        self.false_positive += v[1].round() as u64;
        self.true_negative += v[2].round() as u64;
        self.false_negative += v[3].round() as u64;
        Ok(())
    }

    /// Fraction predicted right.
    pub fn accuracy(&self) -> f64 {
        let all =
            self.true_positive + self.false_positive + self.true_negative + self.false_negative;
        ratio(self.true_positive + self.true_negative, all)
    }

    /// Of the predicted positives, the fraction that are positive.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    /// Of the positives, the fraction predicted positive.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    /// Harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl fmt::Display for BinaryCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accuracy {:.2}%, precision {:.3}, recall {:.3}, F1 {:.3}",
            100.0 * self.accuracy(),
            self.precision(),
            self.recall(),
            self.f1()
        )
    }
}
