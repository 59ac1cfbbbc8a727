// Elementwise kernels: unary functions, broadcast binary functions and `where`.
// One invocation per output element; inputs are read through per-input strides
// (0 on broadcast dimensions), or directly when `flat` is set (same shape, contiguous).

// Rust twin: EwParams in crates/device/src/params.rs
struct EwParams {
    n: u32,
    rank: u32,
    alpha: f32,
    flat: u32,
    shape: array<u32, MAX_RANK>,
    sa: array<u32, MAX_RANK>,
    sb: array<u32, MAX_RANK>,
    sc: array<u32, MAX_RANK>,
}

@group(0) @binding(0) var<storage, read> p: EwParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;


fn linear(g: vec3<u32>, w: vec3<u32>) -> u32 {
    return g.x + g.y * w.x * WORKGROUP;
}

// Offsets of output element i in the three inputs.
fn offsets(i: u32) -> vec3<u32> {
    if (p.flat != 0u) {
        return vec3<u32>(i, i, i);
    }
    var r = i;
    var o = vec3<u32>(0u, 0u, 0u);
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.shape[d];
        let q = quot(r, n);
        o += (r - q * n) * vec3<u32>(p.sa[d], p.sb[d], p.sc[d]);
        r = q;
    }
    return o;
}

// ---- unary (input `a` has the output's shape); the math is in common.wgsl ----

@compute @workgroup_size(WORKGROUP)
fn unary_neg(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_neg(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_exp(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_exp(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_log(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_log(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_sqrt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_sqrt(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_abs(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_abs(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_sign(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_sign(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_relu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_relu(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_sigmoid(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_sigmoid(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_tanh(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_tanh(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_erf(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_erf(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_gelu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_gelu(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_leaky_relu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_leaky_relu(a[i], p.alpha); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_isnan(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_isnan(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_isinf(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_isinf(a[i]); }
}

@compute @workgroup_size(WORKGROUP)
fn unary_isfinite(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = f_isfinite(a[i]); }
}

// ---- binary (a, b broadcast to the output) ----

@compute @workgroup_size(WORKGROUP)
fn binary_add(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_add(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_sub(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_sub(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_mul(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_mul(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_div(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_div(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_pow(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_pow(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_maximum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_maximum(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_minimum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_minimum(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_eq(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_eq(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_ne(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_ne(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_lt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_lt(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_le(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_le(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_gt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_gt(a[o.x], b[o.y]); }
}

@compute @workgroup_size(WORKGROUP)
fn binary_ge(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_ge(a[o.x], b[o.y]); }
}

// ---- where: a is the condition, b and c the two choices ----

@compute @workgroup_size(WORKGROUP)
fn where_select(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = f_where(a[o.x], b[o.y], c[o.z]); }
}
