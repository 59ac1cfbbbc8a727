//! Matrix products with A read through uniform windows of 64 KiB, for CPU-type adapters
//! (see `shaders/matmul_ua.wgsl`): whether they apply, and recording them. `matmul.rs`
//! chooses among them and the storage kernels.

use wgrad_graph::BufferId;

use super::generated::{self, Epilogue};
use super::layout;
use crate::kernels::{self, Entry, UA_LANES, UA_ROWS, UA_WINDOWS, UA_WINDOW_BYTES};
use crate::params::MatmulParams;
use crate::recorder::Recorder;

/// Records the product `params` describes with A read through uniform windows of 64 KiB
/// (CPU-type adapters; see `shaders::window_source`), each invocation computing
/// `rows` rows (one of [`UA_ROWS`]): each dispatch fills up to
/// [`UA_WINDOWS`] windows with rows of A and multiplies them with all of B; A stored
/// transposed is first transposed into scratch, a B that several dispatches read is first
/// packed in panels (`MatmulParams::b_panel`), and B stored transposed is read in place
/// (the `_nt` kernels). `strided` takes the kernel that stores through an offset and row
/// length. With `texture`, B (or its transpose) is copied into a texture the `_tex` kernels
/// read, through scratch whose rows are padded where the copy needs it (unbatched, unstrided
/// products only). False (nothing recorded) where it does not apply: kernels for GPUs
/// chosen, per-batch A, k or n not multiples of 4, a window holding fewer than `rows` rows of
/// A (k above 2048 for 8 rows, 1024 for 16), or for `texture`, a batch, a strided store or a
/// texture past the adapter's limits.
pub(super) fn matmul_ua(
    rec: &Recorder,
    params: &MatmulParams,
    (a, b, out): (BufferId, BufferId, BufferId),
    (strided, rows, texture): (bool, u32, bool),
    epilogue: Option<Epilogue<'_>>,
) -> bool {
    const WINDOW: u64 = UA_WINDOW_BYTES;
    let (m, n, k) = (params.m, params.n, params.k);
    let rank = params.batch_rank as usize;
    let window_rows = window_rows(k, rows);
    if !windows_fit(rec, params, rows) {
        return false;
    }
    let nt = params.tb != 0;
    let ((texels, b_rows), b_cols) = (texture_shape(params), if nt { k } else { n });
    let texture = match texture {
        false => None,
        true if !texture_fits(rec, params, strided) => return false,
        true => Some(rec.texture(texels, b_rows, 4).expect("within the limits")),
    };
    let padded = texture.is_some() && texels * 4 != b_cols;
    let used = (m.div_ceil(window_rows) as usize).min(UA_WINDOWS);
    let batch: u32 = params.batch[..rank].iter().product();
    let per_dispatch = window_rows * used as u32;
    // B read by more than one dispatch is first packed in panels of one workgroup's
    // columns, each panel's rows together, so that a workgroup reads its panel as one
    // contiguous run (docs/performance.md).
    let width = 4 * UA_LANES;
    let pack = batch == 1 && m > per_dispatch && !nt && texture.is_none();
    // Scratch: the windows; A stored [k, m] transposed once, whose rows the windows copy;
    // B packed.
    let (m_, n_, k_) = (m as usize, n as usize, k as usize);
    let mut sizes = vec![WINDOW as usize; used];
    if params.ta != 0 {
        sizes.push(m_ * k_ * 4);
    }
    if pack {
        sizes.push(n.div_ceil(width) as usize * k_ * width as usize * 4);
    }
    if padded {
        sizes.push(texels as usize * 16 * b_rows as usize);
    }
    let Some(mut scratch) = rec.alloc_all(&sizes) else {
        return false;
    };
    let staged = padded.then(|| scratch.pop().expect("allocated"));
    let packed = pack.then(|| scratch.pop().expect("allocated"));
    let transposed = (params.ta != 0).then(|| scratch.pop().expect("allocated"));
    let windows = scratch;
    // Recorded only once all scratch is in hand, so a refusal records nothing.
    if let Some(pb) = packed {
        // Whole panels, then the last one's columns.
        let (w, full) = (width as usize, n_ / width as usize);
        let to = (0, &[w, k_ * w, 1][..]);
        layout::copy_strided(rec, b, pb, &[k_, full, w], (0, &[n_, w, 1]), to);
        if n_ % w != 0 {
            let to = (full * k_ * w, &[w, 1][..]);
            layout::copy_strided(rec, b, pb, &[k_, n_ % w], (full * w, &[n_, 1]), to);
        }
    }
    if let Some(t) = transposed {
        layout::copy_strided(rec, a, t, &[m_, k_], (0, &[1, m_]), (0, &[k_, 1]));
    }
    if let Some(texture) = &texture {
        if let Some(s) = staged {
            let (r, c) = (b_rows as usize, b_cols as usize);
            layout::copy_strided(
                rec,
                b,
                s,
                &[r, c],
                (0, &[c, 1]),
                (0, &[texels as usize * 4, 1]),
            );
        }
        rec.copy_to_texture(staged.unwrap_or(b), texture);
    }
    let a_rows = transposed.unwrap_or(a);
    let entry = match texture {
        Some(_) => ua_texture_entry(nt, rows),
        None => ua_entry(strided, nt, rows),
    };
    let b = packed.unwrap_or(b);
    for row0 in (0..m).step_by(per_dispatch as usize) {
        let count = per_dispatch.min(m - row0);
        for (w, &window) in windows.iter().enumerate() {
            let first = row0 + w as u32 * window_rows;
            if first >= row0 + count {
                break;
            }
            let rows = window_rows.min(row0 + count - first);
            let bytes = rows as u64 * k as u64 * 4;
            rec.copy(a_rows, first as u64 * k as u64 * 4, window, bytes);
        }
        let p = MatmulParams {
            a_row0: row0,
            a_rows: count,
            window_rows,
            b_panel: if packed.is_some() { UA_LANES } else { 0 },
            ..*params
        };
        // Bindings: out, window 0, B, windows 1..; unused ones repeat window 0.
        let mut buffers = vec![out, windows[0], b];
        buffers.extend((1..UA_WINDOWS).map(|w| *windows.get(w).unwrap_or(&windows[0])));
        let groups = [count.div_ceil(rows), (n / 4).div_ceil(UA_LANES), batch];
        let bindings = (buffers, texture.clone());
        generated::push_stored_textured(rec, entry, epilogue, &p, bindings, groups);
    }
    // Work recorded later runs after these dispatches, so the scratch (and the texture) can
    // be reused.
    let scratch = windows.into_iter().chain(transposed).chain(packed);
    rec.free_all(scratch.chain(staged));
    true
}

/// Whether the `_tex` kernels can run `params` where the uniform windows can (see
/// [`matmul_ua`]): unbatched, unstrided, and B's texture within the adapter's limits.
pub(super) fn texture_fits(rec: &Recorder, params: &MatmulParams, strided: bool) -> bool {
    let rank = params.batch_rank as usize;
    let (texels, b_rows) = texture_shape(params);
    let max = rec.limits().max_texture_dimension_2d;
    !strided
        && params.batch[..rank].iter().all(|&d| d == 1)
        && (1..=max).contains(&texels)
        && (1..=max).contains(&b_rows)
}

/// The width and height of B's texture: a texel per vec4 of B's rows ([k, n], or [n, k]
/// stored transposed), rows padded to whole 256-byte rows of a copy.
fn texture_shape(params: &MatmulParams) -> (u32, u32) {
    let (rows, cols) = match params.tb != 0 {
        true => (params.n, params.k),
        false => (params.k, params.n),
    };
    let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT / 16;
    ((cols / 4).next_multiple_of(align), rows)
}

/// The uniform-window kernel reading B from a texture, with blocks of `rows` rows: B plain
/// or stored transposed (`nt`).
pub(super) fn ua_texture_entry(nt: bool, rows: u32) -> Entry {
    match (nt, rows) {
        (false, 8) => kernels::MATMUL_VEC4_UA_TEX,
        (false, 16) => kernels::MATMUL_VEC4_UA16_TEX,
        (true, 8) => kernels::MATMUL_VEC4_NT_UA_TEX,
        (true, 16) => kernels::MATMUL_VEC4_NT_UA16_TEX,
        _ => unreachable!("no texture window kernel: nt {nt}, {rows} rows"),
    }
}

/// The uniform-window kernel with blocks of `rows` rows: plain, `strided`, or reading B
/// transposed (`nt`).
pub(super) fn ua_entry(strided: bool, nt: bool, rows: u32) -> Entry {
    match (strided, nt, rows) {
        (false, false, 8) => kernels::MATMUL_VEC4_UA,
        (true, false, 8) => kernels::MATMUL_VEC4_OUT_UA,
        (false, true, 8) => kernels::MATMUL_VEC4_NT_UA,
        (false, false, 16) => kernels::MATMUL_VEC4_UA16,
        (true, false, 16) => kernels::MATMUL_VEC4_OUT_UA16,
        (false, true, 16) => kernels::MATMUL_VEC4_NT_UA16,
        _ => unreachable!("no uniform-window kernel: strided {strided}, nt {nt}, {rows} rows"),
    }
}

/// Rows of A one uniform window holds: whole blocks of `rows` rows.
pub(super) fn window_rows(k: u32, rows: u32) -> u32 {
    ((UA_WINDOW_BYTES / 4) as u32 / k.max(1)) / rows * rows
}

/// The largest k the uniform-window products take on this adapter (a window holding one
/// block of the smallest height), or None where they never run (kernels for GPUs, or
/// uniform bindings too small or too few).
pub(crate) fn windows_max_k(rec: &Recorder) -> Option<u32> {
    let limits = rec.limits();
    let fit = !rec.gpu_kernels()
        && limits.max_uniform_buffer_binding_size >= UA_WINDOW_BYTES
        && limits.max_uniform_buffers_per_shader_stage >= UA_WINDOWS as u32;
    fit.then(|| (UA_WINDOW_BYTES / 4) as u32 / UA_ROWS[0])
}

/// Whether the uniform-window kernels with blocks of `rows` rows can run `params` (see
/// [`matmul_ua`]).
pub(super) fn windows_fit(rec: &Recorder, params: &MatmulParams, rows: u32) -> bool {
    let rank = params.batch_rank as usize;
    let (m, n, k) = (params.m, params.n, params.k);
    windows_max_k(rec).is_some()
        && params.sa[..rank].iter().all(|&s| s == 0)
        && k % 4 == 0
        && n % 4 == 0
        && k > 0
        && window_rows(k, rows) >= rows
        && m > 0
}
