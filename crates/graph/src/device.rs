//! `Device`: a cheap, clonable handle to a backend, with what the graph keeps per device:
//! work deferred to the next batch and the fusion plans of recent batches.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use crate::backend::{Backend, BufferId, Capabilities, MemoryStats, Stats};
use crate::error::Result;
use crate::plan::Plans;

/// A cheap, clonable handle to a backend. Tensors on one device can only be combined with
/// tensors on the same device.
#[derive(Clone)]
pub struct Device {
    pub(crate) backend: Rc<dyn Backend>,
    /// Tensors to compute with the next batch on this device (e.g. running statistics),
    /// held as `Any` so that this module stays below `tensor.rs` (see `schedule.rs`).
    pub(crate) deferred: Rc<RefCell<Vec<Rc<dyn Any>>>>,
    /// Fusion plans of recent batches, by their structure (see `plan.rs`).
    pub(crate) plans: Rc<RefCell<Plans>>,
}

impl Device {
    /// A new handle owning `backend`.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Device {
            backend: Rc::new(backend),
            deferred: Rc::default(),
            plans: Rc::default(),
        }
    }

    /// The backend's human-readable description.
    pub fn name(&self) -> String {
        self.capabilities().name.clone()
    }

    /// Whether the backend runs on a GPU.
    pub fn is_gpu(&self) -> bool {
        self.capabilities().gpu
    }

    /// What the backend can do (see [`Capabilities`]).
    pub fn capabilities(&self) -> &Capabilities {
        self.backend.capabilities()
    }

    /// Submissions, dispatches and copies since the backend was made. Two readings around a
    /// training step give what the step costs the device:
    ///
    /// ```
    /// # use wgrad_graph::Device;
    /// # fn step(device: &Device) {}
    /// # fn count(device: &Device) {
    /// let before = device.stats();
    /// step(device);
    /// let cost = device.stats() - before;
    /// println!("{} dispatches in {} submissions", cost.dispatches, cost.submissions);
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.backend.stats()
    }

    /// Bytes in the device's buffers: in use, held (in use and kept for reuse), and the
    /// most in use at once (PyTorch's `memory_allocated`, `memory_reserved`,
    /// `max_memory_allocated`). A GPU device hands back by itself the free buffers that 8
    /// submissions in a row have not taken.
    pub fn memory(&self) -> MemoryStats {
        self.backend.memory()
    }

    /// Hands back the buffers the device keeps for reuse, which no tensor holds (PyTorch's
    /// `torch.cuda.empty_cache`): after a workload, so that the next one starts from what is
    /// in use. Later work allocates afresh.
    pub fn empty_cache(&self) -> Result<()> {
        self.backend.empty_cache()
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Whether two handles name the same backend instance.
    pub fn same(&self, other: &Device) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.backend), Rc::as_ptr(&other.backend))
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.capabilities().name)
    }
}

/// A backend buffer owned by the graph; dropping it hands the buffer back to the backend.
pub struct Buffer {
    pub(crate) id: BufferId,
    pub(crate) device: Device,
}

impl Buffer {
    pub(crate) fn alloc(device: &Device, bytes: usize) -> Result<Rc<Buffer>> {
        let id = device.backend.alloc(bytes)?;
        Ok(Rc::new(Buffer {
            id,
            device: device.clone(),
        }))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.device.backend.free(self.id);
    }
}
