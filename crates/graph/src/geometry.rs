//! Window geometry of convolutions and pooling: strides, padding, dilation, groups, and the
//! output sizes they give (PyTorch's rules).

/// Geometry of a 2-D convolution over NCHW input with weights `[out, in/groups, kh, kw]`
/// (PyTorch's layout). Sizes are `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dSpec {
    /// Step between output positions, in input pixels.
    pub stride: [usize; 2],
    /// Zeros added on each side of the input.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, in input pixels (1 for a dense kernel).
    pub dilation: [usize; 2],
    /// Number of channel groups; input and output channels must both divide by it.
    pub groups: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dSpec {
    /// Output height and width for an input and kernel size, or `None` when the (dilated)
    /// kernel does not fit the padded input.
    pub fn output_size(&self, input: [usize; 2], kernel: [usize; 2]) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for d in 0..2 {
            let span = self.dilation[d] * (kernel[d].max(1) - 1) + 1;
            let padded = input[d] + 2 * self.padding[d];
            if padded < span || self.stride[d] == 0 {
                return None;
            }
            out[d] = (padded - span) / self.stride[d] + 1;
        }
        Some(out)
    }
}

/// Geometry of a 2-D pooling window (PyTorch's semantics). `count_include_pad` only matters
/// for average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dSpec {
    /// Window size.
    pub kernel: [usize; 2],
    /// Step between windows, in input pixels.
    pub stride: [usize; 2],
    /// Implicit padding on each side of the input, at most half the window.
    pub padding: [usize; 2],
    /// Round the output size up instead of down, keeping a last partial window.
    pub ceil_mode: bool,
    /// Whether padded positions count in an average's divisor.
    pub count_include_pad: bool,
}

impl Pool2dSpec {
    /// A `k × k` window with stride `k` (the usual non-overlapping pooling).
    pub fn square(k: usize) -> Self {
        Pool2dSpec {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    /// Output height and width, or `None` when the window does not fit.
    pub fn output_size(&self, input: [usize; 2]) -> Option<[usize; 2]> {
        let mut out = [0; 2];
        for d in 0..2 {
            let (k, s, p) = (self.kernel[d], self.stride[d], self.padding[d]);
            if k == 0 || s == 0 || input[d] + 2 * p < k {
                return None;
            }
            let span = input[d] + 2 * p - k;
            let mut o = if self.ceil_mode {
                span.div_ceil(s)
            } else {
                span / s
            } + 1;
            // The last window must start inside the input or its left padding.
            if self.ceil_mode && (o - 1) * s >= input[d] + p {
                o -= 1;
            }
            out[d] = o;
        }
        Some(out)
    }
}

/// Splits a rank-4 shape into (batch, channels, [height, width]).
pub(crate) fn nchw(name: &str, s: &[usize]) -> Result<(usize, usize, [usize; 2]), String> {
    match s {
        [n, c, h, w] => Ok((*n, *c, [*h, *w])),
        _ => Err(format!(
            "{name}: expects a 4-D [batch, channels, height, width] tensor, got {s:?}"
        )),
    }
}

pub(crate) fn check_conv(
    name: &str,
    spec: &Conv2dSpec,
    c: usize,
    o: usize,
    cg: usize,
) -> Result<(), String> {
    let g = spec.groups;
    if g == 0 || !c.is_multiple_of(g) || !o.is_multiple_of(g) || cg * g != c {
        return Err(format!(
            "{name}: {c} input and {o} output channels do not fit groups {g} with {cg} channels per group"
        ));
    }
    if spec.stride.contains(&0) || spec.dilation.contains(&0) {
        return Err(format!(
            "{name}: stride {:?} and dilation {:?} must be positive",
            spec.stride, spec.dilation
        ));
    }
    Ok(())
}

pub(crate) fn check_pool(name: &str, spec: &Pool2dSpec) -> Result<(), String> {
    if spec.kernel.contains(&0) || spec.stride.contains(&0) {
        return Err(format!(
            "{name}: kernel {:?} and stride {:?} must be positive",
            spec.kernel, spec.stride
        ));
    }
    if spec.padding[0] * 2 > spec.kernel[0] || spec.padding[1] * 2 > spec.kernel[1] {
        return Err(format!(
            "{name}: padding {:?} must be at most half the kernel {:?}",
            spec.padding, spec.kernel
        ));
    }
    Ok(())
}
