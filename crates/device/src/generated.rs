//! Kernels generated per graph: fused chains of elementwise ops, and strided copies with
//! their shapes and strides written into the source as constants (divisions by constants
//! compile to multiplications; the generic kernels divide by values read from memory).
//! Pipelines are cached by source, so each distinct kernel compiles once.

use std::fmt::Write;

use wgrad_graph::op::Op;
use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, BufferId, Fused, FusedRead, FusedValue, UnaryOp, MAX_FUSED_CONSTANTS};

use crate::backend::GpuBackend;
use crate::params::{FusedParams, GenCopyParams};

impl GpuBackend {
    /// Records a generated kernel computing a fused group of elementwise ops.
    pub(crate) fn record_fused(&self, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) {
        let n = numel(outs[0].shape);
        if n == 0 {
            return;
        }
        let pipeline = self.ctx.generated_pipeline(&fused_source(fused));
        let mut params = FusedParams {
            n: n as u32,
            pad: [0; 3],
            constants: [0.0; MAX_FUSED_CONSTANTS],
        };
        params.constants[..fused.constants.len()].copy_from_slice(&fused.constants);
        let buffers = outs.iter().chain(inputs).map(|a| a.buffer).collect();
        self.push_pipeline(pipeline, "fused", &params, buffers, self.linear_groups(n));
    }

    /// Records a generated strided copy (see [`GpuBackend::copy_strided`]).
    pub(crate) fn record_copy(
        &self,
        src: BufferId,
        dst: BufferId,
        view: &[usize],
        from: (usize, &[usize]),
        to: (usize, &[usize]),
    ) {
        let n = numel(view);
        let pipeline = self
            .ctx
            .generated_pipeline(&copy_source(view, from.1, to.1));
        let params = GenCopyParams {
            n: n as u32,
            src_offset: from.0 as u32,
            dst_offset: to.0 as u32,
            pad: 0,
        };
        self.push_pipeline(
            pipeline,
            "copy (generated)",
            &params,
            vec![dst, src],
            self.linear_groups(n),
        );
    }
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

/// WGSL for a strided copy of `view`, the innermost dimension first in the index arithmetic.
fn copy_source(view: &[usize], src: &[usize], dst: &[usize]) -> String {
    let dims = collapse(view, src, dst);
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
    format!(
        "// Rust twin: GenCopyParams in crates/device/src/params.rs\n\
         struct GenCopyParams {{ n: u32, src_offset: u32, dst_offset: u32, _pad: u32 }}\n\
         @group(0) @binding(0) var<storage, read> p: GenCopyParams;\n\
         @group(0) @binding(1) var<storage, read_write> out: array<u32>;\n\
         @group(0) @binding(2) var<storage, read> src: array<u32>;\n\
         @compute @workgroup_size(64)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {{\n\
         \x20   let i = g.x + g.y * w.x * 64u;\n\
         \x20   if (i >= p.n) {{ return; }}\n\
         \x20   var r = i;\n\
         \x20   var s = p.src_offset;\n\
         \x20   var t = p.dst_offset;\n\
         {body}\
         \x20   out[t] = src[s];\n\
         }}\n"
    )
}

/// WGSL for a fused chain: the shared helpers of `common.wgsl`, one binding per input, and one
/// `let` per value, calling the same `f_*` functions as the single-op kernels.
fn fused_source(fused: &Fused) -> String {
    use std::fmt::Write;
    let mut src = String::from(crate::shaders::COMMON);
    src.push_str(
        "\n// Rust twin: FusedParams in crates/device/src/params.rs\n\
         struct FusedParams { n: u32, _p0: u32, _p1: u32, _p2: u32, c: array<f32, 16> }\n\
         @group(0) @binding(0) var<storage, read> p: FusedParams;\n",
    );
    for k in 0..fused.outputs.len() {
        let _ = writeln!(
            src,
            "@group(0) @binding({}) var<storage, read_write> out{k}: array<f32>;",
            k + 1
        );
    }
    let inputs = fused
        .values
        .iter()
        .filter(|v| matches!(v, FusedValue::Input { .. }))
        .count();
    for k in 0..inputs {
        let _ = writeln!(
            src,
            "@group(0) @binding({}) var<storage, read> in{k}: array<f32>;",
            k + 1 + fused.outputs.len()
        );
    }
    src.push_str(
        "@compute @workgroup_size(64)\n\
         fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {\n\
         \x20   let i = g.x + g.y * w.x * 64u;\n\
         \x20   if (i >= p.n) { return; }\n",
    );
    for (v, value) in fused.values.iter().enumerate() {
        let expr = match value {
            FusedValue::Input { index, read } => match read {
                FusedRead::Same => format!("in{index}[i]"),
                FusedRead::Scalar => format!("in{index}[0u]"),
                // Constant divisors compile to multiplications.
                FusedRead::Axis { inner, len } => format!("in{index}[(i / {inner}u) % {len}u]"),
            },
            FusedValue::Const { slot } => format!("p.c[{slot}]"),
            FusedValue::Op { op, args } => {
                let a: Vec<String> = args.iter().map(|x| format!("v{x}")).collect();
                match op {
                    Op::Unary(UnaryOp::LeakyRelu(slope)) => {
                        format!("f_leaky_relu({}, bitcast<f32>({}u))", a[0], slope.to_bits())
                    }
                    Op::Unary(_) | Op::Binary(_) => format!("f_{}({})", op.name(), a.join(", ")),
                    Op::Where => format!("f_where({})", a.join(", ")),
                    other => unreachable!("{} is not elementwise", other.name()),
                }
            }
        };
        let _ = writeln!(src, "    let v{v} = {expr};");
    }
    for (k, v) in fused.outputs.iter().enumerate() {
        let _ = writeln!(src, "    out{k}[i] = v{v};");
    }
    src.push_str("}\n");
    src
}
