//! WGSL sources, one file per kernel family, embedded once.

use wgrad_graph::Family;

/// The WGSL source of a kernel family.
pub fn source(family: Family) -> &'static str {
    match family {
        Family::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
        Family::Reduce => include_str!("../../../shaders/reduce.wgsl"),
        Family::Matmul => include_str!("../../../shaders/matmul.wgsl"),
        Family::Layout => include_str!("../../../shaders/layout.wgsl"),
        Family::Index => include_str!("../../../shaders/index.wgsl"),
        Family::Random => include_str!("../../../shaders/random.wgsl"),
        Family::Conv => include_str!("../../../shaders/conv.wgsl"),
        Family::Pool => include_str!("../../../shaders/pool.wgsl"),
    }
}
