//! Time per kernel (`WGRAD_PROFILE`, or [`crate::GpuBackend::profiled`]). With the host
//! clock (`WGRAD_PROFILE=1`) each dispatch is submitted alone and waited for, and the host
//! times the whole round trip. With the device clock (`WGRAD_PROFILE=gpu`) each dispatch
//! gets a compute pass of its own whose start and end write timestamp queries; the
//! submission stays one per flush, and the times are the device's own. Adapters without
//! timestamp queries fall back to the host clock, with a warning.

use std::cell::RefCell;
use std::collections::HashMap;

use wgrad_graph::Result;

use crate::context::Context;

/// Which clock times each kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileClock {
    /// Each dispatch submitted alone and waited for; includes submission and waiting.
    Host,
    /// Timestamp queries around each dispatch, read back once per flush.
    Device,
}

/// The accumulated time of one kernel (entry point and grid).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's name and its workgroup grid, e.g. `matmul_vec4_ua [16, 1, 1]`.
    pub name: String,
    /// How many times it ran.
    pub calls: u32,
    /// Its total time in seconds.
    pub seconds: f64,
}

/// Dispatches timed per query set: two queries each, and a set holds at most 4096.
const STAMPED: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// The queries of the device clock, and the names of the dispatches they are pending for.
struct Stamps {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    pending: RefCell<Vec<String>>,
}

pub(crate) struct Profile {
    /// Per kernel name: calls and seconds.
    table: RefCell<HashMap<String, (u32, f64)>>,
    /// Present with the device clock.
    stamps: Option<Stamps>,
}

impl Profile {
    /// The profile `WGRAD_PROFILE` asks for (`1`: host clock, `gpu`: device clock), if any.
    pub(crate) fn from_env(ctx: &Context) -> Option<Profile> {
        match std::env::var("WGRAD_PROFILE").as_deref() {
            Ok("1") => Some(Profile::new(ctx, ProfileClock::Host)),
            Ok("gpu") => Some(Profile::new(ctx, ProfileClock::Device)),
            _ => None,
        }
    }

    pub(crate) fn new(ctx: &Context, clock: ProfileClock) -> Profile {
        let queries = ctx
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY);
        if clock == ProfileClock::Device && !queries {
            log::warn!(target: "wgrad::device", "{} has no timestamp queries; kernels are timed on the host", ctx.info.name);
        }
        let stamps = (clock == ProfileClock::Device && queries).then(|| {
            let bytes = STAMPED as u64 * 16;
            let buffer = |label, usage| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            use wgpu::BufferUsages as U;
            Stamps {
                set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("wgrad kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * STAMPED,
                }),
                resolve: buffer("wgrad timestamps", U::QUERY_RESOLVE | U::COPY_SRC),
                staging: buffer("wgrad timestamps readback", U::MAP_READ | U::COPY_DST),
                pending: RefCell::new(Vec::new()),
            }
        });
        Profile {
            table: RefCell::new(HashMap::new()),
            stamps,
        }
    }

    /// The clock in use.
    pub(crate) fn clock(&self) -> ProfileClock {
        match self.stamps {
            Some(_) => ProfileClock::Device,
            None => ProfileClock::Host,
        }
    }

    /// The timestamp writes of the pass holding the next dispatch (device clock).
    pub(crate) fn pass_writes(&self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let stamps = self.stamps.as_ref()?;
        let q = 2 * stamps.pending.borrow().len() as u32;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &stamps.set,
            beginning_of_pass_write_index: Some(q),
            end_of_pass_write_index: Some(q + 1),
        })
    }

    /// After the pass holding dispatch `name` has ended in `encoder`. Host clock: submits
    /// `encoder`, waits and adds the time. Device clock: notes the dispatch, and reads the
    /// query set back once it is full.
    pub(crate) fn dispatched(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
        name: String,
    ) -> Result<()> {
        let Some(stamps) = &self.stamps else {
            let start = std::time::Instant::now();
            ctx.queue.submit([fresh(ctx, encoder).finish()]);
            let _ = ctx.device.poll(wgpu::PollType::wait_indefinitely());
            self.add(name, start.elapsed().as_secs_f64());
            return Ok(());
        };
        let full = {
            let mut pending = stamps.pending.borrow_mut();
            pending.push(name);
            pending.len() as u32 == STAMPED
        };
        if full {
            self.read_stamps(ctx, encoder)?;
        }
        Ok(())
    }

    /// Device clock: submits `encoder` with the pending queries resolved, and adds their
    /// times. Called before a flush's last submission.
    pub(crate) fn read_stamps(
        &self,
        ctx: &Context,
        encoder: &mut wgpu::CommandEncoder,
    ) -> Result<()> {
        let Some(stamps) = &self.stamps else {
            return Ok(());
        };
        let names = std::mem::take(&mut *stamps.pending.borrow_mut());
        if names.is_empty() {
            return Ok(());
        }
        let n = names.len() as u32;
        let mut done = fresh(ctx, encoder);
        done.resolve_query_set(&stamps.set, 0..2 * n, &stamps.resolve, 0);
        done.copy_buffer_to_buffer(&stamps.resolve, 0, &stamps.staging, 0, 16 * n as u64);
        ctx.queue.submit([done.finish()]);
        let bytes = ctx.map_read(&stamps.staging, 16 * n as usize)?;
        let ticks: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        // Nanoseconds per tick.
        let period = ctx.queue.get_timestamp_period() as f64;
        for (k, name) in names.into_iter().enumerate() {
            let elapsed = ticks[2 * k + 1].saturating_sub(ticks[2 * k]);
            self.add(name, elapsed as f64 * period * 1e-9);
        }
        Ok(())
    }

    fn add(&self, name: String, seconds: f64) {
        let mut table = self.table.borrow_mut();
        let entry = table.entry(name).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// Every kernel timed so far, the most total time first.
    pub(crate) fn times(&self) -> Vec<KernelTime> {
        let mut rows: Vec<KernelTime> = self
            .table
            .borrow()
            .iter()
            .map(|(name, &(calls, seconds))| KernelTime {
                name: name.clone(),
                calls,
                seconds,
            })
            .collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        rows
    }

    /// The 40 kernels of most total time, on stderr.
    pub(crate) fn print(&self) {
        let rows = self.times();
        let total: f64 = rows.iter().map(|r| r.seconds).sum();
        let clock = match self.clock() {
            ProfileClock::Host => "host clock, each dispatch submitted alone",
            ProfileClock::Device => "device clock, timestamp queries",
        };
        eprintln!("kernel time ({clock}), total {:.1} ms:", total * 1e3);
        for r in rows.iter().take(40) {
            eprintln!(
                "{:>10.2} ms {:>6} calls {:>9.3} ms/call  {}",
                r.seconds * 1e3,
                r.calls,
                r.seconds * 1e3 / r.calls as f64,
                r.name
            );
        }
    }
}

/// Takes the work recorded in `encoder`, leaving a new encoder in its place.
fn fresh(ctx: &Context, encoder: &mut wgpu::CommandEncoder) -> wgpu::CommandEncoder {
    std::mem::replace(
        encoder,
        ctx.device.create_command_encoder(&Default::default()),
    )
}
