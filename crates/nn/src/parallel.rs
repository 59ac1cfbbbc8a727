//! What the [`crate::Trainer`] asks of data-parallel training across processes: every rank
//! runs the same trainer on its own shard of each epoch, and the trainer calls a
//! [`DataParallel`] at the few points where the ranks must agree. The `wgrad-dist` crate
//! implements it over MPI (`Ddp`); this crate knows nothing of the transport.

use wgrad_graph::{Grads, Result, Tensor};

use crate::module::Module;

/// The points where data-parallel ranks meet. Every rank must make the same calls in the same
/// order, as with any collective communication.
pub trait DataParallel {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;

    /// How many ranks train together.
    fn world_size(&self) -> usize;

    /// Whether this rank prints progress and writes logs, plots and checkpoints (rank 0).
    fn is_main(&self) -> bool {
        self.rank() == 0
    }

    /// This rank's part of an epoch's shuffled `order` (the same on every rank): disjoint
    /// parts of equal length, so that every rank makes the same number of steps.
    fn shard(&self, order: &[usize]) -> Vec<usize>;

    /// Makes every rank's parameters and buffers rank 0's (at the start, and before what
    /// reads the buffers: evaluation, checkpoints).
    fn broadcast_module(&self, model: &dyn Module) -> Result<()>;

    /// Replaces each of `params`' gradients by its mean over the ranks. `also` (the step's
    /// metric sums) is computed in the same submission as the gradients.
    fn average_gradients(
        &self,
        params: &[Tensor],
        grads: &mut Grads,
        also: &[&Tensor],
    ) -> Result<()>;

    /// Sums `values` over the ranks, in place (metrics, counts).
    fn sum(&self, values: &mut [f64]) -> Result<()>;

    /// Replaces `bytes` by rank 0's (a checkpoint to resume from, a decision).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;
}

/// Rank `rank`'s part of `order` for evaluation: every `world`-th index, none repeated, so
/// that the sums over ranks count each sample once.
pub(crate) fn evaluation_shard(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    order
        .iter()
        .skip(rank)
        .step_by(world.max(1))
        .copied()
        .collect()
}
