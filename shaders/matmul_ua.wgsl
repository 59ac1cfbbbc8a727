// Matrix products for CPU-type adapters that read A through uniform buffers, appended to
// matmul.wgsl (crates/device/src/shaders.rs expands this template). A dispatch binds up to
// UA_WINDOWS windows of 64 KiB, each holding `window_rows` consecutive rows of A, so that one
// dispatch covers enough rows for B to be read from memory once per dispatch rather than once
// per window. A workgroup's rows lie in one window; WGSL cannot index bindings, so the lines
// between `//@each-window` and `//@end` are written out once per window `{w}` (at binding
// `{binding}`), and a workgroup takes its window's copy.
//
// Why uniform buffers: every invocation of a workgroup reads the same A values, and a CPU
// adapter loads a uniform-buffer value whose address is the same across the workgroup once,
// where a storage-buffer load costs one access per invocation (docs/performance.md).
//
// Binding 2 holds window 0, 3 is B, 4.. hold windows 1.. .
//@each-window
@group(0) @binding({binding}) var<uniform> ua{w}: array<vec4<f32>, UA_WINDOW_VEC4S>;
//@end
// The `_tex` kernels read B from this rgba32float texture instead of binding 3, a texel per
// vec4 of a row of B (of B's transpose for `_nt_tex`; crates/device/src/family/windows.rs
// fills it). On CPU-type adapters a texel fetch is a gather across the lanes, where a
// storage-buffer load is a loop over them (docs/performance.md).
@group(0) @binding(20) var bt: texture_2d<f32>;

// The entry points, UA_LANES invocations wide, each computing a block of ROWS × 4 of C:
// ROWS rows of the dispatch from `row`, 4 columns from vec4 column `c4`. Workgroups go down
// the row blocks of one panel of columns before the next (`workgroup_id.x` is the row block),
// so that panel of B stays in cache while the dispatch's rows use it. The `_out` kernels store
// through an offset and row length (`store_out`); the `_nt` kernels read B stored transposed,
// [n, k], as running dot products along k. Blocks of 8 rows halve the B loads per
// multiply-add against 4; blocks of 16 halve them again where a window holds 16 rows
// (k ≤ 1024), at the price of more live accumulators, which the adapter may spill: which one
// runs is measured per shape class (`matmul.rs`). Each entry point stands between
// `//@entry NAME FUNCTION` and `//@end`, so that a module of one entry point (with an
// epilogue) can leave out the others and the functions they call.
//@entry matmul_vec4_ua ua_rows8
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows8(wg, l.x);
}
//@end

//@entry matmul_vec4_out_ua ua_rows8_out
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_out_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows8_out(wg, l.x);
}
//@end

//@entry matmul_vec4_ua16 ua_rows16
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows16(wg, l.x);
}
//@end

//@entry matmul_vec4_nt_ua ua_rows8_nt
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_nt_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows8_nt(wg, l.x);
}
//@end

//@entry matmul_vec4_nt_ua16 ua_rows16_nt
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_nt_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows16_nt(wg, l.x);
}
//@end

//@entry matmul_vec4_out_ua16 ua_rows16_out
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_out_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows16_out(wg, l.x);
}
//@end

//@entry matmul_vec4_ua_tex ua_rows8_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_ua_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows8_tex(wg, l.x);
}
//@end

//@entry matmul_vec4_ua16_tex ua_rows16_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_ua16_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows16_tex(wg, l.x);
}
//@end

//@entry matmul_vec4_nt_ua_tex ua_rows8_nt_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_nt_ua_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows8_nt_tex(wg, l.x);
}
//@end

//@entry matmul_vec4_nt_ua16_tex ua_rows16_nt_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_nt_ua16_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    ua_rows16_nt_tex(wg, l.x);
}
//@end

// Stores one row of a block plainly (`ua_store`) or through the offset and row length
// (`ua_store_out`).
fn ua_store(z: u32, row: u32, c4: u32, v: vec4<f32>) {
    put4((z * p.m + p.a_row0 + row) * (p.n / 4u) + c4, v);
}

fn ua_store_out(z: u32, row: u32, c4: u32, v: vec4<f32>) {
    store_out(p.out_offset + z * p.m * p.out_n, p.a_row0 + row, c4 * 4u, v);
}

// Written out once per block height `{rows}` and variant `{v}`: empty (B [k, n], plain
// stores), `_out` (stores through `store_out`), `_nt` (B [n, k]), `_tex` and `_nt_tex` (B,
// or its transpose, read from the texture); `{cols}` is the row length stored, `{b_next}`
// the vec4s B's reads move by per step of 4 along k, `{loads}` the step's reads of B,
// `{product}` the step's contribution to a row's four outputs. `{guard}` keeps binding 3 in
// the `_tex` kernels' bindings, so that every variant binds the same buffers. The lines
// between `//@each-row` and `//@end` are written out once per row `{r}` of the block.
//@rows
fn ua_rows{rows}{v}(wg: vec3<u32>, lane: u32) {
    let c4 = wg.y * UA_LANES + lane;
    let row = wg.x * {rows}u;
    if (row >= p.a_rows || c4 * 4u >= {cols}) { return; }
    {guard}
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let b0 = batch_offsets(wg.z).y;
    // The four vec4s a step reads: four rows of B (n4 vec4s apart, or b_panel apart when B
    // is packed in panels) at the block's columns; for `_nt`, the block's four columns of
    // B's transpose (k4 vec4s apart) at the step's k.
    let nt = {nt};
    let packed = p.b_panel != 0u;
    let b_row = select(select(n4, p.b_panel, packed), k4, nt);
    let panel = max(p.b_panel, 1u);
    let b_col = select(select(c4, (c4 / panel) * p.k * panel + c4 % panel, packed), c4 * 4u * k4, nt);
    // The block's window, and its rows there; rows past the dispatch's end are clamped and
    // never stored.
    let w = row / p.window_rows;
    let wrow = row - w * p.window_rows;
    let last = min(p.a_rows - w * p.window_rows, p.window_rows) - 1u;
//@each-row
    let ra{r} = min(wrow + {r}u, last) * k4;
    var acc{r} = vec4<f32>(0.0);
//@end
    switch w {
//@each-window
        // Reads A from window {w}.
        case {w}u: {
            var rb = b0 / 4u + b_col;
            for (var t = 0u; t < k4; t++) {
                {loads}
                rb += {b_next};
//@each-row
                let x{r} = ua{w}[ra{r} + t];
                acc{r} += {product};
//@end
            }
        }
//@end
        default: {}
    }
//@each-row
    if (row + {r}u < p.a_rows) { {store}(wg.z, row + {r}u, c4, acc{r}); }
//@end
}
//@end

// Convolutions (one group) on CPU-type adapters as the product of the weights, [co, k] rows
// read through the windows as A, and the unfolded input, [k, images · pixels], whose values
// are read from the input where the unfolding would have put them (crates/device/src/family/
// conv_windows.rs): no unfolded copy is written and read back, the output is stored in its
// [image, co, pixel] order with any epilogue applied, and each B value costs one storage
// load as it would from the unfolding. k, the taps per output channel (input channels ·
// kernel taps), is a multiple of 4.

// Rust twin: ConvWindowParams in crates/device/src/params.rs
struct ConvWindowParams {
    // Output channels a_row0 .. a_row0 + a_rows sit in the windows, window_rows in each.
    a_row0: u32,
    a_rows: u32,
    window_rows: u32,
    k: u32,
    // Columns: (image, output pixel) pairs of images image0 .. , np pixels per image.
    cols: u32,
    image0: u32,
    np: u32,
    ow: u32,
    co: u32,
    // The tensor read: `image` elements per image, h × w per channel.
    image: u32,
    h: u32,
    w: u32,
    sh: u32,
    sw: u32,
    kh: u32,
    kw: u32,
    // Input row of output row y and tap ky: y·sh + oy + ky·ky_step (columns alike).
    oy: i32,
    ox: i32,
    ky_step: i32,
    kx_step: i32,
    // conv_grad_weight_ua: images image0 .. image0 + images, window_images in each window;
    // grid z cuts them into parts of part_images, whose sums land co · k apart from part
    // part0 of the output.
    images: u32,
    window_images: u32,
    part_images: u32,
    part0: u32,
    oh: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> cw: ConvWindowParams;
// Per tap: its offset in the input from a window's corner, and the rows and columns it
// moves (written by conv_window_taps).
@group(0) @binding(11) var<uniform> conv_taps: array<vec4<i32>, UA_WINDOW_VEC4S>;

//@entry conv_window_taps -
// Writes the tap table of the convolution window kernels for tap gid.x (channel, kernel row,
// kernel column), as bits in the output.
@compute @workgroup_size(64, 1, 1)
fn conv_window_taps(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= cw.k) { return; }
    let per = cw.kh * cw.kw;
    let c = i / per;
    let ky = (i - c * per) / cw.kw;
    let kx = i - c * per - ky * cw.kw;
    let dy = i32(ky) * cw.ky_step;
    let dx = i32(kx) * cw.kx_step;
    let d = i32(c * cw.h * cw.w) + dy * i32(cw.w) + dx;
    out4[i] = bitcast<vec4<f32>>(vec4<i32>(d, dy, dx, 0));
}
//@end

// The entry points, UA_LANES invocations wide, each computing ROWS output channels of four
// columns. The `_inside` kernels serve convolutions whose every window lies inside the
// input (no padding read), and skip the bounds checks.
//@entry conv_vec4_ua conv_rows8
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows8(wg, l.x);
}
//@end

//@entry conv_vec4_ua16 conv_rows16
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows16(wg, l.x);
}
//@end

//@entry conv_vec4_ua32 conv_rows32
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows32(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua conv_rows8_inside
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows8_inside(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua16 conv_rows16_inside
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows16_inside(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua32 conv_rows32_inside
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows32_inside(wg, l.x);
}
//@end

// The `_tex` kernels read the input from the texture, CONV_TEXELS values a row (see
// `conv_texel`).
//@entry conv_vec4_ua_tex conv_rows8_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows8_tex(wg, l.x);
}
//@end

//@entry conv_vec4_ua16_tex conv_rows16_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua16_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows16_tex(wg, l.x);
}
//@end

//@entry conv_vec4_ua32_tex conv_rows32_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_ua32_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows32_tex(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua_tex conv_rows8_inside_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows8_inside_tex(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua16_tex conv_rows16_inside_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua16_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows16_inside_tex(wg, l.x);
}
//@end

//@entry conv_vec4_inside_ua32_tex conv_rows32_inside_tex
@compute @workgroup_size(UA_LANES, 1, 1)
fn conv_vec4_inside_ua32_tex(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_rows32_inside_tex(wg, l.x);
}
//@end

// The four columns' values of tap `t` (see conv_taps), for columns whose window corners sit
// at input rows `y`, columns `x`, index `corner`: 0 in the padding.
fn conv_gather(t: vec4<i32>, corner: vec4<i32>, y: vec4<i32>, x: vec4<i32>) -> vec4<f32> {
    let inside = (vec4<u32>(y + t.y) < vec4<u32>(cw.h)) & (vec4<u32>(x + t.z) < vec4<u32>(cw.w));
    let i = vec4<u32>(select(vec4<i32>(0), corner + t.x, inside));
    return select(vec4<f32>(0.0), vec4<f32>(b[i.x], b[i.y], b[i.z], b[i.w]), inside);
}

// conv_gather where every window lies inside the input.
fn conv_inside(t: vec4<i32>, corner: vec4<i32>, y: vec4<i32>, x: vec4<i32>) -> vec4<f32> {
    let i = vec4<u32>(corner + t.x);
    return vec4<f32>(b[i.x], b[i.y], b[i.z], b[i.w]);
}

// conv_gather and conv_inside reading the input from the texture.
fn conv_gather_tex(t: vec4<i32>, corner: vec4<i32>, y: vec4<i32>, x: vec4<i32>) -> vec4<f32> {
    let inside = (vec4<u32>(y + t.y) < vec4<u32>(cw.h)) & (vec4<u32>(x + t.z) < vec4<u32>(cw.w));
    let i = vec4<u32>(select(vec4<i32>(0), corner + t.x, inside));
    return select(vec4<f32>(0.0), conv_texels(i), inside);
}

fn conv_inside_tex(t: vec4<i32>, corner: vec4<i32>, y: vec4<i32>, x: vec4<i32>) -> vec4<f32> {
    return conv_texels(vec4<u32>(corner + t.x));
}

// Input values `i` from the texture, which holds the input in rows of CONV_TEXELS.
fn conv_texels(i: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(conv_texel(i.x), conv_texel(i.y), conv_texel(i.z), conv_texel(i.w));
}

fn conv_texel(i: u32) -> f32 {
    let at = vec2<i32>(i32(i % CONV_TEXELS), i32(i / CONV_TEXELS));
    return textureLoad(bt, at, 0).x;
}

// quot for each of four values.
fn quot4(i: vec4<u32>, d: u32) -> vec4<u32> {
    return vec4<u32>(quot(i.x, d), quot(i.y, d), quot(i.z, d), quot(i.w, d));
}

// Stores one output channel's values of the four columns from `col0` at output indices `at`.
fn conv_store(at: vec4<u32>, col0: u32, v: vec4<f32>) {
    put(at.x, v.x);
    if (col0 + 1u < cw.cols) { put(at.y, v.y); }
    if (col0 + 2u < cw.cols) { put(at.z, v.z); }
    if (col0 + 3u < cw.cols) { put(at.w, v.w); }
}

// Written out once per block height `{rows}` and variant `{v}` (bounds checked, or `_inside`
// where `{gather}` skips the checks; `_tex` reading the input from the texture, `{guard}`
// keeping binding 3 bound as in `ua_rows`): each invocation computes {rows} output channels
// from `row` for the four columns from vec4 column `c4`, as `ua_rows` does with B's four
// rows of a step gathered from the input.
//@conv-rows
fn conv_rows{rows}{v}(wg: vec3<u32>, lane: u32) {
    let c4 = wg.y * UA_LANES + lane;
    let row = wg.x * {rows}u;
    if (row >= cw.a_rows || c4 * 4u >= cw.cols) { return; }
    {guard}
    let k4 = cw.k / 4u;
    // The columns' images and pixels (the last column repeated past the end), and where
    // their windows' corners sit in the input.
    let col = min(vec4<u32>(c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(cw.cols - 1u));
    let img = quot4(col, cw.np);
    let pix = col - img * cw.np;
    let py = quot4(pix, cw.ow);
    let y = vec4<i32>(py * cw.sh) + vec4<i32>(cw.oy);
    let x = vec4<i32>((pix - py * cw.ow) * cw.sw) + vec4<i32>(cw.ox);
    let corner = vec4<i32>((vec4<u32>(cw.image0) + img) * cw.image) + y * i32(cw.w) + x;
    let w = row / cw.window_rows;
    let wrow = row - w * cw.window_rows;
    let last = min(cw.a_rows - w * cw.window_rows, cw.window_rows) - 1u;
//@each-row
    let ra{r} = min(wrow + {r}u, last) * k4;
    var acc{r} = vec4<f32>(0.0);
//@end
    switch w {
//@each-window
        // Reads the weights from window {w}.
        case {w}u: {
            for (var t = 0u; t < k4; t++) {
                let b_0 = {gather}(conv_taps[4u * t], corner, y, x);
                let b_1 = {gather}(conv_taps[4u * t + 1u], corner, y, x);
                let b_2 = {gather}(conv_taps[4u * t + 2u], corner, y, x);
                let b_3 = {gather}(conv_taps[4u * t + 3u], corner, y, x);
//@each-row
                let x{r} = ua{w}[ra{r} + t];
                acc{r} += x{r}.x * b_0 + x{r}.y * b_1 + x{r}.z * b_2 + x{r}.w * b_3;
//@end
            }
        }
//@end
        default: {}
    }
    let at = (((vec4<u32>(cw.image0) + img) * cw.co + cw.a_row0 + row) * cw.np + pix);
//@each-row
    if (row + {r}u < cw.a_rows) { conv_store(at + vec4<u32>({r}u * cw.np), c4 * 4u, acc{r}); }
//@end
}
//@end

// Weight gradients of convolutions (one group) on CPU-type adapters: dW[o, tap] sums
// g[image, o, pixel] · x[image, tap's channel, pixel's window at the tap] over the images and
// pixels, with whole images of x in the windows (window_images each) and g read in place:
// no unfolding and no transposed copy of g. Each invocation computes ROWS taps (8, 16 or
// 32: read from the windows at addresses the same across the workgroup) for four output
// channels (g's loads, one per channel and pixel), and a workgroup of 8 invocations
// covers 32 output channels. Grid z numbers parts of the dispatch's images, each within
// the loop bound, whose sums are stored apart (and added in order afterwards where there
// is more than one; crates/device/src/family/conv_windows.rs).
//@entry conv_grad_weight_ua conv_gw_rows8
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows8(wg, l.x);
}
//@end

//@entry conv_grad_weight_ua16 conv_gw_rows16
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows16(wg, l.x);
}
//@end

//@entry conv_grad_weight_ua32 conv_gw_rows32
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_ua32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows32(wg, l.x);
}
//@end

//@entry conv_grad_weight_inside_ua conv_gw_rows8_inside
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_inside_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows8_inside(wg, l.x);
}
//@end

//@entry conv_grad_weight_inside_ua16 conv_gw_rows16_inside
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_inside_ua16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows16_inside(wg, l.x);
}
//@end

//@entry conv_grad_weight_inside_ua32 conv_gw_rows32_inside
@compute @workgroup_size(8, 1, 1)
fn conv_grad_weight_inside_ua32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
    conv_gw_rows32_inside(wg, l.x);
}
//@end

// Stores part `part`'s sums of tap `tap` for the four output channels from `o0`.
fn conv_gw_store(part: u32, o0: u32, tap: u32, v: vec4<f32>) {
    let base = (cw.part0 + part) * cw.co * cw.k;
    for (var j = 0u; j < 4u; j++) {
        if (o0 + j < cw.co) { put(base + (o0 + j) * cw.k + tap, v[j]); }
    }
}

// Written out once per block height `{rows}` and variant `{v}`: `{value}` sets `v{r}`, row
// {r}'s input value for the pixel whose window corner is (y, x), at index `at` of window
// {w}; the bounds-checked variant gives 0 in the padding.
//@conv-gw-rows
fn conv_gw_rows{rows}{v}(wg: vec3<u32>, lane: u32) {
    let o4 = wg.y * 8u + lane;
    let row = wg.x * {rows}u;
    if (row >= cw.k || o4 * 4u >= cw.co) { return; }
    // g's offsets of the four output channels within an image (the last repeated past co).
    let g_channel = min(vec4<u32>(o4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(cw.co - 1u)) * cw.np;
    let g_image = cw.co * cw.np;
    // The images of this part.
    let first = wg.z * cw.part_images;
    let end = min(first + cw.part_images, cw.images);
//@each-row
    let t{r} = conv_taps[min(row + {r}u, cw.k - 1u)];
    var acc{r} = vec4<f32>(0.0);
//@end
//@each-window
    // The part's images in window {w}.
    for (var i = max({w}u * cw.window_images, first); i < min(({w}u + 1u) * cw.window_images, end); i++) {
        let base = i32((i - {w}u * cw.window_images) * cw.image);
        let gi0 = vec4<u32>((cw.image0 + i) * g_image) + g_channel;
        var p = 0u;
        for (var py = 0u; py < cw.oh; py++) {
            let y = i32(py * cw.sh) + cw.oy;
            for (var px = 0u; px < cw.ow; px++) {
                let x = i32(px * cw.sw) + cw.ox;
                let at = base + y * i32(cw.w) + x;
                let gi = gi0 + vec4<u32>(p);
                let g = vec4<f32>(b[gi.x], b[gi.y], b[gi.z], b[gi.w]);
                p++;
//@each-row
                {value}
                acc{r} += v{r} * g;
//@end
            }
        }
    }
//@end
//@each-row
    if (row + {r}u < cw.k) { conv_gw_store(wg.z, o4 * 4u, row + {r}u, acc{r}); }
//@end
}
//@end
