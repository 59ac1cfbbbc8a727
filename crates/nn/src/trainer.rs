//! `Trainer`: Keras-style `fit` over a model, optimizer, loss and data (images with class ids,
//! token sequences with binary targets, or any [`Samples`]), with validation metrics each
//! epoch, callbacks (early stopping, learning-rate schedules), a progress bar,
//! a finite-value check, and checkpoints that a run can resume from exactly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgrad_graph::{no_grad, realize_all, Device, Error, Result, Stats, Tensor};

use crate::callbacks::{Callback, Control};
use crate::data::{epoch_order, Samples, Targets};
use crate::history::{EpochStats, History};
use crate::io;
use crate::metrics::{confusion_lazy, correct_lazy, BinaryCounts, ConfusionMatrix};
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
    /// Replace the checkpoints another run left in `checkpoint_dir` (without it, and without
    /// `resume`, such a directory is refused, so that two runs never mix).
    pub overwrite: bool,
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
            overwrite: false,
            verbose: true,
        }
    }
}

type LossFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + 'a>;

/// Trains a model: `fit` runs epochs over [`Samples`] and returns a [`History`]. The loss is
/// cross-entropy for class ids, BCE with logits for binary targets and the mean squared
/// error for values, unless [`Trainer::with_loss`] sets another.
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
    /// Set by `with_loss`; else the data's targets decide.
    loss: Option<LossFn<'a>>,
    /// Options used by [`Trainer::fit`].
    pub options: FitOptions,
    callbacks: Vec<Box<dyn Callback + 'a>>,
}

/// Validation loss and metrics.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean loss per sample.
    pub loss: f64,
    /// Counts of true versus predicted classes (2 × 2 for binary targets, empty for values).
    pub confusion: ConfusionMatrix,
    /// For binary targets: the counts at 0.5, whose precision, recall and F1 are the
    /// positive class's.
    pub binary: Option<BinaryCounts>,
}

impl<'a> Trainer<'a> {
    /// A trainer with the data's default loss and default [`FitOptions`].
    pub fn new(model: &'a dyn Module, optimizer: &'a mut dyn Optimizer, device: &Device) -> Self {
        Trainer {
            model,
            optimizer,
            device: device.clone(),
            loss: None,
            options: FitOptions::default(),
            callbacks: Vec::new(),
        }
    }

    /// Replaces the loss `(model output, targets) -> scalar`.
    pub fn with_loss(mut self, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Self {
        self.loss = Some(Box::new(loss));
        self
    }

    /// The loss for data with `targets`.
    fn loss(&self, out: &Tensor, y: &Tensor, targets: Targets) -> Tensor {
        match (&self.loss, targets) {
            (Some(loss), _) => loss(out, y),
            (None, Targets::Classes(_)) => wgrad_graph::cross_entropy(out, y),
            (None, Targets::Binary) => wgrad_graph::bce_with_logits(out, y),
            (None, Targets::Values) => wgrad_graph::mse_loss(out, y),
        }
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

    /// Checks `data` against the model: its samples fit the input, and the model's outputs
    /// fit the targets (a score for every class the labels name).
    fn sample_shape(&self, data: &dyn Samples) -> Result<()> {
        let Some(sample) = data.input_shape() else {
            return data.check(None);
        };
        let mut shape = vec![self.options.batch_size.clamp(1, data.len().max(1))];
        shape.extend(&sample);
        data.check(None)?;
        let out = check_input(self.model, &shape)?;
        match out[..] {
            [_, outputs] => data.check(Some(outputs)),
            _ => Ok(()),
        }
    }

    /// Refuses options that would train nothing or on nonsense, before anything runs.
    fn check_options(&self, train: &dyn Samples) -> Result<()> {
        if self.options.batch_size == 0 {
            return Err(Error::Data("the batch size must be at least 1".into()));
        }
        if train.is_empty() {
            return Err(Error::Data(
                "the training data is empty: there is nothing to train on".into(),
            ));
        }
        let lr = self.optimizer.learning_rate();
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Data(format!(
                "the learning rate is {lr}; it must be a finite number of at least 0"
            )));
        }
        Ok(())
    }

    /// Loss and confusion matrix over `data`, in evaluation mode; the model is left in the
    /// mode it was in.
    pub fn evaluate(&self, data: &dyn Samples) -> Result<Evaluation> {
        self.sample_shape(data)?;
        let was_training = self.model.is_training();
        self.model.set_training(false);
        let targets = data.targets();
        let result = no_grad(|| -> Result<Evaluation> {
            let mut loss_sum = Tensor::scalar(&self.device, 0.0);
            let classes = match targets {
                Targets::Classes(c) => c,
                _ => 0,
            };
            let mut confusion = Tensor::zeros(&self.device, &[classes, classes]);
            let mut binary = BinaryCounts::default();
            let order = epoch_order(data.len(), None, 0);
            // Four training batches at a time: memory scales with what training already fits.
            let chunk = 4 * self.options.batch_size.max(1);
            for picks in order.chunks(chunk) {
                let (x, y) = data.batch(&self.device, picks)?;
                let out = fit_to_targets(self.model.forward(&x), &y, targets)?;
                loss_sum = loss_sum + self.loss(&out, &y, targets) * picks.len() as f32;
                match targets {
                    Targets::Classes(c) => {
                        confusion = confusion + confusion_lazy(&out, &y, c);
                        realize_all(&[&loss_sum, &confusion])?;
                    }
                    Targets::Binary => {
                        loss_sum.realize()?;
                        binary.add(&out, &y)?;
                    }
                    Targets::Values => loss_sum.realize().map(|_| ())?,
                }
            }
            let binary = (targets == Targets::Binary).then_some(binary);
            let confusion = match binary {
                // Rows: true 0 and 1; columns: predicted 0 and 1.
                Some(b) => {
                    let counts = [
                        b.true_negative,
                        b.false_positive,
                        b.false_negative,
                        b.true_positive,
                    ];
                    let values: Vec<f32> = counts.iter().map(|&c| c as f32).collect();
                    Tensor::from_slice(&self.device, &values, &[2, 2])?
                }
                None => confusion,
            };
            Ok(Evaluation {
                loss: loss_sum.item()? as f64 / data.len().max(1) as f64,
                confusion: ConfusionMatrix::from_tensor(&confusion)?,
                binary,
            })
        });
        self.model.set_training(was_training);
        result
    }

    /// Trains for `options.epochs` epochs, validating on `validation` after each.
    pub fn fit(
        &mut self,
        train: &dyn Samples,
        validation: Option<&dyn Samples>,
    ) -> Result<History> {
        self.check_options(train)?;
        self.sample_shape(train)?;
        if let Some(v) = validation {
            self.sample_shape(v)?;
        }
        let opts = self.options.clone();
        let mut history = History::default();
        let mut start_epoch = 0;
        if let Some(dir) = &opts.checkpoint_dir {
            prepare_checkpoint_dir(dir, opts.resume, opts.overwrite)?;
        }
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
        if start_epoch >= opts.epochs && opts.verbose {
            println!(
                "nothing to train: {} epochs asked for, {start_epoch} done",
                opts.epochs
            );
        }
        let steps = train.len().div_ceil(opts.batch_size);
        let mut step = start_epoch * steps;
        let targets = train.targets();
        self.model.set_training(true);
        for epoch in start_epoch..opts.epochs {
            for cb in &mut self.callbacks {
                cb.on_epoch_begin(epoch, self.optimizer);
            }
            let bar = self.progress_bar(epoch, steps);
            let started = Instant::now();
            let mut loss_sum = Tensor::scalar(&self.device, 0.0);
            let mut hits = Tensor::scalar(&self.device, 0.0);
            let mut seen = 0usize;
            let mut last_read = Instant::now();
            let order = epoch_order(train.len(), Some(opts.seed), epoch as u64);
            for (i, picks) in order.chunks(opts.batch_size).enumerate() {
                let cost = StepCost::start(&self.device);
                let (x, y) = train.batch(&self.device, picks)?;
                let out = fit_to_targets(self.model.forward(&x), &y, targets)?;
                let loss = self.loss(&out, &y, targets);
                let grads = loss.backward();
                if opts.check_finite {
                    self.check_finite(&loss, &grads, step + 1)?;
                }
                loss_sum = no_grad(|| loss_sum.clone() + &loss * picks.len() as f32);
                hits = no_grad(|| hits.clone() + correct(&out, &y, targets));
                self.optimizer.step_with(&grads, &[&loss_sum, &hits])?;
                seen += picks.len();
                step += 1;
                cost.log(&self.device, step);
                // Reading values waits for the device, so the bar's loss is refreshed a few
                // times a second rather than every step.
                if !bar.is_hidden() && (last_read.elapsed().as_millis() >= 250 || i + 1 == steps) {
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
                stats.val_loss = Some(e.loss);
                match (&e.binary, v.targets()) {
                    (Some(b), _) => {
                        stats.val_accuracy = Some(b.accuracy());
                        stats.val_precision = Some(b.precision());
                        stats.val_recall = Some(b.recall());
                        stats.val_f1 = Some(b.f1());
                    }
                    (None, Targets::Classes(_)) => {
                        let r = e.confusion.report();
                        stats.val_accuracy = Some(e.confusion.accuracy());
                        stats.val_precision = Some(r.macro_precision());
                        stats.val_recall = Some(r.macro_recall());
                        stats.val_f1 = Some(r.macro_f1());
                    }
                    (None, _) => {}
                }
                history.confusion = Some(e.confusion);
            }
            stats.seconds = started.elapsed().as_secs_f64();
            if opts.verbose {
                let accuracy = targets != Targets::Values;
                println!("{}", epoch_line(&stats, (opts.epochs, accuracy), seen));
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
            // How many values are NaN or infinite (a bit test on every backend).
            let bad = |t: &Tensor| t.isfinite().neg().add_scalar(1.0).sum_all().reshape(&[1]);
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

/// The number of right predictions in a batch, lazily: the class with the largest score, or
/// a logit's side of 0 against a 0/1 target; nothing for values.
fn correct(out: &Tensor, y: &Tensor, targets: Targets) -> Tensor {
    match targets {
        Targets::Classes(_) => correct_lazy(out, y),
        Targets::Binary => {
            let predicted = out.gt(&out.scalar_like(0.0));
            predicted.eq(&y.gt(&y.scalar_like(0.5))).sum_all()
        }
        Targets::Values => Tensor::scalar(out.device(), 0.0),
    }
}

/// A binary classifier's logits in its targets' shape: `[n, 1]` against `[n]` is read as
/// `[n]`; a count that differs is an error naming both shapes. Other outputs as they are.
/// What one training step costs the device, for the debug log: dispatches, copies and
/// submissions, and, for recurrent models, dispatches per timestep.
struct StepCost {
    stats: Option<(Stats, u64)>,
}

impl StepCost {
    fn start(device: &Device) -> Self {
        let on = log::log_enabled!(target: "wgrad::trainer", log::Level::Debug);
        StepCost {
            stats: on.then(|| (device.stats(), crate::recurrent::cell_steps())),
        }
    }

    fn log(self, device: &Device, step: usize) {
        let Some((before, cells_before)) = self.stats else {
            return;
        };
        let cost = device.stats() - before;
        let cells = crate::recurrent::cell_steps() - cells_before;
        let per_cell = if cells > 0 {
            format!(
                "; {cells} recurrent timesteps (over layers and directions): {:.1} dispatches per timestep (the step's count ÷ timesteps)",
                cost.dispatches as f64 / cells as f64
            )
        } else {
            String::new()
        };
        log::debug!(
            target: "wgrad::trainer",
            "step {step}: {} dispatches, {} copies or clears, {} submission(s){per_cell}",
            cost.dispatches,
            cost.copies,
            cost.submissions
        );
    }
}

fn fit_to_targets(out: Tensor, y: &Tensor, targets: Targets) -> Result<Tensor> {
    if targets != Targets::Binary || out.shape() == y.shape() {
        return Ok(out);
    }
    if out.numel() != y.numel() {
        return Err(Error::Data(format!(
            "the model gives {:?} for binary targets {:?}; a binary classifier gives one \
             logit per target",
            out.shape(),
            y.shape()
        )));
    }
    Ok(out.reshape(y.shape()))
}

fn epoch_line(s: &EpochStats, (epochs, accuracy): (usize, bool), samples: usize) -> String {
    let mut line = format!("epoch {}/{epochs}  loss {:.4}", s.epoch, s.train_loss);
    if accuracy {
        line.push_str(&format!("  accuracy {:.2}%", s.train_accuracy * 100.0));
    }
    if let Some(l) = s.val_loss {
        line.push_str(&format!("  val_loss {l:.4}"));
    }
    if let Some(a) = s.val_accuracy {
        line.push_str(&format!("  val_accuracy {:.2}%", a * 100.0));
    }
    line.push_str(&format!(
        "  ({:.1} s, {:.0} samples/s)",
        s.seconds,
        samples as f64 / s.seconds.max(1e-9)
    ));
    line
}

/// Gets `dir` ready for a run's checkpoints: the temporary file of a write that was
/// interrupted is removed; checkpoints of another run are refused (or, with `overwrite`,
/// removed) unless this run resumes them.
fn prepare_checkpoint_dir(dir: &Path, resume: bool, overwrite: bool) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut checkpoints = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".epoch-") && name.contains(".safetensors.tmp-") {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                path: entry.path(),
                source,
            })?;
        } else if name.starts_with("epoch-") && name.ends_with(".safetensors") {
            checkpoints.push(entry.path());
        }
    }
    if resume || checkpoints.is_empty() {
        return Ok(());
    }
    if !overwrite {
        checkpoints.sort();
        return Err(Error::Data(format!(
            "{} holds checkpoints of another run ({} files, the last {}); resume it, or \
             overwrite them (--resume or --overwrite)",
            dir.display(),
            checkpoints.len(),
            checkpoints
                .last()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )));
    }
    for path in checkpoints {
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}
