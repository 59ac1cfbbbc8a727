//! The closed set of primitive ops. Everything about a primitive that is not a backend's lowering
//! or its derivative sits here: name, arity, output-shape rule, kernel family and entry point.
//!
//! Composite ops (softmax, losses, …) are `Tensor` methods that combine these and need neither a
//! kernel nor a backward rule of their own.

use crate::shape::{broadcast_shapes, numel, MAX_RANK};

use crate::geometry::{check_conv, check_pool, nchw};
pub use crate::geometry::{Conv2dSpec, Pool2dSpec};

/// Element type of a tensor: `f32` for compute, `u32` for indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer.
    U32,
}

impl DType {
    /// `"f32"` or `"u32"`, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// Elementwise functions of one `f32` input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// Elementwise `-x`.
    Neg,
    /// Elementwise `e^x`.
    Exp,
    /// Elementwise natural logarithm.
    Log,
    /// Elementwise square root.
    Sqrt,
    /// Elementwise `|x|`.
    Abs,
    /// Elementwise sign: -1, 0 or 1.
    Sign,
    /// Elementwise `max(x, 0)`.
    Relu,
    /// Elementwise `1 / (1 + e^-x)`.
    Sigmoid,
    /// Elementwise hyperbolic tangent.
    Tanh,
    /// Elementwise Gauss error function.
    Erf,
    /// GELU in its exact form, `x·Φ(x)`.
    Gelu,
    /// `x` for positive inputs, `slope·x` otherwise.
    LeakyRelu(f32),
}

/// Elementwise functions of two broadcast `f32` inputs. Comparisons give 0.0 or 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// Elementwise `a + b`.
    Add,
    /// Elementwise `a - b`.
    Sub,
    /// Elementwise `a * b`.
    Mul,
    /// Elementwise `a / b`.
    Div,
    /// Elementwise `a` to the power `b`.
    Pow,
    /// Elementwise `max(a, b)`.
    Maximum,
    /// Elementwise `min(a, b)`.
    Minimum,
    /// Elementwise `a == b`.
    Eq,
    /// Elementwise `a != b`.
    Ne,
    /// Elementwise `a < b`.
    Lt,
    /// Elementwise `a <= b`.
    Le,
    /// Elementwise `a > b`.
    Gt,
    /// Elementwise `a >= b`.
    Ge,
}

impl BinaryOp {
    /// Whether the op is a comparison (output 0.0 or 1.0, not differentiable).
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Eq | Ne | Lt | Le | Gt | Ge)
    }
}

/// How a reduction combines values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// Sum of the values.
    Sum,
    /// Largest of the values.
    Max,
}

/// Shader file a kernel lives in; the device crate maps each to its WGSL source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Unary and binary functions and `where`.
    Elementwise,
    /// Sum and max reductions.
    Reduce,
    /// Batched matrix product.
    Matmul,
    /// Fill and strided copy (full, permute, expand, slice, pad, concat).
    Layout,
    /// Kernels that produce or consume `u32`: argmax, gather, one-hot, casts.
    Index,
    /// Counter-based uniform random numbers.
    Random,
    /// 2-D convolution and its gradients.
    Conv,
    /// 2-D max and average pooling and their gradients.
    Pool,
}

impl Family {
    /// Every family, in declaration order.
    pub const ALL: [Family; 8] = [
        Family::Elementwise,
        Family::Reduce,
        Family::Matmul,
        Family::Layout,
        Family::Index,
        Family::Random,
        Family::Conv,
        Family::Pool,
    ];

    /// File name under `shaders/`.
    pub fn file(self) -> &'static str {
        match self {
            Family::Elementwise => "elementwise.wgsl",
            Family::Reduce => "reduce.wgsl",
            Family::Matmul => "matmul.wgsl",
            Family::Layout => "layout.wgsl",
            Family::Index => "index.wgsl",
            Family::Random => "random.wgsl",
            Family::Conv => "conv.wgsl",
            Family::Pool => "pool.wgsl",
        }
    }
}

/// A primitive op. Inputs are the node's input tensors; parameters that fix the output shape
/// are carried in the variant.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    Full {
        /// The fill value.
        value: f32,
        /// Output shape.
        shape: Vec<usize>,
        /// Output element type.
        dtype: DType,
    },
    /// Uniform samples in `[0, 1)` drawn from a counter-based hash of `seed` and the index,
    /// so every backend produces the same bits.
    RandUniform {
        /// Seed of the hash; the same seed gives the same samples.
        seed: u64,
        /// Output shape.
        shape: Vec<usize>,
    },
    /// An elementwise function of one `f32` input.
    Unary(UnaryOp),
    /// An elementwise function of two `f32` inputs, broadcast together.
    Binary(BinaryOp),
    /// `cond != 0 ? a : b`, all three broadcast together.
    Where,
    /// Combines the values along `axes` with `op`.
    Reduce {
        /// How values combine.
        op: ReduceOp,
        /// Distinct axes to reduce.
        axes: Vec<usize>,
        /// Keep reduced axes as size 1 instead of removing them.
        keepdim: bool,
    },
    /// Index of the largest value along `axis` (the first one on ties), as `u32`.
    Argmax {
        /// Axis to search.
        axis: usize,
        /// Keep the axis as size 1 instead of removing it.
        keepdim: bool,
    },
    /// `op(a) · op(b)` over the last two dimensions, batch dimensions broadcast, where
    /// `op(x)` is x or, when its flag is set, x with its last two axes swapped (read in
    /// place, never copied): `[..., m, k] x [..., k, n] -> [..., m, n]` for plain operands.
    MatMul {
        /// Read `a` (stored `[..., k, m]`) as its transpose.
        ta: bool,
        /// Read `b` (stored `[..., n, k]`) as its transpose.
        tb: bool,
    },
    /// The same elements in row-major order, viewed with a new shape.
    Reshape {
        /// New shape, with the input's number of elements.
        shape: Vec<usize>,
    },
    /// Reorders axes: output axis `d` is input axis `perm[d]`.
    Permute {
        /// A permutation of the input's axes.
        perm: Vec<usize>,
    },
    /// Broadcast to a larger shape (NumPy rules).
    Expand {
        /// Target shape.
        shape: Vec<usize>,
    },
    /// `ranges[d] = (start, end)` along every dimension, step 1.
    Slice {
        /// Half-open `(start, end)` range for each dimension.
        ranges: Vec<(usize, usize)>,
    },
    /// Zero padding: `before[d]` and `after[d]` elements around every dimension.
    Pad {
        /// Zeros before the elements of each dimension.
        before: Vec<usize>,
        /// Zeros after the elements of each dimension.
        after: Vec<usize>,
    },
    /// Joins its inputs along `axis`.
    Concat {
        /// Axis to join along; the inputs must agree on every other dimension.
        axis: usize,
    },
    /// Rows of a table picked by `u32` indices: `table[v, ...]`, `idx[...]` → `[idx..., ...]`.
    /// An index past the table gives a row of zeros.
    Gather,
    /// `u32` labels `[...]` → `f32` `[..., classes]`; a label past `classes` gives a zero row.
    OneHot {
        /// Number of classes (length of the new last axis).
        classes: usize,
    },
    /// Converts between `f32` and `u32` (truncating toward zero; negatives become 0).
    Cast {
        /// Target element type.
        to: DType,
    },
    /// `(x [n, c, h, w], w [o, c/groups, kh, kw]) -> [n, o, oh, ow]` (cross-correlation).
    Conv2d(Conv2dSpec),
    /// Gradient of `Conv2d` with respect to its input: `(g [n, o, oh, ow], w) -> [n, c, h, w]`.
    /// Also the forward pass of a transposed convolution.
    Conv2dGradInput {
        /// Geometry of the forward convolution.
        spec: Conv2dSpec,
        /// Height and width of the forward convolution's input.
        input_hw: [usize; 2],
    },
    /// Gradient of `Conv2d` with respect to its weight: `(x, g) -> [o, c/groups, kh, kw]`.
    Conv2dGradWeight {
        /// Geometry of the forward convolution.
        spec: Conv2dSpec,
        /// Kernel height and width `[kh, kw]`.
        kernel: [usize; 2],
    },
    /// Maximum over each window of `x [n, c, h, w]`; padding never wins.
    MaxPool2d(Pool2dSpec),
    /// Gradient of `MaxPool2d`: `(x, g) -> dx`. Each window's gradient goes to the first
    /// maximum in row-major order within the window.
    MaxPool2dGrad(Pool2dSpec),
    /// Mean over each window of `x [n, c, h, w]`.
    AvgPool2d(Pool2dSpec),
    /// Gradient of `AvgPool2d`: `g -> dx`.
    AvgPool2dGrad {
        /// Geometry of the forward pooling.
        spec: Pool2dSpec,
        /// Height and width of the forward pooling's input.
        input_hw: [usize; 2],
    },
}

/// Shape and dtype of a node.
pub type Meta = (Vec<usize>, DType);

impl Op {
    /// Name used in messages and as the kernel entry point's stem.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Full { .. } => "full",
            Op::RandUniform { .. } => "rand_uniform",
            Op::Unary(u) => match u {
                UnaryOp::Neg => "neg",
                UnaryOp::Exp => "exp",
                UnaryOp::Log => "log",
                UnaryOp::Sqrt => "sqrt",
                UnaryOp::Abs => "abs",
                UnaryOp::Sign => "sign",
                UnaryOp::Relu => "relu",
                UnaryOp::Sigmoid => "sigmoid",
                UnaryOp::Tanh => "tanh",
                UnaryOp::Erf => "erf",
                UnaryOp::Gelu => "gelu",
                UnaryOp::LeakyRelu(_) => "leaky_relu",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "add",
                BinaryOp::Sub => "sub",
                BinaryOp::Mul => "mul",
                BinaryOp::Div => "div",
                BinaryOp::Pow => "pow",
                BinaryOp::Maximum => "maximum",
                BinaryOp::Minimum => "minimum",
                BinaryOp::Eq => "eq",
                BinaryOp::Ne => "ne",
                BinaryOp::Lt => "lt",
                BinaryOp::Le => "le",
                BinaryOp::Gt => "gt",
                BinaryOp::Ge => "ge",
            },
            Op::Where => "where",
            Op::Reduce {
                op: ReduceOp::Sum, ..
            } => "sum",
            Op::Reduce {
                op: ReduceOp::Max, ..
            } => "max",
            Op::Argmax { .. } => "argmax",
            Op::MatMul { .. } => "matmul",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Expand { .. } => "expand",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::Gather => "gather",
            Op::OneHot { .. } => "one_hot",
            Op::Cast { .. } => "cast",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dGradInput { .. } => "conv2d_grad_input",
            Op::Conv2dGradWeight { .. } => "conv2d_grad_weight",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::MaxPool2dGrad(_) => "max_pool2d_grad",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::AvgPool2dGrad { .. } => "avg_pool2d_grad",
        }
    }

    /// Whether gradients flow through this op. Non-differentiable ops cut the graph: their
    /// outputs never require a gradient.
    pub fn differentiable(&self) -> bool {
        match self {
            Op::Full { .. } | Op::RandUniform { .. } => false,
            Op::Binary(b) => !b.is_comparison(),
            Op::Argmax { .. } | Op::OneHot { .. } | Op::Cast { .. } => false,
            // Second derivatives through max pooling are not supported.
            Op::MaxPool2dGrad(_) => false,
            Op::Unary(_)
            | Op::Where
            | Op::Reduce { .. }
            | Op::MatMul { .. }
            | Op::Reshape { .. }
            | Op::Permute { .. }
            | Op::Expand { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Gather
            | Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. }
            | Op::MaxPool2d(_)
            | Op::AvgPool2d(_)
            | Op::AvgPool2dGrad { .. } => true,
        }
    }

    /// Shader family and entry points of the kernels that implement this op on the GPU.
    /// Reshape needs none (a buffer copy); Pad and Concat reuse the layout copy; Cast lists
    /// its `f32 → u32` entry first.
    pub fn kernels(&self) -> (Family, Vec<String>) {
        let (family, entries): (Family, &[&str]) = match self {
            Op::Full { .. } => (Family::Layout, &["fill"]),
            Op::RandUniform { .. } => (Family::Random, &["rand_uniform"]),
            Op::Unary(_) => return (Family::Elementwise, vec![format!("unary_{}", self.name())]),
            Op::Binary(_) => return (Family::Elementwise, vec![format!("binary_{}", self.name())]),
            Op::Where => (Family::Elementwise, &["where_select"]),
            Op::Reduce { .. } => return (Family::Reduce, vec![format!("reduce_{}", self.name())]),
            Op::Argmax { .. } => (Family::Index, &["argmax"]),
            // The vec4 variants serve k and n that are multiples of 4; the tiled one is for
            // GPUs (see crates/device).
            Op::MatMul { .. } => (
                Family::Matmul,
                &[
                    "matmul",
                    "matmul_vec4",
                    "matmul_vec4_wide",
                    "matmul_tiled",
                    "matmul_tn_vec4",
                    "matmul_nt_vec4",
                ],
            ),
            Op::Reshape { .. } => (Family::Layout, &[]),
            Op::Permute { .. } | Op::Expand { .. } | Op::Slice { .. } | Op::Concat { .. } => {
                (Family::Layout, &["copy"])
            }
            Op::Pad { .. } => (Family::Layout, &["fill", "copy"]),
            Op::Gather => (Family::Index, &["gather"]),
            Op::OneHot { .. } => (Family::Index, &["one_hot"]),
            Op::Cast { .. } => (Family::Index, &["cast_f32_u32", "cast_u32_f32"]),
            // `conv2d_lanes` serves the forward pass and stride-1 input gradients whose output
            // channels per group are a multiple of 4.
            Op::Conv2d(_) => (Family::Conv, &["conv2d", "conv2d_lanes", "conv2d_lanes_ua"]),
            Op::Conv2dGradInput { .. } => (
                Family::Conv,
                &["conv2d_grad_input", "conv2d_lanes", "conv2d_lanes_ua"],
            ),
            Op::Conv2dGradWeight { .. } => (Family::Conv, &["conv2d_grad_weight"]),
            // With stride >= kernel the windows are disjoint, and a kernel per window (after the
            // layout family's zero fill) writes each gradient once.
            Op::MaxPool2dGrad(_) => (
                Family::Pool,
                &[
                    "max_pool2d_grad",
                    "max_pool2d_grad_disjoint",
                    "max_pool2d_grad_2x2",
                ],
            ),
            Op::MaxPool2d(_) => (Family::Pool, &["max_pool2d", "max_pool2d_2x2"]),
            Op::AvgPool2d(_) | Op::AvgPool2dGrad { .. } => {
                return (Family::Pool, vec![self.name().to_string()])
            }
        };
        (family, entries.iter().map(|e| e.to_string()).collect())
    }

    /// Output shape and dtype from the inputs', or a message saying what is wrong.
    pub fn infer(&self, inputs: &[Meta]) -> Result<Meta, String> {
        let name = self.name();
        let arity_ok = match self {
            Op::Full { .. } | Op::RandUniform { .. } => inputs.is_empty(),
            Op::Binary(_)
            | Op::MatMul { .. }
            | Op::Gather
            | Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. }
            | Op::MaxPool2dGrad(_) => inputs.len() == 2,
            Op::Where => inputs.len() == 3,
            Op::Concat { .. } => !inputs.is_empty(),
            _ => inputs.len() == 1,
        };
        if !arity_ok {
            return Err(format!("{name}: wrong number of inputs ({})", inputs.len()));
        }
        let need_f32 = |i: usize| -> Result<(), String> {
            if inputs[i].1 == DType::F32 {
                Ok(())
            } else {
                Err(format!(
                    "{name}: input {i} must be f32, got {}",
                    inputs[i].1.name()
                ))
            }
        };
        let out = match self {
            Op::Full { shape, dtype, .. } => (shape.clone(), *dtype),
            Op::RandUniform { shape, .. } => (shape.clone(), DType::F32),
            Op::Unary(_) => {
                need_f32(0)?;
                inputs[0].clone()
            }
            Op::Binary(_) => {
                need_f32(0)?;
                need_f32(1)?;
                let s = broadcast_shapes(&inputs[0].0, &inputs[1].0).ok_or_else(|| {
                    format!(
                        "{name}: shapes {:?} and {:?} do not broadcast",
                        inputs[0].0, inputs[1].0
                    )
                })?;
                (s, DType::F32)
            }
            Op::Where => {
                (0..3).try_for_each(need_f32)?;
                let s = broadcast_shapes(&inputs[0].0, &inputs[1].0)
                    .and_then(|s| broadcast_shapes(&s, &inputs[2].0))
                    .ok_or_else(|| {
                        format!(
                            "where: shapes {:?}, {:?} and {:?} do not broadcast",
                            inputs[0].0, inputs[1].0, inputs[2].0
                        )
                    })?;
                (s, DType::F32)
            }
            Op::Reduce { axes, keepdim, .. } => {
                need_f32(0)?;
                let s = &inputs[0].0;
                check_axes(name, axes, s.len())?;
                (reduced_shape(s, axes, *keepdim), DType::F32)
            }
            Op::Argmax { axis, keepdim } => {
                need_f32(0)?;
                let s = &inputs[0].0;
                check_axes(name, &[*axis], s.len())?;
                if s[*axis] == 0 {
                    return Err(format!("argmax: axis {axis} of shape {s:?} is empty"));
                }
                (reduced_shape(s, &[*axis], *keepdim), DType::U32)
            }
            Op::MatMul { ta, tb } => {
                need_f32(0)?;
                need_f32(1)?;
                let (a, b) = (&inputs[0].0, &inputs[1].0);
                if a.len() < 2 || b.len() < 2 {
                    return Err(format!(
                        "matmul: both inputs need at least 2 dimensions, got {a:?} and {b:?}"
                    ));
                }
                let (mut m, mut k) = (a[a.len() - 2], a[a.len() - 1]);
                let (mut k2, mut n) = (b[b.len() - 2], b[b.len() - 1]);
                if *ta {
                    (m, k) = (k, m);
                }
                if *tb {
                    (k2, n) = (n, k2);
                }
                if k != k2 {
                    return Err(format!(
                        "matmul: inner dimensions differ: {a:?} x {b:?} ({k} vs {k2})"
                    ));
                }
                let mut s =
                    broadcast_shapes(&a[..a.len() - 2], &b[..b.len() - 2]).ok_or_else(|| {
                        format!("matmul: batch dimensions of {a:?} and {b:?} do not broadcast")
                    })?;
                s.extend([m, n]);
                (s, DType::F32)
            }
            Op::Reshape { shape } => {
                if numel(shape) != numel(&inputs[0].0) {
                    return Err(format!(
                        "reshape: cannot view {:?} ({} elements) as {shape:?} ({} elements)",
                        inputs[0].0,
                        numel(&inputs[0].0),
                        numel(shape)
                    ));
                }
                (shape.clone(), inputs[0].1)
            }
            Op::Permute { perm } => {
                let s = &inputs[0].0;
                let mut seen = vec![false; s.len()];
                let valid = perm.len() == s.len()
                    && perm
                        .iter()
                        .all(|&p| p < s.len() && !std::mem::replace(&mut seen[p], true));
                if !valid {
                    return Err(format!(
                        "permute: {perm:?} is not a permutation of {s:?}'s axes"
                    ));
                }
                (perm.iter().map(|&p| s[p]).collect(), inputs[0].1)
            }
            Op::Expand { shape } => {
                let s = &inputs[0].0;
                if broadcast_shapes(s, shape).as_ref() != Some(shape) {
                    return Err(format!("expand: cannot broadcast {s:?} to {shape:?}"));
                }
                (shape.clone(), inputs[0].1)
            }
            Op::Slice { ranges } => {
                let s = &inputs[0].0;
                let ok = ranges.len() == s.len()
                    && ranges.iter().zip(s).all(|(&(a, b), &d)| a <= b && b <= d);
                if !ok {
                    return Err(format!("slice: ranges {ranges:?} do not fit shape {s:?}"));
                }
                (ranges.iter().map(|&(a, b)| b - a).collect(), inputs[0].1)
            }
            Op::Pad { before, after } => {
                let s = &inputs[0].0;
                if before.len() != s.len() || after.len() != s.len() {
                    return Err(format!(
                        "pad: padding {before:?}/{after:?} does not fit {s:?}"
                    ));
                }
                let shape = (0..s.len()).map(|d| before[d] + s[d] + after[d]).collect();
                (shape, inputs[0].1)
            }
            Op::Concat { axis } => {
                let first = &inputs[0];
                check_axes(name, &[*axis], first.0.len())?;
                let mut shape = first.0.clone();
                shape[*axis] = 0;
                for (s, dt) in inputs {
                    let same_rest = s.len() == first.0.len()
                        && (0..s.len()).all(|d| d == *axis || s[d] == first.0[d]);
                    if !same_rest || *dt != first.1 {
                        return Err(format!(
                            "concat: {:?} ({}) and {s:?} ({}) differ outside axis {axis}",
                            first.0,
                            first.1.name(),
                            dt.name()
                        ));
                    }
                    shape[*axis] += s[*axis];
                }
                (shape, first.1)
            }
            Op::Gather => {
                need_f32(0)?;
                let (table, idx) = (&inputs[0], &inputs[1]);
                if table.0.is_empty() || idx.1 != DType::U32 {
                    return Err(format!(
                        "gather: needs a table of rank >= 1 and u32 indices, got {:?} and {} indices",
                        table.0,
                        idx.1.name()
                    ));
                }
                let mut s = idx.0.clone();
                s.extend_from_slice(&table.0[1..]);
                (s, DType::F32)
            }
            Op::OneHot { classes } => {
                if inputs[0].1 != DType::U32 {
                    return Err("one_hot: labels must be u32".into());
                }
                let mut s = inputs[0].0.clone();
                s.push(*classes);
                (s, DType::F32)
            }
            Op::Cast { to } => {
                if inputs[0].1 == *to {
                    return Err(format!("cast: input is already {}", to.name()));
                }
                (inputs[0].0.clone(), *to)
            }
            Op::Conv2d(spec) => {
                (0..2).try_for_each(need_f32)?;
                let (x, w) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                let (o, cg, k) = nchw(name, w)?;
                check_conv(name, spec, c, o, cg)?;
                let out = spec.output_size(hw, k).ok_or_else(|| {
                    format!("conv2d: kernel {k:?} (dilation {:?}) does not fit input {x:?} with padding {:?}", spec.dilation, spec.padding)
                })?;
                (vec![n, o, out[0], out[1]], DType::F32)
            }
            Op::Conv2dGradInput { spec, input_hw } => {
                (0..2).try_for_each(need_f32)?;
                let (g, w) = (&inputs[0].0, &inputs[1].0);
                let (n, o, ohw) = nchw(name, g)?;
                let (o2, cg, k) = nchw(name, w)?;
                if o != o2 {
                    return Err(format!(
                        "{name}: gradient {g:?} has {o} channels but weight {w:?} has {o2} outputs"
                    ));
                }
                let c = cg * spec.groups;
                check_conv(name, spec, c, o, cg)?;
                if spec.output_size(*input_hw, k) != Some(ohw) {
                    return Err(format!("{name}: input size {input_hw:?} does not produce output {ohw:?} with kernel {k:?} and {spec:?}"));
                }
                (vec![n, c, input_hw[0], input_hw[1]], DType::F32)
            }
            Op::Conv2dGradWeight { spec, kernel } => {
                (0..2).try_for_each(need_f32)?;
                let (x, g) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                let (n2, o, ohw) = nchw(name, g)?;
                if n != n2 || spec.groups == 0 || !c.is_multiple_of(spec.groups) {
                    return Err(format!(
                        "{name}: input {x:?} and gradient {g:?} do not fit groups {}",
                        spec.groups
                    ));
                }
                let cg = c / spec.groups;
                check_conv(name, spec, c, o, cg)?;
                if spec.output_size(hw, *kernel) != Some(ohw) {
                    return Err(format!(
                        "{name}: input {x:?} and kernel {kernel:?} do not produce gradient {g:?}"
                    ));
                }
                (vec![o, cg, kernel[0], kernel[1]], DType::F32)
            }
            Op::MaxPool2d(spec) | Op::AvgPool2d(spec) => {
                need_f32(0)?;
                let x = &inputs[0].0;
                let (n, c, hw) = nchw(name, x)?;
                check_pool(name, spec)?;
                let out = spec.output_size(hw).ok_or_else(|| {
                    format!(
                        "{name}: window {:?} does not fit input {x:?} with padding {:?}",
                        spec.kernel, spec.padding
                    )
                })?;
                (vec![n, c, out[0], out[1]], DType::F32)
            }
            Op::MaxPool2dGrad(spec) => {
                (0..2).try_for_each(need_f32)?;
                let (x, g) = (&inputs[0].0, &inputs[1].0);
                let (n, c, hw) = nchw(name, x)?;
                check_pool(name, spec)?;
                let out = spec.output_size(hw);
                if out.map(|o| vec![n, c, o[0], o[1]]).as_ref() != Some(g) {
                    return Err(format!(
                        "{name}: gradient {g:?} does not match pooling {x:?}"
                    ));
                }
                (x.clone(), DType::F32)
            }
            Op::AvgPool2dGrad { spec, input_hw } => {
                need_f32(0)?;
                let g = &inputs[0].0;
                let (n, c, ohw) = nchw(name, g)?;
                check_pool(name, spec)?;
                if spec.output_size(*input_hw) != Some(ohw) {
                    return Err(format!(
                        "{name}: input size {input_hw:?} does not pool to {g:?}"
                    ));
                }
                (vec![n, c, input_hw[0], input_hw[1]], DType::F32)
            }
        };
        if out.0.len() > MAX_RANK || inputs.iter().any(|i| i.0.len() > MAX_RANK) {
            return Err(format!(
                "{name}: tensors of rank above {MAX_RANK} are not supported"
            ));
        }
        Ok(out)
    }
}

fn check_axes(name: &str, axes: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    for &a in axes {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return Err(format!("{name}: axes {axes:?} are invalid for rank {rank}"));
        }
    }
    Ok(())
}

/// Shape after reducing `axes` (kept as size 1 when `keepdim`).
pub fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(shape.len());
    for (d, &n) in shape.iter().enumerate() {
        if !axes.contains(&d) {
            out.push(n);
        } else if keepdim {
            out.push(1);
        }
    }
    out
}
