//! The buffers of one backend by id, pooled by size class.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeSet, HashMap, HashSet};

use wgrad_graph::{BufferId, Error, MemoryStats, Result};

use crate::context::Context;

pub(crate) struct Slot {
    /// None once handed back by [`Buffers::release_unused`] (the id is not used again).
    buffer: Option<wgpu::Buffer>,
    class: u64,
    /// The submission being recorded when it was last handed back to the pool.
    freed: u64,
}

/// Every buffer made so far, and which are free.
#[derive(Default)]
pub(crate) struct Buffers {
    slots: RefCell<Vec<Slot>>,
    /// Free buffers by size class. `alloc` hands out the lowest free id of a class, so that
    /// which buffer a step gets depends on which are free, not on the order they were freed
    /// in: a repeated step then settles into reusing the same buffers (and bind groups).
    pool: RefCell<HashMap<u64, BTreeSet<BufferId>>>,
    /// Bytes in buffers handed out and not freed, the most there were, and bytes in all
    /// buffers kept.
    allocated: Cell<u64>,
    peak: Cell<u64>,
    reserved: Cell<u64>,
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
            self.handed_out(class);
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
        slots.push(Slot {
            buffer: Some(buffer),
            class,
            freed: 0,
        });
        self.reserved.set(self.reserved.get() + class);
        self.handed_out(class);
        Ok(slots.len() - 1)
    }

    fn handed_out(&self, class: u64) {
        let allocated = self.allocated.get() + class;
        self.allocated.set(allocated);
        self.peak.set(self.peak.get().max(allocated));
    }

    /// Hands a buffer back to the pool while submission `now` is being recorded.
    pub(crate) fn free(&self, id: BufferId, now: u64) {
        let class = {
            let mut slots = self.slots.borrow_mut();
            slots[id].freed = now;
            slots[id].class
        };
        self.allocated.set(self.allocated.get() - class);
        self.pool.borrow_mut().entry(class).or_default().insert(id);
    }

    /// Drops the free buffers that have stayed in the pool since before submission `before`
    /// (all of them for `u64::MAX`); returns their ids, which are not handed out again
    /// (cached bind groups that bind one must go), and their bytes.
    pub(crate) fn release_unused(&self, before: u64) -> (HashSet<BufferId>, u64) {
        let mut slots = self.slots.borrow_mut();
        let (mut released, mut bytes) = (HashSet::new(), 0);
        let mut pool = self.pool.borrow_mut();
        for free in pool.values_mut() {
            free.retain(|&id| {
                let slot = &mut slots[id];
                if slot.freed >= before {
                    return true;
                }
                slot.buffer = None;
                self.reserved.set(self.reserved.get() - slot.class);
                bytes += slot.class;
                released.insert(id);
                false
            });
        }
        pool.retain(|_, free| !free.is_empty());
        (released, bytes)
    }

    /// Bytes in use, the most in use at once, and bytes held.
    pub(crate) fn memory(&self) -> MemoryStats {
        MemoryStats {
            allocated: self.allocated.get(),
            reserved: self.reserved.get(),
            peak_allocated: self.peak.get(),
        }
    }

    /// The size in bytes of a buffer (its size class).
    pub(crate) fn size(&self, id: BufferId) -> u64 {
        self.slots.borrow()[id].class
    }

    /// The wgpu buffer behind an id.
    pub(crate) fn get(&self, id: BufferId) -> Ref<'_, wgpu::Buffer> {
        Ref::map(self.slots.borrow(), |s| s[id].buffer())
    }

    /// All buffers, by id (while encoding).
    pub(crate) fn all(&self) -> Ref<'_, [Slot]> {
        Ref::map(self.slots.borrow(), |s| &s[..])
    }
}

impl Slot {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("a buffer handed back by empty_cache is not used again")
    }
}
