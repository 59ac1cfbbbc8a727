//! Convolutions on CPU-type adapters through uniform windows: forward and stride-1 input
//! gradients reading the weights through the windows and the input in place
//! (`conv_vec4_ua`), weight gradients reading the input through the windows and g in place
//! (`conv_grad_weight_ua`), in blocks of 8, 16 and 32, bounds checked or `_inside`, the
//! input read from a texture (`_tex`, the rule) or from its buffer (pinned): every variant
//! against the CPU backend, forward and every gradient, with more output channels than one
//! dispatch's windows hold, weight gradients in several dispatches and parts, and NaN and
//! infinities in the input, the weights and g.

mod common;

use std::sync::Arc;

use common::*;
use wgrad::graph::Conv2dSpec;
use wgrad::{Device, Tensor};
use wgrad_device::{AdapterOptions, Context, GpuBackend};

/// The two ways the window convolutions read their input, as pinned: from a texture (the
/// suffix its forward kernels' names take) and from the input's buffer.
const READS: [(&str, &str); 2] = [("conv_windows_texture", "_tex"), ("conv_windows", "")];

/// A context of its own (pinning is per context) with `read` pinned, or None on adapters
/// without uniform windows.
fn pinned(read: &str) -> Option<Arc<Context>> {
    gpu()?;
    let ctx = Context::with_options(&AdapterOptions::from_env()).expect("opened before");
    if ctx.gpu_kernels {
        eprintln!("SKIPPED (kernels for GPUs: no uniform windows)");
        return None;
    }
    ctx.tuning.pin(Some(read));
    Some(ctx)
}

fn spec(stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]) -> Conv2dSpec {
    Conv2dSpec {
        stride,
        padding,
        dilation,
        groups: 1,
    }
}

/// (name, input, weight, geometry, the window kernels its forward, stride-1 input gradient
/// and weight gradient run on CPU-type adapters; "" for another plan)
type Case = (
    &'static str,
    [usize; 4],
    [usize; 4],
    Conv2dSpec,
    [&'static str; 3],
);

fn cases() -> Vec<Case> {
    let plain = spec([1, 1], [0, 0], [1, 1]);
    let padded = spec([1, 1], [1, 1], [1, 1]);
    vec![
        // Padding: bounds checked; 16 output channels and 36 taps in blocks of 16, the input
        // gradient's 4 channels in blocks of 8.
        (
            "padded",
            [3, 4, 9, 9],
            [16, 4, 3, 3],
            padded,
            ["conv_vec4_ua16", "conv_vec4_ua", "conv_grad_weight_ua16"],
        ),
        // Every window inside the input, strided and dilated (the input gradient of a
        // strided convolution is not a window convolution).
        (
            "inside_strided_dilated",
            [2, 4, 13, 11],
            [12, 4, 3, 3],
            spec([2, 1], [0, 0], [2, 1]),
            ["conv_vec4_inside_ua16", "", "conv_grad_weight_inside_ua16"],
        ),
        // Blocks of 32: 64 output channels, and 288 taps in the weight gradient; the input
        // gradient (k = 576: a window holds 28 rows) in blocks of 16.
        (
            "blocks_of_32",
            [2, 32, 8, 8],
            [64, 32, 3, 3],
            plain,
            [
                "conv_vec4_inside_ua32",
                "conv_vec4_ua16",
                "conv_grad_weight_inside_ua32",
            ],
        ),
        // k = 1024: a window holds 16 rows, 8 windows 128 output channels, so 136 take two
        // dispatches; the input gradient's 256 channels too (k = 544).
        (
            "two_dispatches_16_rows",
            [2, 256, 5, 5],
            [136, 256, 2, 2],
            plain,
            [
                "conv_vec4_inside_ua16",
                "conv_vec4_ua16",
                "conv_grad_weight_inside_ua32",
            ],
        ),
        // k = 2048: a window holds 8 rows, so 72 output channels take two dispatches; the
        // input gradient's 512 channels (k = 288) two of 256 in blocks of 32.
        (
            "two_dispatches_8_rows",
            [1, 512, 3, 3],
            [72, 512, 2, 2],
            plain,
            [
                "conv_vec4_inside_ua",
                "conv_vec4_ua32",
                "conv_grad_weight_inside_ua32",
            ],
        ),
        // 27 taps: channel lanes forward; the weight gradient bounds checked in one block
        // of 32.
        (
            "rgb_padded",
            [2, 3, 10, 10],
            [8, 3, 3, 3],
            padded,
            ["", "", "conv_grad_weight_ua32"],
        ),
        // 8 taps: the weight gradient in blocks of 8, bounds checked or not.
        (
            "eight_taps_padded",
            [2, 2, 6, 6],
            [4, 2, 2, 2],
            padded,
            ["conv_vec4_ua", "conv_vec4_ua", "conv_grad_weight_ua"],
        ),
        (
            "eight_taps",
            [2, 2, 5, 5],
            [4, 2, 2, 2],
            plain,
            [
                "conv_vec4_inside_ua",
                "conv_vec4_ua",
                "conv_grad_weight_inside_ua",
            ],
        ),
        // 288 taps, padded: the weight gradient bounds checked in blocks of 32, as is the
        // input gradient's 32 channels.
        (
            "padded_288_taps",
            [2, 32, 6, 6],
            [8, 32, 3, 3],
            padded,
            ["conv_vec4_ua", "conv_vec4_ua32", "conv_grad_weight_ua32"],
        ),
        // 40 images of 16 KiB: the windows hold 32, so the weight gradient takes two
        // dispatches, and the loop bound cuts the first into two parts of 19 and 13
        // images: three partial sums added in order.
        (
            "weight_gradient_in_parts",
            [40, 16, 16, 16],
            [8, 16, 3, 3],
            plain,
            [
                "conv_vec4_inside_ua",
                "conv_vec4_ua16",
                "conv_grad_weight_inside_ua32",
            ],
        ),
    ]
}

#[test]
fn window_convolutions_match_cpu() {
    for (name, x, w, s, _) in cases() {
        let k = (w[0] * w[2] * w[3])
            .max(w[1] * w[2] * w[3])
            .max(x[0] * x[2] * x[3]);
        check(
            &format!("conv_windows_{name}"),
            k,
            &[f(&x), f(&w)],
            move |t| t[0].conv2d(&t[1], s),
        );
    }
    // With a bias and a relu stored by the kernel.
    let (x, w) = ([2, 8, 9, 9], [24, 8, 3, 3]);
    for s in [spec([1, 1], [1, 1], [1, 1]), spec([1, 1], [0, 0], [1, 1])] {
        let inputs = [f(&x), f(&w), f(&[24, 1, 1])];
        check("conv_windows_bias_relu", 72, &inputs, move |t| {
            (t[0].conv2d(&t[1], s) + &t[2]).relu()
        });
    }
}

/// On CPU-type adapters the cases above run the window kernels they are meant to, with the
/// input read from a texture and from its buffer, and both give the CPU backend's values
/// (forward, input gradient, weight gradient).
#[test]
fn window_convolutions_run_where_meant() {
    for (read, suffix) in READS {
        let Some(ctx) = pinned(read) else { return };
        for (name, x, w, s, kernels) in cases() {
            let (dev, backend) = watched(&ctx);
            let run = |dev: &Device| {
                let t = |shape: &[usize]| {
                    let n = shape.iter().product();
                    let v: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
                    Tensor::from_slice(dev, &v, shape).unwrap()
                };
                let (x, w) = (t(&x), t(&w));
                x.set_requires_grad(true);
                w.set_requires_grad(true);
                let y = x.conv2d(&w, s);
                let grads = y.sum_all().backward();
                [
                    y,
                    grads.get(&x).unwrap().clone(),
                    grads.get(&w).unwrap().clone(),
                ]
                .map(|t| t.to_vec().unwrap())
            };
            let (got, want) = (run(&dev), run(&wgrad::cpu()));
            for (what, (g, c)) in ["y", "dx", "dw"].iter().zip(got.iter().zip(&want)) {
                for (i, (a, b)) in g.iter().zip(c).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{name} ({read}): {what}[{i}] is {a}, the CPU backend gives {b}"
                    );
                }
            }
            let ran = kernels_ran(&backend);
            for (i, kernel) in kernels.into_iter().enumerate() {
                if kernel.is_empty() {
                    continue;
                }
                // The forward and input-gradient kernels read the input; the weight
                // gradient's read g.
                let kernel = match i {
                    2 => kernel.to_string(),
                    _ => format!("{kernel}{suffix}"),
                };
                assert!(
                    ran.iter().any(|r| r.starts_with(&format!("{kernel} "))),
                    "{name} ({read}): {kernel} did not run: {ran:?}"
                );
            }
        }
    }
}

/// NaN (a quiet NaN with a payload, from its bits) in the input, an infinity in the weights
/// and one in g reach the outputs and the weight gradient, padded or not, where they do on
/// the CPU backend: a padded tap counts as 0 times its weight (or its g). The loop bound cuts
/// the weight gradient's 80 images into two parts, whose sums are added afterwards.
#[test]
fn window_convolutions_keep_nan_and_infinities() {
    for (read, _) in READS {
        let Some(ctx) = pinned(read) else { return };
        nan_and_infinities(&GpuBackend::device_on(ctx), read);
    }
}

fn nan_and_infinities(gpu: &Device, read: &str) {
    for s in [spec([1, 1], [1, 1], [1, 1]), spec([1, 1], [0, 0], [1, 1])] {
        let run = |dev: &wgrad::Device| {
            let mut x: Vec<f32> = (0..80 * 4 * 7 * 7)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect();
            x[60] = f32::from_bits(0x7fc0_1234);
            let mut w: Vec<f32> = (0..16 * 4 * 3 * 3)
                .map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0)
                .collect();
            w[3 * 36 + 4] = f32::NEG_INFINITY;
            let x = Tensor::from_slice(dev, &x, &[80, 4, 7, 7]).unwrap();
            let w = Tensor::from_slice(dev, &w, &[16, 4, 3, 3]).unwrap();
            w.set_requires_grad(true);
            let y = x.conv2d(&w, s);
            // g: ones, but +inf at one output of the first image.
            let oh = y.shape()[2];
            let mut g = vec![1.0f32; y.numel()];
            g[5 * oh * oh + 2] = f32::INFINITY;
            let g = Tensor::from_slice(dev, &g, y.shape()).unwrap();
            let grads = (&y * &g).sum_all().backward();
            let dw = grads.get(&w).unwrap().to_vec().unwrap();
            (y.to_vec().unwrap(), dw)
        };
        let ((gy, gw), (cy, cw)) = (run(gpu), run(&wgrad::cpu()));
        for (what, g, c) in [("y", gy, cy), ("dw", gw, cw)] {
            assert!(c.iter().any(|v| v.is_nan()) && c.iter().any(|v| v.is_infinite()));
            for (i, (a, b)) in g.iter().zip(&c).enumerate() {
                let same =
                    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * (1.0 + b.abs());
                assert!(same, "{what}[{i}] ({read}): gpu {a} vs cpu {b}");
            }
        }
    }
}
