//! Convolution launch plans. [`GpuBackend::record_conv`] picks, per op, the first that
//! applies; every plan is tested against the CPU backend (`tests/conv.rs`):
//!
//! - **forward**: unfold and multiply (one group, taps per output channel a multiple of 4:
//!   `im2col` a chunk of images at a time, then the vec4 matrix product; images of fewer than
//!   256 pixels side by side in one product), else channel lanes (output channels per group a
//!   multiple of 4), else the general implicit-GEMM kernel;
//! - **input gradient**: at stride 1, a convolution of g with the taps mirrored: unfold and
//!   multiply first on CPU-type adapters, channel lanes first on GPUs; otherwise the general
//!   kernel;
//! - **weight gradient**: unfold and multiply (one group, any tap count), else the general
//!   kernel.
//!
//! On CPU-type adapters channel lanes read their input, and the products their A operand,
//! through 64 KiB uniform-buffer windows (see `shaders/conv.wgsl` and `shaders/matmul.wgsl`).

use wgrad_graph::op::{Family, Op};
use wgrad_graph::shape::{contiguous_strides, numel};
use wgrad_graph::{Arg, Backend, BufferId, Error, Result};

use crate::backend::{Command, GpuBackend};
use crate::launch::Epilogue;
use crate::params::{ConvLanesParams, ConvParams, Im2colParams, MatmulParams};
use crate::reduce::Reduction;
use crate::MAX_TRIP;

/// Values per unfolded chunk: the batch is unfolded this many values at a time (at least
/// one image), which bounds the scratch memory and keeps a chunk's matrix near the caches.
const CHUNK_VALUES: usize = 1 << 22;

/// Output images of fewer pixels than this are unfolded side by side into one product
/// ([`GpuBackend::conv_gemm_wide`]), so that the product has columns enough for the matrix
/// kernels' lanes (256 measured faster than 64 or never; docs/performance.md).
const WIDE_BELOW: u32 = 256;

/// Sizes of an unfolded convolution: rows (taps), output pixels, pixels rounded up to 4, and
/// images per chunk.
struct Unfold {
    taps: u32,
    np: u32,
    pixels: u32,
    chunk: u32,
}

impl Unfold {
    /// For `geo`, with `extra_rows` more scratch rows of `pixels` values per image.
    fn of(geo: &ConvLanesParams, extra_rows: u32) -> Self {
        let taps = geo.ci * geo.kh * geo.kw;
        let np = geo.oh * geo.ow;
        let pixels = np.next_multiple_of(4);
        let per_image = (taps + extra_rows) as usize * pixels as usize;
        let chunk = (CHUNK_VALUES / per_image).clamp(1, geo.n as usize) as u32;
        Unfold {
            taps,
            np,
            pixels,
            chunk,
        }
    }
}

/// The weight operand of a convolution kernel: a buffer read as is, or copied first into
/// the order `view` with source `strides` gives.
pub(crate) enum Weights<'a> {
    AsIs(BufferId),
    Relayout {
        buffer: BufferId,
        view: &'a [usize],
        strides: &'a [usize],
    },
}

impl GpuBackend {
    /// Records a convolution op (`x`: its operands) with the fastest plan that applies; a
    /// forward convolution may take an `epilogue` (every plan applies it as it stores).
    pub(crate) fn record_conv(
        &self,
        op: &Op,
        x: &[Arg<'_>],
        out: &Arg<'_>,
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<()> {
        debug_assert!(epilogue.is_none() || matches!(op, Op::Conv2d(_)));
        if reduction_len(op, x) == 0 {
            // No channels (or no images) to sum over: every output is 0 before its epilogue.
            return self.zero_product(out, epilogue);
        }
        match op {
            Op::Conv2d(spec) => {
                let params = ConvParams::new(spec, x[0].shape, out.shape, x[1].shape);
                let geo = ConvLanesParams::forward(&params);
                let weights = Weights::AsIs(x[1].buffer);
                let operands = (x[0].buffer, out.buffer);
                if self.gemm_fits(&geo) && self.conv_gemm(&geo, operands, weights, epilogue)? {
                    return Ok(());
                }
                if params.og.is_multiple_of(4) {
                    // Weights [o, c/g·kh·kw] as [group, tap, output channel].
                    let (og, taps) = (params.og as usize, x[1].shape[1..].iter().product());
                    let weights = Weights::Relayout {
                        buffer: x[1].buffer,
                        view: &[params.groups as usize, taps, og],
                        strides: &[og * taps, 1, taps],
                    };
                    if self.conv_lanes(&geo, (x[0].buffer, out), weights, epilogue)? {
                        return Ok(());
                    }
                }
                let blocks = (params.oh * params.ow, params.og);
                let steps = (params.cg, tap_trip(&params));
                self.conv_generic("conv2d", &params, x, out, (blocks, steps), epilogue)
            }
            Op::Conv2dGradInput { spec, .. } => {
                let params = ConvParams::new(spec, out.shape, x[0].shape, x[1].shape);
                if spec.stride == [1, 1] && self.grad_input_stride1(&params, x, out)? {
                    return Ok(());
                }
                let entry = "conv2d_grad_input";
                let blocks = (params.h * params.w, params.cg);
                let steps = (params.og, tap_trip(&params));
                self.conv_generic(entry, &params, x, out, (blocks, steps), None)
            }
            Op::Conv2dGradWeight { spec, .. } => {
                let params = ConvParams::new(spec, x[0].shape, x[1].shape, out.shape);
                let geo = ConvLanesParams::forward(&params);
                let (input, grad) = (x[0].buffer, x[1].buffer);
                if self.gemm_weight_fits(&geo)
                    && self.conv_gemm_weight(&geo, input, grad, out.buffer)?
                {
                    return Ok(());
                }
                // Blocks of 4 weight taps (x) × 4 output channels (y); the loop walks rows
                // (image, output row) of the gradient, in parts of bounded length.
                let taps = (params.cg * params.kh * params.kw).div_ceil(4);
                let groups = [taps.div_ceil(16), params.groups * params.og.div_ceil(4), 1];
                let rows = (params.n * params.oh, 1 + params.ow);
                let launch = |range: (u32, u32), dst: BufferId, out_base: u32, _| {
                    let part = ConvParams {
                        red_begin: range.0,
                        red_end: range.1,
                        out_base,
                        ..params
                    };
                    let buffers = vec![dst, x[0].buffer, x[1].buffer];
                    self.push(Family::Conv, "conv2d_grad_weight", &part, buffers, groups);
                };
                self.in_parts("conv2d_grad_weight", rows, out, None, &launch)
            }
            other => unreachable!("{} is not a convolution", other.name()),
        }
    }

    /// Records a direct kernel whose loop walks `steps` steps (channels, rows) of `trip`
    /// iterations each, `launch((first, end), output, out_base, epilogue)` recording one
    /// dispatch over steps `first..end`. In one dispatch when the loop fits [`MAX_TRIP`];
    /// else in parts that fit it, each writing its partial results to scratch at
    /// `out_base`, summed in order by a reduction, the epilogue applied by a copy.
    fn in_parts<'e>(
        &self,
        what: &str,
        (steps, trip): (u32, u32),
        out: &Arg<'_>,
        epilogue: Option<Epilogue<'e>>,
        launch: &dyn Fn((u32, u32), BufferId, u32, Option<Epilogue<'e>>),
    ) -> Result<()> {
        let per_part = MAX_TRIP as u32 / trip.max(1);
        if per_part == 0 {
            return Err(Error::Unsupported(format!(
                "{what}: a kernel window of {trip} taps per channel is more than this \
                 engine's {MAX_TRIP} per loop"
            )));
        }
        if steps <= per_part {
            launch((0, steps), out.buffer, 0, epilogue);
            return Ok(());
        }
        let len = numel(out.shape);
        let parts = steps.div_ceil(per_part) as usize;
        let mut sizes = vec![parts * len * 4];
        if epilogue.is_some() {
            sizes.push(len * 4);
        }
        let Some(scratch) = self.alloc_all(&sizes) else {
            return Err(Error::OutOfMemory {
                bytes: sizes.iter().sum::<usize>() as u64,
            });
        };
        for (k, first) in (0..steps).step_by(per_part as usize).enumerate() {
            let end = (first + per_part).min(steps);
            launch((first, end), scratch[0], (k * len) as u32, None);
        }
        let sum = *scratch.last().expect("allocated");
        let dst = if epilogue.is_some() { sum } else { out.buffer };
        self.record_reduce(Reduction::Sum, scratch[0], &[parts, len], &[0], dst)?;
        if epilogue.is_some() {
            let flat = (0, &[1][..]);
            self.record_copy(sum, out.buffer, &[len], flat, flat, epilogue);
        }
        self.free_all(scratch);
        Ok(())
    }

    /// The output of a product over nothing: zeros, with the epilogue applied to them.
    fn zero_product(&self, out: &Arg<'_>, epilogue: Option<Epilogue<'_>>) -> Result<()> {
        let len = numel(out.shape);
        let Some(e) = epilogue else {
            self.fill(out.buffer, len, 0);
            return Ok(());
        };
        let Some(zeros) = self.alloc_all(&[len * 4]) else {
            return Err(Error::OutOfMemory {
                bytes: len as u64 * 4,
            });
        };
        self.fill(zeros[0], len, 0);
        let flat = (0, &[1][..]);
        self.record_copy(zeros[0], out.buffer, &[len], flat, flat, Some(e));
        self.free_all(zeros);
        Ok(())
    }

    /// The stride-1 input gradient: a convolution of g with the taps mirrored, by unfolding
    /// g and a matrix product or by channel lanes; false when neither applies. CPU-type
    /// adapters unfold first, since their uniform-window product outruns channel lanes even
    /// counting the unfolding; GPUs take channel lanes first, which read g without scratch
    /// (docs/performance.md).
    fn grad_input_stride1(
        &self,
        params: &ConvParams,
        x: &[Arg<'_>],
        out: &Arg<'_>,
    ) -> Result<bool> {
        let geo = ConvLanesParams::grad_input(params);
        let (og, cg) = (params.og as usize, params.cg as usize);
        let k = (params.kh * params.kw) as usize;
        let gemm = || {
            // Weights [o, c, kh, kw] as [c, o·kh·kw].
            let weights = Weights::Relayout {
                buffer: x[1].buffer,
                view: &[cg, og, k],
                strides: &[k, cg * k, 1],
            };
            let operands = (x[0].buffer, out.buffer);
            match self.gemm_fits(&geo) {
                true => self.conv_gemm(&geo, operands, weights, None),
                false => Ok(false),
            }
        };
        if !self.ctx.gpu_kernels && gemm()? {
            return Ok(true);
        }
        if params.cg.is_multiple_of(4) {
            // Weights [o, c/g, kh, kw] as [group, o/g·kh·kw, c/g].
            let weights = Weights::Relayout {
                buffer: x[1].buffer,
                view: &[params.groups as usize, og, k, cg],
                strides: &[og * cg * k, cg * k, 1, k],
            };
            if self.conv_lanes(&geo, (x[0].buffer, out), weights, None)? {
                return Ok(true);
            }
        }
        match self.ctx.gpu_kernels {
            true => gemm(),
            false => Ok(false),
        }
    }

    /// The general implicit-GEMM kernel `entry`: blocks of 4 of the `pixels` written (x) ×
    /// 4 of the `channels` per group written (y), one image per z; its loop walks `steps`
    /// channels of `trip` iterations each, in parts of bounded length.
    fn conv_generic(
        &self,
        entry: &str,
        params: &ConvParams,
        x: &[Arg<'_>],
        out: &Arg<'_>,
        ((pixels, channels), steps): ((u32, u32), (u32, u32)),
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<()> {
        let groups = [
            pixels.div_ceil(4).div_ceil(16),
            params.groups * channels.div_ceil(4),
            params.n,
        ];
        let launch = |range: (u32, u32), dst: BufferId, out_base: u32, ep| {
            let part = ConvParams {
                red_begin: range.0,
                red_end: range.1,
                out_base,
                ..*params
            };
            let buffers = vec![dst, x[0].buffer, x[1].buffer];
            self.push_stored(Family::Conv, entry, ep, &part, buffers, groups);
        };
        self.in_parts(entry, steps, out, epilogue, &launch)
    }

    /// Scratch buffers of `sizes`, and the weights `w` in the order they ask for (copied
    /// into one more scratch buffer when relaid out): all the scratch, to free after
    /// recording its use (work recorded later runs after that use, so reuse is safe), and
    /// the weights' buffer. None, with nothing recorded, when memory is short.
    fn scratch_and_weights(
        &self,
        sizes: &[usize],
        w: &Weights,
    ) -> Option<(Vec<BufferId>, BufferId)> {
        let mut sizes = sizes.to_vec();
        if let Weights::Relayout { view, .. } = w {
            sizes.push(numel(view) * 4);
        }
        let scratch = self.alloc_all(&sizes)?;
        let weights = match *w {
            Weights::AsIs(id) => id,
            Weights::Relayout {
                buffer,
                view,
                strides,
            } => {
                let relaid = *scratch.last().expect("allocated");
                let dense = contiguous_strides(view);
                self.copy_strided(buffer, relaid, view, (0, strides), (0, &dense));
                relaid
            }
        };
        Some((scratch, weights))
    }

    /// Records `conv2d_lanes` reading `input`, with the weights laid out
    /// `[group, tap, output channel]`, its loop over input channels in parts of bounded
    /// length. False (nothing recorded) when scratch memory is short.
    pub(crate) fn conv_lanes(
        &self,
        geo: &ConvLanesParams,
        (input, out): (BufferId, &Arg<'_>),
        weights: Weights,
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<bool> {
        let Some((scratch, w)) = self.scratch_and_weights(&[], &weights) else {
            return Ok(false);
        };
        let quads = geo.cgo / 4;
        let groups = [
            (geo.oh * geo.ow).div_ceil(4),
            geo.groups * quads.div_ceil(8),
            geo.n,
        ];
        let launch = |range: (u32, u32), dst: BufferId, out_base: u32, ep| {
            let part = ConvLanesParams {
                c_begin: range.0,
                c_end: range.1,
                out_base,
                ..*geo
            };
            if !self.conv_lanes_ua(&part, (input, w, dst), groups, ep) {
                let buffers = vec![dst, input, w];
                self.push_stored(Family::Conv, "conv2d_lanes", ep, &part, buffers, groups);
            }
        };
        let steps = (geo.cgi, geo.kh * (1 + geo.kw) + 1);
        let result = self.in_parts("conv2d", steps, out, epilogue, &launch);
        self.free_all(scratch);
        result.map(|_| true)
    }

    /// `conv2d_lanes_ua`: the input read through uniform windows of whole images, one copy
    /// and one dispatch per window (CPU-type adapters). False where an image exceeds the
    /// window or the adapter takes the kernels for GPUs.
    fn conv_lanes_ua(
        &self,
        geo: &ConvLanesParams,
        (input, weights, out): (BufferId, BufferId, BufferId),
        groups: [u32; 3],
        epilogue: Option<Epilogue<'_>>,
    ) -> bool {
        const WINDOW: u64 = 65536;
        let image = (geo.ci * geo.h * geo.w) as u64 * 4;
        let per_window = (WINDOW / image.max(1)) as u32;
        if self.ctx.gpu_kernels
            || self.ctx.limits.max_uniform_buffer_binding_size < WINDOW
            || per_window == 0
        {
            return false;
        }
        let Ok(window) = self.alloc(WINDOW as usize) else {
            return false;
        };
        for image0 in (0..geo.n).step_by(per_window as usize) {
            let images = per_window.min(geo.n - image0);
            self.commands.borrow_mut().push(Command::Copy {
                src: input,
                src_offset: image0 as u64 * image,
                dst: window,
                bytes: images as u64 * image,
            });
            let params = ConvLanesParams { image0, ..*geo };
            self.push_stored(
                Family::Conv,
                "conv2d_lanes_ua",
                epilogue,
                &params,
                vec![out, window, weights],
                [groups[0], groups[1], images],
            );
        }
        self.free(window);
        true
    }

    /// Unfolds images `image0 .. image0 + images` of the tensor `geo` reads into `cols`,
    /// laid out with the given (image, tap, pixel) strides.
    fn im2col(
        &self,
        geo: &ConvLanesParams,
        input: BufferId,
        cols: BufferId,
        (image0, images, pixels): (u32, u32, u32),
        strides: [u32; 3],
    ) {
        let np = geo.oh * geo.ow;
        let params = Im2colParams {
            ci: geo.ci,
            h: geo.h,
            w: geo.w,
            image0,
            ow: geo.ow,
            np,
            pixels,
            taps: geo.ci * geo.kh * geo.kw,
            kh: geo.kh,
            kw: geo.kw,
            sh: geo.sh,
            sw: geo.sw,
            oy: geo.oy,
            ox: geo.ox,
            ky_step: geo.ky_step,
            kx_step: geo.kx_step,
            b_stride: strides[0],
            r_stride: strides[1],
            p_stride: strides[2],
            pad: 0,
        };
        let [x, y, _] = self.linear_groups((geo.ci * params.pixels) as usize);
        let groups = [x, y, images];
        if !self.specialize {
            self.push(Family::Conv, "im2col", &params, vec![cols, input], groups);
            return;
        }
        // One pipeline per geometry, with everything but the first image compiled in.
        let u = |v: u32| v as f64;
        let i = |v: i32| v as f64;
        let constants = [
            ("IM_FIXED", 1.0),
            ("IM_CI", u(params.ci)),
            ("IM_H", u(params.h)),
            ("IM_W", u(params.w)),
            ("IM_OW", u(params.ow)),
            ("IM_NP", u(params.np)),
            ("IM_PIXELS", u(params.pixels)),
            ("IM_KH", u(params.kh)),
            ("IM_KW", u(params.kw)),
            ("IM_SH", u(params.sh)),
            ("IM_SW", u(params.sw)),
            ("IM_OY", i(params.oy)),
            ("IM_OX", i(params.ox)),
            ("IM_KY_STEP", i(params.ky_step)),
            ("IM_KX_STEP", i(params.kx_step)),
            ("IM_B_STRIDE", u(params.b_stride)),
            ("IM_R_STRIDE", u(params.r_stride)),
            ("IM_P_STRIDE", u(params.p_stride)),
        ];
        let pipeline = self.ctx.pipeline_with(Family::Conv, "im2col", &constants);
        let buffers = vec![cols, input];
        self.push_pipeline(pipeline, "im2col (fixed)", &params, (buffers, &[]), groups);
    }

    /// Records `out = a · b` (batched over `batch` matrices of `b` at stride `sb`, `a`
    /// shared) with the vec4 kernel that stores through an offset and row length, applying
    /// `epilogue` (never with `accumulate`) to what it stores.
    fn matmul_out(
        &self,
        [m, n, k]: [u32; 3],
        (batch, sb): (u32, u32),
        (a, b, out): (BufferId, BufferId, BufferId),
        (out_offset, out_n, accumulate): (u32, u32, bool),
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<()> {
        debug_assert!(!(accumulate && epilogue.is_some()));
        let params = MatmulParams {
            m,
            n,
            k,
            batch_rank: 1,
            batch: [batch, 1, 1, 1],
            sa: [0; 4],
            sb: [sb, 0, 0, 0],
            out_offset,
            out_n,
            accumulate: accumulate as u32,
            ta: 0,
            tb: 0,
            a_row0: 0,
            a_rows: 0,
            window_rows: 0,
            b_panel: 0,
            k_chunk: 0,
            batch_count: 0,
        };
        if self.matmul_ua(&params, (a, b, out), true, epilogue) {
            return Ok(());
        }
        // The same choice of workgroup shape as a plain matmul (docs/performance.md).
        let (entry, tile) = if (k as u64) * (n as u64) <= 1 << 20 {
            ("matmul_vec4_out_wide", [256, 4])
        } else {
            ("matmul_vec4_out", [32, 32])
        };
        self.push_product(entry, tile, &params, (a, b, out), epilogue)
    }

    /// Whether [`GpuBackend::conv_gemm`] takes `geo`: one group, and the product's inner
    /// dimension (taps) a multiple of 4.
    pub(crate) fn gemm_fits(&self, geo: &ConvLanesParams) -> bool {
        let taps = geo.ci * geo.kh * geo.kw;
        self.gemm_weight_fits(geo) && taps.is_multiple_of(4)
    }

    /// Whether [`GpuBackend::conv_gemm_weight`] takes `geo`: one group (the unfolded rows
    /// are padded to whole vec4s, so any tap count).
    pub(crate) fn gemm_weight_fits(&self, geo: &ConvLanesParams) -> bool {
        let taps = geo.ci * geo.kh * geo.kw;
        let grid = self.ctx.limits.max_compute_workgroups_per_dimension;
        // An unfolding invocation walks one channel's window.
        let window = (geo.kh * (1 + geo.kw)) as usize <= MAX_TRIP;
        geo.groups == 1 && geo.n > 0 && taps <= grid && geo.n <= grid && window
    }

    /// The convolution `geo` (forward, or a stride-1 input gradient) as matrix products:
    /// per chunk of images, unfold the input, then `out[n] = W · cols[n]` with W as
    /// `[co, ci·kh·kw]`, with `epilogue` applied as the products store. False (nothing
    /// recorded) when scratch memory is short.
    pub(crate) fn conv_gemm(
        &self,
        geo: &ConvLanesParams,
        (input, out): (BufferId, BufferId),
        weights: Weights,
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<bool> {
        let Unfold {
            taps,
            np,
            pixels,
            chunk,
        } = Unfold::of(geo, 0);
        // A 1×1 window with stride 1, no padding and whole vec4s of pixels unfolds to the
        // input itself: one product over the whole batch.
        let pointwise = (geo.kh, geo.kw, geo.sh, geo.sw, geo.oy, geo.ox) == (1, 1, 1, 1, 0, 0)
            && (geo.oh, geo.ow) == (geo.h, geo.w)
            && np == pixels;
        if pointwise {
            let Some((scratch, w)) = self.scratch_and_weights(&[], &weights) else {
                return Ok(false);
            };
            let batch = (geo.n, taps * pixels);
            let buffers = (w, input, out);
            let result = self.matmul_out(
                [geo.co, pixels, taps],
                batch,
                buffers,
                (0, np, false),
                epilogue,
            );
            self.free_all(scratch);
            return result.map(|_| true);
        }
        if np < WIDE_BELOW && geo.n > 1 {
            return self.conv_gemm_wide(geo, (input, out), weights, epilogue);
        }
        let cols_bytes = chunk as usize * (taps * pixels) as usize * 4;
        let Some((scratch, w)) = self.scratch_and_weights(&[cols_bytes], &weights) else {
            return Ok(false);
        };
        let cols = scratch[0];
        let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
            let images = chunk.min(geo.n - image0);
            let layout = [taps * pixels, pixels, 1];
            self.im2col(geo, input, cols, (image0, images, pixels), layout);
            self.matmul_out(
                [geo.co, pixels, taps],
                (images, taps * pixels),
                (w, cols, out),
                (image0 * geo.co * np, np, false),
                epilogue,
            )
        });
        self.free_all(scratch);
        result.map(|_| true)
    }

    /// [`GpuBackend::conv_gemm`] for images of few pixels: a chunk's images unfold side by
    /// side, `cols` as `[taps, images·np]`, so that one product `W · cols` has enough
    /// columns to fill the kernel's lanes (one product per image would leave most of them
    /// idle); its `[co, images·np]` result is then copied into the output's
    /// `[image, co, np]` order, with `epilogue` applied by the copy.
    fn conv_gemm_wide(
        &self,
        geo: &ConvLanesParams,
        (input, out): (BufferId, BufferId),
        weights: Weights,
        epilogue: Option<Epilogue<'_>>,
    ) -> Result<bool> {
        // The product's output is scratch too.
        let Unfold {
            taps, np, chunk, ..
        } = Unfold::of(geo, geo.co);
        let width = (chunk * np).next_multiple_of(4) as usize;
        let sizes = [taps as usize * width * 4, geo.co as usize * width * 4];
        let Some((scratch, w)) = self.scratch_and_weights(&sizes, &weights) else {
            return Ok(false);
        };
        let (cols, product) = (scratch[0], scratch[1]);
        let (co, npu) = (geo.co as usize, np as usize);
        let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
            let images = chunk.min(geo.n - image0);
            // Columns past images·np are never written; they only reach product columns
            // that are not copied out.
            let n = (images * np).next_multiple_of(4);
            self.im2col(geo, input, cols, (image0, images, np), [np, n, 1]);
            let buffers = (w, cols, product);
            self.matmul_out([geo.co, n, taps], (1, 0), buffers, (0, n, false), None)?;
            let view = [images as usize, co, npu];
            let from = (0, &[npu, n as usize, 1][..]);
            let to = (image0 as usize * co * npu, &[co * npu, npu, 1][..]);
            match epilogue {
                Some(_) => self.record_copy(product, out, &view, from, to, epilogue),
                None => self.copy_strided(product, out, &view, from, to),
            }
            Ok(())
        });
        self.free_all(scratch);
        result.map(|_| true)
    }

    /// The weight gradient of the forward convolution `geo` as matrix products: per chunk
    /// of images, `dW += gᵀ-chunk · cols-chunk`, where the chunk of g is copied as
    /// `[co, images·pixels]` (zero past each image's pixels) and the windows are unfolded as
    /// `[images·pixels, taps]`. False (nothing recorded) when scratch memory is short.
    pub(crate) fn conv_gemm_weight(
        &self,
        geo: &ConvLanesParams,
        input: BufferId,
        grad: BufferId,
        out: BufferId,
    ) -> Result<bool> {
        // The chunk of g is scratch too.
        let Unfold {
            taps,
            np,
            pixels,
            chunk,
        } = Unfold::of(geo, geo.co);
        // Unfolded rows padded to whole vec4s. Column j of the product reads only column j
        // of the unfolding, so the padding columns (never written) only reach output columns
        // that are not stored.
        let row = taps.next_multiple_of(4);
        let sizes = [
            chunk as usize * row as usize * pixels as usize * 4,
            chunk as usize * geo.co as usize * pixels as usize * 4,
        ];
        let Some(scratch) = self.alloc_all(&sizes) else {
            return Ok(false);
        };
        let (cols, gt) = (scratch[0], scratch[1]);
        let (co, npu, pix) = (geo.co as usize, np as usize, pixels as usize);
        let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
            let images = chunk.min(geo.n - image0);
            let k = images * pixels;
            if pixels != np {
                self.fill(gt, co * k as usize, 0);
            }
            self.copy_strided(
                grad,
                gt,
                &[images as usize, co, npu],
                (image0 as usize * co * npu, &[co * npu, npu, 1]),
                (0, &[pix, k as usize, 1]),
            );
            let slots = (image0, images, pixels);
            self.im2col(geo, input, cols, slots, [pixels * row, 1, row]);
            self.matmul_out(
                [geo.co, row, k],
                (1, 0),
                (gt, cols, out),
                (0, taps, image0 > 0),
                None,
            )
        });
        self.free_all(scratch);
        result.map(|_| true)
    }
}

/// Length of a convolution op's reduction: input channels per group × taps (forward),
/// output channels per group × taps (input gradient), images × output pixels (weight
/// gradient).
fn reduction_len(op: &Op, x: &[Arg<'_>]) -> usize {
    let taps = |w: &[usize]| w[2] * w[3];
    match op {
        Op::Conv2d(_) => x[1].shape[1] * taps(x[1].shape),
        Op::Conv2dGradInput { spec, .. } => x[1].shape[0] / spec.groups.max(1) * taps(x[1].shape),
        Op::Conv2dGradWeight { .. } => x[1].shape[0] * x[1].shape[2] * x[1].shape[3],
        _ => 1,
    }
}

/// Iterations of a direct convolution kernel's loop per channel: a row loop over the
/// window's rows, a column loop over its taps, and the channel step itself.
fn tap_trip(params: &ConvParams) -> u32 {
    params.kh * (1 + params.kw) + 1
}
