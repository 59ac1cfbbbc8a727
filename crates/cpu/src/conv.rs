//! Convolution and pooling as direct loops over the definitions.

use wgrad_graph::op::{Conv2dSpec, Pool2dSpec};

/// Dimensions of a convolution: input `[n, c, h, w]`, output `[n, o, oh, ow]`, kernel `k`.
pub struct ConvDims {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel height and width.
    pub k: [usize; 2],
}

impl ConvDims {
    /// Input coordinate read by output `(oy, ox)` at kernel tap `(ky, kx)`, if not padding.
    fn tap(
        &self,
        s: &Conv2dSpec,
        oy: usize,
        ox: usize,
        ky: usize,
        kx: usize,
    ) -> Option<(usize, usize)> {
        let y = (oy * s.stride[0] + ky * s.dilation[0]).checked_sub(s.padding[0])?;
        let x = (ox * s.stride[1] + kx * s.dilation[1]).checked_sub(s.padding[1])?;
        (y < self.h && x < self.w).then_some((y, x))
    }

    /// Calls `f(x_index, y_index, w_index)` for every multiply of the convolution over its
    /// zero-padded input: `x_index` is `None` where the tap reads padding, whose product
    /// counts too (0 · ∞ is NaN, as in every GPU plan, which unfolds or masks to zeros).
    /// Without `padding` those are left out: they only matter when the other factor is not
    /// finite (0 · x is 0 for every finite x).
    fn for_each(
        &self,
        s: &Conv2dSpec,
        padding: bool,
        mut f: impl FnMut(Option<usize>, usize, usize),
    ) {
        let (cg, og) = (self.c / s.groups, self.o / s.groups);
        for n in 0..self.n {
            for o in 0..self.o {
                let g = o / og;
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let yi = ((n * self.o + o) * self.oh + oy) * self.ow + ox;
                        for ci in 0..cg {
                            let c = g * cg + ci;
                            for ky in 0..self.k[0] {
                                for kx in 0..self.k[1] {
                                    let xi = self
                                        .tap(s, oy, ox, ky, kx)
                                        .map(|(y, x)| ((n * self.c + c) * self.h + y) * self.w + x);
                                    let wi = ((o * cg + ci) * self.k[0] + ky) * self.k[1] + kx;
                                    if padding || xi.is_some() {
                                        f(xi, yi, wi);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Element `i` of `v`, or 0 for padding.
fn at(v: &[f32], i: Option<usize>) -> f64 {
    i.map_or(0.0, |i| v[i] as f64)
}

/// `y[n,o,oy,ox] = Σ x[n,c,oy·s+ky·d-p, ox·s+kx·d-p] · w[o,c,ky,kx]` over the group's channels.
pub fn conv2d(s: &Conv2dSpec, d: &ConvDims, x: &[f32], w: &[f32], y: &mut [f32]) {
    let mut acc = vec![0f64; y.len()];
    let padding = !all_finite(w);
    d.for_each(s, padding, |xi, yi, wi| acc[yi] += at(x, xi) * w[wi] as f64);
    store(&acc, y);
}

/// Whether every value is finite (then products with padding's zeros are zeros).
fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// `dx[n,c,y,x] = Σ g[n,o,oy,ox] · w[o,c,ky,kx]` over the group's output channels and the
/// taps, where `oy·s = y + p - ky·d`: the transposed convolution over g zero-padded and
/// zero-dilated, so that taps with no output position count with g = 0 (as on the GPU).
pub fn conv2d_grad_input(s: &Conv2dSpec, d: &ConvDims, g: &[f32], w: &[f32], dx: &mut [f32]) {
    if all_finite(w) {
        // The products at missing positions are zeros: the valid ones, scattered.
        let mut acc = vec![0f64; dx.len()];
        d.for_each(s, false, |xi, yi, wi| {
            acc[xi.expect("no padding taps")] += g[yi] as f64 * w[wi] as f64
        });
        store(&acc, dx);
        return;
    }
    let (cg, og) = (d.c / s.groups, d.o / s.groups);
    // The output position reading input coordinate `i` at tap `k` along one axis.
    let source = |axis: usize, i: usize, k: usize, len: usize| -> Option<usize> {
        let t = (i + s.padding[axis]).checked_sub(k * s.dilation[axis])?;
        (t % s.stride[axis] == 0 && t / s.stride[axis] < len).then_some(t / s.stride[axis])
    };
    let mut at_dx = 0;
    for n in 0..d.n {
        for c in 0..d.c {
            let grp = c / cg;
            let ci = c % cg;
            for y in 0..d.h {
                for x in 0..d.w {
                    let mut acc = 0f64;
                    for o in grp * og..(grp + 1) * og {
                        for ky in 0..d.k[0] {
                            let oy = source(0, y, ky, d.oh);
                            for kx in 0..d.k[1] {
                                let ox = source(1, x, kx, d.ow);
                                let gi = oy
                                    .zip(ox)
                                    .map(|(oy, ox)| ((n * d.o + o) * d.oh + oy) * d.ow + ox);
                                let wi = ((o * cg + ci) * d.k[0] + ky) * d.k[1] + kx;
                                acc += at(g, gi) * w[wi] as f64;
                            }
                        }
                    }
                    dx[at_dx] = acc as f32;
                    at_dx += 1;
                }
            }
        }
    }
}

/// `dw[wi] = Σ x[xi] · g[yi]` over the same index triples as the forward pass.
pub fn conv2d_grad_weight(s: &Conv2dSpec, d: &ConvDims, x: &[f32], g: &[f32], dw: &mut [f32]) {
    let mut acc = vec![0f64; dw.len()];
    let padding = !all_finite(g);
    d.for_each(s, padding, |xi, yi, wi| acc[wi] += at(x, xi) * g[yi] as f64);
    store(&acc, dw);
}

fn store(acc: &[f64], out: &mut [f32]) {
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = a as f32;
    }
}

/// One pooling window: the valid input rows and columns, and the average's divisor.
struct Window {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    divisor: f64,
}

fn window(s: &Pool2dSpec, hw: [usize; 2], oy: usize, ox: usize) -> Window {
    let mut ranges = [0..0, 0..0];
    let (mut full, mut valid) = (1, 1);
    for (d, o) in [(0, oy), (1, ox)] {
        // Window [start, end) in padded coordinates, cut at the right padding's end.
        let start = (o * s.stride[d]) as isize - s.padding[d] as isize;
        let end = (start + s.kernel[d] as isize).min((hw[d] + s.padding[d]) as isize);
        full *= (end - start) as usize;
        let (a, b) = (start.max(0) as usize, (end.max(0) as usize).min(hw[d]));
        valid *= b.saturating_sub(a);
        ranges[d] = a..b.max(a);
    }
    let [rows, cols] = ranges;
    let divisor = if s.count_include_pad { full } else { valid } as f64;
    Window {
        rows,
        cols,
        divisor,
    }
}

/// Calls `f(plane, oy, ox, window)` for every output position.
fn for_windows(
    s: &Pool2dSpec,
    planes: usize,
    hw: [usize; 2],
    out: [usize; 2],
    mut f: impl FnMut(usize, usize, usize, Window),
) {
    for p in 0..planes {
        for oy in 0..out[0] {
            for ox in 0..out[1] {
                f(p, oy, ox, window(s, hw, oy, ox));
            }
        }
    }
}

/// Plane offset of the window's first maximum in row-major order; its first NaN if it holds
/// one, so that max pooling propagates NaN as PyTorch does (a sum of the window, NaN when
/// any value is, finds those windows without a test per value).
fn argmax(x: &[f32], w: usize, win: &Window) -> usize {
    let mut best = (win.rows.start * w + win.cols.start, f32::NEG_INFINITY);
    let mut probe = 0.0f32;
    for r in win.rows.clone() {
        for c in win.cols.clone() {
            let v = x[r * w + c];
            probe += v;
            if v > best.1 {
                best = (r * w + c, v);
            }
        }
    }
    if probe.is_nan() {
        for r in win.rows.clone() {
            for c in win.cols.clone() {
                if x[r * w + c].is_nan() {
                    return r * w + c;
                }
            }
        }
    }
    best.0
}

/// Max pooling of `planes` planes of size `hw` to `out`: each output is its window's maximum.
pub fn max_pool2d(
    s: &Pool2dSpec,
    planes: usize,
    hw: [usize; 2],
    out: [usize; 2],
    x: &[f32],
    y: &mut [f32],
) {
    let plane = hw[0] * hw[1];
    for_windows(s, planes, hw, out, |p, oy, ox, win| {
        let xp = &x[p * plane..(p + 1) * plane];
        y[(p * out[0] + oy) * out[1] + ox] = xp[argmax(xp, hw[1], &win)];
    });
}

/// Adds each output gradient `g` to the input at its window's first maximum in `x`.
pub fn max_pool2d_grad(
    s: &Pool2dSpec,
    planes: usize,
    hw: [usize; 2],
    out: [usize; 2],
    x: &[f32],
    g: &[f32],
    dx: &mut [f32],
) {
    let plane = hw[0] * hw[1];
    let mut acc = vec![0f64; dx.len()];
    for_windows(s, planes, hw, out, |p, oy, ox, win| {
        let at = argmax(&x[p * plane..(p + 1) * plane], hw[1], &win);
        acc[p * plane + at] += g[(p * out[0] + oy) * out[1] + ox] as f64;
    });
    store(&acc, dx);
}

/// Average pooling of `planes` planes of size `hw` to `out`: each output is the sum of its
/// window's inputs divided by the window's divisor.
pub fn avg_pool2d(
    s: &Pool2dSpec,
    planes: usize,
    hw: [usize; 2],
    out: [usize; 2],
    x: &[f32],
    y: &mut [f32],
) {
    let plane = hw[0] * hw[1];
    for_windows(s, planes, hw, out, |p, oy, ox, win| {
        let mut sum = 0f64;
        for r in win.rows.clone() {
            for c in win.cols.clone() {
                sum += x[p * plane + r * hw[1] + c] as f64;
            }
        }
        y[(p * out[0] + oy) * out[1] + ox] = (sum / win.divisor) as f32;
    });
}

/// Spreads each output gradient `g` over its window's inputs, divided by the window's divisor.
pub fn avg_pool2d_grad(
    s: &Pool2dSpec,
    planes: usize,
    hw: [usize; 2],
    out: [usize; 2],
    g: &[f32],
    dx: &mut [f32],
) {
    let plane = hw[0] * hw[1];
    let mut acc = vec![0f64; dx.len()];
    for_windows(s, planes, hw, out, |p, oy, ox, win| {
        let share = g[(p * out[0] + oy) * out[1] + ox] as f64 / win.divisor;
        for r in win.rows.clone() {
            for c in win.cols.clone() {
                acc[p * plane + r * hw[1] + c] += share;
            }
        }
    });
    store(&acc, dx);
}
