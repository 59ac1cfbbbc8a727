//! The layout family (`shaders/layout.wgsl`): fills and strided copies, which realise full,
//! reshape, permute, expand, slice, pad and concatenation. With generated kernels on, copies
//! are generated per shape (`generated.rs`).

use wgrad_graph::op::{DType, Op};
use wgrad_graph::shape::{broadcast_strides, contiguous_strides, numel};
use wgrad_graph::{Arg, BufferId};

use super::generated;
use crate::kernels;
use crate::params::{dims, CopyParams};
use crate::recorder::Recorder;

/// Records a fill or copy op.
pub(crate) fn record(rec: &Recorder, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) {
    let n = numel(out.shape);
    let dense = |shape| contiguous_strides(shape);
    match op {
        Op::Full { value, dtype, .. } => {
            let bits = match dtype {
                DType::F32 => value.to_bits(),
                DType::U32 => *value as u32,
            };
            rec.fill(out.buffer, n, bits);
        }
        Op::Reshape { .. } => {
            if n > 0 {
                rec.copy(x[0].buffer, 0, out.buffer, n as u64 * 4);
            }
        }
        Op::Permute { perm } => {
            let own = dense(x[0].shape);
            let src: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
            let to = (0, &dense(out.shape)[..]);
            copy_strided(rec, x[0].buffer, out.buffer, out.shape, (0, &src), to);
        }
        Op::Expand { .. } => {
            let src = broadcast_strides(x[0].shape, out.shape);
            let to = (0, &dense(out.shape)[..]);
            copy_strided(rec, x[0].buffer, out.buffer, out.shape, (0, &src), to);
        }
        Op::Slice { ranges } => {
            let own = dense(x[0].shape);
            let at: usize = ranges.iter().zip(&own).map(|(r, s)| r.0 * s).sum();
            let to = (0, &dense(out.shape)[..]);
            copy_strided(rec, x[0].buffer, out.buffer, out.shape, (at, &own), to);
        }
        Op::Pad { before, .. } => {
            rec.fill(out.buffer, n, 0);
            let dst = dense(out.shape);
            let at: usize = before.iter().zip(&dst).map(|(b, s)| b * s).sum();
            let from = (0, &dense(x[0].shape)[..]);
            copy_strided(rec, x[0].buffer, out.buffer, x[0].shape, from, (at, &dst));
        }
        Op::Concat { axis } => {
            let dst = dense(out.shape);
            let mut at = 0;
            for a in x {
                let from = (0, &dense(a.shape)[..]);
                let to = (at * dst[*axis], &dst[..]);
                copy_strided(rec, a.buffer, out.buffer, a.shape, from, to);
                at += a.shape[*axis];
            }
        }
        other => unreachable!("{} is not a layout op", other.name()),
    }
}

/// Copies the elements of `view`: `dst[dst.0 + i·dst.1] = src[src.0 + i·src.1]`, where each
/// side is (start offset, strides).
pub(crate) fn copy_strided(
    rec: &Recorder,
    src: BufferId,
    dst: BufferId,
    view: &[usize],
    from: (usize, &[usize]),
    to: (usize, &[usize]),
) {
    let n = numel(view);
    if n == 0 {
        return;
    }
    if rec.specialize() {
        generated::record_copy(rec, src, dst, view, from, to, None);
        return;
    }
    let params = CopyParams {
        n: n as u32,
        rank: view.len() as u32,
        src_offset: from.0 as u32,
        dst_offset: to.0 as u32,
        value: 0,
        pad: [0; 3],
        shape: dims(view),
        src_strides: dims(from.1),
        dst_strides: dims(to.1),
    };
    rec.push_linear(kernels::COPY, &params, vec![dst, src], n);
}
