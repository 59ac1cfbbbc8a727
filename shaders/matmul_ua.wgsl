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

// An 8×4 block of C per invocation (rows `row`..`row + 7` of the dispatch, 4 columns from
// vec4 column `c4`). Eight rows halve the B loads per multiply-add against a 4-row block; A's
// values being uniform, the eight accumulators still fit the CPU's vector registers.
struct Block8 {
    acc0: vec4<f32>,
    acc1: vec4<f32>,
    acc2: vec4<f32>,
    acc3: vec4<f32>,
    acc4: vec4<f32>,
    acc5: vec4<f32>,
    acc6: vec4<f32>,
    acc7: vec4<f32>,
}

fn mm_ua_block(c4: u32, row: u32, z: u32) -> Block8 {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let b0 = batch_offsets(z).y;
    // B's rows are n4 vec4s apart, or b_panel apart when B is packed in panels.
    let packed = p.b_panel != 0u;
    let b_row = select(n4, p.b_panel, packed);
    let panel = max(p.b_panel, 1u);
    let b_col = select(c4, (c4 / panel) * p.k * panel + c4 % panel, packed);
    // The block's window, and its rows there; rows past the dispatch's end are clamped and
    // never stored.
    let w = row / p.window_rows;
    let wrow = row - w * p.window_rows;
    let last = min(p.a_rows - w * p.window_rows, p.window_rows) - 1u;
    let ra0 = min(wrow, last) * k4;
    let ra1 = min(wrow + 1u, last) * k4;
    let ra2 = min(wrow + 2u, last) * k4;
    let ra3 = min(wrow + 3u, last) * k4;
    let ra4 = min(wrow + 4u, last) * k4;
    let ra5 = min(wrow + 5u, last) * k4;
    let ra6 = min(wrow + 6u, last) * k4;
    let ra7 = min(wrow + 7u, last) * k4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    switch w {
//@each-window
        // Reads A from window {w}.
        case {w}u: {
            var rb = b0 / 4u + b_col;
            for (var t = 0u; t < k4; t++) {
                let b_0 = b4[rb];
                let b_1 = b4[rb + b_row];
                let b_2 = b4[rb + 2u * b_row];
                let b_3 = b4[rb + 3u * b_row];
                rb += 4u * b_row;
                let x0 = ua{w}[ra0 + t];
                acc0 += x0.x * b_0 + x0.y * b_1 + x0.z * b_2 + x0.w * b_3;
                let x1 = ua{w}[ra1 + t];
                acc1 += x1.x * b_0 + x1.y * b_1 + x1.z * b_2 + x1.w * b_3;
                let x2 = ua{w}[ra2 + t];
                acc2 += x2.x * b_0 + x2.y * b_1 + x2.z * b_2 + x2.w * b_3;
                let x3 = ua{w}[ra3 + t];
                acc3 += x3.x * b_0 + x3.y * b_1 + x3.z * b_2 + x3.w * b_3;
                let x4 = ua{w}[ra4 + t];
                acc4 += x4.x * b_0 + x4.y * b_1 + x4.z * b_2 + x4.w * b_3;
                let x5 = ua{w}[ra5 + t];
                acc5 += x5.x * b_0 + x5.y * b_1 + x5.z * b_2 + x5.w * b_3;
                let x6 = ua{w}[ra6 + t];
                acc6 += x6.x * b_0 + x6.y * b_1 + x6.z * b_2 + x6.w * b_3;
                let x7 = ua{w}[ra7 + t];
                acc7 += x7.x * b_0 + x7.y * b_1 + x7.z * b_2 + x7.w * b_3;
            }
        }
//@end
        default: {}
    }
    return Block8(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
}

// The entry points, UA_LANES invocations wide. Workgroups go down the row blocks of one panel
// of columns before the next panel (`workgroup_id.x` is the row block), so that panel of B
// stays in cache while the dispatch's rows use it.
@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_ua(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) l: vec3<u32>,
) {
    let n4 = p.n / 4u;
    let c4 = wg.y * UA_LANES + l.x;
    let row = wg.x * 8u;
    if (row >= p.a_rows || c4 >= n4) { return; }
    let r = mm_ua_block(c4, row, wg.z);
    let base = (wg.z * p.m + p.a_row0 + row) * n4 + c4;
    put4(base, r.acc0);
    ua_store4(base + n4, row + 1u, r.acc1);
    ua_store4(base + 2u * n4, row + 2u, r.acc2);
    ua_store4(base + 3u * n4, row + 3u, r.acc3);
    ua_store4(base + 4u * n4, row + 4u, r.acc4);
    ua_store4(base + 5u * n4, row + 5u, r.acc5);
    ua_store4(base + 6u * n4, row + 6u, r.acc6);
    ua_store4(base + 7u * n4, row + 7u, r.acc7);
}

// Stores one row of a block unless it is past the dispatch's rows.
fn ua_store4(at: u32, row: u32, v: vec4<f32>) {
    if (row < p.a_rows) { put4(at, v); }
}

@compute @workgroup_size(UA_LANES, 1, 1)
fn matmul_vec4_out_ua(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) l: vec3<u32>,
) {
    let c4 = wg.y * UA_LANES + l.x;
    let row = wg.x * 8u;
    if (row >= p.a_rows || c4 * 4u >= p.out_n) { return; }
    let r = mm_ua_block(c4, row, wg.z);
    let base = p.out_offset + wg.z * p.m * p.out_n;
    let at = p.a_row0 + row;
    let col = c4 * 4u;
    store_out(base, at, col, r.acc0);
    if (row + 1u < p.a_rows) { store_out(base, at + 1u, col, r.acc1); }
    if (row + 2u < p.a_rows) { store_out(base, at + 2u, col, r.acc2); }
    if (row + 3u < p.a_rows) { store_out(base, at + 3u, col, r.acc3); }
    if (row + 4u < p.a_rows) { store_out(base, at + 4u, col, r.acc4); }
    if (row + 5u < p.a_rows) { store_out(base, at + 5u, col, r.acc5); }
    if (row + 6u < p.a_rows) { store_out(base, at + 6u, col, r.acc6); }
    if (row + 7u < p.a_rows) { store_out(base, at + 7u, col, r.acc7); }
}
