//! Reductions (sum, max, argmax) over any axes in passes of bounded invocations
//! (`shaders/reduce.wgsl`): each output's elements are shared among `parts` invocations, whose
//! partial results the next pass combines, until one value per output is left. No invocation
//! walks more than [`MAX_TRIP`] elements, and the order of every combination depends only on
//! the shape, so results are deterministic.

use wgrad_graph::shape::{contiguous_strides, numel};
use wgrad_graph::{Arg, BufferId, Op, ReduceOp, Result};

use super::layout;
use crate::kernels::{self, Entry};
use crate::params::ReduceParams;
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// How a reduction combines values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduction {
    Sum,
    Max,
    /// The index of the largest value (a `u32` output).
    Argmax,
}

impl Reduction {
    fn entry(self) -> Entry {
        match self {
            Reduction::Sum => kernels::REDUCE_SUM,
            Reduction::Max => kernels::REDUCE_MAX,
            Reduction::Argmax => kernels::ARGMAX,
        }
    }

    /// The kernel whose workgroups combine their shares through subgroup operations.
    fn subgroup_entry(self) -> Option<Entry> {
        match self {
            Reduction::Sum => Some(kernels::REDUCE_SUM_SUBGROUP),
            Reduction::Max => Some(kernels::REDUCE_MAX_SUBGROUP),
            Reduction::Argmax => None,
        }
    }
}

/// Fewest elements an invocation takes while there are more than this many per output:
/// below it a pass costs more than it saves.
const MIN_CHUNK: usize = 256;

/// Invocations per workgroup of the reduction kernels.
const WG: usize = kernels::WORKGROUP as usize;

/// How many invocations a pass aims for: enough to fill a GPU, or a CPU adapter's threads.
fn target_invocations(gpu: bool) -> usize {
    if gpu {
        1 << 16
    } else {
        1 << 9
    }
}

/// Invocations per output for `n` outputs of `count` elements each: at most half
/// [`MAX_TRIP`] elements each (an invocation's loops may take two steps per element), at
/// least [`MIN_CHUNK`] where the count allows, and near the target.
fn parts(n: usize, count: usize, gpu: bool) -> usize {
    let fewest = count.div_ceil(MAX_TRIP / 2);
    let most = count.div_ceil(MIN_CHUNK);
    let wanted = target_invocations(gpu).div_ceil(n.max(1));
    fewest.max(wanted.min(most)).max(1)
}

/// The input's axes as alternating runs of kept and reduced axes (sizes of 1 dropped,
/// neighbours of one kind merged): (size, stride, reduced), outermost first.
fn blocks(shape: &[usize], axes: &[usize]) -> Vec<(usize, usize, bool)> {
    let strides = contiguous_strides(shape);
    let mut out: Vec<(usize, usize, bool)> = Vec::new();
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let reduced = axes.contains(&d);
        match out.last_mut() {
            // A contiguous input: merging two neighbours of one kind keeps the inner stride.
            Some(last) if last.2 == reduced => {
                last.0 *= shape[d];
                last.1 = strides[d];
            }
            _ => out.push((shape[d], strides[d], reduced)),
        }
    }
    out
}

/// Records a sum, max or argmax op.
pub(crate) fn record(rec: &Recorder, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) -> Result<()> {
    let (how, axes) = match op {
        Op::Reduce { op, axes, .. } => match op {
            ReduceOp::Sum => (Reduction::Sum, &axes[..]),
            ReduceOp::Max => (Reduction::Max, &axes[..]),
        },
        Op::Argmax { axis, .. } => (Reduction::Argmax, std::slice::from_ref(axis)),
        other => unreachable!("{} is not a reduction", other.name()),
    };
    reduce(rec, how, x[0].buffer, x[0].shape, axes, out.buffer)
}

/// Records the reduction of `input` (of `shape`) over `axes` into `out`: f32 values for
/// sum and max, u32 indices for argmax (along its one axis).
pub(crate) fn reduce(
    rec: &Recorder,
    how: Reduction,
    input: BufferId,
    shape: &[usize],
    axes: &[usize],
    out: BufferId,
) -> Result<()> {
    let count: usize = axes.iter().map(|&a| shape[a]).product();
    let n = numel(shape) / count.max(1);
    if numel(shape) == 0 {
        // Empty groups: the sum of nothing is 0 (max and argmax refuse empty axes).
        let n: usize = (0..shape.len())
            .filter(|d| !axes.contains(d))
            .map(|d| shape[d])
            .product();
        let bits = match how {
            Reduction::Max => f32::NEG_INFINITY.to_bits(),
            _ => 0,
        };
        rec.fill(out, n, bits);
        return Ok(());
    }
    let blocks = blocks(shape, axes);
    let reduced: Vec<(usize, usize)> = blocks.iter().filter(|b| b.2).map(|b| (b.0, b.1)).collect();
    if reduced.len() > 2 {
        return reduce_permuted(rec, how, input, shape, axes, out);
    }
    let kept: Vec<(usize, usize)> = blocks.iter().filter(|b| !b.2).map(|b| (b.0, b.1)).collect();
    // Two levels (r outer, l inner); one reduced run is the inner level alone.
    let ((r_len, r_stride), (l_len, l_stride)) = match reduced[..] {
        [outer, inner] => (outer, inner),
        [inner] => ((1, 0), inner),
        _ => ((1, 0), (1, 0)),
    };
    let mut params = ReduceParams {
        n: n as u32,
        count: count as u32,
        kept_rank: kept.len() as u32,
        r_len: r_len as u32,
        r_stride: r_stride as u32,
        l_len: l_len as u32,
        l_stride: l_stride as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    for (d, &(size, stride)) in kept.iter().enumerate() {
        params.kept[d] = size as u32;
        params.kept_strides[d] = stride as u32;
    }
    // Kept axes innermost (a column reduction): neighbouring outputs are neighbours in
    // memory, so neighbouring invocations take them.
    params.outputs_fastest = kept.last().is_some_and(|k| k.1 == 1) as u32;
    reduce_passes(rec, how, input, params, out)
}

/// Runs the first pass `first` (its `parts` still to choose) and whatever passes over
/// partial results it takes, the last one writing `out`.
fn reduce_passes(
    rec: &Recorder,
    how: Reduction,
    input: BufferId,
    mut params: ReduceParams,
    out: BufferId,
) -> Result<()> {
    let gpu = rec.gpu_kernels();
    let n = params.n as usize;
    // (values, indices) of the pass being read; the first reads the input itself.
    let mut reading = (input, input);
    let mut scratch: Vec<BufferId> = Vec::new();
    loop {
        let count = params.count as usize;
        let mut parts = parts(n, count, gpu);
        // CPU-type adapters: each share a contiguous block (an invocation streams
        // through memory), none of them empty; GPUs: interleaved shares (neighbouring
        // invocations read neighbouring elements).
        let chunk = count.div_ceil(parts) as u32;
        if !gpu {
            parts = count.div_ceil(chunk as usize);
        }
        // With subgroups, a pass of at least a workgroup's worth of shares per output takes
        // whole workgroups per output, each storing one combined partial result.
        let grouped = how
            .subgroup_entry()
            .filter(|_| rec.subgroups() && params.outputs_fastest == 0 && parts >= WG);
        if grouped.is_some() {
            parts = parts.next_multiple_of(WG);
        }
        // Partial results per output this pass leaves.
        let left = if grouped.is_some() { parts / WG } else { parts };
        params.parts = parts as u32;
        (params.first_step, params.k_step, params.span) = match gpu {
            true => (1, parts as u32, params.count),
            false => (chunk, 1, chunk),
        };
        let (l, ls, rs) = (params.l_len, params.l_stride, params.r_stride);
        params.dt = params.k_step % l;
        params.step = params.dt * ls + (params.k_step / l) * rs;
        params.wrap = rs.wrapping_sub(l * ls);
        let last = left == 1;
        // Argmax keeps the values of the last pass too (in scratch, unread).
        let sizes: Vec<usize> = match (how, last) {
            (Reduction::Argmax, true) => vec![n * 4],
            (Reduction::Argmax, false) => vec![n * parts * 4; 2],
            (_, true) => vec![],
            (_, false) => vec![n * left * 4],
        };
        let written = match rec.scratch(&sizes) {
            Ok(w) => w,
            Err(e) => {
                rec.free_all(scratch);
                return Err(e);
            }
        };
        let buffers = match how {
            Reduction::Argmax => {
                let (values, indices) = match last {
                    true => (written[0], out),
                    false => (written[0], written[1]),
                };
                vec![indices, reading.0, reading.1, values]
            }
            _ => vec![if last { out } else { written[0] }, reading.0],
        };
        let groups = rec.linear_groups(n * parts);
        rec.push(grouped.unwrap_or(how.entry()), &params, buffers, groups);
        reading = match how {
            Reduction::Argmax if !last => (written[0], written[1]),
            _ if !last => (written[0], written[0]),
            _ => reading,
        };
        scratch.extend(written);
        if last {
            break;
        }
        // The next pass reads the partial results, [n, left], one row per output.
        params = ReduceParams {
            n: n as u32,
            count: left as u32,
            kept_rank: (n > 1) as u32,
            kept: [n as u32, 0, 0, 0],
            kept_strides: [left as u32, 0, 0, 0],
            r_len: 1,
            r_stride: 0,
            l_len: left as u32,
            l_stride: 1,
            indexed: (how == Reduction::Argmax) as u32,
            ..bytemuck::Zeroable::zeroed()
        };
    }
    // Work recorded later runs after these passes, so the scratch can be handed back.
    rec.free_all(scratch);
    Ok(())
}

/// A reduction whose reduced axes do not collapse into two levels: the input is first
/// copied with its kept axes in front and its reduced axes behind, then reduced over the
/// trailing run.
fn reduce_permuted(
    rec: &Recorder,
    how: Reduction,
    input: BufferId,
    shape: &[usize],
    axes: &[usize],
    out: BufferId,
) -> Result<()> {
    let order: Vec<usize> = (0..shape.len())
        .filter(|d| !axes.contains(d))
        .chain(axes.iter().copied())
        .collect();
    let view: Vec<usize> = order.iter().map(|&d| shape[d]).collect();
    let own = contiguous_strides(shape);
    let from: Vec<usize> = order.iter().map(|&d| own[d]).collect();
    let bytes = numel(shape) * 4;
    let copy = rec.scratch(&[bytes])?;
    layout::copy_strided(
        rec,
        input,
        copy[0],
        &view,
        (0, &from),
        (0, &contiguous_strides(&view)),
    );
    let trailing: Vec<usize> = (shape.len() - axes.len()..shape.len()).collect();
    let result = reduce(rec, how, copy[0], &view, &trailing, out);
    rec.free_all(copy);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_collapse_into_alternating_runs() {
        // NCHW over (0, 2, 3): images, then channels kept, then pixels.
        assert_eq!(
            blocks(&[128, 8, 26, 26], &[0, 2, 3]),
            vec![(128, 5408, true), (8, 676, false), (676, 1, true)]
        );
        // Sizes of 1 vanish; neighbours of one kind merge.
        assert_eq!(
            blocks(&[1, 4, 5, 1, 6], &[1, 2]),
            vec![(20, 6, true), (6, 1, false)]
        );
        assert_eq!(blocks(&[3, 1], &[1]), vec![(3, 1, false)]);
    }

    #[test]
    fn passes_stay_within_the_bound() {
        for &(n, count) in &[(1, 1), (1, 70_000), (3, 100_000), (8, 86_528), (1, 1 << 30)] {
            for gpu in [false, true] {
                let p = parts(n, count, gpu);
                assert!(
                    2 * count.div_ceil(p) <= MAX_TRIP,
                    "{n} × {count}: {p} parts"
                );
                assert!(p <= count.max(1));
            }
        }
        // Short groups take one pass.
        assert_eq!(parts(64, 10, false), 1);
        assert_eq!(parts(64, 10, true), 1);
    }
}
