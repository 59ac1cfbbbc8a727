//! Shared test helpers: the GPU device (or a clear skip), seeded inputs, and the generic
//! GPU-vs-CPU and finite-difference checkers.
#![allow(dead_code)]

use std::rc::Rc;
use std::sync::Arc;

use wgrad::graph::{Backend, BufferId, Capabilities, Launch};
use wgrad::nn::Rng;
use wgrad::{DType, Device, Tensor};
use wgrad_device::{Context, GpuBackend, ProfileClock};

/// The GPU device, or `None` with a printed skip line. With `WGRAD_REQUIRE_GPU=1` a missing
/// adapter fails the test instead.
pub fn gpu() -> Option<Device> {
    match wgrad::gpu() {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("WGRAD_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// How a test input is drawn.
#[derive(Clone, Debug)]
pub enum Kind {
    /// Uniform in `[lo, hi)`.
    Range(f32, f32),
    /// Magnitudes in `[0.2, 1)` with random signs: away from kinks at zero.
    AwayFromZero,
    /// A shuffled grid of distinct values in `[-1, 1]`: no ties, no near-ties.
    Distinct,
    /// `u32` indices below the bound.
    Index(u32),
}

#[derive(Clone, Debug)]
pub struct Spec {
    pub shape: Vec<usize>,
    pub kind: Kind,
}

pub fn f(shape: &[usize]) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::Range(-1.0, 1.0),
    }
}

pub fn pos(shape: &[usize]) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::Range(0.5, 2.0),
    }
}

pub fn nz(shape: &[usize]) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::AwayFromZero,
    }
}

pub fn distinct(shape: &[usize]) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::Distinct,
    }
}

pub fn idx(shape: &[usize], bound: u32) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::Index(bound),
    }
}

pub fn range(shape: &[usize], lo: f32, hi: f32) -> Spec {
    Spec {
        shape: shape.to_vec(),
        kind: Kind::Range(lo, hi),
    }
}

pub enum Data {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

pub fn draw(spec: &Spec, rng: &mut Rng) -> Data {
    let n: usize = spec.shape.iter().product();
    match spec.kind {
        Kind::Range(lo, hi) => Data::F32((0..n).map(|_| rng.range(lo, hi)).collect()),
        Kind::AwayFromZero => Data::F32(
            (0..n)
                .map(|_| {
                    let m = rng.range(0.2, 1.0);
                    if rng.uniform() < 0.5 {
                        -m
                    } else {
                        m
                    }
                })
                .collect(),
        ),
        Kind::Distinct => {
            let mut v: Vec<f32> = (0..n)
                .map(|i| -1.0 + 2.0 * (i as f32 + 0.5) / n.max(1) as f32)
                .collect();
            rng.shuffle(&mut v);
            Data::F32(v)
        }
        Kind::Index(b) => Data::U32((0..n).map(|_| rng.below(b as usize) as u32).collect()),
    }
}

pub fn upload(dev: &Device, spec: &Spec, data: &Data) -> Tensor {
    match data {
        Data::F32(v) => Tensor::param(dev, v, &spec.shape).unwrap(),
        Data::U32(v) => Tensor::from_u32(dev, v, &spec.shape).unwrap(),
    }
}

/// Output values and input gradients of `f` on `dev`. The objective for gradients is
/// `Σ out·w` with fixed random `w`, so every output element's gradient differs.
pub fn evaluate(
    dev: &Device,
    specs: &[Spec],
    data: &[Data],
    f: &dyn Fn(&[Tensor]) -> Tensor,
) -> (Vec<f64>, DType, Vec<Option<Vec<f32>>>) {
    let inputs: Vec<Tensor> = specs
        .iter()
        .zip(data)
        .map(|(s, d)| upload(dev, s, d))
        .collect();
    let out = f(&inputs);
    let values = match out.dtype() {
        DType::F32 => out.to_vec().unwrap().into_iter().map(f64::from).collect(),
        DType::U32 => out
            .to_vec_u32()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect(),
    };
    let mut grads = vec![None; inputs.len()];
    if out.requires_grad() {
        let mut rng = Rng::new(99);
        let w: Vec<f32> = (0..out.numel()).map(|_| rng.range(-1.0, 1.0)).collect();
        let w = Tensor::from_slice(dev, &w, out.shape()).unwrap();
        let g = (&out * &w).sum_all().backward();
        for (i, x) in inputs.iter().enumerate() {
            if let Some(gx) = g.get(x) {
                grads[i] = Some(gx.to_vec().unwrap());
            }
        }
    }
    (values, out.dtype(), grads)
}

fn compare(what: &str, gpu: &[f64], cpu: &[f64], k: usize) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths differ");
    let scale = cpu.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let rtol = 1e-4;
    let atol = 1e-5 * ((k.max(1)) as f64).sqrt() * scale;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = (g - c).abs() <= atol + rtol * c.abs() || (g.is_nan() && c.is_nan()) || g == c;
        assert!(
            ok,
            "{what}[{i}]: gpu {g} vs cpu {c} (atol {atol:.2e}, rtol {rtol})"
        );
    }
}

/// Runs `f` on the GPU and on the CPU backend from the same seeded inputs and compares the
/// output and every input gradient. `k` is the longest reduction inside `f`, which scales the
/// tolerance. Returns false (after a skip line) when there is no GPU.
pub fn check(name: &str, k: usize, specs: &[Spec], f: impl Fn(&[Tensor]) -> Tensor) -> bool {
    let Some(gpu) = gpu() else { return false };
    let cpu = wgrad::cpu();
    let mut rng = Rng::new(
        name.bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let data: Vec<Data> = specs.iter().map(|s| draw(s, &mut rng)).collect();
    let (gv, gt, gg) = evaluate(&gpu, specs, &data, &f);
    let (cv, ct, cg) = evaluate(&cpu, specs, &data, &f);
    assert_eq!(gt, ct, "{name}: dtypes differ");
    compare(&format!("{name} output"), &gv, &cv, k);
    for (i, (g, c)) in gg.iter().zip(&cg).enumerate() {
        match (g, c) {
            (Some(g), Some(c)) => {
                let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                let c: Vec<f64> = c.iter().map(|&v| v as f64).collect();
                compare(&format!("{name} grad of input {i}"), &g, &c, k);
            }
            (None, None) => {}
            _ => panic!("{name}: input {i} has a gradient on one backend only"),
        }
    }
    true
}

/// Compares autodiff gradients with central finite differences of `Σ f(x)·w` on the CPU
/// backend, for every element of every `f32` input.
pub fn gradcheck(name: &str, specs: &[Spec], f: impl Fn(&[Tensor]) -> Tensor) {
    let dev = wgrad::cpu();
    let mut rng = Rng::new(
        name.bytes()
            .fold(5u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let data: Vec<Data> = specs.iter().map(|s| draw(s, &mut rng)).collect();
    let (_, _, grads) = evaluate(&dev, specs, &data, &f);
    let objective = |data: &[Data]| -> f64 {
        let inputs: Vec<Tensor> = specs
            .iter()
            .zip(data)
            .map(|(s, d)| upload(&dev, s, d))
            .collect();
        let out = f(&inputs);
        let mut rng = Rng::new(99);
        let w: Vec<f32> = (0..out.numel()).map(|_| rng.range(-1.0, 1.0)).collect();
        let v = out.to_vec().unwrap();
        v.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let h = 1e-3f32;
    let mut checked = 0;
    for (i, d) in data.iter().enumerate() {
        let Data::F32(values) = d else { continue };
        // An input without a gradient (it only feeds non-differentiable ops) must have a zero
        // numerical derivative too.
        let zeros = vec![0.0; values.len()];
        let analytic = grads[i].as_ref().unwrap_or(&zeros);
        for j in 0..values.len() {
            let shifted = |delta: f32| -> Vec<Data> {
                data.iter()
                    .enumerate()
                    .map(|(k, d)| match d {
                        Data::F32(v) => {
                            let mut v = v.clone();
                            if k == i {
                                v[j] += delta;
                            }
                            Data::F32(v)
                        }
                        Data::U32(v) => Data::U32(v.clone()),
                    })
                    .collect()
            };
            let numeric = (objective(&shifted(h)) - objective(&shifted(-h))) / (2.0 * h as f64);
            let a = analytic[j] as f64;
            assert!(
                (numeric - a).abs() <= 5e-3 + 1e-2 * a.abs(),
                "{name}: d/dx{i}[{j}] autodiff {a} vs finite difference {numeric}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{name}: nothing was checked");
}

/// A device on a profiled backend that the test keeps a handle to, to see which kernels ran.
pub struct Watched(pub Rc<GpuBackend>);

impl Backend for Watched {
    fn capabilities(&self) -> &Capabilities {
        self.0.capabilities()
    }
    fn alloc(&self, bytes: usize) -> wgrad::graph::Result<BufferId> {
        self.0.alloc(bytes)
    }
    fn free(&self, id: BufferId) {
        self.0.free(id)
    }
    fn write(&self, id: BufferId, data: &[u8]) -> wgrad::graph::Result<()> {
        self.0.write(id, data)
    }
    fn read(&self, id: BufferId, bytes: usize) -> wgrad::graph::Result<Vec<u8>> {
        self.0.read(id, bytes)
    }
    fn exec(&self, launch: &Launch<'_>) -> wgrad::graph::Result<()> {
        self.0.exec(launch)
    }
    fn flush(&self) -> wgrad::graph::Result<()> {
        self.0.flush()
    }
}

/// A device on `ctx` whose kernels are recorded by name (host clock), and its backend.
pub fn watched(ctx: &Arc<Context>) -> (Device, Rc<GpuBackend>) {
    let backend = Rc::new(GpuBackend::profiled(ctx.clone(), ProfileClock::Host));
    (Device::new(Watched(backend.clone())), backend)
}

/// The kernels `backend` has run so far, each as its name and grid (`name [x, y, z]`).
pub fn kernels_ran(backend: &GpuBackend) -> Vec<String> {
    backend
        .kernel_times()
        .0
        .into_iter()
        .map(|t| t.name)
        .collect()
}
