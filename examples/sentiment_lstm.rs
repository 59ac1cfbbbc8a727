//! Sentiment of short reviews with the source material's recurrent model:
//! Embedding(V, 100) → LSTM(100 → 128) → Linear(128 → 1) on the last hidden state, BCE with
//! logits, Adam (lr 1e-3), batch 32, 10 epochs, on the bundled 3,000 labelled sentences.
//!
//! Protocol, for comparison with PyTorch: in each file, line i is a test sentence when
//! i % 5 == 4 (2,400 training, 600 test); tokens `[a-z0-9']+` lowercased; the vocabulary of the
//! training split (0 padding, 1 unknown); at most 40 tokens, the last 40 kept, padded at the
//! front. `--model gru` swaps the encoder; `--model transformer` takes 2 encoder layers
//! (4 heads, d_model 100, sinusoidal positions), mean-pooled over the tokens that are not
//! padding.
//!
//! `cargo run --release --example sentiment_lstm [-- --help]`

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use wgrad::nn::text::tokenize;
use wgrad::nn::{
    io, sinusoidal_positions, Adam, AttentionMask, Dense, Embedding, EncoderConfig, Gru, Lstm,
    Module, Optimizer, Padding, Rng, RnnConfig, Sentiment, Sequences, TransformerEncoderLayer,
    Vocab,
};
use wgrad::{Device, Error, Result, Tensor};

const DEFAULT_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sentiment");

const OPTIONS: &[(&str, bool, &str)] = &[
    ("epochs", true, "training epochs (default 10)"),
    ("batch", true, "batch size (default 32)"),
    ("lr", true, "Adam learning rate (default 0.001)"),
    (
        "seed",
        true,
        "seed for initialisation and shuffling (default 0)",
    ),
    (
        "model",
        true,
        "the encoder: lstm, gru or transformer (default lstm)",
    ),
    (
        "data",
        true,
        "labelled sentence files or an aclImdb directory (default: the bundled data)",
    ),
    ("max-len", true, "tokens kept per text (default 40)"),
    (
        "min-count",
        true,
        "fewest uses of a word in the vocabulary (default 1)",
    ),
    (
        "max-vocab",
        true,
        "most ids in the vocabulary, padding and unknown included (default: all)",
    ),
    (
        "save",
        true,
        "where to save the trained weights (default sentiment_lstm.safetensors)",
    ),
    (
        "eval",
        true,
        "load weights from FILE, evaluate them on the test split and exit",
    ),
];

/// The encoder between the embedding and the head.
enum Encoder {
    Lstm(Lstm),
    Gru(Gru),
    /// Encoder layers, and the position table `[max_len, 100]`.
    Transformer(Vec<TransformerEncoderLayer>, Tensor),
}

/// The classifier: PyTorch-style names `embedding.*`, `lstm.*` (or `gru.*`) and `fc.*`.
struct Classifier {
    embedding: Embedding,
    encoder: Encoder,
    fc: Dense,
}

impl Classifier {
    fn new(
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

/// Accuracy of `model` on `data`, in batches of 100, in evaluation mode (no dropout).
fn accuracy(model: &Classifier, dev: &Device, data: &Sequences) -> Result<f32> {
    model.set_training(false);
    let result = count_right(model, dev, data);
    model.set_training(true);
    Ok(result? as f32 / data.count().max(1) as f32)
}

fn count_right(model: &Classifier, dev: &Device, data: &Sequences) -> Result<usize> {
    let mut right = 0;
    let picks: Vec<usize> = (0..data.count()).collect();
    for chunk in picks.chunks(100) {
        let (ids, _) = data.batch(dev, chunk)?;
        let logits = wgrad::no_grad(|| model.forward(&ids)).to_vec()?;
        for (&i, &z) in chunk.iter().zip(&logits) {
            right += ((z > 0.0) == (data.targets[i] > 0.5)) as usize;
        }
    }
    Ok(right)
}

fn run() -> Result<()> {
    let args = common::Args::parse("usage: sentiment_lstm [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let (epochs, batch): (usize, usize) = (args.get("epochs", 10), args.get("batch", 32));
    let lr: f32 = args.get("lr", 1e-3);
    let seed: u64 = args.get("seed", 0);
    let max_len: usize = args.get("max-len", 40);
    if epochs == 0 || batch == 0 || max_len == 0 {
        return Err(Error::Data(
            "--epochs, --batch and --max-len must be at least 1".into(),
        ));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::Data(format!(
            "--lr {lr}: give a positive learning rate"
        )));
    }
    let data = Sentiment::load(args.path("data", DEFAULT_DATA))?;
    let tokens: Vec<Vec<String>> = data.train.iter().map(|t| tokenize(&t.text)).collect();
    let max_vocab = args.values_get("max-vocab").map(|v| {
        v.parse().unwrap_or_else(|_| {
            eprintln!("error: --max-vocab {v}: not a number");
            std::process::exit(2)
        })
    });
    let vocab = Vocab::build(
        tokens.iter().map(|t| &t[..]),
        args.get("min-count", 1),
        max_vocab,
    );
    let train = Sequences::new(&data.train, &vocab, max_len, Padding::Pre);
    let test = Sequences::new(&data.test, &vocab, max_len, Padding::Pre);
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    let kind: String = args.get("model", "lstm".to_string());
    let model = Classifier::new(&dev, vocab.len(), (&kind, max_len), seed)?;
    println!(
        "{}; vocabulary {}, {} training and {} test texts",
        model.describe(),
        vocab.len(),
        train.count(),
        test.count()
    );
    if let Some(file) = args.values_get("eval") {
        io::load(file, &model, None)?;
        println!(
            "test accuracy {:.2}%",
            100.0 * accuracy(&model, &dev, &test)?
        );
        return Ok(());
    }
    let save = args.path("save", "sentiment_lstm.safetensors");
    common::check_writable(&save)?;
    let mut opt = Adam::new(model.parameters(), lr);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let steps = train.count().div_ceil(batch);
    for epoch in 1..=epochs {
        let start = Instant::now();
        let mut order: Vec<usize> = (0..train.count()).collect();
        rng.shuffle(&mut order);
        let mut total = 0.0;
        for (step, picks) in order.chunks(batch).enumerate() {
            let (ids, targets) = train.batch(&dev, picks)?;
            let loss = wgrad::bce_with_logits(&model.forward(&ids), &targets);
            opt.step_with(&loss.backward(), &[&loss])?;
            total += loss.item()? as f64 * picks.len() as f64;
            let done = (step + 1) * 30 / steps;
            eprint!(
                "\repoch {epoch:>2}/{epochs} [{:<30}] {}/{steps}",
                "=".repeat(done),
                step + 1
            );
        }
        let acc = accuracy(&model, &dev, &test)?;
        eprint!("\r");
        println!(
            "epoch {epoch:>2}/{epochs}: loss {:.4}, test accuracy {:.2}% ({:.1} s)",
            total / train.count() as f64,
            100.0 * acc,
            start.elapsed().as_secs_f64()
        );
    }
    io::save(&save, &model, None)?;
    println!("saved weights to {}", save.display());
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
