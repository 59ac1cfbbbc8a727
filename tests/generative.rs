//! Generative models through the trainer: the GAN's custom step and the autoencoder give the
//! same losses on the GPU as on the CPU backend, a custom step's run resumes exactly from a
//! checkpoint holding both networks and both optimizers, and a plain training step is one
//! submission.

mod common;

use wgrad::nn::{models, Dataset, FitOptions, Gan, Module, Reconstruct, Trainer};
use wgrad::Device;

/// `n` 28 × 28 images in [0, 1]: blurred blobs at places that depend on the index.
fn images(n: usize) -> Dataset {
    let mut images = Vec::with_capacity(n * 784);
    for i in 0..n {
        let (cy, cx) = (6.0 + (i * 7 % 16) as f32, 6.0 + (i * 11 % 16) as f32);
        for y in 0..28 {
            for x in 0..28 {
                let d2 = (y as f32 - cy).powi(2) + (x as f32 - cx).powi(2);
                images.push((-d2 / 18.0).exp());
            }
        }
    }
    Dataset {
        images,
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        sample_shape: vec![1, 28, 28],
        classes: 10,
    }
}

fn options(epochs: usize) -> FitOptions {
    FitOptions {
        epochs,
        batch_size: 8,
        seed: 3,
        quiet: true,
        verbose: false,
        ..FitOptions::default()
    }
}

fn gan(dev: &Device) -> Gan {
    let g = models::dcgan_generator(dev, 16, 1).unwrap();
    let d = models::dcgan_discriminator(dev, 2).unwrap();
    Gan::new(g, d, 16, 5)
}

/// Both losses of each epoch, and every weight after training.
fn train_gan(dev: &Device, epochs: usize) -> (Vec<(f64, f64)>, Vec<Vec<f32>>) {
    let mut gan = gan(dev);
    let history = Trainer::custom(&mut gan, dev)
        .with_options(options(epochs))
        .fit(&images(24), None)
        .unwrap();
    let losses = history
        .epochs
        .iter()
        .map(|e| (e.get("d_loss").unwrap(), e.get("g_loss").unwrap()))
        .collect();
    let weights = gan
        .nets
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    (losses, weights)
}

fn close(what: &str, a: f64, b: f64, tol: f64) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: {a} against {b}"
    );
}

#[test]
fn gan_steps_give_the_same_losses_on_gpu_and_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let (cpu_losses, cpu_weights) = train_gan(&wgrad::cpu(), 2);
    let (gpu_losses, gpu_weights) = train_gan(&gpu, 2);
    for (i, (c, g)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        close(&format!("epoch {i} d_loss"), g.0, c.0, 1e-3);
        close(&format!("epoch {i} g_loss"), g.1, c.1, 1e-3);
    }
    // Six steps of each optimizer moved every weight the same way.
    for (c, g) in cpu_weights.iter().zip(&gpu_weights) {
        for (a, b) in g.iter().zip(c) {
            close("weight", *a as f64, *b as f64, 2e-3);
        }
    }
    // The losses are those of a GAN that learns: not constant, and finite.
    assert!(cpu_losses
        .iter()
        .all(|l| l.0.is_finite() && l.1.is_finite()));
    assert_ne!(cpu_losses[0], cpu_losses[1]);
}

#[test]
fn autoencoder_steps_give_the_same_losses_on_gpu_and_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let run = |dev: &Device| {
        let model = models::conv_autoencoder(dev, 4).unwrap();
        let mut opt = wgrad::nn::Adam::new(model.parameters(), 1e-3);
        let data = images(24);
        let history = Trainer::new(&model, &mut opt, dev)
            .with_options(options(2))
            .fit(&Reconstruct(&data), None)
            .unwrap();
        history
            .epochs
            .iter()
            .map(|e| e.train_loss)
            .collect::<Vec<_>>()
    };
    let (c, g) = (run(&wgrad::cpu()), run(&gpu));
    for (a, b) in g.iter().zip(&c) {
        close("reconstruction loss", *a, *b, 1e-4);
    }
    assert!(c[1] < c[0], "the autoencoder did not learn: {c:?}");
}

#[test]
fn a_custom_step_resumes_exactly_from_its_checkpoint() {
    let dev = wgrad::cpu();
    let dir = std::env::temp_dir().join(format!("wgrad-gan-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (straight, straight_weights) = train_gan(&dev, 2);
    // One epoch with a checkpoint, then a new process' worth of objects resuming to two.
    let with_dir = |epochs: usize, resume: bool| FitOptions {
        checkpoint_dir: Some(dir.clone()),
        resume,
        ..options(epochs)
    };
    let mut first = gan(&dev);
    Trainer::custom(&mut first, &dev)
        .with_options(with_dir(1, false))
        .fit(&images(24), None)
        .unwrap();
    let mut second = gan(&dev);
    let history = Trainer::custom(&mut second, &dev)
        .with_options(with_dir(2, true))
        .fit(&images(24), None)
        .unwrap();
    let names: Vec<String> = wgrad::nn::io::inspect(dir.join("epoch-0002.safetensors"))
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    for part in [
        "generator.0.weight",
        "discriminator.6.bias",
        "optimizers.generator.m.0",
    ] {
        assert!(names.iter().any(|n| n == part), "{part} not in {names:?}");
    }
    let resumed: Vec<(f64, f64)> = history
        .epochs
        .iter()
        .map(|e| (e.get("d_loss").unwrap(), e.get("g_loss").unwrap()))
        .collect();
    assert_eq!(resumed, straight);
    let weights: Vec<Vec<f32>> = second
        .nets
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    assert_eq!(weights, straight_weights);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_training_step_of_the_trainer_is_one_submission() {
    let Some(gpu) = common::gpu() else { return };
    let model = models::mnist_cnn(&gpu, 0).unwrap();
    let mut opt = wgrad::nn::Adam::new(model.parameters(), 1e-3);
    let data = images(32);
    let before = gpu.stats();
    Trainer::new(&model, &mut opt, &gpu)
        .with_options(options(1))
        .fit(&data, None)
        .unwrap();
    let cost = gpu.stats() - before;
    // Four steps; the epoch's figures are read from values those submissions computed.
    assert_eq!(cost.submissions, 4, "{cost:?}");
    assert!(cost.dispatches > 4 * 20, "{cost:?}");
}

#[test]
fn a_custom_step_with_validation_data_is_refused_before_anything_runs() {
    let dev = wgrad::cpu();
    let mut gan = gan(&dev);
    let before: Vec<Vec<f32>> = gan
        .nets
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    let data = images(8);
    let e = Trainer::custom(&mut gan, &dev)
        .with_options(options(1))
        .fit(&data, Some(&data))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("custom step") && e.contains("on_epoch_end"),
        "{e}"
    );
    let after: Vec<Vec<f32>> = gan
        .nets
        .parameters()
        .iter()
        .map(|p| p.to_vec().unwrap())
        .collect();
    assert_eq!(before, after);
}
