//! The kernel families, one module each with its launcher: which kernels realise each op,
//! chosen by shape and adapter, recorded through the [`Recorder`]. [`record`] is the table
//! from ops to families.
//!
//! Within this layer the modules that use others go one way: generated ← layout ← reduce ←
//! windows ← matmul ← conv_gemm ← conv_windows ← conv, each using only ones to its left
//! (elementwise, index and pool use none).

pub(crate) mod conv;
pub(crate) mod conv_gemm;
pub(crate) mod conv_windows;
pub(crate) mod elementwise;
pub(crate) mod generated;
pub(crate) mod index;
pub(crate) mod layout;
pub(crate) mod matmul;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod windows;

use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, Op, Result};

use crate::recorder::Recorder;
use generated::Epilogue;
use index::IndexFlags;

/// Records the dispatches that compute `op` on `x` into `out`: the family of each op.
pub(crate) fn record(
    rec: &Recorder,
    flags: &IndexFlags,
    op: &Op,
    x: &[Arg<'_>],
    out: &Arg<'_>,
) -> Result<()> {
    match op {
        Op::Full { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Expand { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. } => layout::record(rec, op, x, out),
        Op::RandUniform { .. } | Op::Unary(_) | Op::Binary(_) | Op::Where => {
            elementwise::record(rec, op, x, out)
        }
        Op::Gather | Op::OneHot { .. } | Op::Cast { .. } => index::record(rec, flags, op, x, out),
        Op::ScatterAdd { rows } => return index::scatter_add(rec, flags, *rows, x, out),
        Op::Reduce { .. } | Op::Argmax { .. } => return reduce::record(rec, op, x, out),
        Op::MatMul { .. } => return matmul::record(rec, op, x, out, None),
        Op::Conv2d(_) | Op::Conv2dGradInput { .. } | Op::Conv2dGradWeight { .. } => {
            if numel(out.shape) > 0 {
                return conv::record(rec, op, x, out, None);
            }
        }
        Op::MaxPool2d(_) | Op::MaxPool2dGrad(_) | Op::AvgPool2d(_) | Op::AvgPool2dGrad { .. } => {
            return pool::record(rec, op, x, out)
        }
    }
    Ok(())
}

/// Records `op` (a matmul or a convolution) storing through `epilogue`.
pub(crate) fn record_product(
    rec: &Recorder,
    op: &Op,
    operands: &[Arg<'_>],
    out: &Arg<'_>,
    epilogue: Epilogue<'_>,
) -> Result<()> {
    match op {
        Op::MatMul { .. } => matmul::record(rec, op, operands, out, Some(epilogue)),
        Op::Conv2d(_) if numel(out.shape) == 0 => Ok(()),
        Op::Conv2d(_) => conv::record(rec, op, operands, out, Some(epilogue)),
        other => unreachable!("{} takes no epilogue", other.name()),
    }
}
