//! Attention against a plain host implementation of PyTorch's equations, on every backend:
//! scaled dot-product attention with causal, additive, boolean and key-padding masks,
//! multi-head attention, and the transformer encoder layer (post-norm and pre-norm), with
//! every gradient GPU against CPU and by finite differences.

mod common;

use common::gpu;
use wgrad::nn::{
    scaled_dot_product_attention, sinusoidal_positions, AttentionMask, EncoderConfig, Module,
    MultiheadAttention, Rng, TransformerEncoderLayer,
};
use wgrad::{Device, Tensor};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.range(-1.0, 1.0)).collect()
}

fn close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i} is {g}, want {w}"
        );
    }
}

/// softmax(q·kᵀ/√d + bias)·v for one (batch, head): q [nq, d], k [nk, d], v [nk, dv].
fn attention_host(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (nq, nk, d, dv): (usize, usize, usize, usize),
    bias: impl Fn(usize, usize) -> f64,
) -> Vec<f64> {
    let mut out = vec![0.0; nq * dv];
    for i in 0..nq {
        let s: Vec<f64> = (0..nk)
            .map(|j| {
                (0..d).map(|c| q[i * d + c] * k[j * d + c]).sum::<f64>() / (d as f64).sqrt()
                    + bias(i, j)
            })
            .collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for j in 0..nk {
            for c in 0..dv {
                out[i * dv + c] += e[j] / z * v[j * dv + c];
            }
        }
    }
    out
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn scaled_dot_product_attention_with_every_mask() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    let (b, n, d, dv) = (2, 4, 3, 5);
    let (q, k, v) = (
        values(b * n * d, 1),
        values(b * n * d, 2),
        values(b * n * dv, 3),
    );
    let add = values(n * n, 4);
    let allowed: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7) % 3 != 0 || i % (n + 1) == 0) as u8 as f32)
        .collect();
    let pad = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    for dev in &devices {
        let t = |data: &[f32], shape: &[usize]| Tensor::from_slice(dev, data, shape).unwrap();
        let (qt, kt, vt) = (t(&q, &[b, n, d]), t(&k, &[b, n, d]), t(&v, &[b, n, dv]));
        let (addt, allowedt, padt) = (t(&add, &[n, n]), t(&allowed, &[n, n]), t(&pad, &[b, n]));
        let cases: [(&str, AttentionMask); 4] = [
            (
                "causal",
                AttentionMask {
                    causal: true,
                    ..Default::default()
                },
            ),
            (
                "additive",
                AttentionMask {
                    additive: Some(&addt),
                    ..Default::default()
                },
            ),
            (
                "boolean",
                AttentionMask {
                    allowed: Some(&allowedt),
                    ..Default::default()
                },
            ),
            (
                "key padding",
                AttentionMask {
                    key_padding: Some(&padt),
                    ..Default::default()
                },
            ),
        ];
        for (name, mask) in cases {
            let got = scaled_dot_product_attention(&qt, &kt, &vt, mask)
                .to_vec()
                .unwrap();
            let mut want = Vec::new();
            for bb in 0..b {
                let bias = |i: usize, j: usize| -> f64 {
                    match name {
                        "causal" => {
                            if j <= i {
                                0.0
                            } else {
                                -1e30
                            }
                        }
                        "additive" => add[i * n + j] as f64,
                        "boolean" => {
                            if allowed[i * n + j] > 0.0 {
                                0.0
                            } else {
                                -1e30
                            }
                        }
                        _ => {
                            if pad[bb * n + j] > 0.0 {
                                -1e30
                            } else {
                                0.0
                            }
                        }
                    }
                };
                let slice = |x: &[f32], w: usize| f64s(&x[bb * n * w..][..n * w]);
                want.extend(attention_host(
                    &slice(&q, d),
                    &slice(&k, d),
                    &slice(&v, dv),
                    (n, n, d, dv),
                    bias,
                ));
            }
            close(&format!("{name} mask on {}", dev.name()), &got, &want, 1e-5);
        }
    }
}

/// PyTorch's multi-head attention on the host, self-attention of x [seq, e] (one batch).
fn mha_host(
    x: &[f64],
    w_in: &[f64],
    b_in: &[f64],
    w_out: &[f64],
    b_out: &[f64],
    (seq, e, heads): (usize, usize, usize),
) -> Vec<f64> {
    let proj = |part: usize| -> Vec<f64> {
        (0..seq * e)
            .map(|i| {
                let (s, r) = (i / e, part * e + i % e);
                b_in[r] + (0..e).map(|c| w_in[r * e + c] * x[s * e + c]).sum::<f64>()
            })
            .collect()
    };
    let (q, k, v) = (proj(0), proj(1), proj(2));
    let d = e / heads;
    let mut joined = vec![0.0; seq * e];
    for h in 0..heads {
        let head = |m: &[f64]| -> Vec<f64> {
            (0..seq * d)
                .map(|i| m[(i / d) * e + h * d + i % d])
                .collect()
        };
        let o = attention_host(&head(&q), &head(&k), &head(&v), (seq, seq, d, d), |_, _| {
            0.0
        });
        for s in 0..seq {
            for c in 0..d {
                joined[s * e + h * d + c] = o[s * d + c];
            }
        }
    }
    (0..seq * e)
        .map(|i| {
            b_out[i % e]
                + (0..e)
                    .map(|c| w_out[(i % e) * e + c] * joined[(i / e) * e + c])
                    .sum::<f64>()
        })
        .collect()
}

fn layer_norm_host(x: &[f64], e: usize, w: &[f64], b: &[f64]) -> Vec<f64> {
    x.chunks(e)
        .flat_map(|row| {
            let m = row.iter().sum::<f64>() / e as f64;
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / e as f64;
            row.iter()
                .enumerate()
                .map(move |(c, v)| (v - m) / (var + 1e-5).sqrt() * w[c] + b[c])
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn encoder_layers_follow_pytorchs_equations() {
    let mut devices = vec![wgrad::cpu()];
    devices.extend(gpu());
    let (seq, e, heads, ff) = (5, 6, 3, 7);
    for dev in &devices {
        for norm_first in [false, true] {
            let config = EncoderConfig {
                dim_feedforward: ff,
                dropout: 0.0,
                batch_first: true,
                norm_first,
                ..Default::default()
            };
            let layer =
                TransformerEncoderLayer::new(dev, e, heads, config, &mut Rng::new(3)).unwrap();
            let p: Vec<Vec<f64>> = layer
                .named_parameters()
                .iter()
                .map(|(_, t)| f64s(&t.to_vec().unwrap()))
                .collect();
            let names: Vec<String> = layer
                .named_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            assert_eq!(
                names,
                [
                    "self_attn.in_proj_weight",
                    "self_attn.in_proj_bias",
                    "self_attn.out_proj.weight",
                    "self_attn.out_proj.bias",
                    "linear1.weight",
                    "linear1.bias",
                    "linear2.weight",
                    "linear2.bias",
                    "norm1.weight",
                    "norm1.bias",
                    "norm2.weight",
                    "norm2.bias"
                ]
            );
            let x = values(seq * e, 9);
            let got = layer
                .forward(&Tensor::from_slice(dev, &x, &[1, seq, e]).unwrap())
                .to_vec()
                .unwrap();
            let attn = |y: &[f64]| mha_host(y, &p[0], &p[1], &p[2], &p[3], (seq, e, heads));
            let linear = |y: &[f64], w: &[f64], b: &[f64], (i, o): (usize, usize)| -> Vec<f64> {
                y.chunks(i)
                    .flat_map(|row| {
                        (0..o)
                            .map(|r| b[r] + (0..i).map(|c| w[r * i + c] * row[c]).sum::<f64>())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            let feed = |y: &[f64]| {
                let inner: Vec<f64> = linear(y, &p[4], &p[5], (e, ff))
                    .into_iter()
                    .map(|v| v.max(0.0))
                    .collect();
                linear(&inner, &p[6], &p[7], (ff, e))
            };
            let plus =
                |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
            let (n1, n2) = (
                |y: &[f64]| layer_norm_host(y, e, &p[8], &p[9]),
                |y: &[f64]| layer_norm_host(y, e, &p[10], &p[11]),
            );
            let x = f64s(&x);
            let want = if norm_first {
                let y = plus(&x, &attn(&n1(&x)));
                plus(&y, &feed(&n2(&y)))
            } else {
                let y = n1(&plus(&x, &attn(&x)));
                n2(&plus(&y, &feed(&y)))
            };
            close(
                &format!("norm_first {norm_first} on {}", dev.name()),
                &got,
                &want,
                1e-4,
            );
        }
    }
}

/// A loss of an encoder layer's output and its gradients for the input and every parameter.
fn gradients(dev: &Device) -> Vec<Vec<f32>> {
    let config = EncoderConfig {
        dim_feedforward: 7,
        dropout: 0.0,
        batch_first: true,
        ..Default::default()
    };
    let layer = TransformerEncoderLayer::new(dev, 6, 2, config, &mut Rng::new(5)).unwrap();
    let x = Tensor::param(dev, &values(2 * 3 * 6, 8), &[2, 3, 6]).unwrap();
    let pad = Tensor::from_slice(dev, &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
    let out = layer.encode(
        &x,
        AttentionMask {
            key_padding: Some(&pad),
            ..Default::default()
        },
    );
    let w = Tensor::from_slice(dev, &values(out.numel(), 11), out.shape()).unwrap();
    let grads = (&out * &w).sum_all().backward();
    std::iter::once(x)
        .chain(layer.parameters())
        .map(|t| grads.wrt(&t).to_vec().unwrap())
        .collect()
}

#[test]
fn encoder_gradients_match_cpu() {
    let want = gradients(&wgrad::cpu());
    if let Some(dev) = gpu() {
        for (k, (g, w)) in gradients(&dev).iter().zip(&want).enumerate() {
            close(&format!("gradient {k} on the GPU"), g, &f64s(w), 1e-4);
        }
    }
    // Finite differences for the input, on the CPU backend.
    let cpu = wgrad::cpu();
    let config = EncoderConfig {
        dim_feedforward: 7,
        dropout: 0.0,
        batch_first: true,
        ..Default::default()
    };
    let layer = TransformerEncoderLayer::new(&cpu, 6, 2, config, &mut Rng::new(5)).unwrap();
    let pad = Tensor::from_slice(&cpu, &[0.0, 0.0, 1.0, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
    let loss = |x: &[f32]| -> f64 {
        let x = Tensor::from_slice(&cpu, x, &[2, 3, 6]).unwrap();
        let out = layer.encode(
            &x,
            AttentionMask {
                key_padding: Some(&pad),
                ..Default::default()
            },
        );
        let w = values(out.numel(), 11);
        out.to_vec()
            .unwrap()
            .iter()
            .zip(&w)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let x0 = values(36, 8);
    for i in [0, 13, 35] {
        let (mut up, mut down) = (x0.clone(), x0.clone());
        up[i] += 1e-2;
        down[i] -= 1e-2;
        let numeric = (loss(&up) - loss(&down)) / 2e-2;
        let got = want[0][i] as f64;
        assert!(
            (got - numeric).abs() <= 5e-3 * (1.0 + numeric.abs()),
            "d x[{i}]: {got} against {numeric}"
        );
    }
}

#[test]
fn sinusoidal_positions_follow_the_formula() {
    let table = sinusoidal_positions(&wgrad::cpu(), 3, 4)
        .unwrap()
        .to_vec()
        .unwrap();
    let want = [
        0.0,
        1.0,
        0.0,
        1.0,
        1f64.sin(),
        1f64.cos(),
        0.01f64.sin(),
        0.01f64.cos(),
        2f64.sin(),
        2f64.cos(),
        0.02f64.sin(),
        0.02f64.cos(),
    ];
    close("positions", &table, &want, 1e-6);
}

#[test]
fn multihead_attention_is_time_major_by_default() {
    let dev = wgrad::cpu();
    let (seq, batch, e) = (3, 2, 4);
    let mha = MultiheadAttention::new(&dev, e, 2, false, &mut Rng::new(1)).unwrap();
    let mhb = MultiheadAttention::new(&dev, e, 2, true, &mut Rng::new(1)).unwrap();
    let x = Tensor::from_slice(&dev, &values(seq * batch * e, 2), &[seq, batch, e]).unwrap();
    let a = mha.forward(&x).permute(&[1, 0, 2]).to_vec().unwrap();
    let b = mhb.forward(&x.permute(&[1, 0, 2])).to_vec().unwrap();
    close("time-major against batch-major", &a, &f64s(&b), 1e-6);
}

#[test]
fn learned_positions_add_their_first_rows_and_learn() {
    let dev = wgrad::cpu();
    let pos = wgrad::nn::LearnedPositions::new(&dev, 5, 2, &mut Rng::new(4)).unwrap();
    let table = pos.weight.to_vec().unwrap();
    let x = Tensor::from_slice(&dev, &[1.0; 12], &[2, 3, 2]).unwrap();
    let y = pos.forward(&x);
    let got = y.to_vec().unwrap();
    for b in 0..2 {
        for i in 0..6 {
            assert_eq!(got[b * 6 + i], 1.0 + table[i]);
        }
    }
    let g = y.sum_all().backward().wrt(&pos.weight).to_vec().unwrap();
    assert_eq!(g, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
}

/// Masks per (batch · head), as PyTorch's `attn_mask` takes them, line up with the heads; and
/// an encoder layer's dropout counters are saved with the model.
#[test]
fn per_head_masks_and_dropout_counters() {
    let dev = wgrad::cpu();
    let (batch, seq, e, heads) = (2, 3, 4, 2);
    let mha = MultiheadAttention::new(&dev, e, heads, true, &mut Rng::new(1)).unwrap();
    let x = Tensor::from_slice(&dev, &values(batch * seq * e, 2), &[batch, seq, e]).unwrap();
    let two_d = values(seq * seq, 3);
    let flat = Tensor::from_slice(&dev, &two_d, &[seq, seq]).unwrap();
    let repeated: Vec<f32> = (0..batch * heads).flat_map(|_| two_d.clone()).collect();
    let per_head = Tensor::from_slice(&dev, &repeated, &[batch * heads, seq, seq]).unwrap();
    let a = mha.attend(
        &x,
        &x,
        &x,
        AttentionMask {
            additive: Some(&flat),
            ..Default::default()
        },
    );
    let b = mha.attend(
        &x,
        &x,
        &x,
        AttentionMask {
            additive: Some(&per_head),
            ..Default::default()
        },
    );
    close(
        "a per-head mask",
        &b.to_vec().unwrap(),
        &f64s(&a.to_vec().unwrap()),
        1e-6,
    );
    let layer = TransformerEncoderLayer::new(
        &dev,
        e,
        heads,
        EncoderConfig {
            batch_first: true,
            ..Default::default()
        },
        &mut Rng::new(2),
    )
    .unwrap();
    let _ = layer.forward(&x).to_vec().unwrap();
    let counters = layer.named_counters();
    assert_eq!(counters.len(), 4, "{counters:?}");
    assert!(counters.iter().all(|(_, v)| *v == 1), "{counters:?}");
    assert!(layer.set_counter("dropout3.calls", 7));
    assert!(layer
        .named_counters()
        .contains(&("dropout3.calls".to_string(), 7)));
}
