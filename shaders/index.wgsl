// Kernels that produce or consume u32 indices: argmax, gather (embedding rows), one-hot, casts.
// Buffers are raw 32-bit words; f32 values are bitcast.

// Rust twin: ShapeParams in crates/device/src/params.rs (shared with reduce.wgsl)
struct ShapeParams {
    n: u32,
    count: u32,
    rank: u32,
    tail: u32,
    kept: array<u32, 6>,
    red: array<u32, 6>,
    strides: array<u32, 6>,
    extra: array<u32, 6>,
}

@group(0) @binding(0) var<storage, read> p: ShapeParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<u32>;
@group(0) @binding(3) var<storage, read> y: array<u32>;

const WG: u32 = 64u;

fn linear(g: vec3<u32>, w: vec3<u32>) -> u32 {
    return g.x + g.y * w.x * WG;
}

// argmax over one axis: `kept` is the input shape with that axis set to 1, `extra[0]` the
// axis' stride. The first maximum wins on ties.
@compute @workgroup_size(64)
fn argmax(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let o = linear(g, w);
    if (o >= p.n) { return; }
    var r = o;
    var base = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.kept[d];
        base += (r % n) * p.strides[d];
        r = r / n;
    }
    var best = 0u;
    var best_v = bitcast<f32>(0xff800000u);
    for (var k = 0u; k < p.count; k++) {
        let v = bitcast<f32>(x[base + k * p.extra[0]]);
        if (v > best_v) {
            best_v = v;
            best = k;
        }
    }
    out[o] = best;
}

// out[i, j] = table[idx[i], j] with `count` = row length and `extra[0]` = rows in the table.
@compute @workgroup_size(64)
fn gather(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let row = quot(i, p.count);
    let col = i - row * p.count;
    let v = y[row];
    out[i] = select(0u, x[v * p.count + col], v < p.extra[0]);
}

// out[i, c] = 1.0 if labels[i] == c, with `count` = classes.
@compute @workgroup_size(64)
fn one_hot(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let row = quot(i, p.count);
    out[i] = select(0u, bitcast<u32>(1.0), x[row] == i - row * p.count);
}

@compute @workgroup_size(64)
fn cast_f32_u32(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    let v = bitcast<f32>(x[i]);
    // Negatives and NaN become 0, like Rust's saturating `as`.
    out[i] = select(0u, u32(v), v > 0.0);
}

@compute @workgroup_size(64)
fn cast_u32_f32(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i >= p.n) { return; }
    out[i] = bitcast<u32>(f32(x[i]));
}
