//! A variational autoencoder on MNIST: an encoder gives each digit a mean and a log-variance
//! in a 16-dimensional latent space, a sample `z = μ + σ·ε` (ε from `Tensor::randn`, the
//! reparameterisation) is decoded back to the image, and the loss is the reconstruction's
//! binary cross-entropy plus the KL divergence of the code from N(0, I). A custom training
//! step (`TrainStep`) through the `Trainer`.
//!
//! Prints the loss, its two terms and the test reconstruction error per epoch, and draws test
//! digits, their reconstructions, and new digits decoded from random codes into a PNG.
//!
//! `cargo run --release --example mnist_vae [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::dist::Ddp;
use wgrad::nn::{
    io, Activation, Adam, Dense, EpochStats, FitOptions, Flatten, Metrics, Mnist, Module,
    Optimizer, Rng, Samples, Sequential, TrainStep, Trainer, Unflatten,
};
use wgrad::{bce_with_logits, no_grad, Device, Error, Result, Tensor};

const OPTIONS: &[(&str, bool, &str)] = &[
    ("epochs", true, "training epochs (default 10)"),
    ("batch", true, "batch size (default 64)"),
    ("lr", true, "Adam learning rate (default 0.001)"),
    ("latent", true, "latent dimensions (default 16)"),
    (
        "seed",
        true,
        "seed for initialisation, noise and shuffling (default 0)",
    ),
    (
        "data",
        true,
        "directory with the MNIST IDX files (default: the bundled subset)",
    ),
    (
        "save",
        true,
        "where to save the weights (default mnist_vae.safetensors)",
    ),
    (
        "png",
        true,
        "where to draw digits, reconstructions and samples (default mnist_vae.png)",
    ),
    (
        "distributed",
        false,
        "train as one rank of an MPI job: mpirun -np N ... --distributed (--batch is per rank; needs --features mpi)",
    ),
    ("quiet", false, "no progress bar"),
];

const PIXELS: usize = 784;

/// The encoder (image → mean and log-variance, `[n, 2·latent]`) and the decoder (code →
/// pixel logits `[n, 1, 28, 28]`), with the optimizer and what the epochs report on.
struct Vae {
    nets: Sequential,
    opt: Adam,
    latent: usize,
    seed: u64,
    /// Test images `[n, 1, 28, 28]`, for the reconstruction error after each epoch.
    test: Tensor,
}

impl Vae {
    fn new(dev: &Device, latent: usize, lr: f32, seed: u64, test: Tensor) -> Result<Vae> {
        let mut rng = Rng::new(seed);
        let encoder = Sequential::new()
            .add(Flatten)
            .add(Dense::new(dev, PIXELS, 400, &mut rng)?)
            .add(Activation::Relu)
            .add(Dense::new(dev, 400, 2 * latent, &mut rng)?);
        let decoder = Sequential::new()
            .add(Dense::new(dev, latent, 400, &mut rng)?)
            .add(Activation::Relu)
            .add(Dense::new(dev, 400, PIXELS, &mut rng)?)
            .add(Unflatten::new(1, &[1, 28, 28]));
        let nets = Sequential::new()
            .add_named("encoder", encoder)
            .add_named("decoder", decoder);
        let opt = Adam::new(nets.parameters(), lr);
        Ok(Vae {
            nets,
            opt,
            latent,
            seed,
            test,
        })
    }

    fn encoder(&self) -> &dyn Module {
        self.nets
            .get_named("encoder")
            .expect("built with an encoder")
    }

    fn decoder(&self) -> &dyn Module {
        self.nets
            .get_named("decoder")
            .expect("built with a decoder")
    }

    /// The mean and log-variance of each image's code.
    fn encode(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.encoder().forward(x);
        (
            h.narrow(1, 0, self.latent),
            h.narrow(1, self.latent, self.latent),
        )
    }

    /// Images in [0, 1] decoded from codes `[n, latent]`.
    fn decode(&self, z: &Tensor) -> Tensor {
        no_grad(|| self.decoder().forward(z).sigmoid())
    }
}

impl TrainStep for Vae {
    fn train_step(
        &mut self,
        x: &Tensor,
        _: &Tensor,
        step: usize,
        metrics: &mut Metrics,
    ) -> Result<()> {
        let n = x.shape()[0];
        let (mu, logvar) = self.encode(x);
        // The reparameterisation: the noise is an input, so gradients reach μ and σ.
        let eps = Tensor::randn(
            x.device(),
            &[n, self.latent],
            // Each rank of a data-parallel run draws its own noise.
            self.seed ^ (step as u64) << 20 ^ (metrics.rank() as u64) << 48,
        );
        let z = &mu + (&logvar * 0.5).exp() * eps;
        let logits = self.decoder().forward(&z);
        // Per image: the pixels' cross-entropy summed, and the KL divergence in closed form.
        let recon = bce_with_logits(&logits, x) * PIXELS as f32;
        let kl = ((&mu * &mu) + logvar.exp() - &logvar - 1.0).sum_all() * (0.5 / n as f32);
        let loss = &recon + &kl;
        metrics.add("loss", &loss);
        metrics.add("recon", &recon);
        metrics.add("kl", &kl);
        let mut grads = loss.backward();
        metrics.average_gradients(self.opt.params(), &mut grads)?;
        self.opt.step_with(&grads, &metrics.pending())
    }

    fn parts(&mut self) -> (&dyn Module, Vec<(&'static str, &mut dyn Optimizer)>) {
        (&self.nets, vec![("", &mut self.opt as &mut dyn Optimizer)])
    }

    fn on_epoch_end(&mut self, stats: &EpochStats) -> Result<()> {
        // The test digits through their mean codes: the reconstruction's squared error.
        let (mu, _) = no_grad(|| self.encode(&self.test));
        let back = self.decode(&mu);
        let mse = no_grad(|| wgrad::mse_loss(&back, &self.test)).item()?;
        println!("epoch {}: test reconstruction MSE {mse:.4}", stats.epoch);
        Ok(())
    }
}

fn run(args: &common::Args, ddp: Option<&Ddp>) -> Result<()> {
    let main = common::is_main(ddp);
    let (epochs, batch): (usize, usize) = (args.get("epochs", 10), args.get("batch", 64));
    let latent: usize = args.get("latent", 16);
    if epochs == 0 || batch == 0 || latent == 0 {
        return Err(Error::Data(
            "--epochs, --batch and --latent must be at least 1".into(),
        ));
    }
    let seed: u64 = args.get("seed", 0);
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = common::device(ddp);
    if main {
        println!("device: {}", dev.name());
    }
    let (save, png) = (
        args.path("save", "mnist_vae.safetensors"),
        args.path("png", "mnist_vae.png"),
    );
    if main {
        common::check_writable(&save)?;
        common::check_writable(&png)?;
    }
    let picks: Vec<usize> = (0..data.test.len().min(1000)).collect();
    let (test, _) = data.test.batch(&dev, &picks)?;
    let mut vae = Vae::new(&dev, latent, args.get("lr", 1e-3), seed, test)?;
    if main {
        println!("{}", vae.nets.summary());
    }
    let options = FitOptions {
        epochs,
        batch_size: batch,
        seed,
        quiet: args.flag("quiet"),
        ..FitOptions::default()
    };
    let mut trainer = Trainer::custom(&mut vae, &dev).with_options(options);
    if let Some(d) = ddp {
        trainer = trainer.with_data_parallel(d);
    }
    trainer.fit(&data.train, None)?;
    drop(trainer);
    if !main {
        return Ok(());
    }
    io::save(&save, &vae.nets, None)?;
    println!("saved weights to {}", save.display());

    // Eight test digits, their reconstructions, and sixteen digits from random codes.
    let x = vae.test.narrow(0, 0, 8);
    let (mu, _) = no_grad(|| vae.encode(&x));
    let back = vae.decode(&mu);
    let samples = vae.decode(&Tensor::randn(&dev, &[16, latent], seed ^ 0x5a3e));
    let mut images: Vec<Vec<f32>> = Vec::new();
    for t in [&x, &back, &samples] {
        images.extend(t.to_vec()?.chunks(PIXELS).map(<[f32]>::to_vec));
    }
    wgrad::plot::save_image_grid(&images, (28, 28), 4, 4, &png)?;
    println!(
        "drew test digits (row 1), their reconstructions (row 2) and digits decoded from \
         random codes (rows 3 and 4) in {}",
        png.display()
    );
    Ok(())
}

fn main() {
    let args = common::Args::parse("usage: mnist_vae [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let ddp = common::distributed(&args);
    common::exit_ranked(run(&args, ddp.as_ref()), ddp.as_ref());
}
