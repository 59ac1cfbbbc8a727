//! Data-parallel training for wgrad across processes and machines: each rank (a process
//! with its own device) trains on its shard of every epoch, and the gradients are averaged
//! over the ranks before each update, as PyTorch's `DistributedDataParallel` and Horovod do.
//!
//! - [`Ddp`] is what `wgrad_nn::Trainer::with_data_parallel` takes; its methods also serve a
//!   training loop of one's own.
//! - [`Communicator`] is the transport: [`Mpi`] (feature `mpi`) for the ranks of an `mpirun`
//!   job, on one machine or a cluster; [`LocalGroup`] for ranks that are threads of one
//!   process (tests, trying it out).
//! - [`DistributedSampler`] cuts each epoch into one shard per rank.
//!
//! See `docs/distributed.md` for the design and how to run it on a cluster.
#![warn(missing_docs)]

mod comm;
mod ddp;
#[cfg(feature = "mpi")]
mod mpi;
mod sampler;

pub use comm::{Communicator, LocalGroup};
pub use ddp::{CommStats, Ddp, DEFAULT_BUCKET_BYTES};
#[cfg(feature = "mpi")]
pub use mpi::{Mpi, DEFAULT_TIMEOUT};
pub use sampler::DistributedSampler;

/// This process's rank among the ranks on its machine, as the launcher tells it (OpenMPI's
/// `OMPI_COMM_WORLD_LOCAL_RANK`, MPICH's `MPI_LOCALRANKID`, Slurm's `SLURM_LOCALID`): the
/// index of the GPU a rank should take on a machine with several
/// (`wgrad::device::AdapterOptions::index`).
pub fn local_rank() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse().ok())
}
