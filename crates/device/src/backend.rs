//! `GpuBackend`: wgrad's graph backend on a wgpu [`Context`], the top layer of this crate.
//! Buffers come from the recorder's pool; `exec` hands each launch to its kernel family
//! (`family/`), and `flush` submits everything recorded as one command buffer.

use std::sync::Arc;

use wgrad_graph::{
    Arg, Backend, BackendFuture, BufferId, Capabilities, Device, Error, Fused, FusedValue, Launch,
    MemoryStats, Op, Result, Stats,
};

use crate::context::Context;
use crate::family;
use crate::family::generated::{self, Epilogue};
use crate::family::index::{IndexFlags, INDEX_FLAG_BYTES};
use crate::params::MAX_FUSED_CONSTANTS;
use crate::recorder::profile::{KernelTime, Profile, ProfileClock};
use crate::recorder::{Recorder, Settings};

/// The wgpu backend.
pub struct GpuBackend {
    rec: Recorder,
    caps: Capabilities,
    /// Where index kernels record an index out of range; read back with every result.
    flags: IndexFlags,
}

/// Most elementwise ops fused into one kernel.
const MAX_FUSED_OPS: usize = 24;

impl GpuBackend {
    /// A backend on `ctx` with an empty buffer pool, set up from the environment:
    /// `WGRAD_FUSION=0` (no generated kernels), `WGRAD_POISON=1`, `WGRAD_PROFILE`.
    pub fn new(ctx: Arc<Context>) -> Self {
        let profile = ctx.scoped(|| Profile::from_env(&ctx));
        GpuBackend::with_profile(ctx, profile)
    }

    /// A backend that times every kernel with `clock` (as `WGRAD_PROFILE` does); the times
    /// so far are in [`GpuBackend::kernel_times`].
    pub fn profiled(ctx: Arc<Context>, clock: ProfileClock) -> Self {
        let profile = ctx.scoped(|| Profile::new(&ctx, clock));
        GpuBackend::with_profile(ctx, Some(profile))
    }

    fn with_profile(ctx: Arc<Context>, profile: Option<Profile>) -> Self {
        let fusion = std::env::var("WGRAD_FUSION").map_or(true, |v| v != "0");
        let settings = Settings {
            specialize: fusion,
            poison: std::env::var("WGRAD_POISON").is_ok_and(|v| v == "1"),
            profile,
        };
        // A fused kernel binds its parameters and output besides its inputs; a product
        // binds its parameters, output and both operands (so do the convolution kernels; a
        // generated copy, two), and an epilogue's constants one more.
        let bindings = ctx.limits.max_storage_buffers_per_shader_stage as usize;
        let caps = Capabilities {
            name: ctx.describe(),
            gpu: true,
            fused_inputs: bindings.saturating_sub(2).min(6),
            fused_ops: MAX_FUSED_OPS,
            fused_constants: MAX_FUSED_CONSTANTS,
            epilogue_buffers: bindings.saturating_sub(4).min(6),
        };
        let caps = if fusion {
            caps
        } else {
            Capabilities::unfused(caps.name, true)
        };
        GpuBackend {
            rec: Recorder::new(ctx, settings),
            caps,
            flags: IndexFlags::default(),
        }
    }

    /// The time of each kernel run so far, the most total time first, and the clock that
    /// measured them; empty without profiling.
    pub fn kernel_times(&self) -> (Vec<KernelTime>, Option<ProfileClock>) {
        match self.rec.profile() {
            Some(p) => (p.times(), Some(p.clock())),
            None => (Vec::new(), None),
        }
    }

    /// A [`Device`] on the process-wide shared context (the best adapter, or the one named
    /// by `WGRAD_ADAPTER` / `WGRAD_BACKEND`).
    pub fn device() -> Result<Device> {
        Ok(Device::new(GpuBackend::new(Context::shared()?)))
    }

    /// A [`Device`] on the best adapter, found asynchronously: the way in a browser, where
    /// [`GpuBackend::device`] cannot wait for the adapter. Works natively too.
    pub async fn device_async() -> Result<Device> {
        let options = crate::context::AdapterOptions::from_env();
        let ctx = Context::with_options_async(&options).await?;
        Ok(Device::new(GpuBackend::new(ctx)))
    }

    /// A [`Device`] on a given context, e.g. one built from an application's wgpu device.
    pub fn device_on(ctx: Arc<Context>) -> Device {
        Device::new(GpuBackend::new(ctx))
    }

    /// The context this backend runs on.
    pub fn context(&self) -> &Arc<Context> {
        self.rec.ctx()
    }

    fn exec_epilogue(
        &self,
        op: &Op,
        operands: &[Arg<'_>],
        fused: &Fused,
        (inputs, outs): (&[Arg<'_>], &[Arg<'_>]),
    ) -> Result<()> {
        let product = matches!(op, Op::MatMul { .. } | Op::Conv2d(_));
        if !product || outs.is_empty() || self.caps.epilogue_buffers == 0 {
            return Err(Error::Device(format!(
                "an epilogue follows a matmul or a convolution and stores 1 or more outputs \
                 on a backend that fuses, got {} and {}",
                op.name(),
                outs.len()
            )));
        }
        let extra: Vec<BufferId> = outs[1..].iter().chain(inputs).map(|a| a.buffer).collect();
        let epilogue = Epilogue {
            fused,
            buffers: &extra,
        };
        family::record_product(&self.rec, op, operands, &outs[0], epilogue)
    }

    fn exec_fused(&self, fused: &Fused, inputs: &[Arg<'_>], outs: &[Arg<'_>]) -> Result<()> {
        if fused.constants.len() > self.caps.fused_constants || outs.is_empty() {
            return Err(Error::Device(format!(
                "a fused kernel takes 1 or more outputs and at most {} constants, got {} and {}",
                self.caps.fused_constants,
                outs.len(),
                fused.constants.len()
            )));
        }
        if fused.values.contains(&FusedValue::Product) {
            return Err(Error::Device(
                "a fused kernel reads a product only as the epilogue of a matmul or a convolution"
                    .into(),
            ));
        }
        generated::record_fused(&self.rec, fused, inputs, outs);
        Ok(())
    }
}

impl GpuBackend {
    /// Submits a copy of `bytes` bytes of buffer `id` (and the index flags, when made)
    /// into a new staging buffer, after all recorded work; returns it and the data's size
    /// in it.
    fn stage(&self, id: BufferId, bytes: usize) -> Result<(wgpu::Buffer, u64)> {
        self.flush()?;
        let ctx = self.rec.ctx();
        let size = (bytes as u64).div_ceil(4) * 4;
        // The index flags come back behind the data, in the same copy-and-map.
        let flags = self.flags.made();
        let extra = if flags.is_some() { INDEX_FLAG_BYTES } else { 0 };
        let staging = ctx.scoped(|| {
            let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad readback"),
                size: size + extra,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&self.rec.buffer(id), 0, &staging, 0, size);
            if let Some(f) = flags {
                encoder.copy_buffer_to_buffer(&self.rec.buffer(f), 0, &staging, size, extra);
            }
            ctx.queue.submit([encoder.finish()]);
            staging
        });
        ctx.check()?;
        Ok((staging, size))
    }

    /// The first `bytes` bytes of what a staging buffer held, after checking the index
    /// flags behind them.
    fn unstage(&self, data: Result<Vec<u8>>, size: u64, bytes: usize) -> Result<Vec<u8>> {
        self.rec.ctx().check()?;
        let mut data = data?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&data[size as usize..]);
        self.flags.check(&self.rec, &words)?;
        data.truncate(bytes);
        log::debug!(target: "wgrad::device", "read back {bytes} bytes");
        Ok(data)
    }
}

impl Backend for GpuBackend {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn alloc(&self, bytes: usize) -> Result<BufferId> {
        self.rec.alloc(bytes)
    }

    fn free(&self, id: BufferId) {
        self.rec.free(id);
    }

    fn write(&self, id: BufferId, data: &[u8]) -> Result<()> {
        // A pooled buffer may still be read by recorded work; that work must run first.
        if self.rec.pending() {
            self.flush()?;
        }
        if data.is_empty() {
            return self.rec.ctx().check();
        }
        if self.rec.can_gather(data.len()) {
            self.rec.upload(id, data);
            return self.rec.ctx().check();
        }
        // Gathered writes first: one of them may be to this buffer.
        if self.rec.uploading() {
            self.flush()?;
        }
        let buffer = self.rec.buffer(id);
        let ctx = self.rec.ctx();
        ctx.scoped(|| ctx.queue.write_buffer(&buffer, 0, data));
        self.rec.uploaded(data.len());
        ctx.check()
    }

    fn read(&self, id: BufferId, bytes: usize) -> Result<Vec<u8>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::Device(
                "a blocking read cannot finish in a browser, where the GPU answers only after \
                 control returns to the event loop: use to_vec_async or item_async"
                    .into(),
            ));
        }
        let (staging, size) = self.stage(id, bytes)?;
        let data = self.rec.ctx().map_read(&staging, staging.size() as usize);
        self.unstage(data, size, bytes)
    }

    fn read_async(&self, id: BufferId, bytes: usize) -> BackendFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let (staging, size) = self.stage(id, bytes)?;
            let data = self
                .rec
                .ctx()
                .map_read_async(&staging, staging.size() as usize)
                .await;
            self.unstage(data, size, bytes)
        })
    }

    fn finish_async(&self) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            self.flush()?;
            self.rec.ctx().finished_async().await
        })
    }

    fn exec(&self, launch: &Launch<'_>) -> Result<()> {
        match *launch {
            Launch::Op { op, inputs, out } => {
                family::record(&self.rec, &self.flags, op, inputs, out)
            }
            Launch::Fused {
                fused,
                inputs,
                outs,
            } => self.exec_fused(fused, inputs, outs),
            Launch::Epilogue {
                op,
                operands,
                fused,
                inputs,
                outs,
            } => self.exec_epilogue(op, operands, fused, (inputs, outs)),
        }
    }

    fn stats(&self) -> Stats {
        self.rec.stats()
    }

    fn memory(&self) -> MemoryStats {
        self.rec.memory()
    }

    fn empty_cache(&self) -> Result<()> {
        self.flush()?;
        self.rec.empty_cache();
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let ctx = self.rec.ctx();
        let recorded = ctx.scoped(|| self.rec.submit());
        let checked = ctx.check();
        recorded.and(checked)
    }
}
