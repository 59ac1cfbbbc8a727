//! wgrad's GPU backend on wgpu: the device [`Context`], a pooled-buffer [`GpuBackend`] that
//! batches every dispatch of a realisation into one submission, and the WGSL kernels in
//! `shaders/`, one file per family.

#![warn(missing_docs)]

mod backend;
mod context;
mod conv;
mod conv_gemm;
mod generated;
pub mod launch;
mod matmul;
pub mod params;
mod profile;
mod reduce;
pub mod shaders;

pub use backend::GpuBackend;
pub use context::{AdapterOptions, Context};
pub use profile::{KernelTime, ProfileClock};
pub use wgpu;

/// The most iterations one kernel invocation's main loop runs, whatever the tensor sizes:
/// longer work is split across invocations and passes (reductions, split-K products,
/// convolutions in channel chunks). Mesa's software adapters stop a shader's loops after
/// 65,535 iterations in all, silently, and real GPUs are slow at long loops.
pub const MAX_TRIP: usize = 4096;
