//! `Trainer`: Keras-style `fit` over a model, optimizer, loss and dataset, with validation
//! metrics each epoch, callbacks (early stopping, learning-rate schedules), a progress bar,
//! a finite-value check, and checkpoints that a run can resume from exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgrad_graph::{no_grad, realize_all, Device, Error, Result, Tensor};

use crate::data::{DataLoader, Dataset};
use crate::io;
use crate::metrics::{confusion_lazy, correct_lazy, ConfusionMatrix};
use crate::module::{check_input, Module};
use crate::optim::Optimizer;

/// Options of [`Trainer::fit`].
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Number of epochs to train (a resumed run counts the epochs already done).
    pub epochs: usize,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// Seeds the shuffling (a different order each epoch).
    pub seed: u64,
    /// No progress bar (one line per epoch is printed either way). The bar is also hidden when
    /// standard error is not a terminal.
    pub quiet: bool,
    /// Stop at the first NaN or infinite loss or gradient, naming the step and parameter.
    pub check_finite: bool,
    /// Save model and optimizer state here at the end of every epoch.
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the last complete checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// Print a line per epoch to standard output.
    pub verbose: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            epochs: 5,
            batch_size: 64,
            seed: 0,
            quiet: false,
            check_finite: false,
            checkpoint_dir: None,
            resume: false,
            verbose: true,
        }
    }
}

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
            _ => None,
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
        let mut s = COLUMNS.join(",");
        s.push('\n');
        for e in &self.epochs {
            let row: Vec<String> = COLUMNS
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
                    _ => {}
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

type LossFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + 'a>;

/// Trains a classifier: `fit` runs epochs over a [`Dataset`] and returns a [`History`].
///
/// ```
/// use wgrad_nn::{Adam, Dataset, Dense, FitOptions, Module, Rng, Sequential, Trainer};
/// let dev = wgrad_cpu::CpuBackend::device();
/// // Two classes: is the first feature positive?
/// let images = vec![1.0, 0.0, -1.0, 0.0, 2.0, 1.0, -2.0, 1.0];
/// let data = Dataset { images, labels: vec![1, 0, 1, 0], sample_shape: vec![2], classes: 2 };
/// let model = Sequential::new().add(Dense::new(&dev, 2, 2, &mut Rng::new(0))?);
/// let mut opt = Adam::new(model.parameters(), 0.1);
/// let options = FitOptions { epochs: 20, batch_size: 4, quiet: true, verbose: false, ..Default::default() };
/// let history = Trainer::new(&model, &mut opt, &dev).with_options(options).fit(&data, Some(&data))?;
/// assert_eq!(history.epochs.len(), 20);
/// assert_eq!(history.epochs[19].val_accuracy, Some(1.0));
/// # Ok::<(), wgrad_graph::Error>(())
/// ```
pub struct Trainer<'a> {
    model: &'a dyn Module,
    optimizer: &'a mut dyn Optimizer,
    device: Device,
    loss: LossFn<'a>,
    /// Options used by [`Trainer::fit`].
    pub options: FitOptions,
    callbacks: Vec<Box<dyn Callback + 'a>>,
}

/// Validation loss and confusion matrix.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean loss per sample.
    pub loss: f64,
    /// Counts of true versus predicted classes.
    pub confusion: ConfusionMatrix,
}

impl<'a> Trainer<'a> {
    /// A trainer with cross-entropy loss and default [`FitOptions`].
    pub fn new(model: &'a dyn Module, optimizer: &'a mut dyn Optimizer, device: &Device) -> Self {
        Trainer {
            model,
            optimizer,
            device: device.clone(),
            loss: Box::new(|logits: &Tensor, labels: &Tensor| {
                wgrad_graph::cross_entropy(logits, labels)
            }),
            options: FitOptions::default(),
            callbacks: Vec::new(),
        }
    }

    /// Replaces the loss `(model output, labels) -> scalar`.
    pub fn with_loss(mut self, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Self {
        self.loss = Box::new(loss);
        self
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: FitOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a callback, called after the ones added before.
    pub fn with_callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    fn sample_shape(&self, data: &Dataset) -> Result<()> {
        data.validate()?;
        let mut shape = vec![self.options.batch_size.min(data.len().max(1))];
        shape.extend(&data.sample_shape);
        check_input(self.model, &shape).map(|_| ())
    }

    /// Loss and confusion matrix over `data`, in evaluation mode.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation> {
        self.sample_shape(data)?;
        self.model.set_training(false);
        let result = no_grad(|| -> Result<Evaluation> {
            let mut loss_sum = Tensor::scalar(&self.device, 0.0);
            let mut confusion = Tensor::zeros(&self.device, &[data.classes, data.classes]);
            for b in DataLoader::new(data, 500).epoch(0) {
                let (x, y) = b.to_device(&self.device)?;
                let out = self.model.forward(&x);
                loss_sum = loss_sum + (self.loss)(&out, &y) * b.len() as f32;
                confusion = confusion + confusion_lazy(&out, &y, data.classes);
                realize_all(&[&loss_sum, &confusion])?;
            }
            Ok(Evaluation {
                loss: loss_sum.item()? as f64 / data.len().max(1) as f64,
                confusion: ConfusionMatrix::from_tensor(&confusion)?,
            })
        });
        self.model.set_training(true);
        result
    }

    /// Trains for `options.epochs` epochs, validating on `validation` after each.
    pub fn fit(&mut self, train: &Dataset, validation: Option<&Dataset>) -> Result<History> {
        self.sample_shape(train)?;
        if let Some(v) = validation {
            self.sample_shape(v)?;
        }
        let opts = self.options.clone();
        let mut history = History::default();
        let mut start_epoch = 0;
        if opts.resume {
            let dir = opts
                .checkpoint_dir
                .as_ref()
                .ok_or_else(|| Error::Data("resuming needs a checkpoint directory".into()))?;
            if let Some((epoch, h)) = self.load_latest_checkpoint(dir)? {
                start_epoch = epoch;
                history = h;
                if opts.verbose {
                    println!("resumed from {} after epoch {epoch}", dir.display());
                }
                // A run that had stopped early stays stopped.
                let mut stop = false;
                for cb in &mut self.callbacks {
                    stop |= cb.on_epoch_end(&history) == Control::Stop;
                }
                if stop {
                    history.stopped_early = true;
                    return Ok(history);
                }
            }
        }
        if let Some(dir) = &opts.checkpoint_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let loader = DataLoader::new(train, opts.batch_size).shuffled(opts.seed);
        let mut step = start_epoch * loader.len();
        self.model.set_training(true);
        for epoch in start_epoch..opts.epochs {
            for cb in &mut self.callbacks {
                cb.on_epoch_begin(epoch, self.optimizer);
            }
            let bar = self.progress_bar(epoch, loader.len());
            let started = Instant::now();
            let mut loss_sum = Tensor::scalar(&self.device, 0.0);
            let mut hits = Tensor::scalar(&self.device, 0.0);
            let mut seen = 0usize;
            let mut last_read = Instant::now();
            for (i, b) in loader.epoch(epoch as u64).enumerate() {
                let (x, y) = b.to_device(&self.device)?;
                let out = self.model.forward(&x);
                let loss = (self.loss)(&out, &y);
                let grads = loss.backward();
                if opts.check_finite {
                    self.check_finite(&loss, &grads, step + 1)?;
                }
                loss_sum = no_grad(|| loss_sum.clone() + &loss * b.len() as f32);
                hits = no_grad(|| hits.clone() + correct_lazy(&out, &y));
                self.optimizer.step_with(&grads, &[&loss_sum, &hits])?;
                seen += b.len();
                step += 1;
                // Reading values waits for the device, so the bar's loss is refreshed a few
                // times a second rather than every step.
                if !bar.is_hidden()
                    && (last_read.elapsed().as_millis() >= 250 || i + 1 == loader.len())
                {
                    let avg = loss_sum.item()? as f64 / seen as f64;
                    let rate = seen as f64 / started.elapsed().as_secs_f64();
                    bar.set_message(format!("loss {avg:.4}  {rate:.0} samples/s"));
                    last_read = Instant::now();
                }
                bar.set_position(i as u64 + 1);
            }
            bar.finish_and_clear();
            let mut stats = EpochStats {
                epoch: epoch + 1,
                train_loss: loss_sum.item()? as f64 / seen.max(1) as f64,
                train_accuracy: hits.item()? as f64 / seen.max(1) as f64,
                learning_rate: self.optimizer.learning_rate(),
                ..Default::default()
            };
            if let Some(v) = validation {
                let e = self.evaluate(v)?;
                let r = e.confusion.report();
                stats.val_loss = Some(e.loss);
                stats.val_accuracy = Some(e.confusion.accuracy());
                stats.val_precision = Some(r.macro_precision());
                stats.val_recall = Some(r.macro_recall());
                stats.val_f1 = Some(r.macro_f1());
                history.confusion = Some(e.confusion);
            }
            stats.seconds = started.elapsed().as_secs_f64();
            if opts.verbose {
                println!("{}", epoch_line(&stats, opts.epochs, seen));
            }
            history.epochs.push(stats);
            if let Some(dir) = &opts.checkpoint_dir {
                self.save_checkpoint(dir, epoch + 1, &history)?;
            }
            let mut stop = false;
            for cb in &mut self.callbacks {
                stop |= cb.on_epoch_end(&history) == Control::Stop;
            }
            if stop {
                history.stopped_early = true;
                if opts.verbose {
                    println!("stopping early after epoch {}", epoch + 1);
                }
                break;
            }
        }
        Ok(history)
    }

    fn progress_bar(&self, epoch: usize, steps: usize) -> ProgressBar {
        if self.options.quiet {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid progress template")
            .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(format!("epoch {}/{}", epoch + 1, self.options.epochs))
    }

    /// Stops at the first non-finite loss or gradient, before the optimizer applies it.
    fn check_finite(&self, loss: &Tensor, grads: &wgrad_graph::Grads, step: usize) -> Result<()> {
        let named = self.model.named_parameters();
        let flags: Vec<Tensor> = no_grad(|| {
            // t·0 is NaN exactly where t is NaN or infinite, and so is its sum.
            let bad = |t: &Tensor| {
                let s = (t * 0.0).sum_all();
                s.ne(&s).reshape(&[1])
            };
            let mut flags = vec![bad(loss)];
            for (_, p) in &named {
                flags.push(match grads.get(p) {
                    Some(g) => bad(g),
                    None => Tensor::zeros(&self.device, &[1]),
                });
            }
            flags
        });
        let refs: Vec<&Tensor> = flags.iter().collect();
        let all = Tensor::concat(&refs, 0).to_vec()?;
        if all[0] != 0.0 {
            return Err(Error::NonFinite {
                step,
                what: "the loss".into(),
            });
        }
        if let Some(i) = all[1..].iter().position(|&v| v != 0.0) {
            return Err(Error::NonFinite {
                step,
                what: format!("the gradient of `{}`", named[i].0),
            });
        }
        Ok(())
    }

    fn save_checkpoint(&self, dir: &Path, epoch: usize, history: &History) -> Result<()> {
        let path = dir.join(format!("epoch-{epoch:04}.safetensors"));
        let meta = [
            ("epoch".to_string(), epoch.to_string()),
            ("history".to_string(), history.to_csv()),
        ];
        io::save_with_metadata(&path, self.model, Some(&*self.optimizer), &meta)
    }

    /// The newest checkpoint in `dir` that loads completely; older ones are tried when a newer
    /// one is damaged.
    fn load_latest_checkpoint(&mut self, dir: &Path) -> Result<Option<(usize, History)>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(None);
        };
        let mut found: Vec<(usize, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name
                    .strip_prefix("epoch-")?
                    .strip_suffix(".safetensors")?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        found.sort();
        let any = !found.is_empty();
        for (epoch, path) in found.into_iter().rev() {
            match io::load_with_metadata(&path, self.model, Some(&mut *self.optimizer)) {
                Ok(meta) => {
                    let history = meta
                        .get("history")
                        .and_then(|h| History::from_csv(h))
                        .unwrap_or_default();
                    return Ok(Some((epoch, history)));
                }
                Err(e) => log::warn!("skipping checkpoint {}: {e}", path.display()),
            }
        }
        if any {
            // Starting over would overwrite the checkpoints that exist.
            return Err(Error::Data(format!(
                "no checkpoint in {} fits this model and optimizer; remove them to start over",
                dir.display()
            )));
        }
        Ok(None)
    }
}

fn epoch_line(s: &EpochStats, epochs: usize, samples: usize) -> String {
    let mut line = format!(
        "epoch {}/{epochs}  loss {:.4}  accuracy {:.2}%",
        s.epoch,
        s.train_loss,
        s.train_accuracy * 100.0
    );
    if let (Some(l), Some(a)) = (s.val_loss, s.val_accuracy) {
        line.push_str(&format!(
            "  val_loss {l:.4}  val_accuracy {:.2}%",
            a * 100.0
        ));
    }
    line.push_str(&format!(
        "  ({:.1} s, {:.0} samples/s)",
        s.seconds,
        samples as f64 / s.seconds.max(1e-9)
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(values: &[f64]) -> History {
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

    #[test]
    fn early_stopping_waits_for_patience() {
        let mut es = EarlyStopping::new(2);
        assert_eq!(es.on_epoch_end(&history(&[1.0, 0.8])), Control::Continue);
        assert_eq!(
            es.on_epoch_end(&history(&[1.0, 0.8, 0.9])),
            Control::Continue
        );
        assert_eq!(
            es.on_epoch_end(&history(&[1.0, 0.8, 0.9, 0.85])),
            Control::Stop
        );
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

    #[test]
    fn history_csv_round_trips() {
        let mut h = history(&[0.5, 0.25]);
        h.epochs[0].train_loss = 1.5;
        let back = History::from_csv(&h.to_csv()).unwrap();
        assert_eq!(back.epochs.len(), 2);
        assert_eq!(back.epochs[0].train_loss, 1.5);
        assert_eq!(back.epochs[1].val_loss, Some(0.25));
        assert_eq!(back.epochs[1].val_f1, None);
    }
}
