//! Kernels generated per graph: fused chains of elementwise ops, and strided copies with
//! their shapes and strides written into the source as constants (divisions by constants
//! compile to multiplications; the generic kernels divide by values read from memory).
//! Each kernel is described by a [`Kernel`], whose key names everything its source depends
//! on, so each distinct kernel compiles once and a repeated step generates no source.

use std::fmt::Write;
use std::sync::Arc;

use bytemuck::Pod;
use wgrad_graph::op::Op;
use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, BufferId, Fused, FusedRead, FusedValue, UnaryOp};

use crate::kernels::{self, Entry, Family};
use crate::params::{FusedParams, GenCopyParams, MAX_FUSED_CONSTANTS};
use crate::recorder::{Recorder, Texture};
use crate::shaders;

/// A fused group of elementwise ops applied to each element a kernel stores (see
/// `Launch::Epilogue`): its expression, and the buffers of its other outputs and of its
/// inputs, bound after the kernel's own.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub fused: &'a Fused,
    pub buffers: &'a [BufferId],
}

/// Everything a generated kernel's source depends on: its source is made from this alone
/// ([`Kernel::source`]), and its pipeline is cached under [`Kernel::key`], which writes out
/// every field. Constants' values are in neither: kernels read them from their parameters,
/// so one kernel serves every value. Debug builds check on every cache hit that the key's
/// kernel has the cached source (`Context::generated_with`).
pub(crate) enum Kernel<'a> {
    /// A fused group of elementwise ops, `lanes` (1 or 4) elements per invocation.
    Fused { fused: &'a Fused, lanes: usize },
    /// Entry point `entry` of the matmul or convolution family storing through the epilogue
    /// `fused`, whose buffers are bound from binding `first` on.
    Epilogue {
        entry: Entry,
        fused: &'a Fused,
        first: u32,
    },
    /// A strided copy over `dims` (see [`collapse`]) of `word`s, or of f32 values stored
    /// through an epilogue whose buffers are bound from binding 3 on.
    Copy {
        dims: &'a [(usize, usize, usize)],
        word: &'static str,
        epilogue: Option<&'a Fused>,
    },
}

/// The binding of a generated copy's first epilogue buffer (after parameters, output, source).
const COPY_FIRST_EPILOGUE_BINDING: u32 = 3;

impl Kernel<'_> {
    /// The kernel's entry point.
    fn entry(&self) -> &'static str {
        match self {
            Kernel::Epilogue { entry, .. } => entry.name,
            Kernel::Fused { .. } | Kernel::Copy { .. } => "main",
        }
    }

    /// The pipeline cache's key: every field, without generating the source, so that a
    /// repeated step finds its kernels cheaply.
    fn key(&self) -> String {
        match self {
            Kernel::Fused { fused, lanes } => format!("fused {lanes} {}", fused_key(fused)),
            Kernel::Epilogue {
                entry,
                fused,
                first,
            } => format!(
                "{:?} {} from {first}, {}",
                entry.family,
                entry.name,
                fused_key(fused)
            ),
            Kernel::Copy {
                dims,
                word,
                epilogue,
            } => match epilogue {
                None => format!("copy {word} {dims:?}"),
                Some(fused) => format!("copy {word} {dims:?}, {}", fused_key(fused)),
            },
        }
    }

    /// The WGSL source.
    fn source(&self) -> String {
        match *self {
            Kernel::Fused { fused, lanes } => fused_source(fused, lanes),
            Kernel::Epilogue {
                entry,
                fused,
                first,
            } => {
                let stores = epilogue_stores(fused, first);
                match entry.family {
                    Family::Matmul => shaders::matmul_source(
                        &stores,
                        kernels::reads_windows(entry).then_some(entry.name),
                    ),
                    Family::Conv => shaders::conv_source(&stores),
                    other => unreachable!("{other:?} kernels take no epilogue"),
                }
            }
            Kernel::Copy {
                dims,
                word,
                epilogue,
            } => match epilogue {
                None => format!("{}{}", shaders::constants(), copy_source(dims, word, None)),
                Some(fused) => {
                    let stores = epilogue_stores(fused, COPY_FIRST_EPILOGUE_BINDING);
                    let copy = copy_source(dims, word, Some(&stores));
                    format!("{}{copy}", shaders::prelude())
                }
            },
        }
    }
}

/// The pipeline of a generated kernel, compiled on first use.
pub(crate) fn pipeline(rec: &Recorder, kernel: &Kernel<'_>) -> Arc<wgpu::ComputePipeline> {
    rec.ctx()
        .generated_with(&kernel.key(), kernel.entry(), || kernel.source())
}

/// Records one dispatch of product kernel `entry` (matmul or convolution), with `epilogue`
/// applied to what it stores: then its pipeline is generated, and the epilogue's buffers are
/// bound after the kernel's own `buffers`.
pub(crate) fn push_stored<P: Pod>(
    rec: &Recorder,
    entry: Entry,
    epilogue: Option<Epilogue<'_>>,
    params: &P,
    buffers: Vec<BufferId>,
    groups: [u32; 3],
) {
    push_stored_textured(rec, entry, epilogue, params, (buffers, None), groups);
}

/// [`push_stored`] with a texture, where given, bound at `TEXTURE_BINDING`.
pub(crate) fn push_stored_textured<P: Pod>(
    rec: &Recorder,
    entry: Entry,
    epilogue: Option<Epilogue<'_>>,
    params: &P,
    (mut buffers, texture): (Vec<BufferId>, Option<Arc<Texture>>),
    groups: [u32; 3],
) {
    let (pipeline, constants) = match epilogue {
        Some(e) => {
            let first = buffers.len() as u32 + 1;
            buffers.extend_from_slice(e.buffers);
            let kernel = Kernel::Epilogue {
                entry,
                fused: e.fused,
                first,
            };
            (pipeline(rec, &kernel), &e.fused.constants[..])
        }
        None => (rec.pipeline(entry), &[][..]),
    };
    let bindings = (buffers, constants);
    rec.push_textured(pipeline, entry.name, params, bindings, texture, groups);
}

/// Records a generated kernel computing a fused group of elementwise ops.
pub(crate) fn record_fused(rec: &Recorder, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) {
    let n = numel(outs[0].shape);
    if n == 0 {
        return;
    }
    let lanes = fused_lanes(n);
    let pipeline = pipeline(rec, &Kernel::Fused { fused, lanes });
    let mut params = FusedParams {
        n: (n / lanes) as u32,
        pad: [0; 3],
        constants: [0.0; MAX_FUSED_CONSTANTS],
    };
    params.constants[..fused.constants.len()].copy_from_slice(&fused.constants);
    let buffers = outs.iter().chain(inputs).map(|a| a.buffer).collect();
    let groups = rec.linear_groups(n / lanes);
    rec.push_pipeline(pipeline, "fused", &params, (buffers, &[]), groups);
}

/// Records a generated strided copy (see `layout::copy_strided`), of whole aligned vec4s
/// where both sides allow, of words otherwise; or, with `epilogue`, of f32 values with the
/// epilogue applied to each value it stores.
pub(crate) fn record_copy(
    rec: &Recorder,
    src: BufferId,
    dst: BufferId,
    view: &[usize],
    from: (usize, &[usize]),
    to: (usize, &[usize]),
    epilogue: Option<Epilogue<'_>>,
) {
    if numel(view) == 0 {
        return;
    }
    let dims = collapse(view, from.1, to.1);
    let quads = in_quads(&dims, (from.0, to.0)).filter(|_| epilogue.is_none());
    let (dims, offsets, word, lanes) = match quads {
        Some((quads, offsets)) => (quads, offsets, "vec4<u32>", 4),
        None if epilogue.is_some() => (dims, (from.0, to.0), "f32", 1),
        None => (dims, (from.0, to.0), "u32", 1),
    };
    let mut buffers = vec![dst, src];
    let mut constants: &[f32] = &[];
    if let Some(e) = epilogue {
        buffers.extend_from_slice(e.buffers);
        constants = &e.fused.constants;
    }
    let pipeline = pipeline(
        rec,
        &Kernel::Copy {
            dims: &dims,
            word,
            epilogue: epilogue.map(|e| e.fused),
        },
    );
    let n = numel(view) / lanes;
    let params = GenCopyParams {
        n: n as u32,
        src_offset: offsets.0 as u32,
        dst_offset: offsets.1 as u32,
        pad: 0,
    };
    let groups = rec.linear_groups(n);
    let label = "copy (generated)";
    rec.push_pipeline(pipeline, label, &params, (buffers, constants), groups);
}

/// The view's dimensions as (size, source stride, destination stride), without dimensions of
/// size 1 and with neighbours merged where both sides are contiguous across them.
fn collapse(view: &[usize], src: &[usize], dst: &[usize]) -> Vec<(usize, usize, usize)> {
    let mut dims: Vec<(usize, usize, usize)> = Vec::new();
    for d in (0..view.len()).rev() {
        if view[d] == 1 {
            continue;
        }
        match dims.last_mut() {
            Some(inner) if src[d] == inner.1 * inner.0 && dst[d] == inner.2 * inner.0 => {
                inner.0 *= view[d];
            }
            _ => dims.push((view[d], src[d], dst[d])),
        }
    }
    dims.reverse();
    dims
}

/// The copy over `dims` with `offsets` (source, destination) in units of 4 words, when it
/// moves whole aligned vec4s: the innermost dimension contiguous on both sides and a
/// multiple of 4 long, every other stride and both offsets multiples of 4.
#[allow(clippy::type_complexity)]
fn in_quads(
    dims: &[(usize, usize, usize)],
    offsets: (usize, usize),
) -> Option<(Vec<(usize, usize, usize)>, (usize, usize))> {
    let (&(len, 1, 1), outer) = dims.split_last()? else {
        return None;
    };
    let four = |v: usize| v.is_multiple_of(4);
    let aligned = outer.iter().all(|&(_, s, t)| four(s) && four(t));
    if !(four(len) && aligned && four(offsets.0) && four(offsets.1)) {
        return None;
    }
    let mut quads: Vec<_> = outer.iter().map(|&(n, s, t)| (n, s / 4, t / 4)).collect();
    quads.push((len / 4, 1, 1));
    Some((quads, (offsets.0 / 4, offsets.1 / 4)))
}

/// WGSL for a strided copy over `dims` (from [`collapse`]), the innermost dimension first in
/// the index arithmetic, of `word` values (`u32`, `vec4<u32>`), or with `stores` (an
/// epilogue's `put`) of f32 values stored through `put`.
fn copy_source(dims: &[(usize, usize, usize)], word: &str, stores: Option<&str>) -> String {
    let mut body = String::new();
    for (k, &(size, s, t)) in dims.iter().enumerate().rev() {
        if k == 0 {
            let _ = writeln!(body, "    s += r * {s}u;\n    t += r * {t}u;");
        } else {
            let _ = writeln!(
                body,
                "    {{ let q = r / {size}u; let k = r - q * {size}u; s += k * {s}u; t += k * {t}u; r = q; }}"
            );
        }
    }
    let store = match stores {
        Some(_) => "put(t, src[s]);",
        None => "out[t] = src[s];",
    };
    format!(
        "// Rust twin: GenCopyParams in crates/device/src/params.rs\n\
         struct GenCopyParams {{ n: u32, src_offset: u32, dst_offset: u32, _pad: u32 }}\n\
         @group(0) @binding(0) var<storage, read> p: GenCopyParams;\n\
         @group(0) @binding(1) var<storage, read_write> out: array<{word}>;\n\
         @group(0) @binding(2) var<storage, read> src: array<{word}>;\n\
         {}\n\
         @compute @workgroup_size(WORKGROUP)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {{\n\
         \x20   let i = g.x + g.y * w.x * WORKGROUP;\n\
         \x20   if (i >= p.n) {{ return; }}\n\
         \x20   var r = i;\n\
         \x20   var s = p.src_offset;\n\
         \x20   var t = p.dst_offset;\n\
         {body}\
         \x20   {store}\n\
         }}\n",
        stores.unwrap_or("")
    )
}

/// Elements per invocation of a fused kernel over `n` elements: 4 (vec4 loads and stores of
/// the outputs and of same-shape inputs) when `n` is a multiple of 4, else 1.
fn fused_lanes(n: usize) -> usize {
    if n.is_multiple_of(4) {
        4
    } else {
        1
    }
}

/// Whether input `read` is bound as an array of vec4 in a kernel of 4 lanes: same-shape
/// inputs, and an innermost axis of a multiple of 4 (4 consecutive elements read one vec4).
fn reads_vec4(read: &FusedRead) -> bool {
    match read {
        FusedRead::Same => true,
        FusedRead::Axis { inner, len } => *inner == 1 && len.is_multiple_of(4),
        FusedRead::Scalar => false,
    }
}

/// WGSL for a fused chain: the shared helpers of `common.wgsl`, one binding per input, and one
/// `let` per value, calling the same `f_*` functions as the single-op kernels, `lanes` (1 or
/// 4, see [`fused_lanes`]) elements per invocation.
fn fused_source(fused: &Fused, lanes: usize) -> String {
    let (vec4, scalar) = ("array<vec4<f32>>", "array<f32>");
    let mut src = String::from(shaders::prelude());
    src.push_str(
        "\n// Rust twin: FusedParams in crates/device/src/params.rs\n\
         struct FusedParams { n: u32, _p0: u32, _p1: u32, _p2: u32, c: array<f32, MAX_FUSED_CONSTANTS> }\n\
         @group(0) @binding(0) var<storage, read> p: FusedParams;\n",
    );
    for k in 0..fused.outputs.len() {
        let _ = writeln!(
            src,
            "@group(0) @binding({}) var<storage, read_write> out{k}: {};",
            k + 1,
            if lanes == 4 { vec4 } else { scalar }
        );
    }
    let reads = fused.values.iter().filter_map(|v| match v {
        FusedValue::Input { read, .. } => Some(read),
        _ => None,
    });
    for (k, read) in reads.enumerate() {
        let _ = writeln!(
            src,
            "@group(0) @binding({}) var<storage, read> in{k}: {};",
            k + 1 + fused.outputs.len(),
            if lanes == 4 && reads_vec4(read) {
                vec4
            } else {
                scalar
            }
        );
    }
    src.push_str(
        "@compute @workgroup_size(WORKGROUP)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {\n\
         \x20   let i = g.x + g.y * w.x * WORKGROUP;\n\
         \x20   if (i >= p.n) { return; }\n",
    );
    src += &value_lets(fused, "in", &|slot| format!("p.c[{slot}]"), lanes);
    for (k, v) in fused.outputs.iter().enumerate() {
        let _ = writeln!(src, "    out{k}[i] = v{v};");
    }
    src.push_str("}\n");
    src
}

/// `put` and `put4` for the matmul kernels (see `shaders::matmul_source`) applying the
/// epilogue `fused` to product element `x` at output element `i`. The first output is the
/// kernel's `out`; the others, the inputs and then the constants (if any) are bound from
/// `first_binding` on.
fn epilogue_stores(fused: &Fused, first_binding: u32) -> String {
    let mut src = String::from(
        "\n// ---- generated by crates/device/src/family/generated.rs: an epilogue ----\n",
    );
    let mut binding = first_binding;
    for k in 1..fused.outputs.len() {
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read_write> ep_out{k}: array<f32>;"
        );
        binding += 1;
    }
    for k in 0..input_count(fused) {
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> ep_in{k}: array<f32>;"
        );
        binding += 1;
    }
    // Constants come with the launch, bound after the buffers (see `push_pipeline`).
    if !fused.constants.is_empty() {
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, read> ep_c: array<f32>;"
        );
    }
    src.push_str("fn put(i: u32, x: f32) {\n");
    let constant = |slot: usize| format!("ep_c[{slot}]");
    src += &value_lets(fused, "ep_in", &constant, 1);
    for (k, v) in fused.outputs.iter().enumerate() {
        let name = if k == 0 {
            "out".to_string()
        } else {
            format!("ep_out{k}")
        };
        let _ = writeln!(src, "    {name}[i] = v{v};");
    }
    src.push_str(
        "}\n\
         fn put4(i4: u32, v: vec4<f32>) {\n\
         \x20   let i = i4 * 4u;\n\
         \x20   put(i, v.x);\n\
         \x20   put(i + 1u, v.y);\n\
         \x20   put(i + 2u, v.z);\n\
         \x20   put(i + 3u, v.w);\n\
         }\n",
    );
    src
}

/// A short text naming everything of `fused` its generated source depends on (not the
/// constants' values, which travel as parameters; their slots are named).
fn fused_key(fused: &Fused) -> String {
    let mut key = String::with_capacity(16 * fused.values.len());
    for value in &fused.values {
        let _ = match value {
            FusedValue::Input { index, read } => match read {
                FusedRead::Same => write!(key, "in{index}"),
                FusedRead::Scalar => write!(key, "in{index}[0]"),
                FusedRead::Axis { inner, len } => write!(key, "in{index}[/{inner}%{len}]"),
            },
            FusedValue::Const { slot } => write!(key, "c{slot}"),
            FusedValue::Product => write!(key, "x"),
            FusedValue::Op { op, args } => {
                key += op.name();
                if let Op::Unary(UnaryOp::LeakyRelu(slope)) = op {
                    let _ = write!(key, "{:#x}", slope.to_bits());
                }
                write!(key, "{args:?}")
            }
        };
        key.push(' ');
    }
    let _ = write!(key, "-> {:?}", fused.outputs);
    key
}

/// How many inputs a fused group reads.
fn input_count(fused: &Fused) -> usize {
    fused
        .values
        .iter()
        .filter(|v| matches!(v, FusedValue::Input { .. }))
        .count()
}

/// One `let vN = …;` per value of `fused` at invocation `i` of a kernel of `lanes` (1 or 4)
/// elements per invocation: input `k` is the array `{inputs}k`, constant `slot` the
/// expression `constant(slot)`, the product `x`. With 4 lanes every value is a vec4 and each
/// op applies per component.
fn value_lets(
    fused: &Fused,
    inputs: &str,
    constant: &dyn Fn(usize) -> String,
    lanes: usize,
) -> String {
    let splat = |e: String| {
        if lanes == 4 {
            format!("vec4<f32>({e})")
        } else {
            e
        }
    };
    let mut src = String::new();
    for (v, value) in fused.values.iter().enumerate() {
        let expr = match value {
            FusedValue::Input { index, read } => {
                let load = |at: String| format!("{inputs}{index}[{at}]");
                match (read, lanes) {
                    (FusedRead::Same, _) => load("i".into()),
                    (FusedRead::Scalar, _) => splat(load("0u".into())),
                    // Constant divisors compile to multiplications.
                    (FusedRead::Axis { inner, len }, 1) => load(format!("(i / {inner}u) % {len}u")),
                    // 4 consecutive elements: one vec4 of the innermost axis, one value
                    // (4 divides what follows the axis), or 4 values.
                    _ if reads_vec4(read) => {
                        let FusedRead::Axis { len, .. } = read else {
                            unreachable!()
                        };
                        load(format!("i % {}u", len / 4))
                    }
                    (FusedRead::Axis { inner, len }, _) if inner % 4 == 0 => {
                        splat(load(format!("(i / {}u) % {len}u", inner / 4)))
                    }
                    (FusedRead::Axis { inner, len }, _) => {
                        let parts: Vec<String> = (0..4)
                            .map(|c| load(format!("((i * 4u + {c}u) / {inner}u) % {len}u")))
                            .collect();
                        format!("vec4<f32>({})", parts.join(", "))
                    }
                }
            }
            FusedValue::Const { slot } => splat(constant(*slot)),
            FusedValue::Product => "x".to_string(),
            FusedValue::Op { op, args } => {
                let call = |c: &str| {
                    let a: Vec<String> = args.iter().map(|x| format!("v{x}{c}")).collect();
                    match op {
                        Op::Unary(UnaryOp::LeakyRelu(slope)) => {
                            format!("f_leaky_relu({}, bitcast<f32>({}u))", a[0], slope.to_bits())
                        }
                        Op::Unary(_) | Op::Binary(_) => {
                            format!("f_{}({})", op.name(), a.join(", "))
                        }
                        Op::Where => format!("f_where({})", a.join(", ")),
                        other => unreachable!("{} is not elementwise", other.name()),
                    }
                };
                if lanes == 4 {
                    let parts: Vec<String> = [".x", ".y", ".z", ".w"].map(call).to_vec();
                    format!("vec4<f32>({})", parts.join(", "))
                } else {
                    call("")
                }
            }
        };
        let _ = writeln!(src, "    let v{v} = {expr};");
    }
    src
}

#[cfg(test)]
#[path = "generated_tests.rs"]
mod tests;
