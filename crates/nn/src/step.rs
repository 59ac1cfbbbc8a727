//! What one training step does: the [`TrainStep`] a program may write itself (a GAN's
//! alternating updates, several optimizers), the [`Metrics`] a step reports, and the
//! trainer's own step for a model, a loss and an optimizer.

use wgrad_graph::{no_grad, realize_all, Device, Error, Grads, Result, Stats, Tensor};

use crate::data::Targets;
use crate::history::EpochStats;
use crate::metrics::correct_lazy;
use crate::module::Module;
use crate::optim::Optimizer;
use crate::parallel::DataParallel;

/// A training step of one's own, as Keras' overridden `train_step`: the [`crate::Trainer`]
/// (made with [`crate::Trainer::custom`]) still shuffles and batches the data, shows
/// progress, keeps the history, calls callbacks, and checkpoints and resumes every model
/// and optimizer the step names.
///
/// A GAN's step updates the discriminator on real and generated images, then the
/// generator, and reports both losses:
///
/// ```ignore
/// fn train_step(&mut self, real: &Tensor, _: &Tensor, step: usize, metrics: &mut Metrics) -> Result<()> {
///     let d_loss = /* … */;
///     metrics.add("d_loss", &d_loss);
///     self.d_opt.step_with(&d_loss.backward(), &metrics.pending())?;
///     let g_loss = /* … */;
///     metrics.add("g_loss", &g_loss);
///     self.g_opt.step_with(&g_loss.backward(), &metrics.pending())
/// }
/// ```
pub trait TrainStep {
    /// Step number `step` (0-based over the whole run, so a resumed run carries on with the
    /// same numbers, e.g. to seed noise) on a batch `x` with targets `y` (as the data gives
    /// them). Each value the step reports goes to `metrics`; the epoch's figures are their
    /// means over samples.
    ///
    /// In a data-parallel run (`Trainer::with_data_parallel`) the step must pass each set of
    /// gradients through [`Metrics::average_gradients`] before its optimizer uses them (a
    /// step that does not is stopped with an error); outside one that call does nothing.
    fn train_step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        step: usize,
        metrics: &mut Metrics<'_>,
    ) -> Result<()>;

    /// The model a checkpoint saves (several networks in one, e.g. a `Sequential` of named
    /// parts) and the optimizers, by name, whose state it saves beside it.
    fn parts(&mut self) -> (&dyn Module, Vec<(&'static str, &mut dyn Optimizer)>);

    /// Called after each epoch with its figures (e.g. to draw samples); in a data-parallel
    /// run, on rank 0 only.
    fn on_epoch_end(&mut self, _stats: &EpochStats) -> Result<()> {
        Ok(())
    }
}

/// The running sums of an epoch's metrics, which each step adds its batch's values to.
/// A metric named `loss` is the epoch's `train_loss`, `accuracy` its `train_accuracy`;
/// others are kept by name ([`EpochStats::extra`]).
pub struct Metrics<'p> {
    /// The current batch's size.
    batch: usize,
    /// Per metric, its sum over the samples so far (lazy until the step is realised).
    sums: Vec<(String, Tensor)>,
    /// The ranks of a data-parallel run.
    parallel: Option<&'p dyn DataParallel>,
    /// How many times gradients were averaged.
    averaged: usize,
}

impl<'p> Metrics<'p> {
    pub(crate) fn new(parallel: Option<&'p dyn DataParallel>) -> Self {
        Metrics {
            batch: 0,
            sums: Vec::new(),
            parallel,
            averaged: 0,
        }
    }

    /// In a data-parallel run, replaces `grads` (of `params`) by their mean over the ranks,
    /// computing the pending sums with them; outside one, does nothing. Call it between
    /// `backward` and the optimizer's step.
    pub fn average_gradients(&mut self, params: &[Tensor], grads: &mut Grads) -> Result<()> {
        if let Some(p) = self.parallel {
            p.average_gradients(params, grads, &self.pending())?;
        }
        self.averaged += 1;
        Ok(())
    }

    /// How many times [`Metrics::average_gradients`] has been called.
    pub(crate) fn averaged(&self) -> usize {
        self.averaged
    }

    /// This process's rank in a data-parallel run, else 0 (e.g. to draw other noise on each
    /// rank).
    pub fn rank(&self) -> usize {
        self.parallel.map_or(0, |p| p.rank())
    }

    pub(crate) fn begin_batch(&mut self, batch: usize) {
        self.batch = batch;
    }

    /// Adds this batch's mean of the metric `name`, a scalar tensor.
    pub fn add(&mut self, name: &str, mean: &Tensor) {
        let total = no_grad(|| mean.reshape(&[]) * self.batch as f32);
        self.add_total(name, &total);
    }

    /// Adds this batch's total of the metric `name` (e.g. a count of right answers).
    pub fn add_total(&mut self, name: &str, total: &Tensor) {
        let total = total.reshape(&[]);
        match self.sums.iter_mut().find(|(n, _)| n == name) {
            Some((_, sum)) => *sum = no_grad(|| sum.clone() + &total),
            None => self.sums.push((name.to_string(), total.detach())),
        }
    }

    /// The sums to compute with the step's update, so that the step stays one submission:
    /// pass them to [`Optimizer::step_with`]. Sums left out are computed after the step.
    pub fn pending(&self) -> Vec<&Tensor> {
        self.sums.iter().map(|(_, t)| t).collect()
    }

    /// Computes the sums the step left lazy.
    pub(crate) fn settle(&self) -> Result<()> {
        let lazy: Vec<&Tensor> = self
            .sums
            .iter()
            .map(|(_, t)| t)
            .filter(|t| !t.is_realized())
            .collect();
        if lazy.is_empty() {
            return Ok(());
        }
        realize_all(&lazy)
    }

    /// Each metric's mean over `samples`, in the order first added.
    pub(crate) fn means(&self, samples: usize) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::with_capacity(self.sums.len());
        for (name, sum) in &self.sums {
            out.push((name.clone(), sum.item()? as f64 / samples.max(1) as f64));
        }
        Ok(out)
    }

    /// Each metric's sum, in the order first added.
    pub(crate) fn totals(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::with_capacity(self.sums.len());
        for (name, sum) in &self.sums {
            out.push((name.clone(), sum.item()? as f64));
        }
        Ok(out)
    }

    /// The mean so far of the first metric (the loss), over `samples`, for the progress bar.
    pub(crate) fn first_mean(&self, samples: usize) -> Result<Option<(String, f64)>> {
        match self.sums.first() {
            Some((name, sum)) => Ok(Some((
                name.clone(),
                sum.item()? as f64 / samples.max(1) as f64,
            ))),
            None => Ok(None),
        }
    }
}

/// Fills an epoch's figures from its metric means.
pub(crate) fn fill_stats(stats: &mut EpochStats, means: Vec<(String, f64)>) {
    for (name, v) in means {
        match name.as_str() {
            "loss" => stats.train_loss = v,
            "accuracy" => stats.train_accuracy = v,
            _ => stats.extra.push((name, v)),
        }
    }
}

/// The loss function a `Trainer` was given, if any.
pub(crate) type LossFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + 'a>;

/// The trainer's own step: forward, the loss, backward, the optional finite-value check and
/// the update, in one submission with the epoch's sums.
pub(crate) struct ModelStep<'s, 'a> {
    pub model: &'s dyn Module,
    pub optimizer: &'s mut dyn Optimizer,
    pub loss: &'s Option<LossFn<'a>>,
    pub targets: Targets,
    /// With the step number, when values are checked.
    pub check_finite: Option<usize>,
}

impl ModelStep<'_, '_> {
    pub fn run(self, x: &Tensor, y: &Tensor, metrics: &mut Metrics<'_>) -> Result<()> {
        let out = fit_to_targets(self.model.forward(x), y, self.targets)?;
        let loss = loss_of(self.loss, &out, y, self.targets);
        let grads = loss.backward();
        if let Some(step) = self.check_finite {
            check_finite(self.model, &loss, &grads, step)?;
        }
        metrics.add("loss", &loss);
        if self.targets != Targets::Values {
            metrics.add_total("accuracy", &no_grad(|| correct(&out, y, self.targets)));
        }
        let mut grads = grads;
        metrics.average_gradients(self.optimizer.params(), &mut grads)?;
        self.optimizer.step_with(&grads, &metrics.pending())
    }
}

/// The loss for data with `targets`: the given function, or the default for the targets.
pub(crate) fn loss_of(
    loss: &Option<LossFn<'_>>,
    out: &Tensor,
    y: &Tensor,
    targets: Targets,
) -> Tensor {
    match (loss, targets) {
        (Some(loss), _) => loss(out, y),
        (None, Targets::Classes(_)) => wgrad_graph::cross_entropy(out, y),
        (None, Targets::Binary) => wgrad_graph::bce_with_logits(out, y),
        (None, Targets::Values) => wgrad_graph::mse_loss(out, y),
    }
}

/// Stops at the first non-finite loss or gradient, before the optimizer applies it.
fn check_finite(model: &dyn Module, loss: &Tensor, grads: &Grads, step: usize) -> Result<()> {
    let named = model.named_parameters();
    let flags: Vec<Tensor> = no_grad(|| {
        // How many values are NaN or infinite (a bit test on every backend).
        let bad = |t: &Tensor| t.isfinite().neg().add_scalar(1.0).sum_all().reshape(&[1]);
        let mut flags = vec![bad(loss)];
        for (_, p) in &named {
            flags.push(match grads.get(p) {
                Some(g) => bad(g),
                None => Tensor::zeros(loss.device(), &[1]),
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

/// The number of right predictions in a batch, lazily: the class with the largest score, or
/// a logit's side of 0 against a 0/1 target; nothing for values.
pub(crate) fn correct(out: &Tensor, y: &Tensor, targets: Targets) -> Tensor {
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
pub(crate) fn fit_to_targets(out: Tensor, y: &Tensor, targets: Targets) -> Result<Tensor> {
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

/// What one training step costs the device, for the debug log: dispatches, copies and
/// submissions, and, for recurrent models, dispatches per timestep.
pub(crate) struct StepCost {
    stats: Option<(Stats, u64)>,
}

impl StepCost {
    pub fn start(device: &Device) -> Self {
        let on = log::log_enabled!(target: "wgrad::trainer", log::Level::Debug);
        StepCost {
            stats: on.then(|| (device.stats(), crate::recurrent::cell_steps())),
        }
    }

    pub fn log(self, device: &Device, step: usize) {
        let Some((before, cells_before)) = self.stats else {
            return;
        };
        let cost = device.stats() - before;
        let cells = crate::recurrent::cell_steps() - cells_before;
        let per_cell = if cells > 0 {
            format!(
                "; {cells} recurrent timesteps (over layers and directions): {:.1} dispatches \
                 per timestep (the step's count ÷ timesteps)",
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
