//! MNIST with the convolutional network from the source material:
//! Conv(32, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu)
//! → Flatten → Dense(64, relu) → Dense(10); Adam (lr 1e-3), sparse cross-entropy, batch 64.
//!
//! `cargo run --release --example mnist_cnn [-- --epochs N --batch N --lr LR --data DIR
//!  --seed S --save FILE --eval FILE]`

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::nn::{
    io, Activation, Adam, Conv2d, ConvConfig, DataLoader, Dense, Flatten, MaxPool2d, Mnist, Module,
    Optimizer, Rng, Sequential,
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
    let args = common::Args::parse(
        "usage: mnist_cnn [--epochs N] [--batch N] [--lr LR] [--data DIR] [--seed S] [--save FILE] [--eval FILE]",
        &[
            ("epochs", true, "training epochs (default 5)"),
            ("batch", true, "batch size (default 64)"),
            ("lr", true, "Adam learning rate (default 0.001)"),
            ("data", true, "directory with the MNIST IDX files (default: the bundled subset)"),
            ("seed", true, "seed for initialisation and shuffling (default 0)"),
            ("save", true, "where to save the trained weights (default mnist_cnn.safetensors)"),
            ("eval", true, "load weights from FILE and only evaluate them"),
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
    let model = model(&dev, seed)?;

    let eval: String = args.get("eval", String::new());
    if !eval.is_empty() {
        let file = eval.as_str();
        io::load(file, &model, None)?;
        let acc = common::evaluate(&model, &data.test, &dev)?;
        println!(
            "{file}: test accuracy {:.2}% on {} images",
            acc * 100.0,
            data.test.len()
        );
        return Ok(());
    }

    println!(
        "data: {} training and {} test images",
        data.train.len(),
        data.test.len()
    );
    println!("{}", model.summary());
    let mut opt = Adam::new(model.parameters(), lr);
    let loader = DataLoader::new(&data.train, batch).shuffled(seed);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
        .expect("valid template")
        .progress_chars("=> ");
    for epoch in 0..epochs {
        let bar = ProgressBar::new(loader.len() as u64)
            .with_style(style.clone())
            .with_prefix(format!("epoch {}/{epochs}", epoch + 1));
        let start = Instant::now();
        let (mut total, mut seen) = (0.0f64, 0usize);
        for b in loader.epoch(epoch) {
            let (x, y) = b.to_device(&dev)?;
            let loss = wgrad::cross_entropy(&model.forward(&x), &y);
            let grads = loss.backward();
            opt.step_with(&grads, &[&loss])?;
            let l = loss.item()?;
            total += l as f64 * b.len() as f64;
            seen += b.len();
            bar.set_message(format!(
                "loss {l:.4}  {:.0} img/s",
                seen as f64 / start.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
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
    let save = args.path("save", "mnist_cnn.safetensors");
    io::save(&save, &model, Some(&opt))?;
    println!("saved weights to {}", save.display());
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
