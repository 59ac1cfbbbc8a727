//! The trainer end to end: resuming from a checkpoint reproduces an uninterrupted run,
//! training is deterministic, and problems from outside the program are errors, not panics.

mod common;

use common::gpu;
use wgrad::nn::{
    Activation, Adam, BatchNorm, Dataset, Dense, Dropout, FitOptions, Flatten, Module, NormConfig,
    Optimizer, Rng, Sequential, Trainer,
};
use wgrad::{Device, Error, Tensor};

/// A small synthetic classification problem: the class is the quadrant of the first two
/// features' signs.
fn dataset(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let x: Vec<f32> = (0..8).map(|_| rng.normal()).collect();
        labels.push(u32::from(x[0] > 0.0) * 2 + u32::from(x[1] > 0.0));
        images.extend(x);
    }
    Dataset {
        images,
        labels,
        sample_shape: vec![2, 4],
        classes: 4,
    }
}

fn model(dev: &Device) -> Sequential {
    let mut rng = Rng::new(5);
    Sequential::new()
        .add(Flatten)
        .add(Dense::new(dev, 8, 16, &mut rng).unwrap())
        .add(BatchNorm::new_1d(dev, 16, NormConfig::default()).unwrap())
        .add(Activation::Relu)
        .add(Dropout::new(0.3, 9))
        .add(Dense::new(dev, 16, 4, &mut rng).unwrap())
}

fn options(epochs: usize, dir: Option<&std::path::Path>, resume: bool) -> FitOptions {
    FitOptions {
        epochs,
        batch_size: 16,
        seed: 3,
        quiet: true,
        verbose: false,
        checkpoint_dir: dir.map(|d| d.to_path_buf()),
        resume,
        ..Default::default()
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-trainer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn losses(h: &wgrad::nn::History) -> Vec<(f64, f64, Option<f64>)> {
    h.epochs
        .iter()
        .map(|e| (e.train_loss, e.train_accuracy, e.val_loss))
        .collect()
}

fn kill_and_resume(dev: &Device) {
    let (train, val) = (dataset(100, 1), dataset(40, 2));
    // Three epochs straight.
    let m = model(dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let straight = Trainer::new(&m, &mut opt, dev)
        .with_options(options(3, None, false))
        .fit(&train, Some(&val))
        .unwrap();

    // Two epochs with checkpoints; the process "dies" (everything is dropped).
    let dir = temp_dir(&format!("resume-{}", dev.is_gpu()));
    {
        let m = model(dev);
        let mut opt = Adam::new(m.parameters(), 1e-2);
        Trainer::new(&m, &mut opt, dev)
            .with_options(options(2, Some(&dir), false))
            .fit(&train, Some(&val))
            .unwrap();
    }
    // A new process builds a fresh model (other weights) and resumes to three epochs.
    let mut rng = Rng::new(77);
    let m = model(dev);
    for p in m.parameters() {
        let noise: Vec<f32> = (0..p.numel()).map(|_| rng.normal()).collect();
        p.assign(&Tensor::from_slice(dev, &noise, p.shape()).unwrap())
            .unwrap();
    }
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let resumed = Trainer::new(&m, &mut opt, dev)
        .with_options(options(3, Some(&dir), true))
        .fit(&train, Some(&val))
        .unwrap();
    assert_eq!(losses(&resumed), losses(&straight), "{}", dev.name());
    assert!(dir.join("epoch-0003.safetensors").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resuming_after_a_kill_reproduces_the_uninterrupted_run() {
    kill_and_resume(&wgrad::cpu());
    if let Some(g) = gpu() {
        kill_and_resume(&g);
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dev = wgrad::cpu();
    let (train, val) = (dataset(64, 1), dataset(32, 2));
    let dir = temp_dir("damaged");
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    Trainer::new(&m, &mut opt, &dev)
        .with_options(options(2, Some(&dir), false))
        .fit(&train, Some(&val))
        .unwrap();
    std::fs::write(dir.join("epoch-0002.safetensors"), b"half a file").unwrap();
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let h = Trainer::new(&m, &mut opt, &dev)
        .with_options(options(2, Some(&dir), true))
        .fit(&train, Some(&val))
        .unwrap();
    assert_eq!(
        h.epochs.len(),
        2,
        "epoch 2 was trained again from epoch 1's checkpoint"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn fifty_steps(dev: &Device) -> Vec<f32> {
    let m = model(dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let data = dataset(50 * 8, 4);
    wgrad::nn::DataLoader::new(&data, 8)
        .shuffled(1)
        .epoch(0)
        .map(|b| {
            let (x, y) = b.to_device(dev).unwrap();
            let loss = wgrad::cross_entropy(&m.forward(&x), &y);
            opt.step_with(&loss.backward(), &[&loss]).unwrap();
            loss.item().unwrap()
        })
        .collect()
}

#[test]
fn the_same_seed_gives_bit_identical_losses_over_50_steps() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let a = fifty_steps(&dev);
        let b = fifty_steps(&dev);
        assert_eq!(a.len(), 50);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn evaluating_leaves_the_model_in_the_mode_it_was_in() {
    let dev = wgrad::cpu();
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let data = dataset(20, 4);
    for training in [false, true] {
        m.set_training(training);
        let trainer = Trainer::new(&m, &mut opt, &dev).with_options(options(1, None, false));
        let first = trainer.evaluate(&data).unwrap().loss;
        assert_eq!(m.is_training(), training);
        // Evaluation itself runs without dropout or batch statistics: the same loss twice.
        assert_eq!(trainer.evaluate(&data).unwrap().loss, first);
    }
}

#[test]
fn data_that_does_not_fit_the_model_is_an_error_naming_the_layer_and_shapes() {
    let dev = wgrad::cpu();
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let mut wrong = dataset(10, 1);
    wrong.sample_shape = vec![3, 3];
    wrong.images = vec![0.0; 90];
    let e = Trainer::new(&m, &mut opt, &dev)
        .with_options(options(1, None, false))
        .fit(&wrong, None)
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Data(_)), "{msg}");
    assert!(
        msg.contains("Dense(8 -> 16)") && msg.contains("[10, 9]") && msg.contains("[10, 3, 3]"),
        "{msg}"
    );
}

#[test]
fn check_finite_stops_at_the_first_nan_and_names_the_parameter() {
    let dev = wgrad::cpu();
    let train = dataset(64, 1);
    let dir = temp_dir("finite");
    let m = model(&dev);
    let mut opt = Adam::new(m.parameters(), 1e-2);
    Trainer::new(&m, &mut opt, &dev)
        .with_options(options(1, Some(&dir), false))
        .fit(&train, None)
        .unwrap();
    // The run resumes, and its loss turns NaN at the first step of epoch 2 (step 5).
    let mut o = options(2, Some(&dir), true);
    o.check_finite = true;
    let nan = Tensor::scalar(&dev, f32::NAN);
    let e = Trainer::new(&m, &mut opt, &dev)
        .with_loss(move |out, y| wgrad::cross_entropy(out, y) * &nan)
        .with_options(o)
        .fit(&train, None)
        .unwrap_err();
    assert!(matches!(e, Error::NonFinite { step: 5, .. }), "{e}");
    assert!(e.to_string().contains("the loss"), "{e}");
    assert!(
        dir.join("epoch-0001.safetensors").is_file(),
        "the last good checkpoint is kept"
    );
    assert!(!dir.join("epoch-0002.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();

    // A finite loss whose gradient is not: d/db (0 · √b) at b = 0 is 0 · ∞.
    let m = model(&dev);
    let bias = m.parameters()[1].clone();
    let mut opt = Adam::new(m.parameters(), 1e-2);
    let mut o = options(1, None, false);
    o.check_finite = true;
    let e = Trainer::new(&m, &mut opt, &dev)
        .with_loss(move |out, y| wgrad::cross_entropy(out, y) + bias.sqrt().sum_all() * 0.0)
        .with_options(o)
        .fit(&train, None)
        .unwrap_err();
    assert!(
        e.to_string().contains("`1.bias`") && e.to_string().contains("step 1"),
        "{e}"
    );
}

#[test]
fn a_tensor_over_the_buffer_limit_is_an_error_with_size_and_limit() {
    let Some(dev) = gpu() else { return };
    let huge = Tensor::zeros(&dev, &[1 << 30, 8]);
    let e = huge.realize().unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::BufferTooLarge {
                bytes: 34359738368,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("34359738368") && msg.contains("limit"),
        "{msg}"
    );
}

/// `--check-finite` on the GPU: the finite check tests bits, so a NaN stops the run there
/// as it does on the CPU (a compiler may assume that `x != x` is false).
#[test]
fn check_finite_stops_a_nan_run_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let train = dataset(64, 1);
    let fit = |m: &Sequential, loss: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
        let mut opt = Adam::new(m.parameters(), 1e-2);
        let mut o = options(1, None, false);
        o.check_finite = true;
        let e = Trainer::new(m, &mut opt, &dev)
            .with_loss(loss)
            .with_options(o)
            .fit(&train, None)
            .unwrap_err();
        e
    };
    // A NaN weight: the loss is NaN.
    let m = model(&dev);
    let w = &m.parameters()[0];
    let mut v = w.to_vec().unwrap();
    v[3] = f32::NAN;
    w.assign(&Tensor::from_slice(&dev, &v, w.shape()).unwrap())
        .unwrap();
    let e = fit(&m, &|out, y| wgrad::cross_entropy(out, y));
    assert!(matches!(e, Error::NonFinite { step: 1, .. }), "{e}");
    assert!(e.to_string().contains("the loss"), "{e}");
    // A finite loss whose gradient is not: d/db (0 · √b) at b = 0 is 0 · ∞.
    let m = model(&dev);
    let bias = m.parameters()[1].clone();
    let e = fit(&m, &move |out, y| {
        wgrad::cross_entropy(out, y) + bias.sqrt().sum_all() * 0.0
    });
    assert!(
        e.to_string().contains("`1.bias`") && e.to_string().contains("step 1"),
        "{e}"
    );
}

/// What a new user might try: each is an error before training starts, naming the problem.
#[test]
fn bad_options_are_errors_before_training() {
    let dev = wgrad::cpu();
    let train = dataset(32, 1);
    let fit = |o: FitOptions, lr: f32, data: &Dataset, m: &Sequential| {
        let mut opt = Adam::new(m.parameters(), lr);
        let e = Trainer::new(m, &mut opt, &dev)
            .with_options(o)
            .fit(data, None)
            .unwrap_err();
        e.to_string()
    };
    let m = model(&dev);
    let mut o = options(1, None, false);
    o.batch_size = 0;
    assert!(fit(o, 1e-3, &train, &m).contains("batch size"));
    for lr in [-1.0, f32::NAN, f32::INFINITY] {
        let e = fit(options(1, None, false), lr, &train, &m);
        assert!(e.contains("learning rate"), "{e}");
    }
    let empty = Dataset {
        images: vec![],
        labels: vec![],
        sample_shape: vec![2, 4],
        classes: 4,
    };
    assert!(fit(options(1, None, false), 1e-3, &empty, &m).contains("empty"));
    // Two outputs for four classes.
    let narrow = Sequential::new()
        .add(Flatten)
        .add(Dense::new(&dev, 8, 2, &mut Rng::new(1)).unwrap());
    let e = fit(options(1, None, false), 1e-3, &train, &narrow);
    assert!(
        e.contains("2 outputs") && e.contains("labels up to 3"),
        "{e}"
    );
    // A step taken by hand checks the learning rate too.
    let mut opt = Adam::new(m.parameters(), -0.5);
    let x = Tensor::from_slice(&dev, &train.images[..16], &[2, 2, 4]).unwrap();
    let loss = m.forward(&x).sum_all();
    assert!(opt.step(&loss.backward()).is_err());
}

/// A checkpoint directory holding another run is refused (resume it or overwrite it), so
/// that a later resume never continues the wrong run; an interrupted write's temporary file
/// is removed on the next start.
#[test]
fn checkpoints_of_another_run_are_never_mixed_in() {
    let dev = wgrad::cpu();
    let train = dataset(48, 1);
    let dir = temp_dir("another-run");
    let run = |o: FitOptions, seed: u64| {
        let m = model(&dev);
        let mut opt = Adam::new(m.parameters(), 1e-2);
        let history = Trainer::new(&m, &mut opt, &dev)
            .with_options(FitOptions { seed, ..o })
            .fit(&train, None);
        history
    };
    run(options(3, Some(&dir), false), 1).unwrap();
    std::fs::write(dir.join(".epoch-0004.safetensors.tmp-12345"), b"partial").unwrap();
    let e = run(options(2, Some(&dir), false), 2)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&dir.display().to_string()) && e.contains("--overwrite"),
        "{e}"
    );
    assert!(!dir.join(".epoch-0004.safetensors.tmp-12345").exists());
    // Overwriting starts afresh: the old run's third epoch is gone, and resuming continues
    // the new run.
    let mut o = options(2, Some(&dir), false);
    o.overwrite = true;
    run(o, 2).unwrap();
    assert!(!dir.join("epoch-0003.safetensors").exists());
    let h = run(options(3, Some(&dir), true), 2).unwrap();
    assert_eq!(h.epochs.len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An embedding, an LSTM and one logit: the sentiment model in small.
struct TinySequenceModel {
    embedding: wgrad::nn::Embedding,
    lstm: wgrad::nn::Lstm,
    head: wgrad::nn::Dense,
}

impl wgrad::nn::Module for TinySequenceModel {
    fn forward(&self, ids: &Tensor) -> Tensor {
        let x = self.embedding.forward(ids);
        let (_, (h, _)) = self.lstm.forward_with(&x, None);
        let batch = ids.shape()[0];
        self.head.forward(&h.reshape(&[batch, 8])).reshape(&[batch])
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = self.embedding.named_parameters();
        all.extend(self.lstm.named_parameters());
        all.extend(self.head.named_parameters());
        all
    }
    fn describe(&self) -> String {
        "tiny sequence model".into()
    }
}

/// The trainer takes token sequences with 0/1 targets: BCE by default, and binary accuracy,
/// precision, recall and F1 on the validation data, which a learnable rule (does token 3
/// occur?) drives up.
#[test]
fn the_trainer_trains_on_sequences_with_binary_metrics() {
    use wgrad::nn::{Labelled, Padding, Sequences, Vocab};
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    let mut rng = Rng::new(9);
    let words = ["alpha", "beta", "gamma", "delta", "omega"];
    let texts: Vec<Labelled> = (0..160)
        .map(|_| {
            let n = 2 + rng.below(5);
            let picked: Vec<&str> = (0..n).map(|_| words[rng.below(5)]).collect();
            let label = picked.contains(&"omega") as u8 as f32;
            Labelled {
                text: picked.join(" "),
                label,
            }
        })
        .collect();
    let tokens: Vec<Vec<String>> = texts
        .iter()
        .map(|t| wgrad::nn::text::tokenize(&t.text))
        .collect();
    let vocab = Vocab::build(tokens.iter().map(|t| &t[..]), 1, None);
    let train = Sequences::new(&texts[..120], &vocab, 6, Padding::Pre);
    let val = Sequences::new(&texts[120..], &vocab, 6, Padding::Pre);
    for dev in &devices {
        let mut rng = Rng::new(1);
        let config = wgrad::nn::RnnConfig {
            batch_first: true,
            ..Default::default()
        };
        let model = TinySequenceModel {
            embedding: wgrad::nn::Embedding::new(dev, vocab.len(), 4, Some(0), &mut rng).unwrap(),
            lstm: wgrad::nn::Lstm::new(dev, 4, 8, config, &mut rng).unwrap(),
            head: wgrad::nn::Dense::new(dev, 8, 1, &mut rng).unwrap(),
        };
        let mut opt = Adam::new(model.parameters(), 0.05);
        let options = FitOptions {
            epochs: 12,
            batch_size: 16,
            quiet: true,
            verbose: false,
            ..Default::default()
        };
        let history = Trainer::new(&model, &mut opt, dev)
            .with_options(options)
            .fit(&train, Some(&val))
            .unwrap();
        let last = history.epochs.last().unwrap();
        assert!(
            last.val_accuracy.unwrap() >= 0.9,
            "{}: {last:?}",
            dev.name()
        );
        assert!(last.val_f1.unwrap() >= 0.85, "{}: {last:?}", dev.name());
        assert!(last.train_loss < history.epochs[0].train_loss);
    }
}

/// Any data can be trained on through `Samples`: here values (a regression, MSE by default,
/// no accuracy).
#[test]
fn the_trainer_fits_values() {
    struct Line;
    impl wgrad::nn::Samples for Line {
        fn len(&self) -> usize {
            64
        }
        fn batch(&self, device: &Device, picks: &[usize]) -> wgrad::Result<(Tensor, Tensor)> {
            let x: Vec<f32> = picks.iter().map(|&i| i as f32 / 32.0 - 1.0).collect();
            let y: Vec<f32> = x.iter().map(|v| 3.0 * v - 0.5).collect();
            Ok((
                Tensor::from_slice(device, &x, &[picks.len(), 1])?,
                Tensor::from_slice(device, &y, &[picks.len(), 1])?,
            ))
        }
        fn targets(&self) -> wgrad::nn::Targets {
            wgrad::nn::Targets::Values
        }
        fn input_shape(&self) -> Option<Vec<usize>> {
            Some(vec![1])
        }
    }
    let dev = wgrad::cpu();
    let model = Sequential::new().add(Dense::new(&dev, 1, 1, &mut Rng::new(2)).unwrap());
    let mut opt = Adam::new(model.parameters(), 0.1);
    let options = FitOptions {
        epochs: 60,
        batch_size: 16,
        quiet: true,
        verbose: false,
        ..Default::default()
    };
    let history = Trainer::new(&model, &mut opt, &dev)
        .with_options(options)
        .fit(&Line, Some(&Line))
        .unwrap();
    let last = history.epochs.last().unwrap();
    assert!(last.val_loss.unwrap() < 1e-3, "{last:?}");
    assert_eq!(last.val_accuracy, None);
}
