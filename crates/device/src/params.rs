//! Kernel parameter structs, each the `#[repr(C)]` twin of a WGSL struct that names it, and
//! the constructors that fill them from tensor shapes.

use bytemuck::{Pod, Zeroable};
use wgrad_graph::op::{Conv2dSpec, Pool2dSpec};
use wgrad_graph::shape::MAX_RANK;

/// `shaders/elementwise.wgsl`'s `EwParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct EwParams {
    /// Number of output elements.
    pub n: u32,
    /// Rank of the output.
    pub rank: u32,
    /// Slope of `LeakyRelu`; 0 for every other op.
    pub alpha: f32,
    /// 1 when every input has the output's shape, so each is read at the output's index.
    pub flat: u32,
    /// Output shape.
    pub shape: [u32; MAX_RANK],
    /// Element strides of input `a` along each output dimension (0 where broadcast).
    pub sa: [u32; MAX_RANK],
    /// Element strides of input `b` along each output dimension (0 where broadcast).
    pub sb: [u32; MAX_RANK],
    /// Element strides of input `c` along each output dimension (0 where broadcast).
    pub sc: [u32; MAX_RANK],
}

/// `shaders/index.wgsl`'s `IndexParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct IndexParams {
    /// Number of output elements.
    pub n: u32,
    /// The row length for `gather`, the classes for `one_hot`.
    pub count: u32,
    /// The size indices must stay below: the table's rows, the classes.
    pub bound: u32,
    /// The op's code in the index flags (see `family/index.rs`).
    pub code: u32,
    /// The index positions one scatter-add dispatch walks: `begin..end`.
    pub begin: u32,
    /// End of the walked positions.
    pub end: u32,
    /// Padding to 16 bytes.
    pub pad: [u32; 2],
}

/// `shaders/reduce.wgsl`'s `ReduceParams`: one pass of a reduction (see `reduce.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ReduceParams {
    /// Number of outputs.
    pub n: u32,
    /// Elements combined into each output.
    pub count: u32,
    /// Invocations per output; each takes every `parts`-th element.
    pub parts: u32,
    /// Number of kept axes in `kept`.
    pub kept_rank: u32,
    /// Sizes of the kept axes, outermost first.
    pub kept: [u32; 4],
    /// Element strides of the kept axes.
    pub kept_strides: [u32; 4],
    /// Length of the outer reduced level.
    pub r_len: u32,
    /// Element stride of the outer reduced level.
    pub r_stride: u32,
    /// Length of the inner reduced level.
    pub l_len: u32,
    /// Element stride of the inner reduced level.
    pub l_stride: u32,
    /// Share `j`'s first element is `j · first_step`.
    pub first_step: u32,
    /// Elements between one element of a share and the next.
    pub k_step: u32,
    /// Elements from a share's first to its end (at most; `count` ends every share).
    pub span: u32,
    /// `k_step % l_len`: how far the inner position moves from one element to the next.
    pub dt: u32,
    /// How far the offset moves from one element to the next.
    pub step: u32,
    /// How far the offset moves more when the inner position wraps (modulo 2^32).
    pub wrap: u32,
    /// 1 when neighbouring invocations take neighbouring outputs, 0 neighbouring shares.
    pub outputs_fastest: u32,
    /// `argmax`: 1 when the values come with their indices (a pass over partial results).
    pub indexed: u32,
}

/// `shaders/layout.wgsl`'s `CopyParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct CopyParams {
    /// Number of elements to copy or fill.
    pub n: u32,
    /// Rank of the copied view.
    pub rank: u32,
    /// Element offset in the source of the view's first element.
    pub src_offset: u32,
    /// Element offset in the destination of the first element written.
    pub dst_offset: u32,
    /// The 32-bit word `fill` writes (`f32` bits or a `u32`).
    pub value: u32,
    /// Unused; matches the WGSL struct's `_pad0`..`_pad2`.
    pub pad: [u32; 3],
    /// Shape of the copied view.
    pub shape: [u32; MAX_RANK],
    /// Element strides of the source along each view dimension.
    pub src_strides: [u32; MAX_RANK],
    /// Element strides of the destination along each view dimension.
    pub dst_strides: [u32; MAX_RANK],
}

/// `shaders/matmul.wgsl`'s `MatmulParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatmulParams {
    /// Rows of `a` and of the output.
    pub m: u32,
    /// Columns of `b` and of the output.
    pub n: u32,
    /// Columns of `a`, rows of `b`.
    pub k: u32,
    /// Number of batch dimensions of the output.
    pub batch_rank: u32,
    /// Batch dimensions of the output.
    pub batch: [u32; 4],
    /// Element strides of `a`'s matrices along each output batch dimension (0 where broadcast).
    pub sa: [u32; 4],
    /// Element strides of `b`'s matrices along each output batch dimension (0 where broadcast).
    pub sb: [u32; 4],
    /// `_out` kernels: index of the output's first element.
    pub out_offset: u32,
    /// `_out` kernels: values per output row, the first `out_n` of the `n` columns computed.
    pub out_n: u32,
    /// `_out` kernels: nonzero to add the product to the output.
    pub accumulate: u32,
    /// Nonzero when `a` is stored `[k, m]` and read transposed.
    pub ta: u32,
    /// Nonzero when `b` is stored `[n, k]` and read transposed.
    pub tb: u32,
    /// `_ua` kernels: the first row of A held by the dispatch's uniform windows.
    pub a_row0: u32,
    /// `_ua` kernels: the rows of A the dispatch's windows hold together.
    pub a_rows: u32,
    /// `_ua` kernels: the rows each window holds (whole blocks of the kernel's 8 or 16
    /// rows; the last window may hold fewer).
    pub window_rows: u32,
    /// `_ua` kernels: 0 when `b` is row-major; else `b` is packed in panels of this many
    /// vec4 columns, each panel's `k` rows together (`[panel, k, b_panel]`).
    pub b_panel: u32,
    /// Split-K: 0, or the `k` range of each split (grid z numbers split and matrix).
    pub k_chunk: u32,
    /// Split-K: the matrices per split (the output's batch).
    pub batch_count: u32,
}

/// `shaders/random.wgsl`'s `RandParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct RandParams {
    /// Number of samples.
    pub n: u32,
    /// Low 32 bits of the seed.
    pub seed_lo: u32,
    /// High 32 bits of the seed.
    pub seed_hi: u32,
    /// Unused; matches the WGSL struct's `_pad`.
    pub pad: u32,
}

/// `shaders/conv.wgsl`'s `ConvParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ConvParams {
    /// Batch size.
    pub n: u32,
    /// Input channels.
    pub c: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Output channels.
    pub o: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// Number of channel groups.
    pub groups: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Stride along the height.
    pub sh: u32,
    /// Stride along the width.
    pub sw: u32,
    /// Zero padding on each side along the height.
    pub ph: u32,
    /// Zero padding on each side along the width.
    pub pw: u32,
    /// Dilation along the height.
    pub dh: u32,
    /// Dilation along the width.
    pub dw: u32,
    /// Input channels per group.
    pub cg: u32,
    /// Output channels per group.
    pub og: u32,
    /// The start of the range of the kernel's reduction that the dispatch walks: input
    /// channels of the group (forward), output channels (input gradient), or rows
    /// `image · oh + output row` (weight gradient).
    pub red_begin: u32,
    /// The end of that range.
    pub red_end: u32,
    /// Added to every output index (a part's place in the scratch of a split reduction).
    pub out_base: u32,
    /// Unused; matches the WGSL struct's `_pad`.
    pub pad: u32,
}

impl ConvParams {
    /// From the input `[n, c, h, w]`, output `[n, o, oh, ow]` and weight shapes.
    pub(crate) fn new(spec: &Conv2dSpec, x: &[usize], y: &[usize], w: &[usize]) -> Self {
        let u = |v: usize| v as u32;
        ConvParams {
            n: u(x[0]),
            c: u(x[1]),
            h: u(x[2]),
            w: u(x[3]),
            o: u(y[1]),
            oh: u(y[2]),
            ow: u(y[3]),
            groups: u(spec.groups),
            kh: u(w[2]),
            kw: u(w[3]),
            sh: u(spec.stride[0]),
            sw: u(spec.stride[1]),
            ph: u(spec.padding[0]),
            pw: u(spec.padding[1]),
            dh: u(spec.dilation[0]),
            dw: u(spec.dilation[1]),
            cg: u(x[1] / spec.groups),
            og: u(y[1] / spec.groups),
            red_begin: 0,
            red_end: 0,
            out_base: 0,
            pad: 0,
        }
    }
}

/// `shaders/conv.wgsl`'s `ConvLanesParams`: a convolution with output channels across
/// invocations, reading `[n, ci, h, w]` and writing `[n, co, oh, ow]`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ConvLanesParams {
    /// Batch size.
    pub n: u32,
    /// Channels of the tensor read.
    pub ci: u32,
    /// Height of the tensor read.
    pub h: u32,
    /// Width of the tensor read.
    pub w: u32,
    /// Channels of the tensor written.
    pub co: u32,
    /// Height of the tensor written.
    pub oh: u32,
    /// Width of the tensor written.
    pub ow: u32,
    /// Number of channel groups.
    pub groups: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Row stride.
    pub sh: u32,
    /// Column stride.
    pub sw: u32,
    /// Offset of output row 0's window in the rows read.
    pub oy: i32,
    /// Offset of output column 0's window in the columns read.
    pub ox: i32,
    /// Rows read between consecutive kernel rows (negative for a mirrored kernel).
    pub ky_step: i32,
    /// Columns read between consecutive kernel columns.
    pub kx_step: i32,
    /// Channels read per group.
    pub cgi: u32,
    /// Channels written per group.
    pub cgo: u32,
    /// `conv2d_lanes_ua`: the first image held by the uniform window.
    pub image0: u32,
    /// The first input channel of the group this dispatch walks.
    pub c_begin: u32,
    /// The end of the input channels this dispatch walks.
    pub c_end: u32,
    /// Added to every output index (a part's place in the scratch of a split reduction).
    pub out_base: u32,
}

impl ConvLanesParams {
    /// The forward pass: reads x, writes y.
    pub(crate) fn forward(c: &ConvParams) -> Self {
        ConvLanesParams {
            n: c.n,
            ci: c.c,
            h: c.h,
            w: c.w,
            co: c.o,
            oh: c.oh,
            ow: c.ow,
            groups: c.groups,
            kh: c.kh,
            kw: c.kw,
            sh: c.sh,
            sw: c.sw,
            oy: -(c.ph as i32),
            ox: -(c.pw as i32),
            ky_step: c.dh as i32,
            kx_step: c.dw as i32,
            cgi: c.cg,
            cgo: c.og,
            image0: 0,
            c_begin: 0,
            c_end: c.cg,
            out_base: 0,
        }
    }

    /// The input gradient of a stride-1 convolution: reads g, writes dx. Pixel (y, x) of dx
    /// takes g[y + ph − ky·dh, x + pw − kx·dw] · w[ky, kx].
    pub(crate) fn grad_input(c: &ConvParams) -> Self {
        ConvLanesParams {
            n: c.n,
            ci: c.o,
            h: c.oh,
            w: c.ow,
            co: c.c,
            oh: c.h,
            ow: c.w,
            groups: c.groups,
            kh: c.kh,
            kw: c.kw,
            sh: 1,
            sw: 1,
            oy: c.ph as i32,
            ox: c.pw as i32,
            ky_step: -(c.dh as i32),
            kx_step: -(c.dw as i32),
            cgi: c.og,
            cgo: c.cg,
            image0: 0,
            c_begin: 0,
            c_end: c.og,
            out_base: 0,
        }
    }
}

/// `shaders/conv.wgsl`'s `Im2colParams`: unfolds convolution windows into a matrix.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Im2colParams {
    /// Channels of the tensor read.
    pub ci: u32,
    /// Height of the tensor read.
    pub h: u32,
    /// Width of the tensor read.
    pub w: u32,
    /// First image of the chunk unfolded.
    pub image0: u32,
    /// Output width.
    pub ow: u32,
    /// Output pixels.
    pub np: u32,
    /// Output pixels rounded up to a multiple of 4.
    pub pixels: u32,
    /// Rows of the unfolded matrix: channels read × kernel taps.
    pub taps: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Row stride.
    pub sh: u32,
    /// Column stride.
    pub sw: u32,
    /// Offset of output row 0's window in the rows read.
    pub oy: i32,
    /// Offset of output column 0's window in the columns read.
    pub ox: i32,
    /// Rows read between consecutive kernel rows (negative for a mirrored kernel).
    pub ky_step: i32,
    /// Columns read between consecutive kernel columns.
    pub kx_step: i32,
    /// Elements between consecutive images of the unfolded matrix.
    pub b_stride: u32,
    /// Elements between consecutive taps.
    pub r_stride: u32,
    /// Elements between consecutive pixels.
    pub p_stride: u32,
    /// Unused; matches the WGSL struct's `_pad`.
    pub pad: u32,
}

/// `shaders/matmul_ua.wgsl`'s `ConvWindowParams`: a convolution (one group) as a product of
/// the weights, `[co, k]` rows through uniform windows, and the input read in place where its
/// unfolding would hold each value (`conv_windows.rs`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct ConvWindowParams {
    /// The first output channel (row of the weights) the dispatch's windows hold.
    pub a_row0: u32,
    /// Output channels the dispatch's windows hold together.
    pub a_rows: u32,
    /// Output channels each window holds.
    pub window_rows: u32,
    /// Taps per output channel (input channels · kernel taps), a multiple of 4.
    pub k: u32,
    /// Columns of the dispatch: its images · output pixels.
    pub cols: u32,
    /// The dispatch's first image.
    pub image0: u32,
    /// Output pixels per image.
    pub np: u32,
    /// Output width.
    pub ow: u32,
    /// Output channels.
    pub co: u32,
    /// Elements per image of the tensor read.
    pub image: u32,
    /// Height of the tensor read.
    pub h: u32,
    /// Width of the tensor read.
    pub w: u32,
    /// Row stride.
    pub sh: u32,
    /// Column stride.
    pub sw: u32,
    /// Kernel height.
    pub kh: u32,
    /// Kernel width.
    pub kw: u32,
    /// Offset of output row 0's window in the rows read.
    pub oy: i32,
    /// Offset of output column 0's window in the columns read.
    pub ox: i32,
    /// Rows read between consecutive kernel rows (negative for a mirrored kernel).
    pub ky_step: i32,
    /// Columns read between consecutive kernel columns.
    pub kx_step: i32,
    /// `conv_grad_weight_ua`: images in the dispatch.
    pub images: u32,
    /// `conv_grad_weight_ua`: images per window.
    pub window_images: u32,
    /// `conv_grad_weight_ua`: images per part (grid z).
    pub part_images: u32,
    /// `conv_grad_weight_ua`: the output slot of the dispatch's first part.
    pub part0: u32,
    /// `conv_grad_weight_ua`: output height.
    pub oh: u32,
    /// Unused; matches the WGSL struct's padding.
    pub pad: [u32; 3],
}

/// `shaders/pool.wgsl`'s `PoolParams`.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct PoolParams {
    /// Number of invocations: output elements for the forward passes, input elements for
    /// the gradients.
    pub total: u32,
    /// Input height.
    pub h: u32,
    /// Input width.
    pub w: u32,
    /// Output height.
    pub oh: u32,
    /// Output width.
    pub ow: u32,
    /// Window height.
    pub kh: u32,
    /// Window width.
    pub kw: u32,
    /// Stride along the height.
    pub sh: u32,
    /// Stride along the width.
    pub sw: u32,
    /// Padding on each side along the height.
    pub ph: u32,
    /// Padding on each side along the width.
    pub pw: u32,
    /// 1 when padded positions count in an average's divisor.
    pub include_pad: u32,
}

impl PoolParams {
    /// `total` invocations over input `[.., h, w]` pooled to `[.., oh, ow]`.
    pub(crate) fn new(spec: &Pool2dSpec, total: usize, x: &[usize], y: &[usize]) -> Self {
        let u = |v: usize| v as u32;
        PoolParams {
            total: u(total),
            h: u(x[2]),
            w: u(x[3]),
            oh: u(y[2]),
            ow: u(y[3]),
            kh: u(spec.kernel[0]),
            kw: u(spec.kernel[1]),
            sh: u(spec.stride[0]),
            sw: u(spec.stride[1]),
            ph: u(spec.padding[0]),
            pw: u(spec.padding[1]),
            include_pad: u(spec.count_include_pad as usize),
        }
    }
}

/// Most scalar constants one fused kernel reads from its parameters (`MAX_FUSED_CONSTANTS`
/// in the WGSL prelude).
pub const MAX_FUSED_CONSTANTS: usize = 16;

/// `FusedParams` of the generated elementwise kernels (`fused_source`).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct FusedParams {
    /// Number of output elements.
    pub n: u32,
    /// Padding to 16 bytes.
    pub pad: [u32; 3],
    /// The group's scalar constants (`p.c[slot]` in the generated source).
    pub constants: [f32; MAX_FUSED_CONSTANTS],
}

/// `GenCopyParams` of the generated strided copies.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct GenCopyParams {
    /// Number of elements copied.
    pub n: u32,
    /// Element offset in the source of the view's first element.
    pub src_offset: u32,
    /// Element offset in the destination of the first element written.
    pub dst_offset: u32,
    /// Padding to 16 bytes.
    pub pad: u32,
}

/// A shape or stride list as a fixed-size `u32` array (unused entries 0).
pub(crate) fn dims<const N: usize>(v: &[usize]) -> [u32; N] {
    let mut out = [0u32; N];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = x as u32;
    }
    out
}
