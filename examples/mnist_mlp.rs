//! MNIST with a multilayer perceptron: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10),
//! Adam (lr 1e-3), sparse cross-entropy, batch 64, 5 epochs.
//!
//! `cargo run --release --example mnist_mlp [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::dist::Ddp;
use wgrad::nn::Mnist;
use wgrad::Result;

fn run(args: &common::Args, ddp: Option<&Ddp>) -> Result<()> {
    let main = common::is_main(ddp);
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    let dev = common::device(ddp);
    if main {
        println!("device: {}", dev.name());
    }
    let model = wgrad::nn::models::mnist_mlp(&dev, data.train.features(), args.get("seed", 0))?;
    if main {
        println!("{}", model.summary());
    }
    common::train_classifier(
        args,
        &model,
        &dev,
        (&data.train, &data.test),
        ("mnist_mlp.safetensors", None),
        ddp,
    )
}

fn main() {
    let args = common::Args::parse("usage: mnist_mlp [OPTIONS]", common::TRAIN_OPTIONS);
    wgrad::init_logging();
    let ddp = common::distributed(&args);
    common::exit_ranked(run(&args, ddp.as_ref()), ddp.as_ref());
}
