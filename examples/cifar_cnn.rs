//! CIFAR-10 with the source material's colour variant of the MNIST CNN (input 32 × 32 × 3):
//! Conv(32, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3,
//! relu) → Flatten → Dense(64, relu) → Dense(10); Adam (lr 1e-3), sparse cross-entropy.
//!
//! CIFAR-10 is not bundled: `--data DIR` names a directory holding its binary version
//! (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`), as its authors distribute
//! it. `scripts/make_cifar_sample.py` writes a small stand-in in that format.
//!
//! `cargo run --release --example cifar_cnn -- --data DIR [--help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{models, Cifar10, CIFAR10_CLASSES};
use wgrad::{Error, Result};

fn run() -> Result<()> {
    let args = common::Args::parse(
        "usage: cifar_cnn --data DIR [OPTIONS]",
        common::TRAIN_OPTIONS,
    );
    wgrad::init_logging();
    let dir = args.path("data", "data/cifar-10-batches-bin");
    if !dir.is_dir() {
        return Err(Error::Data(format!(
            "{} is not a directory: CIFAR-10 is not bundled; pass --data DIR with its binary \
             batches (data_batch_1.bin … data_batch_5.bin, test_batch.bin)",
            dir.display()
        )));
    }
    let data = Cifar10::load(&dir)?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    println!("classes: {}", CIFAR10_CLASSES.join(", "));
    let model = models::cifar_cnn(&dev, args.get("seed", 0))?;
    println!("{}", model.summary());
    common::train_classifier(
        &args,
        &model,
        &dev,
        (&data.train, &data.test),
        ("cifar_cnn.safetensors", Some("cifar_cnn.png")),
        None,
    )
}

fn main() {
    common::exit_on_error(run());
}
