// Reductions (sum, max, argmax) over any axes, in passes whose loops are bounded whatever
// the size (crates/device/src/reduce.rs plans them). Each output o combines `count` elements
// at base(o) + r·r_stride + t·l_stride for r < r_len, t < l_len, element k = r·l_len + t: the
// launcher collapses the reduced axes into these two levels (or first copies the input so
// that they fit). `parts` invocations share an output: invocation (o, j) takes elements
// j, j + parts, j + 2·parts, …, so no invocation walks more than ceil(count / parts)
// elements, and neighbouring invocations read neighbouring elements. With parts > 1 each
// writes its partial result to out[o·parts + j], and the next pass combines those.
// The order of every combination is fixed by the shape, so results are deterministic.

// Rust twin: ReduceParams in crates/device/src/params.rs
struct ReduceParams {
    n: u32,
    count: u32,
    parts: u32,
    kept_rank: u32,
    // Kept axes (outermost first): sizes and element strides.
    kept: array<u32, 4>,
    kept_strides: array<u32, 4>,
    r_len: u32,
    r_stride: u32,
    l_len: u32,
    l_stride: u32,
    // parts / l_len and parts % l_len: the step of (r, t) from one element to the next.
    dr: u32,
    dt: u32,
    // argmax: 1 when the values come with their indices (a pass over partial results).
    indexed: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> p: ReduceParams;

const WG: u32 = 64u;

// Output o and share j of invocation i (o varies fastest).
fn share(i: u32) -> vec2<u32> {
    let j = quot(i, p.n);
    return vec2<u32>(i - j * p.n, j);
}

// Offset of output o's first element.
fn base_offset(o: u32) -> u32 {
    var r = o;
    var off = 0u;
    for (var d = i32(p.kept_rank) - 1; d >= 0; d--) {
        let n = p.kept[d];
        let q = quot(r, n);
        off += (r - q * n) * p.kept_strides[d];
        r = q;
    }
    return off;
}

// Walks the elements of one share: `at` is the offset of the current element.
struct Walk {
    k: u32,
    r: u32,
    t: u32,
}

fn walk_start(j: u32) -> Walk {
    let r = quot(j, p.l_len);
    return Walk(j, r, j - r * p.l_len);
}

fn walk_at(base: u32, w: Walk) -> u32 {
    return base + w.r * p.r_stride + w.t * p.l_stride;
}

fn walk_next(w: Walk) -> Walk {
    var n = Walk(w.k + p.parts, w.r + p.dr, w.t + p.dt);
    if (n.t >= p.l_len) {
        n.t -= p.l_len;
        n.r += 1u;
    }
    return n;
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;

@compute @workgroup_size(64)
fn reduce_sum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.n * p.parts) { return; }
    let s = share(i);
    let base = base_offset(s.x);
    var acc = 0.0;
    for (var w = walk_start(s.y); w.k < p.count; w = walk_next(w)) {
        acc += a[walk_at(base, w)];
    }
    out[s.x * p.parts + s.y] = acc;
}

// NaN wins, as in PyTorch; the flag keeps it whatever `max` does with NaN operands.
@compute @workgroup_size(64)
fn reduce_max(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.n * p.parts) { return; }
    let s = share(i);
    let base = base_offset(s.x);
    var acc = -inf();
    var nan_seen = false;
    for (var w = walk_start(s.y); w.k < p.count; w = walk_next(w)) {
        let v = a[walk_at(base, w)];
        nan_seen = nan_seen || is_nan(v);
        acc = max(acc, v);
    }
    out[s.x * p.parts + s.y] = select(acc, nan(), nan_seen);
}

// argmax: the index of the largest value, the first on ties; the first NaN if there is one
// (PyTorch's rule). Binding 1 takes the indices and binding 4 the values (kept for the next
// pass); binding 3 holds the indices of partial results when `indexed` is set (the first
// pass binds its input there too, unread).
@group(0) @binding(1) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(3) var<storage, read> a_index: array<u32>;
@group(0) @binding(4) var<storage, read_write> out_value: array<f32>;

// Whether (v, i) beats the best so far (bv, bi).
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    let vn = is_nan(v);
    let bn = is_nan(bv);
    if (vn || bn) {
        return vn && (!bn || i < bi);
    }
    return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(64)
fn argmax(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WG;
    if (i >= p.n * p.parts) { return; }
    let s = share(i);
    let base = base_offset(s.x);
    var best_v = -inf();
    var best = 0xffffffffu;
    for (var w = walk_start(s.y); w.k < p.count; w = walk_next(w)) {
        let at = walk_at(base, w);
        let v = a[at];
        let k = select(w.k, a_index[at], p.indexed != 0u);
        if (beats(v, k, best_v, best)) {
            best_v = v;
            best = k;
        }
    }
    let o = s.x * p.parts + s.y;
    out_index[o] = best;
    out_value[o] = best_v;
}
