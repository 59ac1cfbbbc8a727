// Kernels that produce or consume u32 indices: gather (embedding rows), scatter-add (its
// gradient), one-hot, casts.
// Buffers are raw 32-bit words; f32 values are bitcast.

// Rust twin: IndexParams in crates/device/src/params.rs
struct IndexParams {
    n: u32,
    // The row length for `gather`, the classes for `one_hot`.
    count: u32,
    // The size indices must stay below: the table's rows, the classes.
    bound: u32,
    // The op's code in the index flags (crates/device/src/family/index.rs).
    code: u32,
    // The index positions one scatter-add dispatch walks.
    begin: u32,
    end: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> p: IndexParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
// Index flags, kept by the backend and read back with the next result: [count of indices
// out of range, the op's code, the first one recorded, its bound]. A bad index is an error
// there, never a row of zeros taken for data (crates/device/src/family/index.rs).
@group(0) @binding(2) var<storage, read_write> flags: array<atomic<u32>, 4>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<u32>;
@group(0) @binding(4) var<storage, read> y: array<u32>;


fn linear(g: vec3<u32>, w: vec3<u32>) -> u32 {
    return g.x + g.y * w.x * WORKGROUP;
}

// Whether index v is in range; if not, records it (the first reporter writes its details).
fn in_range(v: u32) -> bool {
    if (v < p.bound) {
        return true;
    }
    if (atomicAdd(&flags[0], 1u) == 0u) {
        atomicStore(&flags[1], p.code);
        atomicStore(&flags[2], v);
        atomicStore(&flags[3], p.bound);
    }
    return false;
}

// out[i, j] = table[idx[i], j]: x = table, y = indices.
@compute @workgroup_size(WORKGROUP)
fn gather(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let row = quot(i, p.count);
    let col = i - row * p.count;
    let v = y[row];
    if (!in_range(v)) {
        out[i] = 0u;
        return;
    }
    out[i] = x[v * p.count + col];
}

// Scatter-add walks one range of index positions, begin..end (the launcher keeps it within
// the loop bound), in two kernels: scatter_links finds, for each position, whether it is the
// first of its index in the range and the next position with the same index; scatter_add then
// has each first position walk its chain, adding the rows of x along it in position order, so
// the sums have the same bits every run. The output starts at zero and each range adds to it.
// Work is O(range² + positions·row), whatever the number of rows.
const NO_NEXT: u32 = 0x7fffffffu;

// scatter_links writes `out` (one word per position of the range: bit 31 set for a first
// position, then the next position or NO_NEXT) and reads the indices at binding 3.
@group(0) @binding(3) var<storage, read> ids: array<u32>;

@compute @workgroup_size(WORKGROUP)
fn scatter_links(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    let t = p.begin + i;
    if (t >= p.end) { return; }
    let v = ids[t];
    _ = in_range(v);
    var first = 1u;
    for (var s = p.begin; s < t; s++) {
        if (ids[s] == v) {
            first = 0u;
            break;
        }
    }
    var next = NO_NEXT;
    for (var s = t + 1u; s < p.end; s++) {
        if (ids[s] == v) {
            next = s;
            break;
        }
    }
    out[i] = (first << 31u) | next;
}

// scatter_add: out[y[t], j] += Σ x[t', j] over the chain from each first position t; the
// links at binding 2, x = rows, y = indices.
@group(0) @binding(2) var<storage, read> links: array<u32>;

@compute @workgroup_size(WORKGROUP)
fn scatter_add(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let k = quot(i, p.count);
    let col = i - k * p.count;
    let v = y[p.begin + k];
    if ((links[k] >> 31u) == 0u || v >= p.bound) { return; }
    var sum = 0.0;
    var t = p.begin + k;
    for (var step = p.begin; step < p.end; step++) {
        sum += bitcast<f32>(x[t * p.count + col]);
        let next = links[t - p.begin] & NO_NEXT;
        if (next == NO_NEXT) { break; }
        t = next;
    }
    let o = v * p.count + col;
    out[o] = bitcast<u32>(bitcast<f32>(out[o]) + sum);
}

// out[i, c] = 1.0 if labels[i] == c: x = labels.
@compute @workgroup_size(WORKGROUP)
fn one_hot(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let row = quot(i, p.count);
    let col = i - row * p.count;
    let label = x[row];
    // One check per row, by its first element.
    if (col == 0u) {
        _ = in_range(label);
    }
    out[i] = select(0u, bitcast<u32>(1.0), label == col);
}

@compute @workgroup_size(WORKGROUP)
fn cast_f32_u32(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let v = bitcast<f32>(src[i]);
    // Negatives and NaN become 0, like Rust's saturating `as`.
    out[i] = select(0u, u32(v), v > 0.0 && !is_nan(v));
}

@compute @workgroup_size(WORKGROUP)
fn cast_u32_f32(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(f32(src[i]));
}
