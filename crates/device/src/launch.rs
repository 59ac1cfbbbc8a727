//! One launcher arm per primitive: turns an [`Op`] and its operands into recorded dispatches.
//! Each kernel family's parameters are a `#[repr(C)]` struct in `params.rs`.

use bytemuck::{Pod, Zeroable};
use wgrad_graph::op::{DType, Family, Op};
use wgrad_graph::shape::{broadcast_strides, contiguous_strides, numel, MAX_RANK};
use wgrad_graph::{Arg, BufferId};

use crate::backend::{Command, GpuBackend};
use crate::params::{
    dims, CopyParams, EwParams, MatmulParams, PoolParams, RandParams, ShapeParams,
};
use crate::shaders::{UA_LANES, UA_WINDOWS};

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
        self.push_pipeline(pipeline, entry, params, buffers, groups);
    }

    pub(crate) fn push_pipeline<P: Pod>(
        &self,
        pipeline: std::sync::Arc<wgpu::ComputePipeline>,
        label: &str,
        params: &P,
        buffers: Vec<BufferId>,
        groups: [u32; 3],
    ) {
        let align = self.ctx.limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let mut arena = self.params.borrow_mut();
        let at = arena.len().div_ceil(align) * align;
        arena.resize(at, 0);
        arena.extend_from_slice(bytemuck::bytes_of(params));
        self.commands.borrow_mut().push(Command::Dispatch {
            pipeline,
            params_at: at as u64,
            params_len: std::mem::size_of::<P>() as u64,
            buffers,
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
        let pipeline = match epilogue {
            Some(e) => {
                let first = buffers.len() as u32 + 1;
                buffers.extend_from_slice(e.buffers);
                self.epilogue_pipeline(family, entry, e.fused, first)
            }
            None => self.ctx.pipeline(family, entry),
        };
        self.push_pipeline(pipeline, entry, params, buffers, groups);
    }

    /// Records the product `params` describes with A read through uniform windows of 64 KiB
    /// (CPU-type adapters; see `shaders::uniform_window_kernels`): each dispatch fills up to
    /// [`UA_WINDOWS`] windows with rows of A and multiplies them with all of B; A stored
    /// transposed is first transposed into scratch, and a B that several dispatches read is
    /// first packed in panels (`MatmulParams::b_panel`). `strided` takes the kernel that stores
    /// through an offset and row length. False (nothing recorded) where it does not apply:
    /// kernels for GPUs chosen, transposed B, per-batch A, k or n not multiples of 4, k above
    /// 2048 (a window holds 8 rows at least).
    pub(crate) fn matmul_ua(
        &self,
        params: &MatmulParams,
        (a, b, out): (BufferId, BufferId, BufferId),
        strided: bool,
        epilogue: Option<Epilogue<'_>>,
    ) -> bool {
        const WINDOW: u64 = 65536;
        let (m, n, k) = (params.m, params.n, params.k);
        let rank = params.batch_rank as usize;
        let shared_a = params.sa[..rank].iter().all(|&s| s == 0);
        // Whole 8-row blocks per window.
        let window_rows = ((WINDOW / 4) as u32 / k.max(1)) / 8 * 8;
        let fits = !self.ctx.gpu_kernels
            && self.ctx.limits.max_uniform_buffer_binding_size >= WINDOW
            && self.ctx.limits.max_uniform_buffers_per_shader_stage >= UA_WINDOWS as u32
            && params.tb == 0
            && shared_a
            && k % 4 == 0
            && n % 4 == 0
            && k > 0
            && window_rows >= 8
            && m > 0;
        if !fits {
            return false;
        }
        let used = (m.div_ceil(window_rows) as usize).min(UA_WINDOWS);
        let batch: u32 = params.batch[..rank].iter().product();
        let per_dispatch = window_rows * used as u32;
        // B read by more than one dispatch is first packed in panels of one workgroup's
        // columns, each panel's rows together, so that a workgroup reads its panel as one
        // contiguous run (docs/performance.md).
        let width = 4 * UA_LANES;
        let pack = batch == 1 && m > per_dispatch;
        // Scratch: the windows; A stored [k, m] transposed once, whose rows the windows copy;
        // B packed.
        let (m_, n_, k_) = (m as usize, n as usize, k as usize);
        let mut sizes = vec![WINDOW as usize; used];
        if params.ta != 0 {
            sizes.push(m_ * k_ * 4);
        }
        if pack {
            sizes.push(n.div_ceil(width) as usize * k_ * width as usize * 4);
        }
        let Some(mut scratch) = self.alloc_all(&sizes) else {
            return false;
        };
        let packed = pack.then(|| scratch.pop().expect("allocated"));
        let transposed = (params.ta != 0).then(|| scratch.pop().expect("allocated"));
        let windows = scratch;
        // Recorded only once all scratch is in hand, so a refusal records nothing.
        if let Some(pb) = packed {
            // Whole panels, then the last one's columns.
            let (w, full) = (width as usize, n_ / width as usize);
            let to = (0, &[w, k_ * w, 1][..]);
            self.copy_strided(b, pb, &[k_, full, w], (0, &[n_, w, 1]), to);
            if n_ % w != 0 {
                let to = (full * k_ * w, &[w, 1][..]);
                self.copy_strided(b, pb, &[k_, n_ % w], (full * w, &[n_, 1]), to);
            }
        }
        if let Some(t) = transposed {
            self.copy_strided(a, t, &[m_, k_], (0, &[1, m_]), (0, &[k_, 1]));
        }
        let a_rows = transposed.unwrap_or(a);
        let entry = if strided {
            "matmul_vec4_out_ua"
        } else {
            "matmul_vec4_ua"
        };
        let b = packed.unwrap_or(b);
        for row0 in (0..m).step_by(per_dispatch as usize) {
            let count = per_dispatch.min(m - row0);
            for (w, &window) in windows.iter().enumerate() {
                let first = row0 + w as u32 * window_rows;
                if first >= row0 + count {
                    break;
                }
                let rows = window_rows.min(row0 + count - first);
                self.commands.borrow_mut().push(Command::Copy {
                    src: a_rows,
                    src_offset: first as u64 * k as u64 * 4,
                    dst: window,
                    bytes: rows as u64 * k as u64 * 4,
                });
            }
            let p = MatmulParams {
                a_row0: row0,
                a_rows: count,
                window_rows,
                b_panel: if packed.is_some() { UA_LANES } else { 0 },
                ..*params
            };
            // Bindings: out, window 0, B, windows 1..; unused ones repeat window 0.
            let mut buffers = vec![out, windows[0], b];
            buffers.extend((1..UA_WINDOWS).map(|w| *windows.get(w).unwrap_or(&windows[0])));
            let groups = [count.div_ceil(8), (n / 4).div_ceil(UA_LANES), batch];
            self.push_stored(Family::Matmul, entry, epilogue, &p, buffers, groups);
        }
        // Work recorded later runs after these dispatches, so the scratch can be reused.
        self.free_all(windows.into_iter().chain(transposed).chain(packed));
        true
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
        self.push_pipeline(pipeline, entry, params, buffers, self.linear_groups(n));
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
pub(crate) fn record(be: &GpuBackend, op: &Op, x: &[Arg<'_>], out: &Arg<'_>) {
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
        Op::Reduce { axes, .. } => {
            let s = x[0].shape;
            let mut params = reduce_params(s, axes, n);
            // Trailing reduced axes are contiguous in every group.
            let run: usize = (0..s.len())
                .rev()
                .take_while(|d| axes.contains(d))
                .map(|d| s[d])
                .product();
            params.extra[1] = run.max(1) as u32;
            be.push_linear(family, entry, &params, ids(x), n);
        }
        Op::Argmax { axis, .. } => {
            let s = x[0].shape;
            let mut params = reduce_params(s, &[*axis], n);
            params.tail = 0;
            params.extra[0] = contiguous_strides(s)[*axis] as u32;
            be.push_linear(family, entry, &params, ids(x), n);
        }
        Op::MatMul { .. } => record_matmul(be, op, x, out, None),
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
        Op::Gather => {
            let row_len: usize = x[0].shape[1..].iter().product();
            let mut params: ShapeParams = Zeroable::zeroed();
            params.n = n as u32;
            params.count = row_len as u32;
            params.extra[0] = x[0].shape[0] as u32;
            be.push_linear(family, entry, &params, ids(x), n);
        }
        Op::OneHot { classes } => {
            let mut params: ShapeParams = Zeroable::zeroed();
            params.n = n as u32;
            params.count = *classes as u32;
            be.push_linear(family, entry, &params, ids(x), n);
        }
        Op::Conv2d(_) | Op::Conv2dGradInput { .. } | Op::Conv2dGradWeight { .. } => {
            if n > 0 {
                be.record_conv(op, x, out, None);
            }
        }
        Op::MaxPool2d(spec) | Op::AvgPool2d(spec) => {
            let params = PoolParams::new(spec, n, x[0].shape, out.shape);
            let pairs = matches!(op, Op::MaxPool2d(_)) && pool_pairs(spec, x[0].shape, out.shape);
            let entry = if pairs { "max_pool2d_2x2" } else { entry };
            be.push_pool(entry, &params, ids(x), n);
        }
        Op::MaxPool2dGrad(spec) => {
            let disjoint = spec.stride[0] >= spec.kernel[0] && spec.stride[1] >= spec.kernel[1];
            if disjoint {
                be.fill(out.buffer, n, 0);
                let windows = numel(x[1].shape);
                let params = PoolParams::new(spec, windows, x[0].shape, x[1].shape);
                let pairs = pool_pairs(spec, x[0].shape, x[1].shape);
                let entry = if pairs { &entries[2] } else { &entries[1] };
                be.push_pool(entry, &params, ids(x), windows);
            } else {
                let params = PoolParams::new(spec, n, x[0].shape, x[1].shape);
                be.push_pool(entry, &params, ids(x), n);
            }
        }
        Op::AvgPool2dGrad { spec, .. } => {
            let params = PoolParams::new(spec, n, out.shape, x[0].shape);
            be.push_pool(entry, &params, ids(x), n);
        }
        Op::Cast { to } => {
            let mut params: ShapeParams = Zeroable::zeroed();
            params.n = n as u32;
            let entry = match to {
                DType::U32 => &entries[0],
                DType::F32 => &entries[1],
            };
            be.push_linear(family, entry, &params, ids(x), n);
        }
    }
}

/// A fused group of elementwise ops applied to each element a kernel stores (see
/// `Backend::exec_with_epilogue`): its expression, and the buffers of its other outputs and
/// of its inputs, bound after the kernel's own.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub fused: &'a wgrad_graph::Fused,
    pub buffers: &'a [BufferId],
}

/// Records the dispatches of an [`Op::MatMul`], with `epilogue` applied to its stores.
pub(crate) fn record_matmul(
    be: &GpuBackend,
    op: &Op,
    x: &[Arg<'_>],
    out: &Arg<'_>,
    epilogue: Option<Epilogue<'_>>,
) {
    let Op::MatMul { ta, tb } = *op else {
        unreachable!("record_matmul takes a matmul")
    };
    let (a, b) = (x[0].shape, x[1].shape);
    let r = out.shape.len();
    let k = if ta { a[a.len() - 2] } else { a[a.len() - 1] };
    let (m, n) = (out.shape[r - 2], out.shape[r - 1]);
    let batch = &out.shape[..r - 2];
    if m * n * numel(batch) == 0 {
        return;
    }
    let sa: Vec<usize> = broadcast_strides(&a[..a.len() - 2], batch)
        .iter()
        .map(|s| s * m * k)
        .collect();
    let sb: Vec<usize> = broadcast_strides(&b[..b.len() - 2], batch)
        .iter()
        .map(|s| s * k * n)
        .collect();
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch_rank: batch.len() as u32,
        batch: dims(batch),
        sa: dims(&sa),
        sb: dims(&sb),
        out_offset: 0,
        out_n: n as u32,
        accumulate: 0,
        ta: ta as u32,
        tb: tb as u32,
        a_row0: 0,
        a_rows: 0,
        window_rows: 0,
        b_panel: 0,
    };
    let operands = (x[0].buffer, x[1].buffer, out.buffer);
    if be.matmul_ua(&params, operands, false, epilogue) {
        return;
    }
    // The vec4 variants read rows as vec4: the dimensions they read along must be multiples
    // of 4. Wide workgroups win while B (k·n values) stays in cache.
    let four = |v: usize| v.is_multiple_of(4) && v > 0;
    let (name, tile) = match (ta, tb) {
        (false, false) if four(k) && four(n) => match (be.ctx.gpu_kernels, k * n <= 1 << 20) {
            (true, _) => ("matmul_tiled", [64, 64]),
            (false, true) => ("matmul_vec4_wide", [256, 4]),
            (false, false) => ("matmul_vec4", [32, 32]),
        },
        (true, false) if four(m) && four(n) => ("matmul_tn_vec4", [32, 32]),
        (false, true) if four(k) && four(n) => ("matmul_nt_vec4", [32, 32]),
        _ => ("matmul", [32, 32]),
    };
    debug_assert!(op.kernels().1.iter().any(|e| e == name));
    let groups = [
        (n as u32).div_ceil(tile[0]),
        (m as u32).div_ceil(tile[1]),
        numel(batch) as u32,
    ];
    let buffers = vec![out.buffer, x[0].buffer, x[1].buffer];
    be.push_stored(Family::Matmul, name, epilogue, &params, buffers, groups);
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

/// Parameters of a reduction of `shape` over `axes` producing `n` outputs.
fn reduce_params(shape: &[usize], axes: &[usize], n: usize) -> ShapeParams {
    let rank = shape.len();
    let kept: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
        .collect();
    let red: Vec<usize> = (0..rank)
        .map(|d| if axes.contains(&d) { shape[d] } else { 1 })
        .collect();
    // The group is one contiguous run when the reduced axes are the trailing ones.
    let tail = axes.iter().all(|&a| a >= rank - axes.len());
    ShapeParams {
        n: n as u32,
        count: numel(&red) as u32,
        rank: rank as u32,
        tail: tail as u32,
        kept: dims(&kept),
        red: dims(&red),
        strides: dims(&contiguous_strides(shape)),
        extra: [0; MAX_RANK],
    }
}
