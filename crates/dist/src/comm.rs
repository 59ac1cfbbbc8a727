//! The collective operations data-parallel training needs, and an in-process group of
//! ranks (threads) that runs them without MPI, for tests and for trying the code on one
//! machine.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wgrad_graph::{Error, Result};

/// Collective operations among the ranks of a group. Every rank must make the same calls,
/// in the same order, with buffers of the same length.
pub trait Communicator {
    /// This rank, from 0.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Replaces `values` by their element-wise sum over the ranks; every rank gets the same
    /// bits.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()>;

    /// Like [`Communicator::all_reduce_sum`] in double precision (metrics, counts).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Replaces `bytes` by rank 0's, whatever their length on the other ranks.
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()>;

    /// Waits until every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Ends every rank's process, with `code`, after an error on this one: the others would
    /// otherwise wait for it forever (`MPI_Abort`).
    fn abort(&self, code: i32) -> !;
}

/// One rank of an in-process group made by [`LocalGroup::new`]: ranks are threads of one
/// process, each with its own device and model, exchanging values through shared memory.
/// A rank that waits longer than the group's timeout for the others gets an error.
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    timeout: Duration,
    round: Mutex<Round>,
    ready: Condvar,
}

/// One exchange: every rank's contribution, and the finished result of the last exchange.
struct Round {
    generation: u64,
    slots: Vec<Option<Vec<u8>>>,
    arrived: usize,
    result: Arc<Vec<Vec<u8>>>,
}

impl LocalGroup {
    /// `size` ranks, to be moved one to each thread; a rank waits at most `timeout` for the
    /// others.
    pub fn new(size: usize, timeout: Duration) -> Vec<LocalGroup> {
        let shared = Arc::new(Shared {
            size,
            timeout,
            round: Mutex::new(Round {
                generation: 0,
                slots: vec![None; size],
                arrived: 0,
                result: Arc::new(Vec::new()),
            }),
            ready: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's `mine`, in rank order.
    fn all_gather(&self, mine: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>> {
        let s = &self.shared;
        let mut round = s.round.lock().unwrap_or_else(|e| e.into_inner());
        let generation = round.generation;
        round.slots[self.rank] = Some(mine);
        round.arrived += 1;
        if round.arrived == s.size {
            let all: Vec<Vec<u8>> = round.slots.iter_mut().map(|v| v.take().unwrap()).collect();
            round.result = Arc::new(all);
            round.arrived = 0;
            round.generation += 1;
            s.ready.notify_all();
            return Ok(round.result.clone());
        }
        // The next exchange cannot finish without this rank, so the result read on waking is
        // this exchange's.
        let (round, waited) = s
            .ready
            .wait_timeout_while(round, s.timeout, |r| r.generation == generation)
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() {
            return Err(Error::Data(format!(
                "rank {} waited {:.0} s for the other ranks of its group: one has stopped",
                self.rank,
                s.timeout.as_secs_f64()
            )));
        }
        Ok(round.result.clone())
    }
}

impl Communicator for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let all = self.all_gather(values.iter().flat_map(|v| v.to_le_bytes()).collect())?;
        check_lengths(&all, values.len() * 4)?;
        // In rank order on every rank, so that all get the same bits.
        values.fill(0.0);
        for part in all.iter() {
            for (v, b) in values.iter_mut().zip(part.chunks_exact(4)) {
                *v += f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let all = self.all_gather(values.iter().flat_map(|v| v.to_le_bytes()).collect())?;
        check_lengths(&all, values.len() * 8)?;
        values.fill(0.0);
        for part in all.iter() {
            for (v, b) in values.iter_mut().zip(part.chunks_exact(8)) {
                *v += f64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let all = self.all_gather(bytes.clone())?;
        *bytes = all[0].clone();
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.all_gather(Vec::new()).map(|_| ())
    }

    fn abort(&self, code: i32) -> ! {
        eprintln!("rank {} of a local group: aborting the process", self.rank);
        std::process::exit(code)
    }
}

/// Refuses an exchange whose contributions differ in length (ranks out of step).
fn check_lengths(all: &[Vec<u8>], want: usize) -> Result<()> {
    match all.iter().position(|p| p.len() != want) {
        None => Ok(()),
        Some(r) => Err(Error::Data(format!(
            "the ranks are out of step: rank {r} sent {} bytes to a reduction of {want}",
            all[r].len()
        ))),
    }
}
