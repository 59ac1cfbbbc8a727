//! A convolutional autoencoder on MNIST: two strided convolutions down to a 32 × 7 × 7 code,
//! two transposed convolutions back up to the image, trained with the mean squared error of
//! the reconstruction. Prints the test reconstruction error per epoch and draws test digits
//! above their reconstructions into a PNG.
//!
//! `cargo run --release --example mnist_autoencoder [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::dist::Ddp;
use wgrad::nn::{io, Adam, FitOptions, Mnist, Module, Reconstruct, Samples, Trainer};
use wgrad::{Error, Result};

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
    (
        "distributed",
        false,
        "train as one rank of an MPI job: mpirun -np N ... --distributed (--batch is per rank; needs --features mpi)",
    ),
    ("quiet", false, "no progress bar"),
];

fn run(args: &common::Args, ddp: Option<&Ddp>) -> Result<()> {
    let main = common::is_main(ddp);
    let (epochs, batch): (usize, usize) = (args.get("epochs", 5), args.get("batch", 64));
    if epochs == 0 || batch == 0 {
        return Err(Error::Data(
            "--epochs and --batch must be at least 1".into(),
        ));
    }
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = common::device(ddp);
    if main {
        println!("device: {}", dev.name());
    }
    let model = wgrad::nn::models::conv_autoencoder(&dev, args.get("seed", 0))?;
    if main {
        println!("{}", model.summary());
    }
    let (save, png) = (
        args.path("save", "mnist_autoencoder.safetensors"),
        args.path("png", "mnist_autoencoder.png"),
    );
    if main {
        common::check_writable(&save)?;
        common::check_writable(&png)?;
    }
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
    let mut trainer = Trainer::new(&model, &mut opt, &dev).with_options(options);
    if let Some(d) = ddp {
        trainer = trainer.with_data_parallel(d);
    }
    trainer.fit(&train, Some(&test))?;
    if !main {
        return Ok(());
    }
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
    let args = common::Args::parse("usage: mnist_autoencoder [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let ddp = common::distributed(&args);
    common::exit_ranked(run(&args, ddp.as_ref()), ddp.as_ref());
}
