//! The sequence classifier of the source material's text example, shared by
//! `sentiment_lstm` and the bench: Embedding(V, 100) → LSTM(100 → 128), GRU, or two
//! transformer encoder layers → Linear → one logit per sequence.

use wgrad::nn::{
    sinusoidal_positions, AttentionMask, Dense, Embedding, EncoderConfig, Gru, Lstm, Module, Rng,
    RnnConfig, TransformerEncoderLayer, Vocab,
};
use wgrad::{Device, Error, Result, Tensor};

/// The encoder between the embedding and the head.
pub enum Encoder {
    Lstm(Lstm),
    Gru(Gru),
    /// Encoder layers, and the position table `[max_len, 100]`.
    Transformer(Vec<TransformerEncoderLayer>, Tensor),
}

/// The classifier: PyTorch-style names `embedding.*`, `lstm.*` (or `gru.*`) and `fc.*`.
pub struct Classifier {
    embedding: Embedding,
    encoder: Encoder,
    fc: Dense,
}

impl Classifier {
    /// Embedding(`vocab`, 100), then `model` (lstm, gru or transformer over sequences of at
    /// most `max_len`), then a linear head to one logit.
    pub fn new(
        dev: &Device,
        vocab: usize,
        (model, max_len): (&str, usize),
        seed: u64,
    ) -> Result<Classifier> {
        let mut rng = Rng::new(seed);
        let embedding = Embedding::new(dev, vocab, 100, Some(Vocab::PAD as usize), &mut rng)?;
        let config = RnnConfig {
            batch_first: true,
            ..RnnConfig::default()
        };
        let encoder = match model {
            "lstm" => Encoder::Lstm(Lstm::new(dev, 100, 128, config, &mut rng)?),
            "gru" => Encoder::Gru(Gru::new(dev, 100, 128, config, &mut rng)?),
            "transformer" => {
                let config = EncoderConfig {
                    batch_first: true,
                    seed,
                    ..EncoderConfig::default()
                };
                let layers = (0..2)
                    .map(|_| TransformerEncoderLayer::new(dev, 100, 4, config, &mut rng))
                    .collect::<Result<_>>()?;
                Encoder::Transformer(layers, sinusoidal_positions(dev, max_len, 100)?)
            }
            other => {
                return Err(Error::Data(format!(
                    "--model {other}: choose lstm, gru or transformer"
                )))
            }
        };
        let width = match encoder {
            Encoder::Transformer(..) => 100,
            _ => 128,
        };
        let fc = Dense::new(dev, width, 1, &mut rng)?;
        Ok(Classifier {
            embedding,
            encoder,
            fc,
        })
    }
}

impl Module for Classifier {
    /// `u32` ids `[batch, time]` → logits `[batch]`.
    fn forward(&self, ids: &Tensor) -> Tensor {
        let x = self.embedding.forward(ids);
        let batch = ids.shape()[0];
        let h = match &self.encoder {
            Encoder::Lstm(l) => l.forward_with(&x, None).1 .0.reshape(&[batch, 128]),
            Encoder::Gru(g) => g.forward_with(&x, None).1.reshape(&[batch, 128]),
            Encoder::Transformer(layers, positions) => {
                // Padding is masked as keys and left out of the mean.
                let as_f32 = ids.cast(wgrad::DType::F32);
                let pad = as_f32.eq(&as_f32.scalar_like(Vocab::PAD as f32));
                let mask = AttentionMask {
                    key_padding: Some(&pad),
                    ..AttentionMask::default()
                };
                let mut y = x + positions;
                for layer in layers {
                    y = layer.encode(&y, mask);
                }
                let keep = (pad.scalar_like(1.0) - &pad).unsqueeze(2);
                let count = keep
                    .sum(&[1], false)
                    .maximum(&keep.sum(&[1], false).scalar_like(1.0));
                (y * &keep).sum(&[1], false) / count
            }
        };
        self.fc.forward(&h).reshape(&[batch])
    }

    fn legacy_transposed(&self) -> Vec<String> {
        vec!["fc.weight".into()]
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let (name, encoder) = match &self.encoder {
            Encoder::Lstm(l) => ("lstm", l.named_parameters()),
            Encoder::Gru(g) => ("gru", g.named_parameters()),
            Encoder::Transformer(layers, _) => {
                let mut all = Vec::new();
                for (k, layer) in layers.iter().enumerate() {
                    let params = layer.named_parameters().into_iter();
                    all.extend(params.map(|(n, t)| (format!("layers.{k}.{n}"), t)));
                }
                ("transformer", all)
            }
        };
        let mut out = Vec::new();
        for (prefix, params) in [
            ("embedding", self.embedding.named_parameters()),
            (name, encoder),
            ("fc", self.fc.named_parameters()),
        ] {
            out.extend(
                params
                    .into_iter()
                    .map(|(n, t)| (format!("{prefix}.{n}"), t)),
            );
        }
        out
    }

    fn set_training(&self, training: bool) {
        if let Encoder::Transformer(layers, _) = &self.encoder {
            layers.iter().for_each(|l| l.set_training(training));
        }
    }

    fn describe(&self) -> String {
        let encoder = match &self.encoder {
            Encoder::Lstm(l) => l.describe(),
            Encoder::Gru(g) => g.describe(),
            Encoder::Transformer(layers, _) => {
                format!("{} × {}", layers.len(), layers[0].describe())
            }
        };
        format!(
            "{} → {encoder} → {}",
            self.embedding.describe(),
            self.fc.describe()
        )
    }
}
