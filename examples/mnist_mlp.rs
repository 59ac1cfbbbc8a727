//! MNIST with a multilayer perceptron: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10),
//! Adam (lr 1e-3), sparse cross-entropy, batch 64, 5 epochs.
//!
//! `cargo run --release --example mnist_mlp [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{Activation, Dense, Dropout, Flatten, Mnist, Rng, Sequential};
use wgrad::Result;

fn run() -> Result<()> {
    let args = common::Args::parse("usage: mnist_mlp [OPTIONS]", common::TRAIN_OPTIONS);
    wgrad::init_logging();
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    let seed: u64 = args.get("seed", 0);
    let mut rng = Rng::new(seed);
    let model = Sequential::new()
        .add(Flatten)
        .add(Dense::new(&dev, data.train.features(), 128, &mut rng)?)
        .add(Activation::Relu)
        .add(Dropout::new(0.2, seed ^ 0xd0))
        .add(Dense::new(&dev, 128, 10, &mut rng)?);
    println!("{}", model.summary());
    common::train_mnist(&args, &model, &dev, &data, "mnist_mlp.safetensors")
}

fn main() {
    common::exit_on_error(run());
}
