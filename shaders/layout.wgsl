// Layout kernels on raw 32-bit words (f32 or u32 alike): a strided copy that implements
// permute, expand, slice, pad and concat, and a fill.

// Rust twin: CopyParams in crates/device/src/params.rs
struct CopyParams {
    n: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    value: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    shape: array<u32, MAX_RANK>,
    src_strides: array<u32, MAX_RANK>,
    dst_strides: array<u32, MAX_RANK>,
}

@group(0) @binding(0) var<storage, read> p: CopyParams;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;


// Element i of the copied view: dst[dst_offset + i·dst_strides] = src[src_offset + i·src_strides].
@compute @workgroup_size(WORKGROUP)
fn copy(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = g.x + g.y * w.x * WORKGROUP;
    if (i >= p.n) { return; }
    var r = i;
    var s = p.src_offset;
    var t = p.dst_offset;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.shape[d];
        let q = quot(r, n);
        let k = r - q * n;
        r = q;
        s += k * p.src_strides[d];
        t += k * p.dst_strides[d];
    }
    out[t] = src[s];
}

@compute @workgroup_size(WORKGROUP)
fn fill(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = g.x + g.y * w.x * WORKGROUP;
    if (i < p.n) { out[p.dst_offset + i] = p.value; }
}
