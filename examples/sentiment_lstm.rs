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
#[path = "common/sequence.rs"]
mod sequence;

use sequence::Classifier;
use wgrad::nn::text::tokenize;
use wgrad::nn::{
    io, Adam, BinaryCounts, FitOptions, Module, Padding, Sentiment, Sequences, Trainer, Vocab,
};
use wgrad::{Device, Error, Result};

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
    ("quiet", false, "no progress bar"),
];

/// Accuracy, precision, recall and F1 of `model` on `data`, in batches of 100, in
/// evaluation mode (no dropout).
fn evaluate(model: &Classifier, dev: &Device, data: &Sequences) -> Result<BinaryCounts> {
    model.set_training(false);
    let mut counts = BinaryCounts::default();
    let picks: Vec<usize> = (0..data.count()).collect();
    let result = picks.chunks(100).try_for_each(|chunk| {
        let (ids, targets) = data.batch(dev, chunk)?;
        counts.add(&wgrad::no_grad(|| model.forward(&ids)), &targets)
    });
    model.set_training(true);
    result.map(|_| counts)
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
        println!("test: {}", evaluate(&model, &dev, &test)?);
        return Ok(());
    }
    let save = args.path("save", "sentiment_lstm.safetensors");
    common::check_writable(&save)?;
    let mut opt = Adam::new(model.parameters(), lr);
    let options = FitOptions {
        epochs,
        batch_size: batch,
        seed,
        quiet: args.flag("quiet"),
        ..FitOptions::default()
    };
    // The test split is the validation data: its accuracy, precision, recall and F1 at 0.5
    // after every epoch.
    Trainer::new(&model, &mut opt, &dev)
        .with_options(options)
        .fit(&train, Some(&test))?;
    println!("test: {}", evaluate(&model, &dev, &test)?);
    io::save(&save, &model, None)?;
    println!("saved weights to {}", save.display());
    Ok(())
}

fn main() {
    common::exit_on_error(run());
}
