//! Convolution and pooling: GPU against CPU over a matrix of geometries (forward and every
//! gradient), finite-difference checks of each new primitive, and hand-computed cases.

mod common;

use common::*;
use wgrad::graph::{Conv2dSpec, Pool2dSpec};
use wgrad::Tensor;

fn spec(
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Conv2dSpec {
    Conv2dSpec {
        stride,
        padding,
        dilation,
        groups,
    }
}

/// (name, input [n, c, h, w], weight [o, c/g, kh, kw], geometry)
fn conv_cases() -> Vec<(&'static str, [usize; 4], [usize; 4], Conv2dSpec)> {
    vec![
        (
            "plain",
            [2, 3, 7, 6],
            [5, 3, 3, 3],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        // The MNIST CNN's second layer on 24 images: k = 24 · 124 past the uniform-window
        // products' 2048, so the weight gradient is cut into chunks of 16 and 8 images
        // that accumulate.
        (
            "chunked_weight_gradient",
            [24, 8, 13, 13],
            [16, 8, 3, 3],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            "stride2_pad1",
            [1, 2, 9, 8],
            [4, 2, 3, 3],
            spec([2, 2], [1, 1], [1, 1], 1),
        ),
        (
            "stride3_pad2",
            [2, 1, 10, 11],
            [3, 1, 3, 3],
            spec([3, 3], [2, 2], [1, 1], 1),
        ),
        (
            "dilation2",
            [1, 2, 9, 9],
            [3, 2, 3, 3],
            spec([1, 1], [2, 2], [2, 2], 1),
        ),
        (
            "groups2",
            [2, 4, 6, 5],
            [6, 2, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 2),
        ),
        (
            "depthwise",
            [2, 5, 6, 6],
            [5, 1, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 5),
        ),
        (
            "depthwise_multiplier",
            [1, 3, 5, 5],
            [6, 1, 3, 3],
            spec([2, 2], [1, 1], [1, 1], 3),
        ),
        (
            "one_by_one",
            [3, 7, 4, 5],
            [9, 7, 1, 1],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            "non_square",
            [2, 3, 8, 7],
            [4, 3, 2, 4],
            spec([2, 1], [1, 2], [1, 1], 1),
        ),
        (
            "height_one",
            [2, 2, 1, 9],
            [3, 2, 1, 3],
            spec([1, 2], [0, 1], [1, 1], 1),
        ),
        (
            "width_one",
            [1, 3, 8, 1],
            [2, 3, 3, 1],
            spec([1, 1], [1, 0], [1, 1], 1),
        ),
        (
            "batch_one_odd",
            [1, 5, 13, 13],
            [7, 5, 3, 3],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            "mixed",
            [2, 6, 11, 9],
            [4, 3, 3, 2],
            spec([2, 3], [1, 1], [2, 1], 2),
        ),
        (
            "mnist_like",
            [3, 1, 28, 28],
            [8, 1, 3, 3],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        // Channel counts that are multiples of 4 take the channel-lane kernel: two channel
        // blocks with a partly idle second one, pixel counts off the block of 4, padding wider
        // than the kernel, dilation and groups.
        (
            "lanes_blocks",
            [1, 3, 5, 5],
            [40, 3, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 1),
        ),
        // Taps per output channel a multiple of 4 with one group: matrix products, with
        // pixel counts off the multiple of 4, strides, and a batch unfolded in two chunks.
        (
            "gemm_padded",
            [1, 12, 5, 5],
            [40, 12, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 1),
        ),
        (
            "gemm_strided",
            [2, 4, 9, 8],
            [8, 4, 3, 3],
            spec([2, 2], [1, 1], [1, 1], 1),
        ),
        // 1×1: the input is its own unfolding when pixels come in whole vec4s.
        (
            "pointwise_gemm",
            [2, 8, 4, 5],
            [12, 8, 1, 1],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            "pointwise_unfolded",
            [2, 8, 3, 5],
            [12, 8, 1, 1],
            spec([1, 1], [0, 0], [1, 1], 1),
        ),
        (
            "gemm_chunks",
            [3, 64, 50, 50],
            [4, 64, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 1),
        ),
        // Images of fewer than 256 output pixels unfold side by side into one product per
        // chunk: here 58 images of 8×8 in two chunks (1152 taps).
        (
            "gemm_wide_chunks",
            [58, 128, 8, 8],
            [4, 128, 3, 3],
            spec([1, 1], [1, 1], [1, 1], 1),
        ),
        (
            "lanes_groups_dilated",
            [2, 8, 7, 6],
            [8, 4, 3, 3],
            spec([1, 1], [1, 3], [2, 1], 2),
        ),
    ]
}

#[test]
fn conv2d_matches_cpu_with_every_gradient() {
    for (name, x, w, s) in conv_cases() {
        let k = (w[1] * w[2] * w[3]).max(x[0] * x[2] * x[3]);
        check(&format!("conv2d_{name}"), k, &[f(&x), f(&w)], move |t| {
            t[0].conv2d(&t[1], s)
        });
    }
}

/// On the GPU a convolution followed by elementwise ops of its shape (a bias and an
/// activation) runs them as it stores: every forward plan takes such an epilogue.
#[test]
fn conv2d_epilogues() {
    let plain = spec([1, 1], [0, 0], [1, 1], 1);
    let padded = spec([1, 1], [1, 1], [1, 1], 1);
    for (name, x, w, s) in [
        // Unfold and multiply, one image per product (16×16 output pixels).
        ("gemm", [2, 4, 18, 18], [8, 4, 3, 3], plain),
        // A 1×1 window: one product over the batch.
        ("pointwise", [2, 8, 16, 16], [4, 8, 1, 1], plain),
        // Images of 36 pixels side by side, the epilogue in the copy out.
        ("wide", [3, 4, 8, 8], [8, 4, 3, 3], padded),
        // 200 output channels: on CPU-type adapters two dispatches of 192 and 8 rows, with
        // the unfolded images packed in panels.
        ("wide_packed", [2, 64, 6, 6], [200, 64, 3, 3], padded),
        // 9 taps: channel lanes (through uniform windows on CPU-type adapters).
        ("lanes", [2, 1, 10, 10], [8, 1, 3, 3], plain),
        // 9 taps and 3 output channels: the general kernel; and two groups.
        ("generic", [2, 1, 9, 7], [3, 1, 3, 3], padded),
        (
            "groups",
            [2, 4, 7, 7],
            [8, 2, 3, 3],
            spec([2, 1], [1, 0], [1, 1], 2),
        ),
    ] {
        let k = (w[1] * w[2] * w[3]).max(x[0] * x[2] * x[3]);
        let bias = [w[0], 1, 1];
        check(
            &format!("conv2d_bias_relu_{name}"),
            k,
            &[f(&x), f(&w), f(&bias)],
            move |t| (t[0].conv2d(&t[1], s) + &t[2]).relu(),
        );
    }
}

/// Reductions past 65,536 terms inside convolutions: the weight and bias gradients of a batch
/// of 128 images of 28×28 sum 128·26·26 = 86,528 terms, and direct kernels over 601 input
/// channels walk 601·9 taps; each is split into bounded parts.
#[test]
fn conv_reductions_past_65536() {
    let plain = spec([1, 1], [0, 0], [1, 1], 1);
    check(
        "conv2d_bias_and_weight_grads_batch128",
        86_528,
        &[f(&[128, 1, 28, 28]), f(&[4, 1, 3, 3]), f(&[4, 1, 1])],
        move |t| t[0].conv2d(&t[1], plain) + &t[2],
    );
    check(
        "conv2d_batch128_gemm",
        86_528,
        &[f(&[128, 4, 28, 28]), f(&[8, 4, 3, 3])],
        move |t| t[0].conv2d(&t[1], plain),
    );
    // Two groups: the general weight-gradient kernel walks (image, row) lines in parts.
    check(
        "conv2d_groups_batch128",
        86_528,
        &[f(&[128, 4, 28, 28]), f(&[4, 2, 3, 3])],
        move |t| t[0].conv2d(&t[1], spec([1, 1], [0, 0], [1, 1], 2)),
    );
    // 601·9 taps (not a multiple of 4): the general kernel (3 outputs) and channel lanes (8).
    check(
        "conv2d_generic_601_channels",
        601 * 9,
        &[f(&[1, 601, 6, 6]), f(&[3, 601, 3, 3]), f(&[3, 1, 1])],
        move |t| (t[0].conv2d(&t[1], plain) + &t[2]).relu(),
    );
    check(
        "conv2d_lanes_601_channels",
        601 * 9,
        &[f(&[2, 601, 5, 5]), f(&[8, 601, 3, 3]), f(&[8, 1, 1])],
        move |t| (t[0].conv2d(&t[1], plain) + &t[2]).relu(),
    );
}

#[test]
fn conv_transpose2d_matches_cpu_with_every_gradient() {
    // (name, input [n, c_in, h, w], weight [c_in, c_out/g, kh, kw], geometry, output_padding)
    let cases = [
        (
            "plain",
            [2, 3, 4, 5],
            [3, 2, 3, 3],
            spec([1, 1], [0, 0], [1, 1], 1),
            [0, 0],
        ),
        (
            "stride2_outpad",
            [1, 4, 5, 4],
            [4, 3, 3, 3],
            spec([2, 2], [1, 1], [1, 1], 1),
            [1, 1],
        ),
        (
            "stride3_groups",
            [2, 4, 3, 3],
            [4, 1, 2, 3],
            spec([3, 2], [0, 1], [1, 1], 2),
            [2, 0],
        ),
        (
            "dilated",
            [1, 2, 4, 4],
            [2, 3, 3, 3],
            spec([1, 1], [1, 1], [2, 2], 1),
            [0, 0],
        ),
        (
            "lanes",
            [2, 3, 4, 5],
            [3, 8, 3, 2],
            spec([1, 1], [1, 0], [1, 1], 1),
            [0, 0],
        ),
    ];
    for (name, x, w, s, op) in cases {
        let k = (w[0] * w[2] * w[3]).max(x[0] * x[2] * x[3]);
        check(
            &format!("conv_transpose2d_{name}"),
            k,
            &[f(&x), f(&w)],
            move |t| t[0].conv_transpose2d(&t[1], s, op),
        );
    }
}

/// The gradient ops are primitives too: differentiate through them (second derivatives).
#[test]
fn conv_gradient_ops_have_gradients() {
    let s = spec([2, 1], [1, 0], [1, 2], 1);
    check(
        "conv2d_double_backward",
        40,
        &[f(&[2, 3, 7, 8]), f(&[4, 3, 3, 2])],
        move |t| {
            let y = t[0].conv2d(&t[1], s);
            let g = wgrad::graph::Tensor::from_op(
                wgrad::graph::Op::Conv2dGradWeight {
                    spec: s,
                    kernel: [3, 2],
                },
                &[&t[0], &y],
            );
            (&g * &g).sum_all()
        },
    );
}

fn pool(
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    ceil_mode: bool,
    count_include_pad: bool,
) -> Pool2dSpec {
    Pool2dSpec {
        kernel,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
    }
}

fn pool_cases() -> Vec<(&'static str, [usize; 4], Pool2dSpec)> {
    vec![
        ("2x2", [2, 3, 8, 6], Pool2dSpec::square(2)),
        ("odd_input", [1, 2, 7, 9], Pool2dSpec::square(2)),
        (
            "3x3_stride2_pad1",
            [2, 2, 9, 8],
            pool([3, 3], [2, 2], [1, 1], false, true),
        ),
        (
            "ceil_mode",
            [1, 3, 7, 6],
            pool([3, 3], [2, 2], [0, 0], true, true),
        ),
        (
            "ceil_pad",
            [2, 1, 5, 7],
            pool([3, 2], [2, 2], [1, 1], true, true),
        ),
        (
            "overlapping",
            [1, 2, 6, 6],
            pool([3, 3], [1, 1], [1, 1], false, true),
        ),
        (
            "non_square",
            [2, 2, 6, 9],
            pool([2, 3], [1, 3], [0, 1], false, true),
        ),
        (
            "height_one",
            [3, 2, 1, 8],
            pool([1, 2], [1, 2], [0, 0], false, true),
        ),
        ("mnist_like", [4, 8, 26, 26], Pool2dSpec::square(2)),
    ]
}

#[test]
fn max_pool2d_matches_cpu() {
    for (name, x, s) in pool_cases() {
        check(
            &format!("max_pool2d_{name}"),
            9,
            &[distinct(&x)],
            move |t| t[0].max_pool2d(s),
        );
    }
}

#[test]
fn avg_pool2d_matches_cpu_with_and_without_padding_in_the_count() {
    for (name, x, s) in pool_cases() {
        check(&format!("avg_pool2d_{name}"), 9, &[f(&x)], move |t| {
            t[0].avg_pool2d(s)
        });
        let s = Pool2dSpec {
            count_include_pad: false,
            ..s
        };
        check(
            &format!("avg_pool2d_exclusive_{name}"),
            9,
            &[f(&x)],
            move |t| t[0].avg_pool2d(s),
        );
    }
    check("global_avg_pool", 30, &[f(&[2, 3, 5, 6])], |t| {
        t[0].mean(&[2, 3], false)
    });
}

#[test]
fn max_pool_ties_send_the_gradient_to_the_first_maximum() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let x = Tensor::param(&dev, &[1.0, 1.0, 0.0, 1.0], &[1, 1, 2, 2]).unwrap();
        let y = x.max_pool2d(Pool2dSpec::square(2));
        let g = y.sum_all().backward();
        assert_eq!(y.to_vec().unwrap(), vec![1.0]);
        assert_eq!(
            g.wrt(&x).to_vec().unwrap(),
            vec![1.0, 0.0, 0.0, 0.0],
            "{}",
            dev.name()
        );
    }
}

#[test]
fn finite_differences_pin_the_new_primitives() {
    let s = spec([2, 1], [1, 1], [1, 2], 1);
    gradcheck("conv2d", &[f(&[1, 2, 5, 6]), f(&[3, 2, 2, 3])], move |t| {
        t[0].conv2d(&t[1], s)
    });
    let g = spec([1, 1], [1, 0], [1, 1], 2);
    gradcheck(
        "conv2d_groups",
        &[f(&[2, 4, 3, 3]), f(&[2, 2, 2, 2])],
        move |t| t[0].conv2d(&t[1], g),
    );
    let t2 = spec([2, 2], [1, 1], [1, 1], 1);
    gradcheck(
        "conv_transpose2d",
        &[f(&[1, 2, 3, 3]), f(&[2, 2, 3, 3])],
        move |t| t[0].conv_transpose2d(&t[1], t2, [1, 0]),
    );
    gradcheck(
        "conv2d_grad_weight",
        &[f(&[1, 2, 4, 4]), f(&[1, 3, 3, 3])],
        |t| {
            Tensor::from_op(
                wgrad::graph::Op::Conv2dGradWeight {
                    spec: Conv2dSpec::default(),
                    kernel: [2, 2],
                },
                &[&t[0], &t[1]],
            )
        },
    );
    let p = pool([3, 3], [2, 2], [1, 1], true, true);
    gradcheck("max_pool2d", &[distinct(&[1, 2, 5, 5])], move |t| {
        t[0].max_pool2d(p)
    });
    gradcheck("avg_pool2d", &[f(&[1, 2, 5, 4])], move |t| {
        t[0].avg_pool2d(p)
    });
    let q = Pool2dSpec {
        count_include_pad: false,
        ..p
    };
    gradcheck("avg_pool2d_exclusive", &[f(&[2, 1, 4, 5])], move |t| {
        t[0].avg_pool2d(q)
    });
    gradcheck("avg_pool2d_grad", &[f(&[1, 2, 3, 3])], move |t| {
        Tensor::from_op(
            wgrad::graph::Op::AvgPool2dGrad {
                spec: p,
                input_hw: [5, 5],
            },
            &[&t[0]],
        )
    });
}

/// Small cases worked out by hand pin the definitions themselves.
#[test]
fn hand_computed_cases() {
    let dev = wgrad::cpu();
    // 3×3 input 1..9, 2×2 kernel [[1, 0], [0, -1]]: y = x[i][j] - x[i+1][j+1] = -4 everywhere.
    let x = Tensor::from_slice(&dev, &[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]).unwrap();
    let w = Tensor::from_slice(&dev, &[1., 0., 0., -1.], &[1, 1, 2, 2]).unwrap();
    assert_eq!(
        x.conv2d(&w, Conv2dSpec::default()).to_vec().unwrap(),
        vec![-4.0; 4]
    );
    // Padding 1, stride 2: windows centred on the corners; top-left sees only x[0][0]·(-1)... etc.
    let s = spec([2, 2], [1, 1], [1, 1], 1);
    assert_eq!(
        x.conv2d(&w, s).to_vec().unwrap(),
        vec![-1.0, -3.0, -7.0, 5.0 - 9.0]
    );
    // Transposed convolution of a single 1 with stride 2 stamps the kernel.
    let one = Tensor::from_slice(&dev, &[1.0], &[1, 1, 1, 1]).unwrap();
    let k = Tensor::from_slice(&dev, &[1., 2., 3., 4.], &[1, 1, 2, 2]).unwrap();
    let up = one.conv_transpose2d(&k, spec([2, 2], [0, 0], [1, 1], 1), [1, 1]);
    assert_eq!(up.shape(), &[1, 1, 3, 3]);
    assert_eq!(
        up.to_vec().unwrap(),
        vec![1., 2., 0., 3., 4., 0., 0., 0., 0.]
    );
    // Average pooling 2×2 with padding 1 counting the padding: corner window holds x[0][0] only.
    let a = x
        .avg_pool2d(pool([2, 2], [2, 2], [1, 1], false, true))
        .to_vec()
        .unwrap();
    assert_eq!(a, vec![0.25, 1.25, 2.75, 7.0]);
    let e = x
        .avg_pool2d(pool([2, 2], [2, 2], [1, 1], false, false))
        .to_vec()
        .unwrap();
    assert_eq!(e, vec![1.0, 2.5, 5.5, 7.0]);
    // Ceil mode keeps a partial last window: 3×3 input, 2×2 windows, stride 2 → 2×2 output.
    let m = x
        .max_pool2d(pool([2, 2], [2, 2], [0, 0], true, true))
        .to_vec()
        .unwrap();
    assert_eq!(m, vec![5.0, 6.0, 8.0, 9.0]);
}

/// The input gradient of strided convolutions (and transposed convolutions) runs as
/// products and a gather: a batch in two chunks of scratch, a reduction over 70,000 output
/// channels, and strides with dilation and padding, each against the CPU.
#[test]
fn strided_input_gradients_as_products_match_cpu() {
    let cases = [
        // 576 taps × 2,500 pixels per image: two images per chunk of scratch, then one.
        (
            "chunks",
            [3, 64, 100, 100],
            [2, 64, 3, 3],
            spec([2, 2], [1, 1], [1, 1], 1),
        ),
        // Each input value sums 70,000 output channels.
        (
            "wide",
            [1, 1, 4, 4],
            [70_000, 1, 1, 1],
            spec([2, 2], [0, 0], [1, 1], 1),
        ),
        (
            "dilated",
            [2, 3, 11, 9],
            [4, 3, 3, 3],
            spec([2, 3], [1, 2], [2, 1], 1),
        ),
    ];
    for (name, x, w, s) in cases {
        let k = w[0] * w[2] * w[3];
        check(
            &format!("strided_grad_input_{name}"),
            k,
            &[f(&x), f(&w)],
            move |t| t[0].conv2d(&t[1], s),
        );
    }
}

/// A tap that reaches no output position counts as g = 0 times its weight (NaN for an
/// infinite or NaN weight), the same on the GPU's strided input gradient as on the CPU: an
/// infinite weight at one tap and a NaN at another, with every other value finite.
#[test]
fn strided_input_gradients_keep_non_finite_weights_as_the_cpu_does() {
    let Some(gpu) = gpu() else { return };
    let s = spec([2, 2], [1, 0], [1, 1], 1);
    let run = |dev: &wgrad::Device| {
        let x: Vec<f32> = (0..2 * 4 * 8 * 8)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let mut w: Vec<f32> = (0..3 * 4 * 3 * 3)
            .map(|i| ((i * 13 % 29) as f32 / 14.0) - 1.0)
            .collect();
        w[5] = f32::INFINITY;
        w[40] = f32::NAN;
        let x = Tensor::from_slice(dev, &x, &[2, 4, 8, 8]).unwrap();
        x.set_requires_grad(true);
        let w = Tensor::from_slice(dev, &w, &[3, 4, 3, 3]).unwrap();
        let y = x.conv2d(&w, s);
        let grads = y.sum_all().backward();
        grads.get(&x).unwrap().to_vec().unwrap()
    };
    let (g, c) = (run(&gpu), run(&wgrad::cpu()));
    assert!(c.iter().any(|v| v.is_nan()) && c.iter().any(|v| v.is_finite()));
    for (i, (a, b)) in g.iter().zip(&c).enumerate() {
        let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-4 * (1.0 + b.abs());
        assert!(same, "dx[{i}]: gpu {a} vs cpu {b}");
    }
}
