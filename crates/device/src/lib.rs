//! wgrad's GPU backend on wgpu: the device [`Context`], a pooled-buffer [`GpuBackend`] that
//! batches every dispatch of a realisation into one submission, and the WGSL kernels in
//! `shaders/`, one file per family.

#![warn(missing_docs)]

mod backend;
mod context;
mod conv;
mod generated;
pub mod launch;
mod matmul;
pub mod params;
mod profile;
pub mod shaders;

pub use backend::GpuBackend;
pub use context::{AdapterOptions, Context};
pub use profile::{KernelTime, ProfileClock};
pub use wgpu;
