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

// Stores one row of a block plainly (`ua_store`) or through the offset and row length
// (`ua_store_out`).
fn ua_store(z: u32, row: u32, c4: u32, v: vec4<f32>) {
    put4((z * p.m + p.a_row0 + row) * (p.n / 4u) + c4, v);
}

fn ua_store_out(z: u32, row: u32, c4: u32, v: vec4<f32>) {
    store_out(p.out_offset + z * p.m * p.out_n, p.a_row0 + row, c4 * 4u, v);
}

// Written out once per block height `{rows}` and variant `{v}`: empty (B [k, n], plain
// stores), `_out` (stores through `store_out`) or `_nt` (B [n, k]); `{cols}` is the row
// length stored, `{b_next}` the vec4s B's reads move by per step of 4 along k, `{product}`
// the step's contribution to a row's four outputs. The lines between `//@each-row` and
// `//@end` are written out once per row `{r}` of the block.
//@rows
fn ua_rows{rows}{v}(wg: vec3<u32>, lane: u32) {
    let c4 = wg.y * UA_LANES + lane;
    let row = wg.x * {rows}u;
    if (row >= p.a_rows || c4 * 4u >= {cols}) { return; }
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
                let b_0 = b4[rb];
                let b_1 = b4[rb + b_row];
                let b_2 = b4[rb + 2u * b_row];
                let b_3 = b4[rb + 3u * b_row];
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
