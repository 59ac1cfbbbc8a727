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
