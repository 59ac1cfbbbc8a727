//! The MPI transport: the ranks of an `mpirun` job (OpenMPI, MPICH…), through the `mpi` crate,
//! with a watchdog that stops the whole job when a collective waits too long.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator as _;
use mpi::traits::*;
use mpi::Threading;
use wgrad_graph::{Error, Result};

use crate::comm::Communicator;

/// How long a collective may wait for the other ranks by default before the job is stopped:
/// long enough for rank 0 to write a checkpoint while the others wait, short enough that a
/// dead rank does not hold a cluster for hours. `WGRAD_DIST_TIMEOUT` (seconds, 0 = never)
/// changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The ranks of the MPI job this process belongs to. Made once per process
/// ([`Mpi::init`]); MPI is finalised when it is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    watchdog: Arc<Watchdog>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

/// Watches the collective in progress; after the timeout it prints what waited and aborts the
/// job, since MPI itself would wait forever for a rank that stopped without ending the job.
struct Watchdog {
    rank: usize,
    timeout: Option<Duration>,
    epoch: Instant,
    /// Milliseconds since `epoch` at which the collective in progress started, plus one
    /// (0: none in progress).
    since: AtomicU64,
    what: Mutex<&'static str>,
    stop: AtomicBool,
}

impl Mpi {
    /// Initialises MPI (once per process) and reads this process's rank and the world size
    /// from the job `mpirun` started. A process started on its own is a job of one rank.
    pub fn init() -> Result<Mpi> {
        let (universe, _) =
            mpi::initialize_with_threading(Threading::Multiple).ok_or_else(|| {
                Error::Data("MPI is already initialised in this process: make one Mpi only".into())
            })?;
        let world = universe.world();
        let timeout = match std::env::var("WGRAD_DIST_TIMEOUT") {
            Err(_) => Some(DEFAULT_TIMEOUT),
            Ok(v) => match v.trim().parse::<f64>() {
                Ok(0.0) => None,
                Ok(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
                _ => {
                    return Err(Error::Data(format!(
                        "WGRAD_DIST_TIMEOUT={v:?}: give seconds (0 waits forever)"
                    )))
                }
            },
        };
        let watchdog = Arc::new(Watchdog {
            rank: world.rank() as usize,
            timeout,
            epoch: Instant::now(),
            since: AtomicU64::new(0),
            what: Mutex::new(""),
            stop: AtomicBool::new(false),
        });
        if timeout.is_some() {
            let w = watchdog.clone();
            std::thread::Builder::new()
                .name("wgrad-dist-watchdog".into())
                .spawn(move || w.watch())
                .map_err(|e| Error::Data(format!("cannot start the MPI watchdog: {e}")))?;
        }
        // A panic on one rank ends the job rather than leaving the others waiting.
        let rank = world.rank();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            if MPI_ALIVE.load(Ordering::SeqCst) {
                eprintln!("rank {rank}: panicked; aborting every rank of the MPI job");
                abort_world(101);
            }
        }));
        MPI_ALIVE.store(true, Ordering::SeqCst);
        log::info!(
            target: "wgrad::dist",
            "MPI rank {} of {} ({}), collectives time out after {}",
            world.rank(),
            world.size(),
            mpi::environment::library_version().unwrap_or_default().lines().next().unwrap_or(""),
            timeout.map_or("never".to_string(), |t| format!("{:.0} s", t.as_secs_f64()))
        );
        Ok(Mpi {
            world,
            watchdog,
            _universe: universe,
        })
    }

    /// Runs a collective under the watchdog.
    fn guarded<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        *self.watchdog.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        let now = self.watchdog.epoch.elapsed().as_millis() as u64 + 1;
        self.watchdog.since.store(now, Ordering::SeqCst);
        let out = f();
        self.watchdog.since.store(0, Ordering::SeqCst);
        out
    }
}

impl Watchdog {
    fn watch(&self) {
        let Some(timeout) = self.timeout else { return };
        let tick = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(tick);
            let since = self.since.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            let waited = self
                .epoch
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1));
            if waited > timeout {
                let what = *self.what.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!(
                    "error: rank {}: {what} has waited {:.0} s for the other ranks \
                     (WGRAD_DIST_TIMEOUT): a rank has died or stalled; aborting every rank of \
                     the MPI job",
                    self.rank,
                    waited.as_secs_f64()
                );
                abort_world(3);
            }
        }
    }
}

/// `MPI_Abort` on the world: ends every process of the job.
fn abort_world(code: i32) -> ! {
    // SAFETY: MPI is initialised with multi-threading while an `Mpi` exists (the watchdog and
    // the panic hook are only installed by `Mpi::init`), and MPI_Abort takes the world
    // communicator's predefined handle.
    unsafe {
        mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, code);
    }
    std::process::exit(code)
}

/// Whether an `Mpi` exists (MPI initialised and not finalised), for the panic hook.
static MPI_ALIVE: AtomicBool = AtomicBool::new(false);

impl Drop for Mpi {
    fn drop(&mut self) {
        self.watchdog.stop.store(true, Ordering::SeqCst);
        MPI_ALIVE.store(false, Ordering::SeqCst);
    }
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        for chunk in values.chunks_mut(MAX_COUNT) {
            let send = chunk.to_vec();
            self.guarded("an all-reduce of gradients", || {
                self.world
                    .all_reduce_into(&send[..], chunk, SystemOperation::sum())
            });
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        for chunk in values.chunks_mut(MAX_COUNT) {
            let send = chunk.to_vec();
            self.guarded("an all-reduce of metrics", || {
                self.world
                    .all_reduce_into(&send[..], chunk, SystemOperation::sum())
            });
        }
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        self.guarded("a broadcast from rank 0", || root.broadcast_into(&mut len));
        bytes.resize(len as usize, 0);
        for chunk in bytes.chunks_mut(MAX_COUNT) {
            self.guarded("a broadcast from rank 0", || root.broadcast_into(chunk));
        }
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.guarded("a barrier", || self.world.barrier());
        Ok(())
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// MPI counts are C ints: larger buffers go in chunks of this many elements.
const MAX_COUNT: usize = 1 << 30;
