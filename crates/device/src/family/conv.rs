//! Convolution launch plans. [`record`] picks, per op, the first that
//! applies; every plan is tested against the CPU backend (`tests/conv.rs`):
//!
//! - **forward**: on CPU-type adapters, the window product (`conv_windows.rs`: one group,
//!   taps per output channel a multiple of 4 up to 2048, the input read in place); else
//!   unfold and multiply (one group, taps a multiple of 4: `im2col` a chunk of images at a
//!   time, then the vec4 matrix product; images of fewer than 256 pixels side by side in one
//!   product), else channel lanes (output channels per group a multiple of 4), else the
//!   general implicit-GEMM kernel;
//! - **input gradient**: at stride 1, a convolution of g with the taps mirrored: the window
//!   product, then unfold and multiply, on CPU-type adapters, channel lanes first on GPUs;
//!   at other strides a product and `col2im`; otherwise the general kernel;
//! - **weight gradient**: on CPU-type adapters, whole images in uniform windows
//!   (`conv_windows.rs`: one group, an image within a window); else unfold and multiply
//!   (one group, any tap count), else the general kernel.
//!
//! On CPU-type adapters channel lanes read their input, and the products their A operand,
//! through 64 KiB uniform-buffer windows (see `shaders/conv.wgsl`, `shaders/matmul.wgsl`
//! and `shaders/matmul_ua.wgsl`).

use wgrad_graph::op::Op;
use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, BufferId, Error, Result};

use super::conv_gemm::{self, scratch_and_weights, Weights};
use super::conv_windows;
use super::generated::{self, Epilogue};
use super::reduce::{self, Reduction};
use crate::kernels::{self, Entry, UA_WINDOW_BYTES};
use crate::params::{ConvLanesParams, ConvParams};
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// Records a convolution op (`x`: its operands) with the fastest plan that applies; a
/// forward convolution may take an `epilogue` (every plan applies it as it stores).
pub(crate) fn record(
    rec: &Recorder,
    op: &Op,
    x: &[Arg<'_>],
    out: &Arg<'_>,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    debug_assert!(epilogue.is_none() || matches!(op, Op::Conv2d(_)));
    if reduction_len(op, x) == 0 {
        // No channels (or no images) to sum over: every output is 0 before its epilogue.
        return zero_product(rec, out, epilogue);
    }
    match op {
        Op::Conv2d(spec) => {
            let params = ConvParams::new(spec, x[0].shape, out.shape, x[1].shape);
            let geo = ConvLanesParams::forward(&params);
            let weights = Weights::AsIs(x[1].buffer);
            let operands = (x[0].buffer, out.buffer);
            if conv_windows::conv_windows(rec, &geo, operands, weights, epilogue)? {
                return Ok(());
            }
            if conv_gemm::gemm_fits(rec, &geo)
                && conv_gemm::conv_gemm(rec, &geo, operands, weights, epilogue)?
            {
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
                if conv_lanes(rec, &geo, (x[0].buffer, out), weights, epilogue)? {
                    return Ok(());
                }
            }
            let blocks = (params.oh * params.ow, params.og);
            let steps = (params.cg, tap_trip(&params));
            conv_generic(
                rec,
                kernels::CONV2D,
                &params,
                x,
                out,
                (blocks, steps),
                epilogue,
            )
        }
        Op::Conv2dGradInput { spec, .. } => {
            let params = ConvParams::new(spec, out.shape, x[0].shape, x[1].shape);
            if spec.stride == [1, 1] && grad_input_stride1(rec, &params, x, out)? {
                return Ok(());
            }
            let operands = (x[0].buffer, x[1].buffer, out.buffer);
            if spec.stride != [1, 1] && conv_gemm::grad_input_cols(rec, &params, operands)? {
                return Ok(());
            }
            let entry = kernels::CONV2D_GRAD_INPUT;
            let blocks = (params.h * params.w, params.cg);
            let steps = (params.og, tap_trip(&params));
            conv_generic(rec, entry, &params, x, out, (blocks, steps), None)
        }
        Op::Conv2dGradWeight { spec, .. } => {
            let params = ConvParams::new(spec, x[0].shape, x[1].shape, out.shape);
            let geo = ConvLanesParams::forward(&params);
            let (input, grad) = (x[0].buffer, x[1].buffer);
            if conv_windows::grad_weight_windows(rec, &geo, (input, grad, out.buffer))? {
                return Ok(());
            }
            if conv_gemm::gemm_weight_fits(rec, &geo)
                && conv_gemm::conv_gemm_weight(rec, &geo, input, grad, out.buffer)?
            {
                return Ok(());
            }
            // Blocks of 4 weight taps (x) × 4 output channels (y); the loop walks rows
            // (image, output row) of the gradient, in parts of bounded length.
            let taps = (params.cg * params.kh * params.kw).div_ceil(4);
            let wg = kernels::CONV2D_GRAD_WEIGHT.workgroup[0];
            let groups = [taps.div_ceil(wg), params.groups * params.og.div_ceil(4), 1];
            let rows = (params.n * params.oh, 1 + params.ow);
            let launch = |range: (u32, u32), dst: BufferId, out_base: u32, _| {
                let part = ConvParams {
                    red_begin: range.0,
                    red_end: range.1,
                    out_base,
                    ..params
                };
                let buffers = vec![dst, x[0].buffer, x[1].buffer];
                rec.push(kernels::CONV2D_GRAD_WEIGHT, &part, buffers, groups);
            };
            in_parts(rec, "conv2d_grad_weight", rows, out, None, &launch)
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
    rec: &Recorder,
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
    let scratch = rec.scratch(&sizes)?;
    for (k, first) in (0..steps).step_by(per_part as usize).enumerate() {
        let end = (first + per_part).min(steps);
        launch((first, end), scratch[0], (k * len) as u32, None);
    }
    let sum = *scratch.last().expect("allocated");
    let dst = if epilogue.is_some() { sum } else { out.buffer };
    reduce::reduce(rec, Reduction::Sum, scratch[0], &[parts, len], &[0], dst)?;
    if epilogue.is_some() {
        let flat = (0, &[1][..]);
        generated::record_copy(rec, sum, out.buffer, &[len], flat, flat, epilogue);
    }
    rec.free_all(scratch);
    Ok(())
}

/// The output of a product over nothing: zeros, with the epilogue applied to them.
fn zero_product(rec: &Recorder, out: &Arg<'_>, epilogue: Option<Epilogue<'_>>) -> Result<()> {
    let len = numel(out.shape);
    let Some(e) = epilogue else {
        rec.fill(out.buffer, len, 0);
        return Ok(());
    };
    let zeros = rec.scratch(&[len * 4])?;
    rec.fill(zeros[0], len, 0);
    let flat = (0, &[1][..]);
    generated::record_copy(rec, zeros[0], out.buffer, &[len], flat, flat, Some(e));
    rec.free_all(zeros);
    Ok(())
}

/// The stride-1 input gradient: a convolution of g with the taps mirrored, by unfolding
/// g and a matrix product or by channel lanes; false when neither applies. CPU-type
/// adapters unfold first, since their uniform-window product outruns channel lanes even
/// counting the unfolding; GPUs take channel lanes first, which read g without scratch
/// (docs/performance.md).
fn grad_input_stride1(
    rec: &Recorder,
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
        if conv_windows::conv_windows(rec, &geo, operands, weights, None)? {
            return Ok(true);
        }
        match conv_gemm::gemm_fits(rec, &geo) {
            true => conv_gemm::conv_gemm(rec, &geo, operands, weights, None),
            false => Ok(false),
        }
    };
    if !rec.gpu_kernels() && gemm()? {
        return Ok(true);
    }
    if params.cg.is_multiple_of(4) {
        // Weights [o, c/g, kh, kw] as [group, o/g·kh·kw, c/g].
        let weights = Weights::Relayout {
            buffer: x[1].buffer,
            view: &[params.groups as usize, og, k, cg],
            strides: &[og * cg * k, cg * k, 1, k],
        };
        if conv_lanes(rec, &geo, (x[0].buffer, out), weights, None)? {
            return Ok(true);
        }
    }
    match rec.gpu_kernels() {
        true => gemm(),
        false => Ok(false),
    }
}

/// The general implicit-GEMM kernel `entry`: blocks of 4 of the `pixels` written (x) ×
/// 4 of the `channels` per group written (y), one image per z; its loop walks `steps`
/// channels of `trip` iterations each, in parts of bounded length.
fn conv_generic(
    rec: &Recorder,
    entry: Entry,
    params: &ConvParams,
    x: &[Arg<'_>],
    out: &Arg<'_>,
    ((pixels, channels), steps): ((u32, u32), (u32, u32)),
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let groups = [
        pixels.div_ceil(4).div_ceil(entry.workgroup[0]),
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
        generated::push_stored(rec, entry, ep, &part, buffers, groups);
    };
    in_parts(rec, entry.name, steps, out, epilogue, &launch)
}

/// Records `conv2d_lanes` reading `input`, with the weights laid out
/// `[group, tap, output channel]`, its loop over input channels in parts of bounded
/// length. False (nothing recorded) when scratch memory is short.
pub(crate) fn conv_lanes(
    rec: &Recorder,
    geo: &ConvLanesParams,
    (input, out): (BufferId, &Arg<'_>),
    weights: Weights,
    epilogue: Option<Epilogue<'_>>,
) -> Result<bool> {
    let Some((scratch, w)) = scratch_and_weights(rec, &[], &weights) else {
        return Ok(false);
    };
    let quads = geo.cgo / 4;
    let groups = [
        (geo.oh * geo.ow).div_ceil(4),
        // A workgroup's invocations take neighbouring quads of output channels.
        geo.groups * quads.div_ceil(kernels::CONV2D_LANES.workgroup[0]),
        geo.n,
    ];
    let launch = |range: (u32, u32), dst: BufferId, out_base: u32, ep| {
        let part = ConvLanesParams {
            c_begin: range.0,
            c_end: range.1,
            out_base,
            ..*geo
        };
        if !conv_lanes_ua(rec, &part, (input, w, dst), groups, ep) {
            let buffers = vec![dst, input, w];
            generated::push_stored(rec, kernels::CONV2D_LANES, ep, &part, buffers, groups);
        }
    };
    let steps = (geo.cgi, geo.kh * (1 + geo.kw) + 1);
    let result = in_parts(rec, "conv2d", steps, out, epilogue, &launch);
    rec.free_all(scratch);
    result.map(|_| true)
}

/// `conv2d_lanes_ua`: the input read through uniform windows of whole images, one copy
/// and one dispatch per window (CPU-type adapters). False where an image exceeds the
/// window or the adapter takes the kernels for GPUs.
fn conv_lanes_ua(
    rec: &Recorder,
    geo: &ConvLanesParams,
    (input, weights, out): (BufferId, BufferId, BufferId),
    groups: [u32; 3],
    epilogue: Option<Epilogue<'_>>,
) -> bool {
    const WINDOW: u64 = UA_WINDOW_BYTES;
    let image = (geo.ci * geo.h * geo.w) as u64 * 4;
    let per_window = (WINDOW / image.max(1)) as u32;
    if rec.gpu_kernels() || rec.limits().max_uniform_buffer_binding_size < WINDOW || per_window == 0
    {
        return false;
    }
    let Ok(window) = rec.alloc(WINDOW as usize) else {
        return false;
    };
    for image0 in (0..geo.n).step_by(per_window as usize) {
        let images = per_window.min(geo.n - image0);
        rec.copy(input, image0 as u64 * image, window, images as u64 * image);
        let params = ConvLanesParams { image0, ..*geo };
        generated::push_stored(
            rec,
            kernels::CONV2D_LANES_UA,
            epilogue,
            &params,
            vec![out, window, weights],
            [groups[0], groups[1], images],
        );
    }
    rec.free(window);
    true
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
