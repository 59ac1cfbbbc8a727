//! The closed set of primitive ops. Everything about a primitive that is not a backend's lowering
//! or its derivative sits here: name, arity, output-shape rule, kernel family and entry point.
//!
//! Composite ops (softmax, losses, …) are `Tensor` methods that combine these and need neither a
//! kernel nor a backward rule of their own.

use crate::shape::{broadcast_shapes, numel, MAX_RANK};

/// Element type of a tensor: `f32` for compute, `u32` for indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    U32,
}

impl DType {
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
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Sign,
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    /// GELU in its exact form, `x·Φ(x)`.
    Gelu,
    /// `x` for positive inputs, `slope·x` otherwise.
    LeakyRelu(f32),
}

/// Elementwise functions of two broadcast `f32` inputs. Comparisons give 0.0 or 1.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Maximum,
    Minimum,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Eq | Ne | Lt | Le | Gt | Ge)
    }
}

/// How a reduction combines values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// Shader file a kernel lives in; the device crate maps each to its WGSL source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Elementwise,
    Reduce,
    Matmul,
    Layout,
    Index,
    Random,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Elementwise,
        Family::Reduce,
        Family::Matmul,
        Family::Layout,
        Family::Index,
        Family::Random,
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
        }
    }
}

/// A primitive op. Inputs are the node's input tensors; parameters that fix the output shape
/// are carried in the variant.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    Full {
        value: f32,
        shape: Vec<usize>,
        dtype: DType,
    },
    /// Uniform samples in `[0, 1)` drawn from a counter-based hash of `seed` and the index,
    /// so every backend produces the same bits.
    RandUniform {
        seed: u64,
        shape: Vec<usize>,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `cond != 0 ? a : b`, all three broadcast together.
    Where,
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },
    /// Index of the largest value along `axis` (the first one on ties), as `u32`.
    Argmax {
        axis: usize,
        keepdim: bool,
    },
    /// `[..., m, k] x [..., k, n] -> [..., m, n]`, batch dimensions broadcast.
    MatMul,
    Reshape {
        shape: Vec<usize>,
    },
    Permute {
        perm: Vec<usize>,
    },
    /// Broadcast to a larger shape (NumPy rules).
    Expand {
        shape: Vec<usize>,
    },
    /// `ranges[d] = (start, end)` along every dimension, step 1.
    Slice {
        ranges: Vec<(usize, usize)>,
    },
    /// Zero padding: `before[d]` and `after[d]` elements around every dimension.
    Pad {
        before: Vec<usize>,
        after: Vec<usize>,
    },
    /// Joins its inputs along `axis`.
    Concat {
        axis: usize,
    },
    /// Rows of a table picked by `u32` indices: `table[v, ...]`, `idx[...]` → `[idx..., ...]`.
    /// An index past the table gives a row of zeros.
    Gather,
    /// `u32` labels `[...]` → `f32` `[..., classes]`; a label past `classes` gives a zero row.
    OneHot {
        classes: usize,
    },
    /// Converts between `f32` and `u32` (truncating toward zero; negatives become 0).
    Cast {
        to: DType,
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
            Op::MatMul => "matmul",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Expand { .. } => "expand",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::Gather => "gather",
            Op::OneHot { .. } => "one_hot",
            Op::Cast { .. } => "cast",
        }
    }

    /// Whether gradients flow through this op. Non-differentiable ops cut the graph: their
    /// outputs never require a gradient.
    pub fn differentiable(&self) -> bool {
        match self {
            Op::Full { .. } | Op::RandUniform { .. } => false,
            Op::Binary(b) => !b.is_comparison(),
            Op::Argmax { .. } | Op::OneHot { .. } | Op::Cast { .. } => false,
            Op::Unary(_)
            | Op::Where
            | Op::Reduce { .. }
            | Op::MatMul
            | Op::Reshape { .. }
            | Op::Permute { .. }
            | Op::Expand { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Gather => true,
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
            Op::MatMul => (Family::Matmul, &["matmul"]),
            Op::Reshape { .. } => (Family::Layout, &[]),
            Op::Permute { .. } | Op::Expand { .. } | Op::Slice { .. } | Op::Concat { .. } => {
                (Family::Layout, &["copy"])
            }
            Op::Pad { .. } => (Family::Layout, &["fill", "copy"]),
            Op::Gather => (Family::Index, &["gather"]),
            Op::OneHot { .. } => (Family::Index, &["one_hot"]),
            Op::Cast { .. } => (Family::Index, &["cast_f32_u32", "cast_u32_f32"]),
        };
        (family, entries.iter().map(|e| e.to_string()).collect())
    }

    /// Output shape and dtype from the inputs', or a message saying what is wrong.
    pub fn infer(&self, inputs: &[Meta]) -> Result<Meta, String> {
        let name = self.name();
        let arity_ok = match self {
            Op::Full { .. } | Op::RandUniform { .. } => inputs.is_empty(),
            Op::Binary(_) | Op::MatMul | Op::Gather => inputs.len() == 2,
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
            Op::MatMul => {
                need_f32(0)?;
                need_f32(1)?;
                let (a, b) = (&inputs[0].0, &inputs[1].0);
                if a.len() < 2 || b.len() < 2 {
                    return Err(format!(
                        "matmul: both inputs need at least 2 dimensions, got {a:?} and {b:?}"
                    ));
                }
                let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
                let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
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
            Op::Cast { to } => (inputs[0].0.clone(), *to),
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
