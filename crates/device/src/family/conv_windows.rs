//! Convolutions on CPU-type adapters through uniform windows, without unfolding
//! (`shaders/matmul_ua.wgsl`): forward convolutions and stride-1 input gradients as products
//! that read the weights through the windows and the input in place, from a texture filled
//! with it (`conv_vec4_ua*_tex`, see [`texture_reads`]) or from its buffer (`conv_vec4_ua`), and
//! weight gradients with whole images of the input in the windows and g read in place
//! (`conv_grad_weight_ua`). These compute the products `conv_gemm.rs` computes after
//! unfolding; on these adapters a storage load costs the same whether it reads the unfolded
//! matrix or the input, so writing the unfolding and reading it back was pure cost
//! (docs/performance.md).

use wgrad_graph::{BufferId, Result};

use super::conv_gemm::{scratch_and_weights, Weights};
use super::generated::{self, Epilogue};
use super::reduce::{self, Reduction};
use super::windows::{window_rows, windows_max_k};
use crate::kernels::{self, Entry, CONV_ROWS, CONV_TEXELS, UA_LANES, UA_WINDOWS, UA_WINDOW_BYTES};
use crate::params::{ConvLanesParams, ConvWindowParams};
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// Records the convolution `geo` (forward, or a stride-1 input gradient with its taps
/// mirrored) reading `weights` as `[co, ci·kh·kw]`: the weights are copied into uniform
/// windows, the input into a texture (where the adapter's limits take it and the buffer is
/// not pinned), a tap table is written, and each dispatch computes the output channels its
/// windows hold for as many images as one grid takes, storing through `epilogue`. False
/// (nothing recorded) where it does not apply: no uniform windows on this adapter (kernels
/// for GPUs), several groups, taps not a multiple of 4 or more than a window's block of
/// rows holds, indices past i32, or scratch memory short.
pub(crate) fn conv_windows(
    rec: &Recorder,
    geo: &ConvLanesParams,
    (input, out): (BufferId, BufferId),
    weights: Weights,
    epilogue: Option<Epilogue<'_>>,
) -> Result<bool> {
    let Some(max_k) = windows_max_k(rec) else {
        return Ok(false);
    };
    let k = geo.ci * geo.kh * geo.kw;
    let np = geo.oh * geo.ow;
    let image = geo.ci * geo.h * geo.w;
    let grid = rec.limits().max_compute_workgroups_per_dimension;
    let images_per_dispatch =
        (grid as u64 * 4 * UA_LANES as u64 / np.max(1) as u64).min(geo.n as u64) as u32;
    let small = |v: u64| v < i32::MAX as u64;
    let fits = geo.groups == 1
        && geo.n > 0
        && k > 0
        && k.is_multiple_of(4)
        && k <= max_k
        && np > 0
        && images_per_dispatch > 0
        && small(geo.n as u64 * image as u64)
        && small(geo.n as u64 * geo.co as u64 * np as u64);
    if !fits {
        return Ok(false);
    }
    // The input in a texture, CONV_TEXELS values a row, where the adapter takes it.
    let len = geo.n as u64 * image as u64;
    let texture = match texture_reads(rec) {
        true => rec.texture(CONV_TEXELS, len.div_ceil(CONV_TEXELS as u64) as u32, 1),
        false => None,
    };
    // A copy fills whole rows: from the input's own buffer where its size class holds
    // them (the texels past the input are never read), else through scratch.
    let whole_rows = len.next_multiple_of(CONV_TEXELS as u64) * 4;
    let staged = texture.is_some() && rec.buffer_bytes(input) < whole_rows;
    let (entry, rows) = kernel(geo, k, texture.is_some());
    let window_rows = window_rows(k, rows);
    let used = (geo.co.div_ceil(window_rows) as usize).min(UA_WINDOWS);
    // Scratch: the windows and the tap table, then the input padded to whole rows of the
    // texture where it needs it, then the weights where relaid out.
    let mut sizes = vec![UA_WINDOW_BYTES as usize; used + 1];
    if staged {
        sizes.push(len.next_multiple_of(CONV_TEXELS as u64) as usize * 4);
    }
    let Some((scratch, w)) = scratch_and_weights(rec, &sizes, &weights) else {
        return Ok(false);
    };
    let (windows, table) = (&scratch[..used], scratch[used]);
    if let Some(texture) = &texture {
        let from = match staged {
            true => {
                rec.copy(input, 0, scratch[used + 1], len * 4);
                scratch[used + 1]
            }
            false => input,
        };
        rec.copy_to_texture(from, texture);
    }
    let mut params = ConvWindowParams {
        window_rows,
        ..window_params(geo, k)
    };
    let taps = kernels::CONV_WINDOW_TAPS;
    rec.push(
        taps,
        &params,
        vec![table],
        [k.div_ceil(taps.workgroup[0]), 1, 1],
    );
    let rows_per_dispatch = window_rows * used as u32;
    for row0 in (0..geo.co).step_by(rows_per_dispatch as usize) {
        let count = rows_per_dispatch.min(geo.co - row0);
        for (i, &window) in windows.iter().enumerate() {
            let first = row0 + i as u32 * window_rows;
            if first >= row0 + count {
                break;
            }
            let bytes = (window_rows.min(row0 + count - first) * k) as u64 * 4;
            rec.copy(w, first as u64 * k as u64 * 4, window, bytes);
        }
        for image0 in (0..geo.n).step_by(images_per_dispatch as usize) {
            let images = images_per_dispatch.min(geo.n - image0);
            params.a_row0 = row0;
            params.a_rows = count;
            params.image0 = image0;
            params.cols = images * np;
            // Bindings: out, window 0, the input, windows 1.., the tap table; unused
            // windows repeat window 0.
            let mut buffers = vec![out, windows[0], input];
            buffers.extend((1..UA_WINDOWS).map(|i| *windows.get(i).unwrap_or(&windows[0])));
            buffers.push(table);
            let groups = [count.div_ceil(rows), params.cols.div_ceil(4 * UA_LANES), 1];
            let bindings = (buffers, texture.clone());
            generated::push_stored_textured(rec, entry, epilogue, &params, bindings, groups);
        }
    }
    // Work recorded later runs after these dispatches, so the scratch can be reused.
    rec.free_all(scratch);
    Ok(true)
}

/// Records the weight gradient of the forward convolution `geo` into `out` (`[co, ci·kh·kw]`)
/// with whole images of `input` in uniform windows and `grad` read in place: a tap table,
/// then per dispatch as many images as the windows hold, cut into parts (grid z) that each
/// stay within the loop bound. With more than one part in all, each part's sums go to
/// scratch and are added in order into `out`. False (nothing recorded) where it does not
/// apply: no uniform windows on this adapter (kernels for GPUs), several groups, an image
/// larger than a window or with more pixels than the loop bound, more taps than the table
/// holds, indices past i32, or scratch memory short.
pub(crate) fn grad_weight_windows(
    rec: &Recorder,
    geo: &ConvLanesParams,
    (input, grad, out): (BufferId, BufferId, BufferId),
) -> Result<bool> {
    if windows_max_k(rec).is_none() {
        return Ok(false);
    }
    let taps = geo.ci * geo.kh * geo.kw;
    let np = geo.oh * geo.ow;
    let image = geo.ci * geo.h * geo.w;
    let window_images = (UA_WINDOW_BYTES / 4) as u32 / image.max(1);
    // An invocation's loops run 1 + oh·(1 + ow) iterations per image.
    let part_images = MAX_TRIP as u32 / (1 + geo.oh * (1 + geo.ow));
    let per_dispatch = (window_images * UA_WINDOWS as u32).min(geo.n);
    let len = geo.co as u64 * taps as u64;
    let small = |v: u64| v < i32::MAX as u64;
    let grid = rec.limits().max_compute_workgroups_per_dimension;
    let fits = geo.groups == 1
        && geo.n > 0
        && taps > 0
        && taps as u64 <= UA_WINDOW_BYTES / 16
        && np > 0
        && window_images > 0
        && part_images > 0
        && per_dispatch.div_ceil(part_images) <= grid
        && geo
            .co
            .div_ceil(4 * kernels::CONV_GRAD_WEIGHT_UA.workgroup[0])
            <= grid
        && small(geo.n as u64 * geo.co as u64 * np as u64)
        && small(geo.n as u64 * len);
    if !fits {
        return Ok(false);
    }
    // Parts in all: each dispatch's images cut by the loop bound.
    let parts: u32 = (0..geo.n)
        .step_by(per_dispatch as usize)
        .map(|image0| per_dispatch.min(geo.n - image0).div_ceil(part_images))
        .sum();
    let used = per_dispatch.div_ceil(window_images) as usize;
    let mut sizes = vec![UA_WINDOW_BYTES as usize; used + 1];
    if parts > 1 {
        sizes.push(parts as usize * len as usize * 4);
    }
    let Some(scratch) = rec.alloc_all(&sizes) else {
        return Ok(false);
    };
    let (windows, table) = (&scratch[..used], scratch[used]);
    let sums = if parts > 1 { scratch[used + 1] } else { out };
    let (entry, rows) = grad_weight_kernel(geo, taps);
    let mut params = ConvWindowParams {
        window_images,
        part_images,
        ..window_params(geo, taps)
    };
    let table_kernel = kernels::CONV_WINDOW_TAPS;
    let groups = [taps.div_ceil(table_kernel.workgroup[0]), 1, 1];
    rec.push(table_kernel, &params, vec![table], groups);
    let bytes = image as u64 * 4;
    for image0 in (0..geo.n).step_by(per_dispatch as usize) {
        let images = per_dispatch.min(geo.n - image0);
        for (i, &window) in windows.iter().enumerate() {
            let first = image0 + i as u32 * window_images;
            if first >= image0 + images {
                break;
            }
            let count = window_images.min(image0 + images - first);
            rec.copy(input, first as u64 * bytes, window, count as u64 * bytes);
        }
        params.image0 = image0;
        params.images = images;
        // Bindings: out, window 0, g, windows 1.., the tap table; unused windows repeat
        // window 0.
        let mut buffers = vec![sums, windows[0], grad];
        buffers.extend((1..UA_WINDOWS).map(|i| *windows.get(i).unwrap_or(&windows[0])));
        buffers.push(table);
        let groups = [
            taps.div_ceil(rows),
            geo.co.div_ceil(4 * entry.workgroup[0]),
            images.div_ceil(part_images),
        ];
        rec.push(entry, &params, buffers, groups);
        params.part0 += groups[2];
    }
    debug_assert_eq!(params.part0, parts);
    if parts > 1 {
        let shape = [parts as usize, len as usize];
        reduce::reduce(rec, Reduction::Sum, sums, &shape, &[0], out)?;
    }
    rec.free_all(scratch);
    Ok(true)
}

/// The weight-gradient kernel for `geo` with `taps` taps: without bounds checks where every
/// window lies inside the input, in the blocks of taps [`block_rows`] picks.
fn grad_weight_kernel(geo: &ConvLanesParams, taps: u32) -> (Entry, u32) {
    variant(GRAD_WEIGHT_KERNELS, geo, block_rows(taps, |_| true))
}

/// The two ways a window convolution reads its input: from a texture (the rule), or from
/// its buffer; a pinned choice (`Tuning::pin`) picks one.
const READS: [&str; 2] = ["conv_windows_texture", "conv_windows"];

/// Whether the window convolutions read their input from a texture: by rule, since a texel
/// fetch is a gather across the lanes where a storage load is a loop over them (on an AVX2
/// processor's lavapipe, `conv2d_b` 5.0 → 10.0 GFLOP/s; docs/performance.md), unless the
/// buffer is pinned.
fn texture_reads(rec: &Recorder) -> bool {
    rec.ctx().tuning.pinned(&READS) != Some(1)
}

/// The forward kernels reading the input from a texture, laid out as [`FORWARD_KERNELS`].
const FORWARD_TEXTURE_KERNELS: [[Entry; 3]; 2] = [
    [
        kernels::CONV_VEC4_UA_TEX,
        kernels::CONV_VEC4_UA16_TEX,
        kernels::CONV_VEC4_UA32_TEX,
    ],
    [
        kernels::CONV_VEC4_INSIDE_UA_TEX,
        kernels::CONV_VEC4_INSIDE_UA16_TEX,
        kernels::CONV_VEC4_INSIDE_UA32_TEX,
    ],
];

/// The forward kernels, bounds checked then `_inside`, per height of [`CONV_ROWS`].
const FORWARD_KERNELS: [[Entry; 3]; 2] = [
    [
        kernels::CONV_VEC4_UA,
        kernels::CONV_VEC4_UA16,
        kernels::CONV_VEC4_UA32,
    ],
    [
        kernels::CONV_VEC4_INSIDE_UA,
        kernels::CONV_VEC4_INSIDE_UA16,
        kernels::CONV_VEC4_INSIDE_UA32,
    ],
];

/// The weight-gradient kernels, laid out as [`FORWARD_KERNELS`].
const GRAD_WEIGHT_KERNELS: [[Entry; 3]; 2] = [
    [
        kernels::CONV_GRAD_WEIGHT_UA,
        kernels::CONV_GRAD_WEIGHT_UA16,
        kernels::CONV_GRAD_WEIGHT_UA32,
    ],
    [
        kernels::CONV_GRAD_WEIGHT_INSIDE_UA,
        kernels::CONV_GRAD_WEIGHT_INSIDE_UA16,
        kernels::CONV_GRAD_WEIGHT_INSIDE_UA32,
    ],
];

/// The kernel of `table` for `geo` in blocks of `rows`: `_inside` where every window lies
/// inside the input.
fn variant(table: [[Entry; 3]; 2], geo: &ConvLanesParams, rows: u32) -> (Entry, u32) {
    let height = CONV_ROWS.iter().position(|&r| r == rows);
    (
        table[inside(geo) as usize][height.expect("a height of CONV_ROWS")],
        rows,
    )
}

/// The block height (of [`CONV_ROWS`], those `fits` allows) for `count` rows: the least
/// estimated cost, each block costing its rows plus [`BLOCK_LOADS`] for the loads of its
/// columns, which a block makes once however tall it is; the lower height on a tie. Taller
/// blocks read each column value once for more rows: in `cnn_step`, conv2's forward took
/// 17.6 ms in blocks of 32 against 20.4 in blocks of 16, and its weight gradient 7.2 ms per
/// dispatch against 8.4 (docs/performance.md).
fn block_rows(count: u32, fits: impl Fn(u32) -> bool) -> u32 {
    let cost = |rows: u32| count.div_ceil(rows) * (rows + BLOCK_LOADS);
    CONV_ROWS
        .into_iter()
        .filter(|&rows| rows == CONV_ROWS[0] || fits(rows))
        .min_by_key(|&rows| (cost(rows), rows))
        .expect("a height")
}

/// A block's loads of its columns, in rows' worth of work (see [`block_rows`]).
const BLOCK_LOADS: u32 = 16;

/// The parameters of `geo`'s window kernels with `k` taps: its geometry, the rest 0.
fn window_params(geo: &ConvLanesParams, k: u32) -> ConvWindowParams {
    ConvWindowParams {
        a_row0: 0,
        a_rows: 0,
        window_rows: 0,
        k,
        cols: 0,
        image0: 0,
        np: geo.oh * geo.ow,
        ow: geo.ow,
        co: geo.co,
        image: geo.ci * geo.h * geo.w,
        h: geo.h,
        w: geo.w,
        sh: geo.sh,
        sw: geo.sw,
        kh: geo.kh,
        kw: geo.kw,
        oy: geo.oy,
        ox: geo.ox,
        ky_step: geo.ky_step,
        kx_step: geo.kx_step,
        images: 0,
        window_images: 0,
        part_images: 0,
        part0: 0,
        oh: geo.oh,
        pad: [0; 3],
    }
}

/// Whether every window of `geo` lies inside the input: no tap reads padding.
fn inside(geo: &ConvLanesParams) -> bool {
    let axis = |out: u32, stride: u32, offset: i32, taps: u32, step: i32, len: u32| {
        let (out, stride, taps) = (out as i64, stride as i64, taps as i64);
        let reach = (taps - 1) * step as i64;
        let first = offset as i64 + reach.min(0);
        let last = (out - 1) * stride + offset as i64 + reach.max(0);
        first >= 0 && last < len as i64
    };
    axis(geo.oh, geo.sh, geo.oy, geo.kh, geo.ky_step, geo.h)
        && axis(geo.ow, geo.sw, geo.ox, geo.kw, geo.kx_step, geo.w)
}

/// The kernel for `geo` with `k` taps, reading the input from a texture or not: without
/// bounds checks where every window lies inside the input, in the blocks of output channels
/// [`block_rows`] picks among those a window holds.
fn kernel(geo: &ConvLanesParams, k: u32, texture: bool) -> (Entry, u32) {
    let rows = block_rows(geo.co, |rows| window_rows(k, rows) >= rows);
    let table = match texture {
        true => FORWARD_TEXTURE_KERNELS,
        false => FORWARD_KERNELS,
    };
    variant(table, geo, rows)
}
