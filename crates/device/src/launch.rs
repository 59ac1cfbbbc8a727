//! One launcher arm per primitive: turns an [`Op`] and its operands into recorded dispatches.
//! Each kernel family's parameters are a `#[repr(C)]` struct in `params.rs`.

use bytemuck::{Pod, Zeroable};
use wgrad_graph::op::{DType, Family, Op, ReduceOp};
use wgrad_graph::shape::{broadcast_strides, contiguous_strides, numel, MAX_RANK};
use wgrad_graph::{Arg, BufferId, Error, Result};

use crate::backend::{Command, GpuBackend};
use crate::generated::Kernel;
use crate::params::{dims, CopyParams, EwParams, IndexParams, PoolParams, RandParams};
use crate::reduce::Reduction;
use crate::MAX_TRIP;

const WORKGROUP: u32 = 64;

impl GpuBackend {
    pub(crate) fn push<P: Pod>(
        &self,
        family: Family,
        entry: &str,
        params: &P,
        buffers: Vec<BufferId>,
        groups: [u32; 3],
    ) {
        let pipeline = self.ctx.pipeline(family, entry);
        self.push_pipeline(pipeline, entry, params, (buffers, &[]), groups);
    }

    /// Records a dispatch of `pipeline` with `params` at binding 0, `buffers` from binding 1
    /// on, and, when there are any, `constants` (an epilogue's) bound after the buffers.
    pub(crate) fn push_pipeline<P: Pod>(
        &self,
        pipeline: std::sync::Arc<wgpu::ComputePipeline>,
        label: &str,
        params: &P,
        (buffers, constants): (Vec<BufferId>, &[f32]),
        groups: [u32; 3],
    ) {
        let align = self.ctx.limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let mut arena = self.params.borrow_mut();
        let mut put = |bytes: &[u8]| {
            let at = arena.len().div_ceil(align) * align;
            arena.resize(at, 0);
            arena.extend_from_slice(bytes);
            (at as u64, bytes.len() as u64)
        };
        let (params_at, params_len) = put(bytemuck::bytes_of(params));
        let constants = (!constants.is_empty()).then(|| put(bytemuck::cast_slice(constants)));
        self.commands.borrow_mut().push(Command::Dispatch {
            pipeline,
            params_at,
            params_len,
            buffers,
            constants,
            groups,
            label: if self.profile.is_some() {
                label.to_string()
            } else {
                String::new()
            },
        });
    }

    /// A 1-D launch of `n` invocations, folded into a 2-D grid past the per-dimension limit.
    fn push_linear<P: Pod>(
        &self,
        family: Family,
        entry: &str,
        params: &P,
        buffers: Vec<BufferId>,
        n: usize,
    ) {
        if n == 0 {
            return;
        }
        let groups = self.linear_groups(n);
        self.push(family, entry, params, buffers, groups);
    }

    /// Workgroups for `n` invocations of 64, folded into a 2-D grid past the per-dimension limit.
    pub(crate) fn linear_groups(&self, n: usize) -> [u32; 3] {
        let groups = (n as u32).div_ceil(WORKGROUP);
        let max = self.ctx.limits.max_compute_workgroups_per_dimension.max(1);
        let x = groups.min(max);
        [x, groups.div_ceil(x), 1]
    }
}

impl GpuBackend {
    /// Copies the elements of `view`: `dst[dst.0 + i·dst.1] = src[src.0 + i·src.1]`, where
    /// each side is (start offset, strides).
    pub(crate) fn copy_strided(
        &self,
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
        if self.specialize {
            self.record_copy(src, dst, view, from, to, None);
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
        self.push_linear(Family::Layout, "copy", &params, vec![dst, src], n);
    }

    /// Records one dispatch of kernel `entry` of `family` (matmul or convolution), with
    /// `epilogue` applied to what it stores: then its pipeline is generated, and the
    /// epilogue's buffers are bound after the kernel's own `buffers`.
    pub(crate) fn push_stored<P: Pod>(
        &self,
        family: Family,
        entry: &str,
        epilogue: Option<Epilogue<'_>>,
        params: &P,
        mut buffers: Vec<BufferId>,
        groups: [u32; 3],
    ) {
        let (pipeline, constants) = match epilogue {
            Some(e) => {
                let first = buffers.len() as u32 + 1;
                buffers.extend_from_slice(e.buffers);
                let kernel = Kernel::Epilogue {
                    family,
                    entry,
                    fused: e.fused,
                    first,
                };
                (self.generated(&kernel), &e.fused.constants[..])
            }
            None => (self.ctx.pipeline(family, entry), &[][..]),
        };
        self.push_pipeline(pipeline, entry, params, (buffers, constants), groups);
    }

    /// Buffers of these sizes, or none (whatever was allocated handed back) when one is
    /// refused.
    pub(crate) fn alloc_all(&self, sizes: &[usize]) -> Option<Vec<BufferId>> {
        use wgrad_graph::Backend;
        let mut ids = Vec::with_capacity(sizes.len());
        for &bytes in sizes {
            match self.alloc(bytes) {
                Ok(id) => ids.push(id),
                Err(_) => {
                    self.free_all(ids);
                    return None;
                }
            }
        }
        Some(ids)
    }

    /// Scratch buffers of these sizes, or an out-of-memory error naming their total (nothing
    /// kept) when one is refused: for work that has no other plan to fall back on.
    pub(crate) fn scratch(&self, sizes: &[usize]) -> Result<Vec<BufferId>> {
        self.alloc_all(sizes).ok_or(Error::OutOfMemory {
            bytes: sizes.iter().sum::<usize>() as u64,
        })
    }

    /// Hands scratch buffers back to the pool.
    pub(crate) fn free_all(&self, scratch: impl IntoIterator<Item = BufferId>) {
        use wgrad_graph::Backend;
        scratch.into_iter().for_each(|id| self.free(id));
    }

    /// Records a pooling kernel over `n` invocations, compiled for its geometry when
    /// generated kernels are on (see `shaders/pool.wgsl`).
    fn push_pool(&self, entry: &str, params: &PoolParams, buffers: Vec<BufferId>, n: usize) {
        if n == 0 {
            return;
        }
        if !self.specialize {
            self.push_linear(Family::Pool, entry, params, buffers, n);
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
        let pipeline = self.ctx.pipeline_with(Family::Pool, entry, &constants);
        let groups = self.linear_groups(n);
        self.push_pipeline(pipeline, entry, params, (buffers, &[]), groups);
    }

    pub(crate) fn fill(&self, dst: BufferId, n: usize, bits: u32) {
        if bits == 0 && n > 0 {
            // A native clear: a memset on CPU adapters, a fast path on GPUs.
            self.commands.borrow_mut().push(Command::Clear {
                dst,
                bytes: n as u64 * 4,
            });
            return;
        }
        let params = CopyParams {
            n: n as u32,
            value: bits,
            ..Zeroable::zeroed()
        };
        self.push_linear(Family::Layout, "fill", &params, vec![dst], n);
    }
}

/// Records the dispatches that compute `op`.
pub(crate) fn record(be: &GpuBackend, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) -> Result<()> {
    let n = numel(out.shape);
    let (family, entries) = op.kernels();
    let entry = entries.first().map(String::as_str).unwrap_or("");
    let ids = |extra: &[Arg]| -> Vec<BufferId> {
        std::iter::once(out.buffer)
            .chain(extra.iter().map(|a| a.buffer))
            .collect()
    };
    match op {
        Op::Full { value, dtype, .. } => {
            let bits = match dtype {
                DType::F32 => value.to_bits(),
                DType::U32 => *value as u32,
            };
            be.fill(out.buffer, n, bits);
        }
        Op::RandUniform { seed, .. } => {
            let params = RandParams {
                n: n as u32,
                seed_lo: *seed as u32,
                seed_hi: (*seed >> 32) as u32,
                pad: 0,
            };
            be.push_linear(family, entry, &params, ids(&[]), n);
        }
        Op::Unary(_) | Op::Binary(_) | Op::Where => {
            let alpha = match op {
                Op::Unary(wgrad_graph::UnaryOp::LeakyRelu(s)) => *s,
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
            be.push_linear(family, entry, &params, ids(x), n);
        }
        Op::Reduce { op: how, axes, .. } => {
            let how = match how {
                ReduceOp::Sum => Reduction::Sum,
                ReduceOp::Max => Reduction::Max,
            };
            be.record_reduce(how, x[0].buffer, x[0].shape, axes, out.buffer)?;
        }
        Op::Argmax { axis, .. } => {
            be.record_reduce(
                Reduction::Argmax,
                x[0].buffer,
                x[0].shape,
                &[*axis],
                out.buffer,
            )?;
        }
        Op::MatMul { .. } => crate::matmul::record_matmul(be, op, x, out, None)?,
        Op::Reshape { .. } => {
            if n > 0 {
                be.commands.borrow_mut().push(Command::Copy {
                    src: x[0].buffer,
                    src_offset: 0,
                    dst: out.buffer,
                    bytes: n as u64 * 4,
                });
            }
        }
        Op::Permute { perm } => {
            let own = contiguous_strides(x[0].shape);
            let src: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
            be.copy_strided(
                x[0].buffer,
                out.buffer,
                out.shape,
                (0, &src),
                (0, &contiguous_strides(out.shape)),
            );
        }
        Op::Expand { .. } => {
            let src = broadcast_strides(x[0].shape, out.shape);
            be.copy_strided(
                x[0].buffer,
                out.buffer,
                out.shape,
                (0, &src),
                (0, &contiguous_strides(out.shape)),
            );
        }
        Op::Slice { ranges } => {
            let own = contiguous_strides(x[0].shape);
            let at: usize = ranges.iter().zip(&own).map(|(r, s)| r.0 * s).sum();
            be.copy_strided(
                x[0].buffer,
                out.buffer,
                out.shape,
                (at, &own),
                (0, &contiguous_strides(out.shape)),
            );
        }
        Op::Pad { before, .. } => {
            be.fill(out.buffer, n, 0);
            let dst = contiguous_strides(out.shape);
            let at: usize = before.iter().zip(&dst).map(|(b, s)| b * s).sum();
            be.copy_strided(
                x[0].buffer,
                out.buffer,
                x[0].shape,
                (0, &contiguous_strides(x[0].shape)),
                (at, &dst),
            );
        }
        Op::Concat { axis } => {
            let dst = contiguous_strides(out.shape);
            let mut at = 0;
            for a in x {
                be.copy_strided(
                    a.buffer,
                    out.buffer,
                    a.shape,
                    (0, &contiguous_strides(a.shape)),
                    (at * dst[*axis], &dst),
                );
                at += a.shape[*axis];
            }
        }
        Op::Gather | Op::OneHot { .. } => {
            let (count, bound, code) = match op {
                Op::OneHot { classes } => (*classes, *classes, 2),
                _ => (x[0].shape[1..].iter().product(), x[0].shape[0], 1),
            };
            let params = IndexParams {
                n: n as u32,
                count: count as u32,
                bound: bound as u32,
                code,
            };
            let mut buffers = vec![out.buffer, be.index_flags()];
            buffers.extend(x.iter().map(|a| a.buffer));
            be.push_linear(family, entry, &params, buffers, n);
        }
        Op::Conv2d(_) | Op::Conv2dGradInput { .. } | Op::Conv2dGradWeight { .. } => {
            if n > 0 {
                be.record_conv(op, x, out, None)?;
            }
        }
        Op::MaxPool2d(spec) | Op::AvgPool2d(spec) => {
            check_pool_loops(op, spec)?;
            let params = PoolParams::new(spec, n, x[0].shape, out.shape);
            let pairs = matches!(op, Op::MaxPool2d(_)) && pool_pairs(spec, x[0].shape, out.shape);
            let entry = if pairs { "max_pool2d_2x2" } else { entry };
            be.push_pool(entry, &params, ids(x), n);
        }
        Op::MaxPool2dGrad(spec) => {
            check_pool_loops(op, spec)?;
            let windows = numel(x[1].shape);
            let disjoint = spec.stride[0] >= spec.kernel[0] && spec.stride[1] >= spec.kernel[1];
            if disjoint {
                be.fill(out.buffer, n, 0);
                let params = PoolParams::new(spec, windows, x[0].shape, x[1].shape);
                let pairs = pool_pairs(spec, x[0].shape, x[1].shape);
                let entry = if pairs { &entries[2] } else { &entries[1] };
                be.push_pool(entry, &params, ids(x), windows);
            } else {
                // Each window's maximum once, then each input sums the windows it wins.
                let at = be.scratch(&[windows * 4])?;
                let params = PoolParams::new(spec, windows, x[0].shape, x[1].shape);
                be.push_pool(&entries[3], &params, vec![at[0], x[0].buffer], windows);
                let params = PoolParams::new(spec, n, x[0].shape, x[1].shape);
                be.push_pool(entry, &params, vec![out.buffer, at[0], x[1].buffer], n);
                be.free_all(at);
            }
        }
        Op::AvgPool2dGrad { spec, .. } => {
            check_pool_loops(op, spec)?;
            let params = PoolParams::new(spec, n, out.shape, x[0].shape);
            be.push_pool(entry, &params, ids(x), n);
        }
        Op::Cast { to } => {
            let params = IndexParams {
                n: n as u32,
                ..Zeroable::zeroed()
            };
            let entry = match to {
                DType::U32 => &entries[0],
                DType::F32 => &entries[1],
            };
            be.push_linear(family, entry, &params, ids(x), n);
        }
    }
    Ok(())
}

/// A fused group of elementwise ops applied to each element a kernel stores (see
/// `Backend::exec_with_epilogue`): its expression, and the buffers of its other outputs and
/// of its inputs, bound after the kernel's own.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub fused: &'a wgrad_graph::Fused,
    pub buffers: &'a [BufferId],
}

/// Refuses pooling whose kernel loops would pass [`MAX_TRIP`] iterations: a window's rows
/// and elements (forward passes, a window's maximum), or the windows covering one input
/// (gradients).
fn check_pool_loops(op: &Op, spec: &wgrad_graph::Pool2dSpec) -> Result<()> {
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
fn pool_pairs(spec: &wgrad_graph::Pool2dSpec, x: &[usize], y: &[usize]) -> bool {
    spec.kernel == [2, 2]
        && spec.stride == [2, 2]
        && spec.padding == [0, 0]
        && x[3].is_multiple_of(2)
        && y[2] * 2 <= x[2]
        && y[3] * 2 <= x[3]
}
