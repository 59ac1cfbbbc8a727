//! wgrad's CPU backend: plain, obviously correct loops, one function per primitive op.
//!
//! It is the oracle every GPU kernel is checked against and the engine's fallback when no GPU
//! adapter exists. Sums accumulate in `f64`.

#![warn(missing_docs)]

mod conv;
mod kernels;

use std::cell::{Cell, RefCell};

use wgrad_graph::shape::numel;
use wgrad_graph::{
    Arg, Backend, BufferId, Capabilities, Device, Error, Launch, MemoryStats, Op, Result, Stats,
};

/// The CPU reference backend. Buffers are host vectors of 32-bit words. It runs one op at a
/// time and fuses nothing.
pub struct CpuBackend {
    buffers: RefCell<Vec<Option<Vec<u32>>>>,
    free: RefCell<Vec<BufferId>>,
    caps: Capabilities,
    /// Ops run so far.
    ran: Cell<u64>,
    /// Bytes in live buffers (freed ones are dropped at once), and the most there were.
    allocated: Cell<u64>,
    peak: Cell<u64>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend {
            buffers: RefCell::default(),
            free: RefCell::default(),
            caps: Capabilities::unfused("CPU (reference backend)", false),
            ran: Cell::new(0),
            allocated: Cell::new(0),
            peak: Cell::new(0),
        }
    }
}

impl CpuBackend {
    /// A backend with no buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A [`Device`] running on this backend.
    pub fn device() -> Device {
        Device::new(CpuBackend::new())
    }
}

impl Backend for CpuBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<BufferId> {
        let words = vec![0u32; bytes.div_ceil(4)];
        let allocated = self.allocated.get() + words.len() as u64 * 4;
        self.allocated.set(allocated);
        self.peak.set(self.peak.get().max(allocated));
        let mut buffers = self.buffers.borrow_mut();
        if let Some(id) = self.free.borrow_mut().pop() {
            buffers[id] = Some(words);
            return Ok(id);
        }
        buffers.push(Some(words));
        Ok(buffers.len() - 1)
    }

    fn free(&self, id: BufferId) {
        let words = self.buffers.borrow_mut()[id].take().map_or(0, |w| w.len());
        self.allocated.set(self.allocated.get() - words as u64 * 4);
        self.free.borrow_mut().push(id);
    }

    fn write(&self, id: BufferId, data: &[u8]) -> Result<()> {
        let mut buffers = self.buffers.borrow_mut();
        let words = buffers[id].as_mut().expect("write to a live buffer");
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(words);
        bytes[..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, id: BufferId, bytes: usize) -> Result<Vec<u8>> {
        let buffers = self.buffers.borrow();
        let words = buffers[id].as_ref().expect("read from a live buffer");
        Ok(bytemuck::cast_slice(words)[..bytes].to_vec())
    }

    fn exec(&self, launch: &Launch<'_>) -> Result<()> {
        match *launch {
            Launch::Op { op, inputs, out } => {
                self.ran.set(self.ran.get() + 1);
                self.exec_op(op, inputs, out)
            }
            _ => Err(Error::Device(
                "the CPU backend runs one op at a time; it fuses nothing".into(),
            )),
        }
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Stats {
        Stats {
            dispatches: self.ran.get(),
            ..Stats::default()
        }
    }

    fn memory(&self) -> MemoryStats {
        MemoryStats {
            allocated: self.allocated.get(),
            reserved: self.allocated.get(),
            peak_allocated: self.peak.get(),
        }
    }
}

impl CpuBackend {
    fn exec_op(&self, op: &Op, inputs: &[Arg<'_>], out: &Arg<'_>) -> Result<()> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape).collect();
        if let Some((i, size)) = op.index_bound(&shapes) {
            let buffers = self.buffers.borrow();
            let words = buffers[inputs[i].buffer]
                .as_deref()
                .expect("input buffer is live");
            let indices = &words[..numel(inputs[i].shape)];
            if let Some(&bad) = indices.iter().filter(|&&v| v as usize >= size).max() {
                return Err(Error::Index {
                    op: op.name(),
                    index: bad as u64,
                    size: size as u64,
                });
            }
        }
        let mut result = self.buffers.borrow_mut()[out.buffer]
            .take()
            .expect("output buffer is live");
        {
            let buffers = self.buffers.borrow();
            let ins: Vec<kernels::In> = inputs
                .iter()
                .map(|a| kernels::In {
                    data: buffers[a.buffer].as_deref().expect("input buffer is live"),
                    shape: a.shape,
                })
                .collect();
            kernels::run(op, &ins, out.shape, &mut result);
        }
        self.buffers.borrow_mut()[out.buffer] = Some(result);
        Ok(())
    }
}
