//! Convolutions as matrix products (see `conv.rs` for when each plan applies): unfold a
//! chunk of images (`im2col`, compiled per geometry) and multiply with the vec4 matrix
//! kernels, images of few pixels side by side in one product, and the weight gradient as
//! products accumulated over chunks. The products split k past their bound like any other
//! (`matmul.rs`).

use wgrad_graph::shape::{contiguous_strides, numel};
use wgrad_graph::{BufferId, Result};

use super::generated::{self, Epilogue};
use super::{layout, matmul, windows};
use crate::kernels;
use crate::params::{ConvLanesParams, ConvParams, Im2colParams, MatmulParams};
use crate::recorder::Recorder;
use crate::MAX_TRIP;

/// The weight operand of a convolution kernel: a buffer read as is, or copied first into
/// the order `view` with source `strides` gives.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    AsIs(BufferId),
    Relayout {
        buffer: BufferId,
        view: &'a [usize],
        strides: &'a [usize],
    },
}

/// Values per unfolded chunk: the batch is unfolded this many values at a time (at least
/// one image), which bounds the scratch memory and keeps a chunk's matrix near the caches.
const CHUNK_VALUES: usize = 1 << 22;

/// The most chunks a weight gradient is cut into so that its products can read A through
/// uniform windows (each chunk adds a copy and an unfolding; docs/performance.md).
const WINDOW_CHUNKS: u32 = 8;

/// Output images of fewer pixels than this are unfolded side by side into one product
/// ([`conv_gemm_wide`]), so that the product has columns enough for the matrix
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

/// Unfolds images `image0 .. image0 + images` of the tensor `geo` reads into `cols`,
/// laid out with the given (image, tap, pixel) strides.
fn im2col(
    rec: &Recorder,
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
    let [x, y, _] = rec.linear_groups((geo.ci * params.pixels) as usize);
    let groups = [x, y, images];
    if !rec.specialize() {
        rec.push(kernels::IM2COL, &params, vec![cols, input], groups);
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
    let pipeline = rec.ctx().pipeline_with(kernels::IM2COL, &constants);
    let buffers = vec![cols, input];
    rec.push_pipeline(pipeline, "im2col (fixed)", &params, (buffers, &[]), groups);
}

/// Records `out = a · b` (batched over `batch` matrices of `b` at stride `sb`, `a`
/// shared) with the vec4 kernel that stores through an offset and row length, applying
/// `epilogue` (never with `accumulate`) to what it stores.
fn matmul_out(
    rec: &Recorder,
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
    matmul::product(rec, &params, (a, b, out), true, epilogue)
}

/// Whether [`conv_gemm`] takes `geo`: one group, and the product's inner
/// dimension (taps) a multiple of 4.
pub(crate) fn gemm_fits(rec: &Recorder, geo: &ConvLanesParams) -> bool {
    let taps = geo.ci * geo.kh * geo.kw;
    gemm_weight_fits(rec, geo) && taps.is_multiple_of(4)
}

/// Whether [`conv_gemm_weight`] takes `geo`: one group (the unfolded rows
/// are padded to whole vec4s, so any tap count).
pub(crate) fn gemm_weight_fits(rec: &Recorder, geo: &ConvLanesParams) -> bool {
    let taps = geo.ci * geo.kh * geo.kw;
    let grid = rec.limits().max_compute_workgroups_per_dimension;
    // An unfolding invocation walks one channel's window.
    let window = (geo.kh * (1 + geo.kw)) as usize <= MAX_TRIP;
    geo.groups == 1 && geo.n > 0 && taps <= grid && geo.n <= grid && window
}

/// The convolution `geo` (forward, or a stride-1 input gradient) as matrix products:
/// per chunk of images, unfold the input, then `out[n] = W · cols[n]` with W as
/// `[co, ci·kh·kw]`, with `epilogue` applied as the products store. False (nothing
/// recorded) when scratch memory is short.
pub(crate) fn conv_gemm(
    rec: &Recorder,
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
        let Some((scratch, w)) = scratch_and_weights(rec, &[], &weights) else {
            return Ok(false);
        };
        let batch = (geo.n, taps * pixels);
        let buffers = (w, input, out);
        let result = matmul_out(
            rec,
            [geo.co, pixels, taps],
            batch,
            buffers,
            (0, np, false),
            epilogue,
        );
        rec.free_all(scratch);
        return result.map(|_| true);
    }
    if np < WIDE_BELOW && geo.n > 1 {
        return conv_gemm_wide(rec, geo, (input, out), weights, epilogue);
    }
    let cols_bytes = chunk as usize * (taps * pixels) as usize * 4;
    let Some((scratch, w)) = scratch_and_weights(rec, &[cols_bytes], &weights) else {
        return Ok(false);
    };
    let cols = scratch[0];
    let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
        let images = chunk.min(geo.n - image0);
        let layout = [taps * pixels, pixels, 1];
        im2col(rec, geo, input, cols, (image0, images, pixels), layout);
        matmul_out(
            rec,
            [geo.co, pixels, taps],
            (images, taps * pixels),
            (w, cols, out),
            (image0 * geo.co * np, np, false),
            epilogue,
        )
    });
    rec.free_all(scratch);
    result.map(|_| true)
}

/// [`conv_gemm`] for images of few pixels: a chunk's images unfold side by
/// side, `cols` as `[taps, images·np]`, so that one product `W · cols` has enough
/// columns to fill the kernel's lanes (one product per image would leave most of them
/// idle); its `[co, images·np]` result is then copied into the output's
/// `[image, co, np]` order, with `epilogue` applied by the copy.
fn conv_gemm_wide(
    rec: &Recorder,
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
    let Some((scratch, w)) = scratch_and_weights(rec, &sizes, &weights) else {
        return Ok(false);
    };
    let (cols, product) = (scratch[0], scratch[1]);
    let (co, npu) = (geo.co as usize, np as usize);
    let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
        let images = chunk.min(geo.n - image0);
        // Columns past images·np are never written; they only reach product columns
        // that are not copied out.
        let n = (images * np).next_multiple_of(4);
        im2col(rec, geo, input, cols, (image0, images, np), [np, n, 1]);
        let buffers = (w, cols, product);
        matmul_out(rec, [geo.co, n, taps], (1, 0), buffers, (0, n, false), None)?;
        let view = [images as usize, co, npu];
        let from = (0, &[npu, n as usize, 1][..]);
        let to = (image0 as usize * co * npu, &[co * npu, npu, 1][..]);
        match epilogue {
            Some(_) => generated::record_copy(rec, product, out, &view, from, to, epilogue),
            None => layout::copy_strided(rec, product, out, &view, from, to),
        }
        Ok(())
    });
    rec.free_all(scratch);
    result.map(|_| true)
}

/// The weight gradient of the forward convolution `geo` as matrix products: per chunk
/// of images, `dW += gᵀ-chunk · cols-chunk`, where the chunk of g is copied as
/// `[co, images·pixels]` (zero past each image's pixels) and the windows are unfolded as
/// `[images·pixels, taps]`. On CPU-type adapters the chunks are cut so that k (the
/// chunk's images · pixels) stays within the uniform-window products' bound, where that
/// takes at most [`WINDOW_CHUNKS`] chunks. False (nothing recorded) when scratch memory is
/// short.
pub(crate) fn conv_gemm_weight(
    rec: &Recorder,
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
    let mut chunk = chunk;
    if let Some(k) = windows::windows_max_k(rec) {
        let capped = chunk.min((k / pixels).max(1));
        if geo.n.div_ceil(capped) <= WINDOW_CHUNKS {
            chunk = capped;
        }
    }
    let sizes = [
        chunk as usize * row as usize * pixels as usize * 4,
        chunk as usize * geo.co as usize * pixels as usize * 4,
    ];
    let Some(scratch) = rec.alloc_all(&sizes) else {
        return Ok(false);
    };
    let (cols, gt) = (scratch[0], scratch[1]);
    let (co, npu, pix) = (geo.co as usize, np as usize, pixels as usize);
    let result = (0..geo.n).step_by(chunk as usize).try_for_each(|image0| {
        let images = chunk.min(geo.n - image0);
        let k = images * pixels;
        if pixels != np {
            rec.fill(gt, co * k as usize, 0);
        }
        layout::copy_strided(
            rec,
            grad,
            gt,
            &[images as usize, co, npu],
            (image0 as usize * co * npu, &[co * npu, npu, 1]),
            (0, &[pix, k as usize, 1]),
        );
        let slots = (image0, images, pixels);
        im2col(rec, geo, input, cols, slots, [pixels * row, 1, row]);
        matmul_out(
            rec,
            [geo.co, row, k],
            (1, 0),
            (gt, cols, out),
            (0, taps, image0 > 0),
            None,
        )
    });
    rec.free_all(scratch);
    result.map(|_| true)
}

/// The input gradient of a strided convolution (or a transposed convolution) as a product
/// and a gather: per chunk of images, g is copied as `[o, images·oh·ow]` with a column of
/// zeros after it (rows rounded up to whole vec4s), `cols = Wᵀ · g` (`[c·kh·kw, …]`, W read
/// transposed in place) in one product, and `col2im` sums each input value's taps in a
/// fixed order. A tap that reaches no output pixel reads the zero column's `Wᵀ·0`: it
/// counts as g = 0 times its weights, so a weight that is not finite makes NaN as on the
/// CPU backend. The direct kernel walks every output channel for each input value; this
/// does that work in a matrix kernel, with the images side by side so that small images
/// still fill its lanes. False (nothing recorded) for grouped convolutions, windows past
/// the loop bound, or when scratch memory is short.
pub(crate) fn grad_input_cols(
    rec: &Recorder,
    params: &ConvParams,
    (g, w, out): (BufferId, BufferId, BufferId),
) -> Result<bool> {
    let grid = rec.limits().max_compute_workgroups_per_dimension;
    let taps = params.c * params.kh * params.kw;
    let np = params.oh * params.ow;
    let fits = params.groups == 1
        && (params.kh * (1 + params.kw)) as usize <= MAX_TRIP
        && params.c <= grid
        && (params.h * params.w).div_ceil(64) <= grid
        && params.n > 0
        && taps > 0
        && np > 0;
    if !fits {
        return Ok(false);
    }
    let per_image = (taps + params.o) as usize * np as usize;
    let chunk = (CHUNK_VALUES / per_image).clamp(1, params.n.min(grid) as usize) as u32;
    let row_max = (chunk * np + 1).next_multiple_of(4) as usize;
    let sizes = [taps as usize * row_max * 4, params.o as usize * row_max * 4];
    let Some(scratch) = rec.alloc_all(&sizes) else {
        return Ok(false);
    };
    let (cols, gt) = (scratch[0], scratch[1]);
    let (o, npu) = (params.o as usize, np as usize);
    let result = (0..params.n)
        .step_by(chunk as usize)
        .try_for_each(|image0| {
            let images = chunk.min(params.n - image0);
            // One zero column after the images' columns; column j of the product reads only
            // column j of gt, so the rest of the padding reaches nothing col2im reads.
            let row = (images * np + 1).next_multiple_of(4);
            rec.fill(gt, o * row as usize, 0);
            layout::copy_strided(
                rec,
                g,
                gt,
                &[images as usize, o, npu],
                (image0 as usize * o * npu, &[o * npu, npu, 1]),
                (0, &[npu, row as usize, 1]),
            );
            let product = MatmulParams {
                m: taps,
                n: row,
                k: params.o,
                batch_rank: 1,
                batch: [1, 1, 1, 1],
                sa: [0; 4],
                sb: [0; 4],
                out_offset: 0,
                out_n: row,
                accumulate: 0,
                ta: 1,
                tb: 0,
                a_row0: 0,
                a_rows: 0,
                window_rows: 0,
                b_panel: 0,
                k_chunk: 0,
                batch_count: 0,
            };
            matmul::product(rec, &product, (w, gt, cols), false, None)?;
            let gather = ConvParams {
                red_begin: image0,
                red_end: row,
                // Where the zero column is.
                out_base: images * np,
                ..*params
            };
            let groups = [(params.h * params.w).div_ceil(64), params.c, images];
            rec.push(kernels::COL2IM, &gather, vec![out, cols], groups);
            Ok(())
        });
    rec.free_all(scratch);
    result.map(|_| true)
}

/// Scratch buffers of `sizes`, and the weights `w` in the order they ask for (copied
/// into one more scratch buffer when relaid out): all the scratch, to free after
/// recording its use (work recorded later runs after that use, so reuse is safe), and
/// the weights' buffer. None, with nothing recorded, when memory is short.
pub(crate) fn scratch_and_weights(
    rec: &Recorder,
    sizes: &[usize],
    w: &Weights,
) -> Option<(Vec<BufferId>, BufferId)> {
    let mut sizes = sizes.to_vec();
    if let Weights::Relayout { view, .. } = w {
        sizes.push(numel(view) * 4);
    }
    let scratch = rec.alloc_all(&sizes)?;
    let weights = match *w {
        Weights::AsIs(id) => id,
        Weights::Relayout {
            buffer,
            view,
            strides,
        } => {
            let relaid = *scratch.last().expect("allocated");
            let dense = contiguous_strides(view);
            layout::copy_strided(rec, buffer, relaid, view, (0, strides), (0, &dense));
            relaid
        }
    };
    Some((scratch, weights))
}
