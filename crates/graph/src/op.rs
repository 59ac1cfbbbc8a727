//! The closed set of primitive ops. Everything about a primitive that is not a backend's lowering
//! or its derivative sits here: name, arity, output-shape rule, kernel family and entry point.
//!
//! Composite ops (softmax, losses, …) are `Tensor` methods that combine these and need neither a
//! kernel nor a backward rule of their own.

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
    /// 1.0 where `x` is NaN, else 0.0 (not differentiable).
    IsNan,
    /// 1.0 where `x` is +∞ or -∞, else 0.0 (not differentiable).
    IsInf,
    /// 1.0 where `x` is neither NaN nor infinite, else 0.0 (not differentiable).
    IsFinite,
}

impl UnaryOp {
    /// Whether the op tests its input (output 0.0 or 1.0, not differentiable).
    pub fn is_test(self) -> bool {
        matches!(self, UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsFinite)
    }
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
    /// Sum, max and argmax reductions.
    Reduce,
    /// Batched matrix product.
    Matmul,
    /// Fill and strided copy (full, permute, expand, slice, pad, concat).
    Layout,
    /// Kernels that produce or consume `u32`: gather, one-hot, casts.
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
    /// An index past the table is an [`Error::Index`](crate::Error::Index).
    Gather,
    /// `u32` labels `[...]` → `f32` `[..., classes]`; a label past `classes` is an
    /// [`Error::Index`](crate::Error::Index).
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
                UnaryOp::IsNan => "isnan",
                UnaryOp::IsInf => "isinf",
                UnaryOp::IsFinite => "isfinite",
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
            Op::Unary(u) => !u.is_test(),
            Op::Binary(b) => !b.is_comparison(),
            Op::Argmax { .. } | Op::OneHot { .. } | Op::Cast { .. } => false,
            // Second derivatives through max pooling are not supported.
            Op::MaxPool2dGrad(_) => false,
            Op::Where
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

    /// The input holding `u32` indices and the size they must stay below, for ops that index
    /// (gather: the table's rows; one-hot: the classes). Every backend reports an index past
    /// it as an [`Error::Index`](crate::Error::Index), never as zeros.
    pub fn index_bound(&self, inputs: &[&[usize]]) -> Option<(usize, usize)> {
        match self {
            Op::Gather => Some((1, inputs[0][0])),
            Op::OneHot { classes } => Some((0, *classes)),
            _ => None,
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
            Op::Argmax { .. } => (Family::Reduce, &["argmax"]),
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
                    "max_pool2d_argmax",
                ],
            ),
            Op::MaxPool2d(_) => (Family::Pool, &["max_pool2d", "max_pool2d_2x2"]),
            Op::AvgPool2d(_) | Op::AvgPool2dGrad { .. } => {
                return (Family::Pool, vec![self.name().to_string()])
            }
        };
        (family, entries.iter().map(|e| e.to_string()).collect())
    }
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
