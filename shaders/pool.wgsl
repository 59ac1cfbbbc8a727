// 2-D max and average pooling over NCHW tensors, and their gradients. Forward passes run one
// invocation per output element; gradients one per input element, visiting every window that
// covers it, so no atomics are needed. The launcher refuses windows whose loops would pass
// its bound (crates/device/src/family/pool.rs).

// Rust twin: PoolParams in crates/device/src/params.rs
struct PoolParams {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    include_pad: u32,
}

@group(0) @binding(0) var<storage, read> p: PoolParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;


// With PL_FIXED the launcher compiles a pipeline per geometry: every field of `p` but `total`
// comes from these constants (divisions by them compile to multiplications, window loops
// unroll).
override PL_FIXED: bool = false;
override PL_H: u32 = 1u;
override PL_W: u32 = 1u;
override PL_OH: u32 = 1u;
override PL_OW: u32 = 1u;
override PL_KH: u32 = 1u;
override PL_KW: u32 = 1u;
override PL_SH: u32 = 1u;
override PL_SW: u32 = 1u;
override PL_PH: u32 = 1u;
override PL_PW: u32 = 1u;
override PL_INCLUDE_PAD: u32 = 1u;
// i / d: by a compiled-in constant when fixed (a multiplication), else without integer
// division (common.wgsl's quot).
fn pdiv(i: u32, d: u32) -> u32 {
    if (PL_FIXED) {
        return i / d;
    }
    return quot(i, d);
}
fn geo_h() -> u32 { return select(p.h, PL_H, PL_FIXED); }
fn geo_w() -> u32 { return select(p.w, PL_W, PL_FIXED); }
fn geo_oh() -> u32 { return select(p.oh, PL_OH, PL_FIXED); }
fn geo_ow() -> u32 { return select(p.ow, PL_OW, PL_FIXED); }
fn geo_kh() -> u32 { return select(p.kh, PL_KH, PL_FIXED); }
fn geo_kw() -> u32 { return select(p.kw, PL_KW, PL_FIXED); }
fn geo_sh() -> u32 { return select(p.sh, PL_SH, PL_FIXED); }
fn geo_sw() -> u32 { return select(p.sw, PL_SW, PL_FIXED); }
fn geo_ph() -> u32 { return select(p.ph, PL_PH, PL_FIXED); }
fn geo_pw() -> u32 { return select(p.pw, PL_PW, PL_FIXED); }
fn geo_include_pad() -> u32 { return select(p.include_pad, PL_INCLUDE_PAD, PL_FIXED); }

// A window's valid rows [r.x, r.y) and columns [r.z, r.w), and its padded extent's area.
struct Window {
    r: vec4<i32>,
    full: f32,
}

fn window(oy: u32, ox: u32) -> Window {
    let y0 = i32(oy * geo_sh()) - i32(geo_ph());
    let x0 = i32(ox * geo_sw()) - i32(geo_pw());
    let y1 = min(y0 + i32(geo_kh()), i32(geo_h() + geo_ph()));
    let x1 = min(x0 + i32(geo_kw()), i32(geo_w() + geo_pw()));
    var win: Window;
    win.full = f32((y1 - y0) * (x1 - x0));
    win.r = vec4<i32>(max(y0, 0), min(y1, i32(geo_h())), max(x0, 0), min(x1, i32(geo_w())));
    return win;
}

fn divisor(win: Window) -> f32 {
    if (geo_include_pad() != 0u) {
        return win.full;
    }
    return f32((win.r.y - win.r.x) * (win.r.w - win.r.z));
}

// Whether value v replaces the best so far: a larger value, or the first NaN (which then
// stays: max pooling propagates NaN, as in PyTorch).
fn takes(v: f32, best: f32) -> bool {
    return !is_nan(best) && (v > best || is_nan(v));
}

// Plane offset of the first maximum (or first NaN) of a window in row-major order.
fn argmax(plane: u32, win: Window) -> u32 {
    var best = u32(win.r.x) * geo_w() + u32(win.r.z);
    var best_v = -inf();
    for (var y = win.r.x; y < win.r.y; y++) {
        for (var x = win.r.z; x < win.r.w; x++) {
            let at = u32(y) * geo_w() + u32(x);
            let v = a[plane + at];
            if (takes(v, best_v)) {
                best_v = v;
                best = at;
            }
        }
    }
    return best;
}

// Output windows covering input coordinate i along one axis: [first, last] (may be empty).
fn covering(i: u32, k: u32, s: u32, pad: u32, count: u32) -> vec2<i32> {
    let t = i32(i + pad);
    // (t - k + s) / s may be negative; clamping makes its rounding direction irrelevant.
    let first = i32(pdiv(u32(max(t - i32(k) + i32(s), 0)), s));
    let last = min(i32(pdiv(u32(t), s)), i32(count) - 1);
    return vec2<i32>(first, last);
}

// Output element i's (plane, row, column).
fn out_coords(i: u32) -> vec3<u32> {
    let row = pdiv(i, geo_ow());
    let pl = pdiv(row, geo_oh());
    return vec3<u32>(pl, row - pl * geo_oh(), i - row * geo_ow());
}

@compute @workgroup_size(WORKGROUP)
fn max_pool2d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let c = out_coords(i);
    let pl = c.x;
    let oy = c.y;
    let ox = c.z;
    let plane = pl * geo_h() * geo_w();
    out[i] = a[plane + argmax(plane, window(oy, ox))];
}

// 2×2 windows at stride 2 inside an input of even width: each window row is one aligned
// vec2, so a window costs two loads instead of four. The maximum is the first in row-major
// order among equals, as in max_pool2d.
@group(0) @binding(2) var<storage, read> a2: array<vec2<f32>>;

// Window i's top row (vec2 index `at`) and its two rows.
struct Pair {
    at: u32,
    top: vec2<f32>,
    bottom: vec2<f32>,
}

fn pair(i: u32) -> Pair {
    let c = out_coords(i);
    let pl = c.x;
    let oy = c.y;
    let ox = c.z;
    // In vec2 units: the plane, then row 2·oy, column pair ox.
    let at = (pl * geo_h() + 2u * oy) * (geo_w() / 2u) + ox;
    return Pair(at, a2[at], a2[at + geo_w() / 2u]);
}

@compute @workgroup_size(WORKGROUP)
fn max_pool2d_2x2(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let w = pair(i);
    let m = max(max(w.top.x, w.top.y), max(w.bottom.x, w.bottom.y));
    let any_nan = is_nan(w.top.x) || is_nan(w.top.y) || is_nan(w.bottom.x) || is_nan(w.bottom.y);
    out[i] = select(m, nan(), any_nan);
}

// Its gradient: the window's gradient goes to its first maximum (row-major), `out` zeroed
// first. a2 = x as vec2 rows, b = g, out = dx.
@compute @workgroup_size(WORKGROUP)
fn max_pool2d_grad_2x2(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let w = pair(i);
    let top = 2u * w.at;
    let bottom = top + geo_w();
    // Offsets in floats of the four candidates, checked in row-major order.
    var best = top;
    var best_v = w.top.x;
    if (takes(w.top.y, best_v)) { best = top + 1u; best_v = w.top.y; }
    if (takes(w.bottom.x, best_v)) { best = bottom; best_v = w.bottom.x; }
    if (takes(w.bottom.y, best_v)) { best = bottom + 1u; }
    out[best] = b[i];
}

// Disjoint windows (stride >= kernel): one invocation per window adds its gradient at its
// first maximum; no two windows share an input, so plain stores suffice. `out` must be zero
// first (the layout family's `fill`). a = x, b = g, out = dx; `total` counts windows here.
@compute @workgroup_size(WORKGROUP)
fn max_pool2d_grad_disjoint(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let c = out_coords(i);
    let pl = c.x;
    let oy = c.y;
    let ox = c.z;
    let plane = pl * geo_h() * geo_w();
    out[plane + argmax(plane, window(oy, ox))] = b[i];
}

// Overlapping windows, in two passes. First, each window's first maximum (its plane
// offset) into win_at; then one invocation per input element sums the gradients of the
// windows whose maximum it is: a loop over the windows covering it, not over their elements.
@group(0) @binding(1) var<storage, read_write> out_at: array<u32>;
@group(0) @binding(2) var<storage, read> win_at: array<u32>;

@compute @workgroup_size(WORKGROUP)
fn max_pool2d_argmax(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let c = out_coords(i);
    out_at[i] = argmax(c.x * geo_h() * geo_w(), window(c.y, c.z));
}

// win_at = the windows' maxima, b = g (pooled gradient), out = dx.
@compute @workgroup_size(WORKGROUP)
fn max_pool2d_grad(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let row = pdiv(i, geo_w());
    let x = i - row * geo_w();
    let pl = pdiv(row, geo_h());
    let y = row - pl * geo_h();
    let me = y * geo_w() + x;
    let ys = covering(y, geo_kh(), geo_sh(), geo_ph(), geo_oh());
    let xs = covering(x, geo_kw(), geo_sw(), geo_pw(), geo_ow());
    var acc = 0.0;
    for (var oy = ys.x; oy <= ys.y; oy++) {
        for (var ox = xs.x; ox <= xs.y; ox++) {
            let w = (pl * geo_oh() + u32(oy)) * geo_ow() + u32(ox);
            if (win_at[w] == me) {
                acc += b[w];
            }
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(WORKGROUP)
fn avg_pool2d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let c = out_coords(i);
    let pl = c.x;
    let oy = c.y;
    let ox = c.z;
    let plane = pl * geo_h() * geo_w();
    let win = window(oy, ox);
    var sum = 0.0;
    for (var y = win.r.x; y < win.r.y; y++) {
        for (var x = win.r.z; x < win.r.w; x++) {
            sum += a[plane + u32(y) * geo_w() + u32(x)];
        }
    }
    out[i] = sum / divisor(win);
}

// a = g (pooled gradient), out = dx.
@compute @workgroup_size(WORKGROUP)
fn avg_pool2d_grad(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.total) { return; }
    let row = pdiv(i, geo_w());
    let x = i - row * geo_w();
    let pl = pdiv(row, geo_h());
    let y = row - pl * geo_h();
    let ys = covering(y, geo_kh(), geo_sh(), geo_ph(), geo_oh());
    let xs = covering(x, geo_kw(), geo_sw(), geo_pw(), geo_ow());
    var acc = 0.0;
    for (var oy = ys.x; oy <= ys.y; oy++) {
        for (var ox = xs.x; ox <= xs.y; ox++) {
            let win = window(u32(oy), u32(ox));
            acc += a[(pl * geo_oh() + u32(oy)) * geo_ow() + u32(ox)] / divisor(win);
        }
    }
    out[i] = acc;
}
