//! WGSL sources, one file per kernel family, embedded once, each preceded by the shared
//! helpers of `shaders/common.wgsl`.

use wgrad_graph::Family;

/// A family's file with the shared helpers in front (WGSL has no includes).
macro_rules! family {
    ($file:literal) => {
        concat!(
            include_str!("../../../shaders/common.wgsl"),
            include_str!(concat!("../../../shaders/", $file))
        )
    };
}

/// The helpers every kernel may call (prepended to each family, and to generated kernels).
pub const COMMON: &str = include_str!("../../../shaders/common.wgsl");

/// The WGSL source of a kernel family.
pub fn source(family: Family) -> &'static str {
    match family {
        Family::Elementwise => family!("elementwise.wgsl"),
        Family::Reduce => family!("reduce.wgsl"),
        Family::Matmul => family!("matmul.wgsl"),
        Family::Layout => family!("layout.wgsl"),
        Family::Index => family!("index.wgsl"),
        Family::Random => family!("random.wgsl"),
        Family::Conv => family!("conv.wgsl"),
        Family::Pool => family!("pool.wgsl"),
    }
}
