// Batched matrix product C[b] = A[b] · B[b], row-major, batch dimensions broadcast.
// Each invocation computes a 4×4 block of C held in four named vec4 accumulators (indexed
// arrays can spill to memory); edge blocks clamp their loads and guard their stores, so the
// interior needs no separate path.

// Rust twin: MatmulParams in crates/device/src/params.rs
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    batch: array<u32, 4>,
    // Element strides of A's and B's matrices along each output batch dimension (0 = broadcast).
    sa: array<u32, 4>,
    sb: array<u32, 4>,
    // Only read by the `_out` entry points: the output starts at element out_offset, its rows
    // hold out_n values (the first out_n of the n columns computed; out_n <= n), and with
    // accumulate != 0 the product is added to what the output holds.
    out_offset: u32,
    out_n: u32,
    accumulate: u32,
    // Nonzero: a is stored [k, m] (b: [n, k]) and read as its transpose. The scalar kernel
    // takes any combination; the vec4 ones below say which they serve.
    ta: u32,
    tb: u32,
    // `_ua` kernels: rows a_row0 .. a_row0 + a_rows of A sit in the uniform windows
    // ua0, ua1, …, window_rows rows in each (generated; see crates/device/src/shaders.rs).
    a_row0: u32,
    a_rows: u32,
    window_rows: u32,
    // `_ua` kernels: 0, or B packed as [panel, k, b_panel vec4 columns].
    b_panel: u32,
    // Split-K (see k_split): 0, or the k range of each split, whose partial products land
    // in the output as matrices z = split · batch_count + batch index.
    k_chunk: u32,
    batch_count: u32,
}

// Kernels store the product through `put` (element i of the output) and `put4` (vec4 i4),
// defined after this file: plain stores, or a generated epilogue that applies a fused group
// of elementwise ops first (crates/device/src/shaders.rs). The `_out` kernels take an
// epilogue only when they do not accumulate.

@group(0) @binding(0) var<storage, read> p: MatmulParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// Grid z of a product: (batch matrix, first k, end k). Without split-K every z is a matrix
// over the whole of k; with it, z also numbers the split, so that no invocation's loop over
// k passes the launcher's bound (crates/device/src/family/matmul.rs).
fn k_split(z: u32) -> vec3<u32> {
    if (p.k_chunk == 0u) {
        return vec3<u32>(z, 0u, p.k);
    }
    let s = z / p.batch_count;
    let k0 = s * p.k_chunk;
    return vec3<u32>(z - s * p.batch_count, k0, min(k0 + p.k_chunk, p.k));
}

@compute @workgroup_size(8, 8, 1)
fn matmul(@builtin(global_invocation_id) g: vec3<u32>) {
    let col = g.x * 4u;
    let row = g.y * 4u;
    if (row >= p.m || col >= p.n) { return; }

    let ks = k_split(g.z);
    let o = batch_offsets(ks.x);
    let a0 = o.x;
    let b0 = o.y;

    let k = p.k;
    // Element (i, t) of op(a) at i·a_row + t·a_col, (t, j) of op(b) at t·b_row + j·b_col.
    let a_row = select(k, 1u, p.ta != 0u);
    let a_col = select(1u, p.m, p.ta != 0u);
    let b_row = select(p.n, 1u, p.tb != 0u);
    let b_col = select(1u, k, p.tb != 0u);
    // Rows and columns past the edge are clamped; their results are never stored.
    let ra0 = a0 + min(row, p.m - 1u) * a_row;
    let ra1 = a0 + min(row + 1u, p.m - 1u) * a_row;
    let ra2 = a0 + min(row + 2u, p.m - 1u) * a_row;
    let ra3 = a0 + min(row + 3u, p.m - 1u) * a_row;
    let c0 = min(col, p.n - 1u) * b_col;
    let c1 = min(col + 1u, p.n - 1u) * b_col;
    let c2 = min(col + 2u, p.n - 1u) * b_col;
    let c3 = min(col + 3u, p.n - 1u) * b_col;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = ks.y; t < ks.z; t++) {
        let rb = b0 + t * b_row;
        let bv = vec4<f32>(b[rb + c0], b[rb + c1], b[rb + c2], b[rb + c3]);
        let ta = t * a_col;
        acc0 += a[ra0 + ta] * bv;
        acc1 += a[ra1 + ta] * bv;
        acc2 += a[ra2 + ta] * bv;
        acc3 += a[ra3 + ta] * bv;
    }

    let base = g.z * p.m * p.n;
    store_row(base, row, col, acc0);
    store_row(base, row + 1u, col, acc1);
    store_row(base, row + 2u, col, acc2);
    store_row(base, row + 3u, col, acc3);
}

fn store_row(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    let o = base + row * p.n + col;
    put(o, v.x);
    if (col + 1u < p.n) { put(o + 1u, v.y); }
    if (col + 2u < p.n) { put(o + 2u, v.z); }
    if (col + 3u < p.n) { put(o + 3u, v.w); }
}

// Variant for k and n multiples of 4: A and B are read as vec4 rows (a4: 4 consecutive k of
// one row, b4: 4 consecutive columns of one row), so each loop step does 8 vector loads for
// 64 multiply-adds. The same buffers as above, viewed as vec4.
@group(0) @binding(1) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;

// Two workgroup shapes over the same body: 8×8 blocks (32 rows × 32 columns) keep B's rows
// in cache for large matrices; one row of 64 blocks (4 rows × 256 columns) is faster while B
// fits in cache (docs/performance.md has the measurements).
@compute @workgroup_size(8, 8, 1)
fn matmul_vec4(@builtin(global_invocation_id) g: vec3<u32>) {
    mm_vec4(g);
}

@compute @workgroup_size(WORKGROUP, 1, 1)
fn matmul_vec4_wide(@builtin(global_invocation_id) g: vec3<u32>) {
    mm_vec4(g);
}

// A 4×4 block of C: acc0..acc3 are rows row..row+3, each 4 consecutive columns.
struct Block {
    acc0: vec4<f32>,
    acc1: vec4<f32>,
    acc2: vec4<f32>,
    acc3: vec4<f32>,
}

fn mm_vec4(g: vec3<u32>) {
    let n4 = p.n / 4u;
    let c4 = g.x;
    let row = g.y * 4u;
    if (row >= p.m || c4 >= n4) { return; }
    let r = mm_vec4_block(g);
    let base = g.z * p.m * n4 + row * n4 + c4;
    put4(base, r.acc0);
    if (row + 1u < p.m) { put4(base + n4, r.acc1); }
    if (row + 2u < p.m) { put4(base + 2u * n4, r.acc2); }
    if (row + 3u < p.m) { put4(base + 3u * n4, r.acc3); }
}

fn mm_vec4_block(g: vec3<u32>) -> Block {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let c4 = g.x;
    let row = g.y * 4u;

    let ks = k_split(g.z);
    let o = batch_offsets(ks.x);
    let a0 = o.x;
    let b0 = o.y;
    // Offsets in vec4 units; k and n are multiples of 4, so every matrix starts aligned.
    let ra0 = (a0 + min(row, p.m - 1u) * p.k) / 4u;
    let ra1 = (a0 + min(row + 1u, p.m - 1u) * p.k) / 4u;
    let ra2 = (a0 + min(row + 2u, p.m - 1u) * p.k) / 4u;
    let ra3 = (a0 + min(row + 3u, p.m - 1u) * p.k) / 4u;
    var rb = b0 / 4u + c4 + ks.y * n4;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = ks.y / 4u; t < ks.z / 4u; t++) {
        let b_0 = b4[rb];
        let b_1 = b4[rb + n4];
        let b_2 = b4[rb + 2u * n4];
        let b_3 = b4[rb + 3u * n4];
        rb += 4u * n4;
        let x0 = a4[ra0 + t];
        acc0 += x0.x * b_0 + x0.y * b_1 + x0.z * b_2 + x0.w * b_3;
        let x1 = a4[ra1 + t];
        acc1 += x1.x * b_0 + x1.y * b_1 + x1.z * b_2 + x1.w * b_3;
        let x2 = a4[ra2 + t];
        acc2 += x2.x * b_0 + x2.y * b_1 + x2.z * b_2 + x2.w * b_3;
        let x3 = a4[ra3 + t];
        acc3 += x3.x * b_0 + x3.y * b_1 + x3.z * b_2 + x3.w * b_3;
    }
    return Block(acc0, acc1, acc2, acc3);
}

// The vec4 product written through scalar stores, for outputs whose rows are not whole vec4s
// (convolutions padded to 4 pixels), that start at an offset or that accumulate.
@compute @workgroup_size(8, 8, 1)
fn matmul_vec4_out(@builtin(global_invocation_id) g: vec3<u32>) {
    mm_vec4_out(g);
}

@compute @workgroup_size(WORKGROUP, 1, 1)
fn matmul_vec4_out_wide(@builtin(global_invocation_id) g: vec3<u32>) {
    mm_vec4_out(g);
}

fn mm_vec4_out(g: vec3<u32>) {
    let col = g.x * 4u;
    let row = g.y * 4u;
    if (row >= p.m || col >= p.out_n) { return; }
    let r = mm_vec4_block(g);
    let base = p.out_offset + g.z * p.m * p.out_n;
    store_out(base, row, col, r.acc0);
    store_out(base, row + 1u, col, r.acc1);
    store_out(base, row + 2u, col, r.acc2);
    store_out(base, row + 3u, col, r.acc3);
}

fn store_out(base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    let o = base + row * p.out_n + col;
    var w = v;
    if (p.accumulate != 0u) {
        let last = min(col + 3u, p.out_n - 1u) - col;
        w += vec4<f32>(out[o], out[o + min(1u, last)], out[o + min(2u, last)], out[o + last]);
    }
    put(o, w.x);
    if (col + 1u < p.out_n) { put(o + 1u, w.y); }
    if (col + 2u < p.out_n) { put(o + 2u, w.z); }
    if (col + 3u < p.out_n) { put(o + 3u, w.w); }
}

// Variant for GPUs (k and n multiples of 4): a workgroup of 16×16 invocations computes a
// 64×64 block of C, staging 64×16 of A and 16×64 of B in workgroup memory per step of 16
// along k, so each value loaded from memory is used by 16 invocations. Each invocation holds
// a 4×4 block in four vec4 accumulators. Loads past an edge are clamped and zeroed, stores
// guarded, so edge blocks take the same path as interior ones. On CPU adapters the barriers
// cost more than the reuse saves (docs/performance.md), so those use `matmul_vec4`.
var<workgroup> tile_a: array<vec4<f32>, 256>;
var<workgroup> tile_b: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn matmul_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let local = lid.y * 16u + lid.x;
    let row0 = wg.y * 64u;
    let col0 = wg.x * 16u;

    let ks = k_split(wg.z);
    var r = ks.x;
    var a0 = 0u;
    var b0 = 0u;
    for (var d = i32(p.batch_rank) - 1; d >= 0; d--) {
        let n = p.batch[d];
        let i = r % n;
        r = r / n;
        a0 += i * p.sa[d];
        b0 += i * p.sb[d];
    }
    a0 = a0 / 4u;
    b0 = b0 / 4u;

    // This invocation's share of each staged tile: one vec4 of A (row la_row, k quad
    // la_k) and one of B (k row lb_k, column quad lb_c).
    let la_row = local / 4u;
    let la_k = local % 4u;
    let a_row = min(row0 + la_row, p.m - 1u);
    let lb_k = local / 16u;
    let lb_c = min(col0 + local % 16u, n4 - 1u);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let hi4 = ks.z / 4u;
    for (var t = ks.y / 4u; t < hi4; t += 4u) {
        let ka = t + la_k;
        tile_a[local] = select(vec4<f32>(0.0), a4[a0 + a_row * k4 + min(ka, hi4 - 1u)], ka < hi4);
        let kb = t * 4u + lb_k;
        tile_b[local] = select(vec4<f32>(0.0), b4[b0 + min(kb, ks.z - 1u) * n4 + lb_c], kb < ks.z);
        workgroupBarrier();
        for (var q = 0u; q < 4u; q++) {
            let b_0 = tile_b[(q * 4u) * 16u + lid.x];
            let b_1 = tile_b[(q * 4u + 1u) * 16u + lid.x];
            let b_2 = tile_b[(q * 4u + 2u) * 16u + lid.x];
            let b_3 = tile_b[(q * 4u + 3u) * 16u + lid.x];
            let x0 = tile_a[(lid.y * 4u) * 4u + q];
            acc0 += x0.x * b_0 + x0.y * b_1 + x0.z * b_2 + x0.w * b_3;
            let x1 = tile_a[(lid.y * 4u + 1u) * 4u + q];
            acc1 += x1.x * b_0 + x1.y * b_1 + x1.z * b_2 + x1.w * b_3;
            let x2 = tile_a[(lid.y * 4u + 2u) * 4u + q];
            acc2 += x2.x * b_0 + x2.y * b_1 + x2.z * b_2 + x2.w * b_3;
            let x3 = tile_a[(lid.y * 4u + 3u) * 4u + q];
            acc3 += x3.x * b_0 + x3.y * b_1 + x3.z * b_2 + x3.w * b_3;
        }
        workgroupBarrier();
    }

    let c4 = col0 + lid.x;
    let row = row0 + lid.y * 4u;
    if (c4 >= n4) { return; }
    let base = wg.z * p.m * n4 + row * n4 + c4;
    if (row < p.m) { put4(base, acc0); }
    if (row + 1u < p.m) { put4(base + n4, acc1); }
    if (row + 2u < p.m) { put4(base + 2u * n4, acc2); }
    if (row + 3u < p.m) { put4(base + 3u * n4, acc3); }
}

// Variant for GPUs with more work per invocation (k and n multiples of 4): a workgroup of
// 16×16 invocations computes a 128×128 block of C, staging 128×8 of A and 8×128 of B in
// workgroup memory (8 KiB) per step of 8 along k, so each value loaded from memory is used
// by 16 (B) or 32 (A) invocations. Each invocation holds an 8×8 block: 8 rows of two vec4
// columns, 16 columns apart so that neighbouring invocations read neighbouring vec4s of B.
// Loads past an edge are clamped and zeroed, stores guarded.
var<workgroup> tile_a8: array<vec4<f32>, 256>;
var<workgroup> tile_b8: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn matmul_tiled_128(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let local = lid.y * 16u + lid.x;
    let row0 = wg.y * 128u;
    let col0 = wg.x * 32u;
    let ks = k_split(wg.z);
    let offsets = batch_offsets(ks.x);
    let a0 = offsets.x / 4u;
    let b0 = offsets.y / 4u;
    // This invocation's share of each staged tile: one vec4 of A (row la_row, k quad la_k)
    // and one of B (k row lb_k, column quad lb_c).
    let la_row = local / 2u;
    let la_k = local % 2u;
    let a_row = min(row0 + la_row, p.m - 1u);
    let lb_k = local / 32u;
    let lb_c = min(col0 + local % 32u, n4 - 1u);

    var c0a = vec4<f32>(0.0);
    var c0b = vec4<f32>(0.0);
    var c1a = vec4<f32>(0.0);
    var c1b = vec4<f32>(0.0);
    var c2a = vec4<f32>(0.0);
    var c2b = vec4<f32>(0.0);
    var c3a = vec4<f32>(0.0);
    var c3b = vec4<f32>(0.0);
    var c4a = vec4<f32>(0.0);
    var c4b = vec4<f32>(0.0);
    var c5a = vec4<f32>(0.0);
    var c5b = vec4<f32>(0.0);
    var c6a = vec4<f32>(0.0);
    var c6b = vec4<f32>(0.0);
    var c7a = vec4<f32>(0.0);
    var c7b = vec4<f32>(0.0);
    let hi4 = ks.z / 4u;
    for (var t = ks.y / 4u; t < hi4; t += 2u) {
        let ka = t + la_k;
        tile_a8[local] = select(vec4<f32>(0.0), a4[a0 + a_row * k4 + min(ka, hi4 - 1u)], ka < hi4);
        let kb = t * 4u + lb_k;
        tile_b8[local] = select(vec4<f32>(0.0), b4[b0 + min(kb, ks.z - 1u) * n4 + lb_c], kb < ks.z);
        workgroupBarrier();
        for (var q = 0u; q < 2u; q++) {
            let ba0 = tile_b8[(q * 4u) * 32u + lid.x];
            let ba1 = tile_b8[(q * 4u + 1u) * 32u + lid.x];
            let ba2 = tile_b8[(q * 4u + 2u) * 32u + lid.x];
            let ba3 = tile_b8[(q * 4u + 3u) * 32u + lid.x];
            let bb0 = tile_b8[(q * 4u) * 32u + lid.x + 16u];
            let bb1 = tile_b8[(q * 4u + 1u) * 32u + lid.x + 16u];
            let bb2 = tile_b8[(q * 4u + 2u) * 32u + lid.x + 16u];
            let bb3 = tile_b8[(q * 4u + 3u) * 32u + lid.x + 16u];
            let x0 = tile_a8[(lid.y * 8u + 0u) * 2u + q];
            c0a += x0.x * ba0 + x0.y * ba1 + x0.z * ba2 + x0.w * ba3;
            c0b += x0.x * bb0 + x0.y * bb1 + x0.z * bb2 + x0.w * bb3;
            let x1 = tile_a8[(lid.y * 8u + 1u) * 2u + q];
            c1a += x1.x * ba0 + x1.y * ba1 + x1.z * ba2 + x1.w * ba3;
            c1b += x1.x * bb0 + x1.y * bb1 + x1.z * bb2 + x1.w * bb3;
            let x2 = tile_a8[(lid.y * 8u + 2u) * 2u + q];
            c2a += x2.x * ba0 + x2.y * ba1 + x2.z * ba2 + x2.w * ba3;
            c2b += x2.x * bb0 + x2.y * bb1 + x2.z * bb2 + x2.w * bb3;
            let x3 = tile_a8[(lid.y * 8u + 3u) * 2u + q];
            c3a += x3.x * ba0 + x3.y * ba1 + x3.z * ba2 + x3.w * ba3;
            c3b += x3.x * bb0 + x3.y * bb1 + x3.z * bb2 + x3.w * bb3;
            let x4 = tile_a8[(lid.y * 8u + 4u) * 2u + q];
            c4a += x4.x * ba0 + x4.y * ba1 + x4.z * ba2 + x4.w * ba3;
            c4b += x4.x * bb0 + x4.y * bb1 + x4.z * bb2 + x4.w * bb3;
            let x5 = tile_a8[(lid.y * 8u + 5u) * 2u + q];
            c5a += x5.x * ba0 + x5.y * ba1 + x5.z * ba2 + x5.w * ba3;
            c5b += x5.x * bb0 + x5.y * bb1 + x5.z * bb2 + x5.w * bb3;
            let x6 = tile_a8[(lid.y * 8u + 6u) * 2u + q];
            c6a += x6.x * ba0 + x6.y * ba1 + x6.z * ba2 + x6.w * ba3;
            c6b += x6.x * bb0 + x6.y * bb1 + x6.z * bb2 + x6.w * bb3;
            let x7 = tile_a8[(lid.y * 8u + 7u) * 2u + q];
            c7a += x7.x * ba0 + x7.y * ba1 + x7.z * ba2 + x7.w * ba3;
            c7b += x7.x * bb0 + x7.y * bb1 + x7.z * bb2 + x7.w * bb3;
        }
        workgroupBarrier();
    }
    let ca = col0 + lid.x;
    let cb = ca + 16u;
    let row = row0 + lid.y * 8u;
    let base = wg.z * p.m * n4 + row * n4;
    if (row + 0u < p.m) { tiled_store(base + 0u * n4, ca, cb, n4, c0a, c0b); }
    if (row + 1u < p.m) { tiled_store(base + 1u * n4, ca, cb, n4, c1a, c1b); }
    if (row + 2u < p.m) { tiled_store(base + 2u * n4, ca, cb, n4, c2a, c2b); }
    if (row + 3u < p.m) { tiled_store(base + 3u * n4, ca, cb, n4, c3a, c3b); }
    if (row + 4u < p.m) { tiled_store(base + 4u * n4, ca, cb, n4, c4a, c4b); }
    if (row + 5u < p.m) { tiled_store(base + 5u * n4, ca, cb, n4, c5a, c5b); }
    if (row + 6u < p.m) { tiled_store(base + 6u * n4, ca, cb, n4, c6a, c6b); }
    if (row + 7u < p.m) { tiled_store(base + 7u * n4, ca, cb, n4, c7a, c7b); }
}

// Stores vec4 columns ca and cb of one row (starting at `at`), those inside the matrix.
fn tiled_store(at: u32, ca: u32, cb: u32, n4: u32, va: vec4<f32>, vb: vec4<f32>) {
    if (ca < n4) { put4(at + ca, va); }
    if (cb < n4) { put4(at + cb, vb); }
}

// Batch offsets (in elements) of a and b for output matrix z.
fn batch_offsets(z: u32) -> vec2<u32> {
    var r = z;
    var o = vec2<u32>(0u, 0u);
    for (var d = i32(p.batch_rank) - 1; d >= 0; d--) {
        let n = p.batch[d];
        let i = r % n;
        r = r / n;
        o += i * vec2<u32>(p.sa[d], p.sb[d]);
    }
    return o;
}

// C = Aᵀ·B with A stored [k, m] (m and n multiples of 4): one vec4 of A gives 4 rows' values
// at one t, one vec4 of B 4 columns', so each step is 2 loads for 16 multiply-adds.
@compute @workgroup_size(8, 8, 1)
fn matmul_tn_vec4(@builtin(global_invocation_id) g: vec3<u32>) {
    let n4 = p.n / 4u;
    let m4 = p.m / 4u;
    let c4 = g.x;
    let r4 = g.y;
    if (r4 >= m4 || c4 >= n4) { return; }
    let ks = k_split(g.z);
    let o = batch_offsets(ks.x) / 4u;
    var ra = o.x + r4 + ks.y * m4;
    var rb = o.y + c4 + ks.y * n4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = ks.y; t < ks.z; t++) {
        let x = a4[ra];
        let y = b4[rb];
        ra += m4;
        rb += n4;
        acc0 += x.x * y;
        acc1 += x.y * y;
        acc2 += x.z * y;
        acc3 += x.w * y;
    }
    let base = g.z * p.m * n4 + r4 * 4u * n4 + c4;
    put4(base, acc0);
    put4(base + n4, acc1);
    put4(base + 2u * n4, acc2);
    put4(base + 3u * n4, acc3);
}

// C = A·Bᵀ with B stored [n, k] (k and n multiples of 4): rows of both are read as vec4
// along k, and each of the 16 outputs is a running dot product.
@compute @workgroup_size(8, 8, 1)
fn matmul_nt_vec4(@builtin(global_invocation_id) g: vec3<u32>) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let c4 = g.x;
    let row = g.y * 4u;
    if (row >= p.m || c4 >= n4) { return; }
    let ks = k_split(g.z);
    let o = batch_offsets(ks.x) / 4u;
    let ra0 = o.x + min(row, p.m - 1u) * k4;
    let ra1 = o.x + min(row + 1u, p.m - 1u) * k4;
    let ra2 = o.x + min(row + 2u, p.m - 1u) * k4;
    let ra3 = o.x + min(row + 3u, p.m - 1u) * k4;
    let rb0 = o.y + (c4 * 4u) * k4;
    let rb1 = rb0 + k4;
    let rb2 = rb1 + k4;
    let rb3 = rb2 + k4;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = ks.y / 4u; t < ks.z / 4u; t++) {
        let b_0 = b4[rb0 + t];
        let b_1 = b4[rb1 + t];
        let b_2 = b4[rb2 + t];
        let b_3 = b4[rb3 + t];
        let x0 = a4[ra0 + t];
        acc0 += vec4<f32>(dot(x0, b_0), dot(x0, b_1), dot(x0, b_2), dot(x0, b_3));
        let x1 = a4[ra1 + t];
        acc1 += vec4<f32>(dot(x1, b_0), dot(x1, b_1), dot(x1, b_2), dot(x1, b_3));
        let x2 = a4[ra2 + t];
        acc2 += vec4<f32>(dot(x2, b_0), dot(x2, b_1), dot(x2, b_2), dot(x2, b_3));
        let x3 = a4[ra3 + t];
        acc3 += vec4<f32>(dot(x3, b_0), dot(x3, b_1), dot(x3, b_2), dot(x3, b_3));
    }
    let base = g.z * p.m * n4 + row * n4 + c4;
    put4(base, acc0);
    if (row + 1u < p.m) { put4(base + n4, acc1); }
    if (row + 2u < p.m) { put4(base + 2u * n4, acc2); }
    if (row + 3u < p.m) { put4(base + 3u * n4, acc3); }
}

// Split-K's second pass: output element (z, row, col < out_n) is the sum, in split order, of
// the splits' partial products in `a` (matrices [split, z] of m × n, as the kernels above
// write them with k_chunk set), stored as the `_out` kernels store (offset, row length,
// accumulate). An epilogue is applied by a copy after it (it binds no operand B, after which
// epilogues bind their buffers). The launcher keeps the splits within its loop bound.
@compute @workgroup_size(WORKGROUP)
fn matmul_sum_splits(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = g.x + g.y * w.x * WORKGROUP;
    let per = p.m * p.out_n;
    if (i >= p.batch_count * per) { return; }
    let z = i / per;
    let rc = i - z * per;
    let row = rc / p.out_n;
    let col = rc - row * p.out_n;
    let splits = (p.k + p.k_chunk - 1u) / p.k_chunk;
    let stride = p.batch_count * p.m * p.n;
    var at = (z * p.m + row) * p.n + col;
    var v = 0.0;
    for (var s = 0u; s < splits; s++) {
        v += a[at];
        at += stride;
    }
    let o = p.out_offset + (z * p.m + row) * p.out_n + col;
    if (p.accumulate != 0u) {
        v += out[o];
    }
    out[o] = v;
}
