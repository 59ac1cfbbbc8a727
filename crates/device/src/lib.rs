//! wgrad's GPU backend on wgpu, in layers, each module using only those below it:
//!
//! 1. the [`Context`] (adapter, device, limits, shader modules and pipelines), with the
//!    kernel table (`kernels`), the WGSL sources (`shaders`), the parameter structs
//!    (`params`) it compiles and binds, and the measured kernel choices (`tune`);
//! 2. the recorder (`recorder/`): the command list, the parameter arena, pooled buffers, and
//!    their encoding into one submission per flush;
//! 3. the kernel families (`family/`): elementwise, layout, index, reduce, pool, matmul,
//!    convolution and generated kernels, each with its launcher;
//! 4. [`GpuBackend`]: the graph's `Backend` on top.

#![warn(missing_docs)]

mod backend;
mod context;
mod family;
pub mod kernels;
pub mod params;
mod recorder;
pub mod shaders;
pub mod tune;

pub use backend::GpuBackend;
pub use context::{AdapterOptions, Context};
pub use recorder::profile::{KernelTime, ProfileClock};
pub use wgpu;

/// The most iterations one kernel invocation's main loop runs, whatever the tensor sizes:
/// longer work is split across invocations and passes (reductions, split-K products,
/// convolutions in channel chunks). Mesa's software adapters stop a shader's loops after
/// 65,535 iterations in all, silently, and real GPUs are slow at long loops.
pub const MAX_TRIP: usize = 4096;
