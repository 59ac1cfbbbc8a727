//! The kernel table: every WGSL entry point, as a named constant with its family (the file
//! under `shaders/`) and workgroup size, written from the WGSL by `build.rs`, so a launcher
//! that names an entry point the WGSL lacks does not compile; and which entry realises which
//! elementwise function. `cargo test` checks the table against naga's reading of the WGSL
//! (`tests/shaders.rs`).

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
    /// Reductions whose workgroups combine their shares through subgroup operations (after
    /// the reduce family's functions; only on devices with subgroups).
    Subgroup,
}

impl Family {
    /// Every family, in declaration order.
    pub const ALL: [Family; 9] = [
        Family::Elementwise,
        Family::Reduce,
        Family::Matmul,
        Family::Layout,
        Family::Index,
        Family::Random,
        Family::Conv,
        Family::Pool,
        Family::Subgroup,
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
            Family::Subgroup => "subgroup.wgsl",
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

// One constant per `@compute` function of `shaders/`, and `ALL`, written by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/entries.rs"));

/// Invocations per workgroup of the `_ua` matmul kernels, each 4 columns wide: a workgroup
/// covers a panel of 128 columns (docs/performance.md has the measurements).
pub const UA_LANES: u32 = 32;

/// Rows of the block one `_ua` matmul invocation computes: 8, or 16 for the `_ua16` kernels.
pub const UA_ROWS: [u32; 2] = [8, 16];

/// Heights of the blocks the window convolutions compute per invocation: 8, 16 (`_ua16`) or
/// 32 (`_ua32`) output channels (`conv_vec4_ua`), or taps (`conv_grad_weight_ua`).
pub const CONV_ROWS: [u32; 3] = [8, 16, 32];

/// Values per row of the texture the `_tex` window convolutions read their input from.
pub const CONV_TEXELS: u32 = 4096;

/// Whether `entry` is one of the matmul-family kernels that read A through uniform windows
/// (their module has the windows' bindings): products and convolutions, the entry points of
/// `shaders/matmul_ua.wgsl`.
pub fn reads_windows(entry: Entry) -> bool {
    crate::shaders::window_entries().contains(&entry.name)
}

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
