// Sum and max reductions whose workgroups combine their shares before storing: the pass's
// `parts` is a multiple of WORKGROUP and neighbouring invocations take neighbouring shares of
// one output (outputs_fastest = 0), so each workgroup's shares belong to one output. Each
// invocation folds its share as `reduce_sum` and `reduce_max` do (this file follows
// reduce.wgsl in the module), the shares are combined within each subgroup by a butterfly
// of shuffles, then across the workgroup's subgroups in workgroup memory, and one partial
// result per workgroup is stored: out[o·parts / WORKGROUP + j / WORKGROUP], the invocation
// index divided by WORKGROUP. The order of the combinations depends on the shape and the
// adapter's subgroup size only, so results are deterministic on one adapter. Only launched on
// devices with subgroup operations whose subgroups are at most WORKGROUP wide.

// One partial result per subgroup of the workgroup.
var<workgroup> partial: array<f32, WORKGROUP>;

// The sum of two partial results, or their maximum keeping NaN (PyTorch's rule).
fn combine(x: f32, y: f32, take_max: bool) -> f32 {
    if (take_max) {
        return select(max(x, y), nan(), is_nan(x) || is_nan(y));
    }
    return x + y;
}

// Folds invocation i's share and combines the workgroup's; the first invocation stores.
// Barriers and shuffles are reached by every invocation of the workgroup: only the fold and
// the store depend on whether i is in range (the grid may have whole workgroups past the
// end, which store nothing).
fn fold_workgroup(i: u32, local: u32, lane: u32, width: u32, subgroup: u32, subgroups: u32, take_max: bool) {
    let live = i < p.n * p.parts;
    var v = select(0.0, -inf(), take_max);
    if (live) {
        v = fold(share(i), take_max);
    }
    for (var m = 1u; m < width; m = m * 2u) {
        v = combine(v, subgroupShuffleXor(v, m), take_max);
    }
    if (lane == 0u) {
        partial[subgroup] = v;
    }
    workgroupBarrier();
    if (local == 0u && live) {
        var acc = partial[0];
        for (var k = 1u; k < subgroups; k++) {
            acc = combine(acc, partial[k], take_max);
        }
        out[i / WORKGROUP] = acc;
    }
}

@compute @workgroup_size(WORKGROUP)
fn reduce_sum_subgroup(
    @builtin(global_invocation_id) g: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    fold_workgroup(i, local, lane, width, subgroup, subgroups, false);
}

@compute @workgroup_size(WORKGROUP)
fn reduce_max_subgroup(
    @builtin(global_invocation_id) g: vec3<u32>,
    @builtin(num_workgroups) nw: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
) {
    let i = g.x + g.y * nw.x * WORKGROUP;
    fold_workgroup(i, local, lane, width, subgroup, subgroups, true);
}
