//! Data-parallel training speed over MPI: MNIST CNN training steps per second at the job's
//! number of ranks, the bytes each rank all-reduces per step, and the share of a step spent
//! computing and reading gradients, communicating and writing them back. Before it is
//! timed, the job's first step is checked against one process training the whole batch.
//!
//! ```sh
//! cargo build --release --features mpi --example bench_dist
//! mpirun -np 1 target/release/examples/bench_dist
//! mpirun -np 2 target/release/examples/bench_dist
//! ```

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use wgrad::dist::Ddp;
use wgrad::nn::{Adam, DataParallel, Mnist, Module, Optimizer, Samples};
use wgrad::{cross_entropy, Error, Result};

const OPTIONS: &[(&str, bool, &str)] = &[
    ("batch", true, "samples per rank and step (default 64)"),
    ("steps", true, "timed steps (default 30, after 3 untimed)"),
    (
        "bucket-mb",
        true,
        "all-reduce bucket size in MiB (default 25)",
    ),
];

fn run(args: &common::Args, ddp: &Ddp) -> Result<()> {
    let batch: usize = args.get("batch", 64);
    let steps: usize = args.get("steps", 30);
    let data = Mnist::load(common::DEFAULT_DATA)?.train;
    let dev = common::device(Some(ddp));
    let world = ddp.world_size();
    let main = ddp.is_main();
    if batch * world * (steps + 3) > data.len() * 4 {
        return Err(Error::Data("too many steps for the bundled data".into()));
    }

    // The first step of the job against one process with the whole batch.
    let whole: Vec<usize> = (0..batch * world).collect();
    let single = common::mnist_cnn_model(&dev, 0)?;
    let (x, y) = data.batch(&dev, &whole)?;
    let expected = cross_entropy(&single.forward(&x), &y);
    let grads = expected.backward();
    let mut reference = Vec::new();
    for p in single.parameters() {
        reference.extend(grads.wrt(&p).to_vec()?);
    }

    let model = common::mnist_cnn_model(&dev, 0)?;
    ddp.broadcast_module(&model)?;
    let mine = ddp.shard(&whole);
    let (x, y) = data.batch(&dev, &mine)?;
    let loss = cross_entropy(&model.forward(&x), &y);
    let mut grads = loss.backward();
    ddp.average_gradients(&model.parameters(), &mut grads, &[&loss])?;
    let mut averaged = Vec::new();
    for p in model.parameters() {
        averaged.extend(grads.wrt(&p).to_vec()?);
    }
    let diff = averaged
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-3))
        .fold(0f32, f32::max);
    if diff > 1e-3 {
        return Err(Error::Data(format!(
            "the averaged gradient differs from one process's by {diff:.2e} (relative)"
        )));
    }

    let mut opt = Adam::new(model.parameters(), 1e-3);
    let order: Vec<usize> = (0..data.len())
        .cycle()
        .take(batch * world * (steps + 3))
        .collect();
    let shard = ddp.shard(&order);
    let mut batches = shard.chunks(batch);
    let mut step = || -> Result<()> {
        let picks = batches.next().expect("enough batches");
        let (x, y) = data.batch(&dev, picks)?;
        let loss = cross_entropy(&model.forward(&x), &y);
        let mut grads = loss.backward();
        ddp.average_gradients(opt.params(), &mut grads, &[&loss])?;
        opt.step_with(&grads, &[])?;
        loss.item().map(|_| ())
    };
    for _ in 0..3 {
        step()?;
    }
    ddp.communicator().barrier()?;
    let before = ddp.stats();
    let started = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    ddp.communicator().barrier()?;
    let seconds = started.elapsed().as_secs_f64();
    let s = ddp.stats();
    let per_step =
        |d: std::time::Duration, b: std::time::Duration| (d - b).as_secs_f64() / steps as f64 * 1e3;
    let step_ms = seconds / steps as f64 * 1e3;
    let communicating = per_step(s.communicating, before.communicating);
    let mut figures = [
        communicating,
        per_step(s.reading, before.reading),
        per_step(s.writing, before.writing),
    ];
    // The slowest rank's share decides; report the mean over ranks.
    ddp.sum(&mut figures)?;
    let figures = figures.map(|f| f / world as f64);
    if main {
        println!("device: {}", dev.name());
        println!(
            "cnn_step_ddp ranks {world}: batch {batch} per rank ({} per step), first step's \
             averaged gradient within {diff:.1e} of one process's",
            batch * world
        );
        println!(
            "  {:.2} steps/s, {:.0} samples/s, {step_ms:.1} ms per step",
            steps as f64 / seconds,
            (steps * batch * world) as f64 / seconds
        );
        println!(
            "  all-reduced per step and rank: {} bytes in {} call(s)",
            (s.bytes - before.bytes) / steps as u64,
            (s.calls - before.calls) / steps as u64
        );
        println!(
            "  per step (mean over ranks): communicating {:.2} ms ({:.1} %), forward + \
             backward + reading gradients {:.1} ms, writing averages {:.2} ms",
            figures[0],
            figures[0] / step_ms * 100.0,
            figures[1],
            figures[2]
        );
    }
    Ok(())
}

fn main() {
    let args = common::Args::parse("usage: mpirun -np N bench_dist [OPTIONS]", OPTIONS);
    wgrad::init_logging();
    let bucket: f64 = args.get("bucket-mb", 25.0);
    let ddp = common::exit_on_error(Ddp::from_mpi())
        .with_bucket_bytes((bucket * (1 << 20) as f64) as usize);
    common::exit_ranked(run(&args, &ddp), Some(&ddp));
}
