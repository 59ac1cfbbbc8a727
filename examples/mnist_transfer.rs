//! Transfer learning on MNIST: train the MNIST CNN on digits 0–4, then freeze its
//! convolutional layers, replace its head, and fine-tune it on digits 5–9 with only 10% of
//! their training images. The same network trained from scratch on that 10%, with the same
//! budget, is the comparison: the features learnt on other digits should carry over.
//!
//! `cargo run --release --example mnist_transfer [-- --help]`

#[path = "common/mod.rs"]
mod common;

use wgrad::nn::{
    models, Adam, Dataset, Dense, FitOptions, Mnist, Module, Rng, Sequential, Trainer,
};
use wgrad::{Device, Error, Result};

const OPTIONS: &[(&str, bool, &str)] = &[
    ("pretrain-epochs", true, "epochs on digits 0–4 (default 3)"),
    (
        "epochs",
        true,
        "epochs on the 10% of digits 5–9, fine-tuned and from scratch alike (default 10)",
    ),
    ("batch", true, "batch size (default 32)"),
    (
        "runs",
        true,
        "runs from seeds seed, seed + 1, …, averaged (default 3)",
    ),
    ("lr", true, "Adam learning rate (default 0.001)"),
    (
        "fraction",
        true,
        "share of the 5–9 training images used (default 0.1)",
    ),
    (
        "seed",
        true,
        "seed for initialisation and shuffling (default 0)",
    ),
    (
        "data",
        true,
        "directory with the MNIST IDX files (default: the bundled subset)",
    ),
    (
        "png",
        true,
        "where to draw both networks' accuracy per epoch (default mnist_transfer.png)",
    ),
    ("quiet", false, "no progress bar"),
];

/// The images of `d` whose label `keep` accepts, every `step`-th of them, relabelled
/// `label - offset`, with `classes` classes.
fn subset(d: &Dataset, (low, high): (u32, u32), step: usize, classes: usize) -> Dataset {
    let f = d.features();
    let mut out = Dataset {
        images: Vec::new(),
        labels: Vec::new(),
        sample_shape: d.sample_shape.clone(),
        classes,
    };
    let picks = (0..d.labels.len()).filter(|&i| (low..=high).contains(&d.labels[i]));
    for i in picks.step_by(step.max(1)) {
        out.images.extend_from_slice(&d.images[i * f..(i + 1) * f]);
        out.labels.push(d.labels[i] - low);
    }
    out
}

/// The MNIST CNN with a head of five classes.
fn five_class_cnn(dev: &Device, seed: u64) -> Result<Sequential> {
    let mut model = models::mnist_cnn(dev, seed)?;
    model.replace(11, Dense::new(dev, 64, 5, &mut Rng::new(seed ^ 0x4ead))?)?;
    Ok(model)
}

/// Trains `model` and returns its test accuracy after each epoch.
fn fit(
    dev: &Device,
    model: &Sequential,
    data: (&Dataset, &Dataset),
    options: FitOptions,
    lr: f32,
) -> Result<Vec<f64>> {
    let mut opt = Adam::new(model.parameters(), lr);
    let history = Trainer::new(model, &mut opt, dev)
        .with_options(options)
        .fit(data.0, Some(data.1))?;
    Ok(history
        .epochs
        .iter()
        .map(|e| e.val_accuracy.unwrap_or(0.0))
        .collect())
}

/// The last of a run's accuracies.
fn last(accuracies: &[f64]) -> f64 {
    accuracies.last().copied().unwrap_or(0.0)
}

fn run() -> Result<()> {
    let args = common::Args::parse("usage: mnist_transfer [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let (pre_epochs, epochs): (usize, usize) =
        (args.get("pretrain-epochs", 3), args.get("epochs", 10));
    let batch: usize = args.get("batch", 32);
    let fraction: f64 = args.get("fraction", 0.1);
    if pre_epochs == 0 || epochs == 0 || batch == 0 || !(fraction > 0.0 && fraction <= 1.0) {
        return Err(Error::Data(
            "--pretrain-epochs, --epochs and --batch must be at least 1, --fraction in (0, 1]"
                .into(),
        ));
    }
    let (seed, lr): (u64, f32) = (args.get("seed", 0), args.get("lr", 1e-3));
    let data = Mnist::load(args.path("data", common::DEFAULT_DATA))?;
    common::check_writable(&args.path("png", "mnist_transfer.png"))?;
    let dev = wgrad::default_device();
    println!("device: {}", dev.name());
    let step = (1.0 / fraction).round() as usize;
    let (first_train, first_test) = (
        subset(&data.train, (0, 4), 1, 5),
        subset(&data.test, (0, 4), 1, 5),
    );
    let (second_train, second_test) = (
        subset(&data.train, (5, 9), step, 5),
        subset(&data.test, (5, 9), 1, 5),
    );
    println!(
        "digits 0–4: {} training and {} test images; digits 5–9: {} training images ({:.0}%) and {} test images",
        first_train.labels.len(),
        first_test.labels.len(),
        second_train.labels.len(),
        100.0 / step as f64,
        second_test.labels.len()
    );
    let runs: u64 = args.get("runs", 3);
    let mut results = Vec::new();
    for run in 0..runs.max(1) {
        let seed = seed + run;
        println!("\n== run {} of {}, seed {seed}", run + 1, runs.max(1));
        let options = |epochs| FitOptions {
            epochs,
            batch_size: batch,
            seed,
            quiet: args.flag("quiet"),
            verbose: !args.flag("quiet"),
            ..FitOptions::default()
        };
        results.push(compare(
            &dev,
            seed,
            lr,
            [(&first_train, &first_test), (&second_train, &second_test)],
            [options(pre_epochs), options(epochs)],
        )?);
    }
    let n = results.len() as f64;
    let mean = |i: usize| results.iter().map(|r| last(&r[i])).sum::<f64>() / n * 100.0;
    println!(
        "\naccuracy on the {} test images of digits 5–9, mean of {} runs: transferred {:.2}%, \
         from scratch {:.2}% ({} epochs on {} images each; the base networks reached {:.2}% \
         on digits 0–4)",
        second_test.labels.len(),
        results.len(),
        mean(1),
        mean(2),
        epochs,
        second_train.labels.len(),
        mean(0),
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "  run {}: transferred {:.2}%, from scratch {:.2}%",
            i + 1,
            last(&r[1]) * 100.0,
            last(&r[2]) * 100.0
        );
    }
    // Mean test accuracy per epoch of both, over the runs.
    let per_epoch = |i: usize| -> Vec<f64> {
        (0..epochs)
            .map(|e| {
                results
                    .iter()
                    .map(|r| r[i].get(e).copied().unwrap_or(0.0))
                    .sum::<f64>()
                    / n
            })
            .collect()
    };
    let png = args.path("png", "mnist_transfer.png");
    wgrad::plot::save_curves_png(
        &[
            ("transferred: frozen features, new head", per_epoch(1)),
            ("from scratch", per_epoch(2)),
        ],
        (
            "Digits 5–9 from 10% of their images",
            "test accuracy (mean of the runs)",
        ),
        &png,
    )?;
    println!(
        "drew both networks' test accuracy per epoch in {}",
        png.display()
    );
    Ok(())
}

/// One run: the base network's accuracy per epoch on digits 0–4, then on 5–9 the
/// transferred network's and the one trained from scratch.
fn compare(
    dev: &Device,
    seed: u64,
    lr: f32,
    [first, second]: [(&Dataset, &Dataset); 2],
    [pre, fine]: [FitOptions; 2],
) -> Result<[Vec<f64>; 3]> {
    println!("1. the CNN on digits 0–4");
    let mut model = five_class_cnn(dev, seed)?;
    let base = fit(dev, &model, first, pre, lr)?;

    println!(
        "2. its convolutional layers frozen, a new head, digits 5–9 ({} images)",
        second.0.labels.len()
    );
    // Layers 0–8 (convolutions, pooling, flatten) are the features, kept and frozen; the
    // head (layers 9–11: Dense, relu, Dense) is new.
    for i in 0..9 {
        model.get(i).expect("the CNN has 12 layers").freeze();
    }
    let mut head = Rng::new(seed ^ 0x5e7);
    model.replace(9, Dense::new(dev, 64 * 3 * 3, 64, &mut head)?)?;
    model.replace(11, Dense::new(dev, 64, 5, &mut head)?)?;
    println!("{}", model.summary());
    let transfer = fit(dev, &model, second, fine.clone(), lr)?;

    println!("3. the same network from scratch on the same images");
    let scratch_model = five_class_cnn(dev, seed ^ 0x5c7a)?;
    let scratch = fit(dev, &scratch_model, second, fine, lr)?;
    Ok([base, transfer, scratch])
}

fn main() {
    common::exit_on_error(run());
}
