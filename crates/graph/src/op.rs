//! The closed set of primitive ops and what the graph knows of each: its name, arity,
//! differentiability and index inputs ([`Op::signature`]), and its output-shape rule
//! (`infer.rs`). How an op runs is each backend's business; the graph never names a kernel.
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
    /// The function's name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
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
        }
    }

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
    /// The function's name, as in messages.
    pub fn name(self) -> &'static str {
        match self {
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
        }
    }

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
    /// Rows added into a table of zeros at `u32` indices: `(src [idx..., ...], idx [...])` →
    /// `[rows, ...]`, row `v` the sum, in index order, of the rows of `src` whose index is
    /// `v`: the transpose of [`Op::Gather`], and its gradient. An index past `rows` is an
    /// [`Error::Index`](crate::Error::Index).
    ScatterAdd {
        /// Rows of the table.
        rows: usize,
    },
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

/// How many inputs an op takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exactly(usize),
    /// One or more (concatenation).
    AtLeastOne,
}

/// Where an op's `u32` indices must stay below. Every backend reports an index past the bound
/// as an [`Error::Index`](crate::Error::Index), never as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indices {
    /// Input `input` indexes the rows (axis 0) of input `table`.
    RowsOf {
        /// The input holding the indices.
        input: usize,
        /// The input whose first axis they index.
        table: usize,
    },
    /// Input `input` holds indices below `bound`.
    Below {
        /// The input holding the indices.
        input: usize,
        /// The first index out of range.
        bound: usize,
    },
}

/// What the graph knows of a primitive besides its shape rule (`infer.rs`) and its derivative
/// (`autodiff.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signature {
    /// Name in messages, e.g. `"conv2d"`.
    pub name: &'static str,
    /// How many inputs it takes.
    pub arity: Arity,
    /// Whether gradients flow through it. Non-differentiable ops cut the graph: their outputs
    /// never require a gradient.
    pub differentiable: bool,
    /// The input holding `u32` indices, for ops that index.
    pub indices: Option<Indices>,
}

impl Op {
    /// The op's name, arity, differentiability and index input: one arm per primitive.
    pub fn signature(&self) -> Signature {
        use Arity::Exactly;
        let (name, arity, differentiable) = match self {
            Op::Full { .. } => ("full", Exactly(0), false),
            Op::RandUniform { .. } => ("rand_uniform", Exactly(0), false),
            Op::Unary(u) => (u.name(), Exactly(1), !u.is_test()),
            Op::Binary(b) => (b.name(), Exactly(2), !b.is_comparison()),
            Op::Where => ("where", Exactly(3), true),
            Op::Reduce { op, .. } => match op {
                ReduceOp::Sum => ("sum", Exactly(1), true),
                ReduceOp::Max => ("max", Exactly(1), true),
            },
            Op::Argmax { .. } => ("argmax", Exactly(1), false),
            Op::MatMul { .. } => ("matmul", Exactly(2), true),
            Op::Reshape { .. } => ("reshape", Exactly(1), true),
            Op::Permute { .. } => ("permute", Exactly(1), true),
            Op::Expand { .. } => ("expand", Exactly(1), true),
            Op::Slice { .. } => ("slice", Exactly(1), true),
            Op::Pad { .. } => ("pad", Exactly(1), true),
            Op::Concat { .. } => ("concat", Arity::AtLeastOne, true),
            Op::Gather => {
                let indices = Indices::RowsOf { input: 1, table: 0 };
                return Signature::indexing("gather", Exactly(2), true, indices);
            }
            Op::ScatterAdd { rows } => {
                let indices = Indices::Below {
                    input: 1,
                    bound: *rows,
                };
                return Signature::indexing("scatter_add", Exactly(2), true, indices);
            }
            Op::OneHot { classes } => {
                let indices = Indices::Below {
                    input: 0,
                    bound: *classes,
                };
                return Signature::indexing("one_hot", Exactly(1), false, indices);
            }
            Op::Cast { .. } => ("cast", Exactly(1), false),
            Op::Conv2d(_) => ("conv2d", Exactly(2), true),
            Op::Conv2dGradInput { .. } => ("conv2d_grad_input", Exactly(2), true),
            Op::Conv2dGradWeight { .. } => ("conv2d_grad_weight", Exactly(2), true),
            Op::MaxPool2d(_) => ("max_pool2d", Exactly(1), true),
            // Second derivatives through max pooling are not supported.
            Op::MaxPool2dGrad(_) => ("max_pool2d_grad", Exactly(2), false),
            Op::AvgPool2d(_) => ("avg_pool2d", Exactly(1), true),
            Op::AvgPool2dGrad { .. } => ("avg_pool2d_grad", Exactly(1), true),
        };
        Signature {
            name,
            arity,
            differentiable,
            indices: None,
        }
    }

    /// Name used in messages.
    pub fn name(&self) -> &'static str {
        self.signature().name
    }

    /// Whether gradients flow through this op (see [`Signature::differentiable`]).
    pub fn differentiable(&self) -> bool {
        self.signature().differentiable
    }

    /// The input holding `u32` indices and the size they must stay below, for ops that index,
    /// given the inputs' shapes.
    pub fn index_bound(&self, inputs: &[&[usize]]) -> Option<(usize, usize)> {
        match self.signature().indices? {
            Indices::RowsOf { input, table } => Some((input, inputs[table][0])),
            Indices::Below { input, bound } => Some((input, bound)),
        }
    }
}

impl Signature {
    fn indexing(name: &'static str, arity: Arity, differentiable: bool, indices: Indices) -> Self {
        Signature {
            name,
            arity,
            differentiable,
            indices: Some(indices),
        }
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
