//! Attention with PyTorch's semantics, layouts and parameter names:
//! [`scaled_dot_product_attention`], [`MultiheadAttention`], [`TransformerEncoderLayer`]
//! (post-norm or pre-norm) and positional embeddings (sinusoidal, or learned as an
//! [`Embedding`](crate::Embedding) of positions).
//!
//! Masked scores are filled with -1e30 rather than -∞: a query whose keys are all masked
//! (a sequence that is all padding) then averages them instead of giving NaN, which would
//! spread through a batch's loss.

use std::cell::Cell;

use wgrad_graph::{Device, Error, Result, Tensor};

use crate::layers::Dropout;
use crate::module::Module;
use crate::norm::{LayerNorm, NormConfig};
use crate::rng::Rng;

/// The score given to masked pairs.
const MASKED: f32 = -1e30;

/// Which query–key pairs attention may not use.
#[derive(Clone, Copy, Default)]
pub struct AttentionMask<'a> {
    /// Query i sees keys j ≤ i only (when queries and keys are the same sequence).
    pub causal: bool,
    /// Added to the scores `[queries, keys]` or `[batch · heads, queries, keys]` (PyTorch's
    /// float `attn_mask`).
    pub additive: Option<&'a Tensor>,
    /// 1.0 where a pair is allowed, 0.0 where not, broadcast against the scores (PyTorch's
    /// boolean `attn_mask`, with true = allowed as in `scaled_dot_product_attention`).
    pub allowed: Option<&'a Tensor>,
    /// 1.0 at the keys `[batch, keys]` that are padding and must be ignored (PyTorch's
    /// `key_padding_mask`).
    pub key_padding: Option<&'a Tensor>,
}

/// `softmax(q·kᵀ / √d + mask)·v` over the last two axes: q `[..., queries, d]`, k and v
/// `[..., keys, d]` (v's last axis may differ). With a key-padding mask, the leading axes
/// are `[batch, heads]` (or `[batch]`).
#[track_caller]
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: AttentionMask<'_>,
) -> Tensor {
    attention((q, k, v), mask, None)
}

/// [`scaled_dot_product_attention`], with `drop` applied to the attention weights.
#[track_caller]
fn attention(
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    mask: AttentionMask<'_>,
    drop: Option<&Dropout>,
) -> Tensor {
    let d = *q.shape().last().expect("q has axes");
    let mut scores = q
        .matmul_t(k, false, true)
        .mul_scalar(1.0 / (d as f32).sqrt());
    let (nq, nk) = (
        q.shape()[q.shape().len() - 2],
        k.shape()[k.shape().len() - 2],
    );
    let masked =
        |scores: &Tensor, keep: &Tensor| Tensor::select(keep, scores, &scores.scalar_like(MASKED));
    if mask.causal {
        let keep: Vec<f32> = (0..nq * nk)
            .map(|i| ((i % nk) <= (i / nk)) as u8 as f32)
            .collect();
        let keep = Tensor::from_slice(q.device(), &keep, &[nq, nk]).expect("fits");
        scores = masked(&scores, &keep);
    }
    if let Some(add) = mask.additive {
        scores = scores + add;
    }
    if let Some(keep) = mask.allowed {
        scores = masked(&scores, keep);
    }
    if let Some(pad) = mask.key_padding {
        // [batch, keys] → [batch, 1, 1, keys] against [batch, heads, queries, keys].
        let b = pad.shape()[0];
        let mut shape = vec![b];
        shape.extend(std::iter::repeat_n(1, scores.shape().len() - 2));
        shape.push(nk);
        let keep = pad.scalar_like(1.0) - pad;
        scores = masked(&scores, &keep.reshape(&shape));
    }
    let weights = scores.softmax(-1);
    match drop {
        Some(d) => d.forward(&weights).matmul(v),
        None => weights.matmul(v),
    }
}

/// A linear map in PyTorch's layout: `weight` `[out, in]`, `y = x·weightᵀ + bias`.
struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// PyTorch's default initialisation: U(-1/√in, 1/√in) for weight and bias.
    fn new(device: &Device, input: usize, output: usize, rng: &mut Rng) -> Result<Linear> {
        let k = 1.0 / (input as f32).sqrt();
        let w: Vec<f32> = (0..input * output).map(|_| rng.range(-k, k)).collect();
        let b: Vec<f32> = (0..output).map(|_| rng.range(-k, k)).collect();
        Ok(Linear {
            weight: Tensor::param(device, &w, &[output, input])?,
            bias: Tensor::param(device, &b, &[output])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.matmul_t(&self.weight, false, true) + &self.bias
    }

    fn named(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}weight"), self.weight.clone()),
            (format!("{prefix}bias"), self.bias.clone()),
        ]
    }
}

/// Attention in `heads` heads over `embed` features, as PyTorch's `nn.MultiheadAttention`:
/// `in_proj_weight` `[3·embed, embed]` (query, key, value), `in_proj_bias`, and
/// `out_proj.weight`, `out_proj.bias`. Inputs `[batch, seq, embed]` with `batch_first`, else
/// `[seq, batch, embed]`.
pub struct MultiheadAttention {
    /// Query, key and value projections `[3·embed, embed]`.
    pub in_proj_weight: Tensor,
    /// Their biases `[3·embed]`.
    pub in_proj_bias: Tensor,
    out_proj: Linear,
    embed: usize,
    heads: usize,
    batch_first: bool,
    /// Dropout on the attention weights while training (PyTorch's `dropout`).
    drop: Option<Dropout>,
}

impl MultiheadAttention {
    /// `embed` must be a multiple of `heads` (else an [`Error::Data`]). The input projection
    /// is Xavier-uniform with zero biases, as PyTorch initialises it.
    pub fn new(
        device: &Device,
        embed: usize,
        heads: usize,
        batch_first: bool,
        rng: &mut Rng,
    ) -> Result<MultiheadAttention> {
        if heads == 0 || !embed.is_multiple_of(heads) {
            return Err(Error::Data(format!(
                "MultiheadAttention: embed {embed} is not a multiple of {heads} heads"
            )));
        }
        let bound = (6.0 / (4 * embed) as f32).sqrt();
        let w: Vec<f32> = (0..3 * embed * embed)
            .map(|_| rng.range(-bound, bound))
            .collect();
        let mut out_proj = Linear::new(device, embed, embed, rng)?;
        out_proj.bias = Tensor::param(device, &vec![0.0; embed], &[embed])?;
        Ok(MultiheadAttention {
            in_proj_weight: Tensor::param(device, &w, &[3 * embed, embed])?,
            in_proj_bias: Tensor::param(device, &vec![0.0; 3 * embed], &[3 * embed])?,
            out_proj,
            embed,
            heads,
            batch_first,
            drop: None,
        })
    }

    /// Drops attention weights with probability `p` while training, masks drawn from `seed`
    /// (PyTorch's `dropout` argument).
    pub fn with_dropout(mut self, p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Data(format!(
                "MultiheadAttention: dropout {p} is not in [0, 1)"
            )));
        }
        self.drop = (p > 0.0).then(|| Dropout::new(p, seed));
        Ok(self)
    }

    /// Attention of `query` over `key` and `value`, with `mask`.
    #[track_caller]
    pub fn attend(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: AttentionMask<'_>,
    ) -> Tensor {
        let bm = |t: &Tensor| {
            if self.batch_first {
                t.clone()
            } else {
                t.permute(&[1, 0, 2])
            }
        };
        let (q, k, v) = (bm(query), bm(key), bm(value));
        let (e, h) = (self.embed, self.heads);
        let d = e / h;
        let project = |x: &Tensor, part: usize| {
            let w = self.in_proj_weight.narrow(0, part * e, e);
            let b = self.in_proj_bias.narrow(0, part * e, e);
            let (batch, seq) = (x.shape()[0], x.shape()[1]);
            // [batch, seq, e] → [batch, heads, seq, d]
            (x.matmul_t(&w, false, true) + &b)
                .reshape(&[batch, seq, h, d])
                .permute(&[0, 2, 1, 3])
        };
        let (batch, nq, nk) = (q.shape()[0], q.shape()[1], k.shape()[1]);
        // Masks given per (batch · head), as PyTorch takes them, lined up with the scores
        // [batch, heads, queries, keys].
        let per_head = |m: Option<&Tensor>| {
            m.map(|t| match t.shape().len() {
                3 => t.reshape(&[batch, h, nq, nk]),
                _ => t.clone(),
            })
        };
        let (additive, allowed) = (per_head(mask.additive), per_head(mask.allowed));
        let mask = AttentionMask {
            additive: additive.as_ref(),
            allowed: allowed.as_ref(),
            ..mask
        };
        let qkv = (&project(&q, 0), &project(&k, 1), &project(&v, 2));
        let out = attention(qkv, mask, self.drop.as_ref());
        let out = out.permute(&[0, 2, 1, 3]).reshape(&[batch, nq, e]);
        let out = self.out_proj.forward(&out);
        if self.batch_first {
            out
        } else {
            out.permute(&[1, 0, 2])
        }
    }
}

impl Module for MultiheadAttention {
    /// Self-attention of `x`, no mask.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.attend(x, x, x, AttentionMask::default())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("in_proj_weight".to_string(), self.in_proj_weight.clone()),
            ("in_proj_bias".to_string(), self.in_proj_bias.clone()),
        ];
        out.extend(self.out_proj.named("out_proj."));
        out
    }

    fn describe(&self) -> String {
        format!("MultiheadAttention({}, heads {})", self.embed, self.heads)
    }
}

/// Options of a [`TransformerEncoderLayer`], PyTorch's defaults.
#[derive(Clone, Copy, Debug)]
pub struct EncoderConfig {
    /// Width of the feed-forward block.
    pub dim_feedforward: usize,
    /// Dropout after attention, inside and after the feed-forward block, while training.
    pub dropout: f32,
    /// Inputs `[batch, seq, d_model]`; else `[seq, batch, d_model]`.
    pub batch_first: bool,
    /// Normalise before each block (pre-norm) instead of after the residual (post-norm).
    pub norm_first: bool,
    /// Added to the variance in the layer norms.
    pub layer_norm_eps: f32,
    /// Seed of the dropout masks.
    pub seed: u64,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            dim_feedforward: 2048,
            dropout: 0.1,
            batch_first: false,
            norm_first: false,
            layer_norm_eps: 1e-5,
            seed: 0,
        }
    }
}

/// Self-attention and a ReLU feed-forward block, each with a residual connection and a layer
/// norm, as PyTorch's `nn.TransformerEncoderLayer`: parameters `self_attn.*`, `linear1.*`,
/// `linear2.*`, `norm1.*`, `norm2.*`.
pub struct TransformerEncoderLayer {
    self_attn: MultiheadAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    drops: [Dropout; 3],
    config: EncoderConfig,
    training: Cell<bool>,
}

impl TransformerEncoderLayer {
    /// A layer over `d_model` features in `heads` heads.
    pub fn new(
        device: &Device,
        d_model: usize,
        heads: usize,
        config: EncoderConfig,
        rng: &mut Rng,
    ) -> Result<TransformerEncoderLayer> {
        let norm = NormConfig {
            eps: config.layer_norm_eps,
            ..NormConfig::default()
        };
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::Data(format!(
                "TransformerEncoderLayer: dropout {} is not in [0, 1)",
                config.dropout
            )));
        }
        // Mixed with a draw of `rng`, so that layers built from one config drop independently.
        let seed = config.seed ^ rng.next_u64();
        let drop = |k: u64| Dropout::new(config.dropout, seed.wrapping_add(k));
        let attention = MultiheadAttention::new(device, d_model, heads, config.batch_first, rng)?
            .with_dropout(config.dropout, seed)?;
        Ok(TransformerEncoderLayer {
            self_attn: attention,
            linear1: Linear::new(device, d_model, config.dim_feedforward, rng)?,
            linear2: Linear::new(device, config.dim_feedforward, d_model, rng)?,
            norm1: LayerNorm::new(device, &[d_model], norm)?,
            norm2: LayerNorm::new(device, &[d_model], norm)?,
            drops: [drop(1), drop(2), drop(3)],
            config,
            training: Cell::new(true),
        })
    }

    /// The layer applied to `x` with `mask` on its self-attention.
    pub fn encode(&self, x: &Tensor, mask: AttentionMask<'_>) -> Tensor {
        let attend = |y: &Tensor| self.drops[0].forward(&self.self_attn.attend(y, y, y, mask));
        let feed = |y: &Tensor| {
            let inner = self.drops[1].forward(&self.linear1.forward(y).relu());
            self.drops[2].forward(&self.linear2.forward(&inner))
        };
        if self.config.norm_first {
            let x = x + attend(&self.norm1.forward(x));
            &x + feed(&self.norm2.forward(&x))
        } else {
            let x = self.norm1.forward(&(x + attend(x)));
            self.norm2.forward(&(&x + feed(&x)))
        }
    }
}

impl Module for TransformerEncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.encode(x, AttentionMask::default())
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .self_attn
            .named_parameters()
            .into_iter()
            .map(|(n, t)| (format!("self_attn.{n}"), t))
            .collect();
        out.extend(self.linear1.named("linear1."));
        out.extend(self.linear2.named("linear2."));
        for (name, norm) in [("norm1", &self.norm1), ("norm2", &self.norm2)] {
            out.extend(
                norm.named_parameters()
                    .into_iter()
                    .map(|(n, t)| (format!("{name}.{n}"), t)),
            );
        }
        out
    }

    fn set_training(&self, training: bool) {
        self.training.set(training);
        let all = self.drops.iter().chain(&self.self_attn.drop);
        all.for_each(|d| d.set_training(training));
    }

    fn named_counters(&self) -> Vec<(String, u64)> {
        let all = self.drops.iter().chain(&self.self_attn.drop).enumerate();
        all.flat_map(|(i, d)| {
            let counters = d.named_counters().into_iter();
            counters.map(move |(n, v)| (format!("dropout{i}.{n}"), v))
        })
        .collect()
    }

    fn set_counter(&self, name: &str, value: u64) -> bool {
        let Some((head, rest)) = name.split_once('.') else {
            return false;
        };
        let index = head
            .strip_prefix("dropout")
            .and_then(|i| i.parse::<usize>().ok());
        let mut all = self.drops.iter().chain(&self.self_attn.drop);
        match index.and_then(|i| all.nth(i)) {
            Some(d) => d.set_counter(rest, value),
            None => false,
        }
    }

    fn is_training(&self) -> bool {
        self.training.get()
    }

    fn describe(&self) -> String {
        format!(
            "TransformerEncoderLayer({}, heads {}, feed-forward {}{})",
            self.self_attn.embed,
            self.self_attn.heads,
            self.config.dim_feedforward,
            if self.config.norm_first {
                ", pre-norm"
            } else {
                ""
            }
        )
    }
}

/// The sinusoidal position table `[positions, d]`: `sin(p / 10000^(2i/d))` at column 2i and
/// `cos` of the same at 2i + 1 (as in "Attention Is All You Need").
pub fn sinusoidal_positions(device: &Device, positions: usize, d: usize) -> Result<Tensor> {
    let mut table = vec![0.0f32; positions * d];
    for p in 0..positions {
        for c in 0..d {
            let rate = (10000f64).powf(-((c / 2 * 2) as f64) / d as f64);
            let angle = p as f64 * rate;
            table[p * d + c] = if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_slice(device, &table, &[positions, d])
}

/// Learned positions: a table `[max_len, d]` (drawn from N(0, 1), as an `nn.Embedding` of
/// positions) whose first T rows are added to a batch `[batch, T, d]`.
pub struct LearnedPositions {
    /// The table `[max_len, d]`.
    pub weight: Tensor,
}

impl LearnedPositions {
    /// Positions up to `max_len` of `d` features.
    pub fn new(device: &Device, max_len: usize, d: usize, rng: &mut Rng) -> Result<Self> {
        let w: Vec<f32> = (0..max_len * d).map(|_| rng.normal()).collect();
        Ok(LearnedPositions {
            weight: Tensor::param(device, &w, &[max_len, d])?,
        })
    }
}

impl Module for LearnedPositions {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let (time, max) = (x.shape()[1], self.weight.shape()[0]);
        assert!(
            time <= max,
            "LearnedPositions: {time} steps, the table holds {max}"
        );
        x + self.weight.narrow(0, 0, time)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".into(), self.weight.clone())]
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("LearnedPositions({}, {})", s[0], s[1])
    }
}
