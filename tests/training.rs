//! Training end to end: GPU and CPU agree step by step, optimizers follow PyTorch's update
//! rules, and the XOR network learns XOR.

mod common;

use common::gpu;
use wgrad::nn::{
    Activation, Adam, AdamConfig, Dense, Dropout, Init, Module, Optimizer, RmsProp, RmsPropConfig,
    Rng, Sequential, Sgd, SgdConfig,
};
use wgrad::{Device, MemoryStats, Tensor};

fn mlp(dev: &Device, seed: u64) -> Sequential {
    let mut rng = Rng::new(seed);
    Sequential::new()
        .add(Dense::new(dev, 20, 16, &mut rng).unwrap())
        .add(Activation::Relu)
        .add(Dropout::new(0.2, 5))
        .add(Dense::new(dev, 16, 5, &mut rng).unwrap())
}

/// 20 Adam steps of a small MLP with dropout on random data: the losses on the GPU and on
/// the CPU backend agree at every step.
fn losses(dev: &Device) -> Vec<f32> {
    let model = mlp(dev, 3);
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let mut rng = Rng::new(11);
    let mut out = Vec::new();
    for _ in 0..20 {
        let x: Vec<f32> = (0..32 * 20).map(|_| rng.normal()).collect();
        let y: Vec<u32> = (0..32).map(|_| rng.below(5) as u32).collect();
        let x = Tensor::from_slice(dev, &x, &[32, 20]).unwrap();
        let y = Tensor::from_u32(dev, &y, &[32]).unwrap();
        let loss = wgrad::cross_entropy(&model.forward(&x), &y);
        let grads = loss.backward();
        opt.step_with(&grads, &[&loss]).unwrap();
        out.push(loss.item().unwrap());
    }
    out
}

#[test]
fn mlp_losses_agree_between_gpu_and_cpu_for_20_steps() {
    let Some(gpu) = gpu() else { return };
    let g = losses(&gpu);
    let c = losses(&wgrad::cpu());
    for (step, (a, b)) in g.iter().zip(&c).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 + 1e-3 * b.abs(),
            "step {step}: gpu {a} vs cpu {b}\n{g:?}\n{c:?}"
        );
    }
    assert!(c[19] < c[0], "training did not reduce the loss: {c:?}");
}

/// Runs `steps` updates of `opt` on the objective `Σ c·p + ½ Σ p²` (gradient `c + p`) and
/// returns the parameter values after each step.
fn trajectory(
    dev: &Device,
    make: &dyn Fn(Vec<Tensor>) -> Box<dyn Optimizer>,
    steps: usize,
) -> Vec<Vec<f32>> {
    let p = Tensor::param(dev, &[0.5, -1.0, 2.0], &[3]).unwrap();
    let c = Tensor::from_slice(dev, &[0.3, -0.2, 0.1], &[3]).unwrap();
    let mut opt = make(vec![p.clone()]);
    (0..steps)
        .map(|_| {
            let loss = (&p * &c).sum_all() + (&p * &p).sum_all() * 0.5;
            opt.step(&loss.backward()).unwrap();
            p.to_vec().unwrap()
        })
        .collect()
}

/// The same updates written out on the host from PyTorch's documented algorithms.
fn reference(kind: &str, steps: usize) -> Vec<Vec<f32>> {
    let mut p = [0.5f64, -1.0, 2.0];
    let c = [0.3f64, -0.2, 0.1];
    let (mut s1, mut s2, mut s3) = ([0f64; 3], [0f64; 3], [0f64; 3]);
    let mut out = Vec::new();
    for t in 1..=steps {
        for i in 0..3 {
            let mut g = c[i] + p[i];
            match kind {
                "sgd_momentum_nesterov_wd" => {
                    let (lr, mu, wd) = (0.1, 0.9, 0.01);
                    g += wd * p[i];
                    s1[i] = if t == 1 { g } else { mu * s1[i] + g };
                    p[i] -= lr * (g + mu * s1[i]);
                }
                "sgd_dampened" => {
                    let (lr, mu, damp) = (0.1, 0.5, 0.3);
                    s1[i] = if t == 1 {
                        g
                    } else {
                        mu * s1[i] + (1.0 - damp) * g
                    };
                    p[i] -= lr * s1[i];
                }
                "adam" | "adamw" => {
                    let (lr, b1, b2, eps) = (0.05, 0.9, 0.999, 1e-8);
                    if kind == "adamw" {
                        p[i] *= 1.0 - lr * 0.1;
                        g = c[i] + p[i] / (1.0 - lr * 0.1); // gradient taken before the decay
                    }
                    s1[i] = b1 * s1[i] + (1.0 - b1) * g;
                    s2[i] = b2 * s2[i] + (1.0 - b2) * g * g;
                    let m_hat = s1[i] / (1.0 - b1.powi(t as i32));
                    let v_hat = s2[i] / (1.0 - b2.powi(t as i32));
                    p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
                }
                "rmsprop_centered_momentum" => {
                    let (lr, alpha, eps, mu) = (0.01, 0.99, 1e-8, 0.9);
                    s1[i] = alpha * s1[i] + (1.0 - alpha) * g * g;
                    s2[i] = alpha * s2[i] + (1.0 - alpha) * g;
                    let avg = (s1[i] - s2[i] * s2[i]).sqrt() + eps;
                    s3[i] = mu * s3[i] + g / avg;
                    p[i] -= lr * s3[i];
                }
                _ => unreachable!(),
            }
        }
        out.push(p.iter().map(|&v| v as f32).collect());
    }
    out
}

/// Device memory as PyTorch reports it: bytes in use fall when tensors drop, bytes held stay
/// until `empty_cache` hands the free buffers back (or submissions stop taking them), and
/// training after that gives the same numbers as before it.
#[test]
fn memory_is_counted_and_the_cache_empties() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let name = dev.name();
        let gpu = dev.is_gpu();
        assert_eq!(dev.memory(), MemoryStats::default(), "{name}: a new device");
        // 1,000 values: 4,000 bytes, held by the GPU pool in a buffer of its 4,096-byte class.
        let held = if gpu { 4096 } else { 4000 };
        let t = Tensor::from_slice(dev, &[0.5; 1000], &[1000]).unwrap();
        let m = dev.memory();
        assert_eq!(m.allocated, held, "{name}: {m:?}");
        drop(t);
        let m = dev.memory();
        assert_eq!(m.allocated, 0, "{name}: {m:?}");
        assert_eq!(m.reserved, if gpu { held } else { 0 }, "{name}: {m:?}");
        assert!(m.peak_allocated >= held, "{name}: {m:?}");

        let first = losses(dev);
        let used = dev.memory();
        assert!(used.peak_allocated > held, "{name}: {used:?}");
        dev.empty_cache().unwrap();
        let emptied = dev.memory();
        assert_eq!(emptied.reserved, emptied.allocated, "{name}: {emptied:?}");
        if gpu {
            assert!(emptied.reserved < used.reserved, "{name}: {emptied:?}");
        }
        // Training on fresh buffers gives the same losses, bit for bit.
        assert_eq!(losses(dev), first, "{name}");
    }
}

#[test]
fn optimizers_follow_pytorch_update_rules() {
    type Make = Box<dyn Fn(Vec<Tensor>) -> Box<dyn Optimizer>>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "sgd_momentum_nesterov_wd",
            Box::new(|p| {
                let cfg = SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    weight_decay: 0.01,
                    nesterov: true,
                    ..Default::default()
                };
                Box::new(Sgd::with_config(p, cfg)) as Box<dyn Optimizer>
            }),
        ),
        (
            "sgd_dampened",
            Box::new(|p| {
                let cfg = SgdConfig {
                    lr: 0.1,
                    momentum: 0.5,
                    dampening: 0.3,
                    ..Default::default()
                };
                Box::new(Sgd::with_config(p, cfg))
            }),
        ),
        ("adam", Box::new(|p| Box::new(Adam::new(p, 0.05)))),
        (
            "adamw",
            Box::new(|p| {
                Box::new(Adam::with_config(
                    p,
                    AdamConfig {
                        lr: 0.05,
                        weight_decay: 0.1,
                        ..AdamConfig::adamw()
                    },
                ))
            }),
        ),
        (
            "rmsprop_centered_momentum",
            Box::new(|p| {
                let cfg = RmsPropConfig {
                    lr: 0.01,
                    momentum: 0.9,
                    centered: true,
                    ..Default::default()
                };
                Box::new(RmsProp::with_config(p, cfg))
            }),
        ),
    ];
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        for (name, make) in &cases {
            let got = trajectory(dev, make.as_ref(), 6);
            let want = reference(name, 6);
            for (step, (g, w)) in got.iter().zip(&want).enumerate() {
                for (a, b) in g.iter().zip(w) {
                    assert!(
                        (a - b).abs() < 1e-5 + 1e-4 * b.abs(),
                        "{name} on {} step {step}: {g:?} vs {w:?}",
                        dev.name()
                    );
                }
            }
        }
    }
}

#[test]
fn defaults_match_pytorch() {
    let a = AdamConfig::default();
    assert_eq!(
        (a.lr, a.beta1, a.beta2, a.eps, a.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 0.0)
    );
    let w = AdamConfig::adamw();
    assert!(w.decoupled && w.weight_decay == 1e-2);
    let r = RmsPropConfig::default();
    assert_eq!(
        (r.lr, r.alpha, r.eps, r.momentum, r.centered),
        (1e-2, 0.99, 1e-8, 0.0, false)
    );
    let s = SgdConfig::default();
    assert_eq!(
        (s.momentum, s.dampening, s.weight_decay, s.nesterov),
        (0.0, 0.0, 0.0, false)
    );
}

#[test]
fn dropout_is_identity_in_eval_and_scales_in_training() {
    let dev = wgrad::cpu();
    let d = Dropout::new(0.25, 9);
    let x = Tensor::ones(&dev, &[1000]);
    let y = d.forward(&x).to_vec().unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!((700..800).contains(&kept), "kept {kept} of 1000");
    let y2 = d.forward(&x).to_vec().unwrap();
    assert_ne!(y, y2, "a new mask every call");
    d.set_training(false);
    assert_eq!(d.forward(&x).to_vec().unwrap(), vec![1.0; 1000]);
}

#[test]
fn xor_network_learns_xor_on_the_cpu() {
    let dev = wgrad::cpu();
    let x = Tensor::from_slice(&dev, &[0., 0., 0., 1., 1., 0., 1., 1.], &[4, 2]).unwrap();
    let y = Tensor::from_slice(&dev, &[0., 1., 1., 0.], &[4, 1]).unwrap();
    let mut rng = Rng::new(1);
    let w1 = Tensor::param(&dev, &Init::Normal(1.0).sample(&mut rng, 0, 0, 6), &[2, 3]).unwrap();
    let b1 = Tensor::param(&dev, &[0.0; 3], &[3]).unwrap();
    let w2 = Tensor::param(&dev, &Init::Normal(1.0).sample(&mut rng, 0, 0, 3), &[3, 1]).unwrap();
    let b2 = Tensor::param(&dev, &[0.0], &[1]).unwrap();
    let mut opt = Sgd::new(vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()], 0.1);
    let forward = || (x.matmul(&w1) + &b1).sigmoid().matmul(&w2) + &b2;
    for _ in 0..10_000 {
        let loss = wgrad::bce_with_logits(&forward(), &y);
        opt.step(&loss.backward()).unwrap();
    }
    let p: Vec<f32> = forward()
        .sigmoid()
        .to_vec()
        .unwrap()
        .iter()
        .map(|v| v.round())
        .collect();
    assert_eq!(p, vec![0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn an_adapter_index_counts_among_the_best_kind_and_wraps_around() {
    let Some(dev) = common::gpu() else { return };
    // One adapter of the best kind here: every index wraps to it (as the eighth rank on a
    // machine with one GPU would).
    let opts = wgrad::device::AdapterOptions {
        name: None,
        backend: None,
        index: Some(7),
    };
    let ctx = wgrad::device::Context::with_options(&opts).expect("an adapter");
    assert!(
        dev.name().starts_with(&ctx.info.name),
        "{} against {}",
        dev.name(),
        ctx.info.name
    );
}

#[test]
fn an_unknown_adapter_is_a_clear_error_and_the_default_falls_back_to_cpu() {
    let opts = wgrad::device::AdapterOptions {
        name: Some("no-such-adapter-xyz".into()),
        backend: None,
        index: None,
    };
    let err = wgrad::device::Context::with_options(&opts)
        .err()
        .expect("no adapter has that name");
    assert!(err.to_string().contains("no-such-adapter-xyz"), "{err}");
    let bad = wgrad::device::AdapterOptions {
        name: None,
        backend: Some("glide".into()),
        index: None,
    };
    let err = wgrad::device::Context::with_options(&bad)
        .err()
        .expect("unknown backend");
    assert!(
        err.to_string().contains("vulkan, metal, dx12 or gl"),
        "{err}"
    );
    let dev = wgrad::default_device_with(&opts);
    assert!(!dev.is_gpu());
    assert_eq!(Tensor::ones(&dev, &[2]).to_vec().unwrap(), vec![1.0, 1.0]);
}

/// A device an application opened itself, on the default adapter.
fn application_device() -> (
    wgrad::device::wgpu::Device,
    wgrad::device::wgpu::Queue,
    wgrad::device::wgpu::AdapterInfo,
) {
    use wgrad::device::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("an adapter exists, since gpu() found one");
    let info = adapter.get_info();
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    (device, queue, info)
}

/// An application that already owns a wgpu device hands it to wgrad.
#[test]
fn runs_on_an_application_supplied_wgpu_device() {
    if gpu().is_none() {
        return;
    }
    use wgrad::device::wgpu;
    let (device, queue, info) = application_device();
    let ctx = wgrad::device::Context::from_wgpu(device, queue, info);
    let dev = wgrad::device::GpuBackend::device_on(ctx.clone());
    let x = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(x.matmul(&x).to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    // The application keeps using its device alongside wgrad.
    let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application buffer"),
        size: 16,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.queue.write_buffer(&buffer, 0, &[0u8; 16]);
}

/// An application's uncaptured-error handler stays its own: the application's errors go to
/// it, and never become the error of wgrad's next, unrelated read.
#[test]
fn an_application_keeps_its_error_handler() {
    if gpu().is_none() {
        return;
    }
    use std::sync::{Arc, Mutex};
    use wgrad::device::wgpu;
    let (device, queue, info) = application_device();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
        sink.lock().unwrap().push(e.to_string());
    }));
    let ctx = wgrad::device::Context::from_wgpu(device, queue, info);
    let dev = wgrad::device::GpuBackend::device_on(ctx.clone());
    let x = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    assert_eq!(x.matmul(&x).to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    // The application's own mistake: a mappable buffer cannot also be a storage buffer.
    let _bad = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("application's invalid buffer"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the application sees its error"
    );
    // wgrad's next work is unaffected, and wgrad's own work reaches no application handler.
    let y = (x.matmul(&x) + 1.0).relu().sum_all();
    assert_eq!(y.item().unwrap(), 58.0);
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
}

/// Gradient clipping as PyTorch's `clip_grad_norm_` and `clip_grad_value_`, against
/// hand-computed values on every backend.
#[test]
fn gradients_clip_by_total_norm_and_by_value() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let a = Tensor::param(dev, &[1.0, 1.0], &[2]).unwrap();
        let b = Tensor::param(dev, &[1.0], &[1]).unwrap();
        let loss = || {
            let wa = Tensor::from_slice(dev, &[3.0, -4.0], &[2]).unwrap();
            let wb = Tensor::from_slice(dev, &[12.0], &[1]).unwrap();
            (&a * &wa).sum_all() + (&b * &wb).sum_all()
        };
        // Gradients [3, -4] and [12]: total norm 13.
        let mut grads = loss().backward();
        let norm = wgrad::nn::clip_grad_norm(&mut grads, &[a.clone(), b.clone()], 6.5);
        assert!((norm.item().unwrap() - 13.0).abs() < 1e-4);
        let scale = 6.5 / (13.0 + 1e-6);
        let ga = grads.wrt(&a).to_vec().unwrap();
        let gb = grads.wrt(&b).to_vec().unwrap();
        for (g, w) in ga
            .iter()
            .chain(&gb)
            .zip([3.0 * scale, -4.0 * scale, 12.0 * scale])
        {
            assert!((g - w).abs() < 1e-5, "{g} against {w}");
        }
        // Under the limit: unchanged.
        let mut grads = loss().backward();
        wgrad::nn::clip_grad_norm(&mut grads, &[a.clone(), b.clone()], 100.0);
        assert_eq!(grads.wrt(&a).to_vec().unwrap(), [3.0, -4.0]);
        let mut grads = loss().backward();
        wgrad::nn::clip_grad_value(&mut grads, &[a.clone(), b.clone()], 3.5);
        assert_eq!(grads.wrt(&a).to_vec().unwrap(), [3.0, -3.5]);
        assert_eq!(grads.wrt(&b).to_vec().unwrap(), [3.5]);
    }
}

/// Binary accuracy, precision, recall and F1 at 0.5, against hand-counted values.
#[test]
fn binary_metrics_count_on_every_backend() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        // Logits > 0 predict 1: predictions 1, 1, 0, 0, 1 against targets 1, 0, 0, 1, 1.
        let logits = Tensor::from_slice(dev, &[2.0, 0.5, -1.0, -0.1, 3.0], &[5]).unwrap();
        let targets = Tensor::from_slice(dev, &[1.0, 0.0, 0.0, 1.0, 1.0], &[5]).unwrap();
        let mut counts = wgrad::nn::BinaryCounts::default();
        counts.add(&logits, &targets).unwrap();
        assert_eq!(
            (
                counts.true_positive,
                counts.false_positive,
                counts.true_negative,
                counts.false_negative
            ),
            (2, 1, 1, 1)
        );
        assert!((counts.accuracy() - 0.6).abs() < 1e-12);
        assert!((counts.precision() - 2.0 / 3.0).abs() < 1e-12);
        assert!((counts.recall() - 2.0 / 3.0).abs() < 1e-12);
        assert!((counts.f1() - 2.0 / 3.0).abs() < 1e-12);
    }
}

#[test]
fn binary_counts_read_column_logits_and_refuse_other_counts() {
    let dev = wgrad::cpu();
    let logits = Tensor::from_slice(&dev, &[2.0, -1.0, 0.5], &[3, 1]).unwrap();
    let targets = Tensor::from_slice(&dev, &[1.0, 1.0, 0.0], &[3]).unwrap();
    let mut counts = wgrad::nn::BinaryCounts::default();
    counts.add(&logits, &targets).unwrap();
    assert_eq!(
        (
            counts.true_positive,
            counts.false_negative,
            counts.false_positive
        ),
        (1, 1, 1)
    );
    let wrong = Tensor::from_slice(&dev, &[2.0, -1.0], &[2]).unwrap();
    assert!(counts.add(&wrong, &targets).is_err());
}
