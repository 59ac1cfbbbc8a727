//! The recorder: the command list of one backend, the parameter arena every dispatch's
//! parameters go to, and their encoding into one command buffer and one queue submission.
//! Kernel families record through it; it knows pipelines and buffers, not ops.

mod bind_groups;
mod buffers;
pub(crate) mod profile;
mod textures;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};
use wgrad_graph::{BufferId, Error, MemoryStats, Result, Stats};

use crate::context::Context;
use crate::kernels::{self, Entry, WORKGROUP};
use crate::params::CopyParams;
use bind_groups::{BindKey, Bound, MAX_BIND_GROUPS};
use buffers::Buffers;
use profile::Profile;
use textures::Textures;
pub(crate) use textures::{Texture, TEXTURE_BINDING};

/// Submissions a free pooled buffer or a texture is kept for without being used: a repeated
/// step keeps its own, while those of work that has stopped (another shape, another model, a
/// finished phase of a program) are handed back, and their memory with them.
const KEPT_FOR: u64 = 8;

enum Command {
    Dispatch {
        pipeline: Arc<wgpu::ComputePipeline>,
        params_at: u64,
        params_len: u64,
        /// Binding 1 is the output, 2.. the inputs.
        buffers: Vec<BufferId>,
        /// An epilogue's constants: where they are in the parameter buffer, bound after the
        /// buffers.
        constants: Option<(u64, u64)>,
        /// A texture bound at [`TEXTURE_BINDING`].
        texture: Option<Arc<Texture>>,
        groups: [u32; 3],
        /// Kernel name, for the profile.
        label: &'static str,
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
    /// Fills a whole texture from a buffer whose rows lie `Texture::bytes_per_row` apart.
    CopyToTexture { src: BufferId, dst: Arc<Texture> },
}

/// Host writes of up to [`UPLOAD_GATHER`] bytes are gathered until the next submission, which
/// writes them into one buffer with one queue write and copies each to its destination. A
/// queue write of its own makes wgpu allocate a staging buffer, whose allocator walks a list
/// that grows with every allocation still alive: a graph with many scalar constants (a scalar
/// per `mul_scalar`) spent a third of its host time there, more as the process aged.
const UPLOAD_GATHER: usize = 64 << 10;

/// Past this many gathered bytes a write submits what is gathered first, bounding the host
/// memory held and the buffer they land in.
const UPLOAD_LIMIT: usize = 8 << 20;

/// Host writes gathered for the next submission: their bytes side by side (each padded to a
/// whole word) and, for each, its destination, offset in `bytes` and length.
#[derive(Default)]
struct Uploads {
    bytes: Vec<u8>,
    copies: Vec<(BufferId, u64, u64)>,
}

/// How a recorder is set up (from the environment by default; see `GpuBackend::new`).
pub(crate) struct Settings {
    /// Whether kernels are generated or compiled per shape (fused groups, strided copies,
    /// unfolding, pooling); off with `WGRAD_FUSION=0`, which leaves only the generic kernels.
    pub specialize: bool,
    /// `WGRAD_POISON=1`: every buffer handed out is first filled with NaN, so that a kernel
    /// reading memory it did not write shows up in results (tests run with it in CI).
    pub poison: bool,
    /// `WGRAD_PROFILE=1` or `gpu`: the time per kernel (see `profile.rs`).
    pub profile: Option<Profile>,
}

/// Records dispatches, copies and clears on pooled buffers until [`Recorder::submit`].
pub(crate) struct Recorder {
    ctx: Arc<Context>,
    buffers: Buffers,
    commands: RefCell<Vec<Command>>,
    params: RefCell<Vec<u8>>,
    params_buffer: RefCell<Option<wgpu::Buffer>>,
    /// Bind groups by what they bind, kept across submissions: a repeated step records the
    /// same dispatches on the same pooled buffers and parameter offsets, so from its second
    /// run on it creates none (cleared when the parameter buffer is replaced, and when full).
    bind_groups: RefCell<HashMap<BindKey, Bound>>,
    /// Textures by width, height and values a texel, with the submission that last used
    /// each (see [`Recorder::texture`]).
    textures: RefCell<Textures>,
    /// Host writes waiting for the next submission (see [`Recorder::upload`]).
    uploads: RefCell<Uploads>,
    /// Where those writes land first, kept and grown like the parameter buffer.
    uploads_buffer: RefCell<Option<wgpu::Buffer>>,
    /// Bytes written from the host since the last submission (for the debug log).
    uploaded: Cell<u64>,
    /// Work submitted so far.
    stats: Cell<Stats>,
    settings: Settings,
}

impl Recorder {
    pub(crate) fn new(ctx: Arc<Context>, settings: Settings) -> Self {
        Recorder {
            ctx,
            buffers: Buffers::default(),
            commands: RefCell::default(),
            params: RefCell::default(),
            params_buffer: RefCell::default(),
            bind_groups: RefCell::default(),
            textures: RefCell::default(),
            uploads: RefCell::default(),
            uploads_buffer: RefCell::default(),
            uploaded: Cell::new(0),
            stats: Cell::default(),
            settings,
        }
    }

    /// The context recorded for.
    pub(crate) fn ctx(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The device's limits.
    pub(crate) fn limits(&self) -> &wgpu::Limits {
        &self.ctx.limits
    }

    /// Whether kernels built for GPUs are chosen over those for CPU-type adapters.
    pub(crate) fn gpu_kernels(&self) -> bool {
        self.ctx.gpu_kernels
    }

    /// Whether the GPU kernels may combine values through subgroup operations.
    pub(crate) fn subgroups(&self) -> bool {
        self.ctx.gpu_kernels && self.ctx.subgroups
    }

    /// Whether kernels may be generated per shape (see [`Settings::specialize`]).
    pub(crate) fn specialize(&self) -> bool {
        self.settings.specialize
    }

    /// The profile, when kernels are timed.
    pub(crate) fn profile(&self) -> Option<&Profile> {
        self.settings.profile.as_ref()
    }

    /// Whether anything is recorded and not yet submitted.
    pub(crate) fn pending(&self) -> bool {
        !self.commands.borrow().is_empty()
    }

    /// Whether host writes are gathered and not yet submitted.
    pub(crate) fn uploading(&self) -> bool {
        !self.uploads.borrow().copies.is_empty()
    }

    /// Whether a write of `bytes` bytes can be gathered ([`Recorder::upload`]) now; if not, the
    /// caller submits and writes through the queue. Gathered writes land at the start of the
    /// next submission, so the caller submits recorded work first (it may read the buffer's
    /// previous contents).
    pub(crate) fn can_gather(&self, bytes: usize) -> bool {
        bytes <= UPLOAD_GATHER && self.uploads.borrow().bytes.len() + bytes <= UPLOAD_LIMIT
    }

    /// Gathers a host write of `data` to the start of buffer `id` for the next submission.
    pub(crate) fn upload(&self, id: BufferId, data: &[u8]) {
        let mut uploads = self.uploads.borrow_mut();
        let at = uploads.bytes.len();
        uploads.bytes.extend_from_slice(data);
        // Copies move whole words; pooled buffers are whole multiples of 256 bytes.
        let len = data.len().div_ceil(4) * 4;
        uploads.bytes.resize(at + len, 0);
        uploads.copies.push((id, at as u64, len as u64));
        drop(uploads);
        self.uploaded(data.len());
    }

    /// The bytes a buffer holds: its size class, at least what was asked for.
    pub(crate) fn buffer_bytes(&self, id: BufferId) -> u64 {
        self.buffers.size(id)
    }

    /// A buffer of at least `bytes` bytes (filled with NaN under `WGRAD_POISON=1`).
    pub(crate) fn alloc(&self, bytes: usize) -> Result<BufferId> {
        let id = self.buffers.alloc(&self.ctx, bytes as u64)?;
        if self.settings.poison {
            let words = (self.buffers.size(id) / 4) as usize;
            self.fill(id, words, 0x7fc0_0000);
        }
        Ok(id)
    }

    /// Hands a buffer back to the pool; work recorded later may get it.
    pub(crate) fn free(&self, id: BufferId) {
        self.buffers.free(id, self.stats.get().submissions);
    }

    /// Bytes in the pool's buffers.
    pub(crate) fn memory(&self) -> MemoryStats {
        self.buffers.memory()
    }

    /// Drops the pool's free buffers and everything that refers to them: cached bind
    /// groups, and the buffer gathered writes land in. The caller submits recorded work
    /// first.
    pub(crate) fn empty_cache(&self) {
        debug_assert!(!self.pending() && !self.uploading());
        self.bind_groups.borrow_mut().clear();
        self.textures.borrow_mut().clear();
        *self.uploads_buffer.borrow_mut() = None;
        self.buffers.release_unused(u64::MAX);
    }

    /// The wgpu buffer behind an id.
    pub(crate) fn buffer(&self, id: BufferId) -> std::cell::Ref<'_, wgpu::Buffer> {
        self.buffers.get(id)
    }

    /// Counts bytes written from the host, for the submission's debug line.
    pub(crate) fn uploaded(&self, bytes: usize) {
        self.uploaded.set(self.uploaded.get() + bytes as u64);
    }

    /// Buffers of these sizes, or none (whatever was allocated handed back) when one is
    /// refused.
    pub(crate) fn alloc_all(&self, sizes: &[usize]) -> Option<Vec<BufferId>> {
        let mut ids = Vec::with_capacity(sizes.len());
        for &bytes in sizes {
            match self.alloc(bytes) {
                Ok(id) => ids.push(id),
                Err(_) => {
                    self.free_all(ids);
                    return None;
                }
            }
        }
        Some(ids)
    }

    /// Scratch buffers of these sizes, or an out-of-memory error naming their total (nothing
    /// kept) when one is refused: for work that has no other plan to fall back on.
    pub(crate) fn scratch(&self, sizes: &[usize]) -> Result<Vec<BufferId>> {
        self.alloc_all(sizes).ok_or(Error::OutOfMemory {
            bytes: sizes.iter().sum::<usize>() as u64,
        })
    }

    /// Hands scratch buffers back to the pool.
    pub(crate) fn free_all(&self, scratch: impl IntoIterator<Item = BufferId>) {
        scratch.into_iter().for_each(|id| self.free(id));
    }

    /// The pipeline of a family's entry point.
    pub(crate) fn pipeline(&self, entry: Entry) -> Arc<wgpu::ComputePipeline> {
        self.ctx.pipeline(entry)
    }

    /// Records a dispatch of `entry` with `params` at binding 0 and `buffers` from binding 1.
    pub(crate) fn push<P: Pod>(
        &self,
        entry: Entry,
        params: &P,
        buffers: Vec<BufferId>,
        groups: [u32; 3],
    ) {
        let pipeline = self.ctx.pipeline(entry);
        self.push_pipeline(pipeline, entry.name, params, (buffers, &[]), groups);
    }

    /// Records a dispatch of `pipeline` with `params` at binding 0, `buffers` from binding 1
    /// on, and, when there are any, `constants` (an epilogue's) bound after the buffers.
    pub(crate) fn push_pipeline<P: Pod>(
        &self,
        pipeline: Arc<wgpu::ComputePipeline>,
        label: &'static str,
        params: &P,
        bindings: (Vec<BufferId>, &[f32]),
        groups: [u32; 3],
    ) {
        self.push_textured(pipeline, label, params, bindings, None, groups);
    }

    /// [`Recorder::push_pipeline`] with `texture`, where given, bound at [`TEXTURE_BINDING`].
    pub(crate) fn push_textured<P: Pod>(
        &self,
        pipeline: Arc<wgpu::ComputePipeline>,
        label: &'static str,
        params: &P,
        (buffers, constants): (Vec<BufferId>, &[f32]),
        texture: Option<Arc<Texture>>,
        groups: [u32; 3],
    ) {
        let align = self.ctx.limits.min_storage_buffer_offset_alignment.max(4) as usize;
        let mut arena = self.params.borrow_mut();
        let mut put = |bytes: &[u8]| {
            let at = arena.len().div_ceil(align) * align;
            arena.resize(at, 0);
            arena.extend_from_slice(bytes);
            (at as u64, bytes.len() as u64)
        };
        let (params_at, params_len) = put(bytemuck::bytes_of(params));
        let constants = (!constants.is_empty()).then(|| put(bytemuck::cast_slice(constants)));
        self.commands.borrow_mut().push(Command::Dispatch {
            pipeline,
            params_at,
            params_len,
            buffers,
            constants,
            texture,
            groups,
            label,
        });
    }

    /// A 1-D launch of `n` invocations, folded into a 2-D grid past the per-dimension limit.
    pub(crate) fn push_linear<P: Pod>(
        &self,
        entry: Entry,
        params: &P,
        buffers: Vec<BufferId>,
        n: usize,
    ) {
        if n > 0 {
            self.push(entry, params, buffers, self.linear_groups(n));
        }
    }

    /// Workgroups for `n` invocations of [`WORKGROUP`], folded into a 2-D grid past the
    /// per-dimension limit.
    pub(crate) fn linear_groups(&self, n: usize) -> [u32; 3] {
        let groups = (n as u32).div_ceil(WORKGROUP);
        let max = self.ctx.limits.max_compute_workgroups_per_dimension.max(1);
        let x = groups.min(max);
        [x, groups.div_ceil(x), 1]
    }

    /// Records a copy of `bytes` bytes from `src` at `src_offset` to the start of `dst`.
    pub(crate) fn copy(&self, src: BufferId, src_offset: u64, dst: BufferId, bytes: u64) {
        self.commands.borrow_mut().push(Command::Copy {
            src,
            src_offset,
            dst,
            bytes,
        });
    }

    /// Records zeroing the first `bytes` of `dst`.
    pub(crate) fn clear(&self, dst: BufferId, bytes: u64) {
        self.commands
            .borrow_mut()
            .push(Command::Clear { dst, bytes });
    }

    /// Records filling the first `n` words of `dst` with `bits`.
    pub(crate) fn fill(&self, dst: BufferId, n: usize, bits: u32) {
        if bits == 0 && n > 0 {
            // A native clear: a memset on CPU adapters, a fast path on GPUs.
            self.clear(dst, n as u64 * 4);
            return;
        }
        let params = CopyParams {
            n: n as u32,
            value: bits,
            ..Zeroable::zeroed()
        };
        self.push_linear(kernels::FILL, &params, vec![dst], n);
    }

    /// Submissions, dispatches and copies submitted so far.
    pub(crate) fn stats(&self) -> Stats {
        self.stats.get()
    }

    /// Encodes every recorded command into one command buffer and submits it.
    pub(crate) fn submit(&self) -> Result<()> {
        let commands = std::mem::take(&mut *self.commands.borrow_mut());
        let params = std::mem::take(&mut *self.params.borrow_mut());
        let uploads = std::mem::take(&mut *self.uploads.borrow_mut());
        if commands.is_empty() && uploads.copies.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        let mut params_buffer = self.params_buffer.borrow_mut();
        let too_small = params_buffer
            .as_ref()
            .is_none_or(|b| b.size() < params.len() as u64);
        let mut bind_groups = self.bind_groups.borrow_mut();
        self.release_stale(&mut bind_groups);
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
        let slots = self.buffers.all();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if !uploads.copies.is_empty() {
            let mut staging = self.uploads_buffer.borrow_mut();
            if staging
                .as_ref()
                .is_none_or(|b| b.size() < uploads.bytes.len() as u64)
            {
                *staging = Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad uploads"),
                    size: (uploads.bytes.len() as u64).next_power_of_two().max(4096),
                    usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }));
            }
            let staging = staging.as_ref().expect("uploads buffer exists");
            // Queue writes land before the command buffer submitted next, after those
            // submitted earlier (whose copies from this buffer are then done).
            ctx.queue.write_buffer(staging, 0, &uploads.bytes);
            for &(dst, at, len) in &uploads.copies {
                encoder.copy_buffer_to_buffer(staging, at, slots[dst].buffer(), 0, len);
            }
        }
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
                        slots[*src].buffer(),
                        *src_offset,
                        slots[*dst].buffer(),
                        0,
                        *bytes,
                    );
                    i += 1;
                    continue;
                }
                Command::Clear { dst, bytes } => {
                    encoder.clear_buffer(slots[*dst].buffer(), 0, Some(*bytes));
                    i += 1;
                    continue;
                }
                Command::CopyToTexture { src, dst } => {
                    encoder.copy_buffer_to_texture(
                        wgpu::TexelCopyBufferInfo {
                            buffer: slots[*src].buffer(),
                            layout: wgpu::TexelCopyBufferLayout {
                                offset: 0,
                                bytes_per_row: Some(dst.bytes_per_row()),
                                rows_per_image: Some(dst.height),
                            },
                        },
                        dst.texture.as_image_copy(),
                        wgpu::Extent3d {
                            width: dst.width,
                            height: dst.height,
                            depth_or_array_layers: 1,
                        },
                    );
                    i += 1;
                    continue;
                }
                Command::Dispatch { .. } => {}
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: self.profile().and_then(|p| p.pass_writes()),
            });
            while let Some(Command::Dispatch {
                pipeline,
                params_at,
                params_len,
                buffers,
                constants,
                texture,
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
                    texture: texture.as_ref().map_or(0, |t| Arc::as_ptr(t) as usize),
                };
                let (_, _, bind_group) = bind_groups.entry(key).or_insert_with(|| {
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
                            resource: slots[id].buffer().as_entire_binding(),
                        });
                    }
                    if let Some(range) = constants {
                        entries.push(params_range(buffers.len() as u32 + 1, *range));
                    }
                    if let Some(t) = texture {
                        entries.push(wgpu::BindGroupEntry {
                            binding: TEXTURE_BINDING,
                            resource: wgpu::BindingResource::TextureView(&t.view),
                        });
                    }
                    new_bind_groups += 1;
                    let layout = pipeline.get_bind_group_layout(0);
                    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout,
                        entries: &entries,
                    });
                    (pipeline.clone(), texture.clone(), bind_group)
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &*bind_group, &[]);
                pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                dispatches += 1;
                i += 1;
                if let Some(profile) = self.profile() {
                    // Each dispatch in a pass of its own.
                    drop(pass);
                    profile.dispatched(ctx, &mut encoder, format!("{label} {groups:?}"))?;
                    break;
                }
            }
        }
        if let Some(profile) = self.profile() {
            profile.read_stamps(ctx, &mut encoder)?;
        }
        ctx.queue.submit([encoder.finish()]);
        let total = self.stats.get();
        self.stats.set(Stats {
            submissions: total.submissions + 1,
            dispatches: total.dispatches + dispatches as u64,
            copies: total.copies + (commands.len() - dispatches) as u64,
        });
        // Reclaim finished submissions without waiting, so resources do not pile up.
        let _ = ctx.device.poll(wgpu::PollType::Poll);
        log::debug!(
            target: "wgrad::device",
            "submit: {dispatches} dispatches ({new_bind_groups} new bind groups), {} copies or clears, {} bytes uploaded ({} gathered writes), {} bytes of kernel parameters",
            commands.len() - dispatches,
            self.uploaded.replace(0),
            uploads.copies.len(),
            params.len()
        );
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(profile) = &self.settings.profile {
            profile.print();
        }
    }
}
