//! Hooks into the training loop: early stopping and learning-rate schedules. Decisions are
//! derived from the history, so a resumed run behaves like an uninterrupted one.

use crate::history::History;
use crate::optim::Optimizer;

/// What a callback tells the trainer after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep training.
    Continue,
    /// Stop after this epoch.
    Stop,
}

/// Hooks into the training loop. Callbacks derive their decisions from the history, so a
/// resumed run behaves like an uninterrupted one.
pub trait Callback {
    /// Before epoch `epoch` (0-based), e.g. to set the learning rate.
    fn on_epoch_begin(&mut self, _epoch: usize, _optimizer: &mut dyn Optimizer) {}
    /// After an epoch's statistics were appended to `history`.
    fn on_epoch_end(&mut self, _history: &History) -> Control {
        Control::Continue
    }
}

/// Stops when the monitored value has not improved by `min_delta` for `patience` epochs.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// A column of the history, e.g. `val_loss` or `val_accuracy`.
    pub monitor: String,
    /// Epochs without improvement before stopping (0 = never stop).
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// True when larger is better (accuracy), false when smaller is (loss).
    pub maximize: bool,
}

impl EarlyStopping {
    /// Watches `val_loss` (smaller is better).
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            monitor: "val_loss".into(),
            patience,
            min_delta: 0.0,
            maximize: false,
        }
    }
}

impl Callback for EarlyStopping {
    fn on_epoch_end(&mut self, history: &History) -> Control {
        let values: Vec<f64> = history
            .epochs
            .iter()
            .filter_map(|e| e.get(&self.monitor))
            .collect();
        let mut best: Option<(usize, f64)> = None;
        for (i, &v) in values.iter().enumerate() {
            let better = match best {
                None => true,
                Some((_, b)) if self.maximize => v > b + self.min_delta,
                Some((_, b)) => v < b - self.min_delta,
            };
            if better {
                best = Some((i, v));
            }
        }
        match best {
            Some((i, _)) if values.len() - 1 - i >= self.patience && self.patience > 0 => {
                Control::Stop
            }
            _ => Control::Continue,
        }
    }
}

/// Learning rate as a function of the epoch, applied before each epoch.
#[derive(Clone, Copy, Debug)]
pub enum LrSchedule {
    /// `base · gamma^(epoch / step)`.
    Step {
        /// Learning rate of the first epochs.
        base: f32,
        /// Epochs between decays.
        step: usize,
        /// Factor applied at each decay.
        gamma: f32,
    },
    /// `min + (base - min)·(1 + cos(π·epoch / epochs))/2`.
    Cosine {
        /// Learning rate of the first epoch.
        base: f32,
        /// Learning rate reached after `epochs`.
        min: f32,
        /// Length of the half cosine, in epochs.
        epochs: usize,
    },
}

impl LrSchedule {
    /// The learning rate for 0-based `epoch`.
    pub fn at(&self, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Step { base, step, gamma } => {
                base * gamma.powi((epoch / step.max(1)) as i32)
            }
            LrSchedule::Cosine { base, min, epochs } => {
                let t = (epoch.min(epochs) as f32) / epochs.max(1) as f32;
                min + (base - min) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

impl Callback for LrSchedule {
    fn on_epoch_begin(&mut self, epoch: usize, optimizer: &mut dyn Optimizer) {
        optimizer.set_learning_rate(self.at(epoch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_for_patience() {
        let mut es = EarlyStopping::new(2);
        let h = History::from_val_losses;
        assert_eq!(es.on_epoch_end(&h(&[1.0, 0.8])), Control::Continue);
        assert_eq!(es.on_epoch_end(&h(&[1.0, 0.8, 0.9])), Control::Continue);
        assert_eq!(es.on_epoch_end(&h(&[1.0, 0.8, 0.9, 0.85])), Control::Stop);
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let s = LrSchedule::Step {
            base: 0.1,
            step: 2,
            gamma: 0.5,
        };
        assert_eq!(
            [s.at(0), s.at(1), s.at(2), s.at(5)],
            [0.1, 0.1, 0.05, 0.025]
        );
        let c = LrSchedule::Cosine {
            base: 1.0,
            min: 0.0,
            epochs: 4,
        };
        assert!(
            (c.at(0) - 1.0).abs() < 1e-6 && (c.at(2) - 0.5).abs() < 1e-6 && c.at(4).abs() < 1e-6
        );
    }
}
