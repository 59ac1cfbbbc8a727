//! The index family (`shaders/index.wgsl`): kernels that read or write `u32` indices
//! (gather, scatter-add, one-hot, casts). Kernels that index record an index out of range in
//! the index flags ([`IndexFlags`]), which the backend reads back with every result and
//! reports as an [`Error::Index`], never as zeros.

use std::cell::Cell;

use bytemuck::Zeroable;
use wgrad_graph::op::{DType, Op};
use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, BufferId, Error, Result};

use crate::kernels;
use crate::params::IndexParams;
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// The ops that check their indices, by their code in the flags (code = position + 1).
const CHECKED: [&str; 3] = ["gather", "one_hot", "scatter_add"];

/// Records an index op; `flags` is where its kernel records an index out of range.
pub(crate) fn record(rec: &Recorder, flags: &IndexFlags, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) {
    let n = numel(out.shape);
    let mut buffers = vec![out.buffer];
    let (entry, params) = match op {
        Op::Cast { to } => {
            let entry = match to {
                DType::U32 => kernels::CAST_F32_U32,
                DType::F32 => kernels::CAST_U32_F32,
            };
            let params = IndexParams {
                n: n as u32,
                ..Zeroable::zeroed()
            };
            (entry, params)
        }
        Op::Gather | Op::OneHot { .. } => {
            let (entry, count, bound) = match op {
                Op::OneHot { classes } => (kernels::ONE_HOT, *classes, *classes),
                _ => {
                    let row: usize = x[0].shape[1..].iter().product();
                    (kernels::GATHER, row, x[0].shape[0])
                }
            };
            buffers.push(flags.buffer(rec));
            let params = IndexParams {
                n: n as u32,
                count: count as u32,
                bound: bound as u32,
                code: code(op.name()),
                ..Zeroable::zeroed()
            };
            (entry, params)
        }
        other => unreachable!("{} is not an index op", other.name()),
    };
    buffers.extend(x.iter().map(|a| a.buffer));
    rec.push_linear(entry, &params, buffers, n);
}

/// Records a scatter-add into `rows` rows (see `shaders/index.wgsl`): the output cleared,
/// then per range of at most [`MAX_TRIP`] index positions, the links of its chains of equal
/// indices, and the sums along each chain added to the rows. Every index is checked, even
/// when there is nothing to add.
pub(crate) fn scatter_add(
    rec: &Recorder,
    flags: &IndexFlags,
    rows: usize,
    x: &[Arg<'_>],
    out: &Arg<'_>,
) -> Result<()> {
    let n = numel(out.shape);
    let count = n.checked_div(rows).unwrap_or(0);
    let indices = numel(x[1].shape);
    rec.fill(out.buffer, n, 0);
    if indices == 0 {
        return Ok(());
    }
    let links = rec.scratch(&[indices.min(MAX_TRIP) * 4])?;
    for begin in (0..indices).step_by(MAX_TRIP) {
        let end = (begin + MAX_TRIP).min(indices);
        let params = IndexParams {
            n: (end - begin) as u32,
            count: count as u32,
            bound: rows as u32,
            code: code("scatter_add"),
            begin: begin as u32,
            end: end as u32,
            pad: [0; 2],
        };
        let buffers = vec![links[0], flags.buffer(rec), x[1].buffer];
        rec.push_linear(kernels::SCATTER_LINKS, &params, buffers, end - begin);
        let sums = IndexParams {
            n: ((end - begin) * count) as u32,
            ..params
        };
        let buffers = vec![out.buffer, links[0], x[0].buffer, x[1].buffer];
        rec.push_linear(kernels::SCATTER_ADD, &sums, buffers, (end - begin) * count);
    }
    rec.free_all(links);
    Ok(())
}

/// An op's code in the index flags.
fn code(name: &str) -> u32 {
    let at = CHECKED.iter().position(|&c| c == name);
    at.expect("the op checks its indices") as u32 + 1
}

/// Where index kernels record an index out of range: [count, op code, index, bound], in a
/// buffer made (zeroed) on first use and never handed back to the pool.
#[derive(Default)]
pub(crate) struct IndexFlags(Cell<Option<BufferId>>);

/// Bytes of the index flags.
pub(crate) const INDEX_FLAG_BYTES: u64 = 16;

impl IndexFlags {
    /// The flags' buffer, made on first use.
    pub(crate) fn buffer(&self, rec: &Recorder) -> BufferId {
        if let Some(id) = self.0.get() {
            return id;
        }
        let id = rec
            .alloc(INDEX_FLAG_BYTES as usize)
            .expect("a 256-byte buffer is always allowed");
        // Pooled buffers may hold old data; the flags start clear.
        rec.clear(id, INDEX_FLAG_BYTES);
        self.0.set(Some(id));
        id
    }

    /// The buffer, if any index kernel ran.
    pub(crate) fn made(&self) -> Option<BufferId> {
        self.0.get()
    }

    /// The error the flags' `words` (as read back) record, if any; they are then cleared.
    pub(crate) fn check(&self, rec: &Recorder, words: &[u32]) -> Result<()> {
        let &[count, code, index, bound] = words else {
            return Ok(());
        };
        if count == 0 {
            return Ok(());
        }
        if let Some(id) = self.0.get() {
            let zeros = [0u8; INDEX_FLAG_BYTES as usize];
            let buffer = rec.buffer(id);
            let ctx = rec.ctx();
            ctx.scoped(|| ctx.queue.write_buffer(&buffer, 0, &zeros));
        }
        Err(Error::Index {
            op: (code as usize)
                .checked_sub(1)
                .and_then(|i| CHECKED.get(i))
                .copied()
                .unwrap_or("index"),
            index: index as u64,
            size: bound as u64,
        })
    }
}
