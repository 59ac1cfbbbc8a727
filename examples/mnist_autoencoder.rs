//! A convolutional autoencoder on MNIST: two strided convolutions down to a 32 × 7 × 7 code,
//! two transposed convolutions back up to the image, trained with the mean squared error of
//! the reconstruction. Prints the test reconstruction error per epoch and draws test digits
//! above their reconstructions into a PNG.
//!
//! `cargo run --release --example mnist_autoencoder [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{
    io, Activation, Adam, Conv2d, ConvConfig, ConvTranspose2d, FitOptions, Mnist, Module,
    Reconstruct, Rng, Samples, Sequential, Trainer,
};
use wgrad::{Device, Error, Result};

const OPTIONS: &[(&str, bool, &str)] = &[
    ("epochs", true, "training epochs (default 5)"),
    ("batch", true, "batch size (default 64)"),
    ("lr", true, "Adam learning rate (default 0.001)"),
    (
        "seed",
        true,
        "seed for initialisation and shuffling (default 0)",
    ),
    (
        "data",
        true,
        "directory with the MNIST IDX files (default: the bundled subset)",
    ),
    (
        "save",
        true,
        "where to save the weights (default mnist_autoencoder.safetensors)",
    ),
    (
        "png",
        true,
        "where to draw digits and reconstructions (default mnist_autoencoder.png)",
    ),
    ("quiet", false, "no progress bar"),
];

/// Conv(1 → 16, 3×3, stride 2) → relu → Conv(16 → 32, 3×3, stride 2) → relu: a 32 × 7 × 7
/// code; then ConvTranspose(32 → 16) → relu → ConvTranspose(16 → 1) → sigmoid.
fn autoencoder(dev: &Device, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let down = ConvConfig {
        stride: [2, 2],
        padding: [1, 1],
        ..ConvConfig::default()
    };
    let up = ConvConfig {
        output_padding: [1, 1],
        ..down
    };
    Ok(Sequential::new()
        .add(Conv2d::new(dev, 1, 16, [3, 3], &mut rng, down)?)
        .add(Activation::Relu)
        .add(Conv2d::new(dev, 16, 32, [3, 3], &mut rng, down)?)
        .add(Activation::Relu)
        .add(ConvTranspose2d::new(dev, 32, 16, [3, 3], &mut rng, up)?)
        .add(Activation::Relu)
        .add(ConvTranspose2d::new(dev, 16, 1, [3, 3], &mut rng, up)?)
        .add(Activation::Sigmoid))
}

fn run() -> Result<()> {
    let args = common::Args::parse("usage: mnist_autoencoder [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let (epochs, batch): (usize, usize) = (args.get("epochs", 5), args.get("batch", 64));
    if epochs == 0 || batch == 0 {
        return Err(Error::Data(
            "--epochs and --batch must be at least 1".into(),
        ));
    }
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    let model = autoencoder(&dev, args.get("seed", 0))?;
    println!("{}", model.summary());
    let (save, png) = (
        args.path("save", "mnist_autoencoder.safetensors"),
        args.path("png", "mnist_autoencoder.png"),
    );
    common::check_writable(&save)?;
    common::check_writable(&png)?;
    let mut opt = Adam::new(model.parameters(), args.get("lr", 1e-3));
    let options = FitOptions {
        epochs,
        batch_size: batch,
        seed: args.get("seed", 0),
        quiet: args.flag("quiet"),
        ..FitOptions::default()
    };
    // val_loss is the test split's reconstruction MSE.
    let (train, test) = (Reconstruct(&data.train), Reconstruct(&data.test));
    Trainer::new(&model, &mut opt, &dev)
        .with_options(options)
        .fit(&train, Some(&test))?;
    io::save(&save, &model, None)?;
    println!("saved weights to {}", save.display());
    // Eight test digits above their reconstructions.
    let picks: Vec<usize> = (0..8).collect();
    let (x, _) = test.batch(&dev, &picks)?;
    model.set_training(false);
    let y = wgrad::no_grad(|| model.forward(&x));
    let (x, y) = (x.to_vec()?, y.to_vec()?);
    let images: Vec<Vec<f32>> = x
        .chunks(784)
        .chain(y.chunks(784))
        .map(<[f32]>::to_vec)
        .collect();
    wgrad::plot::save_image_grid(&images, (28, 28), 2, 4, &png)?;
    println!(
        "drew test digits (top) and their reconstructions (bottom) in {}",
        png.display()
    );
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
