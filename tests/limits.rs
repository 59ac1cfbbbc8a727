//! Where numbers go silently wrong unless the engine is built against it, on the GPU against
//! the CPU backend: reductions past 65,536 elements along the reduced axes (software adapters
//! stop long shader loops early), NaN and infinity from bit patterns, indices out of range,
//! shapes that overflow, reductions over nothing.

mod common;

use common::*;
use wgrad::{DType, Tensor};

/// Reductions past 65,536 elements along the reduced axes: Mesa's software adapters stop a
/// shader's loops after 65,535 iterations, so one invocation walking a group gave 65,532 for a
/// sum of a million ones. Each group here spans many invocations and passes.
#[test]
fn reductions_past_65536() {
    check("sum_all_1e6", 1_000_000, &[f(&[1_000_000])], |x| {
        x[0].sum_all()
    });
    check(
        "sum_ones_1e6",
        1_000_000,
        &[range(&[1000, 1000], 1.0, 1.0)],
        |x| x[0].sum_all(),
    );
    // A count that does not divide into the shares evenly (164,424 = 321.1 · 512).
    check(
        "sum_all_164424",
        164_424,
        &[range(&[2, 82_212], -3.0, 3.0)],
        |x| x[0].sum(&[0, 1], true),
    );
    check("mean_axis0_100000x3", 100_000, &[f(&[100_000, 3])], |x| {
        x[0].mean(&[0], false)
    });
    check("argmax_70000", 1, &[distinct(&[70_000])], |x| {
        x[0].argmax(0, false)
    });
    check("argmax_rows_70000", 1, &[distinct(&[2, 70_000])], |x| {
        x[0].argmax(1, true)
    });
    check("argmax_cols_70000", 1, &[distinct(&[70_000, 3])], |x| {
        x[0].argmax(0, false)
    });
    check("max_all_1e6", 1, &[distinct(&[1000, 1000])], |x| {
        x[0].max(&[0, 1], false)
    });
    check("max_cols_100000", 1, &[distinct(&[100_000, 2])], |x| {
        x[0].max(&[0], false)
    });
    check("min_rows_70000", 1, &[distinct(&[3, 70_000])], |x| {
        x[0].min(&[1], true)
    });
    // Two reduced runs around a kept axis (a bias gradient's shape), and three (copied into
    // one run first).
    check("sum_nchw_bias", 86_528, &[f(&[128, 2, 26, 26])], |x| {
        x[0].sum(&[0, 2, 3], false)
    });
    check("sum_three_runs", 70_000, &[f(&[7, 2, 100, 3, 100])], |x| {
        x[0].sum(&[0, 2, 4], true)
    });
}

/// NaN and infinity deep inside long reductions, from bit patterns: each group spans many
/// shares and passes (and, on GPUs with subgroups, shuffles and workgroup memory), and one
/// bad value among a million must still decide the result, in its group only.
#[test]
fn nan_and_inf_in_long_reductions() {
    let (n, rows) = (300_000, 3);
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let name = dev.name();
        let shown = |t: Tensor| -> Vec<String> {
            let v = t.to_vec().unwrap();
            v.iter().map(|v| format!("{v:?}")).collect()
        };
        // Row 0: ones; row 1: ones and a quiet NaN with a payload; row 2: ones and +inf.
        let mut values = vec![1.0f32; rows * n];
        values[n + 212_345] = f32::from_bits(0x7fc0_0001);
        values[2 * n + 299_999] = f32::INFINITY;
        let x = Tensor::from_slice(dev, &values, &[rows, n]).unwrap();
        assert_eq!(
            shown(x.sum(&[1], false)),
            ["300000.0", "NaN", "inf"],
            "{name}: row sums"
        );
        assert_eq!(
            shown(x.max(&[1], false)),
            ["1.0", "NaN", "inf"],
            "{name}: row maxima"
        );
        assert_eq!(
            shown(x.neg().max(&[1], false)),
            ["-1.0", "NaN", "-1.0"],
            "{name}: maxima of the negated rows"
        );
        // All of it at once, and +inf against -inf (a NaN sum, a +inf maximum).
        assert_eq!(shown(x.sum_all()), ["NaN"], "{name}: sum of all");
        let mut values = vec![-2.0f32; 1_000_000];
        values[3] = f32::NEG_INFINITY;
        values[999_000] = f32::INFINITY;
        let y = Tensor::from_slice(dev, &values, &[1_000_000]).unwrap();
        assert_eq!(shown(y.sum_all()), ["NaN"], "{name}: inf - inf");
        assert_eq!(shown(y.max(&[0], false)), ["inf"], "{name}: max with inf");
        values[999_000] = -2.0;
        let y = Tensor::from_slice(dev, &values, &[1_000_000]).unwrap();
        assert_eq!(shown(y.sum_all()), ["-inf"], "{name}: -inf among finite");
        assert_eq!(shown(y.max(&[0], false)), ["-2.0"], "{name}: max past -inf");
    }
}

#[test]
fn matmul_with_k_past_65536() {
    // K = 70,000 through every kernel: vec4 (n a multiple of 4), scalar, and each transpose.
    let k = 70_000;
    check("matmul_k70000_vec4", k, &[f(&[3, k]), f(&[k, 8])], |x| {
        x[0].matmul(&x[1])
    });
    check("matmul_k70000_scalar", k, &[f(&[2, k]), f(&[k, 3])], |x| {
        x[0].matmul(&x[1])
    });
    check("matmul_k70000_ta", k, &[f(&[k, 4]), f(&[k, 4])], |x| {
        x[0].matmul_t(&x[1], true, false)
    });
    check("matmul_k70000_tb", k, &[f(&[3, k]), f(&[4, k])], |x| {
        x[0].matmul_t(&x[1], false, true)
    });
    check(
        "matmul_k300000_batched",
        300_000,
        &[f(&[2, 1, 300_000]), f(&[300_000, 4])],
        |x| x[0].matmul(&x[1]),
    );
    // Split products with an epilogue after them.
    check(
        "matmul_k70000_bias_relu",
        k,
        &[f(&[5, k]), f(&[k, 8]), f(&[8])],
        |x| (x[0].matmul(&x[1]) + &x[2]).relu(),
    );
}

/// Indices past what they index are errors naming the op, the index and the size, on every
/// backend: checked on the host for uploaded indices, flagged by the kernel (and reported
/// at the next read) for indices computed on the device. Never rows of zeros.
#[test]
fn bad_indices_are_errors_naming_op_index_and_size() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let table = Tensor::from_slice(dev, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
        for bad in [7u32, u32::MAX] {
            // Uploaded: refused before anything runs.
            let idx = Tensor::from_u32(dev, &[0, bad, 2], &[3]).unwrap();
            let e = table.gather(&idx).to_vec().unwrap_err();
            assert!(matches!(e, wgrad::Error::Index { op: "gather", .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&bad.to_string()) && msg.contains('3'), "{msg}");
            // Computed on the device (a reshape of an upload keeps its known maximum; a cast
            // does not).
            let computed = Tensor::from_slice(dev, &[0.0, bad as f32, 1.0], &[3])
                .unwrap()
                .cast(DType::U32);
            let e = table.gather(&computed).to_vec().unwrap_err();
            assert!(matches!(e, wgrad::Error::Index { op: "gather", .. }), "{e}");
            assert!(e.to_string().contains("size 3"), "{e}");
            // The next, valid work is unaffected.
            let ok = Tensor::from_u32(dev, &[2, 0], &[2]).unwrap();
            assert_eq!(table.gather(&ok).to_vec().unwrap(), [5.0, 6.0, 1.0, 2.0]);
        }
        // Labels past the classes: one-hot, and so cross-entropy, refuse them.
        let labels = Tensor::from_u32(dev, &[1, 9], &[2]).unwrap();
        let e = labels.one_hot(4).to_vec().unwrap_err();
        assert!(
            matches!(
                e,
                wgrad::Error::Index {
                    op: "one_hot",
                    index: 9,
                    size: 4
                }
            ),
            "{e}"
        );
        let labels = Tensor::from_slice(dev, &[1.0, 5.0], &[2])
            .unwrap()
            .cast(DType::U32);
        let logits = Tensor::zeros(dev, &[2, 4]);
        let e = wgrad::cross_entropy(&logits, &labels).item().unwrap_err();
        assert!(
            matches!(e, wgrad::Error::Index { op: "one_hot", .. }),
            "{e}"
        );
    }
}

/// A shape whose element count overflows is refused where the tensor is made: an error from
/// the constructors that return one, a panic naming the shape from the lazy ones.
#[test]
fn shapes_that_overflow_are_refused_where_made() {
    let dev = wgrad::cpu();
    for shape in [[usize::MAX, 2], [1 << 33, 1 << 31]] {
        let e = Tensor::from_slice(&dev, &[1.0], &shape).unwrap_err();
        assert!(e.to_string().contains("more elements"), "{e}");
        let made = std::panic::AssertUnwindSafe(|| Tensor::zeros(&dev, &shape));
        let lazy = std::panic::catch_unwind(made).unwrap_err();
        let msg = lazy.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("more elements"), "{msg}");
    }
    let e = Tensor::from_slice(&dev, &[1.0, 2.0], &[3]).unwrap_err();
    assert!(
        e.to_string().contains("2 values") && e.to_string().contains("[3]"),
        "{e}"
    );
}

/// Reductions over nothing: a convolution with no input channels gives zeros (its bias after
/// an epilogue), on the GPU as on the CPU; the sum of an empty axis is 0.
#[test]
fn zero_channel_convolution_gives_zeros() {
    let s = wgrad::graph::Conv2dSpec::default();
    check(
        "conv2d_zero_channels",
        1,
        &[f(&[2, 0, 5, 5]), f(&[4, 0, 3, 3])],
        move |t| t[0].conv2d(&t[1], s),
    );
    check(
        "conv2d_zero_channels_bias_relu",
        1,
        &[f(&[2, 0, 5, 5]), f(&[4, 0, 3, 3]), f(&[4, 1, 1])],
        move |t| (t[0].conv2d(&t[1], s) + &t[2]).relu(),
    );
}

/// NaN and infinity as PyTorch treats them, on every backend, from bit patterns (a quiet NaN
/// with a payload, a negative NaN): relu, maximum, minimum, max and min reductions, argmax
/// and max pooling propagate NaN; comparisons with NaN are false but `!=`; isnan, isinf and
/// isfinite test bits (a compiler may assume `x != x` is false).
#[test]
fn nan_and_inf_follow_pytorch() {
    let nan = f32::from_bits(0x7fc0_0001);
    let neg_nan = f32::from_bits(0xffc0_0000);
    let inf = f32::INFINITY;
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let x = Tensor::from_slice(dev, &[1.0, nan, -2.0, inf, neg_nan, -inf], &[2, 3]).unwrap();
        let y = Tensor::from_slice(dev, &[0.5, 0.5, nan, 0.5, 0.5, 0.5], &[2, 3]).unwrap();
        let bits = |t: Tensor| -> Vec<String> {
            t.to_vec()
                .unwrap()
                .iter()
                .map(|v| {
                    if v.is_nan() {
                        "nan".into()
                    } else {
                        v.to_string()
                    }
                })
                .collect()
        };
        let name = dev.name();
        assert_eq!(
            bits(x.relu()),
            ["1", "nan", "0", "inf", "nan", "0"],
            "{name}"
        );
        assert_eq!(
            bits(x.maximum(&y)),
            ["1", "nan", "nan", "inf", "nan", "0.5"],
            "{name}"
        );
        assert_eq!(
            bits(x.minimum(&y)),
            ["0.5", "nan", "nan", "0.5", "nan", "-inf"],
            "{name}"
        );
        assert_eq!(bits(x.max(&[1], false)), ["nan", "nan"], "{name}");
        assert_eq!(bits(x.min(&[1], false)), ["nan", "nan"], "{name}");
        assert_eq!(bits(x.max(&[0], false)), ["inf", "nan", "-2"], "{name}");
        assert_eq!(x.argmax(1, false).to_vec_u32().unwrap(), [1, 1], "{name}");
        assert_eq!(
            x.argmax(0, false).to_vec_u32().unwrap(),
            [1, 0, 0],
            "{name}"
        );
        assert_eq!(bits(x.ne(&x)), ["0", "1", "0", "0", "1", "0"], "{name}");
        assert_eq!(bits(x.eq(&x)), ["1", "0", "1", "1", "0", "1"], "{name}");
        assert_eq!(bits(x.lt(&y)), ["0", "0", "0", "0", "0", "1"], "{name}");
        assert_eq!(bits(x.isnan()), ["0", "1", "0", "0", "1", "0"], "{name}");
        assert_eq!(bits(x.isinf()), ["0", "0", "0", "1", "0", "1"], "{name}");
        assert_eq!(bits(x.isfinite()), ["1", "0", "1", "0", "0", "0"], "{name}");
        assert_eq!(
            bits(x.sign()),
            ["1", "nan", "-1", "1", "nan", "-1"],
            "{name}"
        );
        // Max pooling: the window holding NaN gives NaN, and its gradient goes there.
        let img = Tensor::param(
            dev,
            &[1.0, 5.0, 2.0, nan, 0.0, 3.0, 4.0, 1.0],
            &[1, 1, 2, 4],
        )
        .unwrap();
        let pooled = img.max_pool2d(wgrad::graph::Pool2dSpec::square(2));
        assert_eq!(bits(pooled.clone()), ["5", "nan"], "{name}");
        let g = pooled.sum_all().backward();
        let dx = g.wrt(&img).to_vec().unwrap();
        assert_eq!(dx, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0], "{name}");
    }
}

/// Scatter-add (the embedding gradient) over more indices than one kernel loop may walk:
/// against the CPU backend, against a hand-computed case, with the same bits on every run,
/// and with an index out of range an error naming it.
#[test]
fn scatter_add_past_the_loop_bound() {
    check(
        "scatter_add_70000",
        10_000,
        &[f(&[70_000, 3]), idx(&[70_000], 7)],
        |x| x[0].scatter_add(&x[1], 7),
    );
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in &devices {
        let rows = Tensor::from_slice(dev, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]).unwrap();
        let idx = Tensor::from_u32(dev, &[2, 0, 2], &[3]).unwrap();
        let table = rows.scatter_add(&idx, 3).to_vec().unwrap();
        assert_eq!(table, [3.0, 4.0, 0.0, 0.0, 6.0, 8.0], "{}", dev.name());
        // 9,000 indices (three loop ranges) of values whose sum depends on the order.
        let n = 9_000;
        let values: Vec<f32> = (0..n).map(|i| 1.0 + (i as f32) * 1e-3).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
        let rows = Tensor::from_slice(dev, &values, &[n, 1]).unwrap();
        let idx = Tensor::from_u32(dev, &labels, &[n]).unwrap();
        let first = rows.scatter_add(&idx, 5).to_vec().unwrap();
        let again = rows.scatter_add(&idx, 5).to_vec().unwrap();
        assert_eq!(
            first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            again.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // An index computed on the device past the rows: flagged by the kernel.
        let bad = Tensor::from_slice(dev, &[0.0, 9.0], &[2])
            .unwrap()
            .cast(DType::U32);
        let two = Tensor::from_slice(dev, &[1.0, 2.0], &[2, 1]).unwrap();
        let e = two.scatter_add(&bad, 4).to_vec().unwrap_err();
        assert!(
            matches!(
                e,
                wgrad::Error::Index {
                    op: "scatter_add",
                    index: 9,
                    size: 4
                }
            ),
            "{}: {e}",
            dev.name()
        );
    }
}

/// Normal samples: the same bits on every backend, mean 0 and variance 1, seeds apart.
#[test]
fn randn_gives_the_same_normal_samples_everywhere() {
    let cpu = wgrad::cpu();
    let n = 200_000;
    let want = Tensor::randn(&cpu, &[n], 11).to_vec().unwrap();
    if let Some(dev) = gpu() {
        let got = Tensor::randn(&dev, &[n], 11).to_vec().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&got) == bits(&want), "randn differs between backends");
    }
    let mean = want.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = want.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
        "mean {mean}, variance {var}"
    );
    assert!(want.iter().all(|v| v.abs() <= 6.0));
    // Within one standard deviation: 68.3 % for N(0, 1).
    let inside = want.iter().filter(|v| v.abs() < 1.0).count() as f64 / n as f64;
    assert!((inside - 0.683).abs() < 0.01, "{inside}");
    let other = Tensor::randn(&cpu, &[n], 12).to_vec().unwrap();
    assert!(other.iter().zip(&want).filter(|(a, b)| a == b).count() < n / 100);
}
