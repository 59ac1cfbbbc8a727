//! The training run the page shows, shared with its native reference (`src/bin/reference.rs`):
//! the MNIST MLP or CNN, Adam, cross-entropy, batches in the `Trainer`'s shuffled order, with
//! every read awaited so that a browser's event loop keeps turning between steps.

use wgrad_graph::{cross_entropy, no_grad, Device, Result};
use wgrad_nn::data::epoch_order;
use wgrad_nn::metrics::correct_lazy;
use wgrad_nn::{models, Adam, Mnist, Module, Optimizer, Samples, Sequential};

#[cfg(target_arch = "wasm32")]
mod page;

/// Which model trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// Flatten → Dense(128, relu) → Dropout(0.2) → Dense(10).
    Mlp,
    /// The MNIST CNN of the source material.
    Cnn,
}

/// What the run does.
#[derive(Clone, Debug)]
pub struct Options {
    /// The model.
    pub model: Model,
    /// Seeds the weights, dropout and the order of the batches.
    pub seed: u64,
    /// Samples per step.
    pub batch: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Epochs over the training images.
    pub epochs: usize,
    /// Stop after this many steps (the reference computes only the first ones).
    pub max_steps: Option<usize>,
    /// Read the loss after each of the first `exact_steps` steps, then every `chart_every`
    /// steps (each read waits for the device).
    pub exact_steps: usize,
    /// See `exact_steps`.
    pub chart_every: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: Model::Mlp,
            seed: 0,
            batch: 64,
            lr: 1e-3,
            epochs: 1,
            max_steps: None,
            exact_steps: 20,
            chart_every: 10,
        }
    }
}

/// What the run reports as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    /// The loss of step `step` (1-based).
    Step { step: usize, loss: f32 },
    /// Test accuracy after epoch `epoch` (1-based), and the predicted digit of each of the
    /// first test images.
    Epoch {
        epoch: usize,
        accuracy: f64,
        predictions: Vec<u32>,
    },
}

/// How many of the first test images the epochs report predictions for.
pub const SHOWN: usize = 8;

/// Builds the model and trains it on `data`, reporting through `report`.
pub async fn train(
    dev: &Device,
    data: &Mnist,
    options: &Options,
    report: &mut dyn FnMut(Event),
) -> Result<Sequential> {
    let model = match options.model {
        Model::Mlp => models::mnist_mlp(dev, 784, options.seed)?,
        Model::Cnn => models::mnist_cnn(dev, options.seed)?,
    };
    let mut opt = Adam::new(model.parameters(), options.lr);
    let mut step = 0;
    for epoch in 0..options.epochs {
        model.set_training(true);
        let order = epoch_order(data.train.len(), Some(options.seed), epoch as u64);
        for picks in order.chunks(options.batch) {
            if options.max_steps.is_some_and(|m| step >= m) {
                return Ok(model);
            }
            let (x, y) = data.train.batch(dev, picks)?;
            let loss = cross_entropy(&model.forward(&x), &y);
            let grads = loss.backward();
            opt.step_async(&grads, &[&loss]).await?;
            step += 1;
            if step <= options.exact_steps || step % options.chart_every.max(1) == 0 {
                let loss = loss.item_async().await?;
                report(Event::Step { step, loss });
            }
        }
        let (accuracy, predictions) = evaluate(dev, &model, data).await?;
        report(Event::Epoch {
            epoch: epoch + 1,
            accuracy,
            predictions,
        });
    }
    Ok(model)
}

/// Test accuracy, and the predictions for the first [`SHOWN`] test images.
async fn evaluate(dev: &Device, model: &Sequential, data: &Mnist) -> Result<(f64, Vec<u32>)> {
    model.set_training(false);
    let all: Vec<usize> = (0..data.test.len()).collect();
    let mut right = 0.0;
    let mut predictions = Vec::new();
    for picks in all.chunks(500) {
        let (x, y) = data.test.batch(dev, picks)?;
        let logits = no_grad(|| model.forward(&x));
        let hits = no_grad(|| correct_lazy(&logits, &y));
        right += f64::from(hits.item_async().await?);
        let predicted = logits.argmax(-1, false);
        if predictions.is_empty() {
            let first = predicted.narrow(0, 0, SHOWN.min(picks.len()));
            predictions = first.to_vec_u32_async().await?;
        }
    }
    model.set_training(true);
    Ok((right / data.test.len().max(1) as f64, predictions))
}

/// The first `n` test images, 784 values each.
pub fn test_images(data: &Mnist, n: usize) -> Vec<&[f32]> {
    data.test.images.chunks(784).take(n).collect()
}
