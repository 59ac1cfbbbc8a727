//! wgrad: a deep-learning engine whose kernels are WGSL compute shaders run through wgpu.
//!
//! This facade re-exports the engine's crates and picks a default device: the best GPU
//! adapter, or the CPU reference backend (with one warning) when no adapter exists.
//!
//! ```no_run
//! use wgrad::Tensor;
//! let dev = wgrad::default_device();
//! let x = Tensor::from_slice(&dev, &[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let y = x.matmul(&x).relu().sum_all();
//! println!("{}", y.item()?);
//! # Ok::<(), wgrad::Error>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "plot")]
pub mod plot;

/// The user guide (`docs/guide.md`); its code examples are compiled as doc tests.
#[doc = include_str!("../docs/guide.md")]
pub mod guide {}

pub use wgrad_cpu as cpu;
pub use wgrad_device as device;
pub use wgrad_dist as dist;
pub use wgrad_graph as graph;
pub use wgrad_nn as nn;

pub use wgrad_graph::{
    bce_with_logits, cross_entropy, mse_loss, no_grad, realize_all, DType, Device, Error, Grads,
    MemoryStats, Result, Stats, Tensor,
};

/// A device on the best GPU adapter (see `WGRAD_ADAPTER` and `WGRAD_BACKEND`).
pub fn gpu() -> Result<Device> {
    device::GpuBackend::device()
}

/// The CPU reference backend.
pub fn cpu() -> Device {
    cpu::CpuBackend::device()
}

/// The best GPU adapter, or the CPU backend with one warning line when none can be opened.
/// `WGRAD_DEVICE=cpu` selects the CPU backend directly; `WGRAD_ADAPTER` and `WGRAD_BACKEND`
/// choose the adapter.
pub fn default_device() -> Device {
    if std::env::var("WGRAD_DEVICE").is_ok_and(|v| v.eq_ignore_ascii_case("cpu")) {
        return cpu();
    }
    fall_back(gpu())
}

/// Like [`default_device`], with the adapter chosen by `options` instead of the environment.
pub fn default_device_with(options: &device::AdapterOptions) -> Device {
    fall_back(device::Context::with_options(options).map(device::GpuBackend::device_on))
}

fn fall_back(gpu: Result<Device>) -> Device {
    gpu.unwrap_or_else(|e| {
        eprintln!("warning: {e}; falling back to the CPU backend (slower)");
        cpu()
    })
}

/// Starts `env_logger` with `RUST_LOG`, defaulting to warnings only.
pub fn init_logging() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .try_init();
}
