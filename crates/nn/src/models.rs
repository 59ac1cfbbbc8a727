//! Ready-made models of the source material, to train, evaluate or build on (replace the head,
//! freeze the features).

use wgrad_graph::{Device, Result};

use crate::conv::{Conv2d, ConvConfig, ConvTranspose2d, MaxPool2d};
use crate::init::Init;
use crate::layers::{Activation, Dense, DenseConfig, Dropout, Flatten, Unflatten};
use crate::module::Sequential;
use crate::norm::{BatchNorm, NormConfig};
use crate::rng::Rng;

/// The MNIST CNN: Conv(32, 3×3, relu) → MaxPool 2×2 → Conv(64, 3×3, relu) → MaxPool 2×2 →
/// Conv(64, 3×3, relu) → Flatten → Dense(64, relu) → Dense(10), for `[n, 1, 28, 28]` images;
/// weights drawn from `seed`. Layers 0–9 are the features, 10–11 the head.
pub fn mnist_cnn(device: &Device, seed: u64) -> Result<Sequential> {
    small_cnn(device, 1, 3 * 3, seed)
}

/// The source material's colour variant of the MNIST CNN, for `[n, 3, 32, 32]` images
/// (CIFAR-10): the same layers, with 3 input channels and 64 × 4 × 4 features.
pub fn cifar_cnn(device: &Device, seed: u64) -> Result<Sequential> {
    small_cnn(device, 3, 4 * 4, seed)
}

/// Three 3×3 convolutions (32, 64, 64 channels) with two 2×2 pools between them, then
/// Dense(64) and Dense(10), for `channels` input channels leaving `pixels` pixels.
fn small_cnn(device: &Device, channels: usize, pixels: usize, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let conv = |i, o, rng: &mut Rng| Conv2d::new(device, i, o, [3, 3], rng, ConvConfig::default());
    Ok(Sequential::new()
        .add(conv(channels, 32, &mut rng)?)
        .add(Activation::Relu)
        .add(MaxPool2d::new(2))
        .add(conv(32, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(MaxPool2d::new(2))
        .add(conv(64, 64, &mut rng)?)
        .add(Activation::Relu)
        .add(Flatten)
        .add(Dense::new(device, 64 * pixels, 64, &mut rng)?)
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

/// A convolutional autoencoder for `[n, 1, 28, 28]` images in [0, 1]: Conv(1 → 16, 3×3,
/// stride 2) → relu → Conv(16 → 32, 3×3, stride 2) → relu gives a 32 × 7 × 7 code (layers
/// 0–3, the encoder); ConvTranspose(32 → 16) → relu → ConvTranspose(16 → 1) → sigmoid
/// decodes it (layers 4–7).
pub fn conv_autoencoder(device: &Device, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let (down, up) = strided(3, 1);
    Ok(Sequential::new()
        .add(Conv2d::new(device, 1, 16, [3, 3], &mut rng, down)?)
        .add(Activation::Relu)
        .add(Conv2d::new(device, 16, 32, [3, 3], &mut rng, down)?)
        .add(Activation::Relu)
        .add(ConvTranspose2d::new(device, 32, 16, [3, 3], &mut rng, up)?)
        .add(Activation::Relu)
        .add(ConvTranspose2d::new(device, 16, 1, [3, 3], &mut rng, up)?)
        .add(Activation::Sigmoid))
}

/// Convolutions that halve (and transposed ones that double) the height and width: stride
/// 2 with `k`×`k` kernels, padding `padding`; for 3×3 kernels the transposed one adds an
/// output row and column.
fn strided(k: usize, padding: usize) -> (ConvConfig, ConvConfig) {
    let down = ConvConfig {
        stride: [2, 2],
        padding: [padding, padding],
        ..ConvConfig::default()
    };
    let extra = usize::from(k % 2 == 1);
    let up = ConvConfig {
        output_padding: [extra, extra],
        ..down
    };
    (down, up)
}

/// DCGAN weights: N(0, 0.02), no bias where batch norm follows.
fn dcgan(bias: bool, k: usize) -> ConvConfig {
    let (down, _) = strided(k, 1);
    ConvConfig {
        init: Init::Normal(0.02),
        bias,
        ..down
    }
}

/// A small DCGAN-style generator for 28 × 28 images in [-1, 1]: noise `[n, latent]` →
/// Dense(64·7·7) → batch norm → relu → 64 × 7 × 7 → ConvTranspose(64 → 32, 4×4, stride 2)
/// → batch norm → relu → ConvTranspose(32 → 1, 4×4, stride 2) → tanh.
pub fn dcgan_generator(device: &Device, latent: usize, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let dense = DenseConfig {
        init: Init::Normal(0.02),
        bias: false,
    };
    Ok(Sequential::new()
        .add(Dense::with_config(
            device,
            latent,
            64 * 7 * 7,
            &mut rng,
            dense,
        )?)
        .add(BatchNorm::new_1d(
            device,
            64 * 7 * 7,
            NormConfig::default(),
        )?)
        .add(Activation::Relu)
        .add(Unflatten::new(1, &[64, 7, 7]))
        .add(ConvTranspose2d::new(
            device,
            64,
            32,
            [4, 4],
            &mut rng,
            dcgan(false, 4),
        )?)
        .add(BatchNorm::new_2d(device, 32, NormConfig::default())?)
        .add(Activation::Relu)
        .add(ConvTranspose2d::new(
            device,
            32,
            1,
            [4, 4],
            &mut rng,
            dcgan(true, 4),
        )?)
        .add(Activation::Tanh))
}

/// A small DCGAN-style discriminator for `[n, 1, 28, 28]` images in [-1, 1]: Conv(1 → 32,
/// 4×4, stride 2) → leaky relu 0.2 → Conv(32 → 64, 4×4, stride 2) → batch norm → leaky relu
/// 0.2 → Flatten → Dense(1): one logit per image, real against generated.
pub fn dcgan_discriminator(device: &Device, seed: u64) -> Result<Sequential> {
    let mut rng = Rng::new(seed);
    let dense = DenseConfig {
        init: Init::Normal(0.02),
        bias: true,
    };
    Ok(Sequential::new()
        .add(Conv2d::new(
            device,
            1,
            32,
            [4, 4],
            &mut rng,
            dcgan(true, 4),
        )?)
        .add(Activation::LeakyRelu(0.2))
        .add(Conv2d::new(
            device,
            32,
            64,
            [4, 4],
            &mut rng,
            dcgan(false, 4),
        )?)
        .add(BatchNorm::new_2d(device, 64, NormConfig::default())?)
        .add(Activation::LeakyRelu(0.2))
        .add(Flatten)
        .add(Dense::with_config(device, 64 * 7 * 7, 1, &mut rng, dense)?))
}
