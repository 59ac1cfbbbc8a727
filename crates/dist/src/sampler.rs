//! Each rank's share of an epoch, as PyTorch's `DistributedSampler` cuts it.

use wgrad_nn::data::epoch_order;

/// Cuts an epoch's order into one shard per rank: the order is padded (by repeating it from
/// the start) or cut to a multiple of the world size, and rank `r` takes positions `r`,
/// `r + world`, `r + 2·world`… So the shards are disjoint (apart from the padding), of equal
/// length, and batch `i` of every rank together is batch `i` of one process with a batch
/// `world` times larger, over the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    rank: usize,
    world: usize,
    drop_last: bool,
}

impl DistributedSampler {
    /// Rank `rank` of `world`, padding the last round (PyTorch's default).
    pub fn new(rank: usize, world: usize) -> Self {
        assert!(
            rank < world,
            "DistributedSampler: rank {rank} of a world of {world}"
        );
        DistributedSampler {
            rank,
            world,
            drop_last: false,
        }
    }

    /// Drops the samples past the last multiple of the world size instead of padding.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// This rank's part of `order`, an epoch's order that every rank computed alike.
    pub fn shard(&self, order: &[usize]) -> Vec<usize> {
        let n = order.len();
        if n == 0 {
            return Vec::new();
        }
        let total = if self.drop_last {
            n / self.world * self.world
        } else {
            n.div_ceil(self.world) * self.world
        };
        (self.rank..total)
            .step_by(self.world)
            .map(|i| order[i % n])
            .collect()
    }

    /// This rank's samples for `epoch` of data with `len` samples shuffled from `seed`: the
    /// same order the trainer shuffles, cut into shards.
    pub fn epoch(&self, len: usize, seed: u64, epoch: u64) -> Vec<usize> {
        self.shard(&epoch_order(len, Some(seed), epoch))
    }

    /// Samples per rank and epoch.
    pub fn len(&self, samples: usize) -> usize {
        if self.drop_last {
            samples / self.world
        } else {
            samples.div_ceil(self.world)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_equal_and_cover_the_order() {
        let order = epoch_order(10, Some(3), 1);
        let shards: Vec<Vec<usize>> = (0..3)
            .map(|r| DistributedSampler::new(r, 3).shard(&order))
            .collect();
        // 10 samples over 3 ranks: padded to 12, two repeated from the start.
        assert!(shards.iter().all(|s| s.len() == 4));
        assert_eq!(shards[0], vec![order[0], order[3], order[6], order[9]]);
        assert_eq!(shards[1], vec![order[1], order[4], order[7], order[0]]);
        assert_eq!(shards[2], vec![order[2], order[5], order[8], order[1]]);
        let dropped: Vec<Vec<usize>> = (0..3)
            .map(|r| DistributedSampler::new(r, 3).drop_last(true).shard(&order))
            .collect();
        assert!(dropped.iter().all(|s| s.len() == 3));
        let mut all: Vec<usize> = dropped.concat();
        all.sort();
        let mut first9 = order[..9].to_vec();
        first9.sort();
        assert_eq!(all, first9);
        assert_eq!(DistributedSampler::new(1, 3).len(10), 4);
        assert_eq!(DistributedSampler::new(1, 3).drop_last(true).len(10), 3);
    }

    #[test]
    fn batches_of_all_ranks_make_the_single_process_batch() {
        let order = epoch_order(256, Some(7), 0);
        let a = DistributedSampler::new(0, 2).shard(&order);
        let b = DistributedSampler::new(1, 2).shard(&order);
        for step in 0..4 {
            let mut both: Vec<usize> =
                [&a[32 * step..32 * step + 32], &b[32 * step..32 * step + 32]].concat();
            let mut one = order[64 * step..64 * step + 64].to_vec();
            both.sort();
            one.sort();
            assert_eq!(both, one, "step {step}");
        }
    }

    #[test]
    fn fewer_samples_than_ranks() {
        let order = vec![5, 9];
        assert_eq!(DistributedSampler::new(3, 4).shard(&order), vec![9]);
        assert!(DistributedSampler::new(3, 4)
            .drop_last(true)
            .shard(&order)
            .is_empty());
        assert!(DistributedSampler::new(0, 4).shard(&[]).is_empty());
    }
}
