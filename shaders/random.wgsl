// Counter-based random numbers: every element is a hash of (seed, index), so a seed gives the
// same bits on every backend and in any dispatch order. Twin of `uniform` in crates/cpu.

// Rust twin: RandParams in crates/device/src/params.rs
struct RandParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> p: RandParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

// A bijective 32-bit mixing function.
fn hash32(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

@compute @workgroup_size(WORKGROUP)
fn rand_uniform(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = g.x + g.y * w.x * WORKGROUP;
    if (i >= p.n) { return; }
    let key = hash32(p.seed_lo ^ hash32(p.seed_hi ^ 0x68bc21ebu));
    let r = hash32(hash32(i ^ key) + key);
    out[i] = f32(r >> 8u) * (1.0 / 16777216.0);
}
