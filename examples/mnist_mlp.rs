//! MNIST with a multilayer perceptron: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10),
//! Adam (lr 1e-3), sparse cross-entropy, batch 64, 5 epochs.
//!
//! `cargo run --release --example mnist_mlp [-- --data DIR --epochs N --batch N --lr LR --seed S]`

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use wgrad::nn::{
    Activation, Adam, DataLoader, Dense, Dropout, Flatten, Mnist, Module, Optimizer, Rng,
    Sequential,
};
use wgrad::Result;

fn run() -> Result<()> {
    let args = common::Args::parse(
        "usage: mnist_mlp [--data DIR] [--epochs N] [--batch N] [--lr LR] [--seed S]",
        &[
            (
                "data",
                true,
                "directory with the MNIST IDX files (default: the bundled subset)",
            ),
            ("epochs", true, "training epochs (default 5)"),
            ("batch", true, "batch size (default 64)"),
            ("lr", true, "Adam learning rate (default 0.001)"),
            (
                "seed",
                true,
                "seed for initialisation, shuffling and dropout (default 0)",
            ),
        ],
    );
    let epochs: u64 = args.get("epochs", 5);
    let batch: usize = args.get("batch", 64);
    let lr: f32 = args.get("lr", 1e-3);
    let seed: u64 = args.get("seed", 0);
    wgrad::init_logging();

    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    println!(
        "data: {} training and {} test images",
        data.train.len(),
        data.test.len()
    );

    let mut rng = Rng::new(seed);
    let model = Sequential::new()
        .add(Flatten)
        .add(Dense::new(&dev, data.train.features(), 128, &mut rng)?)
        .add(Activation::Relu)
        .add(Dropout::new(0.2, seed ^ 0xd0))
        .add(Dense::new(&dev, 128, 10, &mut rng)?);
    println!("{}", model.summary());
    let mut opt = Adam::new(model.parameters(), lr);
    let loader = DataLoader::new(&data.train, batch).shuffled(seed);

    for epoch in 0..epochs {
        let start = Instant::now();
        let (mut total, mut seen) = (0.0f64, 0usize);
        for b in loader.epoch(epoch) {
            let (x, y) = b.to_device(&dev)?;
            let loss = wgrad::cross_entropy(&model.forward(&x), &y);
            let grads = loss.backward();
            opt.step_with(&grads, &[&loss])?;
            total += loss.item()? as f64 * b.len() as f64;
            seen += b.len();
        }
        let secs = start.elapsed().as_secs_f64();
        let acc = common::evaluate(&model, &data.test, &dev)?;
        println!(
            "epoch {}/{epochs}  loss {:.4}  test accuracy {:.2}%  ({secs:.1} s, {:.0} images/s)",
            epoch + 1,
            total / seen.max(1) as f64,
            acc * 100.0,
            seen as f64 / secs
        );
    }
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
