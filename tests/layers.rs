//! Normalisation layers, convolution layers and weights on disk.

mod common;

use common::*;
use wgrad::nn::{
    io, Activation, Adam, BatchNorm, Conv2d, ConvConfig, ConvTranspose2d, Dense, Flatten,
    GlobalAvgPool2d, LayerNorm, MaxPool2d, Module, NormConfig, Optimizer, Rng, Sequential,
};
use wgrad::{Device, Tensor};

#[test]
fn batch_norm_matches_cpu_in_training_mode() {
    let dev_free = |x: &[Tensor], make: &dyn Fn(&Device) -> BatchNorm| {
        let bn = make(x[0].device());
        // Non-trivial affine parameters so their gradients matter.
        let w = bn.weight.as_ref().unwrap();
        w.assign(&(w * 1.5 + 0.25)).unwrap();
        bn.forward(&x[0])
    };
    check("batch_norm_2d", 60, &[f(&[3, 4, 5, 4])], move |x| {
        dev_free(x, &|d| {
            BatchNorm::new_2d(d, 4, NormConfig::default()).unwrap()
        })
    });
    check("batch_norm_1d", 16, &[f(&[16, 5])], move |x| {
        dev_free(x, &|d| {
            BatchNorm::new_1d(d, 5, NormConfig::default()).unwrap()
        })
    });
    check("batch_norm_1d_seq", 21, &[f(&[3, 2, 7])], move |x| {
        dev_free(x, &|d| {
            BatchNorm::new_1d(d, 2, NormConfig::default()).unwrap()
        })
    });
}

/// Statistics and losses over more than 65,536 values: batch-norm over 128·26·26 = 86,528
/// values per channel, and a mean squared error over 500 MNIST-sized images.
#[test]
fn normalisation_and_losses_past_65536() {
    check(
        "batch_norm_2d_128x8x26x26",
        86_528,
        &[f(&[128, 8, 26, 26])],
        |x| {
            BatchNorm::new_2d(x[0].device(), 8, NormConfig::default())
                .unwrap()
                .forward(&x[0])
        },
    );
    check(
        "mse_500x784",
        392_000,
        &[f(&[500, 784]), f(&[500, 784])],
        |x| wgrad::mse_loss(&x[0], &x[1]),
    );
}

#[test]
fn batch_norm_running_statistics_follow_pytorch() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let bn = BatchNorm::new_1d(&dev, 2, NormConfig::default()).unwrap();
        // Channel 0: 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3); channel 1: constant 4.
        let x = Tensor::from_slice(&dev, &[1., 4., 2., 4., 3., 4., 6., 4.], &[4, 2]).unwrap();
        let y = bn.forward(&x).to_vec().unwrap();
        let expect0 = [(1.0 - 3.0), (2.0 - 3.0), 0.0, 3.0].map(|v: f32| v / (3.5f32 + 1e-5).sqrt());
        for (i, e) in expect0.iter().enumerate() {
            assert!((y[2 * i] - e).abs() < 1e-5, "{}: {y:?}", dev.name());
            assert_eq!(y[2 * i + 1], 0.0);
        }
        let rm = bn.running_mean().to_vec().unwrap();
        let rv = bn.running_var().to_vec().unwrap();
        assert!(
            (rm[0] - 0.3).abs() < 1e-6 && (rm[1] - 0.4).abs() < 1e-6,
            "{rm:?}"
        );
        assert!(
            (rv[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-5 && (rv[1] - 0.9).abs() < 1e-6,
            "{rv:?}"
        );
        // Evaluation uses the running statistics.
        bn.set_training(false);
        let e = bn.forward(&x).to_vec().unwrap();
        assert!(
            (e[0] - (1.0 - 0.3) / (rv[0] + 1e-5).sqrt()).abs() < 1e-5,
            "{e:?}"
        );
    }
}

#[test]
fn running_statistics_ride_along_with_the_optimizer_step() {
    let dev = wgrad::cpu();
    let bn = BatchNorm::new_1d(&dev, 3, NormConfig::default()).unwrap();
    let mut opt = Adam::new(bn.parameters(), 1e-2);
    let x = Tensor::from_slice(
        &dev,
        &(0..12).map(|v| v as f32).collect::<Vec<_>>(),
        &[4, 3],
    )
    .unwrap();
    for _ in 0..3 {
        let loss = bn.forward(&x).sum_all();
        opt.step_with(&loss.backward(), &[&loss]).unwrap();
        assert!(
            bn.running_mean().is_realized(),
            "the step computed the running mean"
        );
    }
    // mean of each column is 4.5 + c; after three updates: (1 - 0.9^3)·mean
    let rm = bn.running_mean().to_vec().unwrap();
    assert!((rm[0] - 0.271 * 4.5).abs() < 1e-5, "{rm:?}");
}

#[test]
fn layer_norm_matches_cpu_and_finite_differences() {
    let make = |x: &[Tensor]| {
        let ln = LayerNorm::new(x[0].device(), &[3, 4], NormConfig::default()).unwrap();
        let w = ln.weight.as_ref().unwrap();
        w.assign(&(w * 0.5 + 0.1)).unwrap();
        ln.forward(&x[0])
    };
    check("layer_norm", 12, &[f(&[2, 3, 4])], make);
    gradcheck("layer_norm", &[f(&[2, 2, 3])], |x| {
        LayerNorm::new(x[0].device(), &[3], NormConfig::default())
            .unwrap()
            .forward(&x[0])
    });
    gradcheck("batch_norm", &[f(&[4, 3])], |x| {
        BatchNorm::new_1d(x[0].device(), 3, NormConfig::default())
            .unwrap()
            .forward(&x[0])
    });
}

fn small_cnn(dev: &Device, seed: u64) -> Sequential {
    let mut rng = Rng::new(seed);
    Sequential::new()
        .add(
            Conv2d::new(
                dev,
                1,
                4,
                [3, 3],
                &mut rng,
                ConvConfig {
                    padding: [1, 1],
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .add(BatchNorm::new_2d(dev, 4, NormConfig::default()).unwrap())
        .add(Activation::Relu)
        .add(MaxPool2d::new(2))
        .add(
            ConvTranspose2d::new(
                dev,
                4,
                3,
                [2, 2],
                &mut rng,
                ConvConfig {
                    stride: [2, 2],
                    ..Default::default()
                },
            )
            .unwrap(),
        )
        .add(GlobalAvgPool2d)
        .add(Flatten)
        .add(Dense::new(dev, 3, 2, &mut rng).unwrap())
}

fn batch(dev: &Device, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..6 * 36).map(|_| rng.normal()).collect();
    let y: Vec<u32> = (0..6).map(|_| rng.below(2) as u32).collect();
    (
        Tensor::from_slice(dev, &x, &[6, 1, 6, 6]).unwrap(),
        Tensor::from_u32(dev, &y, &[6]).unwrap(),
    )
}

fn train_steps(
    model: &Sequential,
    opt: &mut Adam,
    dev: &Device,
    seeds: std::ops::Range<u64>,
) -> Vec<f32> {
    seeds
        .map(|s| {
            let (x, y) = batch(dev, s);
            let loss = wgrad::cross_entropy(&model.forward(&x), &y);
            opt.step_with(&loss.backward(), &[&loss]).unwrap();
            loss.item().unwrap()
        })
        .collect()
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wgrad-test-{}-{name}", std::process::id()))
}

#[test]
fn save_then_load_gives_identical_predictions_and_resumes_training() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let model = small_cnn(&dev, 1);
        let mut opt = Adam::new(model.parameters(), 1e-2);
        train_steps(&model, &mut opt, &dev, 0..3);
        let path = temp(&format!("roundtrip-{}.safetensors", dev.is_gpu()));
        io::save(&path, &model, Some(&opt)).unwrap();

        let (x, _) = batch(&dev, 99);
        model.eval();
        let before = wgrad::no_grad(|| model.forward(&x)).to_vec().unwrap();
        model.train();
        let continued = train_steps(&model, &mut opt, &dev, 3..5);

        // A fresh model with other weights, loaded from the file, predicts and trains the same.
        let other = small_cnn(&dev, 2);
        let mut other_opt = Adam::new(other.parameters(), 1e-2);
        io::load(&path, &other, Some(&mut other_opt)).unwrap();
        other.eval();
        let after = wgrad::no_grad(|| other.forward(&x)).to_vec().unwrap();
        assert_eq!(before, after, "{}", dev.name());
        other.train();
        let resumed = train_steps(&other, &mut other_opt, &dev, 3..5);
        assert_eq!(continued, resumed, "{}", dev.name());
        std::fs::remove_file(&path).unwrap();
    }
}

/// Builds a safetensors file by hand: `(name, dtype, shape, bytes)`.
fn raw_safetensors(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut offset = 0;
    for (i, (name, dtype, shape, bytes)) in tensors.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + bytes.len()
        ));
        offset += bytes.len();
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    for (_, _, _, b) in tensors {
        out.extend(b);
    }
    out
}

#[test]
fn bad_weight_files_are_named_errors() {
    let dev = wgrad::cpu();
    let mut rng = Rng::new(0);
    let model = Sequential::new().add(Dense::new(&dev, 3, 2, &mut rng).unwrap());
    let good = |n: usize| vec![0u8; 4 * n];
    let cases: Vec<(Vec<u8>, Vec<&str>)> = vec![
        (
            raw_safetensors(&[("0.weight", "F32", vec![2, 3], good(6))]),
            vec!["`0.bias`", "missing", "[2]"],
        ),
        (
            raw_safetensors(&[
                ("0.weight", "F32", vec![3, 2], good(6)),
                ("0.bias", "F32", vec![2], good(2)),
            ]),
            vec!["`0.weight`", "[3, 2]", "[2, 3]"],
        ),
        (
            raw_safetensors(&[
                ("0.weight", "F64", vec![2, 3], vec![0; 48]),
                ("0.bias", "F32", vec![2], good(2)),
            ]),
            vec!["`0.weight`", "F64"],
        ),
        (
            raw_safetensors(&[
                ("0.weight", "F32", vec![2, 3], good(6)),
                ("0.bias", "F32", vec![2], good(2)),
                ("1.weight", "F32", vec![4], good(4)),
            ]),
            vec!["`1.weight`", "[4]"],
        ),
    ];
    let path = temp("bad.safetensors");
    let original = model.parameters()[0].to_vec().unwrap();
    for (bytes, wants) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let e = io::load(&path, &model, None).unwrap_err().to_string();
        for w in wants {
            assert!(
                e.contains(w) && e.contains("bad.safetensors"),
                "{e} (wanted {w})"
            );
        }
        assert_eq!(
            model.parameters()[0].to_vec().unwrap(),
            original,
            "a failed load changed the model"
        );
    }
    // Corrupt and truncated files.
    let valid = raw_safetensors(&[
        ("0.weight", "F32", vec![2, 3], good(6)),
        ("0.bias", "F32", vec![2], good(2)),
    ]);
    std::fs::write(&path, &valid).unwrap();
    io::load(&path, &model, None).expect("a well-formed file loads");
    for bad in [
        valid[..valid.len() - 3].to_vec(),
        valid[..5].to_vec(),
        b"not a weights file at all".to_vec(),
        vec![],
    ] {
        std::fs::write(&path, &bad).unwrap();
        let e = io::load(&path, &model, None).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
    }
    let e = io::load(temp("missing.safetensors"), &model, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// Upsampling as PyTorch's `nn.Upsample` (nearest; bilinear with half-pixel centres and
/// clamped edges), against a host implementation, with gradients GPU against CPU.
#[test]
fn upsample_nearest_and_bilinear() {
    use wgrad::nn::{Upsample, UpsampleMode};
    let (n, c, h, w, s) = (2, 3, 3, 4, 2);
    let mut rng = wgrad::nn::Rng::new(3);
    let x: Vec<f32> = (0..n * c * h * w).map(|_| rng.range(-1.0, 1.0)).collect();
    let host = |mode: UpsampleMode| -> Vec<f32> {
        let src = |o: usize, size: usize| -> (usize, usize, f32) {
            match mode {
                UpsampleMode::Nearest => (o / s, o / s, 0.0),
                UpsampleMode::Bilinear => {
                    let f = ((o as f32 + 0.5) / s as f32 - 0.5).max(0.0);
                    let i0 = (f.floor() as usize).min(size - 1);
                    (i0, (i0 + 1).min(size - 1), f - i0 as f32)
                }
            }
        };
        let mut out = Vec::new();
        for plane in 0..n * c {
            for oy in 0..h * s {
                for ox in 0..w * s {
                    let (y0, y1, wy) = src(oy, h);
                    let (x0, x1, wx) = src(ox, w);
                    let at = |y: usize, xx: usize| x[plane * h * w + y * w + xx];
                    out.push(
                        (1.0 - wy) * ((1.0 - wx) * at(y0, x0) + wx * at(y0, x1))
                            + wy * ((1.0 - wx) * at(y1, x0) + wx * at(y1, x1)),
                    );
                }
            }
        }
        out
    };
    let mut devices = vec![wgrad::cpu()];
    devices.extend(common::gpu());
    for mode in [UpsampleMode::Nearest, UpsampleMode::Bilinear] {
        let want = host(mode);
        let mut grads = Vec::new();
        for dev in &devices {
            let t = Tensor::param(dev, &x, &[n, c, h, w]).unwrap();
            let y = Upsample::new(s, mode).forward(&t);
            assert_eq!(y.shape(), &[n, c, h * s, w * s]);
            let got = y.to_vec().unwrap();
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 1e-5,
                    "{mode:?} on {}: element {i} is {g}, want {e}",
                    dev.name()
                );
            }
            let weights: Vec<f32> = (0..y.numel()).map(|i| (i % 7) as f32 - 3.0).collect();
            let wt = Tensor::from_slice(dev, &weights, y.shape()).unwrap();
            grads.push((&y * &wt).sum_all().backward().wrt(&t).to_vec().unwrap());
        }
        // Every input's gradient: the weights of the outputs reading it.
        for g in &grads[1..] {
            for (a, b) in g.iter().zip(&grads[0]) {
                assert!(
                    (a - b).abs() < 1e-4,
                    "{mode:?}: gradient {a} against the CPU's {b}"
                );
            }
        }
        if mode == UpsampleMode::Nearest {
            // Each input pixel is read by a 2×2 block of outputs.
            let total: f32 = grads[0].iter().sum();
            let all: f32 = (0..n * c * h * s * w * s)
                .map(|i| (i % 7) as f32 - 3.0)
                .sum();
            assert!((total - all).abs() < 1e-3);
        }
    }
}
