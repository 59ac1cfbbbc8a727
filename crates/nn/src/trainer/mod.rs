//! `Trainer`: Keras-style `fit` over a model, optimizer, loss and data (images with class ids,
//! token sequences with binary targets, or any [`Samples`]), with validation metrics each
//! epoch, callbacks (early stopping, learning-rate schedules), a progress bar,
//! a finite-value check, and checkpoints that a run can resume from exactly.

mod checkpoints;

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wgrad_graph::{no_grad, realize_all, Device, Error, Result, Tensor};

use crate::callbacks::{Callback, Control};
use crate::data::{epoch_order, Samples, Targets};
use crate::history::{EpochStats, History};
use crate::metrics::{confusion_lazy, BinaryCounts, ConfusionMatrix};
use crate::module::{check_input, Module};
use crate::optim::Optimizer;
use crate::parallel::{evaluation_shard, DataParallel};
use crate::step::{
    fill_stats, fit_to_targets, loss_of, LossFn, Metrics, ModelStep, StepCost, TrainStep,
};

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
    learner: Learner<'a>,
    device: Device,
    /// Set by `with_loss`; else the data's targets decide.
    loss: Option<LossFn<'a>>,
    /// Options used by [`Trainer::fit`].
    pub options: FitOptions,
    callbacks: Vec<Box<dyn Callback + 'a>>,
    /// Set by `with_data_parallel`: this process is one rank of several.
    parallel: Option<&'a dyn DataParallel>,
}

/// What a trainer trains: a model with an optimizer and a loss, or a step of one's own.
enum Learner<'a> {
    Model {
        model: &'a dyn Module,
        optimizer: &'a mut dyn Optimizer,
    },
    Custom(&'a mut dyn TrainStep),
}

impl Learner<'_> {
    /// The model checkpoints hold, and its optimizers by name (unnamed for a plain model).
    fn parts(&mut self) -> (&dyn Module, Vec<(&str, &mut dyn Optimizer)>) {
        match self {
            Learner::Model { model, optimizer } => (*model, vec![("", &mut **optimizer)]),
            Learner::Custom(step) => step.parts(),
        }
    }
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
            learner: Learner::Model { model, optimizer },
            device: device.clone(),
            loss: None,
            options: FitOptions::default(),
            callbacks: Vec::new(),
            parallel: None,
        }
    }

    /// A trainer running `step` on each batch (see [`TrainStep`]): a GAN's alternating
    /// updates, or any scheme with several models or optimizers. Validation data is not
    /// evaluated (the step's `on_epoch_end` may); everything else works as for a model.
    pub fn custom(step: &'a mut dyn TrainStep, device: &Device) -> Self {
        Trainer {
            learner: Learner::Custom(step),
            device: device.clone(),
            loss: None,
            options: FitOptions::default(),
            callbacks: Vec::new(),
            parallel: None,
        }
    }

    /// The model trained, for a trainer made with [`Trainer::new`].
    fn model(&self) -> Result<&'a dyn Module> {
        match &self.learner {
            Learner::Model { model, .. } => Ok(*model),
            Learner::Custom(_) => Err(Error::Data(
                "a trainer with a custom step has no model of its own to evaluate; evaluate \
                 the step's models directly"
                    .into(),
            )),
        }
    }

    /// Replaces the loss `(model output, targets) -> scalar`.
    pub fn with_loss(mut self, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Self {
        self.loss = Some(Box::new(loss));
        self
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: FitOptions) -> Self {
        self.options = options;
        self
    }

    /// Trains as one rank of several (`wgrad_dist::Ddp`): each rank trains on its own shard
    /// of every epoch and the gradients are averaged over the ranks before each update, as
    /// PyTorch's `DistributedDataParallel` does. The batch size is per rank. Metrics and
    /// validation are reduced over the ranks; only rank 0 prints and writes checkpoints.
    pub fn with_data_parallel(mut self, parallel: &'a dyn DataParallel) -> Self {
        self.parallel = Some(parallel);
        self
    }

    /// Whether this process prints and writes files: always, unless it is a rank other
    /// than 0 of a data-parallel run.
    fn is_main(&self) -> bool {
        self.parallel.is_none_or(|p| p.is_main())
    }

    /// Adds a callback, called after the ones added before.
    pub fn with_callback(mut self, callback: impl Callback + 'a) -> Self {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// Checks `data` against the model: its samples fit the input, and the model's outputs
    /// fit the targets (a score for every class the labels name).
    fn sample_shape(&self, data: &dyn Samples) -> Result<()> {
        let (Some(sample), Learner::Model { model, .. }) = (data.input_shape(), &self.learner)
        else {
            return data.check(None);
        };
        let mut shape = vec![self.options.batch_size.clamp(1, data.len().max(1))];
        shape.extend(&sample);
        data.check(None)?;
        let out = check_input(*model, &shape)?;
        match out[..] {
            [_, outputs] => data.check(Some(outputs)),
            _ => Ok(()),
        }
    }

    /// Refuses options that would train nothing or on nonsense, before anything runs.
    fn check_options(&mut self, train: &dyn Samples) -> Result<()> {
        if self.options.batch_size == 0 {
            return Err(Error::Data("the batch size must be at least 1".into()));
        }
        if train.is_empty() {
            return Err(Error::Data(
                "the training data is empty: there is nothing to train on".into(),
            ));
        }
        for (_, optimizer) in self.learner.parts().1 {
            let lr = optimizer.learning_rate();
            if !(lr.is_finite() && lr >= 0.0) {
                return Err(Error::Data(format!(
                    "the learning rate is {lr}; it must be a finite number of at least 0"
                )));
            }
        }
        Ok(())
    }

    /// Loss and confusion matrix over `data`, in evaluation mode; the model is left in the
    /// mode it was in.
    pub fn evaluate(&self, data: &dyn Samples) -> Result<Evaluation> {
        self.sample_shape(data)?;
        let model = self.model()?;
        let was_training = model.is_training();
        model.set_training(false);
        let targets = data.targets();
        let result = no_grad(|| -> Result<Evaluation> {
            let mut loss_sum = Tensor::scalar(&self.device, 0.0);
            let classes = match targets {
                Targets::Classes(c) => c,
                _ => 0,
            };
            let mut confusion = Tensor::zeros(&self.device, &[classes, classes]);
            let mut binary = BinaryCounts::default();
            let mut order = epoch_order(data.len(), None, 0);
            if let Some(p) = self.parallel {
                order = evaluation_shard(&order, p.rank(), p.world_size());
            }
            // Four training batches at a time: memory scales with what training already fits.
            let chunk = 4 * self.options.batch_size.max(1);
            for picks in order.chunks(chunk) {
                let (x, y) = data.batch(&self.device, picks)?;
                let out = fit_to_targets(model.forward(&x), &y, targets)?;
                loss_sum = loss_sum + loss_of(&self.loss, &out, &y, targets) * picks.len() as f32;
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
            let mut loss_sum = loss_sum.item()? as f64;
            if let Some(p) = self.parallel {
                reduce_evaluation(p, &mut loss_sum, &mut confusion, &mut binary)?;
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
                loss: loss_sum / data.len().max(1) as f64,
                confusion: ConfusionMatrix::from_tensor(&confusion)?,
                binary,
            })
        });
        model.set_training(was_training);
        result
    }

    /// Trains for `options.epochs` epochs, validating on `validation` after each.
    pub fn fit(
        &mut self,
        train: &dyn Samples,
        validation: Option<&dyn Samples>,
    ) -> Result<History> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Data(
                "Trainer::fit waits for the device, which a browser cannot do: train with a \
                 loop of Optimizer::step_async and item_async there (see web/src/lib.rs)"
                    .into(),
            ));
        }
        self.check_options(train)?;
        if validation.is_some() && matches!(self.learner, Learner::Custom(_)) {
            return Err(Error::Data(
                "a trainer with a custom step does not validate; evaluate in the step's \
                 on_epoch_end instead"
                    .into(),
            ));
        }
        self.sample_shape(train)?;
        if let Some(v) = validation {
            self.sample_shape(v)?;
        }
        let opts = self.options.clone();
        let main = self.is_main();
        let verbose = opts.verbose && main;
        let mut history = History::default();
        let mut start_epoch = 0;
        if opts.resume && opts.checkpoint_dir.is_none() {
            return Err(Error::Data("resuming needs a checkpoint directory".into()));
        }
        if let Some(dir) = &opts.checkpoint_dir {
            if let Some((epoch, h)) = self.open_checkpoints(dir, opts.resume, opts.overwrite)? {
                start_epoch = epoch;
                history = h;
                if verbose {
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
        if let (Some(dir), true) = (&opts.checkpoint_dir, main) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        if let Some(p) = self.parallel {
            // Every rank starts from rank 0's weights, whatever its seed drew.
            p.broadcast_module(self.learner.parts().0)?;
        }
        if start_epoch >= opts.epochs && verbose {
            println!(
                "nothing to train: {} epochs asked for, {start_epoch} done",
                opts.epochs
            );
        }
        let parallel = self.parallel;
        let shard = |order: Vec<usize>| match parallel {
            Some(p) => p.shard(&order),
            None => order,
        };
        let steps = shard((0..train.len()).collect())
            .len()
            .div_ceil(opts.batch_size);
        let mut step = start_epoch * steps;
        let targets = train.targets();
        self.learner.parts().0.set_training(true);
        for epoch in start_epoch..opts.epochs {
            for (_, optimizer) in self.learner.parts().1 {
                for cb in &mut self.callbacks {
                    cb.on_epoch_begin(epoch, optimizer);
                }
            }
            let bar = self.progress_bar(epoch, steps);
            let started = Instant::now();
            let mut metrics = Metrics::new(self.parallel);
            let mut seen = 0usize;
            let mut last_read = Instant::now();
            let order = shard(epoch_order(train.len(), Some(opts.seed), epoch as u64));
            for (i, picks) in order.chunks(opts.batch_size).enumerate() {
                let cost = StepCost::start(&self.device);
                let (x, y) = train.batch(&self.device, picks)?;
                metrics.begin_batch(picks.len());
                match &mut self.learner {
                    Learner::Model { model, optimizer } => ModelStep {
                        model: *model,
                        optimizer: &mut **optimizer,
                        loss: &self.loss,
                        targets,
                        check_finite: opts.check_finite.then_some(step + 1),
                    }
                    .run(&x, &y, &mut metrics)?,
                    Learner::Custom(custom) => {
                        let before = metrics.averaged();
                        custom.train_step(&x, &y, step, &mut metrics)?;
                        if self.parallel.is_some() && metrics.averaged() == before {
                            return Err(Error::Data(format!(
                                "step {}: the custom step did not average its gradients; in a \
                                 data-parallel run it must pass them through \
                                 Metrics::average_gradients before each optimizer step, or \
                                 the ranks would drift apart",
                                step + 1
                            )));
                        }
                    }
                }
                metrics.settle()?;
                seen += picks.len();
                step += 1;
                cost.log(&self.device, step);
                // Reading values waits for the device, so the bar's loss is refreshed a few
                // times a second rather than every step.
                if !bar.is_hidden() && (last_read.elapsed().as_millis() >= 250 || i + 1 == steps) {
                    let rate = seen as f64 / started.elapsed().as_secs_f64();
                    let first = match metrics.first_mean(seen)? {
                        Some((name, avg)) => format!("{name} {avg:.4}  "),
                        None => String::new(),
                    };
                    bar.set_message(format!("{first}{rate:.0} samples/s"));
                    last_read = Instant::now();
                }
                bar.set_position(i as u64 + 1);
            }
            bar.finish_and_clear();
            let learning_rate = self
                .learner
                .parts()
                .1
                .first()
                .map_or(0.0, |(_, o)| o.learning_rate());
            let mut stats = EpochStats {
                epoch: epoch + 1,
                learning_rate,
                ..Default::default()
            };
            let means = match self.parallel {
                Some(p) => reduced_means(p, &metrics, seen)?,
                None => metrics.means(seen)?,
            };
            if let Some(p) = self.parallel {
                // Batch-norm statistics differ between ranks; rank 0's are the model's, as
                // with PyTorch's DistributedDataParallel.
                p.broadcast_module(self.learner.parts().0)?;
            }
            let has = |name: &str| means.iter().any(|(n, _)| n == name);
            let shown = (has("loss"), has("accuracy"));
            fill_stats(&mut stats, means);
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
            if verbose {
                let samples = self.parallel.map_or(seen, |p| seen * p.world_size());
                println!("{}", epoch_line(&stats, opts.epochs, shown, samples));
            }
            if let (Learner::Custom(custom), true) = (&mut self.learner, main) {
                custom.on_epoch_end(&stats)?;
            }
            history.epochs.push(stats);
            if let (Some(dir), true) = (&opts.checkpoint_dir, main) {
                self.save_checkpoint(dir, epoch + 1, &history)?;
            }
            let mut stop = false;
            for cb in &mut self.callbacks {
                stop |= cb.on_epoch_end(&history) == Control::Stop;
            }
            if stop {
                history.stopped_early = true;
                if verbose {
                    println!("stopping early after epoch {}", epoch + 1);
                }
                break;
            }
        }
        Ok(history)
    }

    fn progress_bar(&self, epoch: usize, steps: usize) -> ProgressBar {
        if self.options.quiet || !self.is_main() {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid progress template")
            .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(format!("epoch {}/{}", epoch + 1, self.options.epochs))
    }
}

/// Sums a data-parallel evaluation's figures over the ranks.
fn reduce_evaluation(
    p: &dyn DataParallel,
    loss_sum: &mut f64,
    confusion: &mut Tensor,
    binary: &mut BinaryCounts,
) -> Result<()> {
    let mut values = vec![
        *loss_sum,
        binary.true_positive as f64,
        binary.false_positive as f64,
        binary.true_negative as f64,
        binary.false_negative as f64,
    ];
    values.extend(confusion.to_vec()?.iter().map(|&c| c as f64));
    p.sum(&mut values)?;
    *loss_sum = values[0];
    binary.true_positive = values[1] as u64;
    binary.false_positive = values[2] as u64;
    binary.true_negative = values[3] as u64;
    binary.false_negative = values[4] as u64;
    let counts: Vec<f32> = values[5..].iter().map(|&c| c as f32).collect();
    *confusion = Tensor::from_slice(confusion.device(), &counts, confusion.shape())?;
    Ok(())
}

/// Each metric's mean over the samples of every rank.
fn reduced_means(
    p: &dyn DataParallel,
    metrics: &Metrics,
    seen: usize,
) -> Result<Vec<(String, f64)>> {
    let (names, mut values): (Vec<String>, Vec<f64>) = metrics.totals()?.into_iter().unzip();
    values.push(seen as f64);
    p.sum(&mut values)?;
    let samples = values.pop().unwrap_or(0.0).max(1.0);
    Ok(names
        .into_iter()
        .zip(values)
        .map(|(n, v)| (n, v / samples))
        .collect())
}

/// The line printed after an epoch; `shown` says whether the step reported a loss and an
/// accuracy.
fn epoch_line(s: &EpochStats, epochs: usize, shown: (bool, bool), samples: usize) -> String {
    let (loss, accuracy) = shown;
    let mut line = format!("epoch {}/{epochs}", s.epoch);
    if loss {
        line.push_str(&format!("  loss {:.4}", s.train_loss));
    }
    if accuracy {
        line.push_str(&format!("  accuracy {:.2}%", s.train_accuracy * 100.0));
    }
    for (name, v) in &s.extra {
        line.push_str(&format!("  {name} {v:.4}"));
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
