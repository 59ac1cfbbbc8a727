// Reductions (sum, max, argmax) over any axes, in passes whose loops are bounded whatever
// the size (crates/device/src/family/reduce.rs plans them). Each output o combines `count` elements
// at base(o) + r·r_stride + t·l_stride for r < r_len, t < l_len, element k = r·l_len + t: the
// launcher collapses the reduced axes into these two levels (or first copies the input so
// that they fit). `parts` invocations share an output: share j takes elements
// first = j·first_step, first + k_step, … below min(first + span, count). On CPU-type
// adapters a share is a contiguous block of elements (k_step = 1: each invocation streams
// through memory); on GPUs the shares interleave (k_step = parts: neighbouring invocations
// read neighbouring elements). No share has more than MAX_TRIP / 2 elements. With
// parts > 1 each share writes its partial result to out[o·parts + j], and the next pass
// combines those. The order of every combination is fixed by the shape and the adapter
// type, so results are deterministic.

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
    first_step: u32,
    k_step: u32,
    span: u32,
    // From one element of a share to the next: t grows by dt = k_step % l_len and the offset
    // by step (dt·l_stride + (k_step / l_len)·r_stride); past the inner level's end, t wraps
    // and the offset moves by wrap (r_stride - l_len·l_stride, modulo 2^32).
    dt: u32,
    step: u32,
    wrap: u32,
    // 1: neighbouring invocations take neighbouring outputs (the kept axes are innermost);
    // 0: neighbouring shares of one output.
    outputs_fastest: u32,
    // argmax: 1 when the values come with their indices (a pass over partial results).
    indexed: u32,
}

@group(0) @binding(0) var<storage, read> p: ReduceParams;


// Output o and share j of invocation i.
fn share(i: u32) -> vec2<u32> {
    if (p.outputs_fastest != 0u) {
        let j = quot(i, p.n);
        return vec2<u32>(i - j * p.n, j);
    }
    let o = quot(i, p.parts);
    return vec2<u32>(o, i - o * p.parts);
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

// A share is walked in segments: runs of elements within which the inner position t does
// not wrap, each a tight loop of `at += step`, with the wrap applied between segments. One
// invocation per output over contiguous runs (rows: parts = 1, l_stride = 1) takes loops
// whose bounds are the same for every invocation instead, about 1.4 times as fast on
// lavapipe (docs/performance.md).

// Whether outputs are whole contiguous runs walked by one invocation each.
fn rows() -> bool {
    return p.parts == 1u && p.l_stride == 1u;
}

// Share j's first element, and the end of its elements (none past `count`).
fn bounds(j: u32) -> vec2<u32> {
    let first = min(j * p.first_step, p.count);
    return vec2<u32>(first, first + min(p.count - first, p.span));
}

// The offset of element k of the output whose first element is at `base`, and k's inner
// position t.
fn start(base: u32, k: u32) -> vec2<u32> {
    let r = quot(k, p.l_len);
    let t = k - r * p.l_len;
    return vec2<u32>(base + r * p.r_stride + t * p.l_stride, t);
}

// Elements of the share from element k (inner position t) up to `end`, before t wraps.
fn segment(k: u32, t: u32, end: u32) -> u32 {
    let left = quot(end - k + p.k_step - 1u, p.k_step);
    if (p.dt == 0u) {
        return left;
    }
    return min(left, quot(p.l_len - t + p.dt - 1u, p.dt));
}

// The position and offset after a segment of n elements from (at, t), wrapped.
fn past(at: u32, t: u32, n: u32) -> vec2<u32> {
    let t2 = t + n * p.dt;
    let at2 = at + n * p.step;
    if (t2 >= p.l_len) {
        return vec2<u32>(at2 + p.wrap, t2 - p.l_len);
    }
    return vec2<u32>(at2, t2);
}

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;

// Sum or maximum of share s (output s.x, share s.y): one walk for both, `take_max` a constant in each
// entry point. The maximum keeps NaN, as in PyTorch: a flag keeps it whatever `max` does
// with NaN operands.
fn fold(s: vec2<u32>, take_max: bool) -> f32 {
    let base = base_offset(s.x);
    let b = bounds(s.y);
    var w = start(base, b.x);
    var acc = select(0.0, -inf(), take_max);
    var nan_seen = false;
    if (rows()) {
        for (var r = 0u; r < p.r_len; r++) {
            let run = base + r * p.r_stride;
            for (var t = 0u; t < p.l_len; t++) {
                let v = a[run + t];
                if (take_max) {
                    nan_seen = nan_seen || is_nan(v);
                    acc = max(acc, v);
                } else {
                    acc += v;
                }
            }
        }
    } else {
        for (var k = b.x; k < b.y;) {
            let n = segment(k, w.y, b.y);
            var at = w.x;
            for (var e = 0u; e < n; e++) {
                let v = a[at];
                if (take_max) {
                    nan_seen = nan_seen || is_nan(v);
                    acc = max(acc, v);
                } else {
                    acc += v;
                }
                at += p.step;
            }
            w = past(w.x, w.y, n);
            k += n * p.k_step;
        }
    }
    return select(acc, nan(), nan_seen);
}

@compute @workgroup_size(WORKGROUP)
fn reduce_sum(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i < p.n * p.parts) {
        let s = share(i);
        out[s.x * p.parts + s.y] = fold(s, false);
    }
}

@compute @workgroup_size(WORKGROUP)
fn reduce_max(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i < p.n * p.parts) {
        let s = share(i);
        out[s.x * p.parts + s.y] = fold(s, true);
    }
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

@compute @workgroup_size(WORKGROUP)
fn argmax(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    if (i >= p.n * p.parts) { return; }
    let s = share(i);
    let base = base_offset(s.x);
    let b = bounds(s.y);
    var w = start(base, b.x);
    var best_v = -inf();
    var best = 0xffffffffu;
    if (rows()) {
        for (var r = 0u; r < p.r_len; r++) {
            let run = base + r * p.r_stride;
            for (var t = 0u; t < p.l_len; t++) {
                let v = a[run + t];
                let index = select(r * p.l_len + t, a_index[run + t], p.indexed != 0u);
                if (beats(v, index, best_v, best)) {
                    best_v = v;
                    best = index;
                }
            }
        }
        out_index[s.x] = best;
        out_value[s.x] = best_v;
        return;
    }
    for (var k = b.x; k < b.y;) {
        let n = segment(k, w.y, b.y);
        var at = w.x;
        for (var e = 0u; e < n; e++) {
            let v = a[at];
            let index = select(k + e * p.k_step, a_index[at], p.indexed != 0u);
            if (beats(v, index, best_v, best)) {
                best_v = v;
                best = index;
            }
            at += p.step;
        }
        w = past(w.x, w.y, n);
        k += n * p.k_step;
    }
    let o = s.x * p.parts + s.y;
    out_index[o] = best;
    out_value[o] = best_v;
}
