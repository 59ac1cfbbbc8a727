//! `GpuBackend`: wgrad's graph backend on a wgpu [`Context`]. Buffers come from a pool keyed
//! by size class; `exec` records dispatches, and `flush` encodes them all into one command
//! encoder and one queue submission, with every dispatch's parameters in one buffer.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use wgrad_graph::shape::numel;
use wgrad_graph::{Arg, Backend, BufferId, Device, Error, Fused, Op, Result};

use crate::context::Context;
use crate::profile::{KernelTime, Profile, ProfileClock};

struct Slot {
    buffer: wgpu::Buffer,
    class: u64,
}

pub(crate) enum Command {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        params_at: u64,
        params_len: u64,
        /// Binding 1 is the output, 2.. the inputs.
        buffers: Vec<BufferId>,
        /// An epilogue's constants: where they are in the parameter buffer, bound after the
        /// buffers.
        constants: Option<(u64, u64)>,
        groups: [u32; 3],
        /// Kernel name, kept only while profiling (`WGRAD_PROFILE=1`).
        label: String,
    },
    Copy {
        src: BufferId,
        /// Byte offset in `src` (the copy lands at the start of `dst`).
        src_offset: u64,
        dst: BufferId,
        bytes: u64,
    },
    /// Zeroes the first `bytes` of a buffer.
    Clear { dst: BufferId, bytes: u64 },
}

/// The wgpu backend.
pub struct GpuBackend {
    pub(crate) ctx: Arc<Context>,
    slots: RefCell<Vec<Slot>>,
    /// Free buffers by size class. `alloc` hands out the lowest free id of a class, so that
    /// which buffer a step gets depends on which are free, not on the order they were freed
    /// in: a repeated step then settles into reusing the same buffers (and bind groups).
    pool: RefCell<HashMap<u64, BTreeSet<BufferId>>>,
    pub(crate) commands: RefCell<Vec<Command>>,
    pub(crate) params: RefCell<Vec<u8>>,
    params_buffer: RefCell<Option<wgpu::Buffer>>,
    /// Bind groups by what they bind, kept across submissions: a repeated step records the
    /// same dispatches on the same pooled buffers and parameter offsets, so from its second
    /// run on it creates none (cleared when the parameter buffer is replaced, and when full).
    bind_groups: RefCell<HashMap<BindKey, (Arc<wgpu::ComputePipeline>, wgpu::BindGroup)>>,
    /// Bytes written from the host since the last submission (for the debug log).
    uploaded: Cell<u64>,
    /// Whether chains of elementwise ops run as generated kernels (`WGRAD_FUSION=0` turns it off).
    fusion: bool,
    /// Whether kernels are generated or compiled per shape (strided copies, unfolding,
    /// pooling); off with fusion (`WGRAD_FUSION=0`), which leaves only the generic kernels.
    pub(crate) specialize: bool,
    /// `WGRAD_POISON=1`: every buffer handed out is first filled with NaN, so that a kernel
    /// reading memory it did not write shows up in results (tests run with it in CI).
    poison: bool,
    /// `WGRAD_PROFILE=1` or `gpu`: the time per kernel, printed when the backend is dropped
    /// (see `profile.rs`).
    pub(crate) profile: Option<Profile>,
    /// Where index kernels (gather, one-hot) record an index out of range (see
    /// `shaders/index.wgsl`); read back with every result, and reported as an error there.
    index_flags: Cell<Option<BufferId>>,
}

/// Bytes of the index flags: [count, op code, index, bound].
const INDEX_FLAG_BYTES: u64 = 16;

/// What a dispatch's bind group binds: the pipeline (by address; the cache holds the pipeline
/// beside the bind group, so no other pipeline can take that address), the parameters' offset
/// and size in the parameter buffer, the buffers from binding 1 on, and the constants' range.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: usize,
    params_at: u64,
    params_len: u64,
    buffers: Vec<BufferId>,
    constants: Option<(u64, u64)>,
}

/// Most bind groups kept; past it the cache starts again (a workload that keeps changing
/// shapes would otherwise grow it without end).
const MAX_BIND_GROUPS: usize = 4096;

/// Buffers are pooled by size class: sizes round up to 1/8 of their power of two.
fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let step = (bytes.next_power_of_two() / 8).max(256);
    bytes.div_ceil(step) * step
}

impl GpuBackend {
    /// A backend on `ctx` with an empty buffer pool.
    pub fn new(ctx: Arc<Context>) -> Self {
        let fusion = std::env::var("WGRAD_FUSION").map_or(true, |v| v != "0");
        GpuBackend {
            slots: RefCell::new(Vec::new()),
            pool: RefCell::new(HashMap::new()),
            commands: RefCell::new(Vec::new()),
            params: RefCell::new(Vec::new()),
            params_buffer: RefCell::new(None),
            bind_groups: RefCell::new(HashMap::new()),
            uploaded: Cell::new(0),
            fusion,
            specialize: fusion,
            poison: std::env::var("WGRAD_POISON").is_ok_and(|v| v == "1"),
            profile: ctx.scoped(|| Profile::from_env(&ctx)),
            index_flags: Cell::new(None),
            ctx,
        }
    }

    /// The index flags' buffer, made (zeroed) on first use; never handed back to the pool.
    pub(crate) fn index_flags(&self) -> BufferId {
        if let Some(id) = self.index_flags.get() {
            return id;
        }
        let id = self
            .alloc_slot(INDEX_FLAG_BYTES)
            .expect("a 256-byte buffer is always allowed");
        // Pooled buffers may hold old data; the flags start clear.
        self.commands.borrow_mut().push(Command::Clear {
            dst: id,
            bytes: INDEX_FLAG_BYTES,
        });
        self.index_flags.set(Some(id));
        id
    }

    /// The error the index flags in `words` record, if any; they are then cleared.
    fn index_error(&self, words: &[u32]) -> Result<()> {
        let &[count, code, index, bound] = words else {
            return Ok(());
        };
        if count == 0 {
            return Ok(());
        }
        if let Some(id) = self.index_flags.get() {
            let zeros = [0u8; INDEX_FLAG_BYTES as usize];
            let buffer = self.buffer(id);
            self.ctx
                .scoped(|| self.ctx.queue.write_buffer(&buffer, 0, &zeros));
        }
        Err(Error::Index {
            op: if code == 1 { "gather" } else { "one_hot" },
            index: index as u64,
            size: bound as u64,
        })
    }

    /// A backend that times every kernel with `clock` (as `WGRAD_PROFILE` does); the times
    /// so far are in [`GpuBackend::kernel_times`].
    pub fn profiled(ctx: Arc<Context>, clock: ProfileClock) -> Self {
        let mut backend = GpuBackend::new(ctx);
        backend.profile = Some(Profile::new(&backend.ctx, clock));
        backend
    }

    /// The time of each kernel run so far, the most total time first, and the clock that
    /// measured them; empty without profiling.
    pub fn kernel_times(&self) -> (Vec<KernelTime>, Option<ProfileClock>) {
        match &self.profile {
            Some(p) => (p.times(), Some(p.clock())),
            None => (Vec::new(), None),
        }
    }

    /// A [`Device`] on the process-wide shared context (the best adapter, or the one named
    /// by `WGRAD_ADAPTER` / `WGRAD_BACKEND`).
    pub fn device() -> Result<Device> {
        Ok(Device::new(GpuBackend::new(Context::shared()?)))
    }

    /// A [`Device`] on a given context, e.g. one built from an application's wgpu device.
    pub fn device_on(ctx: Arc<Context>) -> Device {
        Device::new(GpuBackend::new(ctx))
    }

    /// The context this backend runs on.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn check_error(&self) -> Result<()> {
        match self.ctx.take_error() {
            None => Ok(()),
            Some(msg) if msg.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { bytes: 0 })
            }
            Some(msg) => Err(Error::Device(msg)),
        }
    }

    /// A buffer of at least `bytes` from the pool, or a new one.
    fn alloc_slot(&self, bytes: u64) -> Result<BufferId> {
        let limit = self
            .ctx
            .limits
            .max_storage_buffer_binding_size
            .min(self.ctx.limits.max_buffer_size);
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
        let (buffer, refused) = self.ctx.scoped(|| {
            let scope = self
                .ctx
                .device
                .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: class,
                // Uniform too: windows of matmul operands are read as uniform buffers on
                // CPU-type adapters (see matmul.rs).
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (buffer, pollster::block_on(scope.pop()))
        });
        if let Some(e) = refused {
            log::error!("allocating {class} bytes failed: {e}");
            return Err(Error::OutOfMemory { bytes: class });
        }
        self.check_error()?;
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot { buffer, class });
        Ok(slots.len() - 1)
    }

    fn buffer(&self, id: BufferId) -> std::cell::Ref<'_, wgpu::Buffer> {
        std::cell::Ref::map(self.slots.borrow(), |s| &s[id].buffer)
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        self.ctx.describe()
    }

    fn is_gpu(&self) -> bool {
        true
    }

    fn alloc(&self, bytes: usize) -> Result<BufferId> {
        let id = self.alloc_slot(bytes as u64)?;
        if self.poison {
            let words = (self.slots.borrow()[id].class / 4) as usize;
            self.fill(id, words, 0x7fc0_0000);
        }
        Ok(id)
    }

    fn free(&self, id: BufferId) {
        let class = self.slots.borrow()[id].class;
        self.pool.borrow_mut().entry(class).or_default().insert(id);
    }

    fn write(&self, id: BufferId, data: &[u8]) -> Result<()> {
        // A pooled buffer may still be read by recorded work; that work must run first.
        if !self.commands.borrow().is_empty() {
            self.flush()?;
        }
        if !data.is_empty() {
            let buffer = self.buffer(id);
            self.ctx
                .scoped(|| self.ctx.queue.write_buffer(&buffer, 0, data));
            self.uploaded.set(self.uploaded.get() + data.len() as u64);
        }
        self.check_error()
    }

    fn read(&self, id: BufferId, bytes: usize) -> Result<Vec<u8>> {
        self.flush()?;
        let size = (bytes as u64).div_ceil(4) * 4;
        // The index flags come back behind the data, in the same copy-and-map.
        let flags = self.index_flags.get();
        let extra = if flags.is_some() { INDEX_FLAG_BYTES } else { 0 };
        let data = self.ctx.scoped(|| {
            let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad readback"),
                size: size + extra,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&self.buffer(id), 0, &staging, 0, size);
            if let Some(f) = flags {
                encoder.copy_buffer_to_buffer(&self.buffer(f), 0, &staging, size, extra);
            }
            self.ctx.queue.submit([encoder.finish()]);
            map_read(&self.ctx, &staging, (size + extra) as usize)
        });
        self.check_error()?;
        let mut data = data?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&data[size as usize..]);
        self.index_error(&words)?;
        data.truncate(bytes);
        log::debug!(target: "wgrad::device", "read back {bytes} bytes");
        Ok(data)
    }

    fn exec(&self, op: &Op, inputs: &[Arg<'_>], out: &Arg<'_>) -> Result<()> {
        crate::launch::record(self, op, inputs, out)
    }

    fn fusion_inputs(&self) -> usize {
        // Two bindings go to the parameters and the output.
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage as usize;
        if self.fusion {
            bindings.saturating_sub(2).min(6)
        } else {
            0
        }
    }

    fn exec_fused(&self, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) -> Result<()> {
        if fused.constants.len() > wgrad_graph::MAX_FUSED_CONSTANTS || outs.is_empty() {
            return Err(Error::Device(format!(
                "a fused kernel takes 1 or more outputs and at most {} constants, got {} and {}",
                wgrad_graph::MAX_FUSED_CONSTANTS,
                outs.len(),
                fused.constants.len()
            )));
        }
        if fused.values.contains(&wgrad_graph::FusedValue::Product) {
            return Err(Error::Device(
                "a fused kernel reads a product only as the epilogue of a matmul or a convolution"
                    .into(),
            ));
        }
        self.record_fused(fused, inputs, outs);
        Ok(())
    }

    fn epilogue_buffers(&self) -> usize {
        // The storage kernels bind the parameters, the output and both operands (so do the
        // convolution kernels; a generated copy, two), and an epilogue's constants one more.
        let bindings = self.ctx.limits.max_storage_buffers_per_shader_stage as usize;
        if self.fusion {
            bindings.saturating_sub(4).min(6)
        } else {
            0
        }
    }

    fn exec_with_epilogue(
        &self,
        op: &Op,
        operands: &[Arg<'_>],
        fused: &Fused,
        inputs: &[Arg<'_>],
        outs: &[Arg<'_>],
    ) -> Result<()> {
        if !matches!(op, Op::MatMul { .. } | Op::Conv2d(_)) || outs.is_empty() {
            return Err(Error::Device(format!(
                "an epilogue follows a matmul or a convolution and stores 1 or more outputs, got {} and {}",
                op.name(),
                outs.len()
            )));
        }
        let extra: Vec<BufferId> = outs[1..].iter().chain(inputs).map(|a| a.buffer).collect();
        let epilogue = Some(crate::launch::Epilogue {
            fused,
            buffers: &extra,
        });
        match op {
            Op::MatMul { .. } => {
                crate::matmul::record_matmul(self, op, operands, &outs[0], epilogue)
            }
            _ if numel(outs[0].shape) == 0 => Ok(()),
            _ => self.record_conv(op, operands, &outs[0], epilogue),
        }
    }

    fn flush(&self) -> Result<()> {
        let recorded = self.ctx.scoped(|| self.encode_and_submit());
        let checked = self.check_error();
        recorded.and(checked)
    }
}

impl GpuBackend {
    /// Encodes every recorded command into one command buffer and submits it.
    fn encode_and_submit(&self) -> Result<()> {
        let commands = std::mem::take(&mut *self.commands.borrow_mut());
        let params = std::mem::take(&mut *self.params.borrow_mut());
        if commands.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        let mut params_buffer = self.params_buffer.borrow_mut();
        let too_small = params_buffer
            .as_ref()
            .is_none_or(|b| b.size() < params.len() as u64);
        let mut bind_groups = self.bind_groups.borrow_mut();
        if too_small || bind_groups.len() > MAX_BIND_GROUPS {
            // Cached bind groups point into the old buffer.
            bind_groups.clear();
        }
        if too_small {
            *params_buffer = Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad params"),
                size: (params.len() as u64).next_power_of_two().max(4096),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let params_buffer = params_buffer.as_ref().expect("params buffer exists");
        if !params.is_empty() {
            ctx.queue.write_buffer(params_buffer, 0, &params);
        }
        let slots = self.slots.borrow();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let (mut dispatches, mut new_bind_groups) = (0, 0);
        let mut i = 0;
        while i < commands.len() {
            match &commands[i] {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(
                        &slots[*src].buffer,
                        *src_offset,
                        &slots[*dst].buffer,
                        0,
                        *bytes,
                    );
                    i += 1;
                    continue;
                }
                Command::Clear { dst, bytes } => {
                    encoder.clear_buffer(&slots[*dst].buffer, 0, Some(*bytes));
                    i += 1;
                    continue;
                }
                Command::Dispatch { .. } => {}
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: self.profile.as_ref().and_then(|p| p.pass_writes()),
            });
            while let Some(Command::Dispatch {
                pipeline,
                params_at,
                params_len,
                buffers,
                constants,
                groups,
                label,
            }) = commands.get(i)
            {
                let key = BindKey {
                    pipeline: Arc::as_ptr(pipeline) as usize,
                    params_at: *params_at,
                    params_len: *params_len,
                    buffers: buffers.clone(),
                    constants: *constants,
                };
                let (_, bind_group) = bind_groups.entry(key).or_insert_with(|| {
                    let params_range = |binding: u32, (at, len): (u64, u64)| wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: params_buffer,
                            offset: at,
                            size: std::num::NonZeroU64::new(len),
                        }),
                    };
                    let mut entries = vec![params_range(0, (*params_at, *params_len))];
                    for (k, &id) in buffers.iter().enumerate() {
                        entries.push(wgpu::BindGroupEntry {
                            binding: k as u32 + 1,
                            resource: slots[id].buffer.as_entire_binding(),
                        });
                    }
                    if let Some(range) = constants {
                        entries.push(params_range(buffers.len() as u32 + 1, *range));
                    }
                    new_bind_groups += 1;
                    let layout = pipeline.get_bind_group_layout(0);
                    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout,
                        entries: &entries,
                    });
                    (pipeline.clone(), bind_group)
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &*bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                dispatches += 1;
                i += 1;
                if let Some(profile) = &self.profile {
                    // Each dispatch in a pass of its own.
                    drop(pass);
                    profile.dispatched(ctx, &mut encoder, format!("{label} {groups:?}"))?;
                    break;
                }
            }
        }
        if let Some(profile) = &self.profile {
            profile.read_stamps(ctx, &mut encoder)?;
        }
        ctx.queue.submit([encoder.finish()]);
        // Reclaim finished submissions without waiting, so resources do not pile up.
        let _ = ctx.device.poll(wgpu::PollType::Poll);
        log::debug!(
            target: "wgrad::device",
            "submit: {dispatches} dispatches ({new_bind_groups} new bind groups), {} copies or clears, {} bytes uploaded, {} bytes of kernel parameters",
            commands.len() - dispatches,
            self.uploaded.replace(0),
            params.len()
        );
        Ok(())
    }
}

impl Drop for GpuBackend {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            profile.print();
        }
    }
}

/// Maps `staging` (after the work that fills it was submitted), waits, and copies out its
/// first `bytes` bytes.
pub(crate) fn map_read(ctx: &Context, staging: &wgpu::Buffer, bytes: usize) -> Result<Vec<u8>> {
    let slice = staging.slice(..);
    let (tx, rx) = futures::channel::oneshot::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Device(format!("waiting for the device failed: {e}")))?;
    futures::executor::block_on(rx)
        .map_err(|_| Error::Map("the map request was dropped".into()))?
        .map_err(|e| Error::Map(e.to_string()))?;
    let data = slice
        .get_mapped_range()
        .map_err(|e| Error::Map(e.to_string()))?[..bytes]
        .to_vec();
    staging.unmap();
    Ok(data)
}
