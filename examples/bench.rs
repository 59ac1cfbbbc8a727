//! Benchmarks for the adapter wgrad picks and for the CPU backend: GFLOP/s of matmul and
//! conv2d, ms of pooling, training steps per second, cost per dispatch, cold start and peak
//! memory. Every workload's result is checked against the CPU backend before it is timed.
//!
//! `cargo run --release --example bench [-- --json FILE] [--quick] [--big] [--skip-cpu]`
//!
//! Training steps also report `NAME_host` on the GPU: the host's share of a step (graph,
//! backward pass, scheduling, recording, submitting), the device's work waited for outside
//! the clock.

#[path = "common/mod.rs"]
mod common;
#[path = "common/sequence.rs"]
mod sequence;

use std::time::Instant;

use wgrad::graph::{Conv2dSpec, Pool2dSpec};
use wgrad::nn::{Activation, Adam, Dense, Module, Optimizer, Rng, Sequential};
use wgrad::{Device, Result, Tensor};

/// The work a kernel row does, for its rate.
#[derive(Clone, Copy)]
enum Work {
    /// Floating-point operations: GFLOP/s.
    Flop(f64),
    /// Bytes read: GB/s.
    Bytes(f64),
    /// A time only.
    None,
}

/// One row of the report.
#[derive(Clone, Debug)]
struct Record {
    name: String,
    backend: &'static str,
    adapter: String,
    median_ms: Option<f64>,
    min_ms: Option<f64>,
    gflops: Option<f64>,
    gbps: Option<f64>,
    steps_per_s: Option<f64>,
    cold_ms: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Record {
    fn new(name: &str, dev: &Device) -> Record {
        Record {
            name: name.to_string(),
            backend: if dev.is_gpu() { "gpu" } else { "cpu" },
            adapter: dev.name(),
            median_ms: None,
            min_ms: None,
            gflops: None,
            gbps: None,
            steps_per_s: None,
            cold_ms: None,
            peak_rss_mb: None,
        }
    }

    fn json(&self) -> String {
        let num = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.4}"));
        format!(
            "{{\"name\": \"{}\", \"backend\": \"{}\", \"adapter\": \"{}\", \"median_ms\": {}, \"min_ms\": {}, \"gflops\": {}, \"gbps\": {}, \"steps_per_s\": {}, \"cold_ms\": {}, \"peak_rss_mb\": {}}}",
            self.name,
            self.backend,
            self.adapter.replace('"', "'"),
            num(self.median_ms),
            num(self.min_ms),
            num(self.gflops),
            num(self.gbps),
            num(self.steps_per_s),
            num(self.cold_ms),
            num(self.peak_rss_mb)
        )
    }
}

/// Runs `f` (which must finish its work before returning) `warmup` times untimed, then
/// `repeats` times timed; returns (median, min) in ms.
fn time(warmup: usize, repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok((ms[ms.len() / 2], ms[0]))
}

/// Realises `t` and waits for it by reading one element (the clock stops after the device).
fn finish(t: &Tensor) -> Result<()> {
    t.realize()?;
    t.reshape(&[t.numel()]).narrow(0, 0, 1).to_vec()?;
    Ok(())
}

fn random(dev: &Device, shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0)).collect();
    Tensor::from_slice(dev, &v, shape)
}

/// Fails loudly when `got` differs from the CPU's `want` beyond `|d| <= atol + rtol·|want|`.
fn verify(name: &str, got: &[f32], want: &[f32], atol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: result length differs from the CPU backend"
    );
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if (g - w).abs() > atol * scale + 1e-3 * w.abs() || !g.is_finite() {
            panic!("{name}: WRONG RESULT at {i}: got {g}, CPU backend gives {w}");
        }
    }
}

/// Inputs and targets of a training step, drawn from a seed.
type Batches<'a> = dyn Fn(&Device, u64) -> Result<(Tensor, Tensor)> + 'a;

/// A workload: its inputs on a device and the computation on them.
type Workload = (Vec<Tensor>, Box<dyn Fn(&[Tensor]) -> Tensor>);

struct Bench {
    gpu: Option<Device>,
    cpu: Device,
    quick: bool,
    skip_cpu: bool,
    /// Workload names given with `--only`; empty runs them all.
    only: Vec<String>,
    /// Timed repeats per workload from `--repeats`; the defaults otherwise.
    repeats: Option<usize>,
    records: Vec<Record>,
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }

    fn repeats(&self, dev: &Device) -> (usize, usize) {
        match (self.repeats, self.quick, dev.is_gpu()) {
            (Some(n), _, _) => (1, n),
            (None, true, _) => (1, 3),
            (None, false, true) => (2, 7),
            (None, false, false) => (1, 3),
        }
    }

    /// Times `build(device)` on each backend after checking the GPU result against the CPU's;
    /// `work` gives the rate reported.
    fn kernel(
        &mut self,
        name: &str,
        work: Work,
        atol: f32,
        build: &dyn Fn(&Device) -> Result<Workload>,
    ) -> Result<()> {
        if !self.wanted(name) {
            return Ok(());
        }
        let (cpu_inputs, f) = build(&self.cpu)?;
        let want = f(&cpu_inputs).to_vec()?;
        let mut devices: Vec<Device> = self.gpu.iter().cloned().collect();
        if !self.skip_cpu {
            devices.push(self.cpu.clone());
        }
        for dev in devices {
            let (inputs, f) = build(&dev)?;
            if dev.is_gpu() {
                verify(name, &f(&inputs).to_vec()?, &want, atol);
            }
            let (warm, reps) = self.repeats(&dev);
            let (median, min) = time(warm, reps, || finish(&f(&inputs)))?;
            let mut r = Record::new(name, &dev);
            r.median_ms = Some(median);
            r.min_ms = Some(min);
            match work {
                Work::Flop(flop) => r.gflops = Some(flop / (median * 1e-3) / 1e9),
                Work::Bytes(bytes) => r.gbps = Some(bytes / (median * 1e-3) / 1e9),
                Work::None => {}
            }
            self.push(r);
        }
        Ok(())
    }

    fn push(&mut self, r: Record) {
        // Sub-0.1 ms times (per-dispatch costs) read better in µs.
        let fmt = |v: Option<f64>, unit: &str| match v {
            Some(x) if unit == "ms" && x < 0.1 => format!("{:.1} µs", x * 1e3),
            Some(x) => format!("{x:.2} {unit}"),
            None => String::new(),
        };
        println!(
            "{:<14} {:<4} {:>12} {:>12} {:>14} {:>14} {:>12}",
            r.name,
            r.backend,
            fmt(r.median_ms, "ms"),
            fmt(r.min_ms, "ms"),
            match r.gbps {
                Some(_) => fmt(r.gbps, "GB/s"),
                None => fmt(r.gflops, "GFLOP/s"),
            },
            fmt(r.steps_per_s, "steps/s"),
            fmt(r.cold_ms, "ms"),
        );
        self.records.push(r);
    }

    /// Training steps per second of `model` on random batches, after checking that the
    /// first steps' losses agree with the CPU backend's.
    /// Training steps per second of a classifier over `input` with `classes` classes (Adam,
    /// cross-entropy), after checking three steps' losses against the CPU backend.
    fn training(
        &mut self,
        name: &str,
        make: &dyn Fn(&Device) -> Result<Sequential>,
        input: &[usize],
        classes: usize,
    ) -> Result<()> {
        let batch = |dev: &Device, seed: u64| -> Result<(Tensor, Tensor)> {
            let x = random(dev, input, seed)?;
            let mut rng = Rng::new(seed);
            let y: Vec<u32> = (0..input[0]).map(|_| rng.below(classes) as u32).collect();
            Ok((x, Tensor::from_u32(dev, &y, &[input[0]])?))
        };
        let make = |dev: &Device| -> Result<Box<dyn Module>> { Ok(Box::new(make(dev)?)) };
        self.steps(name, &make, &batch, wgrad::cross_entropy)
    }

    /// Training steps per second of `make`'s model on `batch`'s data with `loss` (Adam),
    /// after checking three steps' losses against the CPU backend; on the GPU also the
    /// host's share of a step (`NAME_host`).
    fn steps(
        &mut self,
        name: &str,
        make: &dyn Fn(&Device) -> Result<Box<dyn Module>>,
        batch: &Batches<'_>,
        loss: fn(&Tensor, &Tensor) -> Tensor,
    ) -> Result<()> {
        if !self.wanted(name) {
            return Ok(());
        }
        let losses = |dev: &Device, steps: usize| -> Result<Vec<f32>> {
            let model = make(dev)?;
            let mut opt = Adam::new(model.parameters(), 1e-3);
            let (x, y) = batch(dev, 1)?;
            (0..steps)
                .map(|_| {
                    let l = loss(&model.forward(&x), &y);
                    opt.step_with(&l.backward(), &[&l])?;
                    l.item()
                })
                .collect()
        };
        let want = losses(&self.cpu, 3)?;
        let mut devices: Vec<Device> = self.gpu.iter().cloned().collect();
        if !self.skip_cpu {
            devices.push(self.cpu.clone());
        }
        for dev in devices {
            if dev.is_gpu() {
                verify(name, &losses(&dev, 3)?, &want, 1e-3);
            }
            let model = make(&dev)?;
            let mut opt = Adam::new(model.parameters(), 1e-3);
            let (x, y) = batch(&dev, 2)?;
            let mut step = || -> Result<()> {
                let l = loss(&model.forward(&x), &y);
                opt.step_with(&l.backward(), &[&l])?;
                l.item().map(|_| ())
            };
            let (warm, reps) = self.repeats(&dev);
            let (median, min) = time(warm + 1, reps * 2, &mut step)?;
            let mut r = Record::new(name, &dev);
            r.median_ms = Some(median);
            r.min_ms = Some(min);
            r.steps_per_s = Some(1e3 / median);
            self.push(r);
            if dev.is_gpu() {
                // The host's share of a step: building the graph and its backward pass,
                // scheduling, recording and submitting. The device's work is waited for
                // outside the clock.
                let mut ms: Vec<f64> = Vec::new();
                for _ in 0..reps * 2 {
                    let start = Instant::now();
                    let l = loss(&model.forward(&x), &y);
                    opt.step_with(&l.backward(), &[&l])?;
                    ms.push(start.elapsed().as_secs_f64() * 1e3);
                    l.item()?;
                }
                ms.sort_by(|a, b| a.total_cmp(b));
                let mut r = Record::new(&format!("{name}_host"), &dev);
                r.median_ms = Some(ms[ms.len() / 2]);
                r.min_ms = Some(ms[0]);
                self.push(r);
            }
        }
        Ok(())
    }

    /// A training step of the sentiment example's classifier (`sequence.rs`) with encoder
    /// `kind`: batch 32 of 40 tokens, vocabulary 4,615, one logit per sequence and BCE.
    fn sequence_step(&mut self, name: &str, kind: &'static str) -> Result<()> {
        let make = move |dev: &Device| -> Result<Box<dyn Module>> {
            let model = sequence::Classifier::new(dev, 4615, (kind, 40), 0)?;
            // Dropout off: the losses are compared across backends.
            model.set_training(false);
            Ok(Box::new(model))
        };
        let batch = |dev: &Device, seed: u64| -> Result<(Tensor, Tensor)> {
            let mut rng = Rng::new(seed);
            // Sequences padded at the front to lengths of 5 to 40 tokens.
            let ids: Vec<u32> = (0..32)
                .flat_map(|_| {
                    let len = 5 + rng.below(36);
                    let tokens: Vec<u32> = (0..40)
                        .map(|t| {
                            if t < 40 - len {
                                0
                            } else {
                                2 + rng.below(4613) as u32
                            }
                        })
                        .collect();
                    tokens
                })
                .collect();
            let y: Vec<f32> = (0..32).map(|_| rng.below(2) as f32).collect();
            Ok((
                Tensor::from_u32(dev, &ids, &[32, 40])?,
                Tensor::from_slice(dev, &y, &[32])?,
            ))
        };
        self.steps(name, &make, &batch, wgrad::bce_with_logits)
    }
}

fn mnist_cnn(dev: &Device) -> Result<Sequential> {
    common::mnist_cnn_model(dev, 0)
}

fn mlp(dev: &Device) -> Result<Sequential> {
    let mut rng = Rng::new(0);
    Ok(Sequential::new()
        .add(Dense::new(dev, 784, 128, &mut rng)?)
        .add(Activation::Relu)
        .add(Dense::new(dev, 128, 10, &mut rng)?))
}

/// Peak resident memory of this process in MB (Linux), from `/proc/self/status`.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The child process of the cold-start measurement: device, one 256² matmul, read back.
fn first_result() -> Result<()> {
    let dev = wgrad::gpu()?;
    let a = random(&dev, &[256, 256], 1)?;
    let v = a.matmul(&a).to_vec()?;
    println!("first result ok ({} values)", v.len());
    Ok(())
}

fn run() -> Result<()> {
    if std::env::args().any(|a| a == "--first-result") {
        return first_result();
    }
    let args = common::Args::parse(
        "usage: bench [--json FILE] [--quick] [--big] [--skip-cpu] [--only NAME,...] [--repeats N]",
        &[
            ("json", true, "also write the records as a JSON array"),
            ("quick", false, "fewer repeats and smaller matmuls"),
            ("big", false, "also matmul_4096 (for real GPUs)"),
            (
                "skip-cpu",
                false,
                "time only the GPU (results are still checked on the CPU)",
            ),
            (
                "only",
                true,
                "run only these workloads (comma-separated names)",
            ),
            (
                "repeats",
                true,
                "timed repeats per workload (default 7 on the GPU, 3 on the CPU and with --quick)",
            ),
        ],
    );
    let gpu = match wgrad::gpu() {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("warning: {e}; benchmarking the CPU backend only");
            None
        }
    };
    let mut b = Bench {
        gpu,
        cpu: wgrad::cpu(),
        quick: args.flag("quick"),
        skip_cpu: args.flag("skip-cpu"),
        only: args
            .values_get("only")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        repeats: match args.get("repeats", 0usize) {
            0 => None,
            n => Some(n),
        },
        records: vec![],
    };
    if let Some(g) = &b.gpu {
        println!("adapter: {}", g.name());
    }
    println!(
        "{:<14} {:<4} {:>12} {:>12} {:>14} {:>14} {:>12}",
        "name", "", "median", "min", "GFLOP/s", "steps/s", "cold"
    );

    let sizes: &[usize] = match (b.quick, args.flag("big")) {
        (true, _) => &[256, 512],
        (false, false) => &[256, 512, 1024, 2048],
        (false, true) => &[256, 512, 1024, 2048, 4096],
    };
    for &n in sizes {
        b.kernel(
            &format!("matmul_{n}"),
            Work::Flop(2.0 * (n as f64).powi(3)),
            1e-4,
            &move |dev| {
                let a = random(dev, &[n, n], 1)?;
                let c = random(dev, &[n, n], 2)?;
                Ok((vec![a, c], Box::new(|t: &[Tensor]| t[0].matmul(&t[1]))))
            },
        )?;
    }
    let conv = |name: &str, x: [usize; 4], w: [usize; 4], pad: usize| {
        let out_hw = (x[2] + 2 * pad - w[2] + 1) * (x[3] + 2 * pad - w[3] + 1);
        let flop = 2.0 * (x[0] * w[0] * out_hw * w[1] * w[2] * w[3]) as f64;
        (name.to_string(), x, w, pad, flop)
    };
    for (name, x, w, pad, flop) in [
        conv("conv2d_a", [64, 1, 28, 28], [32, 1, 3, 3], 0),
        conv("conv2d_b", [16, 64, 56, 56], [64, 64, 3, 3], 1),
    ] {
        b.kernel(&name, Work::Flop(flop), 1e-4, &move |dev| {
            let spec = Conv2dSpec {
                padding: [pad, pad],
                ..Default::default()
            };
            Ok((
                vec![random(dev, &x, 3)?, random(dev, &w, 4)?],
                Box::new(move |t: &[Tensor]| t[0].conv2d(&t[1], spec)),
            ))
        })?;
    }
    // The DCGAN generator's upsampling layer: a transposed convolution with stride 2 (the
    // input gradient of a strided convolution).
    let flop = 2.0 * (64 * 49 * 64 * 32 * 16) as f64;
    b.kernel("conv_transpose", Work::Flop(flop), 1e-4, &|dev| {
        let spec = Conv2dSpec {
            stride: [2, 2],
            padding: [1, 1],
            ..Default::default()
        };
        Ok((
            vec![
                random(dev, &[64, 64, 7, 7], 3)?,
                random(dev, &[64, 32, 4, 4], 4)?,
            ],
            Box::new(move |t: &[Tensor]| t[0].conv_transpose2d(&t[1], spec, [0, 0])),
        ))
    })?;
    b.kernel("maxpool", Work::None, 0.0, &|dev| {
        Ok((
            vec![random(dev, &[64, 32, 26, 26], 5)?],
            Box::new(|t: &[Tensor]| t[0].max_pool2d(Pool2dSpec::square(2))),
        ))
    })?;
    // Reductions, in GB/s of input read: everything into one value (more than 65,536 per
    // output: split across invocations and passes), rows, columns, and a bias gradient's
    // axes of an NCHW tensor.
    for (name, shape, axes) in [
        ("sum_all_1e6", vec![1 << 20], vec![0]),
        ("sum_rows", vec![1024, 1024], vec![1]),
        ("sum_cols", vec![1024, 1024], vec![0]),
        ("sum_nchw_bias", vec![128, 32, 26, 26], vec![0, 2, 3]),
    ] {
        let bytes = 4.0 * shape.iter().product::<usize>() as f64;
        let atol = 1e-5 * (shape.iter().product::<usize>() as f32).sqrt();
        b.kernel(name, Work::Bytes(bytes), atol, &move |dev| {
            let axes: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
            Ok((
                vec![random(dev, &shape, 7)?],
                Box::new(move |t: &[Tensor]| t[0].sum(&axes, false)),
            ))
        })?;
    }
    b.training("mlp_step", &mlp, &[128, 784], 10)?;
    b.training("cnn_step", &mnist_cnn, &[64, 1, 28, 28], 10)?;
    b.sequence_step("lstm_step", "lstm")?;
    b.sequence_step("gru_step", "gru")?;
    b.sequence_step("attention_step", "transformer")?;

    // 1000 small elementwise ops realised in one batch: time per op.
    let chain = |dev: &Device| -> Result<Tensor> {
        let mut t = random(dev, &[256], 6)?;
        for i in 0..1000 {
            t = if i % 2 == 0 {
                t.mul_scalar(1.0001)
            } else {
                t.tanh()
            };
        }
        Ok(t)
    };
    let want = chain(&b.cpu)?.to_vec()?;
    let devices: Vec<Device> = b
        .gpu
        .iter()
        .cloned()
        .chain((!b.skip_cpu).then(|| b.cpu.clone()))
        .filter(|_| b.wanted("dispatch"))
        .collect();
    for dev in devices {
        if dev.is_gpu() {
            verify("dispatch", &chain(&dev)?.to_vec()?, &want, 1e-4);
        }
        let (warm, reps) = b.repeats(&dev);
        let (median, min) = time(warm, reps, || {
            let t = chain(&dev)?;
            finish(&t)
        })?;
        let mut r = Record::new("dispatch", &dev);
        r.median_ms = Some(median / 1000.0);
        r.min_ms = Some(min / 1000.0);
        b.push(r);
    }

    // Cold start: a fresh process that opens the device and reads one matmul.
    if let Some(g) = b.gpu.clone().filter(|_| b.wanted("first_result")) {
        let exe = std::env::current_exe().map_err(|e| wgrad::Error::Data(e.to_string()))?;
        let start = Instant::now();
        let out = std::process::Command::new(exe)
            .arg("--first-result")
            .output()
            .map_err(|e| wgrad::Error::Data(format!("cannot start the cold-start probe: {e}")))?;
        let cold = start.elapsed();
        if !out.status.success() {
            return Err(wgrad::Error::Data(format!(
                "cold-start probe failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut r = Record::new("first_result", &g);
        r.cold_ms = Some(cold.as_secs_f64() * 1e3);
        b.push(r);
    }

    // Peak resident memory of the whole run (both backends), attributed to the adapter's row.
    let mut r = Record::new("peak_rss", b.gpu.as_ref().unwrap_or(&b.cpu));
    r.peak_rss_mb = peak_rss_mb();
    println!(
        "peak_rss       {}",
        r.peak_rss_mb
            .map_or("unknown".into(), |m| format!("{m:.0} MB"))
    );
    b.records.push(r);

    if let Some(path) = args.values_get("json") {
        let body: Vec<String> = b
            .records
            .iter()
            .map(|r| format!("  {}", r.json()))
            .collect();
        std::fs::write(path, format!("[\n{}\n]\n", body.join(",\n"))).map_err(|source| {
            wgrad::Error::Io {
                path: path.into(),
                source,
            }
        })?;
        println!("records written to {path}");
    }
    Ok(())
}

fn main() {
    wgrad::init_logging();
    common::exit_on_error(run());
}
