//! A small DCGAN on MNIST: a generator of transposed convolutions against a discriminator of
//! strided convolutions with leaky relus, BCE with logits, two Adam optimizers (lr 2e-4,
//! betas 0.5 / 0.999), alternating steps with the generator's images detached for the
//! discriminator's update (`wgrad::nn::Gan` through the `Trainer`).
//!
//! After each epoch it draws 64 samples from one fixed noise batch into a PNG. At the end, the
//! CNN that `mnist_cnn` trained (its saved weights) classifies 1,000 samples: the mean
//! top-class probability and the classes that occur say whether they look like digits.
//!
//! `cargo run --release --example mnist_gan [-- --help]`

#[path = "common/mod.rs"]
mod common;

use std::path::Path;

use wgrad::dist::Ddp;
use wgrad::nn::{io, models, FitOptions, Gan, Mnist, Module, Sequential, Trainer};
use wgrad::{Device, Error, Result, Tensor};

const OPTIONS: &[(&str, bool, &str)] = &[
    ("epochs", true, "training epochs (default 10)"),
    ("batch", true, "batch size (default 32)"),
    (
        "real-label",
        true,
        "the discriminator's target for real images (default 0.9: one-sided smoothing)",
    ),
    ("latent", true, "noise dimensions (default 64)"),
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
        "classifier",
        true,
        "weights of the MNIST CNN that judges the samples (default mnist_cnn.safetensors)",
    ),
    (
        "save",
        true,
        "where to save both networks (default mnist_gan.safetensors)",
    ),
    (
        "png",
        true,
        "where to draw the 64 samples after each epoch (default mnist_gan.png)",
    ),
    (
        "samples",
        true,
        "samples the classifier judges (default 1000)",
    ),
    (
        "eval",
        true,
        "load both networks from FILE, draw and judge samples, and exit",
    ),
    (
        "distributed",
        false,
        "train as one rank of an MPI job: mpirun -np N ... --distributed (--batch is per rank; needs --features mpi)",
    ),
    ("quiet", false, "no progress bar"),
];

/// `n` images from `generator` for noise seeded by `seed`, as 784 values in [0, 1] each,
/// with batch norm in evaluation mode (its running statistics), as a trained generator is
/// used; the nets are left in the mode they were in.
fn sample(
    nets: &Sequential,
    dev: &Device,
    (n, latent): (usize, usize),
    seed: u64,
) -> Result<Vec<f32>> {
    let generator = nets.get_named("generator").expect("a Gan has a generator");
    let z = Tensor::randn(dev, &[n, latent], seed);
    let training = nets.is_training();
    nets.set_training(false);
    let images = wgrad::no_grad(|| (generator.forward(&z) + 1.0) * 0.5).to_vec();
    nets.set_training(training);
    images
}

/// Draws 64 samples of a fixed noise batch as an 8 × 8 grid.
fn draw(nets: &Sequential, dev: &Device, latent: usize, seed: u64, png: &Path) -> Result<()> {
    let images = sample(nets, dev, (64, latent), seed)?;
    let images: Vec<Vec<f32>> = images.chunks(784).map(<[f32]>::to_vec).collect();
    wgrad::plot::save_image_grid(&images, (28, 28), 8, 2, png)
}

fn run(args: &common::Args, ddp: Option<&Ddp>) -> Result<()> {
    let main = common::is_main(ddp);
    let (epochs, batch): (usize, usize) = (args.get("epochs", 10), args.get("batch", 32));
    let (latent, samples): (usize, usize) = (args.get("latent", 64), args.get("samples", 1000));
    if epochs == 0 || batch < 2 || latent == 0 || samples == 0 {
        return Err(Error::Data(
            "--epochs, --latent and --samples must be at least 1, --batch at least 2".into(),
        ));
    }
    let seed: u64 = args.get("seed", 0);
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = common::device(ddp);
    if main {
        println!("device: {}", dev.name());
    }
    let (save, png) = (
        args.path("save", "mnist_gan.safetensors"),
        args.path("png", "mnist_gan.png"),
    );
    let classifier_path = args.path("classifier", "mnist_cnn.safetensors");
    if main {
        common::check_writable(&save)?;
        common::check_writable(&png)?;
    }
    let generator = models::dcgan_generator(&dev, latent, seed)?;
    let discriminator = models::dcgan_discriminator(&dev, seed ^ 0xd15c)?;
    if main {
        println!("generator:\n{}", generator.summary());
        println!("discriminator:\n{}", discriminator.summary());
    }
    let fixed = seed ^ 0xf1e0;
    let (draw_dev, draw_png) = (dev.clone(), png.clone());
    let mut gan = Gan::new(generator, discriminator, latent, seed)
        .with_real_label(args.get("real-label", 0.9))
        .on_epoch_end(move |nets, stats| {
            draw(nets, &draw_dev, latent, fixed, &draw_png)?;
            println!(
                "epoch {}: drew 64 samples in {}",
                stats.epoch,
                draw_png.display()
            );
            Ok(())
        });
    let eval: String = args.get("eval", String::new());
    if eval.is_empty() {
        let options = FitOptions {
            epochs,
            batch_size: batch,
            seed,
            quiet: args.flag("quiet"),
            ..FitOptions::default()
        };
        let mut trainer = Trainer::custom(&mut gan, &dev).with_options(options);
        if let Some(d) = ddp {
            trainer = trainer.with_data_parallel(d);
        }
        trainer.fit(&data.train, None)?;
        drop(trainer);
        if !main {
            return Ok(());
        }
        io::save(&save, &gan.nets, None)?;
        println!("saved both networks to {}", save.display());
    } else {
        if !main {
            return Ok(());
        }
        io::load(&eval, &gan.nets, None)?;
        draw(&gan.nets, &dev, latent, fixed, &png)?;
        println!("loaded {eval}; drew 64 samples in {}", png.display());
    }

    // Do the samples look like digits? The MNIST CNN's verdict on them.
    if !classifier_path.exists() {
        println!(
            "no classifier weights at {}: run `cargo run --release --example mnist_cnn` first \
             (or pass --classifier FILE) to have the samples judged",
            classifier_path.display()
        );
        return Ok(());
    }
    let cnn = models::mnist_cnn(&dev, 0)?;
    io::load(&classifier_path, &cnn, None)?;
    cnn.set_training(false);
    let mut counts = [0usize; 10];
    let mut confidence = 0.0f64;
    let mut done = 0;
    while done < samples {
        let n = (samples - done).min(200);
        let images = sample(&gan.nets, &dev, (n, latent), seed ^ 0x5a3e ^ done as u64)?;
        let x = Tensor::from_slice(&dev, &images, &[n, 1, 28, 28])?;
        let p = wgrad::no_grad(|| cnn.forward(&x).softmax(-1)).to_vec()?;
        for row in p.chunks(10) {
            let (class, top) =
                row.iter()
                    .enumerate()
                    .fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            counts[class] += 1;
            confidence += top as f64;
        }
        done += n;
    }
    let classes = counts.iter().filter(|&&c| c > 0).count();
    println!(
        "the MNIST CNN on {samples} samples: mean top-class probability {:.3}, {classes} of 10 \
         classes occur (per class: {counts:?})",
        confidence / samples as f64
    );
    Ok(())
}

fn main() {
    let args = common::Args::parse("usage: mnist_gan [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let ddp = common::distributed(&args);
    common::exit_ranked(run(&args, ddp.as_ref()), ddp.as_ref());
}
