//! Measured kernel choices: a product's shape class is measured once, kept on disk and read
//! back by the next context (which measures nothing), `WGRAD_AUTOTUNE=0` measures nothing,
//! and every candidate kernel, pinned, gives the CPU backend's values. One test, since it
//! sets the environment the contexts read.

mod common;

use std::sync::Arc;

use common::{kernels_ran, watched};
use wgrad::graph::Conv2dSpec;
use wgrad::{Device, Tensor};
use wgrad_device::{AdapterOptions, Context, GpuBackend};

/// A fresh context, or None (and a skip line) without an adapter.
fn context() -> Option<Arc<Context>> {
    match Context::with_options(&AdapterOptions::from_env()) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// Two plain products of 512³, one of several dispatches whose rows and columns end inside a
/// block (B stored plainly and transposed), products with NaN (a quiet NaN with a payload,
/// from its bits) and infinities in A and B, a batched one whose edges cut every tile, one
/// whose k is split, and a convolution's weight gradient, whose products store strided, on
/// `dev`, against the CPU backend (NaN where it has NaN, the same infinities).
fn products_match_cpu(dev: &Device, what: &str) {
    let cpu = wgrad::cpu();
    let t = |dev: &Device, shape: &[usize], seed: u32| {
        Tensor::from_slice(dev, &values(shape.iter().product(), seed), shape).unwrap()
    };
    let run = |dev: &Device| {
        // Images of 72 KiB, more than a uniform window: the weight gradient runs as
        // unfolding and products (on CPU-type adapters too). It runs first, so that its
        // class is measured on a slow processor too, before the others spend the budget.
        let (x, w) = (t(dev, &[8, 64, 17, 17], 7), t(dev, &[8, 64, 3, 3], 8));
        w.set_requires_grad(true);
        let grads = x.conv2d(&w, Conv2dSpec::default()).sum_all().backward();
        let conv = grads.get(&w).unwrap().to_vec().unwrap();
        let square = t(dev, &[512, 512], 1).matmul(&t(dev, &[512, 512], 2));
        // The same shape again with other values, in the same submission (their
        // difference is read first): whatever a kernel keeps per shape (a texture of B) is
        // refilled, not reused as it was.
        let again = &square - &t(dev, &[512, 512], 16).matmul(&t(dev, &[512, 512], 17));
        let ragged = t(dev, &[300, 520], 9).matmul(&t(dev, &[520, 76], 10));
        let ragged_nt = t(dev, &[300, 520], 11).matmul_t(&t(dev, &[76, 520], 12), false, true);
        let poisoned = |shape: &[usize], seed: u32, at: [usize; 2]| {
            let mut v = values(shape.iter().product(), seed);
            v[at[0]] = f32::from_bits(0x7fc0_0001);
            v[at[1]] = f32::NEG_INFINITY;
            Tensor::from_slice(dev, &v, shape).unwrap()
        };
        let a = poisoned(&[64, 128], 13, [5 * 128 + 7, 9 * 128 + 3]);
        let b = poisoned(&[128, 64], 14, [3 * 64 + 11, 40 * 64 + 20]);
        let bt = poisoned(&[64, 128], 15, [11 * 128 + 3, 20 * 128 + 40]);
        let (nan_inf, nan_inf_nt) = (a.matmul(&b), a.matmul_t(&bt, false, true));
        let edges = t(dev, &[3, 150, 44], 3).matmul(&t(dev, &[44, 76], 4));
        let long = t(dev, &[20, 12_000], 5).matmul(&t(dev, &[12_000, 8], 6));
        let mut got = [
            again, square, ragged, ragged_nt, nan_inf, nan_inf_nt, edges, long,
        ]
        .map(|r| r.to_vec().unwrap())
        .to_vec();
        got.push(conv);
        got
    };
    let (got, want) = (run(dev), run(&cpu));
    for ((g, w), k) in got.iter().zip(&want).zip([
        1024.0, 512.0, 520.0, 520.0, 128.0, 128.0, 44.0, 12_000.0, 1800.0,
    ]) {
        assert_eq!(g.len(), w.len());
        for (i, (x, y)) in g.iter().zip(w).enumerate() {
            let same = (x.is_nan() && y.is_nan()) || x == y;
            assert!(
                same || (x - y).abs() <= 1e-5 * k + 1e-4 * y.abs(),
                "{what}: element {i} is {x}, the CPU backend gives {y}"
            );
        }
    }
    // The NaN and the infinities reached their rows and columns.
    for poisoned in &want[4..6] {
        assert!(poisoned.iter().any(|v| v.is_nan()) && poisoned.iter().any(|v| v.is_infinite()));
        assert!(poisoned.iter().filter(|v| v.is_finite()).count() > 64 * 64 / 2);
    }
}

#[test]
fn choices_are_measured_once_kept_and_each_candidate_is_right() {
    let dir = std::env::temp_dir().join(format!("wgrad-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("WGRAD_CACHE_DIR", &dir);
    std::env::set_var("WGRAD_AUTOTUNE", "1");
    let Some(first) = context() else { return };
    products_match_cpu(&GpuBackend::device_on(first.clone()), "measured");
    assert!(
        first.tuning.spent() > std::time::Duration::ZERO,
        "nothing was measured"
    );
    let kept = std::fs::read_to_string(dir.join("tuning.tsv")).expect("choices kept on disk");
    assert!(kept.contains("m512 n512 k512"), "{kept}");
    assert!(kept.contains("matmul strided"), "{kept}");
    // A software adapter's choices belong to the processor they were measured on.
    if cfg!(target_arch = "x86_64") && first.info.device_type == wgrad_device::wgpu::DeviceType::Cpu
    {
        assert!(kept.lines().all(|l| l.contains(" avx")), "{kept}");
    }

    // A new context reads the choices and measures nothing.
    let second = context().expect("opened before");
    products_match_cpu(&GpuBackend::device_on(second.clone()), "from the cache");
    assert_eq!(second.tuning.spent(), std::time::Duration::ZERO);

    // Measuring off: nothing measured, nothing written.
    std::fs::remove_dir_all(&dir).unwrap();
    std::env::set_var("WGRAD_AUTOTUNE", "0");
    let off = context().expect("opened before");
    products_match_cpu(&GpuBackend::device_on(off.clone()), "built-in rules");
    assert_eq!(off.tuning.spent(), std::time::Duration::ZERO);
    assert!(!dir.join("tuning.tsv").exists());

    // Every candidate, whichever the measurements pick on this machine: pinned, checked
    // against the CPU backend, and seen among the kernels that ran.
    let sets: [(&str, &[&str]); 2] = [
        (
            "cpu",
            &[
                "uniform_windows_texture",
                "uniform_windows_16_texture",
                "uniform_windows",
                "uniform_windows_16",
                "matmul_vec4",
                "matmul_vec4_wide",
            ],
        ),
        (
            "gpu",
            &[
                "matmul_tiled",
                "matmul_tiled_128",
                "matmul_vec4_wide",
                "matmul_vec4",
            ],
        ),
    ];
    for (kernels, plain) in sets {
        std::env::set_var("WGRAD_KERNELS", kernels);
        let ctx = context().expect("opened before");
        let strided = ["matmul_vec4_out", "matmul_vec4_out_wide"];
        for &plan in plain.iter().chain(&strided) {
            ctx.tuning.pin(Some(plan));
            let (dev, backend) = watched(&ctx);
            products_match_cpu(&dev, &format!("{plan} ({kernels} kernels)"));
            let ran = kernels_ran(&backend);
            let names: &[&str] = match plan {
                "uniform_windows" => &["matmul_vec4_ua", "matmul_vec4_nt_ua"],
                "uniform_windows_16" => &["matmul_vec4_ua16", "matmul_vec4_nt_ua16"],
                "uniform_windows_texture" => &["matmul_vec4_ua_tex", "matmul_vec4_nt_ua_tex"],
                "uniform_windows_16_texture" => {
                    &["matmul_vec4_ua16_tex", "matmul_vec4_nt_ua16_tex"]
                }
                _ => &[plan],
            };
            for name in names {
                assert!(
                    ran.iter().any(|r| r.starts_with(&format!("{name} "))),
                    "{plan} pinned, but {name} did not run: {ran:?}"
                );
            }
        }
    }
    std::env::remove_var("WGRAD_KERNELS");
    let _ = std::fs::remove_dir_all(&dir);
}
