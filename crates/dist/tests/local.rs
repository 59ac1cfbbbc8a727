//! Data-parallel training with ranks as threads of one process (`LocalGroup`): the same
//! code paths as over MPI, checked against one process with the whole batch.

mod common;

use std::time::Duration;

use common::{assert_equal, build, equality, head, mnist, Net};
use wgrad_dist::{Communicator, Ddp, DistributedSampler, LocalGroup};
use wgrad_graph::{Device, Error, Result};
use wgrad_nn::{Adam, DataParallel, FitOptions, History, Module, Trainer};

/// Runs `f` on `world` threads, each a rank with its own device from `device`.
fn on_ranks<T: Send + 'static>(
    world: usize,
    bucket_bytes: usize,
    device: fn() -> Device,
    f: impl Fn(&Ddp, &Device) -> T + Send + Clone + 'static,
) -> Vec<T> {
    let handles: Vec<_> = LocalGroup::new(world, Duration::from_secs(120))
        .into_iter()
        .map(|comm| {
            let f = f.clone();
            std::thread::spawn(move || {
                let ddp = Ddp::new(comm).with_bucket_bytes(bucket_bytes);
                f(&ddp, &device())
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("rank"))
        .collect()
}

fn cpu() -> Device {
    wgrad_cpu::CpuBackend::device()
}

fn gpu() -> Option<Device> {
    match wgrad_device::GpuBackend::device() {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}");
            }
            println!("skipped: no GPU adapter ({e})");
            None
        }
    }
}

#[test]
fn two_ranks_of_32_match_one_process_of_64_on_the_cpu() {
    // Buckets of 8 KiB: the MLP's 25,450 gradients go in several all-reduces.
    let reports = on_ranks(2, 8 << 10, cpu, |ddp, dev| {
        let report = equality(ddp, dev, Net::Mlp, 20, 32).expect("equality");
        (report, ddp.stats())
    });
    for (report, stats) in &reports {
        assert_equal(report);
        assert_eq!(stats.steps, 20);
        // Tensors are not split: the first weight (25,088 values) fills a bucket of its
        // own, the other three share one, with the presence flags: 2 calls a step.
        assert_eq!(stats.calls, 20 * 2, "{stats:?}");
        assert_eq!(stats.bytes, 20 * (25_450 + 4) * 4, "{stats:?}");
    }
}

#[test]
fn three_ranks_match_one_process_on_the_gpu() {
    if gpu().is_none() {
        return;
    }
    let reports = on_ranks(
        3,
        25 << 20,
        || gpu().expect("adapter"),
        |ddp, dev| equality(ddp, dev, Net::Mlp, 10, 16).expect("equality"),
    );
    for report in &reports {
        assert_equal(report);
    }
}

#[test]
fn ranks_with_different_models_are_an_error_not_a_wrong_average() {
    let errors = on_ranks(2, 1 << 20, cpu, |ddp, dev| {
        // Rank 1 has one more hidden unit: as many tensors, other sizes.
        let mut rng = wgrad_nn::Rng::new(0);
        let hidden = 8 + ddp.rank();
        let model = wgrad_nn::Sequential::new()
            .add(wgrad_nn::Dense::new(dev, 4, hidden, &mut rng).unwrap())
            .add(wgrad_nn::Dense::new(dev, hidden, 2, &mut rng).unwrap());
        let broadcast = ddp.broadcast_module(&model).map_err(|e| e.to_string());
        let x = wgrad_graph::Tensor::from_slice(dev, &[0.5; 8], &[2, 4]).unwrap();
        let loss = model.forward(&x).sum_all();
        let mut grads = loss.backward();
        let averaged = ddp
            .average_gradients(&model.parameters(), &mut grads, &[])
            .map_err(|e| e.to_string());
        (ddp.rank(), broadcast, averaged)
    });
    for (rank, broadcast, averaged) in errors {
        if rank == 1 {
            let e = broadcast.expect_err("rank 1 cannot take rank 0's weights");
            assert!(e.contains("same model"), "{e}");
        }
        let e = averaged.expect_err("different layouts");
        assert!(e.contains("different models"), "rank {rank}: {e}");
    }
}

#[test]
fn a_rank_that_stops_is_a_timeout_error_on_the_others() {
    let comms = LocalGroup::new(2, Duration::from_millis(300));
    let mut values = [1.0f32, 2.0];
    // Rank 1 never joins.
    let e = comms[0].all_reduce_sum(&mut values).expect_err("alone");
    assert!(e.to_string().contains("waited"), "{e}");
}

/// Trains the MLP for `epochs` on 2 ranks through the `Trainer`, with checkpoints in `dir`.
fn fit_two_ranks(dir: &std::path::Path, epochs: usize, resume: bool) -> Vec<(History, Vec<f32>)> {
    let dir = dir.to_path_buf();
    on_ranks(2, 25 << 20, cpu, move |ddp, dev| {
        common::fit_mlp(ddp, dev, &dir, epochs, resume).unwrap()
    })
}

#[test]
fn the_trainer_over_two_ranks_reduces_metrics_checkpoints_once_and_resumes_exactly() {
    let root = std::env::temp_dir().join(format!("wgrad-ddp-trainer-{}", std::process::id()));
    let (straight, split) = (root.join("straight"), root.join("split"));
    let whole = fit_two_ranks(&straight, 2, false);
    // Both ranks report the same (reduced) figures and end with the same weights.
    assert_eq!(whole[0].1, whole[1].1);
    for (a, b) in whole[0].0.epochs.iter().zip(&whole[1].0.epochs) {
        assert_eq!(a.train_loss, b.train_loss);
        assert_eq!(a.val_loss, b.val_loss);
        assert_eq!(a.val_accuracy, b.val_accuracy);
    }
    // Rank 0 alone wrote one checkpoint per epoch.
    let mut files: Vec<String> = std::fs::read_dir(&straight)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["epoch-0001.safetensors", "epoch-0002.safetensors"]);

    // The sharded validation counts every test sample once: it agrees with one process
    // evaluating the final weights.
    let dev = cpu();
    let model = build(Net::Mlp, &dev, 0).unwrap();
    for (p, v) in model.parameters().iter().zip(chunks(&model, &whole[0].1)) {
        p.assign(&wgrad_graph::Tensor::from_slice(&dev, &v, p.shape()).unwrap())
            .unwrap();
    }
    let mut opt = Adam::new(model.parameters(), 0.0);
    let test = head(&mnist().test, 250);
    let e = Trainer::new(&model, &mut opt, &dev)
        .evaluate(&test)
        .unwrap();
    let last = whole[0].0.epochs.last().unwrap();
    assert_eq!(last.val_accuracy, Some(e.confusion.accuracy()));
    assert!((last.val_loss.unwrap() - e.loss).abs() < 1e-5 * e.loss.abs().max(1.0));

    // One epoch, then a resumed second: the straight run's weights, bit for bit.
    fit_two_ranks(&split, 1, false);
    let resumed = fit_two_ranks(&split, 2, true);
    assert_eq!(resumed[0].1, whole[0].1);
    assert_eq!(resumed[1].1, whole[1].1);
    assert_eq!(resumed[0].0.epochs.len(), 2);

    // A single process may not resume a 2-rank run: its epochs were cut otherwise.
    let model = build(Net::Mlp, &dev, 0).unwrap();
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let options = FitOptions {
        epochs: 3,
        checkpoint_dir: Some(split.clone()),
        resume: true,
        quiet: true,
        verbose: false,
        ..Default::default()
    };
    let e = Trainer::new(&model, &mut opt, &dev)
        .with_options(options)
        .fit(&head(&mnist().train, 600), None)
        .expect_err("world size differs");
    assert!(matches!(e, Error::Data(_)));
    assert!(e.to_string().contains("2 rank(s)"), "{e}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// `values` cut into the model's parameter sizes.
fn chunks(model: &dyn Module, values: &[f32]) -> Vec<Vec<f32>> {
    let mut at = 0;
    model
        .parameters()
        .iter()
        .map(|p| {
            at += p.numel();
            values[at - p.numel()..at].to_vec()
        })
        .collect()
}

#[test]
fn the_sampler_matches_what_the_ranks_train() {
    let ranks: Vec<Result<Vec<usize>>> = on_ranks(2, 1 << 20, cpu, |ddp, _| {
        Ok(ddp.shard(&(0..7).collect::<Vec<_>>()))
    });
    let shards: Vec<Vec<usize>> = ranks.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(shards, [vec![0, 2, 4, 6], vec![1, 3, 5, 0]]);
    assert_eq!(
        DistributedSampler::new(1, 2).shard(&(0..7).collect::<Vec<_>>()),
        shards[1]
    );
}

/// 64 points on a circle, as a data set of 2-feature samples.
fn circle() -> wgrad_nn::Dataset {
    let images = (0..64)
        .flat_map(|i| {
            let a = i as f32 * 0.1;
            [a.cos(), a.sin()]
        })
        .collect();
    wgrad_nn::Dataset {
        images,
        labels: vec![0; 64],
        sample_shape: vec![2],
        classes: 1,
    }
}

#[test]
fn a_custom_step_averages_through_its_metrics_and_one_that_does_not_is_stopped() {
    use wgrad_nn::{Activation, Dense, Gan, Metrics, Optimizer, Rng, Sequential, TrainStep};
    let options = FitOptions {
        epochs: 2,
        batch_size: 8,
        quiet: true,
        verbose: false,
        ..Default::default()
    };
    let first = options.clone();
    let nets = on_ranks(2, 1 << 20, cpu, move |ddp, dev| {
        let mut rng = Rng::new(ddp.rank() as u64);
        let mut dense = |i, o| Dense::new(dev, i, o, &mut rng).unwrap();
        let g = Sequential::new()
            .add(dense(4, 8))
            .add(Activation::Relu)
            .add(dense(8, 2));
        let d = Sequential::new()
            .add(dense(2, 8))
            .add(Activation::Relu)
            .add(dense(8, 1));
        let mut gan = Gan::new(g, d, 4, 0);
        let history = Trainer::custom(&mut gan, dev)
            .with_options(first.clone())
            .with_data_parallel(ddp)
            .fit(&circle(), None)
            .unwrap();
        let weights: Vec<f32> = gan
            .nets
            .parameters()
            .iter()
            .flat_map(|p| p.to_vec().unwrap())
            .collect();
        (history.epochs[1].extra.clone(), weights)
    });
    // Both nets trained alike on both ranks (each drew its own noise and data), and both
    // report the same reduced losses.
    assert_eq!(nets[0], nets[1]);

    struct Forgetful {
        model: Sequential,
        opt: Adam,
    }
    impl TrainStep for Forgetful {
        fn train_step(
            &mut self,
            x: &wgrad_graph::Tensor,
            _: &wgrad_graph::Tensor,
            _: usize,
            metrics: &mut Metrics,
        ) -> Result<()> {
            let loss = self.model.forward(x).sum_all();
            metrics.add("loss", &loss);
            self.opt.step_with(&loss.backward(), &metrics.pending())
        }
        fn parts(&mut self) -> (&dyn Module, Vec<(&'static str, &mut dyn Optimizer)>) {
            (&self.model, vec![("", &mut self.opt as &mut dyn Optimizer)])
        }
    }
    let errors = on_ranks(2, 1 << 20, cpu, move |ddp, dev| {
        let model = Sequential::new().add(Dense::new(dev, 2, 1, &mut Rng::new(0)).unwrap());
        let opt = Adam::new(model.parameters(), 1e-3);
        let mut step = Forgetful { model, opt };
        let e = Trainer::custom(&mut step, dev)
            .with_options(options.clone())
            .with_data_parallel(ddp)
            .fit(&circle(), None)
            .expect_err("no averaging");
        e.to_string()
    });
    for e in errors {
        assert!(e.contains("step 1: the custom step did not average"), "{e}");
    }
}
