//! Every primitive and composite on the GPU against the CPU backend: outputs and gradients.
//! Shapes include 1, odd sizes, sizes that are not multiples of the workgroup (64) or the
//! matmul block (4), scalars and empty batches.

mod common;

use common::*;
use wgrad::{DType, Tensor};

#[test]
fn unary() {
    check("neg", 1, &[f(&[3, 67])], |x| x[0].neg());
    check("exp", 1, &[f(&[130])], |x| x[0].exp());
    check("log", 1, &[pos(&[5, 13])], |x| x[0].log());
    check("sqrt", 1, &[pos(&[1, 1])], |x| x[0].sqrt());
    check("abs", 1, &[nz(&[65])], |x| x[0].abs());
    check("sign", 1, &[nz(&[7])], |x| x[0].sign());
    check("relu", 1, &[nz(&[2, 3, 5])], |x| x[0].relu());
    check("sigmoid", 1, &[range(&[99], -30.0, 30.0)], |x| {
        x[0].sigmoid()
    });
    check("tanh", 1, &[range(&[99], -20.0, 20.0)], |x| x[0].tanh());
    check("erf", 1, &[range(&[77], -4.0, 4.0)], |x| x[0].erf());
    check("gelu", 1, &[range(&[77], -5.0, 5.0)], |x| x[0].gelu());
    check("leaky_relu", 1, &[nz(&[33])], |x| x[0].leaky_relu(0.1));
}

#[test]
fn binary_with_broadcasting() {
    check("add", 1, &[f(&[4, 1, 3]), f(&[5, 1])], |x| &x[0] + &x[1]);
    check("sub", 1, &[f(&[7]), f(&[3, 1])], |x| &x[0] - &x[1]);
    check("mul", 1, &[f(&[2, 65]), f(&[65])], |x| &x[0] * &x[1]);
    check("div", 1, &[f(&[3, 3]), pos(&[3, 1])], |x| &x[0] / &x[1]);
    check("pow", 1, &[pos(&[6]), f(&[2, 6])], |x| x[0].pow(&x[1]));
    check("pow_neg_base", 1, &[f(&[9])], |x| x[0].pow_scalar(3.0));
    check("maximum", 1, &[distinct(&[4, 5]), distinct(&[5])], |x| {
        x[0].maximum(&x[1])
    });
    check("minimum", 1, &[distinct(&[4, 5]), distinct(&[4, 1])], |x| {
        x[0].minimum(&x[1])
    });
    check("scalar", 1, &[f(&[]), f(&[3, 2])], |x| &x[0] * &x[1]);
    // Inputs that vary along one axis only: generated kernels index them by division.
    check(
        "channel_affine_relu",
        1,
        &[f(&[2, 3, 4, 5]), f(&[3, 1, 1]), f(&[1, 3, 1, 1]), f(&[5])],
        |x| ((&x[0] * &x[1] + &x[2]).relu() - &x[3]).tanh(),
    );
    check("empty", 1, &[f(&[0, 3]), f(&[3])], |x| &x[0] + &x[1]);
    // Generated kernels over a multiple of 4 elements take 4 per invocation: a scalar, a
    // constant, a vec4 of the innermost axis ([8]), one value per 4 elements ([3, 1] and
    // [2, 1, 1] after 8 and 24 elements), and 4 values apart ([6], and [3, 1] after 2).
    check(
        "lanes_of_four",
        1,
        &[f(&[]), f(&[2, 3, 8]), f(&[8]), f(&[3, 1]), f(&[2, 1, 1])],
        |x| (((&x[1] * &x[0] + &x[2]) * &x[3]).mul_scalar(0.5).sigmoid() + &x[4]).relu(),
    );
    check("lanes_of_four_gather", 1, &[f(&[4, 6]), f(&[6])], |x| {
        (&x[0] - &x[1]).tanh()
    });
    check("lanes_of_four_axis", 1, &[f(&[2, 3, 2]), f(&[3, 1])], |x| {
        (&x[0] * &x[1]).exp()
    });
}

#[test]
fn comparisons_and_where() {
    for (name, op) in [
        ("eq", Tensor::eq as fn(&Tensor, &Tensor) -> Tensor),
        ("ne", Tensor::ne),
        ("lt", Tensor::lt),
        ("le", Tensor::le),
        ("gt", Tensor::gt),
        ("ge", Tensor::ge),
    ] {
        // Integers in [0, 3) make ties common.
        check(name, 1, &[idx(&[5, 4], 3), idx(&[4], 3)], move |x| {
            op(&x[0].cast(DType::F32), &x[1].cast(DType::F32))
        });
    }
    check("where", 1, &[f(&[3, 1]), f(&[4]), f(&[3, 4])], |x| {
        Tensor::select(&x[0].gt(&x[0].zeros_like()), &x[1], &x[2])
    });
}

#[test]
fn reductions() {
    check("sum_all", 1000, &[f(&[10, 100])], |x| x[0].sum_all());
    check("sum_rows", 67, &[f(&[3, 67])], |x| x[0].sum(&[1], false));
    check("sum_cols_keepdim", 5, &[f(&[5, 3])], |x| {
        x[0].sum(&[0], true)
    });
    check("sum_middle", 4, &[f(&[2, 4, 3])], |x| x[0].sum(&[1], false));
    check("sum_outer", 6, &[f(&[2, 3, 5])], |x| {
        x[0].sum(&[0, 2], true)
    });
    check("sum_one", 1, &[f(&[1, 1])], |x| x[0].sum(&[0, 1], false));
    check("sum_empty_axis", 1, &[f(&[3, 0])], |x| {
        x[0].sum(&[1], false)
    });
    check("max_last", 7, &[distinct(&[3, 7])], |x| {
        x[0].max(&[-1], false)
    });
    check("max_first", 9, &[distinct(&[9, 2, 2])], |x| {
        x[0].max(&[0], true)
    });
    check("max_ties", 4, &[idx(&[3, 4], 2)], |x| {
        x[0].cast(DType::F32).max(&[1], false)
    });
    check("mean", 12, &[f(&[3, 4, 3])], |x| x[0].mean(&[0, 2], false));
    check("argmax_last", 1, &[distinct(&[4, 9])], |x| {
        x[0].argmax(-1, false)
    });
    check("argmax_first_keep", 1, &[distinct(&[5, 3])], |x| {
        x[0].argmax(0, true)
    });
    check("argmax_ties", 1, &[idx(&[6, 5], 2)], |x| {
        x[0].cast(DType::F32).argmax(1, false)
    });
}

#[test]
fn matmul_shapes() {
    for (m, k, n) in [
        (1, 1, 1),
        (1, 5, 1),
        (3, 5, 7),
        (13, 1, 9),
        (33, 65, 17),
        (64, 31, 130),
        // k and n multiples of 4 take the vec4 kernels (the tiled one with
        // WGRAD_KERNELS=gpu): partial row, column and k tiles, and a B too big for the wide
        // workgroup shape.
        (4, 8, 4),
        (70, 36, 132),
        (5, 20, 8),
        (8, 1024, 1028),
        // On CPU-type adapters A is read through 64 KiB uniform windows, up to 8 per
        // dispatch: three windows of 16 rows; windows of 16, 16 and 13 rows (a partial 8-row
        // block); 24-row windows (16384 / 580 values rounded down to whole blocks) with a
        // 2-row last one; two dispatches of 8-row windows, the second with one window.
        (40, 1024, 8),
        (45, 1024, 12),
        (50, 580, 8),
        (72, 2048, 8),
        // B read by two dispatches is packed in panels of 128 columns: a whole panel and
        // 12 columns of a second.
        (136, 1024, 140),
    ] {
        check(
            &format!("matmul_{m}x{k}x{n}"),
            k,
            &[f(&[m, k]), f(&[k, n])],
            |x| x[0].matmul(&x[1]),
        );
    }
    check("matmul_batched", 6, &[f(&[3, 5, 6]), f(&[3, 6, 2])], |x| {
        x[0].matmul(&x[1])
    });
    check(
        "matmul_broadcast_b",
        6,
        &[f(&[2, 3, 5, 6]), f(&[6, 7])],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul_broadcast_both",
        3,
        &[f(&[2, 1, 4, 3]), f(&[1, 3, 3, 5])],
        |x| x[0].matmul(&x[1]),
    );
    // Transposed operands read in place, every flag combination, vec4 and scalar shapes,
    // with batch broadcasting.
    for (m, k, n) in [(3, 5, 7), (8, 12, 16), (68, 36, 20), (5, 8, 4)] {
        for (ta, tb) in [(true, false), (false, true), (true, true)] {
            let a = if ta { [2, k, m] } else { [2, m, k] };
            let b = if tb { [n, k] } else { [k, n] };
            check(
                &format!("matmul_t{}{}_{m}x{k}x{n}", ta as u8, tb as u8),
                k,
                &[f(&a), f(&b)],
                move |x| x[0].matmul_t(&x[1], ta, tb),
            );
        }
    }
    // On CPU-type adapters, A stored transposed is transposed by the uniform windows' copies:
    // three windows of 16 rows (the last partial), and a batched B.
    for (name, a, b) in [
        ("ua_t10", [1024, 40], vec![1024, 12]),
        ("ua_t10_batched", [512, 20], vec![2, 512, 8]),
    ] {
        check(&format!("matmul_{name}"), a[0], &[f(&a), f(&b)], move |x| {
            x[0].matmul_t(&x[1], true, false)
        });
    }
    check(
        "matmul_shared_a_batched",
        12,
        &[f(&[68, 12]), f(&[2, 3, 12, 20])],
        |x| x[0].matmul(&x[1]),
    );
    check(
        "matmul_vec4_broadcast",
        12,
        &[f(&[2, 3, 68, 12]), f(&[12, 20])],
        |x| x[0].matmul(&x[1]),
    );
    check("matmul_empty_batch", 3, &[f(&[0, 3]), f(&[3, 4])], |x| {
        x[0].matmul(&x[1])
    });
    check("matmul_k0", 1, &[f(&[2, 0]), f(&[0, 3])], |x| {
        x[0].matmul(&x[1])
    });
}

/// A weight shared by every batch of a sequence (`[batch, seq, in] · Wᵀ + b`) runs as one
/// product over all the rows: forward, for the input's gradient and for the weight's (not
/// a product per batch summed after). Values and gradients are the CPU backend's.
#[test]
fn shared_weight_products_run_as_one() {
    let layer = |x: &[Tensor]| (x[0].matmul_t(&x[1], false, true) + &x[2]).relu();
    let specs = [f(&[3, 40, 64]), f(&[48, 64]), f(&[48])];
    if !check("matmul_shared_weight_nt", 64, &specs, layer) {
        return;
    }
    check(
        "matmul_shared_weight",
        64,
        &[f(&[2, 3, 40, 64]), f(&[1, 64, 48])],
        |x| x[0].matmul(&x[1]),
    );
    let ctx = wgrad_device::Context::shared().unwrap();
    let (dev, backend) = watched(&ctx);
    let mut rng = wgrad::nn::Rng::new(3);
    let inputs: Vec<Tensor> = specs
        .iter()
        .map(|s| upload(&dev, s, &draw(s, &mut rng)))
        .collect();
    let grads = layer(&inputs).sum_all().backward();
    for x in &inputs {
        grads.get(x).unwrap().to_vec().unwrap();
    }
    let products: Vec<String> = kernels_ran(&backend)
        .into_iter()
        .filter(|k| k.starts_with("matmul"))
        .collect();
    assert!(products.len() >= 3, "{products:?}");
    for kernel in &products {
        assert!(
            kernel.ends_with(", 1]"),
            "a product ran per batch: {products:?}"
        );
    }
}

/// A texture that kernels read (B of a product on CPU-type adapters) and the pooled buffers
/// of a product are handed back after submissions that do not use them; the same product
/// after that makes new ones and gets the CPU backend's values, never those of the texture
/// before.
#[test]
fn textures_and_pooled_buffers_handed_back_and_made_again() {
    let Some(dev) = gpu() else { return };
    let cpu = wgrad::cpu();
    let t = |dev: &wgrad::Device, shape: &[usize], seed: u64| {
        let mut rng = wgrad::nn::Rng::new(seed);
        let v: Vec<f32> = (0..shape.iter().product())
            .map(|_| rng.range(-1.0, 1.0))
            .collect();
        Tensor::from_slice(dev, &v, shape).unwrap()
    };
    for round in 0..3 {
        let product = |dev: &wgrad::Device| {
            let a = t(dev, &[256, 256], 2 * round);
            let b = t(dev, &[256, 256], 2 * round + 1);
            a.matmul(&b).to_vec().unwrap()
        };
        let (got, want) = (product(&dev), product(&cpu));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                "round {round}: element {i} is {g}, the CPU backend gives {w}"
            );
        }
        // The product's operands and result, 256 KiB each, wait in the pool.
        let held = dev.memory().reserved;
        assert!(held >= 3 << 18, "round {round}: {:?}", dev.memory());
        // Submissions without the texture or those buffers.
        for _ in 0..12 {
            t(&dev, &[64], 9).add_scalar(1.0).to_vec().unwrap();
        }
        let m = dev.memory();
        assert!(
            m.reserved < 1 << 18,
            "round {round}: {held} bytes held, then {m:?}"
        );
    }
}

/// On the GPU a product followed by elementwise ops of its shape runs them in the matmul's
/// kernel, before its stores: every matmul kernel variant takes such an epilogue.
#[test]
fn matmul_epilogues() {
    // Uniform windows (k, n multiples of 4) on CPU-type adapters, tiled on GPUs; the scalar
    // kernel (n = 10); the vec4 kernel past the windows' k; a wide vec4 shape.
    for (m, k, n) in [(45, 1024, 12), (33, 65, 10), (8, 2052, 8), (70, 36, 132)] {
        check(
            &format!("matmul_bias_relu_{m}x{k}x{n}"),
            k,
            &[f(&[m, k]), f(&[k, n]), f(&[n])],
            |x| (x[0].matmul(&x[1]) + &x[2]).relu(),
        );
    }
    // Transposed operands (A transposed, B transposed), a batched product scaled per row,
    // constants and a slope compiled into the kernel.
    check(
        "matmul_t10_bias_tanh",
        12,
        &[f(&[12, 20]), f(&[12, 8]), f(&[8])],
        |x| (x[0].matmul_t(&x[1], true, false) + &x[2]).tanh(),
    );
    check(
        "matmul_t01_bias_sigmoid",
        12,
        &[f(&[20, 12]), f(&[8, 12]), f(&[8])],
        |x| (x[0].matmul_t(&x[1], false, true) + &x[2]).sigmoid(),
    );
    check(
        "matmul_batched_epilogue",
        8,
        &[f(&[2, 3, 5, 8]), f(&[8, 12]), f(&[5, 1])],
        |x| {
            (x[0].matmul(&x[1]) * &x[2])
                .mul_scalar(0.5)
                .add_scalar(0.25)
                .leaky_relu(0.1)
        },
    );
}

/// An epilogue that also stores a value the caller holds: the pre-activation `z` and the
/// activation `y` come out of one matmul kernel, both equal to the CPU's.
/// One kernel serves every value of an epilogue's constants: they travel with the launch.
/// (Compiled into the source but left out of the cache's key, the first value was used for
/// every later one.)
#[test]
fn epilogue_constants_change_between_calls() {
    let conv = wgrad::graph::Conv2dSpec::default();
    for s in [0.5f32, 0.25, 2.0, -3.0] {
        check(
            &format!("matmul_times_{s}"),
            12,
            &[f(&[5, 12]), f(&[12, 8])],
            move |x| x[0].matmul(&x[1]) * s,
        );
        check(
            &format!("matmul_leaky_{s}"),
            12,
            &[f(&[5, 12]), f(&[12, 8])],
            move |x| x[0].matmul(&x[1]).add_scalar(s).leaky_relu(s.abs() / 4.0),
        );
        check(
            &format!("conv2d_times_{s}"),
            36,
            &[f(&[2, 4, 6, 6]), f(&[8, 4, 3, 3])],
            move |x| x[0].conv2d(&x[1], conv) * s,
        );
    }
}

#[test]
fn matmul_epilogue_storing_two_values() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = wgrad::nn::Rng::new(5);
    let mut data = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.range(-1.0, 1.0)).collect() };
    let (x, w, b, s) = (data(9 * 16), data(16 * 8), data(8), data(8));
    let run = |dev: &wgrad::Device| -> (Vec<f32>, Vec<f32>) {
        let x = Tensor::from_slice(dev, &x, &[9, 16]).unwrap();
        let w = Tensor::from_slice(dev, &w, &[16, 8]).unwrap();
        let b = Tensor::from_slice(dev, &b, &[8]).unwrap();
        let s = Tensor::from_slice(dev, &s, &[8]).unwrap();
        let z = x.matmul(&w) + &b;
        let y = (&z * &s).sigmoid();
        wgrad::realize_all(&[&y, &z]).unwrap();
        (z.to_vec().unwrap(), y.to_vec().unwrap())
    };
    let (gz, gy) = run(&gpu);
    let (cz, cy) = run(&wgrad::cpu());
    for (what, g, c) in [("z", gz, cz), ("y", gy, cy)] {
        for (i, (g, c)) in g.iter().zip(&c).enumerate() {
            assert!((g - c).abs() <= 1e-5, "{what}[{i}]: gpu {g} vs cpu {c}");
        }
    }
}

#[test]
fn layout() {
    check("reshape", 1, &[f(&[2, 3, 4])], |x| {
        x[0].reshape(&[4, 6]) * 2.0
    });
    check("permute", 1, &[f(&[2, 3, 4])], |x| x[0].permute(&[2, 0, 1]));
    check("transpose", 1, &[f(&[5, 67])], |x| x[0].t());
    check("expand", 1, &[f(&[3, 1])], |x| x[0].expand(&[2, 3, 5]));
    check("slice", 1, &[f(&[5, 6, 3])], |x| {
        x[0].slice(&[(1, 4), (0, 6), (2, 3)])
    });
    check("narrow", 1, &[f(&[7, 3])], |x| x[0].narrow(0, 2, 4));
    check("pad", 1, &[f(&[2, 3])], |x| x[0].pad(&[1, 0], &[2, 3]));
    check("concat", 1, &[f(&[2, 3]), f(&[2, 1]), f(&[2, 4])], |x| {
        Tensor::concat(&[&x[0], &x[1], &x[2]], 1)
    });
    check("concat_rows", 1, &[f(&[1, 3]), f(&[4, 3])], |x| {
        Tensor::concat(&[&x[0], &x[1]], 0)
    });
    // Rows of a multiple of 4 at aligned offsets are copied as vec4s; misaligned ones not.
    check("permute_quads", 1, &[f(&[2, 3, 8])], |x| {
        x[0].permute(&[1, 0, 2])
    });
    check("slice_quads", 1, &[f(&[5, 8])], |x| x[0].narrow(0, 1, 3));
    check("slice_misaligned", 1, &[f(&[5, 8])], |x| {
        x[0].narrow(1, 2, 4)
    });
    check("concat_quads", 1, &[f(&[2, 4]), f(&[2, 8])], |x| {
        Tensor::concat(&[&x[0], &x[1]], 1)
    });
    check("gather", 1, &[f(&[7, 5]), idx(&[3, 4], 7)], |x| {
        x[0].gather(&x[1])
    });
    check("gather_repeats", 1, &[f(&[3, 2]), idx(&[10], 3)], |x| {
        x[0].gather(&x[1])
    });
    check("scatter_add", 4, &[f(&[10, 2]), idx(&[10], 3)], |x| {
        x[0].scatter_add(&x[1], 3)
    });
    check(
        "scatter_add_rows",
        4,
        &[f(&[3, 4, 5]), idx(&[3, 4], 6)],
        |x| x[0].scatter_add(&x[1], 6),
    );
    check("one_hot", 1, &[idx(&[9], 5)], |x| x[0].one_hot(5));
    check("cast_roundtrip", 1, &[range(&[20], -3.0, 30.0)], |x| {
        x[0].cast(DType::U32).cast(DType::F32)
    });
    check("rand", 1, &[f(&[1])], |x| {
        Tensor::rand(x[0].device(), &[3, 70], 1234)
    });
    check("full", 1, &[f(&[1])], |x| {
        Tensor::full(x[0].device(), &[5, 3], -2.5)
    });
}

#[test]
fn composites() {
    check("softmax", 10, &[range(&[4, 10], -5.0, 5.0)], |x| {
        x[0].softmax(-1)
    });
    check("log_softmax", 10, &[range(&[4, 10], -5.0, 5.0)], |x| {
        x[0].log_softmax(-1)
    });
    check("softmax_axis0", 3, &[f(&[3, 5])], |x| x[0].softmax(0));
    check("logsumexp", 6, &[f(&[2, 6])], |x| x[0].logsumexp(1, false));
    check("mse", 15, &[f(&[3, 5]), f(&[3, 5])], |x| {
        wgrad::mse_loss(&x[0], &x[1])
    });
    check("cross_entropy", 40, &[f(&[8, 5]), idx(&[8], 5)], |x| {
        wgrad::cross_entropy(&x[0], &x[1])
    });
    check(
        "bce_with_logits",
        12,
        &[range(&[3, 4], -4.0, 4.0), range(&[3, 4], 0.0, 1.0)],
        |x| wgrad::bce_with_logits(&x[0], &x[1]),
    );
    check("chain", 12, &[f(&[4, 3]), f(&[3, 6]), f(&[6])], |x| {
        (x[0].matmul(&x[1]) + &x[2]).tanh().sum(&[0], false).gelu()
    });
}

/// Huge logits must not overflow: softmax stays finite and sums to 1 on both backends.
#[test]
fn softmax_of_huge_logits_is_finite() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    for dev in devices {
        let x =
            Tensor::from_slice(&dev, &[1000.0, 0.0, -1000.0, 3.0e4, 3.0e4, 1.0], &[2, 3]).unwrap();
        let s = x.softmax(-1).to_vec().unwrap();
        let ls = x.log_softmax(-1).to_vec().unwrap();
        assert!(s.iter().all(|v| v.is_finite()), "{}: {s:?}", dev.name());
        assert!(
            (s[0] - 1.0).abs() < 1e-6 && s[1] == 0.0,
            "{}: {s:?}",
            dev.name()
        );
        assert!(
            (s[3] - 0.5).abs() < 1e-6 && (s[4] - 0.5).abs() < 1e-6,
            "{}: {s:?}",
            dev.name()
        );
        assert_eq!(ls[0], 0.0, "{}: {ls:?}", dev.name());
        assert!(
            (ls[1] + 1000.0).abs() < 1e-3 && ls[2] == -2000.0,
            "{}: {ls:?}",
            dev.name()
        );
        let y = Tensor::from_u32(&dev, &[2, 0], &[2]).unwrap();
        let ce = wgrad::cross_entropy(&x, &y).item().unwrap();
        // Row 0 picks the -1000 logit (loss 2000), row 1 one of the tied maxima (ln 2).
        assert!(
            (ce - (2000.0 + std::f32::consts::LN_2) / 2.0).abs() < 1e-2,
            "{}: {ce}",
            dev.name()
        );
    }
}

/// Index arithmetic avoids integer division below 2^22 elements; past it, the exact path
/// must take over. A transpose of 4099 × 4097 (16.8 M elements) crosses that line.
#[test]
fn layout_index_math_is_exact_past_2_pow_22_elements() {
    let Some(dev) = gpu() else { return };
    let (r, c) = (4099usize, 4097usize);
    let data: Vec<f32> = (0..r * c).map(|i| i as f32).collect();
    let x = Tensor::from_slice(&dev, &data, &[r, c]).unwrap();
    let y = x.t().to_vec().unwrap();
    for (k, &v) in y
        .iter()
        .enumerate()
        .step_by(997)
        .chain(y.iter().enumerate().rev().take(5000))
    {
        let (i, j) = (k / r, k % r); // y[i][j] = x[j][i]
        assert_eq!(v, (j * c + i) as f32, "element {k}");
    }
}
