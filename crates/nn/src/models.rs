//! Ready-made models of the source material, to train, evaluate or build on (replace the head,
//! freeze the features).

use wgrad_graph::{Device, Result};

use crate::conv::{Conv2d, ConvConfig, MaxPool2d};
use crate::layers::{Activation, Dense, Dropout, Flatten};
use crate::module::Sequential;
use crate::rng::Rng;

/// The MNIST CNN: Conv(32, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu) → MaxPool 2×2 →
/// Conv(64, 3×3, relu) → Flatten → Dense(64, relu) → Dense(10), for `[n, 1, 28, 28]` images;
/// weights drawn from `seed`. Layers 0–9 are the features, 10–11 the head.
pub fn mnist_cnn(device: &Device, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let conv = |i, o, rng: &mut Rng| Conv2d::new(device, i, o, [3, 3], rng, ConvConfig::default());
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
        .add(Dense::new(device, 64 * 3 * 3, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(Dense::new(device, 64, 10, &mut rng)?))
}

/// The MNIST MLP: Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10), for `inputs`
/// features per sample (784 for MNIST); weights and dropout masks drawn from `seed`.
pub fn mnist_mlp(device: &Device, inputs: usize, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    Ok(Sequential::new()
        .add(Flatten)
        .add(Dense::new(device, inputs, 128, &mut rng)?)
        .add(Activation::Relu)
        .add(Dropout::new(0.2, seed ^ 0xd0))
        .add(Dense::new(device, 128, 10, &mut rng)?))
}
