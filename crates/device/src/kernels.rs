//! The kernel table: every WGSL entry point wgrad dispatches, as a named constant with its
//! family (the file under `shaders/`) and workgroup size, and which entry realises which
//! elementwise function. `cargo test` checks each against the WGSL with naga
//! (`tests/shaders.rs`): that it exists, and that its workgroup size is the one written here.

use wgrad_graph::{BinaryOp, UnaryOp};

/// The shader file a kernel lives in, with the shared prelude in front (see `shaders.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Unary and binary functions and `where`.
    Elementwise,
    /// Sum, max and argmax reductions.
    Reduce,
    /// Batched matrix products, including the uniform-window variants.
    Matmul,
    /// Fill and strided copy.
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

/// One entry point of a family's module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The module it is in.
    pub family: Family,
    /// Its name in the WGSL.
    pub name: &'static str,
    /// Its `@workgroup_size`.
    pub workgroup: [u32; 3],
}

/// Invocations per workgroup of the one-dimensional kernels (`WORKGROUP` in the WGSL prelude).
pub const WORKGROUP: u32 = 64;

/// Declares each entry as `NAME = (Family, "wgsl_name", [x, y, z])`, and [`ALL`] listing them.
macro_rules! entries {
    ($($(#[$doc:meta])* $name:ident = ($family:ident, $wgsl:literal, $wg:expr);)*) => {
        $(#[doc = concat!("Entry point `", $wgsl, "`.")]
        $(#[$doc])* pub const $name: Entry = Entry {
            family: Family::$family,
            name: $wgsl,
            workgroup: $wg,
        };)*
        /// Every entry point wgrad dispatches.
        pub const ALL: &[Entry] = &[$($name),*];
    };
}

const LINEAR: [u32; 3] = [WORKGROUP, 1, 1];

entries! {
    /// Fills a buffer with one 32-bit pattern.
    FILL = (Layout, "fill", LINEAR);
    /// Strided copy with runtime shape and strides (without generated kernels).
    COPY = (Layout, "copy", LINEAR);
    /// Counter-based uniform samples.
    RAND_UNIFORM = (Random, "rand_uniform", LINEAR);
    UNARY_NEG = (Elementwise, "unary_neg", LINEAR);
    UNARY_EXP = (Elementwise, "unary_exp", LINEAR);
    UNARY_LOG = (Elementwise, "unary_log", LINEAR);
    UNARY_SQRT = (Elementwise, "unary_sqrt", LINEAR);
    UNARY_ABS = (Elementwise, "unary_abs", LINEAR);
    UNARY_SIGN = (Elementwise, "unary_sign", LINEAR);
    UNARY_RELU = (Elementwise, "unary_relu", LINEAR);
    UNARY_SIGMOID = (Elementwise, "unary_sigmoid", LINEAR);
    UNARY_TANH = (Elementwise, "unary_tanh", LINEAR);
    UNARY_ERF = (Elementwise, "unary_erf", LINEAR);
    UNARY_GELU = (Elementwise, "unary_gelu", LINEAR);
    UNARY_LEAKY_RELU = (Elementwise, "unary_leaky_relu", LINEAR);
    UNARY_ISNAN = (Elementwise, "unary_isnan", LINEAR);
    UNARY_ISINF = (Elementwise, "unary_isinf", LINEAR);
    UNARY_ISFINITE = (Elementwise, "unary_isfinite", LINEAR);
    BINARY_ADD = (Elementwise, "binary_add", LINEAR);
    BINARY_SUB = (Elementwise, "binary_sub", LINEAR);
    BINARY_MUL = (Elementwise, "binary_mul", LINEAR);
    BINARY_DIV = (Elementwise, "binary_div", LINEAR);
    BINARY_POW = (Elementwise, "binary_pow", LINEAR);
    BINARY_MAXIMUM = (Elementwise, "binary_maximum", LINEAR);
    BINARY_MINIMUM = (Elementwise, "binary_minimum", LINEAR);
    BINARY_EQ = (Elementwise, "binary_eq", LINEAR);
    BINARY_NE = (Elementwise, "binary_ne", LINEAR);
    BINARY_LT = (Elementwise, "binary_lt", LINEAR);
    BINARY_LE = (Elementwise, "binary_le", LINEAR);
    BINARY_GT = (Elementwise, "binary_gt", LINEAR);
    BINARY_GE = (Elementwise, "binary_ge", LINEAR);
    /// `cond != 0 ? a : b`.
    WHERE_SELECT = (Elementwise, "where_select", LINEAR);
    /// One pass of a sum over shares of each output's elements.
    REDUCE_SUM = (Reduce, "reduce_sum", LINEAR);
    /// One pass of a maximum.
    REDUCE_MAX = (Reduce, "reduce_max", LINEAR);
    /// One pass of an argmax.
    ARGMAX = (Reduce, "argmax", LINEAR);
    /// Rows of a table picked by indices.
    GATHER = (Index, "gather", LINEAR);
    /// Labels to one-hot rows.
    ONE_HOT = (Index, "one_hot", LINEAR);
    CAST_F32_U32 = (Index, "cast_f32_u32", LINEAR);
    CAST_U32_F32 = (Index, "cast_u32_f32", LINEAR);
    /// Scalar product, any layout: a 4×4 block per invocation.
    MATMUL = (Matmul, "matmul", [8, 8, 1]);
    /// vec4 rows of B, square workgroups (B past the cache).
    MATMUL_VEC4 = (Matmul, "matmul_vec4", [8, 8, 1]);
    /// vec4 rows of B, wide workgroups (B in cache).
    MATMUL_VEC4_WIDE = (Matmul, "matmul_vec4_wide", [64, 1, 1]);
    /// `matmul_vec4` storing through an offset and row length, optionally accumulating.
    MATMUL_VEC4_OUT = (Matmul, "matmul_vec4_out", [8, 8, 1]);
    /// `matmul_vec4_wide` storing as `matmul_vec4_out` does.
    MATMUL_VEC4_OUT_WIDE = (Matmul, "matmul_vec4_out_wide", [64, 1, 1]);
    /// Workgroup-memory tiles, for GPUs.
    MATMUL_TILED = (Matmul, "matmul_tiled", [16, 16, 1]);
    /// `Aᵀ·B` with A stored `[k, m]`.
    MATMUL_TN_VEC4 = (Matmul, "matmul_tn_vec4", [8, 8, 1]);
    /// `A·Bᵀ` with B stored `[n, k]`.
    MATMUL_NT_VEC4 = (Matmul, "matmul_nt_vec4", [8, 8, 1]);
    /// Adds the partial products of a split k.
    MATMUL_SUM_SPLITS = (Matmul, "matmul_sum_splits", LINEAR);
    /// A read through uniform windows (CPU-type adapters).
    MATMUL_VEC4_UA = (Matmul, "matmul_vec4_ua", [UA_LANES, 1, 1]);
    /// `matmul_vec4_ua` storing as `matmul_vec4_out` does.
    MATMUL_VEC4_OUT_UA = (Matmul, "matmul_vec4_out_ua", [UA_LANES, 1, 1]);
    /// Direct convolution, any geometry.
    CONV2D = (Conv, "conv2d", [16, 1, 1]);
    /// Direct input gradient, any geometry.
    CONV2D_GRAD_INPUT = (Conv, "conv2d_grad_input", [16, 1, 1]);
    /// Direct weight gradient, any geometry.
    CONV2D_GRAD_WEIGHT = (Conv, "conv2d_grad_weight", [16, 1, 1]);
    /// Four output channels per invocation.
    CONV2D_LANES = (Conv, "conv2d_lanes", [8, 1, 1]);
    /// `conv2d_lanes` with the weights read as uniform (CPU-type adapters).
    CONV2D_LANES_UA = (Conv, "conv2d_lanes_ua", [8, 1, 1]);
    /// Unfolds input patches into columns for a product.
    IM2COL = (Conv, "im2col", LINEAR);
    MAX_POOL2D = (Pool, "max_pool2d", LINEAR);
    /// 2×2 windows at stride 2, rows read as vec2.
    MAX_POOL2D_2X2 = (Pool, "max_pool2d_2x2", LINEAR);
    /// Overlapping windows: each input sums the windows it wins.
    MAX_POOL2D_GRAD = (Pool, "max_pool2d_grad", LINEAR);
    /// Disjoint windows: one invocation per window.
    MAX_POOL2D_GRAD_DISJOINT = (Pool, "max_pool2d_grad_disjoint", LINEAR);
    /// Disjoint 2×2 windows at stride 2.
    MAX_POOL2D_GRAD_2X2 = (Pool, "max_pool2d_grad_2x2", LINEAR);
    /// Each window's first maximum, for the overlapping gradient.
    MAX_POOL2D_ARGMAX = (Pool, "max_pool2d_argmax", LINEAR);
    AVG_POOL2D = (Pool, "avg_pool2d", LINEAR);
    AVG_POOL2D_GRAD = (Pool, "avg_pool2d_grad", LINEAR);
}

/// Invocations per workgroup of the `_ua` matmul kernels, each 4 columns wide: a workgroup
/// covers a panel of 128 columns (docs/performance.md has the measurements).
pub const UA_LANES: u32 = 32;

/// Uniform windows a `_ua` matmul dispatch binds (`ua0`..`ua7`).
pub const UA_WINDOWS: usize = 8;

/// Bytes of one uniform window (the 64 KiB that every adapter binds as a uniform buffer).
pub const UA_WINDOW_BYTES: u64 = 65536;

/// The kernel computing a unary function.
pub fn unary(op: UnaryOp) -> Entry {
    match op {
        UnaryOp::Neg => UNARY_NEG,
        UnaryOp::Exp => UNARY_EXP,
        UnaryOp::Log => UNARY_LOG,
        UnaryOp::Sqrt => UNARY_SQRT,
        UnaryOp::Abs => UNARY_ABS,
        UnaryOp::Sign => UNARY_SIGN,
        UnaryOp::Relu => UNARY_RELU,
        UnaryOp::Sigmoid => UNARY_SIGMOID,
        UnaryOp::Tanh => UNARY_TANH,
        UnaryOp::Erf => UNARY_ERF,
        UnaryOp::Gelu => UNARY_GELU,
        UnaryOp::LeakyRelu(_) => UNARY_LEAKY_RELU,
        UnaryOp::IsNan => UNARY_ISNAN,
        UnaryOp::IsInf => UNARY_ISINF,
        UnaryOp::IsFinite => UNARY_ISFINITE,
    }
}

/// The kernel computing a binary function.
pub fn binary(op: BinaryOp) -> Entry {
    match op {
        BinaryOp::Add => BINARY_ADD,
        BinaryOp::Sub => BINARY_SUB,
        BinaryOp::Mul => BINARY_MUL,
        BinaryOp::Div => BINARY_DIV,
        BinaryOp::Pow => BINARY_POW,
        BinaryOp::Maximum => BINARY_MAXIMUM,
        BinaryOp::Minimum => BINARY_MINIMUM,
        BinaryOp::Eq => BINARY_EQ,
        BinaryOp::Ne => BINARY_NE,
        BinaryOp::Lt => BINARY_LT,
        BinaryOp::Le => BINARY_LE,
        BinaryOp::Gt => BINARY_GT,
        BinaryOp::Ge => BINARY_GE,
    }
}
