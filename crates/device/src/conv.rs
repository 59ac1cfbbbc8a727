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
use crate::params::{ConvLanesParams, ConvParams};
use crate::reduce::Reduction;
use crate::MAX_TRIP;

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
        let scratch = self.scratch(&sizes)?;
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
        let zeros = self.scratch(&[len * 4])?;
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
    pub(crate) fn scratch_and_weights(
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
