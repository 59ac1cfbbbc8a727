//! What a training run measured: per-epoch statistics, their CSV form and the last
//! confusion matrix.

use std::path::Path;

use wgrad_graph::Result;

use crate::io;
use crate::metrics::ConfusionMatrix;

/// What one epoch measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Fraction of training samples classified correctly (in training mode).
    pub train_accuracy: f64,
    /// Mean validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// Macro-averaged validation precision.
    pub val_precision: Option<f64>,
    /// Macro-averaged validation recall.
    pub val_recall: Option<f64>,
    /// Macro-averaged validation F1.
    pub val_f1: Option<f64>,
    /// Learning rate used in the epoch.
    pub learning_rate: f32,
    /// Wall-clock seconds of the epoch, validation included.
    pub seconds: f64,
    /// Means of the other metrics a custom training step reported (see
    /// [`crate::Metrics`]), by name, e.g. a GAN's `d_loss` and `g_loss`.
    pub extra: Vec<(String, f64)>,
}

impl EpochStats {
    /// A value by its CSV column name (`train_loss`, `val_accuracy`, …).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "epoch" => Some(self.epoch as f64),
            "train_loss" => Some(self.train_loss),
            "train_accuracy" => Some(self.train_accuracy),
            "val_loss" => self.val_loss,
            "val_accuracy" => self.val_accuracy,
            "val_precision" => self.val_precision,
            "val_recall" => self.val_recall,
            "val_f1" => self.val_f1,
            "learning_rate" => Some(self.learning_rate as f64),
            "seconds" => Some(self.seconds),
            _ => self.extra.iter().find(|(n, _)| n == name).map(|(_, v)| *v),
        }
    }
}

const COLUMNS: [&str; 10] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_f1",
    "learning_rate",
    "seconds",
];

/// Per-epoch statistics of a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// One entry per epoch, in order.
    pub epochs: Vec<EpochStats>,
    /// Confusion matrix of the last validation.
    pub confusion: Option<ConfusionMatrix>,
    /// True when an early-stopping callback ended the run.
    pub stopped_early: bool,
}

impl History {
    /// The history as CSV with a header row; missing values are empty.
    pub fn to_csv(&self) -> String {
        // The fixed columns, then each extra metric in the order first seen.
        let mut columns: Vec<&str> = COLUMNS.to_vec();
        for e in &self.epochs {
            for (name, _) in &e.extra {
                if !columns.contains(&name.as_str()) {
                    columns.push(name);
                }
            }
        }
        let mut s = columns.join(",");
        s.push('\n');
        for e in &self.epochs {
            let row: Vec<String> = columns
                .iter()
                // Shortest exact representation, so a history read back is bit-identical.
                .map(|c| match (*c, e.get(c)) {
                    // The rate is an f32; printing it as one keeps `0.001` readable.
                    ("learning_rate", _) => format!("{}", e.learning_rate),
                    (_, v) => v.map_or(String::new(), |v| format!("{v}")),
                })
                .collect();
            s.push_str(&row.join(","));
            s.push('\n');
        }
        s
    }

    /// Parses what [`History::to_csv`] wrote.
    pub fn from_csv(text: &str) -> Option<History> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next()?.split(',').collect();
        let mut epochs = Vec::new();
        for line in lines.filter(|l| !l.trim().is_empty()) {
            let mut e = EpochStats::default();
            for (name, value) in header.iter().zip(line.split(',')) {
                let v: Option<f64> = if value.is_empty() {
                    None
                } else {
                    Some(value.parse().ok()?)
                };
                match *name {
                    "epoch" => e.epoch = v? as usize,
                    "train_loss" => e.train_loss = v?,
                    "train_accuracy" => e.train_accuracy = v?,
                    "val_loss" => e.val_loss = v,
                    "val_accuracy" => e.val_accuracy = v,
                    "val_precision" => e.val_precision = v,
                    "val_recall" => e.val_recall = v,
                    "val_f1" => e.val_f1 = v,
                    "learning_rate" => e.learning_rate = v? as f32,
                    "seconds" => e.seconds = v?,
                    other => {
                        if let Some(v) = v {
                            e.extra.push((other.to_string(), v));
                        }
                    }
                }
            }
            epochs.push(e);
        }
        Some(History {
            epochs,
            ..Default::default()
        })
    }

    /// Writes the CSV atomically.
    pub fn save_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        io::write_atomically(path.as_ref(), self.to_csv().as_bytes())
    }
}

#[cfg(test)]
impl History {
    /// A history whose epochs only carry these validation losses.
    pub(crate) fn from_val_losses(values: &[f64]) -> History {
        History {
            epochs: values
                .iter()
                .enumerate()
                .map(|(i, &v)| EpochStats {
                    epoch: i + 1,
                    val_loss: Some(v),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_csv_round_trips() {
        let mut h = History::from_val_losses(&[0.5, 0.25]);
        h.epochs[0].train_loss = 1.5;
        h.epochs[1].extra.push(("g_loss".into(), 0.75));
        let back = History::from_csv(&h.to_csv()).unwrap();
        assert_eq!(back.epochs[1].extra, [("g_loss".to_string(), 0.75)]);
        assert!(back.epochs[0].extra.is_empty());
        assert_eq!(back.epochs.len(), 2);
        assert_eq!(back.epochs[0].train_loss, 1.5);
        assert_eq!(back.epochs[1].val_loss, Some(0.25));
        assert_eq!(back.epochs[1].val_f1, None);
    }
}
