//! Checks shared by the in-process tests (ranks as threads) and the MPI tests (ranks as
//! processes under mpirun).
#![allow(dead_code)]

use wgrad_dist::Ddp;
use wgrad_graph::{cross_entropy, Device, Result, Tensor};
use wgrad_nn::{
    models, Activation, Adam, DataParallel, Dataset, Dense, FitOptions, History, Mnist, Module,
    Optimizer, Rng, Samples, Sequential, Sgd, SgdConfig, Trainer,
};

/// The bundled MNIST subset.
pub fn mnist() -> Mnist {
    Mnist::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/mnist")).expect("bundled MNIST")
}

/// The first `n` samples of `data`.
pub fn head(data: &Dataset, n: usize) -> Dataset {
    let per = data.sample_shape.iter().product::<usize>();
    Dataset {
        images: data.images[..n * per].to_vec(),
        labels: data.labels[..n].to_vec(),
        sample_shape: data.sample_shape.clone(),
        classes: data.classes,
    }
}

/// Which network the equality check trains.
#[derive(Clone, Copy, Debug)]
pub enum Net {
    /// Flatten → Dense(784 → 32) → ReLU → Dense(32 → 10).
    Mlp,
    /// The MNIST CNN (`models::mnist_cnn`).
    Cnn,
}

pub fn build(net: Net, dev: &Device, seed: u64) -> Result<Sequential> {
    match net {
        Net::Mlp => {
            let mut rng = Rng::new(seed);
            Ok(Sequential::new()
                .add(wgrad_nn::Flatten)
                .add(Dense::new(dev, 784, 32, &mut rng)?)
                .add(Activation::Relu)
                .add(Dense::new(dev, 32, 10, &mut rng)?))
        }
        Net::Cnn => models::mnist_cnn(dev, seed),
    }
}

fn sgd(model: &Sequential) -> Sgd {
    let config = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        ..Default::default()
    };
    Sgd::with_config(model.parameters(), config)
}

/// What the equality check found.
#[derive(Debug)]
pub struct Report {
    /// Largest relative difference between a step's loss (the mean over ranks) and the
    /// single process's.
    pub loss_diff: f64,
    /// Largest absolute difference between a final weight and the single process's.
    pub weight_diff: f64,
    /// The losses of both, step by step.
    pub losses: Vec<(f32, f32)>,
    /// Whether every rank ended with rank 0's weights, bit for bit.
    pub ranks_agree: bool,
}

/// Trains `steps` steps of `per_rank` samples on every rank with `ddp`, and, on each rank,
/// the same steps as one process with batches `world × per_rank`; compares losses and
/// final weights. Every rank starts from its own seed, so the start-up broadcast matters.
pub fn equality(
    ddp: &Ddp,
    dev: &Device,
    net: Net,
    steps: usize,
    per_rank: usize,
) -> Result<Report> {
    let world = ddp.world_size();
    let data = head(&mnist().train, steps * per_rank * world);
    let order = wgrad_nn::data::epoch_order(data.len(), Some(5), 0);

    // One process, batches of world × per_rank.
    // Rank 0's seed: the ranks start from its weights.
    let single = build(net, dev, 100)?;
    let mut opt = sgd(&single);
    let mut reference = Vec::new();
    for picks in order.chunks(per_rank * world) {
        let (x, y) = data.batch(dev, picks)?;
        let loss = cross_entropy(&single.forward(&x), &y);
        opt.step_with(&loss.backward(), &[&loss])?;
        reference.push(loss.item()?);
    }

    // Every rank: its shard, the averaged gradients.
    let model = build(net, dev, 100 + ddp.rank() as u64)?;
    ddp.broadcast_module(&model)?;
    let mut opt = sgd(&model);
    let shard = ddp.shard(&order);
    let mut losses = Vec::new();
    for picks in shard.chunks(per_rank) {
        let (x, y) = data.batch(dev, picks)?;
        let loss = cross_entropy(&model.forward(&x), &y);
        let mut grads = loss.backward();
        ddp.average_gradients(opt.params(), &mut grads, &[&loss])?;
        opt.step_with(&grads, &[])?;
        let mut mean = [loss.item()? as f64];
        ddp.sum(&mut mean)?;
        losses.push((mean[0] / world as f64) as f32);
    }
    assert_eq!(losses.len(), steps);

    let mut loss_diff = 0f64;
    for (a, b) in losses.iter().zip(&reference) {
        loss_diff = loss_diff.max(((a - b).abs() / b.abs().max(1e-6)) as f64);
    }
    let mut weight_diff = 0f64;
    let mut mine = Vec::new();
    for (p, q) in model.parameters().iter().zip(single.parameters()) {
        let (p, q) = (p.to_vec()?, q.to_vec()?);
        for (a, b) in p.iter().zip(&q) {
            weight_diff = weight_diff.max((a - b).abs() as f64);
        }
        mine.extend(p.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut first = mine.clone();
    ddp.broadcast_bytes(&mut first)?;
    let mut agree = [(first == mine) as u8 as f64];
    ddp.sum(&mut agree)?;
    Ok(Report {
        loss_diff,
        weight_diff,
        losses: losses.into_iter().zip(reference).collect(),
        ranks_agree: agree[0] as usize == world,
    })
}

/// The reported figures as one line.
pub fn describe(report: &Report) -> String {
    format!(
        "losses within {:.2e} relative, final weights within {:.2e}, ranks agree: {}; first \
         and last step (ranks / one process): {:?} {:?}",
        report.loss_diff,
        report.weight_diff,
        report.ranks_agree,
        report.losses.first(),
        report.losses.last()
    )
}

/// Fails unless the check passed: the tolerances hold float reordering (a sum of two means
/// of 32 against a mean of 64), not a wrong gradient.
pub fn assert_equal(report: &Report) {
    println!("{}", describe(report));
    assert!(report.loss_diff < 1e-4, "{}", describe(report));
    assert!(report.weight_diff < 1e-4, "{}", describe(report));
    assert!(report.ranks_agree, "{}", describe(report));
}

/// Values of a tensor, for comparisons.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec().expect("readable")
}

/// Trains the MLP (seeded by rank: the start-up broadcast makes them equal) for `epochs` on
/// 600 training and 250 test digits through the `Trainer` with `ddp`, checkpointing into
/// `dir`; returns the history and the final weights.
pub fn fit_mlp(
    ddp: &Ddp,
    dev: &Device,
    dir: &std::path::Path,
    epochs: usize,
    resume: bool,
) -> Result<(History, Vec<f32>)> {
    let data = mnist();
    let (train, test) = (head(&data.train, 600), head(&data.test, 250));
    let model = build(Net::Mlp, dev, 9 + ddp.rank() as u64)?;
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let options = FitOptions {
        epochs,
        batch_size: 32,
        quiet: true,
        verbose: false,
        checkpoint_dir: Some(dir.to_path_buf()),
        resume,
        overwrite: !resume,
        ..Default::default()
    };
    let history = Trainer::new(&model, &mut opt, dev)
        .with_options(options)
        .with_data_parallel(ddp)
        .fit(&train, Some(&test))?;
    let mut weights = Vec::new();
    for p in model.parameters() {
        weights.extend(p.to_vec()?);
    }
    Ok((history, weights))
}
