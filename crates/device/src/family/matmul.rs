//! Matrix products: the choice of kernel by shape and adapter (measured per shape class),
//! among the uniform-window products for CPU-type adapters (`windows.rs`) and the storage
//! kernels. Convolutions run their products through here too.

use std::time::{Duration, Instant};

use wgrad_graph::op::Op;
use wgrad_graph::shape::{broadcast_strides, numel};
use wgrad_graph::{Arg, BufferId, Error, Result};

use super::generated::{self, Epilogue};
use super::reduce::{self, Reduction};
use super::windows::{matmul_ua, texture_fits, ua_entry, ua_texture_entry, windows_fit};
use crate::kernels::{self, Entry, UA_ROWS};
use crate::params::{dims, MatmulParams};
use crate::recorder::{Recorder, Settings};
use crate::tune::{Choice, BUDGET};
use crate::MAX_TRIP;

/// Records the dispatches of an [`Op::MatMul`], with `epilogue` applied to its stores.
pub(crate) fn record(
    rec: &Recorder,
    op: &Op,
    x: &[Arg<'_>],
    out: &Arg<'_>,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let Op::MatMul { ta, tb } = *op else {
        unreachable!("matmul::record takes a matmul")
    };
    let (a, b) = (x[0].shape, x[1].shape);
    let r = out.shape.len();
    let k = if ta { a[a.len() - 2] } else { a[a.len() - 1] };
    let (mut m, n) = (out.shape[r - 2], out.shape[r - 1]);
    let mut batch = &out.shape[..r - 2];
    if m * n * numel(batch) == 0 {
        return Ok(());
    }
    // One B shared by every batch of an untransposed A (a layer's weight applied to a
    // sequence): the batches' rows follow each other in A and in the output, so it is one
    // product with their rows together, which runs the kernels for unbatched products.
    // Rows stay few enough for any product kernel's grid (each workgroup covers 4 rows or
    // more); past that, the batch stays a grid dimension.
    let (mut a_batch, mut b_batch) = (&a[..a.len() - 2], &b[..b.len() - 2]);
    let grid_rows = 4 * rec.limits().max_compute_workgroups_per_dimension as usize;
    let rows = m * numel(batch);
    if !ta && numel(b) == k * n && numel(a) == rows * k && rows <= grid_rows {
        m = rows;
        (batch, a_batch, b_batch) = (&[], &[], &[]);
    }
    let sa: Vec<usize> = broadcast_strides(a_batch, batch)
        .iter()
        .map(|s| s * m * k)
        .collect();
    let sb: Vec<usize> = broadcast_strides(b_batch, batch)
        .iter()
        .map(|s| s * k * n)
        .collect();
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch_rank: batch.len() as u32,
        batch: dims(batch),
        sa: dims(&sa),
        sb: dims(&sb),
        out_offset: 0,
        out_n: n as u32,
        accumulate: 0,
        ta: ta as u32,
        tb: tb as u32,
        a_row0: 0,
        a_rows: 0,
        window_rows: 0,
        b_panel: 0,
        k_chunk: 0,
        batch_count: 0,
    };
    let operands = (x[0].buffer, x[1].buffer, out.buffer);
    product(rec, &params, operands, false, epilogue)
}

/// A way to run a product: A read through uniform windows, each invocation computing a
/// block of so many rows, with B read from a texture or from its buffer; or one storage
/// kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    Windows { rows: u32, texture: bool },
    Kernel(Entry),
}

impl Plan {
    fn name(self) -> &'static str {
        match self {
            Plan::Windows {
                rows: 16,
                texture: false,
            } => "uniform_windows_16",
            Plan::Windows {
                rows: 16,
                texture: true,
            } => "uniform_windows_16_texture",
            Plan::Windows { texture: false, .. } => "uniform_windows",
            Plan::Windows { texture: true, .. } => "uniform_windows_texture",
            Plan::Kernel(e) => e.name,
        }
    }
}

/// Records the product `params` describes, plain or, where `strided`, storing through an
/// offset and row length (see the `_out` kernels), with `epilogue` applied to its stores:
/// run the way chosen for its shape class (see [`choose`]). Plain products and
/// convolutions' products alike come here.
pub(crate) fn product(
    rec: &Recorder,
    params: &MatmulParams,
    operands: (BufferId, BufferId, BufferId),
    strided: bool,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let plan = choose(rec, params, strided);
    run(rec, plan, params, operands, strided, epilogue)
}

fn run(
    rec: &Recorder,
    plan: Plan,
    params: &MatmulParams,
    operands: (BufferId, BufferId, BufferId),
    strided: bool,
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let entry = match plan {
        // Refused only when its scratch is: then the rule's storage kernel.
        Plan::Windows { rows, texture }
            if matmul_ua(rec, params, operands, (strided, rows, texture), epilogue) =>
        {
            return Ok(())
        }
        Plan::Windows { .. } => select(
            rec.gpu_kernels(),
            transposes(params),
            shape(params),
            strided,
        ),
        Plan::Kernel(entry) => entry,
    };
    push_product(rec, entry, params, operands, epilogue)
}

fn transposes(params: &MatmulParams) -> (bool, bool) {
    (params.ta != 0, params.tb != 0)
}

fn shape(params: &MatmulParams) -> [usize; 3] {
    [params.m as usize, params.n as usize, params.k as usize]
}

/// The ways `params` can run, the built-in rule's first: uniform windows with blocks of 16
/// and 8 rows where they fit (CPU-type adapters), B read from a texture where it can be and
/// then from its buffer, then the storage kernels that read its layout.
fn candidates(rec: &Recorder, params: &MatmulParams, strided: bool) -> Vec<Plan> {
    let gpu = rec.gpu_kernels();
    let rule = select(gpu, transposes(params), shape(params), strided);
    let mut plans = Vec::with_capacity(6);
    // Blocks of 16 rows first where there are rows enough for the workgroups to share
    // the cores (faster on an AVX-512 CPU, docs/performance.md; other CPUs may spill).
    let mut heights: Vec<u32> = UA_ROWS
        .into_iter()
        .filter(|&rows| windows_fit(rec, params, rows))
        .collect();
    if params.m >= 64 {
        heights.reverse();
    }
    // B from a texture first: 3.3× the speed of its buffer on an AVX2 processor's lavapipe
    // (docs/performance.md).
    let windows = |texture| {
        heights
            .iter()
            .map(move |&rows| Plan::Windows { rows, texture })
    };
    if texture_fits(rec, params, strided) {
        plans.extend(windows(true));
    }
    plans.extend(windows(false));
    plans.push(Plan::Kernel(rule));
    let [_, n, k] = shape(params);
    let four = |v: usize| v.is_multiple_of(4) && v > 0;
    let others: &[Entry] = match (strided, transposes(params)) {
        (true, _) => &[kernels::MATMUL_VEC4_OUT_WIDE, kernels::MATMUL_VEC4_OUT],
        (false, (false, false)) if four(k) && four(n) && gpu => &[
            kernels::MATMUL_TILED,
            kernels::MATMUL_TILED_128,
            kernels::MATMUL_VEC4_WIDE,
            kernels::MATMUL_VEC4,
        ],
        (false, (false, false)) if four(k) && four(n) => {
            &[kernels::MATMUL_VEC4_WIDE, kernels::MATMUL_VEC4]
        }
        _ => &[],
    };
    for &entry in others {
        if !plans.contains(&Plan::Kernel(entry)) {
            plans.push(Plan::Kernel(entry));
        }
    }
    plans
}

/// Products of fewer flops than this take the built-in rule: measuring would cost more
/// than any choice saves.
const TUNE_FLOPS: u64 = 1 << 24;

/// How `params` runs: where several ways can, the fastest measured on this adapter for its
/// shape class (dimensions rounded up to powers of two, batched or not), measured on first
/// use within the process's budget and kept on disk (see `tune.rs`); else the built-in rule.
fn choose(rec: &Recorder, params: &MatmulParams, strided: bool) -> Plan {
    let plans = candidates(rec, params, strided);
    let names: Vec<&str> = plans.iter().map(|p| p.name()).collect();
    let tuning = &rec.ctx().tuning;
    if let Some(at) = tuning.pinned(&names) {
        return plans[at];
    }
    let [m, n, k] = shape(params);
    let batch = batch_count(params);
    let flops = 2 * (batch * m * n * k) as u64;
    if plans.len() < 2 || flops < TUNE_FLOPS {
        return plans[0];
    }
    let (ta, tb) = transposes(params);
    let pow = |v: usize| v.next_power_of_two();
    let key = format!(
        "matmul{} ta{} tb{} m{} n{} k{} batched {}: {}",
        if strided { " strided" } else { "" },
        ta as u8,
        tb as u8,
        pow(m),
        pow(n),
        pow(k),
        batch > 1,
        names.join(",")
    );
    match tuning.choice(&key, &names) {
        Choice::Known(name) => plans
            .into_iter()
            .find(|p| p.name() == name)
            .expect("a known choice is a candidate"),
        Choice::Rule => plans[0],
        Choice::Measure(left) => match measure(rec, params, strided, &plans, left) {
            Ok((best, times, spent)) => {
                tuning.keep(&key, best.name(), spent);
                let untried = match plans.len() - times.len() {
                    0 => String::new(),
                    n => format!("; {n} more not tried, the time left spent"),
                };
                log::info!(
                    target: "wgrad::tune",
                    "{key} -> {} (measured at m {m}, n {n}, k {k} in {:.0} ms: {}{untried})",
                    best.name(),
                    spent.as_secs_f64() * 1e3,
                    times
                        .iter()
                        .map(|(p, _, t)| format!("{} {:.2} ms", p.name(), t.as_secs_f64() * 1e3))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                best
            }
            Err((spent, never)) => {
                // A class that no process could measure within the budget keeps the rule for
                // good; one refused only for the time this process has left is measured by a
                // later one.
                let why = if never {
                    tuning.keep(&key, plans[0].name(), spent);
                    "measuring would pass the whole budget"
                } else {
                    tuning.charge(spent);
                    "measuring would pass the time left"
                };
                log::info!(
                    target: "wgrad::tune",
                    "{key} -> {} (the built-in rule: {why})",
                    plans[0].name()
                );
                plans[0]
            }
        },
    }
}

fn batch_count(params: &MatmulParams) -> usize {
    let rank = params.batch_rank as usize;
    params.batch[..rank].iter().product::<u32>() as usize
}

/// Times each plan on scratch operands of `params`' shape, on a recorder of its own: its
/// pipeline compiled, one run to warm up (a slow one that reads a texture runs again, as
/// lavapipe compiles those at their first dispatch), then two timed, except for a plan whose
/// warm-up is already twice the best time. Plans are tried in order while the time left
/// allows three runs at the best pace; the best of those tried wins. The best plan, per
/// plan tried (plan, time spent on it, time per run) and the time spent in all; or the time
/// spent, and whether the plans would take more than the whole [`BUDGET`] (else only more
/// than `left`, or the scratch or a run failed).
#[allow(clippy::type_complexity)]
fn measure(
    rec: &Recorder,
    params: &MatmulParams,
    strided: bool,
    plans: &[Plan],
    left: Duration,
) -> std::result::Result<(Plan, Vec<(Plan, Duration, Duration)>, Duration), (Duration, bool)> {
    let start = Instant::now();
    let trial = Recorder::new(
        rec.ctx().clone(),
        Settings {
            specialize: rec.specialize(),
            poison: false,
            profile: None,
        },
    );
    // Operand sizes from the strides the kernels read with.
    let rank = params.batch_rank as usize;
    let span = |strides: &[u32]| -> usize {
        (0..rank)
            .map(|d| (params.batch[d] as usize - 1) * strides[d] as usize)
            .sum()
    };
    let [m, n, k] = shape(params);
    let a_len = m * k + span(&params.sa);
    let b_len = k * n + span(&params.sb);
    let out_len = params.out_offset as usize + batch_count(params) * m * params.out_n as usize;
    let sizes = [a_len * 4, b_len * 4, out_len * 4];
    let Some(ids) = trial.alloc_all(&sizes) else {
        return Err((start.elapsed(), false));
    };
    for (&id, &bytes) in ids.iter().zip(&sizes) {
        trial.clear(id, bytes as u64);
    }
    let operands = (ids[0], ids[1], ids[2]);
    let ctx = rec.ctx();
    let wait = || ctx.device.poll(wgpu::PollType::wait_indefinitely()).is_ok();
    // An error of the caller's own work stays for the caller's next flush to report.
    if ctx.has_error() {
        return Err((start.elapsed(), false));
    }
    let mut times: Vec<(Plan, Duration, Duration)> = Vec::with_capacity(plans.len());
    for (i, &plan) in plans.iter().enumerate() {
        let best = times.iter().map(|t| t.2).min();
        // Three runs at the best pace must still fit: else the plans tried so far decide.
        if best.is_some_and(|b| start.elapsed() + 3 * b > left) {
            break;
        }
        let warm = Instant::now();
        // The pipeline compiled first, so that the warm-up times the kernel alone.
        let texture = matches!(plan, Plan::Windows { texture: true, .. });
        ctx.scoped(|| match plan {
            Plan::Kernel(entry) => drop(ctx.pipeline(entry)),
            Plan::Windows { rows, texture } => {
                let nt = params.tb != 0;
                let entry = match texture {
                    true => ua_texture_entry(nt, rows),
                    false => ua_entry(strided, nt, rows),
                };
                drop(ctx.pipeline(entry))
            }
        });
        let warm_up = || {
            let run_at = Instant::now();
            let ran = ctx.scoped(|| {
                run(&trial, plan, params, operands, strided, None).and_then(|_| trial.submit())
            });
            let done = ran.is_ok() && wait() && ctx.check().is_ok();
            done.then(|| run_at.elapsed())
        };
        // The first plan sets the pace: three runs of each (one warm, two timed) at its
        // speed must fit the time left. A plan whose warm-up is twice the best timed run
        // cannot win: it is not timed, so that one slow kernel (some are 6× slower on one
        // processor than on another) does not spend the budget of the whole class.
        let needs = |t: Duration| t * 3 * plans.len() as u32;
        let slow = |t: Duration| (i == 0 && needs(t) > left) || best.is_some_and(|b| t > 2 * b);
        let Some(mut first) = warm_up() else {
            return Err((start.elapsed(), false));
        };
        if texture && slow(first) {
            let Some(again) = warm_up() else {
                return Err((start.elapsed(), false));
            };
            first = again;
        }
        if i == 0 && needs(first) > left {
            return Err((start.elapsed(), needs(first) > BUDGET));
        }
        if slow(first) {
            times.push((plan, warm.elapsed(), first));
            continue;
        }
        if start.elapsed() + 2 * first > left {
            break;
        }
        let timed = Instant::now();
        for _ in 0..2 {
            let _ = run(&trial, plan, params, operands, strided, None);
        }
        let ran = ctx.scoped(|| trial.submit());
        if ran.is_err() || !wait() || ctx.check().is_err() {
            return Err((start.elapsed(), false));
        }
        times.push((plan, warm.elapsed(), timed.elapsed() / 2));
    }
    let best = times
        .iter()
        .min_by_key(|t| t.2)
        .map(|t| t.0)
        .ok_or((start.elapsed(), false))?;
    Ok((best, times, start.elapsed()))
}

/// The product kernel for `[m, n, k]` with A and B read as `(ta, tb)` say, storing through
/// an offset and row length where `strided` (convolutions; A and B plain): the one choice of
/// kernel for plain products and convolutions alike. The vec4 variants read rows as vec4, so
/// the dimensions they read along must be multiples of 4. Wide workgroups win while B (k·n
/// values) stays in cache (docs/performance.md).
pub(crate) fn select(
    gpu: bool,
    (ta, tb): (bool, bool),
    [m, n, k]: [usize; 3],
    strided: bool,
) -> Entry {
    let four = |v: usize| v.is_multiple_of(4) && v > 0;
    let cached = k * n <= 1 << 20;
    if strided {
        debug_assert!(!ta && !tb);
        return if cached {
            kernels::MATMUL_VEC4_OUT_WIDE
        } else {
            kernels::MATMUL_VEC4_OUT
        };
    }
    match (ta, tb) {
        (false, false) if four(k) && four(n) => match (gpu, cached) {
            (true, _) => kernels::MATMUL_TILED,
            (false, true) => kernels::MATMUL_VEC4_WIDE,
            (false, false) => kernels::MATMUL_VEC4,
        },
        (true, false) if four(m) && four(n) => kernels::MATMUL_TN_VEC4,
        (false, true) if four(k) && four(n) => kernels::MATMUL_NT_VEC4,
        _ => kernels::MATMUL,
    }
}

/// The most of k one invocation of product kernel `entry` walks within [`MAX_TRIP`]
/// iterations: one k per iteration for the scalar kernels, 4 for the vec4 ones, 16 per 5 for
/// the tiled one (a step of 16 staged, then 4 inner steps).
fn k_limit(entry: Entry) -> usize {
    match entry {
        kernels::MATMUL | kernels::MATMUL_TN_VEC4 => MAX_TRIP,
        kernels::MATMUL_TILED => MAX_TRIP / 5 * 16,
        // A step of 8 staged, then 2 inner steps.
        kernels::MATMUL_TILED_128 => MAX_TRIP / 3 * 8,
        _ => 4 * MAX_TRIP,
    }
}

/// Rows and columns of C one invocation of product kernel `entry` computes: a workgroup
/// covers this many times its size.
fn block(entry: Entry) -> u32 {
    match entry {
        kernels::MATMUL_TILED_128 => 8,
        _ => 4,
    }
}

/// Records product kernel `entry` for `params`; each invocation computes a [`block`], so a
/// workgroup covers that many times its size in columns and rows. Where k passes the kernel's [`k_limit`],
/// k is split: every split writes its partial product to scratch in one dispatch, and
/// `matmul_sum_splits` adds them up in order and stores the sum as `params` says (offset, row
/// length, accumulate), through `epilogue`.
pub(crate) fn push_product(
    rec: &Recorder,
    entry: Entry,
    params: &MatmulParams,
    (a, b, out): (BufferId, BufferId, BufferId),
    epilogue: Option<Epilogue<'_>>,
) -> Result<()> {
    let rank = params.batch_rank as usize;
    let batch: u32 = params.batch[..rank].iter().product();
    let (m, n, k) = (params.m, params.n, params.k as usize);
    let limit = k_limit(entry);
    let tile = [
        block(entry) * entry.workgroup[0],
        block(entry) * entry.workgroup[1],
    ];
    let columns = [n.div_ceil(tile[0]), m.div_ceil(tile[1])];
    if k <= limit {
        let groups = [columns[0], columns[1], batch];
        generated::push_stored(rec, entry, epilogue, params, vec![out, a, b], groups);
        return Ok(());
    }
    let splits = k.div_ceil(limit);
    let grid = rec.limits().max_compute_workgroups_per_dimension as usize;
    if splits * batch as usize > grid {
        return Err(Error::Device(format!(
            "matmul: {batch} products split {splits} ways along k = {k} exceed the \
             device's {grid} workgroups per dimension; use fewer or smaller products"
        )));
    }
    let per = batch as usize * m as usize * n as usize;
    let total = batch as usize * m as usize * params.out_n as usize;
    // Past MAX_TRIP splits, the sum pass reads their sum from a reduction instead; with
    // an epilogue, it stores to scratch that a generated copy applies the epilogue to.
    let mut sizes = vec![splits * per * 4];
    if splits > MAX_TRIP {
        sizes.push(per * 4);
    }
    if epilogue.is_some() {
        sizes.push(total * 4);
    }
    let scratch = rec.scratch(&sizes)?;
    let partial = MatmulParams {
        k_chunk: limit as u32,
        batch_count: batch,
        out_offset: 0,
        out_n: n,
        accumulate: 0,
        ..*params
    };
    let groups = [columns[0], columns[1], batch * splits as u32];
    let buffers = vec![scratch[0], a, b];
    generated::push_stored(rec, entry, None, &partial, buffers, groups);
    let (sums, k_chunk) = if splits > MAX_TRIP {
        let shape = [splits, per];
        reduce::reduce(rec, Reduction::Sum, scratch[0], &shape, &[0], scratch[1])?;
        (scratch[1], params.k)
    } else {
        (scratch[0], limit as u32)
    };
    let mut sum = MatmulParams {
        k_chunk,
        batch_count: batch,
        ..*params
    };
    let dst = match epilogue {
        Some(_) => {
            sum.out_offset = 0;
            *scratch.last().expect("allocated")
        }
        None => out,
    };
    let groups = rec.linear_groups(total);
    rec.push(kernels::MATMUL_SUM_SPLITS, &sum, vec![dst, sums], groups);
    if epilogue.is_some() {
        let flat = &[1][..];
        let to = (params.out_offset as usize, flat);
        generated::record_copy(rec, dst, out, &[total], (0, flat), to, epilogue);
    }
    rec.free_all(scratch);
    Ok(())
}
