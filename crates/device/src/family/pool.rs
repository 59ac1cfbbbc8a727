//! The pooling family (`shaders/pool.wgsl`): max and average pooling and their gradients,
//! compiled per geometry when generated kernels are on. Windows whose loops would pass
//! [`MAX_TRIP`] steps are refused.

use wgrad_graph::op::{Op, Pool2dSpec};
use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, BufferId, Error, Result};

use crate::kernels::{self, Entry};
use crate::params::PoolParams;
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// Records a pooling op or its gradient.
pub(crate) fn record(rec: &Recorder, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) -> Result<()> {
    let n = numel(out.shape);
    let ids = || -> Vec<BufferId> { std::iter::once(out).chain(x).map(|a| a.buffer).collect() };
    match op {
        Op::MaxPool2d(spec) | Op::AvgPool2d(spec) => {
            check_loops(op, spec)?;
            let params = PoolParams::new(spec, n, x[0].shape, out.shape);
            let entry = match op {
                Op::AvgPool2d(_) => kernels::AVG_POOL2D,
                _ if pairs(spec, x[0].shape, out.shape) => kernels::MAX_POOL2D_2X2,
                _ => kernels::MAX_POOL2D,
            };
            push(rec, entry, &params, ids(), n);
        }
        Op::MaxPool2dGrad(spec) => {
            check_loops(op, spec)?;
            let windows = numel(x[1].shape);
            let disjoint = spec.stride[0] >= spec.kernel[0] && spec.stride[1] >= spec.kernel[1];
            if disjoint {
                // With stride >= kernel the windows are disjoint, and a kernel per window
                // (after a zero fill) writes each gradient once.
                rec.fill(out.buffer, n, 0);
                let params = PoolParams::new(spec, windows, x[0].shape, x[1].shape);
                let entry = if pairs(spec, x[0].shape, x[1].shape) {
                    kernels::MAX_POOL2D_GRAD_2X2
                } else {
                    kernels::MAX_POOL2D_GRAD_DISJOINT
                };
                push(rec, entry, &params, ids(), windows);
            } else {
                // Each window's maximum once, then each input sums the windows it wins.
                let at = rec.scratch(&[windows * 4])?;
                let params = PoolParams::new(spec, windows, x[0].shape, x[1].shape);
                let buffers = vec![at[0], x[0].buffer];
                push(rec, kernels::MAX_POOL2D_ARGMAX, &params, buffers, windows);
                let params = PoolParams::new(spec, n, x[0].shape, x[1].shape);
                let buffers = vec![out.buffer, at[0], x[1].buffer];
                push(rec, kernels::MAX_POOL2D_GRAD, &params, buffers, n);
                rec.free_all(at);
            }
        }
        Op::AvgPool2dGrad { spec, .. } => {
            check_loops(op, spec)?;
            let params = PoolParams::new(spec, n, out.shape, x[0].shape);
            push(rec, kernels::AVG_POOL2D_GRAD, &params, ids(), n);
        }
        other => unreachable!("{} is not a pooling op", other.name()),
    }
    Ok(())
}

/// Records a pooling kernel over `n` invocations, compiled for its geometry when generated
/// kernels are on (see `shaders/pool.wgsl`).
fn push(rec: &Recorder, entry: Entry, params: &PoolParams, buffers: Vec<BufferId>, n: usize) {
    if n == 0 {
        return;
    }
    if !rec.specialize() {
        rec.push_linear(entry, params, buffers, n);
        return;
    }
    let u = |v: u32| v as f64;
    let constants = [
        ("PL_FIXED", 1.0),
        ("PL_H", u(params.h)),
        ("PL_W", u(params.w)),
        ("PL_OH", u(params.oh)),
        ("PL_OW", u(params.ow)),
        ("PL_KH", u(params.kh)),
        ("PL_KW", u(params.kw)),
        ("PL_SH", u(params.sh)),
        ("PL_SW", u(params.sw)),
        ("PL_PH", u(params.ph)),
        ("PL_PW", u(params.pw)),
        ("PL_INCLUDE_PAD", u(params.include_pad)),
    ];
    let pipeline = rec.ctx().pipeline_with(entry, &constants);
    let groups = rec.linear_groups(n);
    rec.push_pipeline(pipeline, entry.name, params, (buffers, &[]), groups);
}

/// Refuses pooling whose kernel loops would pass [`MAX_TRIP`] iterations: a window's rows
/// and elements (forward passes, a window's maximum), or the windows covering one input
/// (gradients).
fn check_loops(op: &Op, spec: &Pool2dSpec) -> Result<()> {
    let [kh, kw] = spec.kernel;
    let window = kh * (1 + kw);
    let covering = kh.div_ceil(spec.stride[0]) * (1 + kw.div_ceil(spec.stride[1]));
    let trip = match op {
        Op::AvgPool2dGrad { .. } => covering,
        Op::MaxPool2dGrad(_) => window.max(covering),
        _ => window,
    };
    if trip > MAX_TRIP {
        return Err(Error::Unsupported(format!(
            "{}: a {kh}×{kw} window at stride {:?} takes {trip} steps per invocation, more \
             than this engine's {MAX_TRIP}; for a global pooling use mean or max over axes \
             [2, 3]",
            op.name(),
            spec.stride
        )));
    }
    Ok(())
}

/// Whether pooling `x` into `y` has 2×2 windows at stride 2 inside an input of even width,
/// whose rows the `_2x2` kernels read as aligned vec2s.
fn pairs(spec: &Pool2dSpec, x: &[usize], y: &[usize]) -> bool {
    spec.kernel == [2, 2]
        && spec.stride == [2, 2]
        && spec.padding == [0, 0]
        && x[3].is_multiple_of(2)
        && y[2] * 2 <= x[2]
        && y[3] * 2 <= x[3]
}
