// 2-D max and average pooling over NCHW tensors, and their gradients. Forward passes run one
// invocation per output element; gradients one per input element, visiting every window that
// covers it, so no atomics are needed.

// Rust twin: PoolParams in crates/device/src/launch.rs
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

const WG: u32 = 64u;

// A window's valid rows [r.x, r.y) and columns [r.z, r.w), and its padded extent's area.
struct Window {
    r: vec4<i32>,
    full: f32,
}

fn window(oy: u32, ox: u32) -> Window {
    let y0 = i32(oy * p.sh) - i32(p.ph);
    let x0 = i32(ox * p.sw) - i32(p.pw);
    let y1 = min(y0 + i32(p.kh), i32(p.h + p.ph));
    let x1 = min(x0 + i32(p.kw), i32(p.w + p.pw));
    var win: Window;
    win.full = f32((y1 - y0) * (x1 - x0));
    win.r = vec4<i32>(max(y0, 0), min(y1, i32(p.h)), max(x0, 0), min(x1, i32(p.w)));
    return win;
}

fn divisor(win: Window) -> f32 {
    if (p.include_pad != 0u) {
        return win.full;
    }
    return f32((win.r.y - win.r.x) * (win.r.w - win.r.z));
}

// Plane offset of the first maximum of a window in row-major order.
fn argmax(plane: u32, win: Window) -> u32 {
    var best = u32(win.r.x) * p.w + u32(win.r.z);
    var best_v = bitcast<f32>(0xff800000u);
    for (var y = win.r.x; y < win.r.y; y++) {
        for (var x = win.r.z; x < win.r.w; x++) {
            let at = u32(y) * p.w + u32(x);
            let v = a[plane + at];
            if (v > best_v) {
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
    let first = i32(quot(u32(max(t - i32(k) + i32(s), 0)), s));
    let last = min(i32(quot(u32(t), s)), i32(count) - 1);
    return vec2<i32>(first, last);
}

@compute @workgroup_size(64)
fn max_pool2d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.total) { return; }
    let row = quot(i, p.ow);
    let ox = i - row * p.ow;
    let pl = quot(row, p.oh);
    let oy = row - pl * p.oh;
    let plane = pl * p.h * p.w;
    out[i] = a[plane + argmax(plane, window(oy, ox))];
}

// Disjoint windows (stride >= kernel): one invocation per window adds its gradient at its
// first maximum; no two windows share an input, so plain stores suffice. `out` must be zero
// first (the layout family's `fill`). a = x, b = g, out = dx; `total` counts windows here.
@compute @workgroup_size(64)
fn max_pool2d_grad_disjoint(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.total) { return; }
    let row = quot(i, p.ow);
    let ox = i - row * p.ow;
    let pl = quot(row, p.oh);
    let oy = row - pl * p.oh;
    let plane = pl * p.h * p.w;
    out[plane + argmax(plane, window(oy, ox))] = b[i];
}

// Overlapping windows: one invocation per input element sums the gradients of the windows
// whose first maximum it is. a = x, b = g (pooled gradient), out = dx.
@compute @workgroup_size(64)
fn max_pool2d_grad(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.total) { return; }
    let row = quot(i, p.w);
    let x = i - row * p.w;
    let pl = quot(row, p.h);
    let y = row - pl * p.h;
    let plane = pl * p.h * p.w;
    let me = y * p.w + x;
    let ys = covering(y, p.kh, p.sh, p.ph, p.oh);
    let xs = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = ys.x; oy <= ys.y; oy++) {
        for (var ox = xs.x; ox <= xs.y; ox++) {
            if (argmax(plane, window(u32(oy), u32(ox))) == me) {
                acc += b[(pl * p.oh + u32(oy)) * p.ow + u32(ox)];
            }
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(64)
fn avg_pool2d(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.total) { return; }
    let row = quot(i, p.ow);
    let ox = i - row * p.ow;
    let pl = quot(row, p.oh);
    let oy = row - pl * p.oh;
    let plane = pl * p.h * p.w;
    let win = window(oy, ox);
    var sum = 0.0;
    for (var y = win.r.x; y < win.r.y; y++) {
        for (var x = win.r.z; x < win.r.w; x++) {
            sum += a[plane + u32(y) * p.w + u32(x)];
        }
    }
    out[i] = sum / divisor(win);
}

// a = g (pooled gradient), out = dx.
@compute @workgroup_size(64)
fn avg_pool2d_grad(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.total) { return; }
    let row = quot(i, p.w);
    let x = i - row * p.w;
    let pl = quot(row, p.h);
    let y = row - pl * p.h;
    let ys = covering(y, p.kh, p.sh, p.ph, p.oh);
    let xs = covering(x, p.kw, p.sw, p.pw, p.ow);
    var acc = 0.0;
    for (var oy = ys.x; oy <= ys.y; oy++) {
        for (var ox = xs.x; ox <= xs.y; ox++) {
            let win = window(u32(oy), u32(ox));
            acc += a[(pl * p.oh + u32(oy)) * p.ow + u32(ox)] / divisor(win);
        }
    }
    out[i] = acc;
}
