//! `Gan`: the alternating training step of a generative adversarial network, for the
//! [`crate::Trainer`] (see [`TrainStep`]).

use wgrad_graph::{bce_with_logits, no_grad, Result, Tensor};

use crate::history::EpochStats;
use crate::module::{Module, Sequential};
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::step::{Metrics, TrainStep};

/// A GAN trained as DCGAN is: each step draws a noise batch, updates the discriminator on
/// the real batch (target 1) and on generated images (target 0, with the generator
/// detached), then updates the generator so that the discriminator calls its images real.
/// Both use BCE with logits and their own Adam (lr 2e-4, betas 0.5 / 0.999 by default).
/// Reports `d_loss` (real plus generated) and `g_loss`.
///
/// Real images are taken from [0, 1] to the generator's [-1, 1]. The noise of step `s` is
/// drawn from `seed` and `s`, so a resumed run draws what the uninterrupted run would.
pub struct Gan {
    /// `generator` and `discriminator`, under those names (checkpoints hold both).
    pub nets: Sequential,
    g_opt: Adam,
    d_opt: Adam,
    latent: usize,
    seed: u64,
    /// The discriminator's target for real images (1, or less for one-sided smoothing).
    real_label: f32,
    /// Called after each epoch, e.g. to draw samples.
    on_epoch: Option<EpochHook>,
}

type EpochHook = Box<dyn FnMut(&Sequential, &EpochStats) -> Result<()>>;

impl Gan {
    /// A GAN of `generator` (noise `[n, latent]` → images) and `discriminator` (images →
    /// one logit each), with DCGAN's Adam settings.
    pub fn new(generator: Sequential, discriminator: Sequential, latent: usize, seed: u64) -> Gan {
        let config = AdamConfig {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            ..AdamConfig::default()
        };
        let g_opt = Adam::with_config(generator.parameters(), config);
        let d_opt = Adam::with_config(discriminator.parameters(), config);
        Gan {
            nets: Sequential::new()
                .add_named("generator", generator)
                .add_named("discriminator", discriminator),
            g_opt,
            d_opt,
            latent,
            seed,
            real_label: 1.0,
            on_epoch: None,
        }
    }

    /// One-sided label smoothing (Salimans et al., 2016): the discriminator's target for
    /// real images becomes `label` (e.g. 0.9) instead of 1, which keeps it from growing so
    /// sure of itself that the generator's gradients fade. Generated images keep target 0,
    /// and the generator's own target stays 1.
    pub fn with_real_label(mut self, label: f32) -> Self {
        self.real_label = label;
        self
    }

    /// Calls `hook` with the nets after each epoch.
    pub fn on_epoch_end(
        mut self,
        hook: impl FnMut(&Sequential, &EpochStats) -> Result<()> + 'static,
    ) -> Self {
        self.on_epoch = Some(Box::new(hook));
        self
    }

    /// The generator.
    pub fn generator(&self) -> &dyn Module {
        self.nets
            .get_named("generator")
            .expect("a Gan has a generator")
    }

    /// The discriminator.
    pub fn discriminator(&self) -> &dyn Module {
        self.nets
            .get_named("discriminator")
            .expect("a Gan has a discriminator")
    }

    /// `n` noise vectors `[n, latent]` from N(0, 1), the same for the same `seed`.
    pub fn noise(&self, device: &wgrad_graph::Device, n: usize, seed: u64) -> Tensor {
        Tensor::randn(device, &[n, self.latent], seed)
    }

    /// The optimizers (generator's, discriminator's), e.g. to change learning rates.
    pub fn optimizers(&mut self) -> (&mut Adam, &mut Adam) {
        (&mut self.g_opt, &mut self.d_opt)
    }
}

impl TrainStep for Gan {
    fn train_step(
        &mut self,
        real: &Tensor,
        _: &Tensor,
        step: usize,
        metrics: &mut Metrics<'_>,
    ) -> Result<()> {
        let n = real.shape()[0];
        let dev = real.device().clone();
        let real = no_grad(|| real * 2.0 - 1.0);
        // Each rank of a data-parallel run draws its own noise (rank 0 what one process would).
        let seed =
            self.seed ^ (step as u64).wrapping_mul(0x9e37_79b9) ^ (metrics.rank() as u64) << 48;
        let z = self.noise(&dev, n, seed);
        let (ones, zeros) = (Tensor::ones(&dev, &[n, 1]), Tensor::zeros(&dev, &[n, 1]));
        let real_target = Tensor::full(&dev, &[n, 1], self.real_label);
        let (generator, discriminator) = (self.generator(), self.discriminator());
        let fake = generator.forward(&z);
        let d_loss = bce_with_logits(&discriminator.forward(&real), &real_target)
            + bce_with_logits(&discriminator.forward(&fake.detach()), &zeros);
        metrics.add("d_loss", &d_loss);
        let mut d_grads = d_loss.backward();
        metrics.average_gradients(self.d_opt.params(), &mut d_grads)?;
        self.d_opt.step_with(&d_grads, &metrics.pending())?;
        // The discriminator just changed, so its verdict on the same images is taken again.
        let g_loss = bce_with_logits(&self.discriminator().forward(&fake), &ones);
        metrics.add("g_loss", &g_loss);
        let mut g_grads = g_loss.backward();
        metrics.average_gradients(self.g_opt.params(), &mut g_grads)?;
        self.g_opt.step_with(&g_grads, &metrics.pending())
    }

    fn parts(&mut self) -> (&dyn Module, Vec<(&'static str, &mut dyn Optimizer)>) {
        (
            &self.nets,
            vec![
                ("generator", &mut self.g_opt as &mut dyn Optimizer),
                ("discriminator", &mut self.d_opt),
            ],
        )
    }

    fn on_epoch_end(&mut self, stats: &EpochStats) -> Result<()> {
        match &mut self.on_epoch {
            Some(hook) => hook(&self.nets, stats),
            None => Ok(()),
        }
    }
}
