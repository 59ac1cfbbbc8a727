// Elementwise kernels: unary functions, broadcast binary functions and `where`.
// One invocation per output element; inputs are read through per-input strides
// (0 on broadcast dimensions), or directly when `flat` is set (same shape, contiguous).

// Rust twin: EwParams in crates/device/src/launch.rs
struct EwParams {
    n: u32,
    rank: u32,
    alpha: f32,
    flat: u32,
    shape: array<u32, 6>,
    sa: array<u32, 6>,
    sb: array<u32, 6>,
    sc: array<u32, 6>,
}

@group(0) @binding(0) var<storage, read> p: EwParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> c: array<f32>;

const WG: u32 = 64u;

fn linear(g: vec3<u32>, w: vec3<u32>) -> u32 {
    return g.x + g.y * w.x * WG;
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

fn inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7.
fn erf_f(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * exp(-x * x);
    return select(-y, y, x >= 0.0);
}

// x^y with C's rules for negative bases (integer exponents only) and zero.
fn pow_f(x: f32, y: f32) -> f32 {
    if (y == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        return select(0.0, inf(), y < 0.0);
    }
    let m = exp2(y * log2(abs(x)));
    if (x > 0.0) {
        return m;
    }
    if (fract(y) != 0.0) {
        return nan();
    }
    return select(m, -m, abs(y) % 2.0 == 1.0);
}

// ---- unary (input `a` has the output's shape) ----

@compute @workgroup_size(64)
fn unary_neg(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = -a[i]; }
}

@compute @workgroup_size(64)
fn unary_exp(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = exp(a[i]); }
}

@compute @workgroup_size(64)
fn unary_log(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        let x = a[i];
        // log of 0 is -inf and of a negative number NaN, as on the CPU.
        out[i] = select(select(log(x), -inf(), x == 0.0), nan(), x < 0.0);
    }
}

@compute @workgroup_size(64)
fn unary_sqrt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        let x = a[i];
        out[i] = select(sqrt(x), nan(), x < 0.0);
    }
}

@compute @workgroup_size(64)
fn unary_abs(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = abs(a[i]); }
}

@compute @workgroup_size(64)
fn unary_sign(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = sign(a[i]); }
}

@compute @workgroup_size(64)
fn unary_relu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = max(a[i], 0.0); }
}

@compute @workgroup_size(64)
fn unary_sigmoid(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        // Stable for large |x|: only exp of a non-positive number is taken.
        let x = a[i];
        let e = exp(-abs(x));
        let s = 1.0 / (1.0 + e);
        out[i] = select(e * s, s, x >= 0.0);
    }
}

@compute @workgroup_size(64)
fn unary_tanh(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        let x = a[i];
        let t = exp(-2.0 * abs(x));
        let y = (1.0 - t) / (1.0 + t);
        out[i] = select(-y, y, x >= 0.0);
    }
}

@compute @workgroup_size(64)
fn unary_erf(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { out[i] = erf_f(a[i]); }
}

@compute @workgroup_size(64)
fn unary_gelu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        let x = a[i];
        out[i] = 0.5 * x * (1.0 + erf_f(x * 0.70710678118654752));
    }
}

@compute @workgroup_size(64)
fn unary_leaky_relu(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) {
        let x = a[i];
        out[i] = select(p.alpha * x, x, x > 0.0);
    }
}

// ---- binary (a, b broadcast to the output) ----

@compute @workgroup_size(64)
fn binary_add(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = a[o.x] + b[o.y]; }
}

@compute @workgroup_size(64)
fn binary_sub(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = a[o.x] - b[o.y]; }
}

@compute @workgroup_size(64)
fn binary_mul(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = a[o.x] * b[o.y]; }
}

@compute @workgroup_size(64)
fn binary_div(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = a[o.x] / b[o.y]; }
}

@compute @workgroup_size(64)
fn binary_pow(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = pow_f(a[o.x], b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_maximum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = max(a[o.x], b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_minimum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = min(a[o.x], b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_eq(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] == b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_ne(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] != b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_lt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] < b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_le(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] <= b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_gt(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] > b[o.y]); }
}

@compute @workgroup_size(64)
fn binary_ge(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(0.0, 1.0, a[o.x] >= b[o.y]); }
}

// ---- where: a is the condition, b and c the two choices ----

@compute @workgroup_size(64)
fn where_select(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) w: vec3<u32>) {
    let i = linear(g, w);
    if (i < p.n) { let o = offsets(i); out[i] = select(c[o.z], b[o.y], a[o.x] != 0.0); }
}
