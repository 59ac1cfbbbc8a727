//! `Context`: the adapter, device and queue, the shader modules and the pipeline cache.
//!
//! It is `Send + Sync` and shared (`Arc`) by every backend built on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use wgrad_graph::{Error, Result};

use crate::kernels::Entry;
use crate::shaders;
use crate::tune::Tuning;

/// How to pick an adapter. `Default` reads `WGRAD_ADAPTER` and `WGRAD_BACKEND`.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// Case-insensitive substring of the adapter's name (`WGRAD_ADAPTER`).
    pub name: Option<String>,
    /// `vulkan`, `metal`, `dx12` or `gl` (`WGRAD_BACKEND`).
    pub backend: Option<String>,
    /// Which of several adapters of the best kind (e.g. the GPUs of a machine with four),
    /// counted from 0 in the driver's order and wrapping around (`WGRAD_ADAPTER_INDEX`): one
    /// per process when several processes share a machine, e.g. the local MPI rank.
    pub index: Option<usize>,
}

impl AdapterOptions {
    /// Options from the environment variables `WGRAD_ADAPTER` and `WGRAD_BACKEND`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        AdapterOptions {
            name: var("WGRAD_ADAPTER"),
            backend: var("WGRAD_BACKEND"),
            index: var("WGRAD_ADAPTER_INDEX").and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// A wgpu device ready to run wgrad's kernels.
pub struct Context {
    /// The wgpu device the kernels run on.
    pub device: wgpu::Device,
    /// The device's queue.
    pub queue: wgpu::Queue,
    /// Description of the adapter the device came from.
    pub info: wgpu::AdapterInfo,
    /// The device's limits as granted (possibly below the adapter's).
    pub limits: wgpu::Limits,
    /// Per family, and per entry point of the uniform-window template (see
    /// `shaders::window_source`).
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    /// By entry point and the bits of its pipeline-overridable constants.
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    /// Pipelines of generated kernels and their sources, keyed by a text naming everything
    /// their source depends on.
    generated: Mutex<HashMap<String, Generated>>,
    /// First error reported by wgpu since it was last taken (validation, out of memory, lost).
    errors: Arc<Mutex<Option<String>>>,
    /// Whether kernels built for GPUs (workgroup-memory tiling) are chosen over those built
    /// for CPU-type adapters: by adapter type, or `WGRAD_KERNELS=gpu|cpu`.
    pub gpu_kernels: bool,
    /// Whether the device runs subgroup operations, which the GPU kernels' reductions use
    /// to combine a workgroup's shares (`WGRAD_SUBGROUPS=0` turns them off).
    pub subgroups: bool,
    /// Kernel choices measured on this adapter (see `tune.rs`).
    pub tuning: Tuning,
}

/// A family pipeline's entry point and the bits of its pipeline-overridable constants.
type PipelineKey = (Entry, Vec<u64>);

/// A generated kernel's pipeline and the source it was compiled from.
type Generated = (Arc<wgpu::ComputePipeline>, Arc<str>);

fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => wgpu::Backends::VULKAN,
        "metal" | "mtl" => wgpu::Backends::METAL,
        "dx12" | "d3d12" => wgpu::Backends::DX12,
        "gl" | "gles" | "opengl" => wgpu::Backends::GL,
        other => {
            return Err(Error::NoAdapter(format!(
                "unknown backend {other:?} in WGRAD_BACKEND; use vulkan, metal, dx12 or gl"
            )))
        }
    })
}

/// How an adapter ranks: by its kind of device, then native APIs before GL for the same.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let api = u8::from(info.backend != wgpu::Backend::Gl);
    (kind(info.device_type), api)
}

/// How a kind of device ranks: discrete GPUs first, software adapters last but one.
fn kind(device: wgpu::DeviceType) -> u8 {
    match device {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    }
}

/// The adapters of `backends`: the native APIs' first, then GL's only where it may add a
/// better one that `named` accepts, since opening GL (EGL and its drivers) costs a process
/// more than the native APIs do: where no native adapter is named, or where the best is a
/// processor's (a software adapter) and the system has a GPU device that only GL might
/// reach.
async fn find_adapters(
    backends: wgpu::Backends,
    named: impl Fn(&wgpu::Adapter) -> bool,
) -> Vec<wgpu::Adapter> {
    let enumerate = |backends: wgpu::Backends| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        async move { instance.enumerate_adapters(backends).await }
    };
    let gl = wgpu::Backends::GL;
    if cfg!(target_arch = "wasm32") || !backends.contains(gl) || backends == gl {
        return enumerate(backends).await;
    }
    let mut adapters = enumerate(backends - gl).await;
    let best = adapters
        .iter()
        .filter(|a| named(a))
        .map(|a| kind(a.get_info().device_type))
        .max();
    let software = kind(wgpu::DeviceType::Cpu);
    if best.is_none_or(|b| b <= software && gpu_device_present()) {
        adapters.extend(enumerate(gl).await);
    }
    adapters
}

/// Whether the system may have a GPU that GL reaches: on Linux, a DRM or NVIDIA device
/// node; elsewhere, assumed.
fn gpu_device_present() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let drm = std::fs::read_dir("/dev/dri").is_ok_and(|mut entries| {
        entries.any(|e| {
            e.is_ok_and(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("render") || name.starts_with("card")
            })
        })
    });
    drm || std::path::Path::new("/dev/nvidiactl").exists()
}

impl Context {
    /// The best adapter allowed by `WGRAD_ADAPTER` / `WGRAD_BACKEND`.
    pub fn new() -> Result<Arc<Context>> {
        Self::with_options(&AdapterOptions::from_env())
    }

    /// One context per process, created on first use and shared by every caller.
    pub fn shared() -> Result<Arc<Context>> {
        static SHARED: OnceLock<std::result::Result<Arc<Context>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Context::new().map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::NoAdapter)
    }

    /// The best adapter matching `options`. In a browser, where adapters are found
    /// asynchronously, this is an error: use [`Context::with_options_async`].
    pub fn with_options(options: &AdapterOptions) -> Result<Arc<Context>> {
        if cfg!(target_arch = "wasm32") {
            return Err(Error::NoAdapter(
                "in a browser the adapter is found asynchronously: use \
                 GpuBackend::device_async or Context::with_options_async"
                    .into(),
            ));
        }
        pollster::block_on(Self::with_options_async(options))
    }

    /// The best adapter matching `options`, awaited: what a browser needs.
    pub async fn with_options_async(options: &AdapterOptions) -> Result<Arc<Context>> {
        let backends = match &options.backend {
            Some(b) => parse_backend(b)?,
            None => wgpu::Backends::all(),
        };
        let wanted = options.name.as_ref().map(|n| n.to_lowercase());
        let named = |a: &wgpu::Adapter| match &wanted {
            Some(w) => a.get_info().name.to_lowercase().contains(w),
            None => true,
        };
        let adapters = find_adapters(backends, named).await;
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let candidates: Vec<wgpu::Adapter> = adapters.into_iter().filter(named).collect();
        let best = candidates.iter().map(|a| rank(&a.get_info())).max();
        let mut peers: Vec<wgpu::Adapter> = candidates
            .into_iter()
            .filter(|a| Some(rank(&a.get_info())) == best)
            .collect();
        let adapter = match (options.index, peers.len()) {
            (_, 0) => None,
            (Some(i), n) => Some(peers.swap_remove(i % n)),
            (None, _) => Some(peers.swap_remove(0)),
        };
        let Some(adapter) = adapter else {
            let found = if names.is_empty() {
                "none found; install a Vulkan driver (on Debian/Ubuntu: apt-get install \
                 mesa-vulkan-drivers libvulkan1) or run on the CPU backend"
                    .to_string()
            } else {
                format!("available: {}", names.join(", "))
            };
            let what = match (&options.name, &options.backend) {
                (Some(n), _) => format!("no adapter named like {n:?}"),
                (None, Some(b)) => format!("no adapter for backend {b}"),
                (None, None) => "no adapter".to_string(),
            };
            return Err(Error::NoAdapter(format!("{what}; {found}")));
        };
        let info = adapter.get_info();
        let wanted_limits = adapter.limits();
        // Subgroup operations natively only: naga reads them without WGSL's `enable
        // subgroups;`, which a browser requires and naga does not yet accept.
        let wanted_features = match cfg!(target_arch = "wasm32") {
            true => wgpu::Features::TIMESTAMP_QUERY,
            false => wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP,
        };
        let request = |limits: wgpu::Limits| {
            adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("wgrad"),
                required_limits: limits,
                // For timing kernels on the device clock (`WGRAD_PROFILE=gpu`), and for
                // reductions through subgroup operations (see `subgroups` below).
                required_features: adapter.features() & wanted_features,
                ..Default::default()
            })
        };
        let (device, queue) = match request(wanted_limits).await {
            Ok(dq) => dq,
            Err(e) => {
                log::warn!(target: "wgrad::device", "adapter refused its own limits ({e}); using default limits");
                let opened = match request(wgpu::Limits::default()).await {
                    Ok(dq) => Ok(dq),
                    Err(_) => request(wgpu::Limits::downlevel_defaults()).await,
                };
                opened.map_err(|e| Error::Device(format!("could not open {}: {e}", info.name)))?
            }
        };
        // The device is wgrad's own: errors outside its scopes (there should be none) and a
        // loss of the device are reported at the next flush or read.
        let errors = Arc::new(Mutex::new(None));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!(target: "wgrad::device", "wgpu error: {e}");
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("device lost: {msg}"));
            }
        });
        Ok(Self::build(device, queue, info, errors))
    }

    /// Builds a context on an application's existing device and queue, so the engine lives
    /// inside a GPU program instead of beside it. The application's uncaptured-error handler
    /// and device-lost callback stay its own: wgrad catches its own errors in error scopes
    /// around its work, and sees none of the application's.
    pub fn from_wgpu(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Arc<Context> {
        Self::build(device, queue, info, Arc::new(Mutex::new(None)))
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        errors: Arc<Mutex<Option<String>>>,
    ) -> Arc<Context> {
        let limits = device.limits();
        log::info!(
            target: "wgrad::device",
            "adapter: {} ({:?}, {:?}, driver {} {}); max buffer {} MiB, max storage binding {} MiB",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            limits.max_buffer_size >> 20,
            limits.max_storage_buffer_binding_size >> 20,
        );
        let gpu_kernels = match std::env::var("WGRAD_KERNELS").as_deref() {
            Ok("gpu") => true,
            Ok("cpu") => false,
            _ => info.device_type != wgpu::DeviceType::Cpu,
        };
        // A subgroup must fit in a workgroup of the reduction kernels.
        let subgroups = device.features().contains(wgpu::Features::SUBGROUP)
            && (1..=crate::kernels::WORKGROUP).contains(&info.subgroup_max_size)
            && info.subgroup_min_size >= 1
            && std::env::var("WGRAD_SUBGROUPS").as_deref() != Ok("0");
        log::info!(
            target: "wgrad::device",
            "subgroup operations: {} (sizes {}..={})",
            if subgroups { "used" } else { "not used" },
            info.subgroup_min_size,
            info.subgroup_max_size
        );
        Arc::new(Context {
            gpu_kernels,
            subgroups,
            tuning: Tuning::from_env(&info),
            device,
            queue,
            info,
            limits,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            generated: Mutex::new(HashMap::new()),
            errors,
        })
    }

    /// e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether wgpu reported an error not yet taken (without taking it).
    pub(crate) fn has_error(&self) -> bool {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The error wgpu reported since the last call, if any.
    pub fn take_error(&self) -> Option<String> {
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Runs `f`, wgrad's own use of the device, inside error scopes (validation, out of
    /// memory, internal) on this thread: what goes wrong in it is kept for [`take_error`],
    /// not sent to the device's uncaptured-error handler, which may be an application's.
    ///
    /// [`take_error`]: Context::take_error
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> T) -> T {
        use wgpu::ErrorFilter as F;
        // In a browser a scope's result arrives only after control returns to the event
        // loop; there errors reach the uncaptured-error handler, which keeps them alike.
        if cfg!(target_arch = "wasm32") {
            return f();
        }
        let scopes = [F::OutOfMemory, F::Internal, F::Validation]
            .map(|filter| self.device.push_error_scope(filter));
        let out = f();
        // Popped innermost first.
        for scope in scopes.into_iter().rev() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                log::error!(target: "wgrad::device", "wgpu error: {e}");
                let mut slot = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| e.to_string());
            }
        }
        out
    }

    /// The pipeline of a generated kernel (entry point `main`), compiled once per source.
    pub fn generated_pipeline(&self, source: &str) -> Arc<wgpu::ComputePipeline> {
        self.generated_with(source, "main", || source.to_string())
    }

    /// The pipeline of entry point `entry` of a generated module, compiled on the first call
    /// with `key` (which must name the module and entry together) from `source()`. Debug
    /// builds (the tests) check on every later call that `source()` is still the cached
    /// source: a key that leaves out something the source depends on fails there.
    pub(crate) fn generated_with(
        &self,
        key: &str,
        entry: &str,
        source: impl Fn() -> String,
    ) -> Arc<wgpu::ComputePipeline> {
        let mut cache = self.generated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, cached)) = cache.get(key) {
            debug_assert!(
                **cached == *source(),
                "generated kernel `{key}`: the key names two different sources"
            );
            return p.clone();
        }
        let source: Arc<str> = source().into();
        let pipeline = self.scoped(|| {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("wgrad generated kernel"),
                    source: wgpu::ShaderSource::Wgsl((*source).into()),
                });
            Arc::new(
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    }),
            )
        });
        cache.insert(key.to_string(), (pipeline.clone(), source));
        pipeline
    }

    /// The source of every kernel generated so far (for validating them without a GPU).
    pub fn generated_sources(&self) -> Vec<Arc<str>> {
        let cache = self.generated.lock().unwrap_or_else(|p| p.into_inner());
        cache.values().map(|(_, source)| source.clone()).collect()
    }

    /// The compiled pipeline of `entry`, compiled on first use.
    pub fn pipeline(&self, entry: Entry) -> Arc<wgpu::ComputePipeline> {
        self.pipeline_with(entry, &[])
    }

    /// The pipeline of `entry` with its pipeline-overridable constants set to `constants`,
    /// compiled once per distinct set.
    pub fn pipeline_with(
        &self,
        entry: Entry,
        constants: &[(&str, f64)],
    ) -> Arc<wgpu::ComputePipeline> {
        let key = (entry, constants.iter().map(|c| c.1.to_bits()).collect());
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pipelines.get(&key) {
            return p.clone();
        }
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let family = entry.family;
        // An entry point of the uniform-window template has a module of its own; the
        // others share their family's.
        let window = shaders::window_source(entry.name);
        let name = match window {
            Some(_) => entry.name,
            None => family.file(),
        };
        let pipeline = self.scoped(|| {
            let module = modules.entry(name).or_insert_with(|| {
                let source = window.unwrap_or_else(|| shaders::source(family).to_string());
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            });
            Arc::new(
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry.name),
                        layout: None,
                        module,
                        entry_point: Some(entry.name),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            ..Default::default()
                        },
                        cache: None,
                    }),
            )
        });
        pipelines.insert(key, pipeline.clone());
        pipeline
    }

    /// The first error wgpu reported since the last check, as an [`Error`].
    pub(crate) fn check(&self) -> Result<()> {
        match self.take_error() {
            None => Ok(()),
            Some(msg) if msg.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { bytes: 0 })
            }
            Some(msg) => Err(Error::Device(msg)),
        }
    }

    /// Like [`Context::map_read`], awaiting the map instead of blocking: in a browser the map
    /// completes only after control returns to the event loop. Natively the device is
    /// waited for first, so the future is ready when first polled.
    pub(crate) async fn map_read_async(
        &self,
        staging: &wgpu::Buffer,
        bytes: usize,
    ) -> Result<Vec<u8>> {
        let slice = staging.slice(..);
        let (tx, rx) = futures::channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the device failed: {e}")))?;
        rx.await
            .map_err(|_| Error::Map("the map request was dropped".into()))?
            .map_err(|e| Error::Map(e.to_string()))?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| Error::Map(e.to_string()))?[..bytes]
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Completes when the work submitted so far has run.
    pub(crate) async fn finished_async(&self) -> Result<()> {
        let (tx, rx) = futures::channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("waiting for the device failed: {e}")))?;
        rx.await
            .map_err(|_| Error::Device("the device dropped a completion callback".into()))?;
        self.check()
    }

    /// Maps `staging` (after the work that fills it was submitted), waits, and copies out its
    /// first `bytes` bytes.
    pub(crate) fn map_read(&self, staging: &wgpu::Buffer, bytes: usize) -> Result<Vec<u8>> {
        // Natively the asynchronous read waits for the device first, so it is ready at once.
        futures::executor::block_on(self.map_read_async(staging, bytes))
    }
}
