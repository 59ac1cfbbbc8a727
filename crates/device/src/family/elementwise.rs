//! The elementwise family (`shaders/elementwise.wgsl`): unary and binary functions and
//! `where`, one kernel per function, inputs broadcast by strides; and the counter-based
//! random numbers of `shaders/random.wgsl`. Chains of these ops usually run fused instead
//! (`generated.rs`).

use wgrad_graph::op::{Op, UnaryOp};
use wgrad_graph::shape::{broadcast_strides, numel, MAX_RANK};
use wgrad_graph::Arg;

use crate::kernels;
use crate::params::{dims, EwParams, RandParams};
use crate::recorder::Recorder;

/// Records an elementwise op or a random fill.
pub(crate) fn record(rec: &Recorder, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) {
    let n = numel(out.shape);
    let buffers = std::iter::once(out).chain(x).map(|a| a.buffer).collect();
    let entry = match op {
        Op::RandUniform { seed, .. } => {
            let params = RandParams {
                n: n as u32,
                seed_lo: *seed as u32,
                seed_hi: (*seed >> 32) as u32,
                pad: 0,
            };
            rec.push_linear(kernels::RAND_UNIFORM, &params, buffers, n);
            return;
        }
        Op::Unary(u) => kernels::unary(*u),
        Op::Binary(b) => kernels::binary(*b),
        Op::Where => kernels::WHERE_SELECT,
        other => unreachable!("{} is not elementwise", other.name()),
    };
    let alpha = match op {
        Op::Unary(UnaryOp::LeakyRelu(s)) => *s,
        _ => 0.0,
    };
    let strides: Vec<[u32; MAX_RANK]> = x
        .iter()
        .map(|a| dims(&broadcast_strides(a.shape, out.shape)))
        .collect();
    let flat = x.iter().all(|a| a.shape == out.shape);
    let pick = |k: usize| strides.get(k).copied().unwrap_or([0; MAX_RANK]);
    let params = EwParams {
        n: n as u32,
        rank: out.shape.len() as u32,
        alpha,
        flat: flat as u32,
        shape: dims(out.shape),
        sa: pick(0),
        sb: pick(1),
        sc: pick(2),
    };
    rec.push_linear(entry, &params, buffers, n);
}
