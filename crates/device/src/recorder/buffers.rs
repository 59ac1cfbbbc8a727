//! The buffers of one backend by id, pooled by size class.

use std::cell::{Ref, RefCell};
use std::collections::{BTreeSet, HashMap};

use wgrad_graph::{BufferId, Error, Result};

use crate::context::Context;

pub(crate) struct Slot {
    buffer: wgpu::Buffer,
    class: u64,
}

/// Every buffer made so far, and which are free.
#[derive(Default)]
pub(crate) struct Buffers {
    slots: RefCell<Vec<Slot>>,
    /// Free buffers by size class. `alloc` hands out the lowest free id of a class, so that
    /// which buffer a step gets depends on which are free, not on the order they were freed
    /// in: a repeated step then settles into reusing the same buffers (and bind groups).
    pool: RefCell<HashMap<u64, BTreeSet<BufferId>>>,
}

/// Buffers are pooled by size class: sizes round up to 1/8 of their power of two.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = (bytes.next_power_of_two() / 8).max(256);
    bytes.div_ceil(step) * step
}

impl Buffers {
    /// A buffer of at least `bytes` from the pool, or a new one.
    pub(crate) fn alloc(&self, ctx: &Context, bytes: u64) -> Result<BufferId> {
        let limit = ctx
            .limits
            .max_storage_buffer_binding_size
            .min(ctx.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::BufferTooLarge { bytes, limit });
        }
        let class = size_class(bytes).min(limit.max(bytes));
        if let Some(id) = self
            .pool
            .borrow_mut()
            .get_mut(&class)
            .and_then(|free| free.pop_first())
        {
            return Ok(id);
        }
        let (buffer, refused) = ctx.scoped(|| {
            // In a browser the scope's answer would come only after control returns to the
            // event loop: an allocation that fails is reported by the uncaptured-error
            // handler at the next check instead.
            let scope = (!cfg!(target_arch = "wasm32"))
                .then(|| ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory));
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: class,
                // Uniform too: windows of matmul operands are read as uniform buffers on
                // CPU-type adapters (see family/matmul.rs).
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (buffer, scope.and_then(|s| pollster::block_on(s.pop())))
        });
        if let Some(e) = refused {
            log::error!("allocating {class} bytes failed: {e}");
            return Err(Error::OutOfMemory { bytes: class });
        }
        ctx.check()?;
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot { buffer, class });
        Ok(slots.len() - 1)
    }

    /// Hands a buffer back to the pool.
    pub(crate) fn free(&self, id: BufferId) {
        let class = self.slots.borrow()[id].class;
        self.pool.borrow_mut().entry(class).or_default().insert(id);
    }

    /// The size in bytes of a buffer (its size class).
    pub(crate) fn size(&self, id: BufferId) -> u64 {
        self.slots.borrow()[id].class
    }

    /// The wgpu buffer behind an id.
    pub(crate) fn get(&self, id: BufferId) -> Ref<'_, wgpu::Buffer> {
        Ref::map(self.slots.borrow(), |s| &s[id].buffer)
    }

    /// All buffers, by id (while encoding).
    pub(crate) fn all(&self) -> Ref<'_, [Slot]> {
        Ref::map(self.slots.borrow(), |s| &s[..])
    }
}

impl Slot {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}
