//! MNIST with the convolutional network from the source material:
//! Conv(32, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu)
//! → Flatten → Dense(64, relu) → Dense(10); Adam (lr 1e-3), sparse cross-entropy, batch 64.
//!
//! `cargo run --release --example mnist_cnn [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{
    Activation, Conv2d, ConvConfig, Dense, Flatten, MaxPool2d, Mnist, Rng, Sequential,
};
use wgrad::{Device, Result};

fn model(dev: &Device, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let conv = |i, o, rng: &mut Rng| Conv2d::new(dev, i, o, [3, 3], rng, ConvConfig::default());
    Ok(Sequential::new()
        .add(conv(1, 32, &mut rng)?)
        .add(Activation::Relu)
        .add(MaxPool2d::new(2))
        .add(conv(32, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(MaxPool2d::new(2))
        .add(conv(64, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(Flatten)
        .add(Dense::new(dev, 64 * 3 * 3, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(Dense::new(dev, 64, 10, &mut rng)?))
}

fn run() -> Result<()> {
    let args = common::Args::parse("usage: mnist_cnn [OPTIONS]", common::TRAIN_OPTIONS);
    wgrad::init_logging();
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    let model = model(&dev, args.get("seed", 0))?;
    println!("{}", model.summary());
    common::train_mnist(&args, &model, &dev, &data, "mnist_cnn.safetensors")
}

fn main() {
    common::exit_on_error(run());
}
