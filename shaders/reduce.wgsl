// Reductions over any set of axes. One invocation per output element walks its group:
// `kept` is the input shape with reduced axes set to 1, `red` the shape with kept axes set to 1,
// both read with the input's own strides. When the reduced axes are the trailing ones
// (`tail` set) the group is the contiguous run [base, base + count). The group is walked in
// contiguous runs of extra[1] elements (the trailing reduced axes), so the index arithmetic
// is paid once per run.

// Rust twin: ShapeParams in crates/device/src/params.rs
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
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;

const WG: u32 = 64u;

fn base_offset(o: u32) -> u32 {
    var r = o;
    var off = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.kept[d];
        let q = quot(r, n);
        off += (r - q * n) * p.strides[d];
        r = q;
    }
    return off;
}

fn group_offset(k: u32) -> u32 {
    if (p.tail != 0u) {
        return k;
    }
    var r = k;
    var off = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.red[d];
        let q = quot(r, n);
        off += (r - q * n) * p.strides[d];
        r = q;
    }
    return off;
}

@compute @workgroup_size(64)
fn reduce_sum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let o = g.x + g.y * w.x * WG;
    if (o >= p.n) { return; }
    let base = base_offset(o);
    let count = p.count;
    let run = p.extra[1];
    var acc = 0.0;
    for (var k = 0u; k < count; k += run) {
        let start = base + group_offset(k);
        for (var t = 0u; t < run; t++) {
            acc += a[start + t];
        }
    }
    out[o] = acc;
}

@compute @workgroup_size(64)
fn reduce_max(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let o = g.x + g.y * w.x * WG;
    if (o >= p.n) { return; }
    let base = base_offset(o);
    let count = p.count;
    let run = p.extra[1];
    var acc = bitcast<f32>(0xff800000u);
    for (var k = 0u; k < count; k += run) {
        let start = base + group_offset(k);
        for (var t = 0u; t < run; t++) {
            acc = max(acc, a[start + t]);
        }
    }
    out[o] = acc;
}
