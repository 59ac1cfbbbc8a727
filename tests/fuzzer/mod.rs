//! A differential fuzzer: seeded random programs over wgrad's op set (`generate.rs`) run on
//! the GPU and on the CPU backend, in one process on one device, so that the pipeline, plan
//! and bind-group caches meet new constants and shapes case after case. Each case compares
//! the output and every input's gradient with the checker's tolerance; an index out of range
//! must be an error on both backends. Every WGSL source the GPU backend generates is
//! validated by naga, so a malformed kernel fails without a GPU too. A failure is shrunk to a
//! small program and printed with its seed.
//!
//! Used by `tests/fuzz.rs` (CI) and `examples/fuzz.rs` (`--cases N --seed S`).
#![allow(dead_code)]

pub mod generate;
pub mod program;

use std::collections::HashSet;
use std::sync::Arc;

use wgrad::device::{Context, GpuBackend};
use wgrad::graph::UnaryOp;
use wgrad::nn::Rng;
use wgrad::{DType, Device, Error, Tensor};

use program::{Leaf, Node, Program, Value};

/// Every how many cases one is large (more than 65,536 elements on a reduced axis).
pub const LARGE_EVERY: usize = 8;

/// The program of case `case` of a run seeded `seed`.
pub fn case_program(seed: u64, case: usize) -> Program {
    let case_seed = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(case as u64);
    generate::generate(case_seed, case % LARGE_EVERY == LARGE_EVERY - 1)
}

/// A case that failed: its seed and number, the program shrunk, and what went wrong.
pub struct Failure {
    pub seed: u64,
    pub case: usize,
    pub original: usize,
    pub program: Program,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fuzz case {} of seed {} failed: {}",
            self.case, self.seed, self.message
        )?;
        writeln!(
            f,
            "rerun: cargo run --release --example fuzz -- --seed {} --from {} --cases 1",
            self.seed, self.case
        )?;
        writeln!(
            f,
            "shrunk from {} to {} values (the last is the output; the objective is sum(out * w) \
             with w from Rng::new(99) in [-1, 1)):",
            self.original,
            self.program.len()
        )?;
        write!(f, "{}", self.program.rust())
    }
}

/// What a run did.
#[derive(Default, Debug)]
pub struct Stats {
    pub cases: usize,
    pub large: usize,
    pub expected_errors: usize,
    pub ambiguous_gradients: usize,
    pub sources_validated: usize,
}

pub struct Fuzzer {
    gpu: Device,
    cpu: Device,
    ctx: Arc<Context>,
    validated: HashSet<Arc<str>>,
    pub stats: Stats,
}

/// A backend's result for a program: the output, and the gradient of each f32 leaf.
struct Eval {
    values: Vec<f64>,
    dtype: DType,
    grads: Vec<Option<Vec<f32>>>,
}

impl Fuzzer {
    /// A fuzzer on the shared GPU context, or the reason there is none.
    pub fn new() -> Result<Fuzzer, Error> {
        let ctx = Context::shared()?;
        Ok(Fuzzer {
            gpu: GpuBackend::device_on(ctx.clone()),
            cpu: wgrad::cpu(),
            ctx,
            validated: HashSet::new(),
            stats: Stats::default(),
        })
    }

    /// Runs cases `from .. from + cases` of seed `seed`, calling `progress` after each;
    /// stops at the first failure, shrunk.
    pub fn run(
        &mut self,
        seed: u64,
        from: usize,
        cases: usize,
        mut progress: impl FnMut(usize, &Stats),
    ) -> Result<(), Box<Failure>> {
        for case in from..from + cases {
            let program = case_program(seed, case);
            if let Err(message) = self.check(&program) {
                let original = program.len();
                // Shrinking checks each candidate on a device of its own, so that the
                // program printed fails from a fresh start.
                self.fresh_device();
                let (program, message) = match self.check(&program) {
                    Err(message) => self.shrink(program, message),
                    Ok(()) => (
                        program,
                        format!(
                            "{message}\n(on a fresh device it passes: it reused what earlier \
                             cases left in the caches; rerun cases 0 to {case} in one process)"
                        ),
                    ),
                };
                return Err(Box::new(Failure {
                    seed,
                    case,
                    original,
                    program,
                    message,
                }));
            }
            self.stats.cases += 1;
            if case % LARGE_EVERY == LARGE_EVERY - 1 {
                self.stats.large += 1;
            }
            progress(case, &self.stats);
        }
        Ok(())
    }

    /// Moves the GPU side to a new device on a new context: empty caches.
    fn fresh_device(&mut self) {
        if let Ok(ctx) = Context::new() {
            self.gpu = GpuBackend::device_on(ctx.clone());
            self.ctx = ctx;
            self.validated.clear();
        }
    }

    /// Runs `program` on both backends and compares, then the same program with other
    /// constants (whose kernels are the first one's, found in the caches); then validates the
    /// kernels generated.
    pub fn check(&mut self, program: &Program) -> Result<(), String> {
        let result = self.compare(program).and_then(|_| {
            let other = program.with_other_constants();
            match other == *program {
                true => Ok(()),
                false => self.compare(&other).map_err(|e| {
                    format!(
                        "{e}, with other constants, run after the program with its own (so \
                         with kernels cached for those):\n{}",
                        other.rust()
                    )
                }),
            }
        });
        self.validate_sources()?;
        result
    }

    fn compare(&mut self, program: &Program) -> Result<(), String> {
        let gpu = evaluate(&self.gpu, program);
        let cpu = evaluate(&self.cpu, program);
        let bad_index = program
            .values
            .iter()
            .any(|v| matches!(v, Value::Leaf(Leaf::Index { bad: Some(_), .. }, _)));
        let (gpu, cpu) = match (gpu, cpu) {
            (Err(g), Err(c)) => {
                return match (&g, &c) {
                    (Error::Index { op: a, .. }, Error::Index { op: b, .. }) if a == b => {
                        self.stats.expected_errors += 1;
                        Ok(())
                    }
                    _ => Err(format!(
                        "both backends failed, differently: GPU {g}; CPU {c}"
                    )),
                };
            }
            (Ok(_), Err(c)) => {
                return Err(format!("the CPU backend failed ({c}), the GPU did not"))
            }
            (Err(g), Ok(_)) => {
                return Err(format!("the GPU backend failed ({g}), the CPU did not"))
            }
            (Ok(g), Ok(c)) => (g, c),
        };
        if bad_index {
            return Err("an index out of range gave no error on either backend".into());
        }
        if gpu.dtype != cpu.dtype {
            return Err(format!(
                "dtypes differ: GPU {:?}, CPU {:?}",
                gpu.dtype, cpu.dtype
            ));
        }
        let k = reduction_terms(program, &self.cpu);
        close("output", &gpu.values, &cpu.values, k)?;
        if self.kinks_differ(program)? {
            // A relu or abs input on the wrong side of zero: gradients may rightly differ.
            self.stats.ambiguous_gradients += 1;
            return Ok(());
        }
        for (i, (g, c)) in gpu.grads.iter().zip(&cpu.grads).enumerate() {
            match (g, c) {
                (Some(g), Some(c)) => {
                    let g: Vec<f64> = g.iter().map(|&v| v as f64).collect();
                    let c: Vec<f64> = c.iter().map(|&v| v as f64).collect();
                    close(&format!("gradient of v{i}"), &g, &c, k)?;
                }
                (None, None) => {}
                _ => return Err(format!("v{i} has a gradient on one backend only")),
            }
        }
        Ok(())
    }

    /// Whether an inexact value entering a kink at 0 (relu, leaky relu, abs) lies on
    /// different sides of it on the two backends (rounding may rightly put it there).
    fn kinks_differ(&self, program: &Program) -> Result<bool, String> {
        let exact = program.exact();
        let mut kinked: Vec<usize> = Vec::new();
        for value in &program.values {
            let Value::Node(node) = value else { continue };
            let inputs = match node {
                Node::Unary(UnaryOp::Relu | UnaryOp::LeakyRelu(_) | UnaryOp::Abs, a) => vec![*a],
                Node::SafeLog(a) | Node::SafeSqrt(a) | Node::SafePow(a, _) => vec![*a],
                Node::SafeDiv(_, b) => vec![*b],
                _ => vec![],
            };
            kinked.extend(inputs.into_iter().filter(|&i| !exact[i]));
        }
        if kinked.is_empty() {
            return Ok(false);
        }
        let side = |dev: &Device| -> Result<Vec<Vec<(bool, bool)>>, String> {
            let v = program.build(dev).map_err(|e| e.to_string())?;
            kinked
                .iter()
                .map(|&i| {
                    let x = wgrad::no_grad(|| v[i].detach()).to_vec();
                    x.map(|x| x.iter().map(|&x| (x > 0.0, x < 0.0)).collect())
                        .map_err(|e| e.to_string())
                })
                .collect()
        };
        Ok(side(&self.gpu)? != side(&self.cpu)?)
    }

    /// Validates with naga every kernel source the GPU backend has generated since the last
    /// call.
    fn validate_sources(&mut self) -> Result<(), String> {
        for source in self.ctx.generated_sources() {
            if self.validated.contains(&source) {
                continue;
            }
            let module = naga::front::wgsl::parse_str(&source).map_err(|e| {
                format!(
                    "generated WGSL does not parse:\n{}",
                    e.emit_to_string(&source)
                )
            })?;
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::default(),
            )
            .validate(&module)
            .map_err(|e| format!("generated WGSL is invalid:\n{}", e.emit_to_string(&source)))?;
            self.validated.insert(source);
            self.stats.sources_validated += 1;
        }
        Ok(())
    }

    /// A smaller program that still fails, and its failure: the output moved to an earlier
    /// value, a node replaced by its input, a leaf made plainer, while the failure stays.
    fn shrink(&mut self, mut program: Program, mut message: String) -> (Program, String) {
        loop {
            let mut smaller = None;
            for candidate in candidates(&program, &self.cpu) {
                if !candidate.well_posed() || candidate == program {
                    continue;
                }
                self.fresh_device();
                if let Err(m) = self.check(&candidate) {
                    smaller = Some((candidate, m));
                    break;
                }
            }
            match smaller {
                Some((p, m)) => {
                    program = p;
                    message = m;
                }
                None => return (program, message),
            }
        }
    }
}

/// The output and the gradient of every f32 leaf of `program` on `dev`. The objective for
/// gradients is `Σ out·w` with fixed random `w`, so that every output element's gradient
/// differs.
fn evaluate(dev: &Device, program: &Program) -> Result<Eval, Error> {
    let mut v = program.build(dev)?;
    let out = v.pop().expect("a program has values");
    // Only the leaves stay held, so that intermediate values fuse as they do in real use (a
    // value someone holds is stored, and a product followed by it takes no epilogue).
    let v: Vec<Option<Tensor>> = program
        .values
        .iter()
        .zip(v)
        .map(|(value, t)| matches!(value, Value::Leaf(..)).then_some(t))
        .collect();
    let out = &out;
    let (values, dtype) = match out.dtype() {
        DType::F32 => (
            out.to_vec()?.into_iter().map(f64::from).collect(),
            DType::F32,
        ),
        DType::U32 => (
            out.to_vec_u32()?.into_iter().map(f64::from).collect(),
            DType::U32,
        ),
    };
    let mut grads = vec![None; program.len()];
    if out.requires_grad() {
        let mut rng = Rng::new(99);
        let w: Vec<f32> = (0..out.numel()).map(|_| rng.range(-1.0, 1.0)).collect();
        let w = Tensor::from_slice(dev, &w, out.shape())?;
        let g = (out * &w).sum_all().backward();
        for (i, leaf) in v.iter().enumerate() {
            if let Some(gx) = leaf.as_ref().and_then(|t| g.get(t)) {
                grads[i] = Some(gx.to_vec()?);
            }
        }
    }
    Ok(Eval {
        values,
        dtype,
        grads,
    })
}

/// How many terms the program's reductions add up, all together: the tolerance grows with
/// its square root. Broadcast inputs count too, since their gradients are sums.
fn reduction_terms(program: &Program, dev: &Device) -> usize {
    let t = program.lazy(dev);
    let numel = |i: usize| t[i].numel().max(1);
    let mut k = 1;
    for (i, value) in program.values.iter().enumerate() {
        let Value::Node(node) = value else { continue };
        k += match node {
            Node::MatMul(a, b, ..) => numel(*a) * numel(*b) / numel(i).max(1),
            Node::Conv2d(x, w, _) => {
                let ws = t[*w].shape();
                ws[1] * ws[2] * ws[3] + t[*x].shape()[0] * t[i].shape()[2] * t[i].shape()[3]
            }
            Node::Gather(_, idx) => numel(*idx),
            _ => node
                .inputs()
                .iter()
                .map(|&x| (numel(x) / numel(i)).max(numel(i) / numel(x)))
                .max()
                .unwrap_or(1),
        };
        if let Node::Softmax(a, axis) | Node::LogSoftmax(a, axis) = node {
            k += t[*a].shape()[*axis];
        }
        if let Node::AvgPool(..) | Node::MaxPool(..) = node {
            k += 9;
        }
    }
    k
}

/// `|gpu - cpu| <= atol + rtol·|cpu|`, with atol growing with the square root of the terms
/// summed and the scale of the finite values; NaN and infinities must match exactly.
fn close(what: &str, gpu: &[f64], cpu: &[f64], k: usize) -> Result<(), String> {
    if gpu.len() != cpu.len() {
        return Err(format!(
            "{what}: {} values on the GPU, {} on the CPU",
            gpu.len(),
            cpu.len()
        ));
    }
    let scale = cpu
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    let rtol = 1e-4;
    let atol = 1e-5 * (k as f64).sqrt() * scale;
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let ok = if c.is_nan() {
            g.is_nan()
        } else if c.is_infinite() {
            g == c
        } else {
            (g - c).abs() <= atol + rtol * c.abs()
        };
        if !ok {
            return Err(format!(
                "{what}[{i}]: GPU {g} vs CPU {c} (atol {atol:.2e}, rtol {rtol})"
            ));
        }
    }
    Ok(())
}

/// Smaller or plainer variants of `program`, the most promising first.
fn candidates(program: &Program, dev: &Device) -> Vec<Program> {
    let mut out = Vec::new();
    let n = program.len();
    // The output moved to an earlier node.
    for i in 0..n - 1 {
        if let Value::Node(_) = program.values[i] {
            let p = Program {
                values: program.values[..=i].to_vec(),
            };
            out.push(p.pruned());
        }
    }
    // A node replaced by an input of its shape and dtype.
    let t = program.lazy(dev);
    for (i, value) in program.values.iter().enumerate() {
        let Value::Node(node) = value else { continue };
        for x in node.inputs() {
            if t[x].shape() != t[i].shape() || t[x].dtype() != t[i].dtype() {
                continue;
            }
            let values = program
                .values
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, v)| match v {
                    Value::Node(node) if j > i => Value::Node(node.map_inputs(|y| match y {
                        y if y == i => x,
                        y if y > i => y - 1,
                        y => y,
                    })),
                    v => v.clone(),
                })
                .collect();
            out.push(Program { values }.pruned());
        }
    }
    // Plainer leaves and constants.
    for (i, value) in program.values.iter().enumerate() {
        let plain = match value {
            Value::Leaf(
                Leaf::F32 {
                    shape,
                    special: true,
                    lo,
                    hi,
                },
                seed,
            ) => Value::Leaf(
                Leaf::F32 {
                    shape: shape.clone(),
                    lo: *lo,
                    hi: *hi,
                    special: false,
                },
                *seed,
            ),
            Value::Node(Node::Scalar(op, x, c)) if *c != 1.0 => {
                Value::Node(Node::Scalar(*op, *x, 1.0))
            }
            _ => continue,
        };
        let mut p = program.clone();
        p.values[i] = plain;
        out.push(p);
    }
    out
}
