// 2-D convolution over NCHW tensors, weights [o, c/groups, kh, kw], as implicit GEMM: each
// invocation computes a 4×4 block of its output in four named vec4 accumulators. Loads past an
// edge or in the padding are clamped to a valid address and masked to zero.

// Rust twin: ConvParams in crates/device/src/params.rs
struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    oh: u32,
    ow: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    cg: u32,
    og: u32,
    // The range of the kernel's reduction this dispatch walks (input channels of the group
    // for conv2d, output channels for the input gradient, rows (image, output row) for the
    // weight gradient), and where its results go: the launcher splits long reductions so
    // that no loop passes its bound, then adds the parts (crates/device/src/family/conv.rs).
    red_begin: u32,
    red_end: u32,
    out_base: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> p: ConvParams;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn load4(idx: vec4<u32>, valid: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(a[idx.x], a[idx.y], a[idx.z], a[idx.w]), valid);
}

// Results are stored through `put` (element i of the output), defined after this file: a
// plain store, or a generated epilogue that applies a fused group of elementwise ops first
// (crates/device/src/shaders.rs). `im2col` writes its scratch directly.
fn store4(base: u32, count: u32, v: vec4<f32>) {
    put(base, v.x);
    if (count > 1u) { put(base + 1u, v.y); }
    if (count > 2u) { put(base + 2u, v.z); }
    if (count > 3u) { put(base + 3u, v.w); }
}

// Forward: a = x [n, c, h, w], b = weight. Invocation: 4 output pixels (x) × 4 output channels
// of one group (y) of image z.
@compute @workgroup_size(16, 1, 1)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>) {
    let np = p.oh * p.ow;
    let p0 = gid.x * 4u;
    let blocks = (p.og + 3u) / 4u;
    let grp = gid.y / blocks;
    let o0 = (gid.y % blocks) * 4u;
    if (p0 >= np || grp >= p.groups) { return; }
    let n = gid.z;

    // Top-left input coordinate of each pixel's window (may be negative in the padding).
    let q = min(vec4<u32>(p0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(np - 1u));
    let y0 = vec4<i32>((q / p.ow) * p.sh) - vec4<i32>(i32(p.ph));
    let x0 = vec4<i32>((q % p.ow) * p.sw) - vec4<i32>(i32(p.pw));

    let ksz = p.kh * p.kw;
    let wrow = p.cg * ksz;
    let ob = grp * p.og;
    let w0 = (ob + min(o0, p.og - 1u)) * wrow;
    let w1 = (ob + min(o0 + 1u, p.og - 1u)) * wrow;
    let w2 = (ob + min(o0 + 2u, p.og - 1u)) * wrow;
    let w3 = (ob + min(o0 + 3u, p.og - 1u)) * wrow;
    let hi = vec4<i32>(i32(p.h) - 1);
    let wi = vec4<i32>(i32(p.w) - 1);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ci = p.red_begin; ci < p.red_end; ci++) {
        let plane = (n * p.c + grp * p.cg + ci) * p.h * p.w;
        for (var ky = 0u; ky < p.kh; ky++) {
            let yy = y0 + vec4<i32>(i32(ky * p.dh));
            let vy = (yy >= vec4<i32>(0)) & (yy <= hi);
            let row = vec4<u32>(clamp(yy, vec4<i32>(0), hi)) * p.w + vec4<u32>(plane);
            for (var kx = 0u; kx < p.kw; kx++) {
                let xx = x0 + vec4<i32>(i32(kx * p.dw));
                let valid = vy & (xx >= vec4<i32>(0)) & (xx <= wi);
                let xv = load4(row + vec4<u32>(clamp(xx, vec4<i32>(0), wi)), valid);
                let r = ci * ksz + ky * p.kw + kx;
                acc0 += b[w0 + r] * xv;
                acc1 += b[w1 + r] * xv;
                acc2 += b[w2 + r] * xv;
                acc3 += b[w3 + r] * xv;
            }
        }
    }
    let count = min(4u, np - p0);
    let base = p.out_base + (n * p.o + ob + o0) * np + p0;
    store4(base, count, acc0);
    if (o0 + 1u < p.og) { store4(base + np, count, acc1); }
    if (o0 + 2u < p.og) { store4(base + 2u * np, count, acc2); }
    if (o0 + 3u < p.og) { store4(base + 3u * np, count, acc3); }
}

// Input gradient (and transposed convolution): a = g [n, o, oh, ow], b = weight,
// out = dx [n, c, h, w]. Invocation: 4 input pixels (x) × 4 input channels of one group (y)
// of image z. Pixel (y, x) receives g[oy, ox]·w[ky, kx] where oy·s + ky·d = y + p.
@compute @workgroup_size(16, 1, 1)
fn conv2d_grad_input(@builtin(global_invocation_id) gid: vec3<u32>) {
    let np = p.h * p.w;
    let p0 = gid.x * 4u;
    let blocks = (p.cg + 3u) / 4u;
    let grp = gid.y / blocks;
    let c0 = (gid.y % blocks) * 4u;
    if (p0 >= np || grp >= p.groups) { return; }
    let n = gid.z;

    let q = min(vec4<u32>(p0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(np - 1u));
    let ty0 = vec4<i32>(q / p.w + p.ph);
    let tx0 = vec4<i32>(q % p.w + p.pw);
    let sh = vec4<i32>(i32(p.sh));
    let sw = vec4<i32>(i32(p.sw));
    let ohi = vec4<i32>(i32(p.oh) - 1);
    let owi = vec4<i32>(i32(p.ow) - 1);

    let ksz = p.kh * p.kw;
    let cl0 = min(c0, p.cg - 1u) * ksz;
    let cl1 = min(c0 + 1u, p.cg - 1u) * ksz;
    let cl2 = min(c0 + 2u, p.cg - 1u) * ksz;
    let cl3 = min(c0 + 3u, p.cg - 1u) * ksz;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ol = p.red_begin; ol < p.red_end; ol++) {
        let o = grp * p.og + ol;
        let gplane = (n * p.o + o) * p.oh * p.ow;
        let wbase = o * p.cg * ksz;
        for (var ky = 0u; ky < p.kh; ky++) {
            let ty = ty0 - vec4<i32>(i32(ky * p.dh));
            // Vector integer division is slow on CPU adapters; stride 1 needs none.
            var oy = ty;
            var vy = (ty >= vec4<i32>(0)) & (oy <= ohi);
            if (p.sh != 1u) {
                oy = ty / sh;
                vy = (ty >= vec4<i32>(0)) & (ty % sh == vec4<i32>(0)) & (oy <= ohi);
            }
            let row = vec4<u32>(clamp(oy, vec4<i32>(0), ohi)) * p.ow + vec4<u32>(gplane);
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = tx0 - vec4<i32>(i32(kx * p.dw));
                var ox = tx;
                var valid = vy & (tx >= vec4<i32>(0)) & (ox <= owi);
                if (p.sw != 1u) {
                    ox = tx / sw;
                    valid = vy & (tx >= vec4<i32>(0)) & (tx % sw == vec4<i32>(0)) & (ox <= owi);
                }
                let gv = load4(row + vec4<u32>(clamp(ox, vec4<i32>(0), owi)), valid);
                let r = wbase + ky * p.kw + kx;
                acc0 += b[r + cl0] * gv;
                acc1 += b[r + cl1] * gv;
                acc2 += b[r + cl2] * gv;
                acc3 += b[r + cl3] * gv;
            }
        }
    }
    let count = min(4u, np - p0);
    let base = p.out_base + (n * p.c + grp * p.cg + c0) * np + p0;
    store4(base, count, acc0);
    if (c0 + 1u < p.cg) { store4(base + np, count, acc1); }
    if (c0 + 2u < p.cg) { store4(base + 2u * np, count, acc2); }
    if (c0 + 3u < p.cg) { store4(base + 3u * np, count, acc3); }
}

// The input gradient of a strided convolution, after the product cols = Wᵀ·g ([c·kh·kw,
// images·oh·ow + 1] for the images of a chunk side by side, rows red_end values apart; the
// column out_base is Wᵀ·0): value (c, y, x) of image red_begin + z sums, in a fixed order,
// every tap of the window: the column of its output pixel (oy, ox) where oy·sh + ky·dh =
// y + ph (columns alike), or, for a tap that reaches no output pixel, the zero column's
// value, so that such a tap counts as g = 0 times its weights, as the CPU backend counts it
// (NaN where a weight is not finite). a = cols. Invocation: one input pixel (x) of one
// channel (y) of one image (z).
@compute @workgroup_size(64, 1, 1)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.x;
    let c = gid.y;
    if (q >= p.h * p.w || c >= p.c) { return; }
    let z = gid.z;
    let y = i32(q / p.w + p.ph);
    let x = i32(q % p.w + p.pw);
    let ksz = p.kh * p.kw;
    let rows = c * ksz * p.red_end;
    let base = rows + z * p.oh * p.ow;
    let zero = rows + p.out_base;
    var acc = 0.0;
    if (p.dh == 1u && p.dw == 1u) {
        // Undilated: the tap's row t = y - ky goes down by one per tap, so its remainder and
        // quotient by the stride are kept by counting, without a division per tap.
        var ry = u32(y) % p.sh;
        var oy = i32(u32(y) / p.sh);
        for (var ky = 0u; ky < p.kh; ky++) {
            let row_ok = ry == 0u && oy >= 0 && oy < i32(p.oh);
            var rx = u32(x) % p.sw;
            var ox = i32(u32(x) / p.sw);
            for (var kx = 0u; kx < p.kw; kx++) {
                let tap = (ky * p.kw + kx) * p.red_end;
                if (row_ok && rx == 0u && ox >= 0 && ox < i32(p.ow)) {
                    acc += a[base + tap + u32(oy) * p.ow + u32(ox)];
                } else {
                    acc += a[zero + tap];
                }
                if (rx == 0u) { rx = p.sw - 1u; ox -= 1; } else { rx -= 1u; }
            }
            if (ry == 0u) { ry = p.sh - 1u; oy -= 1; } else { ry -= 1u; }
        }
    } else {
        for (var ky = 0u; ky < p.kh; ky++) {
            let ty = y - i32(ky * p.dh);
            let oy = ty / i32(p.sh);
            let row_ok = ty >= 0 && ty % i32(p.sh) == 0 && oy < i32(p.oh);
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = x - i32(kx * p.dw);
                let ox = tx / i32(p.sw);
                let tap = (ky * p.kw + kx) * p.red_end;
                if (row_ok && tx >= 0 && tx % i32(p.sw) == 0 && ox < i32(p.ow)) {
                    acc += a[base + tap + u32(oy) * p.ow + u32(ox)];
                } else {
                    acc += a[zero + tap];
                }
            }
        }
    }
    put(((p.red_begin + z) * p.c + c) * p.h * p.w + q, acc);
}

// Weight gradient: a = x [n, c, h, w], b = g [n, o, oh, ow], out = dw [o, c/groups, kh, kw].
// Invocation: 4 weight taps r = (ci, ky, kx) (x) × 4 output channels of one group (y); the
// reduction runs over every image and output pixel.
@compute @workgroup_size(16, 1, 1)
fn conv2d_grad_weight(@builtin(global_invocation_id) gid: vec3<u32>) {
    let ksz = p.kh * p.kw;
    let nr = p.cg * ksz;
    let r0 = gid.x * 4u;
    let blocks = (p.og + 3u) / 4u;
    let grp = gid.y / blocks;
    let o0 = (gid.y % blocks) * 4u;
    if (r0 >= nr || grp >= p.groups) { return; }

    // Each tap's input channel plane offset and its offset from a window's top-left corner.
    let r = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(nr - 1u));
    let ci = r / ksz;
    let ky = (r % ksz) / p.kw;
    let kx = r % p.kw;
    let cplane = (vec4<u32>(grp * p.cg) + ci) * p.h * p.w;
    let dy = vec4<i32>(ky * p.dh) - vec4<i32>(i32(p.ph));
    let dx = vec4<i32>(kx * p.dw) - vec4<i32>(i32(p.pw));
    let hi = vec4<i32>(i32(p.h) - 1);
    let wi = vec4<i32>(i32(p.w) - 1);

    let ob = grp * p.og;
    let og0 = ob + min(o0, p.og - 1u);
    let og1 = ob + min(o0 + 1u, p.og - 1u);
    let og2 = ob + min(o0 + 2u, p.og - 1u);
    let og3 = ob + min(o0 + 3u, p.og - 1u);
    let np = p.oh * p.ow;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    // Rows (image n, output row oy) numbered n·oh + oy.
    for (var line = p.red_begin; line < p.red_end; line++) {
        let n = line / p.oh;
        let oy = line - n * p.oh;
        let xn = vec4<u32>(n * p.c * p.h * p.w) + cplane;
        let gn = n * p.o;
        let yy = vec4<i32>(i32(oy * p.sh)) + dy;
        let vy = (yy >= vec4<i32>(0)) & (yy <= hi);
        let row = xn + vec4<u32>(clamp(yy, vec4<i32>(0), hi)) * p.w;
        for (var ox = 0u; ox < p.ow; ox++) {
            let xx = vec4<i32>(i32(ox * p.sw)) + dx;
            let valid = vy & (xx >= vec4<i32>(0)) & (xx <= wi);
            let xv = load4(row + vec4<u32>(clamp(xx, vec4<i32>(0), wi)), valid);
            let pix = oy * p.ow + ox;
            acc0 += b[(gn + og0) * np + pix] * xv;
            acc1 += b[(gn + og1) * np + pix] * xv;
            acc2 += b[(gn + og2) * np + pix] * xv;
            acc3 += b[(gn + og3) * np + pix] * xv;
        }
    }
    let count = min(4u, nr - r0);
    let base = p.out_base + (ob + o0) * nr + r0;
    store4(base, count, acc0);
    if (o0 + 1u < p.og) { store4(base + nr, count, acc1); }
    if (o0 + 2u < p.og) { store4(base + 2u * nr, count, acc2); }
    if (o0 + 3u < p.og) { store4(base + 3u * nr, count, acc3); }
}

// Variant with output channels across invocations ("channel lanes"): a workgroup of 8
// invocations shares one image and one block of 4 output pixels, and each invocation holds
// 4 consecutive output channels × those 4 pixels in four vec4 accumulators (one per pixel).
// Every input value it reads is therefore the same for the whole workgroup (CPU adapters load
// it once, not once per invocation), and the weights are read as one vec4 per tap from a copy
// laid out [group, tap, output channel]. It serves the forward pass, and the input gradient
// for stride 1 (a convolution of g with the taps mirrored, through a negative tap step).
// Needs the output channels per group to be a multiple of 4.

// Rust twin: ConvLanesParams in crates/device/src/params.rs
struct ConvLanesParams {
    // The tensor read: [n, ci, h, w], ci = groups · cgi.
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    // The tensor written: [n, co, oh, ow], co = groups · cgo.
    co: u32,
    oh: u32,
    ow: u32,
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    // Input row of output row y and tap ky: y·sh + oy + ky·ky_step (columns alike).
    oy: i32,
    ox: i32,
    ky_step: i32,
    kx_step: i32,
    cgi: u32,
    cgo: u32,
    // `_ua` variant: the first image held by the uniform window.
    image0: u32,
    // The input channels of the group this dispatch walks, and where its results go (see
    // ConvParams' red_begin).
    c_begin: u32,
    c_end: u32,
    out_base: u32,
}

@group(0) @binding(0) var<storage, read> q: ConvLanesParams;
@group(0) @binding(3) var<storage, read> w4: array<vec4<f32>>;

fn store_channels(at: u32, np: u32, v: vec4<f32>) {
    put(at, v.x);
    put(at + np, v.y);
    put(at + 2u * np, v.z);
    put(at + 3u * np, v.w);
}

@compute @workgroup_size(8, 1, 1)
fn conv2d_lanes(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) li: vec3<u32>) {
    let np = q.oh * q.ow;
    let p0 = wg.x * 4u;
    let quads = q.cgo / 4u;
    let blocks = (quads + 7u) / 8u;
    let grp = wg.y / blocks;
    let quad = (wg.y % blocks) * 8u + li.x;
    // No early return: the input loads below must stay in uniform control flow.
    let qd = min(quad, quads - 1u);
    let n = wg.z;

    let pix = min(vec4<u32>(p0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(np - 1u));
    let y0 = vec4<i32>((pix / q.ow) * q.sh) + vec4<i32>(q.oy);
    let x0 = vec4<i32>((pix % q.ow) * q.sw) + vec4<i32>(q.ox);
    let hi = vec4<i32>(i32(q.h) - 1);
    let wi = vec4<i32>(i32(q.w) - 1);

    var at = (grp * q.cgi + q.c_begin) * q.kh * q.kw * quads + qd;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = q.c_begin; c < q.c_end; c++) {
        let plane = i32((n * q.ci + grp * q.cgi + c) * q.h * q.w);
        for (var ky = 0u; ky < q.kh; ky++) {
            let yy = y0 + vec4<i32>(i32(ky) * q.ky_step);
            let vy = (yy >= vec4<i32>(0)) & (yy <= hi);
            let row = vec4<i32>(plane) + clamp(yy, vec4<i32>(0), hi) * i32(q.w);
            for (var kx = 0u; kx < q.kw; kx++) {
                let xx = x0 + vec4<i32>(i32(kx) * q.kx_step);
                let v = vy & (xx >= vec4<i32>(0)) & (xx <= wi);
                let idx = vec4<u32>(row + clamp(xx, vec4<i32>(0), wi));
                let wv = w4[at];
                at += quads;
                acc0 += select(0.0, a[idx.x], v.x) * wv;
                acc1 += select(0.0, a[idx.y], v.y) * wv;
                acc2 += select(0.0, a[idx.z], v.z) * wv;
                acc3 += select(0.0, a[idx.w], v.w) * wv;
            }
        }
    }
    if (quad < quads) {
        let base = q.out_base + (n * q.co + grp * q.cgo + quad * 4u) * np;
        store_channels(base + p0, np, acc0);
        if (p0 + 1u < np) { store_channels(base + p0 + 1u, np, acc1); }
        if (p0 + 2u < np) { store_channels(base + p0 + 2u, np, acc2); }
        if (p0 + 3u < np) { store_channels(base + p0 + 3u, np, acc3); }
    }
}

// conv2d_lanes with the input read from a uniform buffer: a window of up to 64 KiB of whole
// images copied to a scratch buffer, one dispatch per window. The input loads are the same
// for every invocation of a workgroup, and a CPU adapter loads such a uniform-buffer value
// once per workgroup, against once per invocation from a storage buffer
// (docs/performance.md). The arithmetic is conv2d_lanes' line for line; only the input's
// binding and the image numbering differ.
@group(0) @binding(2) var<uniform> xu: array<vec4<f32>, UA_WINDOW_VEC4S>;

@compute @workgroup_size(8, 1, 1)
fn conv2d_lanes_ua(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) li: vec3<u32>) {
    let np = q.oh * q.ow;
    let p0 = wg.x * 4u;
    let quads = q.cgo / 4u;
    let blocks = (quads + 7u) / 8u;
    let grp = wg.y / blocks;
    let quad = (wg.y % blocks) * 8u + li.x;
    // No early return: the input loads below must stay in uniform control flow.
    let qd = min(quad, quads - 1u);
    // The window holds images image0 .. image0 + (grid z); plane offsets are relative to it.
    let n = q.image0 + wg.z;

    let pix = min(vec4<u32>(p0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(np - 1u));
    let y0 = vec4<i32>((pix / q.ow) * q.sh) + vec4<i32>(q.oy);
    let x0 = vec4<i32>((pix % q.ow) * q.sw) + vec4<i32>(q.ox);
    let hi = vec4<i32>(i32(q.h) - 1);
    let wi = vec4<i32>(i32(q.w) - 1);

    var at = (grp * q.cgi + q.c_begin) * q.kh * q.kw * quads + qd;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var c = q.c_begin; c < q.c_end; c++) {
        let plane = i32((wg.z * q.ci + grp * q.cgi + c) * q.h * q.w);
        for (var ky = 0u; ky < q.kh; ky++) {
            let yy = y0 + vec4<i32>(i32(ky) * q.ky_step);
            let vy = (yy >= vec4<i32>(0)) & (yy <= hi);
            let row = vec4<i32>(plane) + clamp(yy, vec4<i32>(0), hi) * i32(q.w);
            for (var kx = 0u; kx < q.kw; kx++) {
                let xx = x0 + vec4<i32>(i32(kx) * q.kx_step);
                let v = vy & (xx >= vec4<i32>(0)) & (xx <= wi);
                let idx = vec4<u32>(row + clamp(xx, vec4<i32>(0), wi));
                let wv = w4[at];
                at += quads;
                acc0 += select(0.0, xu[idx.x >> 2u][idx.x & 3u], v.x) * wv;
                acc1 += select(0.0, xu[idx.y >> 2u][idx.y & 3u], v.y) * wv;
                acc2 += select(0.0, xu[idx.z >> 2u][idx.z & 3u], v.z) * wv;
                acc3 += select(0.0, xu[idx.w >> 2u][idx.w & 3u], v.w) * wv;
            }
        }
    }
    if (quad < quads) {
        let base = q.out_base + (n * q.co + grp * q.cgo + quad * 4u) * np;
        store_channels(base + p0, np, acc0);
        if (p0 + 1u < np) { store_channels(base + p0 + 1u, np, acc1); }
        if (p0 + 2u < np) { store_channels(base + p0 + 2u, np, acc2); }
        if (p0 + 3u < np) { store_channels(base + p0 + 3u, np, acc3); }
    }
}

// Unfolds windows into a matrix for a matrix-product convolution: element (image b, tap r,
// pixel p) of `out` at b·b_stride + r·r_stride + p·p_stride takes input channel r / (kh·kw)
// at tap (ky, kx) of pixel p's window, or 0 in the padding and for the pixels past `np` that
// round the pixel count up to a multiple of 4. One invocation per (channel, pixel) writes all
// kh·kw taps; x numbers (channel, pixel) pairs, z the image of the chunk that starts at image0.

// Rust twin: Im2colParams in crates/device/src/params.rs
struct Im2colParams {
    // The tensor read: [images, ci, h, w].
    ci: u32,
    h: u32,
    w: u32,
    image0: u32,
    // Output width, output pixels, and pixels including the rounding.
    ow: u32,
    np: u32,
    pixels: u32,
    taps: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    // Input row of output row y and tap ky: y·sh + oy + ky·ky_step (columns alike).
    oy: i32,
    ox: i32,
    ky_step: i32,
    kx_step: i32,
    b_stride: u32,
    r_stride: u32,
    p_stride: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> u: Im2colParams;

// With IM_FIXED the launcher compiles a pipeline per geometry and every field but image0
// comes from these constants instead of `u`: divisions by them then compile to
// multiplications and the window loops unroll.
override IM_FIXED: bool = false;
override IM_CI: u32 = 1u;
override IM_H: u32 = 1u;
override IM_W: u32 = 1u;
override IM_OW: u32 = 1u;
override IM_NP: u32 = 1u;
override IM_PIXELS: u32 = 1u;
override IM_KH: u32 = 1u;
override IM_KW: u32 = 1u;
override IM_SH: u32 = 1u;
override IM_SW: u32 = 1u;
override IM_OY: i32 = 0;
override IM_OX: i32 = 0;
override IM_KY_STEP: i32 = 1;
override IM_KX_STEP: i32 = 1;
override IM_B_STRIDE: u32 = 1u;
override IM_R_STRIDE: u32 = 1u;
override IM_P_STRIDE: u32 = 1u;

@compute @workgroup_size(WORKGROUP, 1, 1)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let fixed = IM_FIXED;
    let ci = select(u.ci, IM_CI, fixed);
    let h = select(u.h, IM_H, fixed);
    let w = select(u.w, IM_W, fixed);
    let ow = select(u.ow, IM_OW, fixed);
    let np = select(u.np, IM_NP, fixed);
    let pixels = select(u.pixels, IM_PIXELS, fixed);
    let kh = select(u.kh, IM_KH, fixed);
    let kw = select(u.kw, IM_KW, fixed);
    let sh = select(u.sh, IM_SH, fixed);
    let sw = select(u.sw, IM_SW, fixed);
    let oy0 = select(u.oy, IM_OY, fixed);
    let ox0 = select(u.ox, IM_OX, fixed);
    let ky_step = select(u.ky_step, IM_KY_STEP, fixed);
    let kx_step = select(u.kx_step, IM_KX_STEP, fixed);
    let b_stride = select(u.b_stride, IM_B_STRIDE, fixed);
    let r_stride = select(u.r_stride, IM_R_STRIDE, fixed);
    let p_stride = select(u.p_stride, IM_P_STRIDE, fixed);

    let i = gid.x + gid.y * nw.x * WORKGROUP;
    if (i >= ci * pixels) { return; }
    var c: u32;
    var oy: u32;
    if (fixed) {
        c = i / pixels;
    } else {
        c = quot(i, pixels);
    }
    let px = i - c * pixels;
    let pc = min(px, np - 1u);
    if (fixed) {
        oy = pc / ow;
    } else {
        oy = quot(pc, ow);
    }
    let ox = pc - oy * ow;
    let y0 = i32(oy * sh) + oy0;
    let x0 = i32(ox * sw) + ox0;
    let b = gid.z;
    let plane = ((u.image0 + b) * ci + c) * h * w;
    var at = b * b_stride + c * kh * kw * r_stride + px * p_stride;
    for (var ky = 0u; ky < kh; ky++) {
        let y = y0 + i32(ky) * ky_step;
        let row_ok = px < np && y >= 0 && y < i32(h);
        let row = plane + u32(clamp(y, 0, i32(h) - 1)) * w;
        for (var kx = 0u; kx < kw; kx++) {
            let x = x0 + i32(kx) * kx_step;
            let v = a[row + u32(clamp(x, 0, i32(w) - 1))];
            out[at] = select(0.0, v, row_ok && x >= 0 && x < i32(w));
            at += r_stride;
        }
    }
}
